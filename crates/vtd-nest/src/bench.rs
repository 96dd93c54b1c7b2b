//! `vtd-nest bench`: the hardware model's standard measurements as ratios, each measured
//! in the same run with short timed loops, on the fixture the criterion benchmark uses
//! ([`NestedBench`]):
//!
//! - IOTLB hit ÷ `HashMap` lookup with the same keys (target ≤ 1.5);
//! - cold nested 4×4 walk (every cache flushed) ÷ 24 dependent loads (target ≤ 3);
//! - NIC-trace throughput on one thread (target ≥ 30 M/s) and two threads ÷ one (≥ 1.7).

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use serde_json::json;
use vtd_model::build::Leaf;
use vtd_model::cache::CacheConfig;
use vtd_model::invalidation::Invalidation;
use vtd_model::request::Request;
use vtd_model::workload::{NestedBench, pointer_chase_24};
use vtd_spec::addr::PageSize;

use crate::error::{Error, Result};
use crate::output::Report;

/// One row of the table.
#[derive(Clone, Debug)]
pub struct Row {
    /// What is measured.
    pub measure: &'static str,
    /// The ratio or rate.
    pub value: f64,
    /// The target, as text (`≤ 1.5`).
    pub target: &'static str,
    /// Whether the value meets the target.
    pub meets: bool,
    /// The figures the value comes from.
    pub from: String,
}

/// How long each timed loop runs.
#[derive(Clone, Copy)]
struct Budget {
    /// Time of each round.
    min_time: Duration,
    /// Iterations of each round at least.
    min_iters: u64,
    /// Rounds per measurement; the median round is the figure, so one round disturbed by
    /// another process does not decide it.
    rounds: usize,
}

/// The median of `rounds` runs of `round`.
fn median_of(rounds: usize, mut round: impl FnMut() -> f64) -> f64 {
    let mut v: Vec<f64> = (0..rounds.max(1)).map(|_| round()).collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Run `f` in batches of `batch` until a round's budget is spent; nanoseconds per call of
/// `f`, the median of the budget's rounds.
fn time_per(budget: &Budget, batch: u64, mut f: impl FnMut()) -> f64 {
    median_of(budget.rounds, || {
        let start = Instant::now();
        let mut n = 0u64;
        while n < budget.min_iters || start.elapsed() < budget.min_time {
            for _ in 0..batch {
                f();
            }
            n += batch;
        }
        start.elapsed().as_nanos() as f64 / n as f64
    })
}

fn fixture(e: vtd_model::workload::FixtureError) -> Error {
    Error::Setup(format!("benchmark fixture: {e}"))
}

/// The machine: CPU model and the cores this process may use.
pub fn machine() -> (String, usize) {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cpu, cores)
}

/// Measure and print the table.
pub fn run(quick: bool, rep: &mut Report<'_>) -> Result<()> {
    let budget = if quick {
        Budget {
            min_time: Duration::ZERO,
            min_iters: 256,
            rounds: 1,
        }
    } else {
        Budget {
            min_time: Duration::from_millis(60),
            min_iters: 2_000,
            rounds: 5,
        }
    };
    let mut rows = Vec::new();

    // IOTLB hit ÷ HashMap lookup over the same 256 (sid, pasid, page) keys.
    let b = NestedBench::new(PageSize::Size2M, CacheConfig::default()).map_err(fixture)?;
    let pages = 256u64;
    let reqs = b.map_hot_pages(pages).map_err(fixture)?;
    for r in &reqs {
        let _ = b.unit.translate(r);
    }
    let keys: Vec<(u16, u32, u64)> = reqs
        .iter()
        .map(|r| (r.sid, NestedBench::PASID, r.addr >> 12))
        .collect();
    let map: HashMap<(u16, u32, u64), u64> = keys.iter().map(|k| (*k, k.2 << 12)).collect();
    let mut i = 0usize;
    let hit = time_per(&budget, 256, || {
        i = (i + 1) & (pages as usize - 1);
        let _ = black_box(b.unit.translate(black_box(&reqs[i])));
    });
    let mut j = 0usize;
    let lookup = time_per(&budget, 256, || {
        j = (j + 1) & (pages as usize - 1);
        black_box(map.get(black_box(&keys[j])));
    });
    rows.push(Row {
        measure: "IOTLB hit ÷ HashMap lookup",
        value: hit / lookup,
        target: "≤ 1.5",
        meets: hit / lookup <= 1.5,
        from: format!("{hit:.1} ns / {lookup:.1} ns"),
    });

    // Cold nested 4×4 walk ÷ 24 dependent loads.
    let cold = NestedBench::new(PageSize::Size4K, CacheConfig::default()).map_err(fixture)?;
    let iova = 0x7_4020_3000;
    cold.fs()
        .map(iova, 0x20_5000, PageSize::Size4K, Leaf::read_write())
        .map_err(|e| fixture(e.into()))?;
    let r = NestedBench::read(iova);
    let before = cold.unit.stats();
    cold.unit.invalidate(Invalidation::Everything);
    let _ = cold.unit.translate(&r);
    let reads = cold.unit.stats().since(&before).paging_reads();
    let walk_budget = Budget {
        min_iters: budget.min_iters / 8,
        ..budget
    };
    // Only the walk is timed, not the flush before it.
    let walk = median_of(walk_budget.rounds, || {
        let mut spent = Duration::ZERO;
        let mut n = 0u64;
        let start = Instant::now();
        while n < walk_budget.min_iters.max(1) || start.elapsed() < walk_budget.min_time {
            cold.unit.invalidate(Invalidation::Everything);
            let t0 = Instant::now();
            let _ = black_box(cold.unit.translate(black_box(&r)));
            spent += t0.elapsed();
            n += 1;
        }
        spent.as_nanos() as f64 / n as f64
    });
    let (chase, first) = pointer_chase_24();
    // Laps chain (each starts where the last ended) so the CPU cannot overlap them: the
    // baseline is the latency of 24 dependent loads, as the walk's reads are dependent.
    let mut at = black_box(first);
    let chase_ns = time_per(&walk_budget, 64, || {
        for _ in 0..24 {
            at = chase[at] as usize;
        }
        black_box(at);
    });
    rows.push(Row {
        measure: "cold 4×4 walk (flushed) ÷ 24-load chase",
        value: walk / chase_ns,
        target: "≤ 3",
        meets: walk / chase_ns <= 3.0,
        from: format!("{walk:.0} ns / {chase_ns:.1} ns, {reads} paging reads"),
    });

    // NIC-trace throughput, one thread and two (each on its own queue).
    let t = NestedBench::new(PageSize::Size2M, CacheConfig::default()).map_err(fixture)?;
    let traces: Vec<Vec<Request>> = (0..2)
        .map(|q| {
            t.nic_queue(q).map(|d| {
                d.iter()
                    .map(|d| d.request(NestedBench::SID, Some(NestedBench::PASID)))
                    .collect()
            })
        })
        .collect::<std::result::Result<_, _>>()
        .map_err(fixture)?;
    let run_trace = |trace: &[Request]| {
        for r in trace {
            let _ = black_box(t.unit.translate(r));
        }
    };
    for tr in &traces {
        run_trace(tr);
    }
    let len = traces[0].len() as u64;
    let passes_for = |target: Duration| -> u64 {
        let t0 = Instant::now();
        run_trace(&traces[0]);
        let one = t0.elapsed().max(Duration::from_nanos(1));
        (target.as_nanos() / one.as_nanos()).max(1) as u64
    };
    let passes = if quick {
        1
    } else {
        passes_for(budget.min_time)
    };
    let before = t.unit.stats();
    // Translations per second in millions; each figure the median of the rounds.
    let one = median_of(budget.rounds, || {
        let t0 = Instant::now();
        for _ in 0..passes {
            run_trace(&traces[0]);
        }
        (passes * len) as f64 / t0.elapsed().as_secs_f64().max(1e-9) / 1e6
    });
    let s = t.unit.stats().since(&before);
    let hit_rate = 100.0 * s.iotlb_hits as f64 / (s.iotlb_hits + s.iotlb_misses).max(1) as f64;
    let two = median_of(budget.rounds, || {
        let t0 = Instant::now();
        std::thread::scope(|sc| {
            for tr in &traces {
                let run_trace = &run_trace;
                sc.spawn(move || {
                    for _ in 0..passes {
                        run_trace(tr);
                    }
                });
            }
        });
        (2 * passes * len) as f64 / t0.elapsed().as_secs_f64().max(1e-9) / 1e6
    });
    rows.push(Row {
        measure: "NIC trace, 1 thread (M translations/s)",
        value: one,
        target: "≥ 30",
        meets: one >= 30.0,
        from: format!(
            "{hit_rate:.1} % IOTLB hits, {} translations per round",
            passes * len
        ),
    });
    rows.push(Row {
        measure: "NIC trace, 2 threads ÷ 1 thread",
        value: two / one,
        target: "≥ 1.7",
        meets: two / one >= 1.7,
        from: format!("{two:.1} M/s on 2 threads"),
    });

    let (cpu, cores) = machine();
    let build = if cfg!(debug_assertions) {
        "debug assertions on (a dev/test build): figures are not representative; use --release"
    } else {
        "optimised build"
    };
    let mut lines = vec![
        format!("vtd-model ratios on {cpu} ({cores} cores available), {build}"),
        format!(
            "{}",
            if quick {
                "--quick: tiny iteration counts, the figures only show the measurements run"
            } else {
                "median of 5 short timed rounds (about 0.3 s per measure); `cargo bench -p vtd-model` gives criterion's statistics"
            }
        ),
        String::new(),
        format!(
            "{:<42} {:>9}  {:>7}  {:<4}  from",
            "measure", "value", "target", "met"
        ),
    ];
    for r in &rows {
        lines.push(format!(
            "{:<42} {:>9.2}  {:>7}  {:<4}  {}",
            r.measure,
            r.value,
            r.target,
            if r.meets { "yes" } else { "no" },
            r.from
        ));
    }
    rep.record(
        "bench",
        json!({
            "cpu": cpu, "cores": cores, "quick": quick, "debug_build": cfg!(debug_assertions),
            "rows": rows.iter().map(|r| json!({"measure": r.measure, "value": r.value, "target": r.target, "meets": r.meets, "from": r.from})).collect::<Vec<_>>(),
        }),
        &lines,
    )?;
    Ok(())
}
