//! Several threads translate while another remaps first-stage pages and invalidates them
//! through the invalidation queue. Once an invalidation wait has completed, no
//! translation the preceding descriptors dropped may ever be served again.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use common::{DID, GUEST_BASE, Nested, PASID, SID};
use vtd_model::build::{InvalidationQueue, Leaf};
use vtd_model::config::UnitConfig;
use vtd_model::request::Request;
use vtd_spec::addr::PageSize;
use vtd_spec::inv::{IotlbInvDesc, PasidIotlbGranularity, PasidIotlbInvDesc, RawDescriptor};
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
    race(|page| {
        let inv = PasidIotlbInvDesc::new()
            .with_g(PasidIotlbGranularity::Page)
            .with_did(DID)
            .with_pasid(PASID)
            .with_addr(iova(page) >> 12);
        RawDescriptor {
            lo: inv.into_bits(),
            hi: 0,
        }
    });
}

/// The same race with global IOTLB flushes, which empty the IOTLB and both
/// paging-structure caches whole (and reset their record of which kinds they hold) while
/// the translating threads keep refilling them. A global flush costs next to nothing, so
/// without the pause after each round (see `race`) the flushes would follow each
/// other too closely for any translation to be served from the IOTLB.
#[test]
fn a_completed_global_flush_never_lets_a_dropped_translation_back() {
    race(|_| {
        let inv = IotlbInvDesc::new().with_g(IotlbGranularity::Global);
        RawDescriptor {
            lo: inv.into_bits(),
            hi: 0,
        }
    });
}

/// Three threads translate the pages while this one remaps each page to its next version
/// and submits `invalidation(page)`, waiting for it: no translation may show a version
/// older than the newest whose invalidation completed. After each round of invalidations
/// (one per page) the remapping thread lets the translators make `2 × PAGES`
/// translations, so every page is translated more than once between some invalidations
/// and the IOTLB serves some of them.
fn race(invalidation: impl Fn(u64) -> RawDescriptor) {
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
    // Set by a translator about to fail, so the remapping thread stops waiting for it.
    let failed = AtomicBool::new(false);
    let checked = AtomicU64::new(0);

    std::thread::scope(|s| {
        for t in 0..3u64 {
            let (n, completed, done, checked, failed) = (&n, &completed, &done, &checked, &failed);
            s.spawn(move || {
                let mut i = t;
                while !done.load(Ordering::Acquire) {
                    let page = i % PAGES;
                    i += 1;
                    let floor = completed[page as usize].load(Ordering::Acquire);
                    let req = Request::read(SID, iova(page)).with_pasid(PASID);
                    let translation = n.unit.translate(&req).expect("every version is mapped");
                    let seen = version_of(translation.hpa, page);
                    if seen < floor {
                        failed.store(true, Ordering::Release);
                    }
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
        'remap: for version in 1..VERSIONS {
            for page in 0..PAGES {
                n.fs()
                    .update_leaf(iova(page), |old| (old & 0xFFF) | gpa(page, version))
                    .unwrap();
                queue.submit_and_wait(&[invalidation(page)]).unwrap();
                completed[page as usize].store(version, Ordering::Release);
            }
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
        done.store(true, Ordering::Release);
    });

    let stats = n.unit.stats();
    assert!(
        checked.load(Ordering::Relaxed) > 10_000,
        "translators made too few checks"
    );
    assert!(stats.iotlb_hits > 0, "the race needs the IOTLB in play");
    assert!(stats.invalidations >= (VERSIONS - 1) * PAGES);
}
