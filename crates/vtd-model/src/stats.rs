//! Per-unit counters, cheap enough to stay on in the translation hot path.
//!
//! Hot counters live in per-thread shards: each thread claims a shard index of its own
//! for its lifetime and bumps its counters with a plain relaxed load and store, so a
//! translation costs no locked instruction and threads never share a cache line. Threads
//! beyond [`SHARDS`] share one overflow shard updated with `fetch_add`. Faults are
//! counted by reason in one array with `fetch_add` (the slow path).

use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use vtd_spec::fault::FaultReason;

/// Number of exclusive shards; further threads share an overflow shard.
pub const SHARDS: usize = 32;

macro_rules! counters {
    ($( $(#[$doc:meta])* $field:ident => $variant:ident, )*) => {
        /// Index of a hot counter.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(usize)]
        pub(crate) enum Counter { $( $variant, )* }

        const COUNTERS: usize = [$(Counter::$variant,)*].len();

        /// A snapshot of a unit's counters.
        #[derive(Clone, Debug, Default, PartialEq, Eq)]
        pub struct Stats {
            $( $(#[$doc])* pub $field: u64, )*
            /// Faults detected, by reason (recorded or not).
            pub faults_by_reason: BTreeMap<FaultReason, u64>,
        }

        impl Stats {
            fn from_counters(c: &[u64; COUNTERS]) -> Self {
                Self { $( $field: c[Counter::$variant as usize], )* faults_by_reason: BTreeMap::new() }
            }

            /// Every hot counter as (name, value), in declaration order.
            pub fn counters(&self) -> Vec<(&'static str, u64)> {
                vec![$( (stringify!($field), self.$field), )*]
            }
        }
    };
}

counters! {
    /// Requests handed to `translate`.
    translations => Translations,
    /// Translations that succeeded.
    translations_ok => TranslationsOk,
    /// Translations served from the IOTLB without a page walk.
    served_from_iotlb => ServedFromIotlb,
    /// Root-entry reads.
    root_reads => RootReads,
    /// Context-entry reads.
    context_reads => ContextReads,
    /// PASID-directory-entry reads.
    pasid_dir_reads => PasidDirReads,
    /// PASID-table-entry reads.
    pasid_entry_reads => PasidEntryReads,
    /// First-stage paging-entry reads.
    fs_entry_reads => FsEntryReads,
    /// Second-stage entry reads made to fetch first-stage tables (nested).
    ss_reads_for_fs_tables => SsReadsForFsTables,
    /// Second-stage entry reads made to translate the final address.
    ss_reads_final => SsReadsFinal,
    /// First-stage A/D/EA updates written.
    fs_ad_writes => FsAdWrites,
    /// First-stage A/D updates written only because of the SPR17 erratum.
    fs_ad_writes_by_erratum => FsAdWritesByErratum,
    /// Second-stage A/D updates written.
    ss_ad_writes => SsAdWrites,
    /// Context-cache hits.
    context_cache_hits => ContextCacheHits,
    /// Context-cache misses.
    context_cache_misses => ContextCacheMisses,
    /// PASID-cache hits.
    pasid_cache_hits => PasidCacheHits,
    /// PASID-cache misses.
    pasid_cache_misses => PasidCacheMisses,
    /// IOTLB hits.
    iotlb_hits => IotlbHits,
    /// IOTLB misses.
    iotlb_misses => IotlbMisses,
    /// First-stage paging-structure-cache hits.
    fs_psc_hits => FsPscHits,
    /// First-stage paging-structure-cache misses.
    fs_psc_misses => FsPscMisses,
    /// Second-stage paging-structure-cache hits.
    ss_psc_hits => SsPscHits,
    /// Second-stage paging-structure-cache misses.
    ss_psc_misses => SsPscMisses,
    /// Device-TLB hits.
    devtlb_hits => DevTlbHits,
    /// Device-TLB misses.
    devtlb_misses => DevTlbMisses,
    /// Cache fills dropped because an invalidation ran during the walk.
    fills_dropped => FillsDropped,
    /// Invalidation descriptors processed (queued or register-based).
    invalidations => Invalidations,
    /// Invalidation-wait descriptors completed.
    invalidation_waits => InvalidationWaits,
    /// Fault events (MSI) signalled.
    fault_events => FaultEvents,
    /// Invalidation-completion events (MSI) signalled.
    completion_events => CompletionEvents,
    /// Translations served by the fast path: each stands for one translation, one
    /// success, and hits in the context cache, PASID cache and IOTLB.
    fast_hits => FastHits,
}

impl Stats {
    /// Total faults detected.
    pub fn faults(&self) -> u64 {
        self.faults_by_reason.values().sum()
    }

    /// Paging-structure reads (first-stage entries plus every second-stage read), §6.2.
    pub fn paging_reads(&self) -> u64 {
        self.fs_entry_reads + self.ss_reads_for_fs_tables + self.ss_reads_final
    }

    /// The difference `self - earlier`, counter by counter.
    pub fn since(&self, earlier: &Stats) -> Stats {
        let now = self.counters();
        let then = earlier.counters();
        let mut diff = [0u64; COUNTERS];
        for (i, d) in diff.iter_mut().enumerate() {
            *d = now[i].1.wrapping_sub(then[i].1);
        }
        let mut out = Stats::from_counters(&diff);
        for (reason, n) in &self.faults_by_reason {
            let before = earlier.faults_by_reason.get(reason).copied().unwrap_or(0);
            if *n > before {
                out.faults_by_reason.insert(*reason, n - before);
            }
        }
        out
    }
}

/// One cache-line-aligned shard of hot counters.
#[repr(align(128))]
struct Shard([AtomicU64; COUNTERS]);

impl Shard {
    fn new() -> Self {
        Self(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

/// One thread's view of its shard.
#[derive(Clone, Copy)]
pub(crate) struct ShardRef<'a> {
    cells: &'a [AtomicU64; COUNTERS],
    exclusive: bool,
}

impl ShardRef<'_> {
    /// Add `n` to `counter`.
    #[inline]
    pub(crate) fn add(self, counter: Counter, n: u64) {
        let cell = &self.cells[counter as usize];
        if self.exclusive {
            // This thread owns the shard: no other thread writes the cell.
            cell.store(
                cell.load(Ordering::Relaxed).wrapping_add(n),
                Ordering::Relaxed,
            );
        } else {
            cell.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Add one to `counter`.
    #[inline]
    pub(crate) fn inc(self, counter: Counter) {
        self.add(counter, 1);
    }
}

/// The counters of one unit.
pub(crate) struct Counters {
    shards: Box<[Shard]>,
    /// Where walks that must not count (dry runs) count: never read, so a walk can bump
    /// counters without first asking whether it may.
    sink: Box<Shard>,
    faults: Box<[AtomicU64]>,
}

static CLAIMED: [AtomicBool; SHARDS] = [const { AtomicBool::new(false) }; SHARDS];

/// A thread's claim on a shard index, released when the thread exits.
struct ShardClaim(usize);

impl ShardClaim {
    fn claim() -> Self {
        for (i, slot) in CLAIMED.iter().enumerate() {
            if slot
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                return ShardClaim(i);
            }
        }
        ShardClaim(SHARDS)
    }
}

impl Drop for ShardClaim {
    fn drop(&mut self) {
        // Counters bumped by later thread-local destructors go to the shared shard.
        let _ = CACHED_INDEX.try_with(|c| c.set(SHARDS));
        if let Some(slot) = CLAIMED.get(self.0) {
            slot.store(false, Ordering::Release);
        }
    }
}

thread_local! {
    static CLAIM: ShardClaim = ShardClaim::claim();
    static CACHED_INDEX: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// The calling thread's shard index (`SHARDS` for threads beyond the exclusive shards).
#[inline(always)]
pub(crate) fn shard_index() -> usize {
    let cached = CACHED_INDEX.with(Cell::get);
    if cached != usize::MAX {
        return cached;
    }
    claim_shard_index()
}

/// A thread's first increment: claim a shard. Kept out of line so the common case above
/// inlines into every counter bump.
#[cold]
#[inline(never)]
fn claim_shard_index() -> usize {
    // During thread teardown the claim may already be gone; use the shared shard then.
    let index = CLAIM.try_with(|c| c.0).unwrap_or(SHARDS);
    CACHED_INDEX.with(|c| c.set(index));
    index
}

impl Counters {
    pub(crate) fn new() -> Self {
        Self {
            shards: (0..=SHARDS).map(|_| Shard::new()).collect(),
            sink: Box::new(Shard::new()),
            faults: (0..256).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// The calling thread's shard, resolved once for a run of increments.
    #[inline(always)]
    pub(crate) fn shard(&self) -> ShardRef<'_> {
        self.shard_at(shard_index())
    }

    /// The shard of index `index` (from [`shard_index`]).
    #[inline(always)]
    pub(crate) fn shard_at(&self, index: usize) -> ShardRef<'_> {
        ShardRef {
            cells: &self.shards[index].0,
            exclusive: index < SHARDS,
        }
    }

    /// A shard whose counts go nowhere, for walks without side effects. Concurrent users
    /// may lose each other's increments; nothing reads them.
    #[inline]
    pub(crate) fn sink(&self) -> ShardRef<'_> {
        ShardRef {
            cells: &self.sink.0,
            exclusive: true,
        }
    }

    /// Add `n` to `counter` in the calling thread's shard.
    #[inline]
    pub(crate) fn add(&self, counter: Counter, n: u64) {
        self.shard().add(counter, n);
    }

    /// Add one to `counter`.
    #[inline]
    pub(crate) fn inc(&self, counter: Counter) {
        self.add(counter, 1);
    }

    /// Count a fault of `reason`.
    pub(crate) fn fault(&self, reason: FaultReason) {
        self.faults[reason.code() as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Sum every shard.
    pub(crate) fn snapshot(&self) -> Stats {
        let mut sums = [0u64; COUNTERS];
        for shard in self.shards.iter() {
            for (sum, cell) in sums.iter_mut().zip(shard.0.iter()) {
                *sum = sum.wrapping_add(cell.load(Ordering::Relaxed));
            }
        }
        let mut stats = Stats::from_counters(&sums);
        let fast = stats.fast_hits;
        for counter in [
            &mut stats.translations,
            &mut stats.translations_ok,
            &mut stats.context_cache_hits,
            &mut stats.pasid_cache_hits,
            &mut stats.iotlb_hits,
            &mut stats.served_from_iotlb,
        ] {
            *counter += fast;
        }
        for &reason in FaultReason::ALL {
            let n = self.faults[reason.code() as usize].load(Ordering::Relaxed);
            if n != 0 {
                stats.faults_by_reason.insert(reason, n);
            }
        }
        stats
    }

    /// Zero every counter. Increments racing with the reset may survive it.
    pub(crate) fn reset(&self) {
        for shard in self.shards.iter() {
            for cell in shard.0.iter() {
                cell.store(0, Ordering::Relaxed);
            }
        }
        for cell in self.faults.iter() {
            cell.store(0, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_from_many_threads_sum_exactly() {
        let counters = Counters::new();
        std::thread::scope(|s| {
            for _ in 0..(SHARDS + 4) {
                s.spawn(|| {
                    for _ in 0..1000 {
                        counters.inc(Counter::Translations);
                    }
                });
            }
        });
        assert_eq!(counters.snapshot().translations, (SHARDS as u64 + 4) * 1000);
    }

    #[test]
    fn faults_are_counted_by_reason() {
        let counters = Counters::new();
        counters.fault(FaultReason::SfsAdWriteDenied);
        counters.fault(FaultReason::SfsAdWriteDenied);
        let stats = counters.snapshot();
        assert_eq!(
            stats.faults_by_reason.get(&FaultReason::SfsAdWriteDenied),
            Some(&2)
        );
        assert_eq!(stats.faults(), 2);
    }

    #[test]
    fn since_subtracts_counter_by_counter() {
        let counters = Counters::new();
        counters.add(Counter::FsEntryReads, 4);
        let before = counters.snapshot();
        counters.add(Counter::FsEntryReads, 3);
        counters.fault(FaultReason::SgnReadDenied);
        let diff = counters.snapshot().since(&before);
        assert_eq!(diff.fs_entry_reads, 3);
        assert_eq!(diff.faults(), 1);
    }
}
