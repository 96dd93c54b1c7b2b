//! The translation of one request: context lookup, then the PGTT's walk (§2–§6).
//!
//! The walker is generic over a [`WalkObserver`] so the plain `translate` path compiles
//! without any tracing. Faults come back as `(Fault, fpd)`; the unit applies FPD and
//! records them.
//!
//! The steps of a walk that runs on every IOTLB miss (cache lookups and fills, the
//! second-stage walk, entry reads) are `#[inline(always)]`: a walk is one call chain, and
//! kept whole the compiler holds its state in registers instead of passing results
//! through memory from frame to frame. Results are written where the caller keeps them
//! (the fast path fills the walker's [`Prefetch`], `ss_walk` its caller's walk) for the
//! same reason.

mod ad;
mod fast;
mod first_stage;
mod legacy;
mod masks;
mod scalable;
mod second_stage;

use vtd_spec::addr::PageSize;
use vtd_spec::fault::FaultReason;
use vtd_spec::regs::Ttm;

use crate::cache::{IotlbEntry, SlotRef};
use crate::fault::{Fault, FaultStage};
use crate::mem::{MemError, PhysMem};
use crate::request::{Perms, Request, Translation, TranslationKind};
use crate::stats::{Counter, ShardRef};
use crate::trace::{WalkEvent, WalkObserver};
use crate::unit::Unit;

pub(crate) use fast::Prefetch;
pub(crate) use first_stage::{FsParams, fs_rights};
pub(crate) use legacy::LegacyCtx;
pub(crate) use masks::ReservedMasks;
pub(crate) use scalable::{PasidCtx, SmContext};
pub(crate) use second_stage::{SsParams, ss_allows};

/// Whether a walk has side effects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WalkMode {
    /// The hardware's walk: caches, A/D writes, counters, fault recording.
    Normal,
    /// Explain: no caches, no writes, no counters, no recording.
    DryRun,
}

/// A successful page walk: the IOTLB entry that caches it, the page size it holds for and
/// the rights of this request; [`IotlbEntry::translation`] gives the answer.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Walked {
    pub(crate) entry: IotlbEntry,
    pub(crate) size: PageSize,
    pub(crate) perms: Perms,
}

/// A fault plus whether FPD was set on an entry read for the request.
pub(crate) type WalkFault = (Fault, bool);

/// Internal walk failure: a fault, or an entry that changed under an A/D update, which
/// restarts the walk.
///
/// The fault is boxed so that the walker's results stay small on the success path.
pub(crate) enum Stop {
    Fault(Box<Fault>),
    Restart,
}

impl From<Fault> for Stop {
    fn from(f: Fault) -> Self {
        Stop::Fault(Box::new(f))
    }
}

/// Walks restarted this many times because tables kept changing under the A/D update
/// give up with SFS.10 (A/D update failed).
const MAX_RESTARTS: u32 = 16;

/// State of one translation.
pub(crate) struct Walker<'a, M, O> {
    pub(crate) unit: &'a Unit<M>,
    pub(crate) req: &'a Request,
    pub(crate) obs: &'a mut O,
    pub(crate) mode: WalkMode,
    /// FPD seen on any entry read so far (context, PASID directory, PASID entry).
    pub(crate) fpd: bool,
    /// Consult and fill the caches (normal walks with caching enabled).
    pub(crate) caching: bool,
    /// Invalidation epoch when the walk started, read before the fast path's first cache
    /// lookup (whose results the walk reuses). Its fills are dropped unless the epoch was
    /// even (no invalidation running) and has not moved since.
    pub(crate) epoch: u64,
    /// This thread's counter shard; the unit's sink in a dry run.
    shard: ShardRef<'a>,
    /// Cache lookups the fast path already made, used by the first attempt only.
    pub(crate) prefetch: Prefetch,
}

impl<'a, M: PhysMem, O: WalkObserver> Walker<'a, M, O> {
    /// A walker for `req`; the fast path may fill its `prefetch` before it runs.
    ///
    /// The epoch is read here, before any lookup the walk may reuse: an entry the fast
    /// path found may be dropped by an invalidation that completes before the walk
    /// starts, and a walk built on it must not fill the caches.
    pub(crate) fn new(unit: &'a Unit<M>, req: &'a Request, obs: &'a mut O, mode: WalkMode) -> Self {
        let normal = mode == WalkMode::Normal;
        Self {
            unit,
            req,
            obs,
            mode,
            fpd: false,
            caching: normal && unit.caches.enabled,
            epoch: unit.caches.epoch(),
            shard: if normal {
                unit.counters.shard()
            } else {
                unit.counters.sink()
            },
            prefetch: Prefetch::default(),
        }
    }

    /// Translate the request.
    pub(crate) fn run(&mut self) -> Result<Translation, WalkFault> {
        self.count(Counter::Translations);
        let mut restarts = 0;
        let result = loop {
            self.fpd = false;
            match self.translate_once() {
                Ok(t) => break Ok(t),
                Err(Stop::Fault(f)) => break Err(*f),
                Err(Stop::Restart) if restarts < MAX_RESTARTS => {
                    restarts += 1;
                    // The retry reads everything afresh.
                    self.prefetch = Prefetch::default();
                    self.epoch = self.unit.caches.epoch();
                }
                Err(Stop::Restart) => {
                    break Err(self.fault(
                        FaultReason::SfsAdUpdateFailed,
                        FaultStage::FirstStageAdUpdate,
                    ));
                }
            }
        };
        if result.is_ok() {
            self.count(Counter::TranslationsOk);
        }
        self.obs.event(WalkEvent::Done(result));
        result.map_err(|f| (f, self.fpd))
    }

    fn translate_once(&mut self) -> Result<Translation, Stop> {
        let state = self.unit.root_state();
        if !state.enabled() {
            return Ok(Translation {
                hpa: self.req.addr,
                page_size: vtd_spec::addr::PageSize::Size4K,
                perms: Perms::READ | Perms::WRITE,
                kind: TranslationKind::Disabled,
                did: None,
                gpa: None,
                from_iotlb: false,
            });
        }
        match state.ttm() {
            Ttm::Scalable if self.unit.config.ecap.smts() => self.scalable(state.root_table()),
            Ttm::Legacy => self.legacy(state.root_table()),
            // Abort-DMA mode blocks every request without logging it (a model choice: the
            // mode exists to block DMA while tables are rebuilt).
            Ttm::AbortDma if self.unit.config.ecap.adms() => {
                let mut fault = self.fault(FaultReason::RtaInvalid, FaultStage::RootPointer);
                fault.recording = crate::fault::FaultRecording::AbortDmaMode;
                Err(fault.into())
            }
            // TTM=10b, TTM=11b without ADMS, or scalable mode on a unit without SMTS.
            _ => Err(self
                .fault(FaultReason::RtaInvalid, FaultStage::RootPointer)
                .into()),
        }
    }

    /// A fault of `reason` at `stage` for this request.
    pub(crate) fn fault(&self, reason: FaultReason, stage: FaultStage) -> Fault {
        Fault::new(reason, stage, self.req)
    }

    /// Bump a counter (a dry run's counts go to the sink).
    #[inline]
    pub(crate) fn count(&self, counter: Counter) {
        self.shard.inc(counter);
    }

    /// Count a cache lookup and tell the observer.
    #[inline]
    pub(crate) fn cache_result(&mut self, cache: crate::trace::CacheKind, hit: bool) {
        use crate::trace::CacheKind;
        let (hit_counter, miss_counter) = match cache {
            CacheKind::Context => (Counter::ContextCacheHits, Counter::ContextCacheMisses),
            CacheKind::Pasid => (Counter::PasidCacheHits, Counter::PasidCacheMisses),
            CacheKind::Iotlb => (Counter::IotlbHits, Counter::IotlbMisses),
            CacheKind::FirstStagePsc => (Counter::FsPscHits, Counter::FsPscMisses),
            CacheKind::SecondStagePsc => (Counter::SsPscHits, Counter::SsPscMisses),
            CacheKind::DevTlb => (Counter::DevTlbHits, Counter::DevTlbMisses),
        };
        self.count(if hit { hit_counter } else { miss_counter });
        self.obs.event(WalkEvent::Cache { cache, hit });
    }

    /// What a cache fill of this walk carries: its start epoch as the entry's stamp, and
    /// the check under the set lock that it did not race with an invalidation (a refused
    /// fill is counted by [`Walker::note_fill`]).
    pub(crate) fn fill_guard(&self) -> crate::cache::EpochFill<'_> {
        self.unit.caches.fill_from(self.epoch)
    }

    /// Count a fill the epoch check refused; pass the fill's result on.
    #[inline]
    pub(crate) fn note_fill(&self, inserted: Option<SlotRef>) -> Option<SlotRef> {
        if inserted.is_none() {
            self.count(Counter::FillsDropped);
        }
        inserted
    }

    /// Caching mode (CAP.CM): not-present entries are cached too.
    pub(crate) fn caching_mode(&self) -> bool {
        self.unit.config.cap.cm()
    }

    /// Read an aligned qword of a table.
    pub(crate) fn read_u64(&self, addr: u64) -> Result<u64, MemError> {
        self.unit.mem.read_u64(addr)
    }

    /// Read an aligned 128-bit value of a table.
    pub(crate) fn read_u128(&self, addr: u64) -> Result<u128, MemError> {
        self.unit.mem.read_u128(addr)
    }

    /// True when the request's address lands in the interrupt range once translated.
    pub(crate) fn check_output(&self, hpa: u64, legacy: bool) -> Result<(), Fault> {
        if vtd_spec::addr::in_interrupt_range(hpa) {
            let reason = if legacy {
                FaultReason::LgnInterruptRange
            } else {
                FaultReason::SgnInterruptRange
            };
            return Err(self.fault(reason, FaultStage::Output));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::{Format, Leaf, PageTable, ScalableTables, nested_pasid_entry};
    use crate::cache::CacheConfig;
    use crate::invalidation::Invalidation;
    use crate::trace::NoTrace;
    use crate::workload::NestedBench;
    use std::sync::atomic::{AtomicU64, Ordering};
    use vtd_spec::pasid::Fspm;
    use vtd_spec::regs::offset;

    const X: u64 = 0x1000_0000;
    const Y: u64 = 0x2000_0000;
    /// Guest pages the test's second first-stage table is built in, above the fixture's.
    const NEW_TABLES: u64 = NestedBench::GUEST_TABLES + 0x20_0000;

    /// A walk whose context and PASID entries the fast path looked up before a PASID
    /// entry switch and its invalidations completed must not cache what it walks: the
    /// next translation would otherwise get the old table's page from the IOTLB.
    #[test]
    fn a_walk_reusing_lookups_older_than_a_completed_invalidation_fills_nothing() {
        let b = NestedBench::new(PageSize::Size4K, CacheConfig::default()).unwrap();
        let (old_gpa, new_gpa) = (0x10_0000, 0x20_0000);
        b.fs()
            .map(X, 0x30_0000, PageSize::Size4K, Leaf::read_write())
            .unwrap();
        b.fs()
            .map(Y, old_gpa, PageSize::Size4K, Leaf::read_write())
            .unwrap();
        // X puts the context and PASID entries in their caches; Y stays out of the IOTLB.
        let x = NestedBench::read(X);
        b.unit.translate(&x).unwrap();
        b.unit.translate(&x).unwrap();

        let y = NestedBench::read(Y);
        let mut obs = NoTrace;
        let mut walker = Walker::new(&b.unit, &y, &mut obs, WalkMode::Normal);
        assert!(b.unit.fast_path(&y, &mut walker.prefetch).is_none());
        assert!(
            walker.prefetch.pasid.is_some(),
            "the PASID entry came from the cache"
        );

        // The guest switches the PASID entry to a new first stage mapping Y elsewhere,
        // and invalidates the PASID cache and the PASID's IOTLB entries.
        let mem = b.unit.mem();
        let next = AtomicU64::new(NEW_TABLES);
        let mut new_fs = PageTable::new(
            mem,
            Format::FirstStage,
            4,
            || next.fetch_add(4096, Ordering::Relaxed),
            |g| g + NestedBench::GUEST_BASE,
        );
        new_fs
            .map(Y, new_gpa, PageSize::Size4K, Leaf::read_write())
            .unwrap();
        let rtaddr = b.unit.mmio_read(offset::RTADDR, 8).unwrap() & !0xFFF;
        let tables = ScalableTables::with_root(mem, mem, rtaddr);
        let (sid, pasid, did) = (NestedBench::SID, NestedBench::PASID, NestedBench::DID);
        let old = tables.pasid_entry(sid, pasid).unwrap();
        let new = nested_pasid_entry(old.ss_table(), new_fs.root(), Fspm::Level4, did, 2);
        tables.set_pasid_entry(sid, pasid, new).unwrap();
        b.unit
            .invalidate(Invalidation::PasidCachePasid { did, pasid });
        b.unit
            .invalidate(Invalidation::PasidIotlbPasid { did, pasid });

        // The walk still runs on the old entry (it raced the switch), but caches nothing.
        walker.run().unwrap();
        let t = b.unit.translate(&y).unwrap();

        assert_eq!(t.hpa, NestedBench::GUEST_BASE + new_gpa);
    }
}
