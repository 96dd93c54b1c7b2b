//! Scalable mode: root entry → context entry → PASID directory → PASID entry (§2.3–§3.5),
//! then the walk the PASID entry's PGTT selects.

use vtd_spec::addr::{self, PageSize, agaw_width};
use vtd_spec::context::{SM_CONTEXT_ENTRY_BYTES, SmContextEntry, SmContextEntryLo};
use vtd_spec::fault::FaultReason;
use vtd_spec::pasid::{PASID_DIR_ENTRY_BYTES, PASID_ENTRY_BYTES, PasidDirEntry, PasidEntry, Pgtt};
use vtd_spec::root::{ROOT_ENTRY_BYTES, SmRootEntry};
use vtd_spec::second_stage::SsEntry;

use super::first_stage::FsParams;
use super::second_stage::SsParams;
use super::{Stop, Walked, Walker};
use crate::cache::{
    CachedContext, CachedPasid, Denial, IotlbEntry, IotlbKind, SlotRef, lookup_page, size_code,
};
use crate::fault::{Fault, FaultStage};
use crate::mem::PhysMem;
use crate::request::{AddressType, Perms, Translation, TranslationKind};
use crate::stats::Counter;
use crate::trace::{CacheKind, WalkEvent, WalkObserver};

/// A scalable-mode context entry that passed every check: what the context cache holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SmContext {
    pub(crate) pasid_dir: u64,
    /// PASIDs below this are covered by the directory (2^(PDTS+13)).
    pub(crate) pasid_limit: u32,
    pub(crate) dte: bool,
    pub(crate) paside: bool,
    pub(crate) rid_pasid: u32,
    pub(crate) rid_priv: bool,
    pub(crate) fpd: bool,
}

impl SmContext {
    /// The PASID a request looks up: its own, else RID_PASID where honoured, else 0
    /// (§2.1). `None` when it is beyond the directory or the unit's PASID width (SCT.7).
    #[inline]
    pub(crate) fn effective_pasid(
        &self,
        req: &crate::request::Request,
        rps: bool,
        pasid_bits: u32,
    ) -> Option<u32> {
        let pasid = match req.pasid {
            Some(p) => p,
            None if rps => self.rid_pasid,
            None => 0,
        };
        (pasid < self.pasid_limit && pasid >> pasid_bits == 0).then_some(pasid)
    }

    /// Whether the request is privileged: its PR with a PASID, else RID_PRIV where
    /// honoured, else user (§4.4).
    #[inline]
    pub(crate) fn privileged(&self, req: &crate::request::Request, rprivs: bool) -> bool {
        match req.pasid {
            Some(_) => req.privileged,
            None => rprivs && self.rid_priv,
        }
    }
}

/// A PASID entry that passed every check: what the PASID cache holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PasidCtx {
    pub(crate) pgtt: Pgtt,
    pub(crate) did: u16,
    /// FPD of the PASID-directory entry or of the PASID entry.
    pub(crate) fpd: bool,
    pub(crate) sre: bool,
    pub(crate) ere: bool,
    pub(crate) fs: FsParams,
    pub(crate) ss: SsParams,
}

impl<M: PhysMem, O: WalkObserver> Walker<'_, M, O> {
    pub(super) fn scalable(&mut self, root_table: u64) -> Result<Translation, Stop> {
        let (ctx, pasid) = self.sm_context_and_pasid(root_table)?;
        let req = *self.req;
        let ecap = self.unit.config.ecap;
        if req.address_type == AddressType::Translated {
            // The device's TLB already translated it; with DTE=1 it passes unchanged.
            return Ok(Translation {
                hpa: req.addr,
                page_size: PageSize::Size4K,
                perms: Perms::READ | Perms::WRITE,
                kind: TranslationKind::PreTranslated,
                did: None,
                gpa: None,
                from_iotlb: false,
            });
        }
        let pe = self.pasid_entry(&ctx, pasid)?;
        // The privilege of a request-without-PASID is RID_PRIV where honoured, else user.
        let privileged = ctx.privileged(&req, ecap.rprivs());
        // §6.1: the canonical check (step 1) comes before the privilege checks (step 2).
        if pe.pgtt.uses_first_stage() && !vtd_spec::addr::is_canonical(req.addr, pe.fs.levels) {
            return Err(self
                .fault(FaultReason::SgnNonCanonical, FaultStage::Request)
                .into());
        }
        if req.pasid.is_some() && req.execute && !pe.ere {
            return Err(self
                .fault(FaultReason::SptExecuteDisabled, FaultStage::PasidEntry)
                .into());
        }
        if privileged && !pe.sre {
            return Err(self
                .fault(FaultReason::SptSupervisorDisabled, FaultStage::PasidEntry)
                .into());
        }
        if pe.pgtt == Pgtt::PassThrough {
            return self.pass_through(&pe);
        }
        // Second-stage-only entries are shared by every PASID of the domain.
        let tag_pasid = pe.pgtt.uses_first_stage().then_some(pasid);
        if self.caching
            && let Some(result) = self.iotlb_hit(&pe, tag_pasid, privileged)
        {
            return result;
        }
        let walked = match pe.pgtt {
            Pgtt::SecondStage => self.second_stage_only(&pe),
            Pgtt::FirstStage => self.first_stage(&pe, pasid, privileged, false),
            Pgtt::Nested => self.first_stage(&pe, pasid, privileged, true),
            // Rejected as SPT.4 when the entry was checked.
            _ => Err(self
                .fault(FaultReason::SptInvalid, FaultStage::PasidEntry)
                .into()),
        };
        if self.caching
            && let Some(iotlb_ref) = self.iotlb_fill(&pe, tag_pasid, &walked)
            && let Ok(w) = &walked
        {
            self.front_fill_after_walk(&pe, privileged, &w.entry, w.size, iotlb_ref);
        }
        walked.map(|w| {
            w.entry
                .translation(req.addr, w.size, w.perms, pe.did, false)
        })
    }

    /// The context entry of the request's source id and the PASID the request looks up,
    /// with the context entry's checks of the request (DTE, PASIDE, the PASID's range).
    #[inline(always)]
    fn sm_context_and_pasid(&mut self, root_table: u64) -> Result<(SmContext, u32), Stop> {
        let ctx = self.sm_context(root_table)?;
        let req = *self.req;
        if req.address_type != AddressType::Untranslated && !ctx.dte {
            return Err(self
                .fault(FaultReason::SctDteBlocked, FaultStage::ContextEntry)
                .into());
        }
        if req.pasid.is_some() && !ctx.paside {
            return Err(self
                .fault(FaultReason::SctPasidDisabled, FaultStage::ContextEntry)
                .into());
        }
        let (rps, pasid_bits) = (self.unit.config.ecap.rps(), self.unit.limits.pasid_bits);
        let Some(pasid) = ctx.effective_pasid(&req, rps, pasid_bits) else {
            return Err(self
                .fault(FaultReason::SctPasidBeyondDir, FaultStage::ContextEntry)
                .into());
        };
        Ok((ctx, pasid))
    }

    /// Only the lookup part of a scalable-mode walk: root, context, PASID directory and
    /// PASID entry, with their checks. The PASID entry read goes to the observer.
    pub(crate) fn pasid_lookup(&mut self, root_table: u64) -> Result<PasidCtx, Fault> {
        let found = self
            .sm_context_and_pasid(root_table)
            .and_then(|(ctx, pasid)| self.pasid_entry(&ctx, pasid));
        found.map_err(|stop| match stop {
            Stop::Fault(f) => *f,
            // Only A/D updates restart a walk, and a lookup makes none.
            Stop::Restart => self.fault(FaultReason::SptInvalid, FaultStage::PasidEntry),
        })
    }

    /// Serve the request from the IOTLB if an entry covers it. `None` means walk: no
    /// entry, or a write that would have to set a dirty flag the entry does not show.
    #[inline(always)]
    pub(super) fn iotlb_hit(
        &mut self,
        pe: &PasidCtx,
        tag_pasid: Option<u32>,
        privileged: bool,
    ) -> Option<Result<Translation, Stop>> {
        let req = *self.req;
        if self.prefetch.iotlb_absent {
            self.cache_result(CacheKind::Iotlb, false);
            return None;
        }
        let found = lookup_page(&self.unit.caches.iotlb, |size| {
            IotlbEntry::key(pe.did, tag_pasid, req.addr, size)
        });
        let Some((raw, _, size)) = found else {
            self.cache_result(CacheKind::Iotlb, false);
            return None;
        };
        let entry = IotlbEntry::decode(&raw);
        if req.access.needs_write() && !entry.dirty && entry.kind != IotlbKind::NotPresent {
            self.cache_result(CacheKind::Iotlb, false);
            return None;
        }
        self.cache_result(CacheKind::Iotlb, true);
        Some(self.iotlb_result(pe, &entry, size, privileged))
    }

    /// The translation (or fault) a cached entry gives this request.
    fn iotlb_result(
        &mut self,
        pe: &PasidCtx,
        entry: &IotlbEntry,
        size: PageSize,
        privileged: bool,
    ) -> Result<Translation, Stop> {
        let req = *self.req;
        if let Some(reason) = entry.not_present_reason() {
            let stage = if reason == FaultReason::SfsNotPresent {
                FaultStage::FirstStage
            } else {
                FaultStage::SecondStage
            };
            return Err(self.fault(reason, stage).into());
        }
        let zlr = self.unit.config.cap.zlr();
        let perms = match entry.rights(&req, pe.fs.wpe, pe.fs.smep, pe.ss.ssee, privileged, zlr) {
            Ok(perms) => perms,
            Err(Denial::FirstStage(reason)) => {
                return Err(self.fault(reason, FaultStage::FirstStage).into());
            }
            Err(Denial::SecondStage(ss_perms)) => {
                let reason = self.ss_permission_fault(&pe.ss, ss_perms);
                return Err(self.fault(reason, FaultStage::SecondStage).into());
            }
        };
        let t = entry.translation(req.addr, size, perms, pe.did, true);
        // A large page may cover the interrupt range in part: the check is per access.
        self.check_output(t.hpa, pe.ss.legacy)?;
        self.count(Counter::ServedFromIotlb);
        Ok(t)
    }

    /// Cache the outcome of a walk: the translation, or in caching mode a not-present leaf.
    /// Returns where the entry went, if it was cached.
    #[inline(always)]
    pub(super) fn iotlb_fill(
        &self,
        pe: &PasidCtx,
        tag_pasid: Option<u32>,
        walked: &Result<Walked, Stop>,
    ) -> Option<SlotRef> {
        let req = self.req;
        let (entry, size) = match walked {
            Ok(w) => (w.entry, w.size),
            Err(Stop::Fault(f)) if self.caching_mode() && is_not_present_leaf(f, pe.pgtt) => (
                IotlbEntry {
                    kind: IotlbKind::NotPresent,
                    hpa: 0,
                    gpa: 0,
                    ss_perms: Perms::empty(),
                    fs_rw: false,
                    fs_us: false,
                    fs_xd: false,
                    dirty: false,
                    reason_code: f.reason.code(),
                },
                PageSize::Size4K,
            ),
            Err(_) => return None,
        };
        let key = IotlbEntry::key(pe.did, tag_pasid, req.addr, size);
        let inserted = self.unit.caches.iotlb.insert_kind(
            &key,
            &entry.encode(),
            size_code(size) as u32,
            self.fill_guard(),
        );
        self.note_fill(inserted)
    }

    /// The context entry of the request's source id, from the context cache or the tables.
    #[inline(always)]
    fn sm_context(&mut self, root_table: u64) -> Result<SmContext, Stop> {
        if !self.caching {
            return self.sm_context_walk(root_table);
        }
        // The prefetched entries stay in `prefetch` for the front-cache fill after the walk;
        // a restart drops them.
        if let Some((ctx, _)) = self.prefetch.ctx {
            self.cache_result(CacheKind::Context, true);
            self.fpd |= ctx.fpd;
            return Ok(ctx);
        }
        let key = CachedContext::key(self.req.sid, false);
        if let Some(v) = self.unit.caches.context.lookup(&key) {
            self.cache_result(CacheKind::Context, true);
            match CachedContext::decode(&v) {
                CachedContext::Scalable(ctx) => {
                    self.fpd |= ctx.fpd;
                    return Ok(ctx);
                }
                CachedContext::NotPresent { fpd } => {
                    self.fpd |= fpd;
                    return Err(self
                        .fault(FaultReason::SctNotPresent, FaultStage::ContextEntry)
                        .into());
                }
                CachedContext::Legacy(_) => {}
            }
        } else {
            self.cache_result(CacheKind::Context, false);
        }
        let result = self.sm_context_walk(root_table);
        let cached = match &result {
            Ok(ctx) => Some(CachedContext::Scalable(*ctx)),
            Err(Stop::Fault(f))
                if self.caching_mode() && f.reason == FaultReason::SctNotPresent =>
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

    /// Root and context entry lookup with the checks of §2.5.
    fn sm_context_walk(&mut self, root_table: u64) -> Result<SmContext, Stop> {
        let req = *self.req;
        let above_haw = self.unit.limits.above_haw;
        let root_addr = root_table + req.bus() as u64 * ROOT_ENTRY_BYTES;
        self.count(Counter::RootReads);
        let raw = self.read_u128(root_addr).map_err(|_| {
            self.fault(FaultReason::SrtAccessError, FaultStage::RootEntry)
                .entry_addr(root_addr)
        })?;
        self.obs.event(WalkEvent::RootEntry {
            addr: root_addr,
            value: raw,
        });
        let root = SmRootEntry::from_bits(raw);
        let (present, ctp) = root.context_table(req.devfn());
        let root_fault = |w: &Self, r| {
            w.fault(r, FaultStage::RootEntry)
                .entry(root_addr, raw as u64)
        };
        if !present {
            return Err(root_fault(self, FaultReason::SrtNotPresent).into());
        }
        if raw & SmRootEntry::RESERVED != 0 || ctp & above_haw != 0 {
            return Err(root_fault(self, FaultReason::SrtReserved).into());
        }

        let ctx_addr = ctp + (req.devfn() & 0x7F) as u64 * SM_CONTEXT_ENTRY_BYTES;
        self.count(Counter::ContextReads);
        let read = self
            .read_u128(ctx_addr)
            .and_then(|lo| Ok((lo, self.read_u128(ctx_addr + 16)?)));
        let (lo, hi) = read.map_err(|_| {
            self.fault(FaultReason::SctAccessError, FaultStage::ContextEntry)
                .entry_addr(ctx_addr)
        })?;
        self.obs.event(WalkEvent::ContextEntry {
            addr: ctx_addr,
            value: lo,
        });
        let ce = SmContextEntry {
            lo: SmContextEntryLo::from_bits(lo),
            hi,
        };
        // FPD is honoured even in a non-present entry (§7.3).
        self.fpd |= ce.lo.fpd();
        let ctx_fault = |w: &Self, r| {
            w.fault(r, FaultStage::ContextEntry)
                .entry(ctx_addr, lo as u64)
        };
        if !ce.lo.p() {
            return Err(ctx_fault(self, FaultReason::SctNotPresent).into());
        }
        if lo & self.unit.masks.context_lo != 0 || hi != 0 || ce.pasid_dir() & above_haw != 0 {
            return Err(ctx_fault(self, FaultReason::SctReserved).into());
        }
        let ecap = self.unit.config.ecap;
        if ecap.rps() && ce.lo.rid_pasid() >> self.unit.limits.pasid_bits != 0 {
            return Err(ctx_fault(self, FaultReason::SctRidPasidInvalid).into());
        }
        Ok(SmContext {
            pasid_dir: ce.pasid_dir(),
            pasid_limit: ce.pasid_dir_entries().saturating_mul(64),
            dte: ce.lo.dte(),
            paside: ce.lo.paside(),
            rid_pasid: ce.lo.rid_pasid(),
            rid_priv: ce.lo.rid_priv(),
            fpd: ce.lo.fpd(),
        })
    }

    /// The PASID entry for `pasid`, from the PASID cache or the tables.
    #[inline(always)]
    fn pasid_entry(&mut self, ctx: &SmContext, pasid: u32) -> Result<PasidCtx, Stop> {
        if !self.caching {
            return self.pasid_entry_walk(ctx, pasid);
        }
        match self.prefetch.pasid {
            Some((p, pe, _)) if p == pasid => {
                self.cache_result(CacheKind::Pasid, true);
                self.fpd |= pe.fpd;
                return Ok(pe);
            }
            // Never the case (the fast path derives the PASID as the walk does), but a
            // front-cache fill must not name a PASID-cache entry the walk did not use.
            _ => self.prefetch.pasid = None,
        }
        let key = CachedPasid::key(self.req.sid, pasid);
        if let Some(v) = self.unit.caches.pasid.lookup(&key) {
            self.cache_result(CacheKind::Pasid, true);
            return match CachedPasid::decode(&v) {
                CachedPasid::Present(pe) => {
                    self.fpd |= pe.fpd;
                    Ok(pe)
                }
                CachedPasid::NotPresent { fpd, reason } => {
                    self.fpd |= fpd;
                    let stage = if reason == FaultReason::SpdNotPresent {
                        FaultStage::PasidDirectory
                    } else {
                        FaultStage::PasidEntry
                    };
                    Err(self.fault(reason, stage).into())
                }
            };
        }
        self.cache_result(CacheKind::Pasid, false);
        let result = self.pasid_entry_walk(ctx, pasid);
        let cached = match &result {
            Ok(pe) => Some(CachedPasid::Present(*pe)),
            Err(Stop::Fault(f))
                if self.caching_mode()
                    && matches!(
                        f.reason,
                        FaultReason::SpdNotPresent | FaultReason::SptNotPresent
                    ) =>
            {
                Some(CachedPasid::NotPresent {
                    fpd: self.fpd,
                    reason: f.reason,
                })
            }
            Err(_) => None,
        };
        if let Some(entry) = cached {
            let inserted = self
                .unit
                .caches
                .pasid
                .insert(&key, &entry.encode(), self.fill_guard());
            self.note_fill(inserted);
        }
        result
    }

    /// PASID directory and PASID table lookup with the checks of §3.2 and §3.5.
    fn pasid_entry_walk(&mut self, ctx: &SmContext, pasid: u32) -> Result<PasidCtx, Stop> {
        let above_haw = self.unit.limits.above_haw;
        let dir_addr =
            ctx.pasid_dir + vtd_spec::pasid::dir_index(pasid) as u64 * PASID_DIR_ENTRY_BYTES;
        self.count(Counter::PasidDirReads);
        let raw = self.read_u64(dir_addr).map_err(|_| {
            self.fault(FaultReason::SpdAccessError, FaultStage::PasidDirectory)
                .entry_addr(dir_addr)
        })?;
        self.obs.event(WalkEvent::PasidDirEntry {
            addr: dir_addr,
            value: raw,
        });
        let pde = PasidDirEntry::from_bits(raw);
        self.fpd |= pde.fpd();
        let dir_fault = |w: &Self, r| w.fault(r, FaultStage::PasidDirectory).entry(dir_addr, raw);
        if !pde.p() {
            return Err(dir_fault(self, FaultReason::SpdNotPresent).into());
        }
        if raw & PasidDirEntry::RESERVED != 0 || pde.pasid_table() & above_haw != 0 {
            return Err(dir_fault(self, FaultReason::SpdReserved).into());
        }

        let pe_addr =
            pde.pasid_table() + vtd_spec::pasid::table_index(pasid) as u64 * PASID_ENTRY_BYTES;
        self.count(Counter::PasidEntryReads);
        let mut words = [0u64; 8];
        for (i, w) in words.iter_mut().enumerate() {
            *w = self.read_u64(pe_addr + 8 * i as u64).map_err(|_| {
                self.fault(FaultReason::SptAccessError, FaultStage::PasidEntry)
                    .entry_addr(pe_addr)
            })?;
        }
        let pe = PasidEntry::from_words(words);
        self.obs.event(WalkEvent::PasidEntry {
            addr: pe_addr,
            pasid,
            entry: pe,
        });
        self.fpd |= pe.lo.fpd();
        let pe_fault = |w: &Self, r| w.fault(r, FaultStage::PasidEntry).entry(pe_addr, words[0]);
        if !pe.lo.p() {
            return Err(pe_fault(self, FaultReason::SptNotPresent).into());
        }
        let mut decoded = self
            .check_pasid_entry(&pe)
            .map_err(|r| Stop::from(pe_fault(self, r)))?;
        decoded.fpd |= pde.fpd();
        Ok(decoded)
    }

    /// Reserved-bit (SPT.3) and programming (SPT.4) checks of a present PASID entry, and
    /// its decoding.
    fn check_pasid_entry(&self, pe: &PasidEntry) -> Result<PasidCtx, FaultReason> {
        let config = &self.unit.config;
        let (cap, ecap) = (config.cap, config.ecap);
        let (lo_mask, hi_mask) = (self.unit.masks.pasid_lo, self.unit.masks.pasid_hi);
        let pgtt = pe.lo.pgtt();
        let above_haw = self.unit.limits.above_haw;
        let reserved = pe.lo.into_bits() & lo_mask != 0
            || pe.hi.into_bits() & hi_mask != 0
            || pe.rsvd != [0, 0]
            || pe.lo.did() as u32 >= self.unit.limits.num_domains
            || (pgtt.uses_second_stage() && pe.ss_table() & above_haw != 0)
            || (pgtt == Pgtt::FirstStage && pe.fs_table() & above_haw != 0);
        if reserved {
            return Err(FaultReason::SptReserved);
        }
        let supported = match pgtt {
            Pgtt::FirstStage => ecap.flts(),
            Pgtt::SecondStage => ecap.slts(),
            Pgtt::Nested => ecap.nest(),
            Pgtt::PassThrough => ecap.pt(),
            _ => false,
        };
        let aw = pe.lo.aw();
        let fs_levels = pe.hi.fspm().levels();
        let invalid = !supported
            || (pgtt.uses_second_stage() && !cap.supports_aw(aw))
            || (pgtt.uses_first_stage() && fs_levels.is_none())
            || (pgtt.uses_first_stage() && fs_levels == Some(5) && !cap.fs5lp())
            || (cap.cm() && pe.lo.did() == 0);
        if invalid {
            return Err(FaultReason::SptInvalid);
        }
        Ok(PasidCtx {
            pgtt,
            did: pe.lo.did(),
            fpd: pe.lo.fpd(),
            sre: pe.hi.sre(),
            ere: pe.hi.ere(),
            fs: FsParams {
                root: pe.fs_table(),
                levels: fs_levels.unwrap_or(4),
                wpe: pe.hi.wpe(),
                eafe: pe.hi.eafe(),
                nxe: pe.hi.nxe(),
                smep: pe.hi.smep(),
            },
            ss: SsParams {
                root: pe.ss_table(),
                levels: addr::ss_levels(aw.clamp(1, 3)),
                width: agaw_width(aw.clamp(1, 3)).min(self.unit.limits.mgaw_bits),
                ssade: pe.lo.ssade(),
                ssee: pe.lo.ssee(),
                snooped: pe.lo.pwsnp(),
                legacy: false,
                did: pe.lo.did(),
            },
        })
    }

    /// PGTT=100b: the input address is the output (§3.4).
    fn pass_through(&mut self, pe: &PasidCtx) -> Result<Translation, Stop> {
        let req = self.req;
        if req.addr & !((1u64 << self.unit.config.host_address_width) - 1) != 0 {
            return Err(self
                .fault(FaultReason::SgnAddressBeyond, FaultStage::Request)
                .into());
        }
        self.check_output(req.addr, false)?;
        Ok(Translation {
            hpa: req.addr,
            page_size: PageSize::Size4K,
            perms: Perms::READ | Perms::WRITE,
            kind: TranslationKind::PassThrough,
            did: Some(pe.did),
            gpa: None,
            from_iotlb: false,
        })
    }
}

/// A not-present leaf (first-stage or final second-stage): what caching mode may cache in
/// the IOTLB.
pub(super) fn is_not_present_leaf(f: &Fault, pgtt: Pgtt) -> bool {
    match f.reason {
        FaultReason::SfsNotPresent => f.stage == FaultStage::FirstStage,
        // Only second-stage-only translations: under nesting the final stage-2 walk comes
        // after the first-stage rights checks, which a cached fault would skip for a
        // request with other rights. And only a truly non-present entry: with
        // `SsPermissionFault::SecondStage` a present entry that denies this access also
        // reports SSS.2, yet allows other accesses.
        FaultReason::SssNotPresent => {
            f.stage == FaultStage::SecondStage
                && pgtt == Pgtt::SecondStage
                && f.entry_value
                    .is_none_or(|v| !SsEntry::from_bits(v).present())
        }
        _ => false,
    }
}
