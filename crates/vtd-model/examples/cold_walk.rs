//! The `cold_walk` benchmark's walk, repeated, for instruction counts under callgrind
//! (the machine has no performance counters a VM exposes):
//!
//! ```sh
//! cargo build --release -p vtd-model --example cold_walk
//! valgrind --tool=callgrind --callgrind-out-file=cg.out \
//!     target/release/examples/cold_walk flushed 20000
//! callgrind_annotate --inclusive=yes cg.out | grep translate_past_front
//! ```
//!
//! Divide the count by the number of walks. `flushed` invalidates every cache before each
//! walk (the flush is a separate call and shows up under `Caches::invalidate`);
//! `uncached` runs with caching switched off. Without valgrind it prints the time per
//! walk, flush included.

use std::hint::black_box;
use std::time::Instant;

use vtd_model::build::Leaf;
use vtd_model::cache::CacheConfig;
use vtd_model::invalidation::Invalidation;
use vtd_model::workload::NestedBench;
use vtd_spec::addr::PageSize;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "flushed".into());
    let walks: u64 = match args.next() {
        Some(n) => n.parse()?,
        None => 100_000,
    };
    let caches = match mode.as_str() {
        "flushed" => CacheConfig::default(),
        "uncached" => CacheConfig::disabled(),
        other => return Err(format!("mode `{other}`: flushed or uncached").into()),
    };
    let b = NestedBench::new(PageSize::Size4K, caches)?;
    let iova = 0x7_4020_3000;
    b.fs()
        .map(iova, 0x20_5000, PageSize::Size4K, Leaf::read_write())?;
    let r = NestedBench::read(iova);
    // The first walk sets the A bits, so the timed ones write nothing.
    b.unit.translate(&r)?;
    let flush = mode == "flushed";
    let start = Instant::now();
    for _ in 0..walks {
        if flush {
            b.unit.invalidate(Invalidation::Everything);
        }
        black_box(b.unit.translate(black_box(&r)))?;
    }
    let ns = start.elapsed().as_nanos() as f64 / walks.max(1) as f64;
    println!("{walks} {mode} walks: {ns:.0} ns each, flush included");
    Ok(())
}
