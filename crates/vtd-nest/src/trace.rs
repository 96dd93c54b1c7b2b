//! DMA traces (docs/TRACES.md): one access per line, `R|W|A IOVA LEN`. `generate` writes
//! NIC-like and storage-like traces from vtd-model's workload generators; `replay` runs
//! a trace through the benchmark's nested unit ([`NestedBench`]) and reports throughput,
//! cache hit rates and walk references per translation.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use vtd_model::build::Leaf;
use vtd_model::cache::CacheConfig;
use vtd_model::request::{Access, Request};
use vtd_model::workload::{Dma, NestedBench, NicRx, Storage};
use vtd_spec::addr::PageSize;

use crate::TraceKind;
use crate::error::{Error, Result};
use crate::output::Report;
use crate::scenario::format::Num;

/// The first line of every trace.
pub const HEADER: &str = "# vtd-nest trace v1";

/// Requests at and above which `replay` shows a progress bar (on a terminal).
const PROGRESS_FROM: u64 = 1 << 20;

/// Accesses a trace may hold, read or generated: a replay keeps them all in memory.
pub const MAX_ACCESSES: usize = 1 << 24;

/// Translations a replay may run (accesses × `--repeat`): about half a minute in a
/// release build, so a replay always ends in reasonable time.
pub const MAX_TRANSLATIONS: u64 = 1 << 30;

/// Distinct pages a replay maps: the unit's 8 MiB of first-stage table pages cannot map
/// this many 4 KiB pages, so a larger trace fails anyway; this fails it before the page
/// set grows with the trace.
const MAX_PAGES: usize = 1 << 20;

/// Bytes a trace line may have; a record is under 50.
const MAX_LINE: usize = 4096;

/// A token of a bad line, shortened so the error stays readable.
fn shown(token: &str) -> String {
    const MAX: usize = 40;
    match token.char_indices().nth(MAX) {
        Some((end, _)) => format!("{}…", &token[..end]),
        None => token.to_string(),
    }
}

/// Parse one trace line; `None` for blank lines and comments.
pub fn parse_line(line: &str) -> std::result::Result<Option<Dma>, String> {
    let line = line.split('#').next().unwrap_or("").trim();
    if line.is_empty() {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let access = match parts.next() {
        Some("R" | "r") => Access::Read,
        Some("W" | "w") => Access::Write,
        Some("A" | "a") => Access::AtomicRmw,
        Some(other) => {
            return Err(format!(
                "unknown access `{}`: expected R, W or A",
                shown(other)
            ));
        }
        None => return Ok(None),
    };
    let iova = parts
        .next()
        .ok_or("missing IOVA: expected `R|W|A IOVA LEN`")?;
    let iova = Num::parse(iova).ok_or_else(|| format!("`{}` is not an address", shown(iova)))?;
    let len = parts
        .next()
        .ok_or("missing length: expected `R|W|A IOVA LEN`")?;
    let len: u32 = len
        .parse()
        .map_err(|_| format!("`{}` is not a length in bytes", shown(len)))?;
    if let Some(extra) = parts.next() {
        return Err(format!("unexpected `{}` after the length", shown(extra)));
    }
    if len == 0 || (iova & 0xFFF) + len as u64 > 4096 {
        return Err(format!(
            "{len} bytes at {iova:#x} cross a 4 KiB page (or are empty); split the access as the device would"
        ));
    }
    Ok(Some(Dma { iova, len, access }))
}

/// Read a whole trace: at most [`MAX_ACCESSES`] accesses, lines of at most 4 KiB of
/// UTF-8, so a wrong file fails fast instead of filling memory; only regular files are
/// read, so a FIFO cannot block it.
pub fn read(file: &Path) -> Result<Vec<Dma>> {
    let shown = file.to_string_lossy();
    let path: &str = &shown;
    let file = crate::error::open_input(file).map_err(|source| Error::File {
        path: path.into(),
        source,
    })?;
    let bad = |line: usize, msg: String| Error::Trace {
        path: path.into(),
        line,
        msg,
    };
    let mut reader = BufReader::new(file);
    let mut out = Vec::new();
    let mut buf = Vec::new();
    for number in 1.. {
        buf.clear();
        let n = (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(|source| Error::File {
                path: path.into(),
                source,
            })?;
        if n == 0 {
            break;
        }
        if buf.last() == Some(&b'\n') {
            buf.pop();
        } else if n > MAX_LINE {
            return Err(bad(
                number,
                format!("the line is longer than {MAX_LINE} bytes; a record is `R|W|A IOVA LEN`"),
            ));
        }
        let line = std::str::from_utf8(&buf)
            .map_err(|_| bad(number, "the line is not UTF-8 text".into()))?;
        match parse_line(line) {
            Ok(Some(d)) => {
                if out.len() == MAX_ACCESSES {
                    return Err(bad(
                        number,
                        format!(
                            "the trace has more than {MAX_ACCESSES} accesses, the most a replay holds"
                        ),
                    ));
                }
                out.push(d);
            }
            Ok(None) => {}
            Err(msg) => return Err(bad(number, msg)),
        }
    }
    if out.is_empty() {
        return Err(bad(1, "the trace has no accesses".into()));
    }
    Ok(out)
}

/// `vtd-nest trace --generate`: `count` packets (nic) or I/Os (storage) into `path`
/// (`-` for `out`), written as they are generated. A trace longer than a replay takes
/// ([`MAX_ACCESSES`]) is refused before anything is written.
pub fn generate(kind: TraceKind, count: u64, file: &Path, out: &mut dyn Write) -> Result<()> {
    let shown = file.to_string_lossy();
    let path: &str = &shown;
    let nic = NicRx::default();
    let storage = Storage::default();
    let one = |n: u64, buf: &mut Vec<Dma>| match kind {
        TraceKind::Nic => nic.packet_into(n, buf),
        TraceKind::Storage => storage.io_into(n, buf),
    };
    let (name, what) = match kind {
        TraceKind::Nic => ("nic", "packets"),
        TraceKind::Storage => ("storage", "I/Os"),
    };
    // Every packet (I/O) of a generator has the same number of accesses.
    let mut buf = Vec::new();
    one(0, &mut buf);
    let per = buf.len() as u64;
    let accesses = count
        .checked_mul(per)
        .filter(|&a| a <= MAX_ACCESSES as u64)
        .ok_or_else(|| {
            Error::Usage(format!(
                "--count {count}: {count} {what} of {per} accesses each is more than the {MAX_ACCESSES} accesses a trace may hold (at most --count {})",
                MAX_ACCESSES as u64 / per
            ))
        })?;
    let write = |w: &mut dyn Write| -> std::io::Result<()> {
        writeln!(w, "{HEADER}")?;
        writeln!(w, "# {name}: {count} {what}, {accesses} accesses")?;
        let mut buf = Vec::new();
        for n in 0..count {
            buf.clear();
            one(n, &mut buf);
            for d in &buf {
                let a = match d.access {
                    Access::Read => 'R',
                    Access::Write => 'W',
                    Access::AtomicRmw => 'A',
                };
                writeln!(w, "{a} {:#x} {}", d.iova, d.len)?;
            }
        }
        w.flush()
    };
    if file == Path::new("-") {
        write(out)?;
    } else {
        let file = std::fs::File::create(file).map_err(|source| Error::File {
            path: path.into(),
            source,
        })?;
        write(&mut BufWriter::new(file)).map_err(|source| Error::File {
            path: path.into(),
            source,
        })?;
        writeln!(
            out,
            "wrote {accesses} accesses ({count} {what}) to {}",
            crate::one_line(path)
        )?;
    }
    Ok(())
}

/// `vtd-nest trace FILE`: map every page the trace touches, replay it `repeat` times, and
/// report.
pub fn replay(file: &Path, repeat: u32, rep: &mut Report<'_>) -> Result<()> {
    let dmas = read(file)?;
    let shown = file.to_string_lossy();
    let path: &str = &shown;
    let total = (dmas.len() as u64).saturating_mul(repeat as u64);
    if total > MAX_TRANSLATIONS {
        return Err(Error::Usage(format!(
            "{path}: {} accesses × --repeat {repeat} is {total} translations, more than the {MAX_TRANSLATIONS} a replay runs; lower --repeat",
            dmas.len()
        )));
    }
    let bench = NestedBench::new(PageSize::Size2M, CacheConfig::default())
        .map_err(|e| Error::Setup(format!("trace unit: {e}")))?;
    // Every page touched gets a 4 KiB first-stage mapping to its own guest page (wrapping
    // over the data area when the trace touches more pages than guest memory has).
    let data_pages = (NestedBench::GUEST_TABLES - 0x10_0000) / 4096;
    let mut pages: BTreeMap<u64, u64> = BTreeMap::new();
    for d in &dmas {
        let next = pages.len() as u64;
        pages.entry(d.iova >> 12).or_insert(next);
        if pages.len() > MAX_PAGES {
            return Err(Error::Trace {
                path: path.into(),
                line: 1,
                msg: format!(
                    "the trace touches more than {MAX_PAGES} distinct pages, more than the replay unit's first-stage tables can map"
                ),
            });
        }
    }
    {
        let mut fs = bench.fs();
        for (&page, &k) in &pages {
            fs.map(
                page << 12,
                0x10_0000 + (k % data_pages) * 4096,
                PageSize::Size4K,
                Leaf::read_write(),
            )
            .map_err(|e| {
                let msg = match e {
                    vtd_model::build::BuildError::Unaligned(_) | vtd_model::build::BuildError::Mem(_) => format!(
                        "the trace touches {} distinct pages, more than the replay unit's first-stage tables can map ({e})",
                        pages.len()
                    ),
                    other => format!("IOVA {:#x} cannot be mapped: {other}", page << 12),
                };
                Error::Trace {
                    path: path.into(),
                    line: 1,
                    msg,
                }
            })?;
        }
    }
    let reqs: Vec<Request> = dmas
        .iter()
        .map(|d| d.request(NestedBench::SID, Some(NestedBench::PASID)))
        .collect();
    let bar = if total >= PROGRESS_FROM {
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:40} {pos}/{len} translations ({per_sec}, {eta} left)",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let unit = &bench.unit;
    let before = unit.stats();
    let start = Instant::now();
    let mut faults = 0u64;
    for _ in 0..repeat {
        for chunk in reqs.chunks(1 << 16) {
            for r in chunk {
                if unit.translate(r).is_err() {
                    faults += 1;
                }
            }
            bar.inc(chunk.len() as u64);
        }
    }
    let elapsed = start.elapsed();
    bar.finish_and_clear();
    let s = unit.stats().since(&before);
    let n = s.translations.max(1) as f64;
    let rate = |hit: u64, miss: u64| {
        if hit + miss == 0 {
            None
        } else {
            Some(100.0 * hit as f64 / (hit + miss) as f64)
        }
    };
    let pct = |r: Option<f64>| r.map_or("-".to_string(), |v| format!("{v:.1} %"));
    let mtps = s.translations as f64 / elapsed.as_secs_f64().max(1e-9) / 1e6;
    let iotlb = rate(s.iotlb_hits, s.iotlb_misses);
    let fs_psc = rate(s.fs_psc_hits, s.fs_psc_misses);
    let ss_psc = rate(s.ss_psc_hits, s.ss_psc_misses);
    let lines = vec![
        format!(
            "trace {}: {} accesses, {} distinct pages, replayed {repeat}×",
            crate::one_line(path),
            dmas.len(),
            pages.len()
        ),
        "unit: nested, 4-level first stage over a 4-level stage 2 of 2 MiB pages (vtd_model::workload::NestedBench); every touched page mapped".into(),
        format!(
            "throughput: {mtps:.2} M translations/s ({} translations in {:.3} s, one thread{})",
            s.translations,
            elapsed.as_secs_f64(),
            if cfg!(debug_assertions) { ", debug build" } else { "" }
        ),
        format!(
            "cache hit rates: IOTLB {}, first-stage paging-structure {}, second-stage paging-structure {}",
            pct(iotlb),
            pct(fs_psc),
            pct(ss_psc)
        ),
        format!(
            "walk references per translation: {:.3} ({:.3} first-stage, {:.3} stage-2 for first-stage tables, {:.3} stage-2 final)",
            s.paging_reads() as f64 / n,
            s.fs_entry_reads as f64 / n,
            s.ss_reads_for_fs_tables as f64 / n,
            s.ss_reads_final as f64 / n
        ),
        format!("faults: {faults}"),
    ];
    rep.record(
        "trace",
        json!({
            "path": path, "accesses": dmas.len(), "distinct_pages": pages.len(), "repeat": repeat,
            "translations": s.translations, "seconds": elapsed.as_secs_f64(), "m_translations_per_s": mtps,
            "iotlb_hit_rate": iotlb, "fs_psc_hit_rate": fs_psc, "ss_psc_hit_rate": ss_psc,
            "walk_refs_per_translation": s.paging_reads() as f64 / n,
            "fs_refs_per_translation": s.fs_entry_reads as f64 / n,
            "ss_table_refs_per_translation": s.ss_reads_for_fs_tables as f64 / n,
            "ss_final_refs_per_translation": s.ss_reads_final as f64 / n,
            "faults": faults,
            "debug_build": cfg!(debug_assertions),
        }),
        &lines,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_or_say_why() {
        assert_eq!(
            parse_line("W 0x1000 512 # frame"),
            Ok(Some(Dma {
                iova: 0x1000,
                len: 512,
                access: Access::Write
            }))
        );
        assert_eq!(parse_line("  # comment"), Ok(None));
        assert!(
            parse_line("X 0x1000 4")
                .unwrap_err()
                .contains("unknown access")
        );
        assert!(parse_line("R 0xfff 2").unwrap_err().contains("cross"));
        assert!(
            parse_line("R 0x1000")
                .unwrap_err()
                .contains("missing length")
        );
        assert!(parse_line("R zz 4").unwrap_err().contains("not an address"));
    }

    #[test]
    fn long_tokens_are_shortened_on_a_char_boundary() {
        assert_eq!(shown("R"), "R");
        let long = "é".repeat(100);
        assert_eq!(shown(&long), format!("{}…", "é".repeat(40)));
    }
}
