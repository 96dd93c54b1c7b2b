//! Control-path speed of the simulated kernel: the ioctls a VMM issues, not DMA.
//!
//! - `nested_round_trip`: `IOMMU_HWPT_ALLOC` of a nested `VTD_S1` HWPT, attach (replacing
//!   the nest parent: the PASID entry rewritten, context and PASID caches flushed), one
//!   `IOMMU_HWPT_INVALIDATE` (queued descriptors plus a wait), attach back to the parent,
//!   `IOMMU_DESTROY`.
//! - `ioas_map_1g`: `IOMMU_IOAS_MAP` of 1 GiB into an IOAS whose nest parent is attached,
//!   once laid out so the driver must use 4 KiB pages (IOVA and host address disagree
//!   modulo 2 MiB) and once so it can use 2 MiB pages (IOVA 2 MiB- but not 1 GiB-aligned).
//!   Only the map is timed; the unmap that follows each one is not.
//!
//! Run with `cargo bench -p vtd-kernel --bench control_path`; a summary is printed at the
//! end and written to `target/criterion/vtd-kernel-summary.json`.

#[path = "../tests/common/mod.rs"]
#[allow(missing_docs)]
mod common;

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{GuestRam, Vmm, guest_s1_table, s1_map};
use criterion::{Criterion, Throughput};
use vtd_iommufd::VtdS1Invalidate;
use vtd_iommufd::uapi::{HwptAllocFlags, MapFlags};
use vtd_model::request::Access;
use vtd_spec::addr::PageSize;

const GIB: u64 = 1 << 30;
const MIB2: u64 = 2 << 20;

fn nested_round_trip(c: &mut Criterion) -> f64 {
    let vmm = Vmm::new();
    let (_, parent) = vmm.with_parent();
    let mut s1 = guest_s1_table(&vmm.ram);
    s1_map(&mut s1, 0x4000_0000, 0x20_0000);
    let root = s1.root();
    let one = || {
        let nested = vmm.nested(parent, root);
        vmm.dev.attach_pt(nested).unwrap();
        let done = vmm
            .iommufd
            .hwpt_invalidate(nested, &[VtdS1Invalidate::range(0x4000_0000, 1)])
            .unwrap();
        vmm.dev.attach_pt(parent).unwrap();
        vmm.iommufd.destroy(nested).unwrap();
        black_box(done)
    };
    c.bench_function("nested_round_trip", |b| b.iter(one));
    per_iter(|n| {
        let t = Instant::now();
        for _ in 0..n {
            one();
        }
        t.elapsed()
    })
}

/// An IOAS with a nest parent attached to `vmm`'s device, and 1 GiB + 2 MiB of host
/// memory (2 MiB aligned) to map into it.
struct MapBench {
    vmm: Vmm,
    ioas: u32,
    mem: GuestRam,
}

impl MapBench {
    fn new() -> Self {
        let vmm = Vmm::new();
        let ioas = vmm.iommufd.ioas_alloc().unwrap();
        let parent = vmm
            .iommufd
            .hwpt_alloc_paging(vmm.dev_id, ioas, HwptAllocFlags::NEST_PARENT)
            .unwrap();
        vmm.dev.attach_pt(parent).unwrap();
        let mem = GuestRam::new((GIB + MIB2) as usize);
        let bench = Self { vmm, ioas, mem };
        bench.check_page_size(IOVA_4K, PageSize::Size4K);
        bench.check_page_size(IOVA_2M, PageSize::Size2M);
        bench
    }

    /// The layout at `iova` really gives the driver `size` pages.
    fn check_page_size(&self, iova: u64, size: PageSize) {
        self.map_once_then(iova, || {
            let t = self
                .vmm
                .platform
                .translate(self.vmm.dev_index, None, iova + GIB / 2, 8, Access::Read)
                .unwrap();
            assert_eq!(t.page_size, size, "IOVA {iova:#x}");
        });
    }

    /// Time one IOAS_MAP of 1 GiB at `iova` from the start of the host memory; unmap it
    /// again untimed.
    fn map_once(&self, iova: u64) -> Duration {
        self.map_once_then(iova, || ())
    }

    fn map_once_then(&self, iova: u64, then: impl FnOnce()) -> Duration {
        let t = Instant::now();
        // SAFETY: the memory outlives the mapping, which is removed before returning.
        unsafe {
            self.vmm.iommufd.ioas_map(
                self.ioas,
                self.mem.ptr(0),
                GIB,
                Some(iova),
                MapFlags::READABLE | MapFlags::WRITEABLE,
            )
        }
        .unwrap();
        let elapsed = t.elapsed();
        then();
        assert_eq!(
            self.vmm.iommufd.ioas_unmap(self.ioas, iova, GIB).unwrap(),
            GIB
        );
        elapsed
    }
}

/// IOVAs that force 4 KiB pages (host memory is 2 MiB aligned) and that allow 2 MiB but
/// not 1 GiB pages.
const IOVA_4K: u64 = GIB + 0x1000;
const IOVA_2M: u64 = GIB + MIB2;

fn ioas_map_1g(c: &mut Criterion) -> (f64, f64) {
    let bench = MapBench::new();
    let mut group = c.benchmark_group("ioas_map_1g");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(GIB));
    for (name, iova) in [("4k_pages", IOVA_4K), ("2m_pages", IOVA_2M)] {
        group.bench_function(name, |b| {
            b.iter_custom(|n| (0..n).map(|_| bench.map_once(iova)).sum())
        });
    }
    group.finish();
    let small = per_iter(|n| (0..n).map(|_| bench.map_once(IOVA_4K)).sum());
    let large = per_iter(|n| (0..n).map(|_| bench.map_once(IOVA_2M)).sum());
    (small, large)
}

/// Nanoseconds per iteration of `run(n)`, the best of five runs of at least 100 ms.
fn per_iter(mut run: impl FnMut(u64) -> Duration) -> f64 {
    let mut n = 1;
    while run(n) < Duration::from_millis(100) {
        n *= 2;
    }
    (0..5)
        .map(|_| run(n).as_nanos() as f64 / n as f64)
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let round_trip = nested_round_trip(&mut c);
    let (map_4k, map_2m) = ioas_map_1g(&mut c);
    c.final_summary();

    let pages_4k = (GIB / 0x1000) as f64;
    let pages_2m = (GIB / MIB2) as f64;
    println!();
    println!("vtd-kernel control path (best of 5):");
    println!(
        "  nested HWPT_ALLOC + attach + invalidate + re-attach + destroy: {:.1} µs",
        round_trip / 1e3
    );
    println!(
        "  IOAS_MAP 1 GiB in 4 KiB pages: {:.1} ms ({:.0} ns per page)",
        map_4k / 1e6,
        map_4k / pages_4k
    );
    println!(
        "  IOAS_MAP 1 GiB in 2 MiB pages: {:.3} ms ({:.0} ns per page)",
        map_2m / 1e6,
        map_2m / pages_2m
    );
    println!("  4 KiB ÷ 2 MiB: {:.1}×", map_4k / map_2m);

    let summary = serde_json::json!({
        "nested_round_trip_ns": round_trip,
        "ioas_map_1g_4k_ns": map_4k,
        "ioas_map_1g_2m_ns": map_2m,
        "ratio_4k_over_2m": map_4k / map_2m,
    });
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/criterion");
    if std::fs::create_dir_all(&dir).is_ok() {
        let _ = std::fs::write(dir.join("vtd-kernel-summary.json"), summary.to_string());
    }
}
