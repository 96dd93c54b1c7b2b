//! Legacy mode (RTADDR.TTM = 00b): root entry → context entry → second stage (§2.2), with
//! the legacy fault codes of §7.1.

use vtd_spec::addr::{PageSize, agaw_width, ss_levels};
use vtd_spec::context::{LEGACY_CONTEXT_ENTRY_BYTES, LegacyContextEntry, LegacyTt};
use vtd_spec::fault::FaultReason;
use vtd_spec::pasid::Pgtt;
use vtd_spec::root::{LegacyRootEntry, ROOT_ENTRY_BYTES};

use super::first_stage::FsParams;
use super::scalable::PasidCtx;
use super::second_stage::SsParams;
use super::{Stop, Walker};
use crate::cache::CachedContext;
use crate::fault::FaultStage;
use crate::mem::PhysMem;
use crate::request::{AddressType, Perms, Translation, TranslationKind};
use crate::stats::Counter;
use crate::trace::{CacheKind, WalkEvent, WalkObserver};

/// A legacy context entry that passed every check: what the context cache holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LegacyCtx {
    pub(crate) tt: LegacyTt,
    pub(crate) did: u16,
    pub(crate) fpd: bool,
    pub(crate) ss: SsParams,
}

impl<M: PhysMem, O: WalkObserver> Walker<'_, M, O> {
    pub(super) fn legacy(&mut self, root_table: u64) -> Result<Translation, Stop> {
        let req = *self.req;
        if req.pasid.is_some() {
            return Err(self
                .fault(FaultReason::RtaPasidInLegacy, FaultStage::RootPointer)
                .into());
        }
        let ctx = self.legacy_context(root_table)?;
        if req.address_type != AddressType::Untranslated
            && ctx.tt != LegacyTt::SecondStageWithDevTlb
        {
            return Err(self
                .fault(FaultReason::LctTtBlocked, FaultStage::ContextEntry)
                .into());
        }
        if ctx.tt == LegacyTt::PassThrough || req.address_type == AddressType::Translated {
            let kind = if ctx.tt == LegacyTt::PassThrough {
                TranslationKind::PassThrough
            } else {
                TranslationKind::PreTranslated
            };
            self.check_output(req.addr, true)?;
            return Ok(Translation {
                hpa: req.addr,
                page_size: PageSize::Size4K,
                perms: Perms::READ | Perms::WRITE,
                kind,
                did: Some(ctx.did),
                gpa: None,
                from_iotlb: false,
            });
        }
        // The IOTLB and second-stage code work on a PASID entry's view of the domain.
        let pe = PasidCtx {
            pgtt: Pgtt::SecondStage,
            did: ctx.did,
            fpd: ctx.fpd,
            sre: false,
            ere: false,
            fs: FsParams {
                root: 0,
                levels: 4,
                wpe: false,
                eafe: false,
                nxe: false,
                smep: false,
            },
            ss: ctx.ss,
        };
        if self.caching
            && let Some(result) = self.iotlb_hit(&pe, None, false)
        {
            return result;
        }
        let walked = self.second_stage_only(&pe);
        if self.caching {
            self.iotlb_fill(&pe, None, &walked);
        }
        walked.map(|w| {
            w.entry
                .translation(req.addr, w.size, w.perms, pe.did, false)
        })
    }

    /// The legacy context entry of the request's source id, from the context cache or the
    /// tables.
    fn legacy_context(&mut self, root_table: u64) -> Result<LegacyCtx, Stop> {
        if !self.caching {
            return self.legacy_context_walk(root_table);
        }
        let key = CachedContext::key(self.req.sid, true);
        if let Some(v) = self.unit.caches.context.lookup(&key) {
            self.cache_result(CacheKind::Context, true);
            match CachedContext::decode(&v) {
                CachedContext::Legacy(ctx) => {
                    self.fpd |= ctx.fpd;
                    return Ok(ctx);
                }
                CachedContext::NotPresent { fpd } => {
                    self.fpd |= fpd;
                    return Err(self
                        .fault(FaultReason::LctNotPresent, FaultStage::ContextEntry)
                        .into());
                }
                CachedContext::Scalable(_) => {}
            }
        } else {
            self.cache_result(CacheKind::Context, false);
        }
        let result = self.legacy_context_walk(root_table);
        let cached = match &result {
            Ok(ctx) => Some(CachedContext::Legacy(*ctx)),
            Err(Stop::Fault(f))
                if self.caching_mode() && f.reason == FaultReason::LctNotPresent =>
            {
                Some(CachedContext::NotPresent { fpd: self.fpd })
            }
            Err(_) => None,
        };
        if let Some(entry) = cached {
            let inserted =
                self.unit
                    .caches
                    .context
                    .insert(&key, &entry.encode(), self.fill_guard());
            self.note_fill(inserted);
        }
        result
    }

    fn legacy_context_walk(&mut self, root_table: u64) -> Result<LegacyCtx, Stop> {
        let req = *self.req;
        let above_haw = self.unit.limits.above_haw;
        let root_addr = root_table + req.bus() as u64 * ROOT_ENTRY_BYTES;
        self.count(Counter::RootReads);
        let raw = self.read_u128(root_addr).map_err(|_| {
            self.fault(FaultReason::LrtAccessError, FaultStage::RootEntry)
                .entry_addr(root_addr)
        })?;
        self.obs.event(WalkEvent::RootEntry {
            addr: root_addr,
            value: raw,
        });
        let root = LegacyRootEntry::from_bits(raw);
        let root_fault = |w: &Self, r| {
            w.fault(r, FaultStage::RootEntry)
                .entry(root_addr, raw as u64)
        };
        if !root.p() {
            return Err(root_fault(self, FaultReason::LrtNotPresent).into());
        }
        if raw & LegacyRootEntry::RESERVED != 0 || root.context_table() & above_haw != 0 {
            return Err(root_fault(self, FaultReason::LrtReserved).into());
        }

        let ctx_addr = root.context_table() + req.devfn() as u64 * LEGACY_CONTEXT_ENTRY_BYTES;
        self.count(Counter::ContextReads);
        let raw = self.read_u128(ctx_addr).map_err(|_| {
            self.fault(FaultReason::LctAccessError, FaultStage::ContextEntry)
                .entry_addr(ctx_addr)
        })?;
        self.obs.event(WalkEvent::ContextEntry {
            addr: ctx_addr,
            value: raw,
        });
        let ce = LegacyContextEntry::from_bits(raw);
        self.fpd |= ce.fpd();
        let ctx_fault = |w: &Self, r| {
            w.fault(r, FaultStage::ContextEntry)
                .entry(ctx_addr, raw as u64)
        };
        if !ce.p() {
            return Err(ctx_fault(self, FaultReason::LctNotPresent).into());
        }
        let (cap, ecap) = (self.unit.config.cap, self.unit.config.ecap);
        let reserved = raw & LegacyContextEntry::RESERVED != 0
            || ce.did() as u32 >= self.unit.limits.num_domains
            || (ce.tt() != LegacyTt::PassThrough && ce.ss_table() & above_haw != 0);
        if reserved {
            return Err(ctx_fault(self, FaultReason::LctReserved).into());
        }
        let invalid = match ce.tt() {
            LegacyTt::SecondStage => !cap.supports_aw(ce.aw()),
            LegacyTt::SecondStageWithDevTlb => !ecap.dt() || !cap.supports_aw(ce.aw()),
            LegacyTt::PassThrough => !ecap.pt(),
            LegacyTt::Reserved => true,
        };
        if invalid {
            return Err(ctx_fault(self, FaultReason::LctInvalid).into());
        }
        let aw = ce.aw().clamp(1, 3);
        Ok(LegacyCtx {
            tt: ce.tt(),
            did: ce.did(),
            fpd: ce.fpd(),
            ss: SsParams {
                root: ce.ss_table(),
                levels: ss_levels(aw),
                width: agaw_width(aw).min(self.unit.limits.mgaw_bits),
                ssade: false,
                ssee: false,
                snooped: ecap.c(),
                legacy: true,
                did: ce.did(),
            },
        })
    }
}
