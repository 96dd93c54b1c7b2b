//! Several threads translate while another remaps first-stage pages and invalidates them
//! through the invalidation queue. Once an invalidation wait has completed, no
//! translation the preceding descriptors dropped may ever be served again.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use common::{DID, GUEST_BASE, Nested, PASID, SID, nested_entry};
use vtd_model::build::{InvalidationQueue, Leaf};
use vtd_model::config::UnitConfig;
use vtd_model::mem::SparseMem;
use vtd_model::request::Request;
use vtd_spec::addr::PageSize;
use vtd_spec::inv::{
    IotlbInvDesc, PasidCacheGranularity, PasidCacheInvDesc, PasidIotlbGranularity,
    PasidIotlbInvDesc, RawDescriptor,
};
use vtd_spec::regs::IotlbGranularity;

/// Pages being remapped; each has its own IOVA.
const PAGES: u64 = 8;
/// Versions each page goes through (each version is a different guest page).
const VERSIONS: u64 = 1000;
const IOVA_BASE: u64 = 0x5555_0000_0000;
/// Guest pages of version v of page k sit at DATA + (k * VERSIONS + v) * 4 KiB.
const DATA: u64 = 0x0200_0000;

fn iova(page: u64) -> u64 {
    IOVA_BASE + page * 4096
}

fn gpa(page: u64, version: u64) -> u64 {
    DATA + (page * VERSIONS + version) * 4096
}

fn version_of(hpa: u64, page: u64) -> u64 {
    (hpa - GUEST_BASE - DATA) / 4096 - page * VERSIONS
}

#[test]
fn completed_invalidation_never_lets_a_dropped_translation_back() {
    race(leaf_by_leaf(|page| {
        let inv = PasidIotlbInvDesc::new()
            .with_g(PasidIotlbGranularity::Page)
            .with_did(DID)
            .with_pasid(PASID)
            .with_addr(iova(page) >> 12);
        [RawDescriptor {
            lo: inv.into_bits(),
            hi: 0,
        }]
    }));
}

/// The same race with global IOTLB flushes, which empty the IOTLB and both
/// paging-structure caches whole (and reset their record of which kinds they hold) while
/// the translating threads keep refilling them. A global flush costs next to nothing, so
/// without the pause after each round (see `race`) the flushes would follow each other
/// too closely for any translation to be served from the IOTLB.
#[test]
fn a_completed_global_flush_never_lets_a_dropped_translation_back() {
    race(leaf_by_leaf(|_| {
        let inv = IotlbInvDesc::new().with_g(IotlbGranularity::Global);
        [RawDescriptor {
            lo: inv.into_bits(),
            hi: 0,
        }]
    }));
}

/// The PASID entry switches between two first-stage tables, each round to the one
/// holding the next version of every page, invalidated PASID-selectively: a walk that
/// started on the PASID entry the switch replaced (from the PASID cache, or from the
/// lookups of the fast path) must not leave its translation in the IOTLB.
#[test]
fn a_completed_pasid_entry_switch_never_lets_the_old_table_back() {
    race(switching_tables([
        pasid_cache(PasidCacheGranularity::Pasid),
        pasid_iotlb_all(),
    ]));
}

/// The same with global PASID-cache and IOTLB invalidations, which clear their caches
/// whole and so also retire every front-cache entry.
#[test]
fn a_completed_global_pasid_entry_switch_never_lets_the_old_table_back() {
    race(switching_tables([
        pasid_cache(PasidCacheGranularity::Global),
        RawDescriptor {
            lo: IotlbInvDesc::new()
                .with_g(IotlbGranularity::Global)
                .into_bits(),
            hi: 0,
        },
    ]));
}

fn pasid_cache(g: PasidCacheGranularity) -> RawDescriptor {
    RawDescriptor {
        lo: PasidCacheInvDesc::new()
            .with_g(g)
            .with_did(DID)
            .with_pasid(PASID)
            .into_bits(),
        hi: 0,
    }
}

fn pasid_iotlb_all() -> RawDescriptor {
    RawDescriptor {
        lo: PasidIotlbInvDesc::new()
            .with_g(PasidIotlbGranularity::Pasid)
            .with_did(DID)
            .with_pasid(PASID)
            .into_bits(),
        hi: 0,
    }
}

/// The queue the remapping thread invalidates through.
type Queue<'a> = InvalidationQueue<'a, SparseMem, SparseMem>;

/// A round that remaps each page in the first stage to `version` and submits
/// `invalidation(page)` for it, waiting each time.
fn leaf_by_leaf<const N: usize>(
    invalidation: impl Fn(u64) -> [RawDescriptor; N],
) -> impl FnMut(&Nested, &mut Queue<'_>, u64, &[AtomicU64]) {
    move |n, queue, version, completed| {
        for page in 0..PAGES {
            n.fs()
                .update_leaf(iova(page), |old| (old & 0xFFF) | gpa(page, version))
                .unwrap();
            queue.submit_and_wait(&invalidation(page)).unwrap();
            completed[page as usize].store(version, Ordering::Release);
        }
    }
}

/// A round that maps every page to `version` in the first-stage table the PASID entry
/// does not use, switches the entry to it and submits `invalidation`, waiting.
fn switching_tables<const N: usize>(
    invalidation: [RawDescriptor; N],
) -> impl FnMut(&Nested, &mut Queue<'_>, u64, &[AtomicU64]) {
    let mut tables: Option<[u64; 2]> = None;
    move |n, queue, version, completed| {
        let [current, other] = *tables.get_or_insert_with(|| {
            let other = n.new_first_stage();
            for page in 0..PAGES {
                let leaf = (
                    iova(page),
                    gpa(page, 0),
                    PageSize::Size4K,
                    Leaf::read_write(),
                );
                n.fs_at(other).map(leaf.0, leaf.1, leaf.2, leaf.3).unwrap();
            }
            [n.fs_root_gpa, other]
        });
        for page in 0..PAGES {
            n.fs_at(other)
                .update_leaf(iova(page), |old| (old & 0xFFF) | gpa(page, version))
                .unwrap();
        }
        let levels = n.pasid_entry(PASID).hi.fspm().levels().unwrap_or(4);
        let aw = n.pasid_entry(PASID).lo.aw();
        n.update_pasid_entry(PASID, |_| nested_entry(n.ss_root, other, levels, aw));
        queue.submit_and_wait(&invalidation).unwrap();
        for c in completed {
            c.store(version, Ordering::Release);
        }
        tables = Some([other, current]);
    }
}

/// Three threads translate the pages while this one runs `round` for each version: it
/// remaps pages to that version, invalidates, and records in `completed` the versions
/// whose invalidation completed. No translation may show a version older than the
/// newest whose invalidation completed. After each round the remapping thread lets the
/// translators make `2 × PAGES` translations, so every page is translated more than once
/// between some invalidations and the IOTLB serves some of them.
fn race(mut round: impl FnMut(&Nested, &mut Queue<'_>, u64, &[AtomicU64])) {
    let n = Nested::with_config(UnitConfig::default());
    for page in 0..PAGES {
        n.map(
            iova(page),
            gpa(page, 0),
            PageSize::Size4K,
            Leaf::read_write(),
        );
    }
    let mem = n.mem();
    let mut queue = InvalidationQueue::enable(&n.unit, mem, true).unwrap();
    // completed[k]: the newest version of page k whose invalidation has completed.
    let completed: Vec<AtomicU64> = (0..PAGES).map(|_| AtomicU64::new(0)).collect();
    let done = AtomicBool::new(false);
    // Set when a translator panics, so the remapping thread stops waiting for it.
    let failed = AtomicBool::new(false);
    let checked = AtomicU64::new(0);

    /// Sets the flag when dropped.
    struct StopOnDrop<'a>(&'a AtomicBool);
    impl Drop for StopOnDrop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Release);
        }
    }

    /// Sets the flag if the thread unwinds.
    struct OnPanic<'a>(&'a AtomicBool);
    impl Drop for OnPanic<'_> {
        fn drop(&mut self) {
            if std::thread::panicking() {
                self.0.store(true, Ordering::Release);
            }
        }
    }

    std::thread::scope(|s| {
        for t in 0..3u64 {
            let (n, completed, done, checked, failed) = (&n, &completed, &done, &checked, &failed);
            s.spawn(move || {
                let _guard = OnPanic(failed);
                let mut i = t;
                while !done.load(Ordering::Acquire) {
                    let page = i % PAGES;
                    i += 1;
                    let floor = completed[page as usize].load(Ordering::Acquire);
                    let req = Request::read(SID, iova(page)).with_pasid(PASID);
                    let translation = n.unit.translate(&req).expect("every version is mapped");
                    let seen = version_of(translation.hpa, page);
                    assert!(
                        seen >= floor,
                        "page {page}: served version {seen} after the invalidation of version {floor} completed \
                         (from_iotlb = {})",
                        translation.from_iotlb
                    );
                    checked.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        // Stops the translators however this thread leaves the loop, a panic included
        // (the scope would otherwise wait for them forever).
        let _stop = StopOnDrop(&done);
        'remap: for version in 1..VERSIONS {
            round(&n, &mut queue, version, &completed);
            let target = checked.load(Ordering::Relaxed) + 2 * PAGES;
            let mut spins = 0u32;
            while checked.load(Ordering::Relaxed) < target {
                if failed.load(Ordering::Acquire) {
                    break 'remap;
                }
                // Spin briefly, then leave the CPU to the translators.
                spins += 1;
                if spins < 1000 {
                    std::hint::spin_loop();
                } else {
                    std::thread::yield_now();
                }
            }
        }
    });

    let stats = n.unit.stats();
    assert!(
        checked.load(Ordering::Relaxed) > 10_000,
        "translators made too few checks"
    );
    assert!(stats.iotlb_hits > 0, "the race needs the IOTLB in play");
    assert!(stats.invalidations >= VERSIONS - 1);
}
