//! The CLI end to end: the demo's key lines, every example scenario, a wrong expectation,
//! each kind of bad input (one documented line, no panic), explain, trace and bench.

use std::path::PathBuf;
use std::process::Command;

/// Run the CLI in-process: (exit status, stdout, stderr).
fn run(args: &[&str]) -> (i32, String, String) {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let mut argv = vec!["vtd-nest"];
    argv.extend_from_slice(args);
    let code = vtd_nest::main_with(argv, &mut out, &mut err);
    (
        code,
        String::from_utf8(out).expect("utf-8 stdout"),
        String::from_utf8(err).expect("utf-8 stderr"),
    )
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn example(name: &str) -> String {
    repo()
        .join("examples/scenarios")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

/// Write `text` to a fresh file under the test temp dir.
fn temp(name: &str, text: &str) -> String {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&path, text).expect("write temp file");
    path.to_string_lossy().into_owned()
}

/// One line on stderr, starting with `error:`, no panic text.
fn assert_one_line_error(err: &str) {
    assert_eq!(err.lines().count(), 1, "not one line: {err:?}");
    assert!(err.starts_with("error: "), "{err:?}");
    assert!(!err.contains("panicked"), "{err:?}");
}

#[test]
fn demo_tells_the_whole_story_from_real_results() {
    let (code, out, err) = run(&["demo"]);
    assert_eq!(code, 0, "{err}");
    // hw_info's erratum flag.
    assert!(
        out.contains("IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17 is SET"),
        "{out}"
    );
    // The vBIOS kept out of the nest parent, with the reason.
    assert!(
        out.contains(
            "vbios    KEPT OUT: read-only region kept out of the nest parent: ERRATA_772415_SPR17"
        ),
        "{out}"
    );
    assert!(out.contains("ram      mapped read-write"));
    // The nested HWPT from the guest's stage 1.
    assert!(out.contains("IOMMU_HWPT_ALLOC (VTD_S1) → nested HWPT"));
    // The DMA stage by stage: the stage-2 walk for each first-stage table, then the leaf.
    for level in 1..=4 {
        assert!(
            out.contains(&format!("stage 2 for the FS L{level} table at GPA")),
            "L{level}"
        );
        assert!(out.contains(&format!("FS L{level} entry")), "L{level}");
    }
    assert!(out.contains("stage 2 for the final address 0x200010"));
    assert!(out.contains("=> HPA 0x"));
    assert!(out.contains("(nested, 4 KiB page, rights RW, via GPA 0x200010)"));
    assert!(out.contains(r#"the device reads "hello from guest RAM" from GPA 0x200010; that access is an IOTLB hit: 1 translation, 1 IOTLB hit, 0 paging reads"#), "{out}");
    // The vBIOS fault, explained.
    assert!(out.contains("fault SSS.2 (0x79) in the second-stage walk"));
    assert!(out.contains("code: SSS.2, 0x79"));
    assert!(out.contains("it is in region `vbios` (ROM)"));
    assert!(out.contains("fix:  keep device DMA away from read-only guest memory"));
    assert!(
        out.contains("recorded in the guest unit's FRCD[0] with the guest's source id 00:02.0")
    );
    // Stale, invalidate, fresh.
    assert!(out.contains(r#"nic0 reads "hello from guest RAM" from GPA 0x200010 (the IOTLB still holds the old translation): STALE"#), "{out}");
    assert!(out.contains("as IOMMU_HWPT_INVALIDATE (1 entry) → 1 processed"));
    assert!(out.contains(r#"after: nic0 reads "the remapped page" from GPA 0x201010"#));
    assert!(out.contains("FRESH"));
    // Counters.
    assert!(out.contains("walk references: first stage "));
    assert!(out.contains("faults by reason: SSS.2 (0x79) × 1"));
}

#[test]
fn demo_json_carries_the_same_facts_as_records() {
    let (code, out, _) = run(&["demo", "--json"]);
    assert_eq!(code, 0);
    let records: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is one JSON record"))
        .collect();
    let find = |kind: &str| {
        records
            .iter()
            .find(|r| r["record"] == kind)
            .unwrap_or_else(|| panic!("no {kind} record"))
    };
    assert_eq!(find("hw_info")["errata_772415_spr17"], true);
    let vbios = find("stage2")["placements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["region"] == "vbios")
        .cloned()
        .unwrap();
    assert_eq!(vbios["mapped"], false);
    let dma = find("nested_dma");
    assert_eq!(dma["reads"]["first_stage"], 4);
    assert_eq!(dma["data"], "hello from guest RAM");
    assert_eq!(find("fault")["fault"]["reason"], "SSS.2");
    assert_eq!(find("fault")["fault"]["code"], 0x79);
    let inv = find("invalidation");
    assert_eq!(inv["stale"]["from_iotlb"], true);
    assert_eq!(inv["fresh"]["data"], "the remapped page");
    assert_eq!(find("counters")["faults_by_reason"]["SSS.2"], 1);
}

#[test]
fn built_binary_runs_the_demo() {
    let out = Command::new(env!("CARGO_BIN_EXE_vtd-nest"))
        .arg("demo")
        .output()
        .expect("run vtd-nest");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17 is SET"));
    assert!(text.contains("FRESH"));
}

#[test]
fn every_example_scenario_passes() {
    let dir = repo().join("examples/scenarios");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).expect("examples/scenarios") {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let p = path.to_string_lossy().into_owned();
        let (code, out, err) = run(&["run", &p]);
        assert_eq!(code, 0, "{p}:\n{out}\n{err}");
        assert!(out.contains("every expectation held"), "{p}");
        count += 1;
    }
    assert!(count >= 12, "only {count} example scenarios");
}

#[test]
fn wrong_expectation_exits_1_with_the_step_and_the_difference() {
    let text = std::fs::read_to_string(example("faults.toml"))
        .unwrap()
        .replace(
            r#"expect = { fault = "SGN.2" }"#,
            r#"expect = { fault = "SFS.2" }"#,
        );
    let path = temp("wrong-expectation.toml", &text);
    let (code, out, err) = run(&["run", &path]);
    assert_eq!(code, 1);
    assert!(out.contains(" 10 dma            MISMATCH"), "{out}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("step 10 (dma): expected fault SFS.2 (0x71), got fault SGN.2, 0x81"),
        "{err}"
    );
}

#[test]
fn wrong_data_names_both_values() {
    let path = temp(
        "wrong-data.toml",
        r#"
[[device]]
name = "nic0"
guest_bdf = "00:02.0"

[[step]]
op = "mem_write"
gpa = 0x200000
data = "abc"

[[step]]
op = "dma"
device = "nic0"
iova = 0x200000
expect = { data = "abd" }
"#,
    );
    let (code, _, err) = run(&["run", &path]);
    assert_eq!(code, 1);
    assert!(
        err.contains(r#":11: step 2 (dma): expected data "abd", got data "abc""#),
        "{err}"
    );
}

#[test]
fn bad_toml_names_line_and_column() {
    let path = temp("bad-syntax.toml", "name = \"x\"\n[platform\npreset = 1\n");
    let (code, _, err) = run(&["run", &path]);
    assert_eq!(code, 2);
    assert_one_line_error(&err);
    assert!(err.contains("bad-syntax.toml:2:10: "), "{err}");
}

#[test]
fn unknown_field_points_at_the_field() {
    let path = temp(
        "unknown-field.toml",
        "[[device]]\nname = \"nic0\"\nguest_bdf = \"00:02.0\"\n\n[[step]]\nop = \"guest_boot\"\n\n[[step]]\nop = \"stage1\"\nname = \"s\"\nlevles = 4\n",
    );
    let (code, _, err) = run(&["run", &path]);
    assert_eq!(code, 2);
    assert_one_line_error(&err);
    assert!(
        err.contains("unknown-field.toml:11:1: step 2: unknown field `levles`"),
        "{err}"
    );
}

#[test]
fn unknown_top_level_field_is_refused() {
    let path = temp("unknown-top.toml", "nmae = \"x\"\n");
    let (_, _, err) = run(&["run", &path]);
    assert_one_line_error(&err);
    assert!(
        err.contains("unknown-top.toml:1:1: unknown field `nmae`"),
        "{err}"
    );
}

#[test]
fn unknown_step_kind_points_at_the_kind() {
    let path = temp(
        "unknown-kind.toml",
        "[[device]]\nname = \"nic0\"\nguest_bdf = \"00:02.0\"\n\n[[step]]\nop = \"frobnicate\"\n",
    );
    let (code, _, err) = run(&["run", &path]);
    assert_eq!(code, 2);
    assert_one_line_error(&err);
    assert!(
        err.contains("unknown-kind.toml:6:6: step 1: unknown variant `frobnicate`"),
        "{err}"
    );
}

#[test]
fn five_level_stage1_without_fs5lp_is_impossible() {
    let path = temp(
        "no-fs5lp.toml",
        "[platform]\nfs5lp = false\n\n[[device]]\nname = \"nic0\"\nguest_bdf = \"00:02.0\"\n\n[[step]]\nop = \"guest_boot\"\n\n[[step]]\nop = \"stage1\"\nname = \"s\"\nlevels = 5\n",
    );
    let (code, _, err) = run(&["run", &path]);
    assert_eq!(code, 2);
    assert_one_line_error(&err);
    assert!(
        err.contains("no-fs5lp.toml:11:1: step 2 (stage1): a 5-level stage 1 needs CAP.FS5LP"),
        "{err}"
    );
}

#[test]
fn undefined_names_and_overlapping_memory_are_refused() {
    let path = temp(
        "undefined.toml",
        "[[device]]\nname = \"nic0\"\nguest_bdf = \"00:02.0\"\n\n[[step]]\nop = \"map\"\ntable = \"nope\"\niova = 0\ngpa = 0\n",
    );
    let (_, _, err) = run(&["run", &path]);
    assert_one_line_error(&err);
    assert!(
        err.contains("step 1 (map): no stage-1 table `nope`"),
        "{err}"
    );
    let path = temp(
        "overlap.toml",
        "[memory]\nregions = [ { name = \"a\", gpa = 0, size = \"2M\" }, { name = \"b\", gpa = \"1M\", size = \"1M\" } ]\n",
    );
    let (_, _, err) = run(&["run", &path]);
    assert_one_line_error(&err);
    assert!(err.contains("memory: regions a and b overlap"), "{err}");
}

#[test]
fn unknown_flag_is_one_line() {
    let (code, out, err) = run(&["run", "--frobnicate", "x.toml"]);
    assert_eq!(code, 2);
    assert!(out.is_empty());
    assert_one_line_error(&err);
    assert!(err.contains("unexpected argument '--frobnicate'"), "{err}");
}

#[test]
fn missing_file_is_one_line() {
    let (code, _, err) = run(&["run", "/nonexistent/scenario.toml"]);
    assert_eq!(code, 2);
    assert_one_line_error(&err);
    assert!(
        err.contains("/nonexistent/scenario.toml: No such file"),
        "{err}"
    );
}

#[test]
fn a_fifo_as_input_is_refused_without_blocking() {
    let fifo = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("input.fifo");
    let _ = std::fs::remove_file(&fifo);
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.is_ok_and(|s| s.success()), "mkfifo");
    for cmd in ["run", "trace"] {
        let (code, _, err) = run(&[cmd, fifo.to_str().unwrap()]);
        assert_eq!(code, 2, "{cmd}");
        assert_one_line_error(&err);
        assert!(err.contains("not a regular file"), "{cmd}: {err}");
    }
    let _ = std::fs::remove_file(&fifo);
}

#[test]
fn a_directory_or_device_as_input_is_refused() {
    for path in [".", "/dev/zero"] {
        for cmd in ["run", "trace"] {
            let (code, _, err) = run(&[cmd, path]);
            assert_eq!(code, 2, "{cmd} {path}");
            assert_one_line_error(&err);
            assert!(err.contains("not a regular file"), "{cmd} {path}: {err}");
        }
    }
}

#[test]
fn malformed_trace_line_names_the_line() {
    let path = temp(
        "bad.trace",
        "# vtd-nest trace v1\nR 0x1000 16\nQ 0x2000 4\n",
    );
    let (code, _, err) = run(&["trace", &path]);
    assert_eq!(code, 2);
    assert_one_line_error(&err);
    assert!(
        err.contains("bad.trace:3: unknown access `Q`: expected R, W or A"),
        "{err}"
    );
}

#[test]
fn every_command_has_help_with_an_example() {
    for cmd in [
        &["--help"][..],
        &["demo", "--help"],
        &["run", "--help"],
        &["explain", "--help"],
        &["trace", "--help"],
        &["bench", "--help"],
    ] {
        let (code, out, _) = run(cmd);
        assert_eq!(code, 0, "{cmd:?}");
        assert!(out.contains("Example"), "{cmd:?}: {out}");
        assert!(out.contains("vtd-nest "), "{cmd:?}");
    }
}

#[test]
fn explain_draws_the_walk_and_the_fix_of_the_ad_fault() {
    let (code, out, err) = run(&["explain", &example("erratum-ad-fault.toml"), "--step", "6"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("stage 2 for the FS L4 table at GPA 0xc0000:"),
        "{out}"
    );
    assert!(out.contains("FS L4 entry  table 0xc0000"));
    assert!(out.contains(
        "why:  stage 2 maps GPA 0xc0000 read-only; the first-stage A/D update at FS L4 needs write"
    ));
    assert!(out.contains("code: SFS.8, 0x77"));
    assert!(
        out.contains("fix:  map the page holding the guest's stage-1 table writable in stage 2")
    );
}

#[test]
fn explain_of_a_successful_nested_dma_counts_reads_per_stage() {
    let (code, out, _) = run(&[
        "explain",
        &example("nested-4level.toml"),
        "--step",
        "9",
        "--json",
    ]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["record"], "explain");
    assert_eq!(v["reads"]["first_stage"], 4);
    // The host stage 2 walk of every first-stage table and of the final address.
    assert!(v["reads"]["second_stage_for_tables"].as_u64().unwrap() >= 16);
    assert!(v.get("fault").is_none());
}

#[test]
fn explain_of_a_step_that_is_not_dma_is_one_line() {
    let (code, _, err) = run(&["explain", &example("faults.toml"), "--step", "1"]);
    assert_eq!(code, 2);
    assert_one_line_error(&err);
    assert!(
        err.contains("step 1 is a guest_boot step; explain needs a dma step"),
        "{err}"
    );
}

#[test]
fn explain_by_address_after_the_scenario() {
    let (code, out, _) = run(&[
        "explain",
        &example("faults.toml"),
        "--addr",
        "0x40001000",
        "--device",
        "nic0",
    ]);
    assert_eq!(code, 0);
    assert!(out.contains("code: SSS.2, 0x79"), "{out}");
}

#[test]
fn generated_traces_replay_without_faults() {
    for kind in ["nic", "storage"] {
        let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{kind}.trace"));
        let p = path.to_string_lossy().into_owned();
        let (code, out, err) = run(&["trace", "--generate", kind, "-o", &p, "--count", "200"]);
        assert_eq!(code, 0, "{err}");
        assert!(out.starts_with("wrote "));
        let (code, out, err) = run(&["trace", &p, "--json"]);
        assert_eq!(code, 0, "{err}");
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(v["faults"], 0);
        assert!(v["translations"].as_u64().unwrap() > 0);
        assert!(v["iotlb_hit_rate"].as_f64().is_some());
        assert!(v["walk_refs_per_translation"].as_f64().is_some());
    }
}

#[test]
fn bench_quick_prints_one_table_of_ratios_with_targets() {
    let (code, out, err) = run(&["bench", "--quick"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("cores available"));
    for (measure, target) in [
        ("IOTLB hit ÷ HashMap lookup", "≤ 1.5"),
        ("cold 4×4 walk (flushed) ÷ 24-load chase", "≤ 3"),
        ("NIC trace, 1 thread (M translations/s)", "≥ 30"),
        ("NIC trace, 2 threads ÷ 1 thread", "≥ 1.7"),
    ] {
        let row = out
            .lines()
            .find(|l| l.starts_with(measure))
            .unwrap_or_else(|| panic!("no row {measure}: {out}"));
        assert!(row.contains(target), "{row}");
    }
    let (_, out, _) = run(&["bench", "--quick", "--json"]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["rows"].as_array().unwrap().len(), 4);
    assert!(v["cores"].as_u64().unwrap() >= 1);
}

#[test]
fn probe_of_the_simulated_sapphire_rapids_says_ready_and_keep_rom_out() {
    let (code, out, err) = run(&["probe", "--sim", "sapphire-rapids"]);
    assert_eq!(code, 0, "{err}");
    for line in [
        "nic0 (00:03.0): dev_id 1 on simulated sapphire-rapids",
        "nested translation (ECAP.NEST)         yes",
        "erratum 772415 (SPR17) flag            set",
        "IOMMU_HWPT_ALLOC NEST_PARENT           allowed",
        "verdict: vtd-viommu can run here; keep read-only guest memory (vBIOS, option ROMs) out of stage 2",
    ] {
        assert!(out.contains(line), "missing `{line}` in:\n{out}");
    }
    assert_eq!(out.matches("verdict:").count(), 2, "nic0 and ssd0");
}

#[test]
fn probe_of_qemu_exits_1_naming_what_is_missing() {
    let (code, out, err) = run(&["probe", "--sim", "qemu"]);
    assert_eq!(code, 1, "{err}");
    assert!(out.contains("IOMMU_HWPT_ALLOC NEST_PARENT           refused, EOPNOTSUPP"));
    assert!(out.contains(
        "verdict: vtd-viommu cannot run here: the host VT-d unit does not support nested translation"
    ));
}

#[test]
fn probe_json_is_one_record_per_device_with_the_verdict() {
    let (code, out, _) = run(&["probe", "--sim", "without-nesting", "--json"]);
    assert_eq!(code, 1);
    let records: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(r["record"], "probe");
    assert_eq!(r["ready"], false);
    assert_eq!(r["nest_parent_errno"], "EOPNOTSUPP");
    assert_eq!(r["vtd"]["nesting"], false);
    assert_eq!(r["vtd"]["scalable_mode"], true);
}

#[test]
fn probe_without_an_iommufd_is_one_error_line_exit_2() {
    let (code, out, err) = run(&["probe", "--iommu", "/nonexistent/iommu"]);
    assert_eq!(code, 2);
    assert!(out.is_empty());
    assert_one_line_error(&err);
    assert!(err.contains("/nonexistent/iommu"), "{err}");
}

#[test]
fn probe_of_a_file_that_is_not_a_vfio_device_names_it() {
    let (code, _, err) = run(&["probe", "--iommu", "/dev/null", "/dev/null"]);
    assert_eq!(code, 2);
    assert_one_line_error(&err);
    assert!(err.contains("/dev/null: VFIO_DEVICE_BIND_IOMMUFD"), "{err}");
}

#[test]
fn probe_refuses_devices_with_sim() {
    let (code, _, err) = run(&["probe", "--sim", "qemu", "/dev/vfio/devices/vfio0"]);
    assert_eq!(code, 2);
    assert_one_line_error(&err);
}

// Regressions from tests/prop_inputs.rs and the review of input arithmetic: each input
// ends in one line on stderr, quickly and without a large allocation.

const ONE_DEVICE: &str = "[[device]]\nname = \"nic0\"\nguest_bdf = \"00:02.0\"\n[[device]]\nname = \"emu0\"\nkind = \"emulated\"\nguest_bdf = \"00:04.0\"\n";

#[test]
fn a_newline_inside_a_name_stays_escaped_in_the_one_error_line() {
    let path = temp(
        "newline-name.toml",
        "[[device]]\nname = \"nic0\"\nguest_bdf = \"line\\nbreak\"\n",
    );
    let (code, _, err) = run(&["run", &path]);
    assert_eq!(code, 2);
    assert_one_line_error(&err);
    assert!(
        err.contains(r"guest_bdf `line\nbreak` is not a bus:dev.fn"),
        "{err}"
    );
}

#[test]
fn a_mismatch_naming_a_newline_stays_one_line() {
    let path = temp(
        "newline-mismatch.toml",
        &format!(
            "{ONE_DEVICE}[[step]]\nop = \"dma\"\ndevice = \"emu0\"\niova = 0x200000\nexpect = {{ kind = \"nested\" }}\n[[step]]\nop = \"expect\"\nskipped = [\"a\\nb\"]\n"
        ),
    );
    let (code, _, err) = run(&["run", &path]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.lines().count(), 1, "{err:?}");
}

#[test]
fn a_control_character_in_a_name_is_refused_at_load() {
    for (what, text) in [
        (
            "the scenario name",
            format!("name = \"a\\nforged line\"\n{ONE_DEVICE}"),
        ),
        (
            "a device name",
            "[[device]]\nname = \"nic\\u001b[2J\"\nguest_bdf = \"00:02.0\"\n".to_string(),
        ),
        (
            "a stage-1 table name",
            "[vmm]\nmode = \"manual\"\n[[device]]\nname = \"nic0\"\nguest_bdf = \"00:02.0\"\n[[step]]\nop = \"stage1\"\nname = \"t\\u0007\"\n".to_string(),
        ),
        (
            "a region name",
            format!(
                "[memory]\nregions = [{{ name = \"ram\\r\", gpa = 0, size = 0x100000 }}]\n{ONE_DEVICE}"
            ),
        ),
    ] {
        let path = temp("control-name.toml", &text);
        let (code, out, err) = run(&["run", &path]);
        assert_eq!(code, 2, "{what}: {err}");
        assert!(out.is_empty());
        assert_one_line_error(&err);
        assert!(
            err.contains(&format!("{what} ")) && err.contains("contains a control character"),
            "{what}: {err}"
        );
    }
}

/// Run `text` as a scenario that must be refused at load with `says` in its one line.
fn refused_at_load(name: &str, text: &str, says: &str) {
    let (code, _, err) = run(&["run", &temp(name, text)]);
    assert_eq!(code, 2, "{name}: {err}");
    assert_one_line_error(&err);
    assert!(err.contains(says), "{name}: {err}");
}

/// examples/scenarios/nested-manual.toml with `from` replaced by `to` (which must match).
fn nested_manual_with(from: &str, to: &str) -> String {
    let text = std::fs::read_to_string(example("nested-manual.toml")).unwrap();
    assert!(text.contains(from), "the example no longer has `{from}`");
    text.replacen(from, to, 1)
}

#[test]
fn a_guest_invalidation_refuses_expect() {
    let text = format!(
        "{ONE_DEVICE}[[step]]\nop = \"guest_boot\"\n[[step]]\nop = \"invalidate\"\nexpect = {{ errno = \"EINVAL\" }}\n"
    );
    refused_at_load(
        "guest-expect.toml",
        &text,
        "`expect` applies to IOMMU_HWPT_INVALIDATE",
    );
}

#[test]
fn an_hwpt_invalidation_refuses_did() {
    let text = nested_manual_with(
        "hwpt = \"nested\"\niova",
        "hwpt = \"nested\"\ndid = 3\niova",
    );
    refused_at_load(
        "hwpt-did.toml",
        &text,
        "`did` and `pasid` belong to a guest invalidation",
    );
}

#[test]
fn an_invalidation_refuses_pages_without_iova() {
    let text = nested_manual_with("iova = 0x4000_0000\npages = 1", "pages = 4");
    refused_at_load("pages-no-iova.toml", &text, "`pages` counts from `iova`");
}

#[test]
fn alloc_refuses_the_fields_of_another_kind() {
    let text = nested_manual_with("kind = \"nested\"", "kind = \"nested\"\ndirty = true");
    refused_at_load(
        "nested-dirty.toml",
        &text,
        "`dirty` does not apply to a nested HWPT",
    );
}

#[test]
fn a_default_name_from_a_file_name_with_a_newline_prints_on_one_line() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join("no\nname.toml");
    std::fs::write(&path, ONE_DEVICE).unwrap();
    let (code, out, err) = run(&["run", &path.to_string_lossy()]);
    assert_eq!(code, 0, "{err}");
    let first = out.lines().next().unwrap();
    assert!(first.starts_with(r"scenario: no\nname ("), "{out}");
    assert!(first.ends_with(r"no\nname.toml)"), "{out}");
}

#[test]
fn trace_reports_print_a_path_with_a_newline_on_one_line() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join("two\nlines.trace");
    let p = path.to_string_lossy().into_owned();
    let (code, out, err) = run(&["trace", "--generate", "nic", "-o", &p, "--count", "2"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains(r"two\nlines.trace"), "{out}");
    let (code, out, err) = run(&["trace", &p]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.lines().next().unwrap().starts_with("trace ")
            && out.lines().next().unwrap().contains(r"two\nlines.trace:"),
        "{out}"
    );
}

#[test]
fn run_prints_a_path_with_a_newline_and_a_multi_line_description_line_by_line() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join("two\nlines.toml");
    std::fs::write(
        &path,
        format!(
            "name = \"described\"\ndescription = \"\"\"\nfirst\\rline\nsecond line\n\"\"\"\n{ONE_DEVICE}"
        ),
    )
    .unwrap();
    let (code, out, err) = run(&["run", &path.to_string_lossy()]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("scenario: described (") && lines[0].contains(r"two\nlines.toml"));
    assert_eq!(lines[1], r"  first\rline");
    assert_eq!(lines[2], "  second line");
}

#[test]
fn generate_refuses_a_count_past_what_a_trace_holds_before_writing() {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("huge.trace");
    let _ = std::fs::remove_file(&path);
    let p = path.to_string_lossy().into_owned();
    for count in ["18446744073709551615", "1000000000"] {
        let (code, out, err) = run(&["trace", "--generate", "storage", "-o", &p, "--count", count]);
        assert_eq!(code, 2);
        assert!(out.is_empty());
        assert_one_line_error(&err);
        assert!(
            err.contains("accesses a trace may hold (at most --count 493447)"),
            "{err}"
        );
    }
    assert!(!path.exists(), "nothing is written");
    let (code, _, err) = run(&["trace", "--generate", "nic", "-o", "-", "--count", "0"]);
    assert_eq!(code, 2);
    assert_one_line_error(&err);
}

#[test]
fn generate_to_stdout_streams_the_header_and_every_access() {
    let (code, out, _) = run(&["trace", "--generate", "nic", "-o", "-", "--count", "2"]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "# vtd-nest trace v1");
    assert_eq!(lines[1], "# nic: 2 packets, 10 accesses");
    assert_eq!(lines.len(), 12);
}

#[test]
fn replay_refuses_a_repeat_past_the_translation_budget_and_a_zero_repeat() {
    let path = temp("three.trace", "R 0x1000 4\nW 0x2000 8\nA 0x3000 8\n");
    let (code, _, err) = run(&["trace", &path, "--repeat", "4294967295"]);
    assert_eq!(code, 2);
    assert_one_line_error(&err);
    assert!(
        err.contains("3 accesses × --repeat 4294967295 is 12884901885 translations, more than the 1073741824 a replay runs"),
        "{err}"
    );
    let (code, _, err) = run(&["trace", &path, "--repeat", "0"]);
    assert_eq!(code, 2);
    assert_one_line_error(&err);
}

#[test]
fn a_trace_without_line_breaks_fails_at_its_first_line() {
    let path = temp("zeros.trace", &"\0".repeat(10_000));
    let (code, _, err) = run(&["trace", &path]);
    assert_eq!(code, 2);
    assert_one_line_error(&err);
    assert!(
        err.contains("zeros.trace:1: the line is longer than 4096 bytes"),
        "{err}"
    );
}

#[test]
fn a_trace_line_that_is_not_utf8_is_named() {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("latin1.trace");
    std::fs::write(&path, b"R 0x1000 4\nW 0x2000 8 # caf\xe9\n").unwrap();
    let (code, _, err) = run(&["trace", &path.to_string_lossy()]);
    assert_eq!(code, 2);
    assert_one_line_error(&err);
    assert!(
        err.contains("latin1.trace:2: the line is not UTF-8 text"),
        "{err}"
    );
}

#[test]
fn a_long_bad_trace_token_is_shortened_in_the_error() {
    let path = temp(
        "long-token.trace",
        &format!("{} 0x1000 4\n", "R".repeat(3000)),
    );
    let (_, _, err) = run(&["trace", &path]);
    assert_one_line_error(&err);
    assert!(err.len() < 200, "{err}");
    assert!(err.contains("unknown access `RRRR"), "{err}");
}

#[test]
fn a_scenario_larger_than_four_mebibytes_is_refused_unread() {
    let path = temp("huge.toml", &"#".repeat((4 << 20) + 1));
    let (code, _, err) = run(&["run", &path]);
    assert_eq!(code, 2);
    assert_one_line_error(&err);
    assert!(err.contains("huge.toml: larger than 4 MiB"), "{err}");
}

#[test]
fn a_scenario_that_is_not_utf8_names_line_and_column() {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("latin1.toml");
    std::fs::write(&path, b"name = \"x\"\ndescription = \"caf\xe9\"\n").unwrap();
    let (code, _, err) = run(&["run", &path.to_string_lossy()]);
    assert_eq!(code, 2);
    assert_one_line_error(&err);
    assert!(err.contains("latin1.toml:2:19: not UTF-8 text"), "{err}");
}

#[test]
fn a_dma_longer_than_a_mebibyte_is_refused_before_running() {
    let path = temp(
        "long-dma.toml",
        &format!(
            "{ONE_DEVICE}[[step]]\nop = \"dma\"\ndevice = \"emu0\"\niova = 0\nlen = 4294967295\n"
        ),
    );
    let (code, _, err) = run(&["run", &path]);
    assert_eq!(code, 2);
    assert_one_line_error(&err);
    assert!(
        err.contains("step 1 (dma): a dma step moves at most 0x100000 bytes, not 0xffffffff"),
        "{err}"
    );
}

#[test]
fn a_dma_past_the_top_of_the_address_space_is_refused() {
    let path = temp(
        "wrap-dma.toml",
        &format!(
            "{ONE_DEVICE}[[step]]\nop = \"dma\"\ndevice = \"emu0\"\niova = \"0xffff_ffff_ffff_fffe\"\nlen = 4\n"
        ),
    );
    let (code, _, err) = run(&["run", &path]);
    assert_eq!(code, 2);
    assert_one_line_error(&err);
    assert!(
        err.contains("4 bytes at 0xfffffffffffffffe run past the end of the 64-bit address space"),
        "{err}"
    );
}

#[test]
fn more_than_sixteen_stage2_tables_are_refused_before_any_is_built() {
    let mut text = String::from(
        "[vmm]\nmode = \"manual\"\n[[device]]\nname = \"nic0\"\nguest_bdf = \"00:02.0\"\n",
    );
    for i in 0..17 {
        text += &format!(
            "[[step]]\nop = \"stage2\"\nname = \"p{i}\"\nioas = \"i{i}\"\ndevice = \"nic0\"\n"
        );
    }
    let path = temp("many-stage2.toml", &text);
    let (code, out, err) = run(&["run", &path]);
    assert_eq!(code, 2);
    assert!(out.is_empty());
    assert_one_line_error(&err);
    assert!(
        err.contains("step 17 (stage2): more than 16 stage-2 page tables"),
        "{err}"
    );
}

#[test]
fn duplicate_host_device_names_are_refused() {
    let path = temp(
        "dup-host.toml",
        "[platform]\ndevices = [ { name = \"nic0\", bdf = \"00:03.0\" }, { name = \"nic0\", bdf = \"00:04.0\" } ]\n[[device]]\nname = \"nic0\"\nguest_bdf = \"00:02.0\"\n",
    );
    let (code, _, err) = run(&["run", &path]);
    assert_eq!(code, 2);
    assert_one_line_error(&err);
    assert!(err.contains("host device nic0 is declared twice"), "{err}");
}

#[test]
fn explain_refuses_a_pasid_beyond_20_bits_as_dma_steps_do() {
    let (code, _, err) = run(&[
        "explain",
        &example("nested-4level.toml"),
        "--addr",
        "0x40000000",
        "--pasid",
        "1048576",
    ]);
    assert_eq!(code, 2);
    assert_one_line_error(&err);
    assert!(err.contains("1048576 is not in 0..1048576"), "{err}");
}

/// The bitmap is read by its set bits, across many words: the DMA's page, and the guest's
/// stage-1 table pages, whose A/D bits the walk set. Stage 2 may map either with a 2 MiB
/// leaf (it depends on where the VMM's memory landed), and then all of that leaf is dirty.
#[test]
fn a_dirty_bitmap_over_a_whole_region_reports_the_written_page_and_the_walked_tables() {
    let path = temp(
        "region-bitmap.toml",
        &format!(
            "[vmm]\ndirty_tracking = true\n{ONE_DEVICE}[[step]]\nop = \"dirty_tracking\"\nhwpt = \"parent\"\n[[step]]\nop = \"guest_boot\"\n[[step]]\nop = \"stage1\"\nname = \"s1\"\n[[step]]\nop = \"map\"\ntable = \"s1\"\niova = 0x4000_0000\ngpa = 0x20_0000\n[[step]]\nop = \"pasid\"\ndevice = \"nic0\"\nentry = \"first-stage\"\ntable = \"s1\"\n[[step]]\nop = \"dma\"\ndevice = \"nic0\"\niova = 0x4000_0000\naccess = \"write\"\ndata = \"x\"\n[[step]]\nop = \"dirty_bitmap\"\nhwpt = \"parent\"\niova = 0x10_0000\nlength = 0xF0_0000\n"
        ),
    );
    let (code, out, err) = run(&["run", &path]);
    assert_eq!(code, 0, "{out}{err}");
    let list = out
        .split("dirty pages of `parent`: [")
        .nth(1)
        .and_then(|rest| rest.split(']').next())
        .unwrap_or_else(|| panic!("no dirty pages line: {out}"));
    let dirty: Vec<u64> = list
        .split(", ")
        .map(|x| u64::from_str_radix(x.trim_start_matches("0x"), 16).unwrap())
        .collect();
    for page in [0x20_0000, 0xE0_3000, 0xE0_4000, 0xE0_5000, 0xE0_6000] {
        assert!(dirty.contains(&page), "{page:#x} not in {list}");
    }
    let in_written_blocks = |p: u64| (0x20_0000..0x40_0000).contains(&p) || p >= 0xE0_0000;
    assert!(dirty.iter().all(|&p| in_written_blocks(p)), "{list}");
}

#[test]
fn mem_write_across_a_hole_between_regions_is_refused_before_running() {
    let path = temp(
        "hole-write.toml",
        &format!(
            "[memory]\nregions = [ {{ name = \"ram\", gpa = 0, size = \"16M\" }}, {{ name = \"hi\", gpa = 0x100_1000, size = \"1M\" }} ]\n{ONE_DEVICE}[[step]]\nop = \"mem_write\"\ngpa = 0xFF_FFF0\ndata = \"{}\"\n",
            "x".repeat(0x1020)
        ),
    );
    let (code, out, err) = run(&["run", &path]);
    assert_eq!(code, 2, "{out}{err}");
    assert_one_line_error(&err);
    assert!(
        err.contains("step 1 (mem_write): [0xfffff0, +4128) is not guest memory"),
        "{err}"
    );
}

#[test]
fn a_tebibyte_of_guest_ram_is_refused_before_any_allocation() {
    let path = temp(
        "tebibyte.toml",
        &format!("[memory]\nram_top = \"1024G\"\n{ONE_DEVICE}"),
    );
    let (code, _, err) = run(&["run", &path]);
    assert_eq!(code, 2);
    assert_one_line_error(&err);
    assert!(
        err.contains("bytes of guest memory; at most 0x100000000 are supported"),
        "{err}"
    );
}

#[test]
fn a_trace_over_a_million_distinct_pages_is_refused_before_mapping() {
    let mut text = String::with_capacity(20 << 20);
    for page in 0..=(1u64 << 20) {
        text += &format!("R {:#x} 4\n", page << 12);
    }
    let path = temp("many-pages.trace", &text);
    let (code, _, err) = run(&["trace", &path]);
    assert_eq!(code, 2);
    assert_one_line_error(&err);
    assert!(
        err.contains("the trace touches more than 1048576 distinct pages"),
        "{err}"
    );
}

/// The file named on the command line is the file opened and written, even when its name
/// is not UTF-8 (it used to be opened under a lossy copy of the name, with U+FFFD).
#[test]
fn files_whose_names_are_not_utf8_are_the_ones_opened_and_written() {
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("non-utf8-names");
    std::fs::create_dir_all(&dir).unwrap();
    let mut name = b"scen\xff".to_vec();
    let scenario = dir.join(OsString::from_vec(name.clone()));
    std::fs::copy(repo().join("examples/scenarios/faults.toml"), &scenario).unwrap();
    name.extend_from_slice(b".trace");
    let trace = dir.join(OsString::from_vec(name));
    let _ = std::fs::remove_file(&trace);
    let run_os = |args: Vec<OsString>| {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut argv = vec![OsString::from("vtd-nest")];
        argv.extend(args);
        let code = vtd_nest::main_with(argv, &mut out, &mut err);
        (code, String::from_utf8_lossy(&err).into_owned())
    };
    let (code, err) = run_os(vec!["run".into(), "-q".into(), scenario.clone().into()]);
    assert_eq!(code, 0, "{err}");
    let (code, err) = run_os(vec![
        "explain".into(),
        scenario.into(),
        "--step".into(),
        "9".into(),
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, err) = run_os(vec![
        "trace".into(),
        "--generate".into(),
        "nic".into(),
        "--count".into(),
        "2".into(),
        "-o".into(),
        trace.clone().into(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(trace.exists(), "written under its own name");
    let (code, err) = run_os(vec!["trace".into(), trace.into()]);
    assert_eq!(code, 0, "{err}");
}
