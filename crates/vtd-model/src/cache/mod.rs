//! The unit's translation caches (§6.4, §8.1) and what each invalidation drops (§8.4).
//!
//! | cache | key | tagged for invalidation by |
//! |---|---|---|
//! | context cache | source id | SID (+FM); legacy DID |
//! | PASID cache | source id, PASID | DID, PASID |
//! | IOTLB | DID, PASID (first-stage and nested only), input page, page size | DID, PASID, address, kind |
//! | first-stage PSC | DID, PASID, level, input-address prefix | DID, PASID, address |
//! | second-stage PSC | DID, level, input-address prefix | DID, address |
//! | device-TLB | source id, PASID, input page, page size | SID, PASID, address |
//!
//! A stale entry is served until an invalidation drops it, as on hardware. With
//! [`CacheConfig::enabled`] off nothing is cached (reference runs). With CAP.CM=1,
//! not-present entries are cached too ("negative" entries), so software must invalidate
//! after making an entry present, as the architecture requires in caching mode.
//! Pass-through translations are served by the PASID cache alone, never the IOTLB.

mod entries;
mod seqcache;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

pub(crate) use entries::{
    CachedContext, CachedPasid, Denial, DevTlbEntry, FrontEntry, FsPscEntry, IotlbEntry, IotlbKind,
    SsPscEntry, size_code,
};
use seqcache::{Fill, Fold, SeqCache};
pub(crate) use seqcache::{SlotRef, Unguarded};
use vtd_spec::addr::PageSize;

use crate::invalidation::Invalidation;
use crate::stats::SHARDS;

/// How a full set picks its victim.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Replacement {
    /// Second-chance clock: a hit marks the entry, the hand skips marked entries once.
    /// Approximates LRU without writing on every hit (default).
    #[default]
    Clock,
    /// First in, first out.
    Fifo,
    /// Pseudo-random (deterministic xorshift sequence).
    Random,
}

/// Sets × ways of one cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Geometry {
    /// Number of sets (rounded up to a power of two).
    pub sets: usize,
    /// Entries per set.
    pub ways: usize,
}

impl Geometry {
    /// `sets` × `ways`.
    pub const fn new(sets: usize, ways: usize) -> Self {
        Self { sets, ways }
    }

    /// Total entries.
    pub const fn entries(&self) -> usize {
        self.sets * self.ways
    }
}

/// Cache sizes and replacement policy. Real parts do not publish their sizes; the defaults
/// are plausible orders of magnitude, and QEMU's IOTLB holds 1024 entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CacheConfig {
    /// Cache anything at all. Off gives reference runs where every request walks.
    pub enabled: bool,
    /// Context cache (default 16 × 4).
    pub context: Geometry,
    /// PASID cache (default 32 × 4).
    pub pasid: Geometry,
    /// IOTLB (default 256 × 4 = 1024 entries).
    pub iotlb: Geometry,
    /// First-stage paging-structure cache (default 64 × 4).
    pub fs_psc: Geometry,
    /// Second-stage paging-structure cache (default 64 × 4).
    pub ss_psc: Geometry,
    /// Device-TLB of ATS endpoints behind the unit (default 64 × 4).
    pub devtlb: Geometry,
    /// Replacement policy of every cache.
    pub replacement: Replacement,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            context: Geometry::new(16, 4),
            pasid: Geometry::new(32, 4),
            iotlb: Geometry::new(256, 4),
            fs_psc: Geometry::new(64, 4),
            ss_psc: Geometry::new(64, 4),
            devtlb: Geometry::new(64, 4),
            replacement: Replacement::Clock,
        }
    }
}

impl CacheConfig {
    /// No caching at all.
    pub fn disabled() -> Self {
        Self {
            enabled: false,
            ..Self::default()
        }
    }

    /// Check every geometry is usable (at least one entry, at most 2^24).
    pub fn validate(&self) -> Result<(), String> {
        let all = [
            ("context", self.context),
            ("pasid", self.pasid),
            ("iotlb", self.iotlb),
            ("fs_psc", self.fs_psc),
            ("ss_psc", self.ss_psc),
            ("devtlb", self.devtlb),
        ];
        for (name, g) in all {
            if g.sets == 0 || g.ways == 0 || g.sets.saturating_mul(g.ways) > 1 << 24 {
                return Err(format!(
                    "{name} cache needs 1..=2^24 entries, got {} sets x {} ways",
                    g.sets, g.ways
                ));
            }
        }
        Ok(())
    }
}

/// Every cache of one unit plus the invalidation epoch.
pub(crate) struct Caches {
    pub(crate) enabled: bool,
    /// Bumped by every invalidation before it drops anything and again when it is done,
    /// so it is odd while one runs. A walk notes it before its first lookup; its fills
    /// are refused unless it is even and unchanged (see [`EpochFill`]).
    epoch: AtomicU64,
    /// Serialises invalidations, so the epoch is odd exactly while one runs.
    invalidating: Mutex<()>,
    /// Full clears of the context cache, PASID cache or IOTLB so far, counted after each
    /// is done. A front-cache entry keeps the count read before its sources were looked
    /// up and is served only while it is unchanged: a full clear touches no slot, so the
    /// sources' slot references alone would not see it.
    full_clears: AtomicU64,
    pub(crate) context: SeqCache<1, 3>,
    pub(crate) pasid: SeqCache<1, 3>,
    pub(crate) iotlb: SeqCache<2, 2>,
    pub(crate) fs_psc: SeqCache<2, 2>,
    pub(crate) ss_psc: SeqCache<2, 1>,
    pub(crate) devtlb: SeqCache<2, 1>,
    /// Not an architectural cache: answers for request shapes, each tied to the
    /// context-cache, PASID-cache and IOTLB entries it came from and served only while
    /// they are cached unchanged (see [`FrontEntry`]). It needs no invalidation.
    ///
    /// One per thread (by counter-shard index, made on a thread's first use; threads
    /// beyond the shards share the last): an entry is only a shortcut to what the three
    /// caches hold, so no thread needs another's, and keeping them apart keeps one
    /// thread's fills from invalidating the lines every other thread probes.
    ///
    /// Held inline, not boxed, so a probe reaches its thread's cache without one more
    /// dependent load.
    fronts: [OnceLock<SeqCache<2, 10, Fold>>; SHARDS + 1],
    /// Geometry of each front cache (that of the IOTLB).
    front_geometry: (usize, usize),
}

impl Caches {
    pub(crate) fn new(config: &CacheConfig) -> Self {
        let make = |g: Geometry| (g.sets, g.ways);
        let policy = config.replacement;
        let (cs, cw) = make(config.context);
        let (ps, pw) = make(config.pasid);
        let (is, iw) = make(config.iotlb);
        let (fs, fw) = make(config.fs_psc);
        let (ss, sw) = make(config.ss_psc);
        let (ds, dw) = make(config.devtlb);
        Self {
            enabled: config.enabled,
            epoch: AtomicU64::new(0),
            invalidating: Mutex::new(()),
            full_clears: AtomicU64::new(0),
            context: SeqCache::new(cs, cw, policy),
            pasid: SeqCache::new(ps, pw, policy),
            iotlb: SeqCache::new(is, iw, policy),
            fs_psc: SeqCache::new(fs, fw, policy),
            ss_psc: SeqCache::new(ss, sw, policy),
            devtlb: SeqCache::new(ds, dw, policy),
            fronts: std::array::from_fn(|_| OnceLock::new()),
            front_geometry: (is, iw),
        }
    }

    /// The front cache of the thread with counter-shard index `shard`, if it made one.
    #[inline(always)]
    pub(crate) fn front(&self, shard: usize) -> Option<&SeqCache<2, 10, Fold>> {
        self.fronts.get(shard)?.get()
    }

    /// The front cache of the thread with counter-shard index `shard`, made if need be.
    pub(crate) fn front_or_make(&self, shard: usize) -> &SeqCache<2, 10, Fold> {
        self.fronts[shard.min(SHARDS)].get_or_init(|| {
            let (sets, ways) = self.front_geometry;
            SeqCache::new(sets, ways, Replacement::Fifo)
        })
    }

    /// The current invalidation epoch (odd while an invalidation runs); a walk reads it
    /// before its first cache lookup or table read.
    #[inline]
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Full clears of the caches a front-cache entry comes from, so far (read it before
    /// looking the sources up).
    #[inline(always)]
    pub(crate) fn full_clears(&self) -> u64 {
        self.full_clears.load(Ordering::Acquire)
    }

    /// The fill of an entry whose data was read from `epoch` on (the value
    /// [`Caches::epoch`] gave before the first read).
    #[inline]
    pub(crate) fn fill_from(&self, epoch: u64) -> EpochFill<'_> {
        EpochFill {
            current: &self.epoch,
            started: epoch,
        }
    }

    /// Drop what `inv` covers (§8.4).
    ///
    /// The epoch goes odd before anything is dropped and even again after: a walk that
    /// started before the invalidation, or during it (and so may have found an entry
    /// the pass had not reached yet), fills nothing; a walk that starts after it cannot
    /// see what it dropped. A full clear drops every entry stamped before it.
    pub(crate) fn invalidate(&self, inv: &Invalidation) {
        let _serial = self.invalidating.lock().unwrap_or_else(|e| e.into_inner());
        let epoch = self.epoch.fetch_add(1, Ordering::SeqCst) + 1;
        debug_assert!(epoch & 1 == 1, "invalidations are serialised");
        // The closing bump runs even if a drop panics, so the epoch never stays odd (which
        // would refuse every fill from then on).
        let _close = EpochClose(&self.epoch);
        self.drop_covered(inv, epoch);
        if matches!(
            inv,
            Invalidation::Everything
                | Invalidation::ContextAll
                | Invalidation::PasidCacheAll
                | Invalidation::IotlbAll
        ) {
            // After the clears: a front fill that read the old count may have looked its
            // sources up before them, and is served no more.
            self.full_clears.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// The drops of [`Caches::invalidate`], in invalidation epoch `epoch`.
    fn drop_covered(&self, inv: &Invalidation, epoch: u64) {
        match *inv {
            Invalidation::Everything => {
                self.context.clear(epoch);
                self.pasid.clear(epoch);
                self.iotlb.clear(epoch);
                self.fs_psc.clear(epoch);
                self.ss_psc.clear(epoch);
                self.devtlb.clear(epoch);
            }
            Invalidation::ContextAll => {
                self.context.clear(epoch);
            }
            Invalidation::ContextDomain { did } => {
                self.context
                    .retain_not(|_, v| CachedContext::decode(v).legacy_did() == Some(did));
            }
            Invalidation::ContextDevice { sid, fm } => {
                let mask = function_mask(fm);
                self.context
                    .retain_not(|k, _| CachedContext::key_sid(k) & mask == sid & mask);
            }
            Invalidation::PasidCacheAll => {
                self.pasid.clear(epoch);
            }
            Invalidation::PasidCacheDomain { did } => {
                self.pasid
                    .retain_not(|_, v| CachedPasid::decode(v).did() == did);
            }
            Invalidation::PasidCachePasid { did, pasid } => {
                self.pasid.retain_not(|k, v| {
                    let e = CachedPasid::decode(v);
                    // A negative entry carries no DID of its own: the PASID decides.
                    CachedPasid::key_pasid(k) == pasid && (e.did() == did || e.is_negative())
                });
            }
            Invalidation::IotlbAll => {
                self.iotlb.clear(epoch);
                self.fs_psc.clear(epoch);
                self.ss_psc.clear(epoch);
            }
            Invalidation::IotlbDomain { did } => {
                self.iotlb.retain_not(|k, _| IotlbEntry::key_did(k) == did);
                self.fs_psc.retain_not(|k, _| FsPscEntry::key_did(k) == did);
                self.ss_psc.retain_not(|k, _| SsPscEntry::key_did(k) == did);
            }
            Invalidation::IotlbPage { did, addr, am, ih } => {
                let (start, end) = Invalidation::page_range(addr, am);
                // Second-stage entries by range; first-stage and nested entries (indexed by
                // first-stage address) of the whole domain.
                self.iotlb.retain_not(|k, v| {
                    IotlbEntry::key_did(k) == did
                        && match IotlbEntry::decode(v).kind {
                            IotlbKind::SecondStage => IotlbEntry::key_overlaps(k, start, end),
                            _ => true,
                        }
                });
                self.fs_psc.retain_not(|k, _| FsPscEntry::key_did(k) == did);
                if !ih {
                    self.ss_psc.retain_not(|k, _| {
                        SsPscEntry::key_did(k) == did && SsPscEntry::key_overlaps(k, start, end)
                    });
                }
            }
            Invalidation::PasidIotlbPasid { did, pasid } => {
                self.iotlb.retain_not(|k, _| {
                    IotlbEntry::key_did(k) == did && IotlbEntry::key_pasid(k) == Some(pasid)
                });
                self.fs_psc.retain_not(|k, _| {
                    FsPscEntry::key_did(k) == did && FsPscEntry::key_pasid(k) == pasid
                });
            }
            Invalidation::PasidIotlbPage {
                did,
                pasid,
                addr,
                am,
                ih,
            } => {
                let (start, end) = Invalidation::page_range(addr, am);
                self.iotlb.retain_not(|k, _| {
                    IotlbEntry::key_did(k) == did
                        && IotlbEntry::key_pasid(k) == Some(pasid)
                        && IotlbEntry::key_overlaps(k, start, end)
                });
                if !ih {
                    self.fs_psc.retain_not(|k, _| {
                        FsPscEntry::key_did(k) == did
                            && FsPscEntry::key_pasid(k) == pasid
                            && FsPscEntry::key_overlaps(k, start, end)
                    });
                }
            }
            Invalidation::DevTlb { sid, addr, size } => {
                self.devtlb.retain_not(|k, _| {
                    DevTlbEntry::key_sid(k) == sid
                        && DevTlbEntry::key_pasid(k).is_none()
                        && (size == 0 || DevTlbEntry::key_overlaps(k, addr, addr + (size - 1)))
                });
            }
            Invalidation::PasidDevTlb {
                sid,
                pasid,
                global,
                addr,
                size,
            } => {
                self.devtlb.retain_not(|k, _| {
                    DevTlbEntry::key_sid(k) == sid
                        && (global || DevTlbEntry::key_pasid(k) == Some(pasid))
                        && (size == 0 || DevTlbEntry::key_overlaps(k, addr, addr + (size - 1)))
                });
            }
        }
    }

    /// Number of entries held by each cache: (context, pasid, iotlb, fs_psc, ss_psc, devtlb).
    pub(crate) fn occupancy(&self) -> CacheOccupancy {
        CacheOccupancy {
            context: self.context.len(),
            pasid: self.pasid.len(),
            iotlb: self.iotlb.len(),
            fs_psc: self.fs_psc.len(),
            ss_psc: self.ss_psc.len(),
            devtlb: self.devtlb.len(),
        }
    }
}

/// Moves the epoch back to even when an invalidation is done (see [`Caches::invalidate`]).
struct EpochClose<'a>(&'a AtomicU64);

impl Drop for EpochClose<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A fill from a walk that started in invalidation epoch `started`: stamped with it, and
/// dropped when an invalidation was running when the walk started (odd epoch) or began
/// since. The check runs under the set lock, which orders it against an invalidation's
/// pass over that set; a full clear, which passes over no set, drops a fill that got
/// through just before it by the stamp.
pub(crate) struct EpochFill<'a> {
    current: &'a AtomicU64,
    started: u64,
}

impl Fill for EpochFill<'_> {
    #[inline]
    fn stamp(&self) -> u64 {
        self.started
    }

    #[inline]
    fn still_valid(&self) -> bool {
        self.started & 1 == 0 && self.current.load(Ordering::Acquire) == self.started
    }
}

/// The entry of a size-keyed cache (IOTLB, device-TLB) that `key_of` finds, smallest page
/// first and skipping sizes never inserted: its value, where it sits and its page size.
#[inline(always)]
pub(crate) fn lookup_page<const V: usize>(
    cache: &SeqCache<2, V>,
    key_of: impl Fn(PageSize) -> [u64; 2],
) -> Option<([u64; V], SlotRef, PageSize)> {
    for size in PageSize::ALL {
        if !cache.may_hold(size_code(size) as u32) {
            continue;
        }
        if let Some((value, slot)) = cache.lookup_ref(&key_of(size)) {
            return Some((value, slot, size));
        }
    }
    None
}

/// How many entries each cache holds right now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheOccupancy {
    /// Context-cache entries.
    pub context: usize,
    /// PASID-cache entries.
    pub pasid: usize,
    /// IOTLB entries.
    pub iotlb: usize,
    /// First-stage paging-structure-cache entries.
    pub fs_psc: usize,
    /// Second-stage paging-structure-cache entries.
    pub ss_psc: usize,
    /// Device-TLB entries.
    pub devtlb: usize,
}

/// The source-id bits a function mask keeps (§1.6): FM=1 ignores SID bit 2, FM=2 bits 2:1,
/// FM=3 bits 2:0.
fn function_mask(fm: u8) -> u16 {
    let fm = fm.min(3) as u16;
    !(((1u16 << fm) - 1) << (3 - fm))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invalidation_leaves_the_epoch_even_and_advanced() {
        let caches = Caches::new(&CacheConfig::default());
        let before = caches.epoch();
        caches.invalidate(&Invalidation::IotlbAll);
        assert_eq!(caches.epoch(), before + 2);
    }

    #[test]
    fn a_fill_from_a_walk_that_started_during_an_invalidation_is_refused() {
        let caches = Caches::new(&CacheConfig::default());
        // As a walk sees the epoch between an invalidation's first bump and its last.
        caches.epoch.store(1, Ordering::SeqCst);
        assert!(!caches.fill_from(caches.epoch()).still_valid());
    }

    #[test]
    fn a_fill_from_a_walk_that_started_before_an_invalidation_is_refused() {
        let caches = Caches::new(&CacheConfig::default());
        let started = caches.epoch();
        caches.invalidate(&Invalidation::ContextAll);
        assert!(!caches.fill_from(started).still_valid());
        assert!(caches.fill_from(caches.epoch()).still_valid());
    }

    #[test]
    fn function_mask_ignores_high_function_bits_first() {
        assert_eq!(function_mask(0), 0xFFFF);
        assert_eq!(function_mask(1), !0b100);
        assert_eq!(function_mask(2), !0b110);
        assert_eq!(function_mask(3), !0b111);
    }
}
