//! Drawing one DMA's walk (the two-dimensional walk of a nested translation: each
//! first-stage level with the stage-2 walk that fetched its table) and explaining a fault
//! in plain words, with the specification's reason code and what would fix it.

use serde_json::{Value, json};
use vtd_model::fault::{Fault, FaultStage};
use vtd_model::request::{Perms, Translation, TranslationKind};
use vtd_model::trace::{CacheKind, SsPurpose, WalkEvent};
use vtd_spec::addr::PageSize;
use vtd_spec::fault::FaultReason;
use vtd_viommu::{MemoryMap, Region, SkipReason};

/// What the explanation may know about the guest: its memory map and what the VMM kept
/// out of stage 2.
#[derive(Clone, Debug, Default)]
pub struct GuestView {
    /// The guest memory map.
    pub map: Option<MemoryMap>,
    /// Regions kept out of the nest parent, with why.
    pub skipped: Vec<(Region, SkipReason)>,
    /// Stage-1 levels, when known (for canonical-address explanations).
    pub fs_levels: Option<u8>,
}

/// A fault told three ways.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultStory {
    /// The first failing check, in plain words.
    pub what: String,
    /// `"SSS.2, 0x79"`.
    pub code: String,
    /// What would fix it.
    pub fix: String,
}

impl FaultStory {
    /// As a JSON object.
    pub fn json(&self, f: &Fault) -> Value {
        json!({
            "reason": f.reason.name(),
            "code": f.code(),
            "stage": f.stage.describe(),
            "what": self.what,
            "fix": self.fix,
            "fs_level": f.fs_level,
            "ss_level": f.ss_level,
            "gpa": f.gpa,
            "entry_addr": f.entry_addr,
            "entry_value": f.entry_value,
        })
    }
}

/// `4 KiB`, `2 MiB`, `1 GiB`.
pub fn size_name(size: PageSize) -> &'static str {
    match size {
        PageSize::Size4K => "4 KiB",
        PageSize::Size2M => "2 MiB",
        PageSize::Size1G => "1 GiB",
    }
}

/// The scenario name of a translation kind.
pub fn kind_name(kind: TranslationKind) -> &'static str {
    match kind {
        TranslationKind::Disabled => "untranslated",
        TranslationKind::PassThrough => "pass-through",
        TranslationKind::FirstStage => "first-stage",
        TranslationKind::SecondStage => "second-stage",
        TranslationKind::Nested => "nested",
        TranslationKind::PreTranslated => "pre-translated",
    }
}

/// `R W` style rights.
pub fn perms_name(p: Perms) -> String {
    let mut s = Vec::new();
    if p.contains(Perms::READ) {
        s.push("R");
    }
    if p.contains(Perms::WRITE) {
        s.push("W");
    }
    if p.contains(Perms::EXECUTE) {
        s.push("X");
    }
    if s.is_empty() {
        "none".into()
    } else {
        s.join("")
    }
}

/// One line for a successful translation.
pub fn translation_line(t: &Translation) -> String {
    let mut s = format!(
        "HPA {:#x} ({}, {} page, rights {}",
        t.hpa,
        kind_name(t.kind),
        size_name(t.page_size),
        perms_name(t.perms)
    );
    if let Some(g) = t.gpa {
        s += &format!(", via GPA {g:#x}");
    }
    if t.from_iotlb {
        s += ", from the IOTLB";
    }
    s + ")"
}

fn bit(v: u64, n: u32) -> u8 {
    ((v >> n) & 1) as u8
}

fn fs_entry_bits(v: u64, level: u8, leaf: bool) -> String {
    let mut s = format!(
        "P={} R/W={} U/S={} A={}",
        bit(v, 0),
        bit(v, 1),
        bit(v, 2),
        bit(v, 5)
    );
    if leaf {
        s += &format!(" D={}", bit(v, 6));
    }
    s += &ps_bit(v, level);
    if bit(v, 0) == 0 {
        return s + "  → not present";
    }
    s + &points_to(v, level, leaf, "GPA ", "GPA ")
}

fn ss_entry_bits(v: u64, level: u8, leaf: bool) -> String {
    let mut s = format!("R={} W={}", bit(v, 0), bit(v, 1));
    s += &ps_bit(v, level);
    if v & 3 == 0 {
        return s + "  → not present";
    }
    s + &points_to(v, level, leaf, "HPA ", "")
}

/// ` PS=…` for the levels where bit 7 is the page-size bit (both stages, §4.2 and §5.2).
fn ps_bit(v: u64, level: u8) -> String {
    if (2..=3).contains(&level) {
        format!(" PS={}", bit(v, 7))
    } else {
        String::new()
    }
}

/// Where a present paging entry of either stage leads: the page it maps, when `leaf`, or
/// the next table; the address spaces are named by the prefixes (`"GPA "`, `"HPA "`, `""`).
fn points_to(v: u64, level: u8, leaf: bool, page_space: &str, table_space: &str) -> String {
    let addr = v & 0x000F_FFFF_FFFF_F000;
    if leaf {
        let size = PageSize::from_level(level).unwrap_or(PageSize::Size4K);
        format!(
            "  → {} page at {page_space}{:#x}",
            size_name(size),
            addr & !size.offset_mask()
        )
    } else {
        format!("  → next table at {table_space}{addr:#x}")
    }
}

fn cache_name(c: CacheKind) -> &'static str {
    match c {
        CacheKind::Context => "context cache",
        CacheKind::Pasid => "PASID cache",
        CacheKind::Iotlb => "IOTLB",
        CacheKind::FirstStagePsc => "first-stage paging-structure cache",
        CacheKind::SecondStagePsc => "second-stage paging-structure cache",
        CacheKind::DevTlb => "device-TLB",
    }
}

/// The walk as text lines, in the order the hardware did it: the PASID-table lookup,
/// then each first-stage level with the stage-2 walk that fetched its table indented
/// under it, then the stage-2 walk of the final address.
pub fn draw_walk(events: &[WalkEvent]) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<SsPurpose> = None;
    for e in events {
        match e {
            WalkEvent::RootEntry { addr, value } => out.push(format!(
                "root entry        @ {addr:#x} = {value:#x}  (present: {})",
                value & 1 == 1 || (value >> 64) & 1 == 1
            )),
            WalkEvent::ContextEntry { addr, value } => out.push(format!(
                "context entry     @ {addr:#x} = {value:#x}  (P={})",
                value & 1
            )),
            WalkEvent::PasidDirEntry { addr, value } => out.push(format!(
                "PASID-dir entry   @ {addr:#x} = {value:#x}  (P={})",
                value & 1
            )),
            WalkEvent::PasidEntry { addr, pasid, entry } => {
                let pgtt = entry.lo.pgtt();
                let mut s = format!(
                    "PASID entry {pasid:<5} @ {addr:#x}: P={} PGTT={:03b} ({pgtt:?}) DID={}",
                    entry.lo.p() as u8,
                    pgtt.into_bits(),
                    entry.lo.did()
                );
                if pgtt.uses_first_stage() {
                    let levels = entry.hi.fspm().levels().unwrap_or(0);
                    let space = if pgtt.uses_second_stage() { "GPA " } else { "" };
                    s += &format!(" FSPTPTR={space}{:#x} ({levels}-level)", entry.fs_table());
                }
                if pgtt.uses_second_stage() {
                    s += &format!(" SSPTPTR={:#x}", entry.ss_table());
                }
                out.push(s);
            }
            WalkEvent::FirstStageEntry {
                level,
                table,
                addr,
                value,
                leaf,
            } => {
                current = None;
                out.push(format!(
                    "FS L{level} entry  table {table:#x}, entry @ {addr:#x} = {value:#018x}  {}",
                    fs_entry_bits(*value, *level, *leaf)
                ));
            }
            WalkEvent::SecondStageEntry {
                purpose,
                level,
                input,
                addr,
                value,
                leaf,
            } => {
                if current != Some(*purpose) {
                    current = Some(*purpose);
                    out.push(match purpose {
                        SsPurpose::FirstStageTable { fs_level } => format!(
                            "stage 2 for the FS L{fs_level} table at GPA {:#x}:",
                            input & !0xFFF
                        ),
                        SsPurpose::Final => format!("stage 2 for the final address {input:#x}:"),
                    });
                }
                out.push(format!(
                    "    SS L{level} @ {addr:#x} = {value:#018x}  {}",
                    ss_entry_bits(*value, *level, *leaf)
                ));
            }
            WalkEvent::AdUpdate {
                first_stage,
                level,
                addr,
                old,
                new,
                by_erratum,
            } => {
                let which = match (bit(*old ^ *new, 5), bit(*old ^ *new, 6)) {
                    (1, 1) => "A and D",
                    (0, 1) => "D",
                    _ => "A",
                };
                out.push(format!(
                    "    {} L{level} {which} set @ {addr:#x}: {old:#x} → {new:#x}{}",
                    if *first_stage { "FS" } else { "SS" },
                    if *by_erratum {
                        "  ← written only because of the SPR17 erratum: stage 2 maps this page read-only"
                    } else {
                        ""
                    }
                ));
            }
            WalkEvent::Cache { cache, hit } => out.push(format!(
                "{} {}",
                cache_name(*cache),
                if *hit { "hit" } else { "miss" }
            )),
            WalkEvent::Done(Ok(t)) => out.push(format!("=> {}", translation_line(t))),
            WalkEvent::Done(Err(f)) => out.push(format!(
                "=> fault {} ({:#04x}) in the {}",
                f.reason.name(),
                f.code(),
                f.stage.describe()
            )),
        }
    }
    out
}

/// Paging-structure reads of a walk by stage: (first stage, stage 2 for first-stage
/// tables, stage 2 for the final address).
pub fn reads_by_stage(events: &[WalkEvent]) -> (usize, usize, usize) {
    let mut r = (0, 0, 0);
    for e in events {
        match e {
            WalkEvent::FirstStageEntry { .. } => r.0 += 1,
            WalkEvent::SecondStageEntry {
                purpose: SsPurpose::FirstStageTable { .. },
                ..
            } => r.1 += 1,
            WalkEvent::SecondStageEntry {
                purpose: SsPurpose::Final,
                ..
            } => r.2 += 1,
            _ => {}
        }
    }
    r
}

/// The walk as JSON records.
pub fn walk_json(events: &[WalkEvent]) -> Vec<Value> {
    events
        .iter()
        .map(|e| match e {
            WalkEvent::RootEntry { addr, value } => {
                json!({"step": "root_entry", "addr": addr, "value": format!("{value:#x}")})
            }
            WalkEvent::ContextEntry { addr, value } => {
                json!({"step": "context_entry", "addr": addr, "value": format!("{value:#x}")})
            }
            WalkEvent::PasidDirEntry { addr, value } => {
                json!({"step": "pasid_dir_entry", "addr": addr, "value": value})
            }
            WalkEvent::PasidEntry { addr, pasid, entry } => json!({
                "step": "pasid_entry", "addr": addr, "pasid": pasid,
                "pgtt": entry.lo.pgtt().into_bits(), "did": entry.lo.did(),
                "fsptptr": entry.fs_table(), "ssptptr": entry.ss_table(),
            }),
            WalkEvent::FirstStageEntry {
                level,
                table,
                addr,
                value,
                leaf,
            } => json!({
                "step": "fs_entry", "level": level, "table": table, "addr": addr,
                "value": value, "leaf": leaf,
            }),
            WalkEvent::SecondStageEntry {
                purpose,
                level,
                input,
                addr,
                value,
                leaf,
            } => json!({
                "step": "ss_entry",
                "for": match purpose {
                    SsPurpose::FirstStageTable { fs_level } => format!("fs_l{fs_level}_table"),
                    SsPurpose::Final => "final".to_string(),
                },
                "level": level, "input": input, "addr": addr, "value": value, "leaf": leaf,
            }),
            WalkEvent::AdUpdate {
                first_stage,
                level,
                addr,
                old,
                new,
                by_erratum,
            } => json!({
                "step": "ad_update", "first_stage": first_stage, "level": level,
                "addr": addr, "old": old, "new": new, "by_erratum": by_erratum,
            }),
            WalkEvent::Cache { cache, hit } => {
                json!({"step": "cache", "cache": cache_name(*cache), "hit": hit})
            }
            WalkEvent::Done(Ok(t)) => json!({
                "step": "done", "hpa": t.hpa, "gpa": t.gpa, "kind": kind_name(t.kind),
                "page_size": t.page_size.bytes(), "perms": perms_name(t.perms),
                "from_iotlb": t.from_iotlb,
            }),
            WalkEvent::Done(Err(f)) => {
                json!({"step": "done", "fault": f.reason.name(), "code": f.code()})
            }
        })
        .collect()
}

/// The fault's first failing check in plain words, its code, and a fix.
pub fn fault_story(f: &Fault, view: &GuestView) -> FaultStory {
    let code = format!("{}, {:#04x}", f.reason.name(), f.code());
    let fs = f.fs_level.map_or(String::new(), |l| format!(" at FS L{l}"));
    let ss = f.ss_level.map_or(String::new(), |l| format!(" at SS L{l}"));
    let gpa = f.gpa.unwrap_or(f.addr);
    let entry = match (f.entry_addr, f.entry_value) {
        (Some(a), Some(v)) => format!(" (entry @ {a:#x} = {v:#x})"),
        _ => String::new(),
    };
    let skipped = view
        .skipped
        .iter()
        .find(|(r, _)| r.contains(gpa))
        .map(|(r, why)| (r.clone(), *why));
    let outside = view
        .map
        .as_ref()
        .is_some_and(|m| m.region_at(gpa).is_none());
    let table_fetch = f.stage == FaultStage::SecondStageForFirstStageTable;
    let (what, fix) = match f.reason {
        FaultReason::SssNotPresent | FaultReason::SgnReadDenied | FaultReason::SgnWriteDenied
            if skipped.is_some() && f.stage != FaultStage::FirstStage =>
        {
            let (r, why) = skipped.expect("checked above");
            (
                format!(
                    "stage 2 has no mapping for GPA {gpa:#x}{ss}: it is in region `{}` ({}), {}",
                    r.name,
                    r.kind.label(),
                    why.explain()
                ),
                "keep device DMA away from read-only guest memory: the guest should map the \
                 IOVA to a RAM buffer (the ROM stays out of the nest parent by design)"
                    .to_string(),
            )
        }
        FaultReason::SssNotPresent if table_fetch => (
            format!(
                "stage 2 has no mapping for GPA {gpa:#x}{ss}, where the guest's FS L{} table lives{entry}",
                f.fs_level.unwrap_or(0)
            ),
            "the guest's page tables must be in guest RAM the VMM maps in stage 2 (IOMMU_IOAS_MAP)"
                .into(),
        ),
        FaultReason::SssNotPresent if outside => (
            format!("GPA {gpa:#x} is not guest memory: stage 2 has no mapping for it{ss}{entry}"),
            "the guest's stage 1 points outside its memory; map the IOVA to guest RAM".into(),
        ),
        FaultReason::SssNotPresent => (
            format!("stage 2 has no mapping for GPA {gpa:#x}{ss}{entry}"),
            format!("map GPA {gpa:#x} in the stage-2 IOAS (IOMMU_IOAS_MAP)"),
        ),
        FaultReason::SfsNotPresent => (
            format!(
                "the guest's stage 1 has no present entry{fs} for IOVA {:#x}{entry}",
                f.addr
            ),
            format!(
                "the guest maps IOVA {:#x} in its stage 1 (and invalidates, if the IOTLB may hold the old entry)",
                f.addr
            ),
        ),
        FaultReason::SfsAdWriteDenied => (
            format!(
                "stage 2 maps GPA {gpa:#x} read-only; the first-stage A/D update{fs} needs write{entry}"
            ),
            "map the page holding the guest's stage-1 table writable in stage 2, or have the guest \
             pre-set A (and D) in its entries; with ERRATA_772415_SPR17 hardware writes there \
             anyway, which is why Linux refuses read-only nest-parent mappings"
                .into(),
        ),
        FaultReason::SfsRootReadDenied | FaultReason::SfsReadDenied => (
            format!(
                "stage 2 denies reading the guest's FS L{} table at GPA {gpa:#x}{entry}",
                f.fs_level.unwrap_or(0)
            ),
            "map the guest's page-table pages readable in stage 2".into(),
        ),
        FaultReason::SgnWriteDenied if f.stage == FaultStage::FirstStage => (
            format!(
                "the guest's stage 1 maps IOVA {:#x} read-only (R/W=0{fs}){entry}",
                f.addr
            ),
            "the guest maps the IOVA writable, or the device only reads it".into(),
        ),
        FaultReason::SgnWriteDenied => (
            format!("stage 2 maps GPA {gpa:#x} read-only{ss}{entry}; the DMA writes"),
            "map the range WRITEABLE in the IOAS, or the device only reads it".into(),
        ),
        FaultReason::SgnReadDenied => (
            format!("stage 2 maps GPA {gpa:#x} without read permission{ss}{entry}"),
            "map the range READABLE in the IOAS".into(),
        ),
        FaultReason::SgnUserDenied => (
            format!(
                "a user request reached a supervisor-only page (U/S=0{fs}) for IOVA {:#x}{entry}",
                f.addr
            ),
            "the guest sets U/S in its entries, or the device sends supervisor requests (a PASID \
             with PR=1 and SRE in the PASID entry)"
                .into(),
        ),
        FaultReason::SptNotPresent => (
            format!(
                "the PASID entry for {} is not present: nothing is attached",
                f.pasid
                    .map_or("requests without PASID (RID_PASID)".to_string(), |p| format!(
                        "PASID {p}"
                    ))
            ),
            "attach the device to a HWPT (VFIO_DEVICE_ATTACH_IOMMUFD_PT), or the guest writes a \
             present PASID entry"
                .into(),
        ),
        FaultReason::SptSupervisorDisabled => (
            "a supervisor request, but the PASID entry's SRE is clear".into(),
            "set SRE in the guest's PASID entry (IOMMU_VTD_S1_SRE in the nested HWPT)".into(),
        ),
        FaultReason::SgnNonCanonical => (
            format!(
                "IOVA {:#x} is not canonical for the {}-level first stage",
                f.addr,
                view.fs_levels.map_or("configured".to_string(), |l| l.to_string())
            ),
            "use an IOVA whose upper bits copy the top translated bit, or 5-level paging".into(),
        ),
        FaultReason::SgnAddressBeyond => (
            format!("address {:#x} is beyond the address width", f.addr),
            "use an address inside the domain's width".into(),
        ),
        FaultReason::SctNotPresent => (
            "the device has no context entry: the kernel has not set it up".into(),
            "bind the device to the iommufd and attach it".into(),
        ),
        FaultReason::SfsReserved | FaultReason::SssReserved => (
            format!("a reserved bit is set in a paging entry{fs}{ss}{entry}"),
            "the table holds a value that is not an entry; clear the reserved bits".into(),
        ),
        FaultReason::SgnInterruptRange => (
            "the translation lands in the interrupt range 0xFEEx_xxxx".into(),
            "DMA must not target the MSI window; map the IOVA elsewhere".into(),
        ),
        r => (
            format!("{}{fs}{ss}{entry}", r.meaning()),
            format!(
                "see the meaning of {} in the VT-d specification's fault table (§7.1)",
                r.name()
            ),
        ),
    };
    FaultStory { what, code, fix }
}

/// The story as three indented lines.
pub fn story_lines(story: &FaultStory) -> [String; 3] {
    [
        format!("why:  {}", story.what),
        format!("code: {}", story.code),
        format!("fix:  {}", story.fix),
    ]
}
