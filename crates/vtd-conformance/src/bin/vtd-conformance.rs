//! Run the conformance cases and compare the two sides.
//!
//! ```text
//! vtd-conformance real selftest|vtd    # against /dev/iommu (in a guest)
//! vtd-conformance sim selftest|vtd     # against the simulated kernel
//! vtd-conformance report --real LOG... --sim LOG... [--timings FILE] --out FILE.md
//! ```
//!
//! The runs print one `CASE ...` line per case and exit 1 if any failed; `report` writes
//! the side-by-side Markdown, prints `N cases, N agree` and exits 1 unless all agree.

use std::process::ExitCode;

use vtd_conformance::report::{Side, latest_timings, markdown, rows};
use vtd_conformance::{RealTarget, SimTarget, Suite, Target, run_suite};

fn usage() -> ExitCode {
    eprintln!(
        "usage: vtd-conformance real|sim selftest|vtd\n       \
         vtd-conformance report --real LOG... --sim LOG... [--timings FILE] --out FILE"
    );
    ExitCode::from(2)
}

fn run(target: &dyn Target, suite: Suite) -> ExitCode {
    let results = run_suite(target, suite, |r| println!("{}", r.line()));
    let failed = results.iter().filter(|r| !r.passed()).count();
    println!(
        "SUITE {} {}: {} cases, {failed} failed",
        target.side(),
        suite.name(),
        results.len()
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn report(args: &[String]) -> ExitCode {
    let (mut sim, mut real) = (Side::default(), Side::default());
    let (mut timings, mut out) = (String::new(), None);
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let Some(value) = it.next() else {
            return usage();
        };
        let read = |path: &str| std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"));
        let result = match flag.as_str() {
            "--real" => read(value).map(|t| real.add_log(&t)),
            "--sim" => read(value).map(|t| sim.add_log(&t)),
            // A first run has no timings yet.
            "--timings" => {
                timings = std::fs::read_to_string(value).unwrap_or_default();
                Ok(())
            }
            "--out" => {
                out = Some(value.clone());
                Ok(())
            }
            _ => return usage(),
        };
        if let Err(e) = result {
            eprintln!("vtd-conformance: {e}");
            return ExitCode::FAILURE;
        }
    }
    let Some(out) = out else {
        return usage();
    };
    let rows = rows(&sim, &real);
    let md = markdown(&rows, &real, &latest_timings(&timings));
    if let Err(e) = std::fs::write(&out, md) {
        eprintln!("vtd-conformance: {out}: {e}");
        return ExitCode::FAILURE;
    }
    for r in rows.iter().filter(|r| !r.agrees()) {
        println!("DISAGREE {}", r.id);
        for side in [&r.sim, &r.real].into_iter().flatten() {
            println!("  {}", side.line());
        }
    }
    let agree = rows.iter().filter(|r| r.agrees()).count();
    println!("{} cases, {agree} agree", rows.len());
    if agree == rows.len() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("report") => report(&args[1..]),
        Some(side @ ("real" | "sim")) => {
            let Some(suite) = args.get(1).and_then(|s| Suite::from_name(s)) else {
                return usage();
            };
            if side == "real" {
                run(&RealTarget, suite)
            } else {
                match SimTarget::new(suite) {
                    Ok(t) => run(&t, suite),
                    Err(e) => {
                        eprintln!("vtd-conformance: {e}");
                        ExitCode::FAILURE
                    }
                }
            }
        }
        _ => usage(),
    }
}
