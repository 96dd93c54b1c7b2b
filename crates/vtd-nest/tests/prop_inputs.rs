//! Property tests of the CLI's input handling, one rule each: whatever the input, the
//! program does not panic, exits 0, 1 or 2, and says what went wrong in one line.
//!
//! - Mutated examples: every shipped scenario with numbers swapped for extreme values,
//!   step kinds swapped, lines deleted or inserted, steps duplicated, names made undefined,
//!   enums and booleans changed; then `run`, `explain --step N` and `explain --addr A`.
//! - Random scenarios: arbitrary bytes, TOML-ish text from the format's own keys, and
//!   well-formed scenarios whose steps carry extreme values.
//! - Random traces: valid records mixed with garbage, extreme addresses and lengths;
//!   `--repeat` and `trace --generate --count` with extreme values.
//! - Random command lines from the real subcommands and flags, plus junk.
//!
//! Everything runs in-process through `vtd_nest::main_with`. Generated memory maps stay
//! small so the suite stays fast; the huge sizes come from the mutations, which the CLI
//! must refuse before allocating anything. Case counts are modest because CI time is
//! tight; `PROPTEST_CASES` overrides them.

use std::ffi::OsString;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::{FileFailurePersistence, TestCaseError};

fn config(default_cases: u32) -> ProptestConfig {
    let mut config = ProptestConfig::with_cases(default_cases);
    // tests/prop_inputs.proptest-regressions, committed.
    config.failure_persistence = Some(Box::new(FileFailurePersistence::WithSource(
        "proptest-regressions",
    )));
    if let Some(n) = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        config.cases = n;
    }
    config
}

/// Longer than any input here should take, even in a debug build: past it, a case counts
/// as a hang.
const SLOW: Duration = Duration::from_secs(30);

/// Run the CLI in-process; a panic or a run past [`SLOW`] fails the case with the command
/// line and `input`.
fn run(args: Vec<OsString>, input: &str) -> Result<(i32, String, String), TestCaseError> {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let mut argv = vec![OsString::from("vtd-nest")];
    argv.extend(args.iter().cloned());
    let start = Instant::now();
    let code = catch_unwind(AssertUnwindSafe(|| {
        vtd_nest::main_with(argv, &mut out, &mut err)
    }))
    .map_err(|p| {
        let msg = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        TestCaseError::fail(format!("panic `{msg}` on {args:?} with input:\n{input}"))
    })?;
    let took = start.elapsed();
    prop_assert!(took < SLOW, "{args:?} took {took:?} with input:\n{input}");
    Ok((
        code,
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
    ))
}

/// The exit-status and one-line rules. `note:` lines (explain running past a mismatch)
/// are allowed besides the one error line.
fn check(code: i32, err: &str, args: &[OsString], input: &str) -> Result<(), TestCaseError> {
    let lines: Vec<&str> = err.lines().filter(|l| !l.starts_with("note: ")).collect();
    let ctx = || format!("{args:?}: exit {code}, stderr {err:?}, input:\n{input}");
    prop_assert!(matches!(code, 0..=2), "{}", ctx());
    prop_assert!(!err.contains("panicked"), "{}", ctx());
    // `probe` answers "no" with exit 1 and its reports on stdout; nothing is wrong.
    let probe = args.first().is_some_and(|a| a == "probe");
    match code {
        0 => prop_assert!(lines.is_empty(), "{}", ctx()),
        1 if probe => prop_assert!(lines.is_empty(), "{}", ctx()),
        1 => {
            prop_assert_eq!(lines.len(), 1, "{}", ctx());
            prop_assert!(lines[0].contains(": step "), "{}", ctx());
        }
        _ => {
            prop_assert_eq!(lines.len(), 1, "{}", ctx());
            prop_assert!(lines[0].starts_with("error: "), "{}", ctx());
        }
    }
    Ok(())
}

fn run_checked(args: Vec<OsString>, input: &str) -> Result<(i32, String, String), TestCaseError> {
    let (code, out, err) = run(args.clone(), input)?;
    check(code, &err, &args, input)?;
    Ok((code, out, err))
}

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A scratch directory for one property, so properties running in parallel do not share
/// files.
fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("prop_inputs")
        .join(name);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn write(path: &std::path::Path, bytes: &[u8]) -> String {
    std::fs::write(path, bytes).expect("write scratch file");
    path.to_string_lossy().into_owned()
}

/// The shipped scenarios: (file name, text).
fn examples() -> &'static [(String, String)] {
    static EXAMPLES: OnceLock<Vec<(String, String)>> = OnceLock::new();
    EXAMPLES.get_or_init(|| {
        let mut v: Vec<(String, String)> = std::fs::read_dir(repo().join("examples/scenarios"))
            .expect("examples/scenarios")
            .map(|e| e.expect("dir entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .map(|p| {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read_to_string(&p).expect("example"))
            })
            .collect();
        v.sort();
        assert!(v.len() >= 12, "examples missing");
        v
    })
}

// ---------------------------------------------------------------------------------------
// Pools of values.

/// Numbers as TOML values: extremes, unaligned, negative, past 2^64, not numbers.
const NUMBERS: &[&str] = &[
    "0",
    "1",
    "-1",
    "4095",
    "0x1001",
    "4096",
    "0x20_0000",
    "0x4000_0000",
    "0xC_0000",
    "0xE0_0000",
    "0xFEE0_0000",
    "1048576",
    "1048575",
    "4294967295",
    "4294967296",
    "4503599627370496",
    "0x8000_0000_0000",
    "0x7fff_ffff_ffff_ffff",
    "-9223372036854775808",
    "\"18446744073709551615\"",
    "\"0xffff_ffff_ffff_ffff\"",
    "\"0xffff_ffff_ffff_f000\"",
    "\"0xffff_8000_0000_0000\"",
    "\"0x0100_0000_0000_0000\"",
    "\"18446744073709551616\"",
    "\"0x1_0000_0000_0000_0000\"",
    "\"4G\"",
    "\"1G\"",
    "\"2M\"",
    "\"16M\"",
    "\"1T\"",
    "\"17179869184G\"",
    "\"0x\"",
    "\"\"",
    "\"-5\"",
    "1.5",
    "nan",
    "[1, 2]",
];

/// Numbers that parse, so a mutated scenario gets past loading more often.
const GOOD_NUMBERS: &[&str] = &[
    "0",
    "1",
    "4095",
    "0x1001",
    "4096",
    "0x20_0000",
    "0x4000_0000",
    "0xC_0000",
    "0xE0_0000",
    "0xFF_F000",
    "0xFEE0_0000",
    "1048575",
    "4294967295",
    "4294967296",
    "4503599627370496",
    "0x8000_0000_0000",
    "0xffff_f000",
    "0x7fff_ffff_ffff_f000",
    "\"0xffff_ffff_ffff_ffff\"",
    "\"0xffff_ffff_ffff_f000\"",
    "\"0xffff_8000_0000_0000\"",
    "\"0xffff_ffff_c000_0000\"",
    "\"4G\"",
    "\"1G\"",
    "\"2M\"",
];

/// Names: defined in the examples, undefined, odd.
const NAMES: &[&str] = &[
    "nic0", "ssd0", "emu0", "s1", "s2", "parent", "ioas", "nested", "nope", "", "ü", "a b", "NIC0",
    "plain",
];

/// Every enum word the format knows, and some it does not.
const WORDS: &[&str] = &[
    "sapphire-rapids",
    "without-nesting",
    "off",
    "top-level",
    "all-levels",
    "manual",
    "viommu",
    "assigned",
    "emulated",
    "first-stage",
    "pass-through",
    "none",
    "read",
    "write",
    "atomic",
    "4K",
    "2M",
    "1G",
    "3K",
    "EINVAL",
    "ENOENT",
    "EOPNOTSUPP",
    "EFROB",
    "SSS.2",
    "SFS.8",
    "SPT.2",
    "0x79",
    "0xff",
    "256",
    "nested",
    "second-stage",
    "untranslated",
    "host",
    "guest",
    "parent",
    "blocked",
    "rom",
    "ram",
    "paging",
    "nest-parent",
    "00:02.0",
    "00:03.0",
    "ff:1f.7",
    "00:20.0",
    "0:0.0",
    "",
];

const OPS: &[&str] = &[
    "guest_boot",
    "stage1",
    "map",
    "unmap",
    "pasid",
    "invalidate",
    "stage2",
    "ioas_unmap",
    "alloc",
    "attach",
    "detach",
    "dma",
    "mem_write",
    "mem_check",
    "dirty_tracking",
    "dirty_bitmap",
    "hw_info",
    "expect",
    "reset_counters",
    "frobnicate",
];

/// Keys the format uses anywhere (so an inserted line is sometimes right where it lands).
const KEYS: &[&str] = &[
    "name",
    "levels",
    "root",
    "table",
    "iova",
    "gpa",
    "size",
    "write",
    "user",
    "accessed",
    "dirty",
    "device",
    "pasid",
    "entry",
    "did",
    "sre",
    "hwpt",
    "pages",
    "ioas",
    "nest_parent",
    "keep_ro_out",
    "kind",
    "parent",
    "access",
    "len",
    "privileged",
    "data",
    "enable",
    "length",
    "unit",
    "attachment",
    "preset",
    "erratum",
    "fs5lp",
    "fs1gp",
    "ro_refusal",
    "ram_top",
    "mode",
    "dirty_tracking",
    "guest_bdf",
    "host",
    "pasid_bits",
    "ats",
];

/// A TOML value of any kind from the pools.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => select(NUMBERS).prop_map(str::to_string),
        2 => select(WORDS).prop_map(|w| format!("{w:?}")),
        1 => select(NAMES).prop_map(|w| format!("{w:?}")),
        1 => select(&["true", "false"][..]).prop_map(str::to_string),
        1 => any::<u64>().prop_map(|n| format!("\"{n:#x}\"")),
        1 => (0u64..1 << 24).prop_map(|n| format!("{:#x}", n << 12)),
        1 => select(&[
            "{ errno = \"EINVAL\" }",
            "{ fault = \"SSS.2\" }",
            "{ fault = \"0x79\", gpa = 0 }",
            "{ data = \"abc\", kind = \"nested\", from_iotlb = true }",
            "{ dirty = [0x20_0000, \"0xffffffffffffffff\"] }",
            "{ erratum = true, nesting = false }",
            "{ fs_entry_reads = 18446744073709551615 }",
            "[\"vbios\"]",
            "{}",
            "\"x\\u0000y\"",
            "\"line\\nbreak\"",
            "\"\\\"\"",
        ][..])
        .prop_map(str::to_string),
    ]
}

// ---------------------------------------------------------------------------------------
// a. Mutated examples.

#[derive(Clone, Debug)]
enum Mutation {
    /// Replace the `nth` number on a line.
    Number(Index, Index, String),
    /// Change the kind of a step.
    Op(Index, &'static str),
    DeleteLine(Index),
    /// Copy a step to before another step (or the end).
    DuplicateStep(Index, Index),
    /// Replace the value of a name-valued key.
    Rename(Index, &'static str),
    /// Replace a quoted value with another word.
    Word(Index, &'static str),
    /// true ↔ false.
    FlipBool(Index),
    /// Insert `key = value` before a line.
    Insert(Index, &'static str, String),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        8 => (any::<Index>(), any::<Index>(), select(GOOD_NUMBERS))
            .prop_map(|(l, n, v)| Mutation::Number(l, n, v.to_string())),
        2 => (any::<Index>(), any::<Index>(), value()).prop_map(|(l, n, v)| Mutation::Number(l, n, v)),
        2 => (any::<Index>(), select(OPS)).prop_map(|(i, o)| Mutation::Op(i, o)),
        2 => any::<Index>().prop_map(Mutation::DeleteLine),
        2 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::DuplicateStep(a, b)),
        2 => (any::<Index>(), select(NAMES)).prop_map(|(i, n)| Mutation::Rename(i, n)),
        2 => (any::<Index>(), select(WORDS)).prop_map(|(i, w)| Mutation::Word(i, w)),
        1 => any::<Index>().prop_map(Mutation::FlipBool),
        2 => (any::<Index>(), select(KEYS), value()).prop_map(|(i, k, v)| Mutation::Insert(i, k, v)),
    ]
}

/// Byte ranges of the numbers on `line` (a quoted number with its quotes).
fn numbers_in(line: &str) -> Vec<(usize, usize)> {
    let b = line.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let starts = b[i].is_ascii_digit()
            && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_'));
        if !starts {
            i += 1;
            continue;
        }
        let mut j = i;
        while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
            j += 1;
        }
        if i > 0 && b[i - 1] == b'"' {
            let close = line[j..].find('"').map_or(b.len(), |k| j + k + 1);
            out.push((i - 1, close));
            i = close;
        } else {
            out.push((i, j));
            i = j;
        }
    }
    out
}

/// The value part of a `key = value` line: (key, byte range of the value).
fn key_value(line: &str) -> Option<(&str, usize, usize)> {
    let (k, _) = line.split_once('=')?;
    let key = k.trim();
    if key.is_empty() || key.starts_with('#') || key.starts_with('[') {
        return None;
    }
    let start = k.len() + 1;
    let end = line[start..].find(" #").map_or(line.len(), |e| start + e);
    Some((key, start, end))
}

/// Line indices where steps start.
fn step_starts(lines: &[String]) -> Vec<usize> {
    lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.trim() == "[[step]]")
        .map(|(i, _)| i)
        .collect()
}

fn apply(text: &str, muts: &[Mutation]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    for m in muts {
        if lines.is_empty() {
            lines.push(String::new());
        }
        let n = lines.len();
        match m {
            Mutation::Number(l, nth, v) => {
                let candidates: Vec<usize> = (0..n)
                    .filter(|&i| !numbers_in(&lines[i]).is_empty())
                    .collect();
                if candidates.is_empty() {
                    continue;
                }
                let i = candidates[l.index(candidates.len())];
                let nums = numbers_in(&lines[i]);
                let (a, b) = nums[nth.index(nums.len())];
                lines[i].replace_range(a..b, v);
            }
            Mutation::Op(s, op) => {
                let ops: Vec<usize> = (0..n)
                    .filter(|&i| key_value(&lines[i]).is_some_and(|(k, _, _)| k == "op"))
                    .collect();
                if !ops.is_empty() {
                    let i = ops[s.index(ops.len())];
                    lines[i] = format!("op = {op:?}");
                }
            }
            Mutation::DeleteLine(l) => {
                lines.remove(l.index(n));
            }
            Mutation::DuplicateStep(s, at) => {
                let starts = step_starts(&lines);
                if starts.is_empty() {
                    continue;
                }
                let k = s.index(starts.len());
                let end = starts.get(k + 1).copied().unwrap_or(n);
                let block: Vec<String> = lines[starts[k]..end].to_vec();
                let mut targets = starts.clone();
                targets.push(n);
                let to = targets[at.index(targets.len())];
                lines.splice(to..to, block);
            }
            Mutation::Rename(l, name) => {
                const NAMED: [&str; 8] = [
                    "name",
                    "device",
                    "table",
                    "hwpt",
                    "ioas",
                    "parent",
                    "host",
                    "guest_bdf",
                ];
                let candidates: Vec<usize> = (0..n)
                    .filter(|&i| key_value(&lines[i]).is_some_and(|(k, _, _)| NAMED.contains(&k)))
                    .collect();
                if !candidates.is_empty() {
                    let i = candidates[l.index(candidates.len())];
                    let (_, a, b) = key_value(&lines[i]).unwrap();
                    lines[i].replace_range(a..b, &format!(" {name:?}"));
                }
            }
            Mutation::Word(l, w) => {
                let candidates: Vec<usize> = (0..n)
                    .filter(|&i| lines[i].matches('"').count() >= 2)
                    .collect();
                if !candidates.is_empty() {
                    let i = candidates[l.index(candidates.len())];
                    let a = lines[i].find('"').unwrap();
                    let b = a + 1 + lines[i][a + 1..].find('"').unwrap();
                    lines[i].replace_range(a..=b, &format!("{w:?}"));
                }
            }
            Mutation::FlipBool(l) => {
                let candidates: Vec<usize> = (0..n)
                    .filter(|&i| lines[i].contains("true") || lines[i].contains("false"))
                    .collect();
                if !candidates.is_empty() {
                    let i = candidates[l.index(candidates.len())];
                    lines[i] = if lines[i].contains("true") {
                        lines[i].replacen("true", "false", 1)
                    } else {
                        lines[i].replacen("false", "true", 1)
                    };
                }
            }
            Mutation::Insert(l, k, v) => {
                lines.insert(l.index(n + 1), format!("{k} = {v}"));
            }
        }
    }
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

/// `explain` targets: a step number (0, past the end and huge too), the last dma step
/// (which runs every step before it, past mismatches), or an address after the whole
/// scenario.
#[derive(Clone, Debug)]
enum Target {
    Step(Index, bool),
    LastDma,
    Addr(String, Option<&'static str>, bool, Option<String>),
}

fn target() -> impl Strategy<Value = Target> {
    let addr = prop_oneof![
        2 => any::<u64>().prop_map(|a| format!("{a:#x}")),
        4 => select(&[
            "0",
            "0x20_0000",
            "0x4000_0000",
            "0x4000_0ffe",
            "0x4000_1000",
            "0xffffffffffffffff",
            "0xfffffffffffffffe",
            "0xfffffffffffff000",
            "0x1_0000_0000_0000",
        ][..])
        .prop_map(str::to_string),
        1 => select(&["18446744073709551616", "-1", "0x", ""][..]).prop_map(str::to_string),
    ];
    let pasid = prop_oneof![
        4 => Just(None),
        2 => select(&["0", "1", "1048575", "1048576", "4294967295"][..])
            .prop_map(|p| Some(p.to_string())),
        1 => select(&["4294967296", "-1"][..]).prop_map(|p| Some(p.to_string())),
    ];
    let device = prop_oneof![
        2 => Just(None),
        2 => select(&["nic0", "emu0"][..]).prop_map(Some),
        1 => select(NAMES).prop_map(Some),
    ];
    prop_oneof![
        2 => (any::<Index>(), any::<bool>()).prop_map(|(i, huge)| Target::Step(i, huge)),
        2 => Just(Target::LastDma),
        3 => (addr, device, any::<bool>(), pasid).prop_map(|(a, d, w, p)| Target::Addr(a, d, w, p)),
    ]
}

fn explain_args(path: &str, text: &str, t: &Target) -> Vec<OsString> {
    let mut args = os(&["explain", path]);
    let steps = text.matches("[[step]]").count();
    match t {
        Target::Step(i, huge) => {
            let n = if *huge {
                [0, usize::MAX, steps + 1][i.index(3)]
            } else {
                1 + i.index(steps.max(1))
            };
            args.extend(os(&["--step", &n.to_string()]));
        }
        Target::LastDma => {
            let last = text
                .split("[[step]]")
                .skip(1)
                .enumerate()
                .filter(|(_, s)| s.trim_start().starts_with("op = \"dma\""))
                .map(|(i, _)| i + 1)
                .last()
                .unwrap_or(1);
            args.extend(os(&["--step", &last.to_string()]));
        }
        Target::Addr(a, d, w, p) => {
            args.push(format!("--addr={a}").into());
            if let Some(d) = d {
                args.push(format!("--device={d}").into());
            }
            if *w {
                args.push("--write".into());
            }
            if let Some(p) = p {
                args.push(format!("--pasid={p}").into());
            }
        }
    }
    if steps % 2 == 1 {
        args.push("--json".into());
    }
    args
}

/// `run` and `explain` on one scenario text.
fn exercise(dir: &str, text: &[u8], t: &Target) -> Result<(), TestCaseError> {
    let path = write(&scratch(dir).join("s.toml"), text);
    let shown = String::from_utf8_lossy(text);
    let (code, out, _) = run_checked(os(&["run", &path]), &shown)?;
    if code == 0 {
        prop_assert!(out.contains("every expectation held"), "{out}");
    }
    run_checked(os(&["run", "-q", &path]), &shown)?;
    run_checked(explain_args(&path, &shown, t), &shown)?;
    Ok(())
}

proptest! {
    #![proptest_config(config(192))]

    #[test]
    fn mutated_examples_never_panic(
        which in any::<Index>(),
        muts in prop::collection::vec(mutation(), 1..4),
        t in target(),
    ) {
        let (_, text) = &examples()[which.index(examples().len())];
        let text = apply(text, &muts);
        exercise("mutated", text.as_bytes(), &t)?;
    }
}

// ---------------------------------------------------------------------------------------
// b. Random bytes, TOML-ish text, and well-formed scenarios with extreme step values.

fn tomlish_line() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => select(&[
            "[platform]",
            "[memory]",
            "[vmm]",
            "[[device]]",
            "[[step]]",
            "[[platform.devices]]",
            "[memory.table_pool]",
            "[[memory.regions]]",
            "step = [ { op = \"guest_boot\" }, { op = \"dma\", device = \"nic0\", iova = 0 } ]",
            "[step",
            "[[step]",
            "= 1",
            "\"unterminated",
            "a.b.c = 1",
            "# comment",
            "",
        ][..])
        .prop_map(str::to_string),
        3 => (select(KEYS), value()).prop_map(|(k, v)| format!("{k} = {v}")),
        1 => select(OPS).prop_map(|o| format!("op = {o:?}")),
    ]
}

/// A memory section that stays small (the suite must be fast) but is sometimes wrong.
fn memory_section() -> impl Strategy<Value = String> {
    prop_oneof![
        24 => Just(String::new()),
        2 => select(&["\"2M\"", "\"16M\"", "\"64M\"", "0", "\"0x1001\"", "\"1T\"", "\"18446744073709551615\""][..])
            .prop_map(|t| format!("[memory]\nram_top = {t}\n")),
        2 => (0u64..64, 2u64..64, 0u64..4, 1u64..16).prop_map(|(a, b, c, d)| format!(
            "[memory]\nregions = [ {{ name = \"ram\", gpa = {:#x}, size = {:#x} }}, {{ name = \"rom\", gpa = {:#x}, size = {:#x}, kind = \"rom\" }} ]\ntable_pool = {{ gpa = {:#x}, size = {:#x} }}\n",
            a << 20, b << 20, (a + b) << 20, c << 12, (a + 1) << 20, d << 12
        )),
    ]
}

/// A number: mostly one that parses (aligned or not, small or extreme), rarely not.
fn number() -> BoxedStrategy<String> {
    prop_oneof![
        8 => select(GOOD_NUMBERS).prop_map(str::to_string),
        8 => (0u64..0x1000).prop_map(|p| format!("{:#x}", (p << 12) + 0x10_0000)),
        2 => any::<u64>().prop_map(|n| format!("\"{n:#x}\"")),
        2 => (0u32..64).prop_map(|s| format!("\"{:#x}\"", 1u64 << s)),
        1 => select(NUMBERS).prop_map(str::to_string),
    ]
    .boxed()
}

/// Mostly `usual`, sometimes one of `others`.
fn mostly(usual: &'static str, others: &'static [&'static str]) -> BoxedStrategy<String> {
    prop_oneof![
        6 => Just(usual.to_string()),
        1 => select(others).prop_map(str::to_string),
    ]
    .boxed()
}

fn one_of(items: &'static [&'static str]) -> BoxedStrategy<String> {
    select(items).prop_map(str::to_string).boxed()
}

/// A field of a step: its strategy and whether the step needs it.
fn field(op: &str, key: &str) -> (bool, BoxedStrategy<String>) {
    let boolean = || one_of(&["true", "false"]);
    let errno = || one_of(&["{ errno = \"EINVAL\" }", "{ errno = \"ENOENT\" }", "{}"]);
    let required = |k: &str| match op {
        "stage1" | "stage2" | "alloc" if k == "name" => true,
        "map" | "unmap" => matches!(k, "table" | "iova" | "gpa"),
        "pasid" => matches!(k, "device" | "entry"),
        "stage2" | "alloc" | "attach" | "detach" | "dma" | "hw_info" if k == "device" => true,
        "alloc" => k == "kind",
        "attach" | "dirty_tracking" | "dirty_bitmap" => matches!(k, "hwpt" | "iova" | "length"),
        "ioas_unmap" => matches!(k, "ioas" | "iova" | "size"),
        "dma" => k == "iova",
        "mem_write" | "mem_check" => true,
        _ => false,
    };
    let v = match (op, key) {
        (_, "name") if op == "stage1" => mostly("\"s2\"", &["\"s1\"", "\"s3\""]),
        (_, "name") => mostly("\"h\"", &["\"parent\"", "\"h2\"", "\"ioas\""]),
        (_, "table") => mostly("\"s1\"", &["\"s2\"", "\"nope\""]),
        ("map" | "unmap", "iova" | "gpa") => prop_oneof![
            8 => (0u64..0x1000).prop_map(|p| format!("{:#x}", (p << 12) + 0x10_0000)),
            2 => select(&[
                "0",
                "\"0xffff_ffff_ffff_f000\"",
                "\"0xffff_8000_0000_0000\"",
                "\"0xffff_ffff_c000_0000\"",
                "0x8000_0000_0000",
                "0x7fff_ffff_f000",
                "0x7fff_ffff_ffff_f000",
                "0x10_0000_0000_0000",
                "0xC_0000",
                "0x4000_0000",
            ][..])
            .prop_map(str::to_string),
            1 => number(),
        ]
        .boxed(),
        (_, "device") => prop_oneof![
            4 => Just("\"nic0\"".to_string()),
            2 => Just("\"emu0\"".to_string()),
            1 => select(&["\"ssd0\"", "\"nope\""][..]).prop_map(str::to_string),
        ]
        .boxed(),
        (_, "hwpt" | "parent") => mostly("\"parent\"", &["\"h\"", "\"h2\"", "\"nope\""]),
        (_, "ioas") => mostly("\"ioas\"", &["\"io2\"", "\"nope\""]),
        (_, "levels") => mostly("4", &["5", "0", "255"]),
        ("map", "size") => mostly("\"4K\"", &["\"2M\"", "\"1G\"", "\"8K\""]),
        (_, "entry") => one_of(&["\"first-stage\"", "\"pass-through\"", "\"none\""]),
        (_, "access") => one_of(&["\"read\"", "\"write\"", "\"atomic\""]),
        ("alloc", "kind") => one_of(&["\"nested\"", "\"paging\"", "\"nest-parent\""]),
        (_, "unit") => one_of(&["\"host\"", "\"guest\""]),
        (_, "attachment") => one_of(&["\"parent\"", "\"nested\"", "\"blocked\""]),
        (_, "data") => prop_oneof![
            1 => Just("\"\"".to_string()),
            6 => "[a-z]{1,12}".prop_map(|s| format!("{s:?}")),
            1 => (1usize..20_000).prop_map(|n| format!("{:?}", "x".repeat(n))),
        ]
        .boxed(),
        ("dma", "expect") => one_of(&[
            "{ fault = \"SSS.2\" }",
            "{ fault = \"0x77\" }",
            "{ data = \"abcd\" }",
            "{ gpa = 0x20_0000, kind = \"nested\", page_size = \"4K\", from_iotlb = false }",
            "{ gpa = \"0xffffffffffffffff\", page_size = \"1G\" }",
            "{}",
        ]),
        ("dirty_bitmap", "expect") => one_of(&[
            "{ dirty = [0x20_0000, \"0xffffffffffffffff\"] }",
            "{ dirty = [] }",
            "{ errno = \"EINVAL\" }",
        ]),
        ("hw_info", "expect") => one_of(&["{ erratum = true, nesting = false }", "{}"]),
        (_, "expect") => errno(),
        (_, "counters") => one_of(&[
            "{ faults = 0 }",
            "{ fs_entry_reads = 9223372036854775807 }",
            "{ translations = 1 }",
        ]),
        (_, "faults") => one_of(&["{ \"SSS.2\" = 1 }", "{ \"0x79\" = 0 }"]),
        (_, "skipped") => one_of(&["[\"vbios\"]", "[]"]),
        (
            _,
            "write" | "user" | "accessed" | "dirty" | "sre" | "nest_parent" | "keep_ro_out"
            | "privileged" | "enable",
        ) => boolean(),
        (_, "did") => one_of(&["0", "1", "65535"]),
        (_, "pasid") => mostly("0", &["1", "1048575", "1048576", "4294967295"]),
        (_, "len") => one_of(&[
            "0",
            "1",
            "4",
            "4095",
            "4096",
            "4097",
            "65536",
            "1048577",
            "4294967295",
        ]),
        (_, "pages") => one_of(&[
            "0",
            "1",
            "2",
            "512",
            "3",
            "9223372036854775807",
            "\"0x8000000000000000\"",
        ]),
        _ => number(),
    };
    (required(key), v)
}

/// One step of kind `op` with the fields it takes, from the pools.
fn step_of(op: &'static str) -> BoxedStrategy<String> {
    let fields: &'static [&'static str] = match op {
        "stage1" => &["name", "levels", "root"],
        "map" => &[
            "table", "iova", "gpa", "size", "write", "user", "accessed", "dirty",
        ],
        "unmap" => &["table", "iova"],
        "pasid" => &["device", "pasid", "entry", "table", "did", "sre"],
        "invalidate" => &["hwpt", "did", "pasid", "iova", "pages", "expect"],
        "stage2" => &[
            "name",
            "ioas",
            "device",
            "nest_parent",
            "keep_ro_out",
            "dirty",
            "expect",
        ],
        "ioas_unmap" => &["ioas", "iova", "size", "expect"],
        "alloc" => &[
            "name", "kind", "device", "ioas", "parent", "table", "dirty", "expect",
        ],
        "attach" => &["device", "hwpt", "expect"],
        "detach" => &["device", "expect"],
        "dma" => &[
            "device",
            "iova",
            "access",
            "len",
            "pasid",
            "privileged",
            "data",
            "expect",
        ],
        "mem_write" | "mem_check" => &["gpa", "data"],
        "dirty_tracking" => &["hwpt", "enable", "expect"],
        "dirty_bitmap" => &["hwpt", "iova", "length", "expect"],
        "hw_info" => &["device", "expect"],
        "expect" => &[
            "unit",
            "counters",
            "faults",
            "device",
            "attachment",
            "skipped",
        ],
        _ => &[],
    };
    let each: Vec<BoxedStrategy<Option<String>>> = fields
        .iter()
        .map(|&k| {
            let (required, v) = field(op, k);
            match (required, op, k) {
                (true, ..) => v.prop_map(Some).boxed(),
                // Data on a read is refused; keep most reads loadable.
                (_, "dma", "data") => proptest::option::weighted(0.15, v).boxed(),
                _ => proptest::option::weighted(0.4, v).boxed(),
            }
        })
        .collect();
    each.prop_map(move |vals| {
        let mut s = format!("[[step]]\nop = {op:?}\n");
        for (k, v) in fields.iter().zip(vals) {
            if let Some(v) = v {
                s += &format!("{k} = {v}\n");
            }
        }
        s
    })
    .boxed()
}

/// Step kinds, weighted towards the ones that move data.
fn op() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        3 => Just("dma"),
        3 => Just("map"),
        1 => Just("stage1"),
        1 => select(OPS),
    ]
}

fn scenario() -> impl Strategy<Value = String> {
    let header = (
        prop_oneof![
            10 => Just(""),
            1 => Just("[vmm]\nmode = \"manual\"\n"),
            1 => Just("[vmm]\ndirty_tracking = true\n"),
        ],
        prop_oneof![
            16 => Just(""),
            1 => select(&[
                "[platform]\npreset = \"without-nesting\"\n",
                "[platform]\nfs5lp = false\nfs1gp = false\nerratum = \"off\"\nro_refusal = false\n",
                "[platform]\ndevices = [ { name = \"nic0\", bdf = \"00:03.0\", pasid_bits = 255, ats = true }, { name = \"ssd0\", bdf = \"ff:1f.7\", pasid_bits = 20 } ]\n",
                "[platform]\ndevices = [ { name = \"nic0\", bdf = \"00:03.0\" }, { name = \"nic0\", bdf = \"00:03.0\" } ]\n",
                "[platform]\ndevices = [ { name = \"nic0\", bdf = \"00:03.0\" }, { name = \"ssd0\", bdf = \"00:03.0\" } ]\n",
                "[platform]\ndevices = []\n",
            ][..]),
        ],
        memory_section(),
        prop_oneof![
            12 => Just("[[device]]\nname = \"nic0\"\nguest_bdf = \"00:02.0\"\n[[device]]\nname = \"emu0\"\nkind = \"emulated\"\nguest_bdf = \"00:04.0\"\n"),
            4 => Just("[[device]]\nname = \"nic0\"\nguest_bdf = \"00:02.0\"\n"),
            1 => Just("[[device]]\nname = \"nic0\"\nguest_bdf = \"00:02.0\"\n[[device]]\nname = \"ssd0\"\nguest_bdf = \"00:05.0\"\n"),
            1 => Just("[[device]]\nname = \"emu0\"\nkind = \"emulated\"\nguest_bdf = \"00:04.0\"\n"),
        ],
    );
    // Most scenarios boot the guest and make a table first, so later steps get somewhere.
    let prelude = prop_oneof![
        6 => Just("[[step]]\nop = \"guest_boot\"\n[[step]]\nop = \"stage1\"\nname = \"s1\"\n[[step]]\nop = \"pasid\"\ndevice = \"nic0\"\nentry = \"first-stage\"\ntable = \"s1\"\n[[step]]\nop = \"map\"\ntable = \"s1\"\niova = 0x4000_0000\ngpa = 0x20_0000\n"),
        2 => Just("[[step]]\nop = \"stage1\"\nname = \"s1\"\n"),
        1 => Just(""),
    ];
    // Few steps: one bad value refuses the whole file, and most runs should execute.
    let steps = prop::collection::vec(op().prop_flat_map(step_of), 0..6);
    (header, prelude, steps).prop_map(|((vmm, platform, memory, devices), prelude, steps)| {
        format!(
            "{vmm}{platform}{memory}{devices}{prelude}{}",
            steps.join("")
        )
    })
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn random_bytes_as_a_scenario_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..2048),
        t in target(),
    ) {
        exercise("bytes", &bytes, &t)?;
    }

    #[test]
    fn tomlish_text_as_a_scenario_never_panics(
        lines in prop::collection::vec(tomlish_line(), 0..40),
        t in target(),
    ) {
        exercise("tomlish", lines.join("\n").as_bytes(), &t)?;
    }
}

proptest! {
    #![proptest_config(config(192))]

    #[test]
    fn scenarios_with_extreme_step_values_never_panic(text in scenario(), t in target()) {
        exercise("extreme", text.as_bytes(), &t)?;
    }
}

// ---------------------------------------------------------------------------------------
// c. Traces.

/// A record that parses: any access, an address anywhere (near the top of the space
/// too), a length that stays in its page.
fn trace_record() -> impl Strategy<Value = Vec<u8>> {
    let addr = prop_oneof![
        4 => (0u64..1 << 16).prop_map(|p| p << 12),
        1 => any::<u64>().prop_map(|a| a & !0xFFF),
        1 => select(&[0xffff_ffff_ffff_f000u64, 0xffff_8000_0000_0000, 0x8000_0000_0000, 1 << 52, 1 << 63][..]),
    ];
    (
        select(&["R", "W", "A", "r", "w", "a"][..]),
        addr,
        0u64..4096,
        1u64..=4096,
    )
        .prop_map(|(a, page, off, len)| {
            let len = len.min(4096 - off);
            format!("{a} {:#x} {len}", page + off).into_bytes()
        })
}

fn trace_line() -> impl Strategy<Value = Vec<u8>> {
    let access = select(&["R", "W", "A", "Q", "RW", ""][..]);
    let addr = prop_oneof![
        2 => any::<u64>().prop_map(|a| format!("{a:#x}")),
        1 => select(&[
            "0xffffffffffffffff",
            "0xfffffffffffff000",
            "18446744073709551615",
            "18446744073709551616",
            "0x1_0000_0000_0000_0000",
            "-1",
            "0x",
            "1G",
            "0xfff",
            "zz",
        ][..]).prop_map(str::to_string),
    ];
    let len = prop_oneof![
        3 => (1u32..=64).prop_map(|l| l.to_string()),
        1 => select(&["0", "4096", "4097", "4294967295", "4294967296", "-4", "0x10", "1e3"][..])
            .prop_map(str::to_string),
    ];
    prop_oneof![
        8 => trace_record(),
        4 => (access, addr, len).prop_map(|(a, i, l)| format!("{a} {i} {l}").into_bytes()),
        1 => Just(b"# vtd-nest trace v1".to_vec()),
        1 => Just(Vec::new()),
        1 => Just(b"R 0x1000 4 extra".to_vec()),
        1 => Just(b"R 0x1000".to_vec()),
        1 => Just(b"\t  W\t0x2000\t8  # a comment\r".to_vec()),
        1 => prop::collection::vec(any::<u8>(), 0..64),
        1 => (1usize..10_000).prop_map(|n| vec![b'R'; n]),
    ]
}

/// Half the traces are all records (they replay), half mix in anything.
fn trace() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop_oneof![
        prop::collection::vec(trace_record(), 1..60),
        prop::collection::vec(trace_line(), 0..60),
    ]
}

fn repeat_value() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (1u32..4).prop_map(|r| r.to_string()),
        1 => select(&["0", "4294967295", "2147483648", "4294967296", "-1", "x", ""][..])
            .prop_map(str::to_string),
    ]
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn random_traces_never_panic(
        lines in trace(),
        repeat in repeat_value(),
        json in any::<bool>(),
    ) {
        let path = scratch("trace").join("t.trace");
        let bytes = lines.join(&b'\n');
        let p = write(&path, &bytes);
        let mut args = os(&["trace", &p, "--repeat", &repeat]);
        if json {
            args.push("--json".into());
        }
        let shown = String::from_utf8_lossy(&bytes).chars().take(4000).collect::<String>();
        run_checked(args, &shown)?;
    }

    #[test]
    fn generate_with_extreme_counts_is_bounded(
        kind in select(&["nic", "storage", "disk"][..]),
        count in prop_oneof![
            3 => (0u64..50).prop_map(|c| c.to_string()),
            1 => select(&[
                "18446744073709551615",
                "9223372036854775808",
                "1000000000000",
                "4294967296",
                "100000000",
                "18446744073709551616",
                "-1",
                "1e9",
            ][..]).prop_map(str::to_string),
        ],
        to_stdout in any::<bool>(),
    ) {
        let path = scratch("generate").join("g.trace");
        let p = path.to_string_lossy().into_owned();
        let out = if to_stdout { "-" } else { p.as_str() };
        let args = os(&["trace", "--generate", kind, "-o", out, "--count", &count]);
        let (code, text, _) = run_checked(args, "")?;
        if code == 0 && to_stdout {
            prop_assert!(text.starts_with("# vtd-nest trace v1\n"));
        }
        if code == 0 && count != "0" {
            // What was written replays.
            let (code, _, err) = run_checked(os(&["trace", &p]), "")?;
            prop_assert!(to_stdout || code == 0, "{err}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// d. Command lines.

/// Copies of two examples and a small trace in a scratch directory, so a stray `-o`
/// overwrites only copies.
fn cli_files() -> &'static (String, String, String, String) {
    static FILES: OnceLock<(String, String, String, String)> = OnceLock::new();
    FILES.get_or_init(|| {
        let dir = scratch("cli");
        let find = |name: &str| {
            examples()
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, t)| t.clone())
                .expect(name)
        };
        let faults = write(&dir.join("faults.toml"), find("faults.toml").as_bytes());
        let nested = write(
            &dir.join("nested.toml"),
            find("nested-4level.toml").as_bytes(),
        );
        let trace = write(
            &dir.join("small.trace"),
            b"# vtd-nest trace v1\nR 0x1000 16\nW 0x2000 512\nA 0x3ff8 8\n",
        );
        let out = dir.join("out.trace").to_string_lossy().into_owned();
        (faults, nested, trace, out)
    })
}

fn cli_token() -> impl Strategy<Value = OsString> {
    let (faults, nested, trace, out) = cli_files().clone();
    let dir = scratch("cli").to_string_lossy().into_owned();
    let words: Vec<String> = [
        "demo",
        "run",
        "explain",
        "trace",
        "bench",
        "probe",
        "--sim",
        "sapphire-rapids",
        "qemu",
        "--iommu",
        "help",
        "--help",
        "-h",
        "--version",
        "-V",
        "--json",
        "--quiet",
        "-q",
        "--step",
        "--addr",
        "--device",
        "--write",
        "--pasid",
        "--generate",
        "-o",
        "--output",
        "--count",
        "--repeat",
        "--quick",
        "nic",
        "storage",
        "nic0",
        "emu0",
        "nope",
        "-",
        "--",
        "0",
        "1",
        "9",
        "-1",
        "0x4000_0000",
        "0xffffffffffffffff",
        "18446744073709551616",
        "4294967295",
        "4294967296",
        "",
        "/nonexistent/x.toml",
        "--step=0",
        "--addr=",
        "-qq",
        "--frob",
        "ü",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([faults, nested, trace, out, dir])
    .collect();
    prop_oneof![
        12 => select(words).prop_map(OsString::from),
        1 => prop::collection::vec(any::<u8>(), 0..8).prop_map(|b| {
            use std::os::unix::ffi::OsStringExt;
            OsString::from_vec(b)
        }),
    ]
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn random_command_lines_never_panic(mut args in prop::collection::vec(cli_token(), 0..7)) {
        // The full benchmark takes seconds; its flags are what is under test here.
        if args.iter().any(|a| a == "bench") && !args.iter().any(|a| a == "--quick") {
            args.push("--quick".into());
        }
        // `probe` without --sim would ask this machine's real /dev/iommu and bind its VFIO
        // devices: point it at an iommufd that does not exist (right after the
        // subcommand, so it is probe's option whenever probe is the subcommand).
        // Only a `--sim` before `--` is the option; after it, it is a device path.
        let options = args.iter().take_while(|a| *a != "--");
        if let Some(i) = args.iter().position(|a| a == "probe")
            && !options.into_iter().any(|a| a == "--sim")
        {
            args.insert(i + 1, "--iommu=/nonexistent/iommu".into());
        }
        // A trace generated here must stay small.
        if args.iter().any(|a| a == "--generate") {
            args.extend(os(&["--count", "3"]));
        }
        run_checked(args, "")?;
    }
}

/// The extreme-values property is only worth its cases if a good share of its scenarios
/// get past loading and run steps (exit 0 or 1) rather than being refused (exit 2): a
/// single bad value refuses the whole file, so long step lists would almost never run.
#[test]
fn extreme_value_scenarios_often_get_past_loading() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = scenario();
    let total = 64;
    let mut refused = Vec::new();
    for _ in 0..total {
        let text = strategy.new_tree(&mut runner).unwrap().current();
        let path = write(&scratch("loads").join("s.toml"), text.as_bytes());
        let (code, _, err) = run_checked(os(&["run", "-q", &path]), &text).unwrap();
        if code == 2 {
            refused.push(err);
        }
    }
    let ran = total - refused.len();
    assert!(
        ran * 4 >= total,
        "only {ran} of {total} scenarios got past loading; refusals: {refused:#?}"
    );
}
