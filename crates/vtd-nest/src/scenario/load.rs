//! Loading a scenario: TOML with line:column errors, then a static check of everything the
//! steps name, so an impossible scenario is refused before anything runs.

use std::collections::{HashMap, HashSet};

use vtd_kernel::{DeviceDesc, PlatformDesc};
use vtd_model::UnitConfig;
use vtd_model::config::Spr17;
use vtd_model::stats::Stats;
use vtd_spec::fault::FaultReason;
use vtd_viommu::{MemoryMap, Region, RegionKind};

use super::format::*;
use crate::error::{Error, Result, line_col};

/// Guest memory a scenario may ask for, in total (anonymous memory, touched only where
/// the steps write).
const MAX_GUEST_MEMORY: u64 = 4 << 30;

/// Bytes of a scenario file; hand-written scenarios are a few KiB.
pub const MAX_FILE_BYTES: u64 = 4 << 20;

/// Bytes one `dma` step may move (it is split into 4 KiB requests).
pub const MAX_DMA_BYTES: u64 = 1 << 20;

/// Stage-2 page tables a scenario may build (`stage2` steps and paging `alloc`s): each
/// maps all of guest memory, so each costs host memory in proportion to it.
pub const MAX_STAGE2_TABLES: usize = 16;

/// A device the guest sees, resolved.
#[derive(Clone, Debug)]
pub struct DeviceDef {
    /// Its name in the scenario.
    pub name: String,
    /// Assigned or emulated.
    pub kind: DeviceKind,
    /// Assigned: index of the host device on the platform.
    pub host: Option<usize>,
    /// The source id the guest sees.
    pub guest_sid: u16,
}

/// One step with where it starts in the file.
#[derive(Clone, Debug)]
pub struct StepAt {
    /// The step.
    pub step: Step,
    /// 1-based line of the step.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
}

/// A checked scenario, ready to run.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// The file it came from.
    pub path: String,
    /// Its name (the file name when it has none).
    pub name: String,
    /// Its description.
    pub description: Option<String>,
    /// The simulated machine.
    pub platform: PlatformDesc,
    /// The kernel refuses read-only nest-parent mappings.
    pub ro_refusal: bool,
    /// The guest memory map.
    pub map: MemoryMap,
    /// The guest's pool of pages for IOMMU tables: (GPA, bytes).
    pub pool: (u64, u64),
    /// How the VMM works.
    pub mode: VmmMode,
    /// viommu mode: a dirty-tracking nest parent.
    pub dirty_tracking: bool,
    /// The devices the guest sees.
    pub devices: Vec<DeviceDef>,
    /// The steps.
    pub steps: Vec<StepAt>,
}

impl Scenario {
    /// The device called `name`.
    pub fn device(&self, name: &str) -> Option<&DeviceDef> {
        self.devices.iter().find(|d| d.name == name)
    }
}

/// Read and check the scenario at `file` (at most [`MAX_FILE_BYTES`] of UTF-8).
pub fn load(file: &std::path::Path) -> Result<Scenario> {
    use std::io::Read;
    let shown = file.to_string_lossy();
    let path: &str = &shown;
    let file_err = |source| Error::File {
        path: path.to_string(),
        source,
    };
    let mut bytes = Vec::new();
    crate::error::open_input(file)
        .and_then(|f| f.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(file_err)?;
    let config_err = |msg: String| Error::Config {
        path: path.to_string(),
        msg,
    };
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(config_err(format!(
            "larger than {} MiB; a scenario is a short text file",
            MAX_FILE_BYTES >> 20
        )));
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let (line, col) = line_col(&String::from_utf8_lossy(&e.as_bytes()[..valid]), valid);
        Error::Syntax {
            path: path.to_string(),
            line,
            col,
            msg: "not UTF-8 text".into(),
        }
    })?;
    parse(path, &text)
}

/// Parse `bdf` ("00:03.0") into a source id.
pub fn parse_bdf(bdf: &str) -> Option<u16> {
    let (bus, rest) = bdf.split_once(':')?;
    let (dev, func) = rest.split_once('.')?;
    let bus = u8::from_str_radix(bus, 16).ok()?;
    let dev = u8::from_str_radix(dev, 16).ok().filter(|d| *d < 32)?;
    let func = func.parse::<u8>().ok().filter(|f| *f < 8)?;
    Some((bus as u16) << 8 | (dev as u16) << 3 | func as u16)
}

/// A fault reason by condition code (`"SSS.2"`) or number (`"0x79"`).
pub fn parse_reason(text: &str) -> Option<FaultReason> {
    let t = text.trim();
    FaultReason::ALL
        .iter()
        .copied()
        .find(|r| r.name().eq_ignore_ascii_case(t))
        .or_else(|| {
            Num::parse(t)
                .and_then(|c| u8::try_from(c).ok())
                .and_then(FaultReason::from_code)
        })
}

/// Counter names an `expect` step may check: every `Stats` counter plus `faults` and
/// `paging_reads`.
pub fn counter_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = Stats::default().counters().iter().map(|c| c.0).collect();
    names.extend(["faults", "paging_reads"]);
    names
}

/// Parse and check `text` (the contents of `path`).
pub fn parse(path: &str, text: &str) -> Result<Scenario> {
    let file: ScenarioFile = toml::from_str(text).map_err(|e| syntax(path, text, &e, None))?;
    let config_err = |msg: String| Error::Config {
        path: path.to_string(),
        msg,
    };
    check_names(&file).map_err(config_err)?;

    // The machine.
    let mut unit = match file.platform.preset {
        Preset::SapphireRapids => UnitConfig::sapphire_rapids(),
        Preset::WithoutNesting => UnitConfig::without_nesting(),
    };
    if let Some(e) = file.platform.erratum {
        unit.switches.erratum_spr17 = match e {
            ErratumSpec::Off => Spr17::Off,
            ErratumSpec::TopLevel => Spr17::TopLevel,
            ErratumSpec::AllLevels => Spr17::AllLevels,
        };
    }
    if let Some(v) = file.platform.fs5lp {
        unit.cap = unit.cap.with_fs5lp(v);
    }
    if let Some(v) = file.platform.fs1gp {
        unit.cap = unit.cap.with_fs1gp(v);
    }
    let mut platform = PlatformDesc::sapphire_rapids();
    platform.units = vec![unit.clone()];
    if let Some(devs) = &file.platform.devices {
        platform.devices = Vec::new();
        for d in devs {
            if platform.devices.iter().any(|h| h.name == d.name) {
                return Err(config_err(format!(
                    "host device {} is declared twice",
                    d.name
                )));
            }
            let sid = parse_bdf(&d.bdf).ok_or_else(|| {
                config_err(format!(
                    "host device {}: `{}` is not a bus:dev.fn such as 00:03.0",
                    d.name, d.bdf
                ))
            })?;
            let mut desc = DeviceDesc::new(
                &d.name,
                (sid >> 8) as u8,
                (sid >> 3) as u8 & 0x1F,
                sid as u8 & 7,
            )
            .with_pasid(d.pasid_bits);
            if d.ats {
                desc = desc.with_ats();
            }
            platform.devices.push(desc);
        }
    }

    // Guest memory.
    let map = match &file.memory.regions {
        Some(regions) => {
            let regions = regions
                .iter()
                .map(|r| {
                    let kind = match r.kind {
                        KindSpec::Ram => RegionKind::Ram,
                        KindSpec::Rom => RegionKind::Rom,
                    };
                    Region::new(&r.name, r.gpa.0, r.size.0, kind)
                })
                .collect();
            MemoryMap::new(regions).map_err(|e| config_err(format!("memory: {e}")))?
        }
        None => MemoryMap::pc(file.memory.ram_top.map_or(16 << 20, |n| n.0)),
    };
    let total: u64 = map
        .regions()
        .iter()
        .map(|r| r.size)
        .fold(0, u64::saturating_add);
    if total > MAX_GUEST_MEMORY {
        return Err(config_err(format!(
            "memory: {total:#x} bytes of guest memory; at most {MAX_GUEST_MEMORY:#x} are supported"
        )));
    }
    let pool = file
        .memory
        .table_pool
        .map_or((0xE0_0000, 0x10_0000), |p| (p.gpa.0, p.size.0));
    let in_ram = map.regions().iter().any(|r| {
        r.kind == RegionKind::Ram
            && r.contains(pool.0)
            && pool.1 > 0
            && pool
                .0
                .checked_add(pool.1 - 1)
                .is_some_and(|last| r.contains(last))
    });
    if !in_ram || !pool.0.is_multiple_of(4096) || !pool.1.is_multiple_of(4096) {
        return Err(config_err(format!(
            "memory: the table pool [{:#x}, +{:#x}) must be whole 4 KiB pages inside one RAM region",
            pool.0, pool.1
        )));
    }

    // Devices.
    let mode = file.vmm.mode;
    let mut devices = Vec::new();
    for d in &file.device {
        if devices.iter().any(|o: &DeviceDef| o.name == d.name) {
            return Err(config_err(format!("device {} is declared twice", d.name)));
        }
        let guest_sid = parse_bdf(&d.guest_bdf).ok_or_else(|| {
            config_err(format!(
                "device {}: guest_bdf `{}` is not a bus:dev.fn such as 00:02.0",
                d.name, d.guest_bdf
            ))
        })?;
        if let Some(o) = devices
            .iter()
            .find(|o: &&DeviceDef| o.guest_sid == guest_sid)
        {
            return Err(config_err(format!(
                "devices {} and {} share guest_bdf {}",
                o.name, d.name, d.guest_bdf
            )));
        }
        let host = match d.kind {
            DeviceKind::Assigned => {
                let host_name = d.host.as_deref().unwrap_or(&d.name);
                let idx = platform
                    .devices
                    .iter()
                    .position(|h| h.name == host_name)
                    .ok_or_else(|| {
                        config_err(format!(
                            "device {}: the platform has no host device {host_name} (it has {})",
                            d.name,
                            names(platform.devices.iter().map(|h| h.name.as_str()))
                        ))
                    })?;
                if devices.iter().any(|o: &DeviceDef| o.host == Some(idx)) {
                    return Err(config_err(format!(
                        "host device {host_name} is assigned twice"
                    )));
                }
                Some(idx)
            }
            DeviceKind::Emulated => {
                if d.host.is_some() {
                    return Err(config_err(format!(
                        "device {}: an emulated device has no host device",
                        d.name
                    )));
                }
                if mode == VmmMode::Manual {
                    return Err(config_err(format!(
                        "device {}: emulated devices need the vIOMMU (vmm.mode = \"viommu\")",
                        d.name
                    )));
                }
                None
            }
        };
        devices.push(DeviceDef {
            name: d.name.clone(),
            kind: d.kind,
            host,
            guest_sid,
        });
    }
    if mode == VmmMode::Viommu && !devices.iter().any(|d| d.kind == DeviceKind::Assigned) {
        return Err(config_err(
            "vmm.mode = \"viommu\" needs at least one assigned device: the vIOMMU is set up around it"
                .into(),
        ));
    }
    if mode == VmmMode::Viommu && !unit.ecap.nested_supported() {
        return Err(config_err(
            "vmm.mode = \"viommu\" needs a host unit with nesting (ECAP.NEST); use preset \
             sapphire-rapids or vmm.mode = \"manual\""
                .into(),
        ));
    }

    let mut sc = Scenario {
        path: path.to_string(),
        name: file.name.unwrap_or_else(|| {
            std::path::Path::new(path)
                .file_stem()
                .map_or_else(|| path.to_string(), |s| s.to_string_lossy().into_owned())
        }),
        description: file.description,
        platform,
        ro_refusal: file.platform.ro_refusal.unwrap_or(true),
        map,
        pool,
        mode,
        dirty_tracking: file.vmm.dirty_tracking,
        devices,
        steps: Vec::new(),
    };

    // Steps: each parsed on its own, so its errors point into it.
    for (i, spanned) in file.step.into_iter().enumerate() {
        let span = spanned.span();
        let (line, col) = line_col(text, span.start);
        let step: Step = spanned
            .into_inner()
            .try_into()
            .map_err(|e: toml::de::Error| {
                let at = refine(text, step_region(text, span.clone()), e.message())
                    .unwrap_or(span.start);
                let (line, col) = line_col(text, at);
                Error::Syntax {
                    path: path.to_string(),
                    line,
                    col,
                    msg: format!("step {}: {}", i + 1, e.message().trim().replace('\n', " ")),
                }
            })?;
        sc.steps.push(StepAt { step, line, col });
    }
    check_steps(&sc, &unit)?;
    Ok(sc)
}

/// Every name the scenario gives (its own, host devices', regions' and devices') is one
/// line of text: names end up in `run`, `explain` and `--json` output, where a newline or
/// escape sequence would forge or garble lines.
fn check_names(file: &ScenarioFile) -> std::result::Result<(), String> {
    let host = file.platform.devices.iter().flatten();
    let regions = file.memory.regions.iter().flatten();
    let mut given = file
        .name
        .iter()
        .map(|n| ("the scenario name", n))
        .chain(host.map(|d| ("a host device name", &d.name)))
        .chain(regions.map(|r| ("a region name", &r.name)))
        .chain(file.device.iter().map(|d| ("a device name", &d.name)))
        .chain(
            file.device
                .iter()
                .filter_map(|d| d.host.as_ref().map(|h| ("a device's host name", h))),
        );
    given.try_for_each(|(what, name)| one_line_name(what, name))
}

/// `name` unless it holds a control character (see [`check_names`]).
fn one_line_name(what: &str, name: &str) -> std::result::Result<(), String> {
    if name.chars().any(char::is_control) {
        return Err(format!(
            "{what} \"{}\" contains a control character; names are one line of text",
            crate::one_line(name)
        ));
    }
    Ok(())
}

fn names<'a>(it: impl Iterator<Item = &'a str>) -> String {
    let v: Vec<&str> = it.collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// The one-line error of a TOML error, at its span when it has one.
fn syntax(path: &str, text: &str, e: &toml::de::Error, fallback: Option<usize>) -> Error {
    let at = e
        .span()
        .map(|s| refine(text, s.clone(), e.message()).unwrap_or(s.start))
        .or(fallback)
        .unwrap_or(0);
    let (line, col) = line_col(text, at);
    Error::Syntax {
        path: path.to_string(),
        line,
        col,
        msg: e.message().trim().replace('\n', " "),
    }
}

/// The text of a step: an inline table's span is the whole table, but a `[[step]]`
/// table's span is its header, so run on to the next header.
fn step_region(text: &str, span: std::ops::Range<usize>) -> std::ops::Range<usize> {
    let after = text.get(span.end..).unwrap_or("");
    let mut end = text.len();
    let mut offset = span.end;
    for line in after.split_inclusive('\n') {
        if line.trim_start().starts_with('[') && offset > span.end {
            end = offset;
            break;
        }
        offset += line.len();
    }
    span.start..end.max(span.end)
}

/// Point at the key or value an "unknown field/variant `x`" message names, inside `span`.
fn refine(text: &str, span: std::ops::Range<usize>, msg: &str) -> Option<usize> {
    let name = msg
        .split_once("unknown field `")
        .or_else(|| msg.split_once("unknown variant `"))?
        .1
        .split('`')
        .next()?;
    let within = text.get(span.clone())?;
    let mut from = 0;
    while let Some(pos) = within[from..].find(name) {
        let at = from + pos;
        let before = within[..at].chars().last();
        let after = within[at + name.len()..].chars().next();
        let bounded = !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
            && !after.is_some_and(|c| c.is_alphanumeric() || c == '_');
        if bounded {
            let quoted = before == Some('"');
            return Some(span.start + at - usize::from(quoted));
        }
        from = at + name.len();
    }
    None
}

/// What the steps may name: defined before use, of the right kind, possible on this
/// machine.
fn check_steps(sc: &Scenario, unit: &UnitConfig) -> Result<()> {
    let viommu = sc.mode == VmmMode::Viommu;
    let mut tables: HashMap<&str, u8> = HashMap::new();
    let mut ioas: HashSet<&str> = HashSet::new();
    let mut hwpts: HashSet<&str> = HashSet::new();
    if viommu {
        ioas.insert("ioas");
        hwpts.insert("parent");
    }
    let mut booted = false;
    let mut stage2_tables = 0usize;
    let counters = counter_names();
    for (i, at) in sc.steps.iter().enumerate() {
        let fail = |msg: String| Error::Syntax {
            path: sc.path.clone(),
            line: at.line,
            col: at.col,
            msg: format!("step {} ({}): {msg}", i + 1, at.step.op()),
        };
        let table = |name: &str| {
            tables.get(name).copied().ok_or_else(|| {
                fail(format!(
                    "no stage-1 table `{name}` (define it with an earlier stage1 step)"
                ))
            })
        };
        let device = |name: &str| {
            sc.device(name).ok_or_else(|| {
                fail(format!(
                    "no device `{name}` (devices: {})",
                    names(sc.devices.iter().map(|d| d.name.as_str()))
                ))
            })
        };
        let assigned = |name: &str| {
            let d = device(name)?;
            if d.kind != DeviceKind::Assigned {
                return Err(fail(format!(
                    "device `{name}` is emulated; this needs an assigned device"
                )));
            }
            Ok(d)
        };
        let manual_only = || {
            if viommu {
                Err(fail(
                    "the vIOMMU makes this call itself; use vmm.mode = \"manual\" to script it"
                        .into(),
                ))
            } else {
                Ok(())
            }
        };
        let hwpt = |name: &str| {
            if hwpts.contains(name) {
                Ok(())
            } else {
                Err(fail(format!(
                    "no HWPT `{name}` (allocate it with an earlier alloc step{})",
                    if viommu {
                        "; the vIOMMU's nest parent is `parent`"
                    } else {
                        ""
                    }
                )))
            }
        };
        let mut stage2_table = || {
            stage2_tables += 1;
            if stage2_tables > MAX_STAGE2_TABLES {
                return Err(fail(format!(
                    "more than {MAX_STAGE2_TABLES} stage-2 page tables (stage2 steps and paging allocs); each maps all of guest memory"
                )));
            }
            Ok(())
        };
        let errno = |e: &Option<OpExpect>| {
            if let Some(name) = e.as_ref().and_then(|e| e.errno.as_deref())
                && vtd_iommufd::Errno::from_name(name).is_none()
            {
                return Err(fail(format!("unknown errno `{name}`")));
            }
            Ok(())
        };
        match &at.step {
            Step::GuestBoot {} => {
                if !viommu {
                    return Err(fail(
                        "the guest drives the vIOMMU's unit; it needs vmm.mode = \"viommu\"".into(),
                    ));
                }
                if booted {
                    return Err(fail("the guest has booted already".into()));
                }
                booted = true;
            }
            Step::Stage1 { name, levels, root } => {
                one_line_name("a stage-1 table name", name).map_err(fail)?;
                if tables.contains_key(name.as_str()) {
                    return Err(fail(format!("stage-1 table `{name}` exists already")));
                }
                match levels {
                    4 => {}
                    5 if unit.cap.fs5lp() => {}
                    5 => {
                        return Err(fail(
                            "a 5-level stage 1 needs CAP.FS5LP, which this platform's unit does not have".into(),
                        ));
                    }
                    n => return Err(fail(format!("a stage 1 has 4 or 5 levels, not {n}"))),
                }
                if let Some(r) = root
                    && (!r.0.is_multiple_of(4096) || sc.map.region_at(r.0).is_none())
                {
                    return Err(fail(format!(
                        "root {:#x} is not a 4 KiB page of guest memory",
                        r.0
                    )));
                }
                tables.insert(name, *levels);
            }
            Step::Map {
                table: t,
                iova,
                gpa,
                size,
                ..
            } => {
                let levels = table(t)?;
                let bytes = vtd_spec::addr::PageSize::from(*size).bytes();
                if *size == SizeSpec::G1 && !unit.cap.fs1gp() {
                    return Err(fail("1G first-stage pages need CAP.FS1GP, which this platform's unit does not have".into()));
                }
                if !iova.0.is_multiple_of(bytes) || !gpa.0.is_multiple_of(bytes) {
                    return Err(fail(format!(
                        "iova {:#x} and gpa {:#x} must be aligned to the page size {bytes:#x}",
                        iova.0, gpa.0
                    )));
                }
                let width = if levels == 5 { 57 } else { 48 };
                if !vtd_spec::addr::is_canonical(iova.0, levels) {
                    return Err(fail(format!(
                        "iova {:#x} is not canonical for a {width}-bit ({levels}-level) stage 1",
                        iova.0
                    )));
                }
            }
            Step::Unmap { table: t, .. } => {
                table(t)?;
            }
            Step::Pasid {
                device: d,
                entry,
                table: t,
                ..
            } => {
                device(d)?;
                if !viommu || !booted {
                    return Err(fail(
                        "PASID entries are the guest's: a guest_boot step must come first".into(),
                    ));
                }
                match (entry, t) {
                    (PasidKindSpec::FirstStage, Some(t)) => {
                        table(t)?;
                    }
                    (PasidKindSpec::FirstStage, None) => {
                        return Err(fail("a first-stage entry needs `table`".into()));
                    }
                    (_, Some(_)) => {
                        return Err(fail("only a first-stage entry takes `table`".into()));
                    }
                    (_, None) => {}
                }
            }
            Step::Invalidate {
                hwpt: h,
                did,
                pasid,
                iova,
                pages,
                expect,
            } => {
                errno(expect)?;
                if iova.is_none() && pages.is_some() {
                    return Err(fail(
                        "`pages` counts from `iova`; without `iova` the step flushes everything"
                            .into(),
                    ));
                }
                let pages = pages.unwrap_or(1);
                match h {
                    Some(h) => {
                        hwpt(h)?;
                        // IOMMU_HWPT_INVALIDATE names the HWPT, not a domain or PASID.
                        if did.is_some() || pasid.is_some() {
                            return Err(fail(
                                "`did` and `pasid` belong to a guest invalidation; with `hwpt` the HWPT names what to flush".into(),
                            ));
                        }
                    }
                    None if expect.is_some() => {
                        return Err(fail(
                            "a guest invalidation always completes; `expect` applies to IOMMU_HWPT_INVALIDATE with `hwpt`".into(),
                        ));
                    }
                    None => {
                        if !viommu || !booted {
                            return Err(fail("a guest invalidation needs the vIOMMU and a booted guest; name an `hwpt` to call IOMMU_HWPT_INVALIDATE directly".into()));
                        }
                        if !pages.is_power_of_two() {
                            return Err(fail(format!(
                                "a guest invalidation covers a power of two pages, not {pages}"
                            )));
                        }
                    }
                }
            }
            Step::Stage2 {
                name,
                ioas: a,
                device: d,
                expect,
                ..
            } => {
                manual_only()?;
                errno(expect)?;
                assigned(d)?;
                stage2_table()?;
                let a = a.as_deref().unwrap_or("ioas");
                one_line_name("an IOAS name", a).map_err(fail)?;
                one_line_name("an HWPT name", name).map_err(fail)?;
                if !ioas.insert(a) {
                    return Err(fail(format!("IOAS `{a}` exists already")));
                }
                if !hwpts.insert(name) {
                    return Err(fail(format!("HWPT `{name}` exists already")));
                }
            }
            Step::IoasUnmap {
                ioas: a, expect, ..
            } => {
                errno(expect)?;
                if !ioas.contains(a.as_str()) {
                    return Err(fail(format!("no IOAS `{a}`")));
                }
            }
            Step::Alloc {
                name,
                kind,
                device: d,
                ioas: a,
                parent,
                table: t,
                dirty,
                expect,
            } => {
                manual_only()?;
                errno(expect)?;
                assigned(d)?;
                // Each kind takes its own fields; another kind's would be ignored.
                let foreign = match kind {
                    HwptKindSpec::Paging | HwptKindSpec::NestParent => {
                        [("parent", parent.is_some()), ("table", t.is_some())]
                    }
                    HwptKindSpec::Nested => [("ioas", a.is_some()), ("dirty", *dirty)],
                };
                if let Some((field, _)) = foreign.iter().find(|(_, given)| *given) {
                    return Err(fail(format!(
                        "`{field}` does not apply to a {} HWPT",
                        kind.name()
                    )));
                }
                match kind {
                    HwptKindSpec::Paging | HwptKindSpec::NestParent => match a {
                        Some(a) if ioas.contains(a.as_str()) => stage2_table()?,
                        Some(a) => {
                            return Err(fail(format!("no IOAS `{a}` (a stage2 step makes one)")));
                        }
                        None => return Err(fail("a paging HWPT needs `ioas`".into())),
                    },
                    HwptKindSpec::Nested => {
                        match parent {
                            Some(p) => hwpt(p)?,
                            None => return Err(fail("a nested HWPT needs `parent`".into())),
                        }
                        match t {
                            Some(t) => {
                                table(t)?;
                            }
                            None => {
                                return Err(fail("a nested HWPT needs the stage-1 `table`".into()));
                            }
                        }
                    }
                }
                one_line_name("an HWPT name", name).map_err(fail)?;
                if !hwpts.insert(name) {
                    return Err(fail(format!("HWPT `{name}` exists already")));
                }
            }
            Step::Attach {
                device: d,
                hwpt: h,
                expect,
            } => {
                manual_only()?;
                errno(expect)?;
                assigned(d)?;
                hwpt(h)?;
            }
            Step::Detach { device: d, expect } => {
                manual_only()?;
                errno(expect)?;
                assigned(d)?;
            }
            Step::Dma {
                device: d,
                iova,
                access,
                data,
                expect,
                pasid,
                ..
            } => {
                let dev = device(d)?;
                let len = crate::scenario::world::DmaSpec::from_step(&at.step)
                    .map_or(0, |s| s.len as u64);
                if len > MAX_DMA_BYTES {
                    return Err(fail(format!(
                        "a dma step moves at most {MAX_DMA_BYTES:#x} bytes, not {len:#x}"
                    )));
                }
                if iova.0.checked_add(len.saturating_sub(1)).is_none() {
                    return Err(fail(format!(
                        "{len} bytes at {:#x} run past the end of the 64-bit address space",
                        iova.0
                    )));
                }
                if dev.kind == DeviceKind::Emulated && !booted {
                    // Allowed: remapping off on the guest unit means GPA = IOVA.
                }
                if *access != AccessSpec::Read && expect.as_ref().is_some_and(|e| e.data.is_some())
                {
                    return Err(fail(
                        "`expect.data` checks what a read returns; use mem_check after a write"
                            .into(),
                    ));
                }
                if *access == AccessSpec::Read && data.is_some() {
                    return Err(fail(
                        "`data` is what a write stores; a read checks bytes with expect.data"
                            .into(),
                    ));
                }
                if let Some(p) = pasid
                    && *p >= 1 << 20
                {
                    return Err(fail(format!("PASID {p} is beyond 20 bits")));
                }
                if let Some(f) = expect.as_ref().and_then(|e| e.fault.as_deref())
                    && parse_reason(f).is_none()
                {
                    return Err(fail(format!(
                        "unknown fault reason `{f}` (use a condition code such as SSS.2, or its number)"
                    )));
                }
                if let Some(k) = expect.as_ref().and_then(|e| e.kind.as_deref())
                    && !KINDS.contains(&k)
                {
                    return Err(fail(format!(
                        "unknown translation kind `{k}` (one of {})",
                        KINDS.join(", ")
                    )));
                }
            }
            Step::MemWrite { gpa, data } | Step::MemCheck { gpa, data } => {
                if !in_memory(&sc.map, gpa.0, data.len() as u64) {
                    return Err(fail(format!(
                        "[{:#x}, +{}) is not guest memory",
                        gpa.0,
                        data.len()
                    )));
                }
            }
            Step::DirtyTracking {
                hwpt: h, expect, ..
            } => {
                errno(expect)?;
                hwpt(h)?;
            }
            Step::DirtyBitmap {
                hwpt: h,
                length,
                expect,
                ..
            } => {
                hwpt(h)?;
                if let Some(name) = expect.as_ref().and_then(|e| e.errno.as_deref())
                    && vtd_iommufd::Errno::from_name(name).is_none()
                {
                    return Err(fail(format!("unknown errno `{name}`")));
                }
                if length.0 > 1 << 40 {
                    return Err(fail(
                        "a bitmap of more than 1 TiB of IOVA is not supported".into(),
                    ));
                }
            }
            Step::HwInfo { device: d, .. } => {
                assigned(d)?;
            }
            Step::Expect {
                unit: u,
                counters: c,
                faults,
                device: d,
                attachment,
                skipped,
            } => {
                if *u == UnitSpec::Guest && !viommu {
                    return Err(fail("the guest unit exists only with the vIOMMU".into()));
                }
                for name in c.iter().flat_map(|c| c.keys()) {
                    if !counters.contains(&name.as_str()) {
                        return Err(fail(format!(
                            "unknown counter `{name}` (one of {})",
                            counters.join(", ")
                        )));
                    }
                }
                for name in faults.iter().flat_map(|c| c.keys()) {
                    if parse_reason(name).is_none() {
                        return Err(fail(format!("unknown fault reason `{name}`")));
                    }
                }
                match (d, attachment) {
                    (Some(d), Some(_)) => {
                        assigned(d)?;
                        if !viommu {
                            return Err(fail(
                                "attachments are the vIOMMU's; in manual mode the steps make them"
                                    .into(),
                            ));
                        }
                    }
                    (None, None) => {}
                    _ => return Err(fail("`attachment` and `device` go together".into())),
                }
                if skipped.is_some() && !viommu {
                    return Err(fail("`skipped` checks the vIOMMU's stage-2 plan; it needs vmm.mode = \"viommu\"".into()));
                }
            }
            Step::ResetCounters {} => {}
        }
    }
    Ok(())
}

/// Every byte of `[gpa, gpa + len)` is guest memory, with no hole between regions (an
/// empty range needs `gpa` itself to be memory).
pub fn in_memory(map: &MemoryMap, gpa: u64, len: u64) -> bool {
    let Some(last) = gpa.checked_add(len.saturating_sub(1)) else {
        return false;
    };
    let mut at = gpa;
    loop {
        let Some(r) = map.region_at(at) else {
            return false;
        };
        if r.last() >= last {
            return true;
        }
        // No overflow: r.last() < last.
        at = r.last() + 1;
    }
}

/// Translation kinds `expect.kind` accepts: those a `dma` step can give (it sends
/// untranslated requests, so never a pre-translated one).
pub const KINDS: [&str; 5] = [
    "nested",
    "second-stage",
    "first-stage",
    "pass-through",
    "untranslated",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_memory_needs_every_byte_and_no_hole() {
        let map = MemoryMap::new(vec![
            Region::new("a", 0, 0x2000, RegionKind::Ram),
            Region::new("b", 0x2000, 0x1000, RegionKind::Rom),
            Region::new("c", 0x4000, 0x1000, RegionKind::Ram),
            Region::new("top", u64::MAX - 0xFFF, 0x1000, RegionKind::Ram),
        ])
        .unwrap();
        assert!(in_memory(&map, 0x1FFF, 2));
        assert!(in_memory(&map, 0, 0x3000));
        assert!(!in_memory(&map, 0x2FFF, 0x1002), "the hole at 0x3000");
        assert!(!in_memory(&map, 0x3000, 0));
        assert!(in_memory(&map, 0x4000, 0));
        assert!(in_memory(&map, u64::MAX - 3, 4));
        assert!(!in_memory(&map, u64::MAX - 3, 5));
    }
}
