//! Hardware-model speed, each figure a ratio measured in the same run.
//!
//! - `iotlb_hit`: a translation served by the IOTLB ÷ a plain `HashMap` lookup with the
//!   same keys (source id, PASID, page). Target ≤ 1.5×.
//! - `cold_walk`: a nested 4-level-over-4-level walk with every cache flushed ÷ 24
//!   dependent loads (a pointer chase over 24 pages). Target ≤ 3×.
//! - `throughput`: translations per second on a NIC-like receive trace (about 90 % IOTLB
//!   hits), one thread and two. Targets ≥ 30 M/s on one core, two threads ≥ 1.7× one.
//!
//! Run with `cargo bench -p vtd-model --bench translate`; the ratios are printed at the end
//! and written to `target/criterion/vtd-model-summary.json`.

use std::collections::HashMap;
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use vtd_model::build::{Format, Leaf, PageTable, ScalableTables, enable_translation};
use vtd_model::cache::CacheConfig;
use vtd_model::config::UnitConfig;
use vtd_model::invalidation::Invalidation;
use vtd_model::mem::FlatMem;
use vtd_model::request::Request;
use vtd_model::workload::{Dma, NicRx};
use vtd_model::{PhysMem, Unit};
use vtd_spec::addr::PageSize;
use vtd_spec::pasid::{Fspm, PasidEntry, PasidEntryHi, PasidEntryLo, Pgtt};

const SID: u16 = 0x0100;
const PASID: u32 = 1;
/// Guest-physical `g` is host-physical `g + GUEST_BASE`.
const GUEST_BASE: u64 = 0x0400_0000;
const GUEST_SIZE: u64 = 0x0400_0000;
/// Guest pages for first-stage tables start here.
const GUEST_TABLES: u64 = 0x0380_0000;

/// A nested unit over flat memory: stage 2 maps guest memory with `ss_page` pages.
struct Bench {
    unit: Unit<FlatMem>,
    fs_root: u64,
    next_table: AtomicU64,
}

impl Bench {
    fn new(ss_page: PageSize, caches: CacheConfig) -> Self {
        let config = UnitConfig {
            caches,
            ..UnitConfig::default()
        };
        let unit = Unit::new(config, FlatMem::new(0, GUEST_BASE + GUEST_SIZE)).unwrap();
        let next_table = AtomicU64::new(GUEST_TABLES);
        let fs_root = {
            let mem = unit.mem();
            let tables = ScalableTables::new(mem, mem);
            tables.add_device(SID, 0).unwrap();
            let mut ss = PageTable::physical(mem, mem, Format::SecondStage, 4);
            ss.map_range(0, GUEST_BASE, GUEST_SIZE, ss_page, Leaf::read_write())
                .unwrap();
            let fs = PageTable::new(
                mem,
                Format::FirstStage,
                4,
                || next_table.fetch_add(4096, Ordering::Relaxed),
                |g| g + GUEST_BASE,
            );
            let entry = PasidEntry {
                lo: PasidEntryLo::new()
                    .with_p(true)
                    .with_aw(2)
                    .with_pgtt(Pgtt::Nested)
                    .with_ssptptr(ss.root() >> 12)
                    .with_did(3)
                    .with_pwsnp(true),
                hi: PasidEntryHi::new()
                    .with_fspm(Fspm::Level4)
                    .with_fsptptr(fs.root() >> 12),
                rsvd: [0, 0],
            };
            tables.set_pasid_entry(SID, PASID, entry).unwrap();
            enable_translation(&unit, tables.rtaddr()).unwrap();
            fs.root()
        };
        Self {
            unit,
            fs_root,
            next_table,
        }
    }

    fn fs(&self) -> PageTable<'_, FlatMem> {
        PageTable::open(
            self.unit.mem(),
            Format::FirstStage,
            4,
            self.fs_root,
            || self.next_table.fetch_add(4096, Ordering::Relaxed),
            |g| g + GUEST_BASE,
        )
    }
}

fn req(iova: u64) -> Request {
    Request::read(SID, iova).with_pasid(PASID)
}

fn iotlb_hit(c: &mut Criterion) {
    let b = Bench::new(PageSize::Size2M, CacheConfig::default());
    let pages = 256u64;
    let mut fs = b.fs();
    for p in 0..pages {
        fs.map(
            0x4000_0000 + p * 4096,
            0x10_0000 + p * 4096,
            PageSize::Size4K,
            Leaf::read_write(),
        )
        .unwrap();
    }
    let reqs: Vec<Request> = (0..pages)
        .map(|p| req(0x4000_0000 + p * 4096 + 0x40))
        .collect();
    for r in &reqs {
        b.unit.translate(r).unwrap();
    }
    let map: HashMap<(u16, u32, u64), u64> = reqs
        .iter()
        .map(|r| ((r.sid, PASID, r.addr >> 12), r.addr))
        .collect();
    let keys: Vec<(u16, u32, u64)> = reqs.iter().map(|r| (r.sid, PASID, r.addr >> 12)).collect();

    let mut g = c.benchmark_group("iotlb_hit");
    let mut i = 0usize;
    g.bench_function("translate", |bench| {
        bench.iter(|| {
            i = (i + 1) & (pages as usize - 1);
            black_box(b.unit.translate(black_box(&reqs[i])))
        })
    });
    let mut j = 0usize;
    g.bench_function("hashmap_lookup", |bench| {
        bench.iter(|| {
            j = (j + 1) & (pages as usize - 1);
            black_box(map.get(black_box(&keys[j])))
        })
    });
    g.finish();
    assert!(
        b.unit.stats().iotlb_misses <= pages + 8,
        "the hit benchmark must hit"
    );
}

/// 24 pages, each holding the index of the next at a page-dependent offset.
fn chase_pages() -> (Vec<u64>, usize) {
    const PAGES: usize = 24;
    let mut mem = vec![0u64; PAGES * 512];
    let start = 7;
    for p in 0..PAGES {
        let here = p * 512 + (p * 37 + start) % 512;
        let next = ((p + 1) % PAGES) * 512 + (((p + 1) % PAGES) * 37 + start) % 512;
        mem[here] = next as u64;
    }
    (mem, start)
}

fn cold_walk(c: &mut Criterion) {
    let cached = Bench::new(PageSize::Size4K, CacheConfig::default());
    let uncached = Bench::new(PageSize::Size4K, CacheConfig::disabled());
    let iova = 0x7_4020_3000;
    for b in [&cached, &uncached] {
        b.fs()
            .map(iova, 0x20_5000, PageSize::Size4K, Leaf::read_write())
            .unwrap();
        b.unit.translate(&req(iova)).unwrap();
    }
    let r = req(iova);
    let before = uncached.unit.stats();
    uncached.unit.translate(&r).unwrap();
    let reads = uncached.unit.stats().since(&before).paging_reads();
    assert_eq!(reads, 24, "the cold walk must be 4 over 4");

    let mut g = c.benchmark_group("cold_walk");
    g.bench_function("nested_4x4_flushed", |bench| {
        bench.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                cached.unit.invalidate(Invalidation::Everything);
                let start = Instant::now();
                black_box(cached.unit.translate(black_box(&r))).ok();
                total += start.elapsed();
            }
            total
        })
    });
    g.bench_function("nested_4x4_uncached", |bench| {
        bench.iter(|| black_box(uncached.unit.translate(black_box(&r))))
    });
    let (chase, start) = chase_pages();
    g.bench_function("pointer_chase_24", |bench| {
        bench.iter(|| {
            let mut at = black_box(start);
            for _ in 0..24 {
                at = chase[at] as usize;
            }
            black_box(at)
        })
    });
    // The same chase through the model's physical-memory interface.
    let flat = FlatMem::new(0, chase.len() as u64 * 8);
    for (k, v) in chase.iter().enumerate() {
        flat.write_u64(k as u64 * 8, *v).unwrap();
    }
    g.bench_function("pointer_chase_24_physmem", |bench| {
        bench.iter(|| {
            let mut at = black_box(start as u64);
            for _ in 0..24 {
                at = flat.read_u64(at * 8).unwrap_or(0);
            }
            black_box(at)
        })
    });
    g.finish();
}

/// Map the NIC's ring and buffers; queue `q` of the NIC uses its own ring and buffers.
fn nic_queue(b: &Bench, q: u64) -> Vec<Dma> {
    let nic = NicRx {
        ring: 0x1_0000_0000 + q * 0x100_0000,
        buffers: 0x2_0000_0000 + q * 0x1000_0000,
        buffer_count: 4096,
        ..NicRx::default()
    };
    let (ring_pages, buffer_pages) = nic.footprint_pages();
    let gpa_base = 0x10_0000 + q * 0x100_0000;
    let mut fs = b.fs();
    fs.map_range(
        nic.ring,
        gpa_base,
        ring_pages * 4096,
        PageSize::Size4K,
        Leaf::read_write(),
    )
    .unwrap();
    fs.map_range(
        nic.buffers,
        gpa_base + 0x10_0000,
        buffer_pages * 4096,
        PageSize::Size4K,
        Leaf::read_write(),
    )
    .unwrap();
    nic.stream(nic.buffer_count * 2)
}

fn run_trace(unit: &Unit<FlatMem>, trace: &[Request]) {
    for r in trace {
        black_box(unit.translate(r)).ok();
    }
}

fn throughput(c: &mut Criterion) {
    let b = Bench::new(PageSize::Size2M, CacheConfig::default());
    let traces: Vec<Vec<Request>> = (0..2)
        .map(|q| {
            nic_queue(&b, q)
                .iter()
                .map(|d| d.request(SID, Some(PASID)))
                .collect()
        })
        .collect();
    for t in &traces {
        run_trace(&b.unit, t);
    }
    let len = traces[0].len() as u64;

    let mut g = c.benchmark_group("throughput");
    g.throughput(Throughput::Elements(len));
    let before = b.unit.stats();
    g.bench_function("nic_1_thread", |bench| {
        bench.iter(|| run_trace(&b.unit, &traces[0]))
    });
    let s = b.unit.stats().since(&before);
    HIT_RATE.store(
        s.iotlb_hits * 10_000 / (s.iotlb_hits + s.iotlb_misses).max(1),
        Ordering::Relaxed,
    );
    g.throughput(Throughput::Elements(2 * len));
    g.bench_function("nic_2_threads", |bench| {
        bench.iter_custom(|iters| {
            let start = Instant::now();
            std::thread::scope(|s| {
                for t in &traces {
                    let unit = &b.unit;
                    s.spawn(move || {
                        for _ in 0..iters {
                            run_trace(unit, t);
                        }
                    });
                }
            });
            start.elapsed()
        })
    });
    g.finish();
}

static HIT_RATE: AtomicU64 = AtomicU64::new(0);

fn criterion_dir() -> PathBuf {
    if let Ok(home) = std::env::var("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("criterion")
}

/// Median nanoseconds per iteration of one benchmark, from criterion's estimates.
fn median_ns(dir: &std::path::Path, group: &str, name: &str) -> Option<f64> {
    let text =
        std::fs::read_to_string(dir.join(group).join(name).join("new/estimates.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["median"]["point_estimate"].as_f64()
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string())
}

fn report(dir: &std::path::Path) {
    let get = |g: &str, n: &str| median_ns(dir, g, n).unwrap_or(f64::NAN);
    let hit = get("iotlb_hit", "translate");
    let map = get("iotlb_hit", "hashmap_lookup");
    let flushed = get("cold_walk", "nested_4x4_flushed");
    let uncached = get("cold_walk", "nested_4x4_uncached");
    let chase = get("cold_walk", "pointer_chase_24");
    let chase_mem = get("cold_walk", "pointer_chase_24_physmem");
    let trace_len = (NicRx {
        buffer_count: 4096,
        ..NicRx::default()
    })
    .stream(8192)
    .len() as f64;
    let one = trace_len / get("throughput", "nic_1_thread") * 1e3;
    let two = 2.0 * trace_len / get("throughput", "nic_2_threads") * 1e3;
    let hit_rate = HIT_RATE.load(Ordering::Relaxed) as f64 / 100.0;
    let rows = [
        (
            "IOTLB hit ÷ HashMap lookup",
            hit / map,
            "≤ 1.5",
            format!("{hit:.1} ns / {map:.1} ns"),
        ),
        (
            "cold 4×4 walk (flushed) ÷ 24-load chase",
            flushed / chase,
            "≤ 3",
            format!("{flushed:.0} ns / {chase:.1} ns"),
        ),
        (
            "cold 4×4 walk (no caches) ÷ 24-load chase",
            uncached / chase,
            "(info)",
            format!("{uncached:.0} ns / {chase:.1} ns"),
        ),
        (
            "cold 4×4 walk (flushed) ÷ 24 PhysMem loads",
            flushed / chase_mem,
            "(info)",
            format!("{flushed:.0} ns / {chase_mem:.1} ns"),
        ),
        (
            "NIC trace, 1 thread (M translations/s)",
            one,
            "≥ 30",
            format!("{hit_rate:.1} % IOTLB hits"),
        ),
        (
            "NIC trace, 2 threads ÷ 1 thread",
            two / one,
            "≥ 1.7",
            format!("{two:.1} M/s"),
        ),
    ];
    println!(
        "\nvtd-model benchmark ratios on {} ({} cores)",
        cpu_model(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("{:<46} {:>9}  {:>7}  from", "measure", "value", "target");
    for (name, value, target, from) in &rows {
        println!("{name:<46} {value:>9.2}  {target:>7}  {from}");
    }
    let json = serde_json::json!({
        "cpu": cpu_model(),
        "rows": rows.iter().map(|(n, v, t, f)| serde_json::json!({"measure": n, "value": v, "target": t, "from": f})).collect::<Vec<_>>(),
    });
    let _ = std::fs::write(
        dir.join("vtd-model-summary.json"),
        serde_json::to_string_pretty(&json).unwrap_or_default(),
    );
}

fn main() {
    let dir = criterion_dir();
    let mut c = Criterion::default()
        .output_directory(&dir)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    iotlb_hit(&mut c);
    cold_walk(&mut c);
    throughput(&mut c);
    c.final_summary();
    report(&dir);
}
