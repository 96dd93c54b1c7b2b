//! `vtd-nest`: the command a new user runs first.
//!
//! | command | what it does |
//! |---|---|
//! | `demo` | the whole VT-d nesting story on a built-in Sapphire Rapids-like machine |
//! | `run SCENARIO.toml` | a scenario (docs/SCENARIOS.md) with every expectation checked |
//! | `explain SCENARIO.toml --step N` | the two-dimensional walk of one DMA, and why it faults |
//! | `trace FILE` / `trace --generate` | replay or write DMA traces (docs/TRACES.md) |
//! | `bench` | the hardware-model ratios, measured here |
//! | `probe` | what a real (or simulated) kernel's IOMMU offers a nesting vIOMMU |
//!
//! Everything runs through the public APIs of the layers below (vtd-viommu, vtd-iommufd
//! on vtd-kernel's files, vtd-model units), as a VMM would; `probe` alone also talks to a
//! real `/dev/iommu`. [`main_with`] is the whole
//! program, writing into any pair of writers so tests can run it in-process.

pub mod bench;
pub mod demo;
pub mod error;
pub mod explain;
pub mod output;
pub mod probe;
pub mod scenario;
pub mod trace;

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

pub use error::{EXIT_BAD_INPUT, EXIT_MISMATCH, Error, Result};

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "vtd-nest",
    version,
    about = "Intel VT-d nested translation, simulated end to end: demo, scenarios, walk explanations, DMA traces, benchmarks",
    after_help = "Examples:\n  vtd-nest demo\n  vtd-nest run examples/scenarios/nested-4level.toml\n  vtd-nest explain examples/scenarios/faults.toml --step 9\n\nExit status: 0 success, 1 a scenario expectation did not hold, 2 bad input."
)]
pub struct Cli {
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Kinds of generated traces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TraceKind {
    /// A NIC receiving packets: descriptor read, frame writes, descriptor write-back.
    Nic,
    /// An NVMe-like controller: submission entry, data pages, completion entry.
    Storage,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Play a VMM and a guest on a built-in Sapphire Rapids-like machine: the erratum flag,
    /// the nest parent without the vBIOS, a nested DMA walk, a fault, a stale translation
    /// and its invalidation, and the counters.
    #[command(after_help = "Example:\n  vtd-nest demo\n  vtd-nest demo --json | jq .record")]
    Demo {
        /// Print machine-readable records (JSON Lines) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run a scenario and check every expectation; exit 1 at the first that does not hold.
    #[command(
        after_help = "Example:\n  vtd-nest run examples/scenarios/nested-4level.toml\n\nThe format is in docs/SCENARIOS.md."
    )]
    Run {
        /// The scenario file.
        scenario: PathBuf,
        /// Print only failures.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Draw the walk of one DMA of a scenario (the steps before it run first), and explain
    /// a fault: the first failing check, the reason code, the fix.
    #[command(
        after_help = "Examples:\n  vtd-nest explain examples/scenarios/faults.toml --step 9\n  vtd-nest explain examples/scenarios/nested-4level.toml --addr 0x40000010 --device nic0"
    )]
    Explain {
        /// The scenario file.
        scenario: PathBuf,
        /// The dma step to explain (numbered from 1, as `run` prints them).
        #[arg(long, conflicts_with = "addr", required_unless_present = "addr")]
        step: Option<usize>,
        /// Instead of a step: explain an access to this address after the whole scenario ran.
        #[arg(long, value_parser = parse_u64)]
        addr: Option<u64>,
        /// With --addr: the device (default: the scenario's first device).
        #[arg(long, requires = "addr")]
        device: Option<String>,
        /// With --addr: a write instead of a read.
        #[arg(long, requires = "addr")]
        write: bool,
        /// With --addr: a request with this PASID (20 bits).
        #[arg(long, requires = "addr", value_parser = clap::value_parser!(u32).range(0..1 << 20))]
        pasid: Option<u32>,
        /// Print machine-readable records (JSON Lines).
        #[arg(long)]
        json: bool,
    },
    /// Replay a DMA trace through a nested unit, or generate one.
    #[command(
        after_help = "Examples:\n  vtd-nest trace --generate nic -o nic.trace --count 100000\n  vtd-nest trace nic.trace\n\nThe format is in docs/TRACES.md."
    )]
    Trace {
        /// The trace to replay.
        #[arg(required_unless_present = "generate", conflicts_with = "generate")]
        file: Option<PathBuf>,
        /// Write a trace of this kind instead.
        #[arg(long, value_enum, requires = "output")]
        generate: Option<TraceKind>,
        /// Where to write the generated trace (`-` for standard output).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Packets (nic) or I/Os (storage) to generate.
        #[arg(long, default_value_t = 10_000, requires = "generate", value_parser = clap::value_parser!(u64).range(1..))]
        count: u64,
        /// Replay the trace this many times (the first pass warms the caches).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
        repeat: u32,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Ask a kernel what its IOMMU offers a nesting vIOMMU: hw_info decoded (what nesting
    /// needs, the SPR17 erratum flag, dirty tracking), a nest-parent and a dirty-tracking
    /// HWPT tried and undone, and whether vtd-viommu can run. Exit 0 when every device
    /// can back it, 1 when one cannot, 2 when a device or the kernel cannot be asked.
    #[command(
        after_help = "Examples:\n  vtd-nest probe                          # /dev/iommu, every /dev/vfio/devices/vfio*\n  vtd-nest probe /dev/vfio/devices/vfio0\n  vtd-nest probe --sim sapphire-rapids\n\nA device must be bound to vfio-pci, with a kernel built with IOMMUFD and VFIO_DEVICE_CDEV, and not in use: probing opens its cdev and binds it to a fresh iommufd (vfio-pci resets the device on open and close); every object it makes is gone when it exits."
    )]
    Probe {
        /// VFIO device cdevs to ask about (default: every vfio* in /dev/vfio/devices).
        #[arg(conflicts_with = "sim")]
        devices: Vec<PathBuf>,
        /// The iommufd device.
        #[arg(long, default_value = "/dev/iommu", conflicts_with = "sim")]
        iommu: PathBuf,
        /// Ask a simulated machine instead of the real kernel.
        #[arg(long, value_enum)]
        sim: Option<probe::SimHost>,
        /// Print machine-readable records (JSON Lines).
        #[arg(long)]
        json: bool,
    },
    /// Measure the hardware model: IOTLB hit, cold nested walk, NIC-trace throughput.
    #[command(after_help = "Example:\n  vtd-nest bench\n  vtd-nest bench --quick --json")]
    Bench {
        /// Tiny iteration counts: checks the measurements run, not their figures.
        #[arg(long)]
        quick: bool,
        /// Print the table as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// A number on the command line: decimal or 0x hex, `_` allowed.
fn parse_u64(s: &str) -> std::result::Result<u64, String> {
    scenario::format::Num::parse(s).ok_or_else(|| format!("`{s}` is not a number"))
}

/// The whole program: parse `args` (with the program name first), run, write to `out`
/// and `err`, and return the exit status.
pub fn main_with<I, T>(args: I, out: &mut dyn Write, err: &mut dyn Write) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => return clap_error(&e, out, err),
    };
    match dispatch(cli.command, out, err) {
        Ok(code) => code,
        // The reader went away (`| head`): nothing left to say.
        Err(Error::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => 0,
        Err(e) => {
            let _ = writeln!(err, "error: {}", one_line(&e.to_string()));
            EXIT_BAD_INPUT
        }
    }
}

/// `text` as one line: control characters (say a newline inside a name the scenario
/// gave) are escaped, so every diagnostic stays a single line.
pub fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Help and version go to `out`; every other clap error becomes one line on `err`.
fn clap_error(e: &clap::Error, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = write!(out, "{}", e.render());
            0
        }
        _ => {
            let text = e.render().to_string();
            let first = text
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("error: bad command line")
                .trim();
            let first = if first.starts_with("error:") {
                first.to_string()
            } else {
                format!("error: {first}")
            };
            let _ = writeln!(err, "{first} (see vtd-nest --help)");
            EXIT_BAD_INPUT
        }
    }
}

fn dispatch(cmd: Command, out: &mut dyn Write, err: &mut dyn Write) -> Result<i32> {
    match cmd {
        Command::Demo { json } => {
            demo::run(&mut output::Report::new(out, json))?;
            Ok(0)
        }
        Command::Run { scenario, quiet } => run_scenario(&scenario, quiet, out, err),
        Command::Explain {
            scenario,
            step,
            addr,
            device,
            write,
            pasid,
            json,
        } => {
            let target = match (step, addr) {
                (Some(n), _) => ExplainTarget::Step(n),
                (None, Some(a)) => ExplainTarget::Addr {
                    addr: a,
                    device,
                    write,
                    pasid,
                },
                (None, None) => return Err(Error::Usage("give --step N or --addr ADDR".into())),
            };
            explain_scenario(&scenario, target, &mut output::Report::new(out, json), err)
        }
        Command::Trace {
            file,
            generate,
            output,
            count,
            repeat,
            json,
        } => match (generate, file) {
            (Some(kind), _) => {
                let path = output.unwrap_or_else(|| "-".into());
                trace::generate(kind, count, &path, out)?;
                Ok(0)
            }
            (None, Some(file)) => {
                trace::replay(&file, repeat, &mut output::Report::new(out, json))?;
                Ok(0)
            }
            (None, None) => Err(Error::Usage("give a trace file or --generate".into())),
        },
        Command::Probe {
            devices,
            iommu,
            sim,
            json,
        } => {
            let source = match sim {
                Some(host) => probe::Source::Sim(host),
                None => probe::Source::Real { iommu, devices },
            };
            probe::run(source, &mut output::Report::new(out, json), err)
        }
        Command::Bench { quick, json } => {
            bench::run(quick, &mut output::Report::new(out, json))?;
            Ok(0)
        }
    }
}

/// `vtd-nest run`: load, set up, run every step; exit 1 at the first mismatch.
pub fn run_scenario(
    file: &std::path::Path,
    quiet: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<i32> {
    let sc = scenario::load(file)?;
    let path = &sc.path;
    let base = scenario::Base::new(&sc)?;
    let mut world = scenario::World::new(&sc, &base);
    if !quiet {
        // The path comes from the command line and the description may span lines: both
        // are printed one line of text at a time.
        // The name may come from the file name, which no check holds to one line.
        writeln!(out, "scenario: {} ({})", one_line(&sc.name), one_line(path))?;
        if let Some(d) = &sc.description {
            for line in d.trim().lines() {
                writeln!(out, "  {}", one_line(line.trim()))?;
            }
        }
    }
    for (i, at) in sc.steps.iter().enumerate() {
        match world.step(&at.step) {
            Ok(line) => {
                if !quiet {
                    writeln!(out, "{:>3} {:<14} {line}", i + 1, at.step.op())?;
                }
            }
            Err(m) => {
                if !quiet {
                    writeln!(out, "{:>3} {:<14} MISMATCH", i + 1, at.step.op())?;
                }
                let line = format!(
                    "{path}:{}: step {} ({}): expected {}, got {}",
                    at.line,
                    i + 1,
                    at.step.op(),
                    m.expected,
                    m.got
                );
                writeln!(err, "{}", one_line(&line))?;
                return Ok(EXIT_MISMATCH);
            }
        }
    }
    if !quiet {
        writeln!(out, "ok: {} steps, every expectation held", sc.steps.len())?;
    }
    Ok(0)
}

/// What `explain` explains.
#[derive(Clone, Debug)]
pub enum ExplainTarget {
    /// A dma step.
    Step(usize),
    /// An access after the whole scenario.
    Addr {
        /// Address.
        addr: u64,
        /// Device (default: first).
        device: Option<String>,
        /// A write.
        write: bool,
        /// With a PASID.
        pasid: Option<u32>,
    },
}

/// `vtd-nest explain`.
pub fn explain_scenario(
    file: &std::path::Path,
    target: ExplainTarget,
    rep: &mut output::Report<'_>,
    err: &mut dyn Write,
) -> Result<i32> {
    use scenario::world::DmaSpec;
    let sc = scenario::load(file)?;
    let path = sc.path.as_str();
    let (upto, spec, label) = match &target {
        ExplainTarget::Step(n) => {
            let at = sc.steps.get(n.wrapping_sub(1)).ok_or_else(|| {
                Error::Usage(format!(
                    "{path} has {} steps; --step counts from 1",
                    sc.steps.len()
                ))
            })?;
            let spec = DmaSpec::from_step(&at.step).ok_or_else(|| {
                Error::Usage(format!(
                    "{path}:{}: step {n} is a {} step; explain needs a dma step",
                    at.line,
                    at.step.op()
                ))
            })?;
            (n - 1, spec, format!("step {n} (line {})", at.line))
        }
        ExplainTarget::Addr {
            addr,
            device,
            write,
            pasid,
        } => {
            let device = match device {
                Some(d) => d.clone(),
                None => sc
                    .devices
                    .first()
                    .map(|d| d.name.clone())
                    .ok_or_else(|| Error::Usage(format!("{path} has no devices")))?,
            };
            if sc.device(&device).is_none() {
                return Err(Error::Usage(format!("{path} has no device `{device}`")));
            }
            let spec = DmaSpec {
                device,
                iova: *addr,
                access: if *write {
                    vtd_model::Access::Write
                } else {
                    vtd_model::Access::Read
                },
                len: 4,
                pasid: *pasid,
                privileged: false,
                data: None,
            };
            (sc.steps.len(), spec, "after the last step".to_string())
        }
    };
    let base = scenario::Base::new(&sc)?;
    let mut world = scenario::World::new(&sc, &base);
    for (i, at) in sc.steps.iter().take(upto).enumerate() {
        if let Err(m) = world.step(&at.step) {
            let note = format!(
                "note: {path}:{}: step {} ({}) did not go as expected ({} instead of {}); explaining anyway",
                at.line,
                i + 1,
                at.step.op(),
                m.got,
                m.expected
            );
            writeln!(err, "{}", one_line(&note))?;
        }
    }
    let (which, _) = world
        .route(&spec.device)
        .ok_or_else(|| Error::Usage(format!("device `{}` cannot do DMA", spec.device)))?;
    let unit_name = match which {
        scenario::world::Which::Host(_) => "the host unit (the device is assigned)",
        scenario::world::Which::Guest(_) => {
            "the vIOMMU's guest-facing unit (the device is emulated)"
        }
    };
    let (events, result) = world
        .explain(&spec)
        .ok_or_else(|| Error::Usage(format!("device `{}` cannot do DMA", spec.device)))?;
    let mut text = vec![
        format!("{label} of {}: {}", one_line(path), spec.describe()),
        format!(
            "translated by {unit_name}; walked from memory without side effects (no cache, no A/D write, nothing recorded)"
        ),
        String::new(),
    ];
    text.extend(
        explain::draw_walk(&events)
            .into_iter()
            .map(|l| format!("  {l}")),
    );
    let (fs, ss_tables, ss_final) = explain::reads_by_stage(&events);
    text.push(format!(
        "  paging-structure reads: {fs} first-stage, {ss_tables} stage-2 for first-stage tables, {ss_final} stage-2 for the address ({} in all)",
        fs + ss_tables + ss_final
    ));
    let mut record = serde_json::json!({
        "scenario": path,
        "target": label,
        "dma": spec.describe(),
        "walk": explain::walk_json(&events),
        "reads": {"first_stage": fs, "second_stage_for_tables": ss_tables, "second_stage_final": ss_final},
    });
    match &result {
        Ok(t) => text.push(format!("  result: {}", explain::translation_line(t))),
        Err(f) => {
            let story = explain::fault_story(f, &world.view());
            text.push(String::new());
            text.push(format!("  fault in the {}:", f.stage.describe()));
            text.extend(
                explain::story_lines(&story)
                    .into_iter()
                    .map(|l| format!("    {l}")),
            );
            record["fault"] = story.json(f);
        }
    }
    rep.record("explain", record, &text)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_escapes_control_characters_only() {
        assert_eq!(one_line("a\nb\r\tc"), r"a\nb\r\tc");
        assert_eq!(one_line("état → ok"), "état → ok");
    }
}
