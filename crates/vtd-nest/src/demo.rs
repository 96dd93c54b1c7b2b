//! `vtd-nest demo`: the nesting story in one run, on a built-in Sapphire Rapids-like
//! machine. The demo plays the VMM (vtd-viommu over vtd-iommufd calls to the simulated
//! kernel) and the guest (its IOMMU driver writing tables and invalidations into guest
//! memory and the guest-facing unit). Every figure printed comes from a call's result or
//! the hardware model's counters.

use std::sync::Arc;

use serde_json::json;
use vtd_iommufd::Iommufd;
use vtd_kernel::platform::bdf;
use vtd_kernel::{Platform, PlatformDesc};
use vtd_model::build::Leaf;
use vtd_model::fault::{Fault, FaultRecording};
use vtd_model::request::{Access, Request, Translation};
use vtd_model::stats::Stats;
use vtd_model::trace::WalkRecorder;
use vtd_spec::addr::PageSize;
use vtd_viommu::guest::{FirstStage, GuestDriver, GuestPages, GuestPasid};
use vtd_viommu::{Event, GuestMemory, MemoryMap, NewDevice, Placement, VIommu};

use crate::error::{Error, Result};
use crate::explain::{
    GuestView, draw_walk, fault_story, reads_by_stage, story_lines, translation_line, walk_json,
};
use crate::output::{Report, yes};
use crate::scenario::world::{DmaFail, DmaSpec, dma_through, event_line};

/// Where the guest sees the NIC (00:02.0).
const GUEST_SID: u16 = 0x0010;
/// The guest's domain id for the NIC.
const DID: u16 = 3;
/// The IOVA the guest maps to RAM.
const IOVA: u64 = 0x4000_0000;
/// The IOVA the guest maps to the vBIOS.
const IOVA_ROM: u64 = 0x4000_1000;
/// Guest RAM the NIC reads first, and the page the guest remaps to later.
const GPA: u64 = 0x20_0000;
const GPA_NEW: u64 = 0x20_1000;
/// The vBIOS.
const GPA_ROM: u64 = 0xC_0000;
/// Guest pages for the guest's IOMMU tables.
const TABLE_POOL: u64 = 0xE0_0000;
/// Levels of the guest's stage 1.
const LEVELS: u8 = 4;
/// What guest RAM holds at `GPA + 0x10`, and at `GPA_NEW + 0x10`.
const HELLO: &[u8] = b"hello from guest RAM";
const REMAPPED: &[u8] = b"the remapped page";
/// The address mask of the guest's invalidation after the remap: 2^0 pages.
const AM: u8 = 0;

fn setup(what: &str) -> impl Fn(String) -> Error + '_ {
    move |e| Error::Setup(format!("demo: {what}: {e}"))
}

/// Run the demo, writing to `rep`.
pub fn run(rep: &mut Report<'_>) -> Result<()> {
    // The machine: one Sapphire Rapids-like unit, nic0 at 00:03.0.
    let desc = PlatformDesc::sapphire_rapids();
    let platform = Platform::new(desc.clone()).map_err(|e| setup("platform")(e.to_string()))?;
    let host = platform
        .unit(0)
        .ok_or_else(|| setup("platform")("no unit".into()))?;
    let cfg = host.config();
    rep.text("vtd-nest demo: Intel VT-d nested translation, VMM and guest on a simulated machine")?;
    rep.text("")?;
    rep.record(
        "machine",
        json!({
            "cap": cfg.cap.into_bits(), "ecap": cfg.ecap.into_bits(),
            "nesting": cfg.ecap.nest(), "fs5lp": cfg.cap.fs5lp(),
            "erratum_spr17": format!("{:?}", cfg.switches.erratum_spr17),
            "devices": desc.devices.iter().map(|d| json!({"name": d.name, "bdf": d.bdf()})).collect::<Vec<_>>(),
        }),
        &[
            "1. The machine".into(),
            format!(
                "   host VT-d unit: CAP {:#x} ECAP {:#x} (scalable mode, nesting {}, 5-level first stage {}, SPR17 erratum in the hardware: {:?})",
                cfg.cap.into_bits(),
                cfg.ecap.into_bits(),
                yes(cfg.ecap.nest()),
                yes(cfg.cap.fs5lp()),
                cfg.switches.erratum_spr17
            ),
            format!(
                "   PCI devices: {}",
                desc.devices
                    .iter()
                    .map(|d| format!("{} at {}", d.name, d.bdf()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ],
    )?;

    // Guest memory: the PC map with a read-only vBIOS.
    let map = MemoryMap::pc(16 << 20);
    let mem = Arc::new(GuestMemory::new(map.clone()).map_err(|e| setup("memory")(e.to_string()))?);
    let mut lines = vec![String::new(), "2. Guest memory (the VMM's map)".into()];
    for r in map.regions() {
        lines.push(format!(
            "   {:<8} GPA {:#010x}-{:#010x}  {}",
            r.name,
            r.gpa,
            r.last(),
            r.kind.label()
        ));
    }
    rep.record(
        "guest_memory",
        json!({"regions": map.regions().iter().map(|r| json!({"name": r.name, "gpa": r.gpa, "size": r.size, "kind": r.kind.label()})).collect::<Vec<_>>()}),
        &lines,
    )?;
    mem.write(GPA + 0x10, HELLO)
        .and_then(|()| mem.write(GPA_NEW + 0x10, REMAPPED))
        .and_then(|()| mem.write(GPA_ROM, b"\x55\xAAvBIOS"))
        .map_err(|e| setup("memory")(e.to_string()))?;

    // The VMM: /dev/iommu, nic0's VFIO cdev, the vIOMMU (hw_info, stage 2, guest unit).
    let iommufd = Arc::new(Iommufd::new(platform.open_iommufd()));
    let vfio = platform
        .open_vfio(0)
        .map_err(|e| setup("nic0")(e.to_string()))?;
    let nic = NewDevice {
        name: "nic0".into(),
        guest_sid: GUEST_SID,
        vfio: vtd_iommufd::VfioDevice::new(vfio),
    };
    let viommu = VIommu::new(iommufd, mem.clone(), nic, false)
        .map_err(|e| setup("vIOMMU")(e.to_string()))?;
    let hw = *viommu.host();
    rep.record(
        "hw_info",
        json!({"flags": hw.flags, "errata_772415_spr17": hw.errata_772415_spr17, "nesting": hw.nesting(), "cap": hw.cap.into_bits(), "ecap": hw.ecap.into_bits()}),
        &[
            String::new(),
            "3. The VMM binds nic0 to its iommufd and asks IOMMU_GET_HW_INFO".into(),
            format!(
                "   type INTEL_VTD, flags {:#x}: IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17 is {}; nesting {}",
                hw.flags,
                if hw.errata_772415_spr17 { "SET" } else { "clear" },
                yes(hw.nesting())
            ),
            if hw.errata_772415_spr17 {
                "   → the kernel refuses read-only mappings in a nest parent; the VMM must keep read-only guest memory out of stage 2".into()
            } else {
                "   → read-only mappings are allowed in a nest parent".into()
            },
        ],
    )?;

    let s2 = viommu.stage2();
    let mut lines = vec![
        String::new(),
        format!(
            "4. Stage 2: the nest parent (IOAS {}, HWPT {}) built from the guest memory map, IOVA = GPA",
            s2.ioas, s2.hwpt
        ),
    ];
    let mut placements = Vec::new();
    for p in &s2.plan.placements {
        match p {
            Placement::Mapped { region, writable } => {
                lines.push(format!(
                    "   {:<8} mapped {}",
                    region.name,
                    if *writable { "read-write" } else { "read-only" }
                ));
                placements
                    .push(json!({"region": region.name, "mapped": true, "writable": writable}));
            }
            Placement::Skipped { region, reason } => {
                lines.push(format!(
                    "   {:<8} KEPT OUT: {}",
                    region.name,
                    reason.explain()
                ));
                placements.push(
                    json!({"region": region.name, "mapped": false, "reason": reason.explain()}),
                );
            }
        }
    }
    rep.record(
        "stage2",
        json!({"ioas": s2.ioas, "hwpt": s2.hwpt, "nest_parent": true, "placements": placements}),
        &lines,
    )?;
    let _ = viommu.take_events();

    // The guest: boot its IOMMU driver, write a 4-level stage 1, point nic0's PASID entry
    // at it. The vIOMMU shadows the entry into a nested HWPT.
    let pages = GuestPages::new(mem.clone(), TABLE_POOL, 1 << 20);
    let mut driver = GuestDriver::boot(viommu.unit(), mem.clone(), &pages)
        .map_err(|e| setup("guest boot")(e.to_string()))?;
    let guest_err = |e: vtd_viommu::guest::GuestError| setup("guest")(e.to_string());
    driver.add_device(GUEST_SID).map_err(guest_err)?;
    let root = driver.new_stage1(LEVELS).root();
    driver
        .map(
            root,
            LEVELS,
            IOVA,
            GPA,
            PageSize::Size4K,
            Leaf::read_write(),
        )
        .map_err(guest_err)?;
    driver
        .map(
            root,
            LEVELS,
            IOVA_ROM,
            GPA_ROM,
            PageSize::Size4K,
            Leaf::read_write(),
        )
        .map_err(guest_err)?;
    let fs = FirstStage::new(root, LEVELS);
    let _ = viommu.take_events();
    driver
        .set_pasid(GUEST_SID, 0, GuestPasid::FirstStage { fs, did: DID })
        .map_err(guest_err)?;
    let events = viommu.take_events();
    let nested = events.iter().find_map(|e| match e {
        Event::Shadowed {
            change: vtd_viommu::shadow::Change::ToNested { hwpt },
            ..
        } => Some(*hwpt),
        _ => None,
    });
    let mut lines = vec![
        String::new(),
        format!(
            "5. The guest boots its IOMMU driver and writes a {LEVELS}-level stage 1 at GPA {root:#x}"
        ),
        format!("   IOVA {IOVA:#x} → GPA {GPA:#x} (guest RAM)"),
        format!("   IOVA {IOVA_ROM:#x} → GPA {GPA_ROM:#x} (the vBIOS)"),
        format!(
            "   PASID entry of its NIC ({}): first stage, DID {DID}; PASID-cache invalidation",
            bdf(GUEST_SID)
        ),
    ];
    lines.extend(
        events
            .iter()
            .map(|e| format!("   vIOMMU: {}", event_line(e))),
    );
    rep.record(
        "guest_stage1",
        json!({"root_gpa": root, "levels": LEVELS, "did": DID,
               "mappings": [{"iova": IOVA, "gpa": GPA}, {"iova": IOVA_ROM, "gpa": GPA_ROM}],
               "nested_hwpt": nested,
               "events": events.iter().map(event_line).collect::<Vec<_>>()}),
        &lines,
    )?;
    let nested = nested.ok_or_else(|| {
        setup("vIOMMU")("the guest's stage 1 was not shadowed into a nested HWPT".into())
    })?;

    let nic_sid = desc.devices[0].sid;
    let read = |iova: u64, len: usize| {
        dma_through(
            host,
            &**platform.host_mem(),
            nic_sid,
            &DmaSpec::read("nic0", iova, len),
        )
    };
    let gpa_of = |hpa: u64| {
        map.regions().iter().find_map(|r| {
            let base = mem.hva(r.gpa)? as u64;
            (hpa >= base && hpa - base < r.size).then(|| r.gpa + (hpa - base))
        })
    };
    let start = host.stats();

    // 6. A DMA through both stages, walked by the host unit with every step recorded.
    let len = HELLO.len();
    let req = Request::new(nic_sid, IOVA + 0x10, Access::Read).with_len(len as u32);
    let mut walk = WalkRecorder::default();
    let before = host.stats();
    let t = host
        .translate_traced(&req, &mut walk)
        .map_err(|f| setup("nested DMA")(f.to_string()))?;
    let walked = host.stats().since(&before);
    let (fs_reads, ss_tables, ss_final) = reads_by_stage(&walk.events);
    let before = host.stats();
    let (again, data) = read(IOVA + 0x10, len).map_err(|e| setup("nested DMA")(fail_text(&e)))?;
    let hit = host.stats().since(&before);
    let mut lines = vec![
        String::new(),
        format!(
            "6. nic0 reads {len} bytes at IOVA {:#x}: the host unit walks both stages",
            IOVA + 0x10
        ),
        "   (each first-stage table is a guest-physical address, so stage 2 is walked to fetch it)"
            .into(),
    ];
    lines.extend(
        draw_walk(&walk.events)
            .into_iter()
            .map(|l| format!("   {l}")),
    );
    lines.push(format!(
        "   {} paging-structure reads: {fs_reads} first-stage, {ss_tables} stage-2 for first-stage tables, {ss_final} stage-2 for the page (counters: {} / {} / {})",
        fs_reads + ss_tables + ss_final,
        walked.fs_entry_reads,
        walked.ss_reads_for_fs_tables,
        walked.ss_reads_final
    ));
    lines.push(format!(
        "   the device reads {:?} from GPA {}; that access is an IOTLB hit: {} translation, {} IOTLB hit, {} paging reads",
        String::from_utf8_lossy(&data),
        gpa_of(again.hpa).map_or("?".into(), |g| format!("{g:#x}")),
        hit.translations,
        hit.iotlb_hits,
        hit.paging_reads()
    ));
    rep.record(
        "nested_dma",
        json!({"iova": IOVA + 0x10, "len": len, "translation": translation_json(&t, gpa_of(t.hpa)),
               "walk": walk_json(&walk.events),
               "reads": {"first_stage": fs_reads, "second_stage_for_tables": ss_tables, "second_stage_final": ss_final},
               "counters": {"fs_entry_reads": walked.fs_entry_reads, "ss_reads_for_fs_tables": walked.ss_reads_for_fs_tables, "ss_reads_final": walked.ss_reads_final},
               "data": String::from_utf8_lossy(&data),
               "again": {"from_iotlb": again.from_iotlb, "paging_reads": hit.paging_reads(), "iotlb_hits": hit.iotlb_hits}}),
        &lines,
    )?;

    // 7. A DMA into the vBIOS: stage 2 has no mapping for it.
    let fault = match read(IOVA_ROM, 4) {
        Err(DmaFail::Fault(f)) => f,
        Ok(_) => return Err(setup("vBIOS DMA")("it did not fault".into())),
        Err(e) => return Err(setup("vBIOS DMA")(fail_text(&e))),
    };
    let view = GuestView {
        map: Some(map.clone()),
        skipped: s2.plan.skipped().map(|(r, w)| (r.clone(), w)).collect(),
        fs_levels: Some(4),
    };
    let story = fault_story(&fault, &view);
    let reported = viommu.report_host_fault("nic0", &fault);
    let mut lines = vec![
        String::new(),
        format!(
            "7. nic0 reads IOVA {IOVA_ROM:#x}, which the guest mapped to the vBIOS (GPA {GPA_ROM:#x})"
        ),
        format!(
            "   fault {} ({:#04x}) in the {}",
            fault.reason.name(),
            fault.code(),
            fault.stage.describe()
        ),
    ];
    lines.extend(story_lines(&story).into_iter().map(|l| format!("   {l}")));
    lines.push(format!(
        "   reported into the guest: {}",
        recording_text(reported.as_ref())
    ));
    rep.record(
        "fault",
        json!({"iova": IOVA_ROM, "fault": story.json(&fault), "guest_recording": reported.map(|f| format!("{:?}", f.recording))}),
        &lines,
    )?;

    // 8. The guest remaps the IOVA; the IOTLB is stale until the guest invalidates and
    // the vIOMMU forwards it.
    driver
        .map(
            root,
            LEVELS,
            IOVA,
            GPA_NEW,
            PageSize::Size4K,
            Leaf::read_write(),
        )
        .map_err(guest_err)?;
    let read_text = |iova: u64, len: usize| -> Result<(Translation, String)> {
        let (t, d) = read(iova, len).map_err(|e| setup("DMA")(fail_text(&e)))?;
        Ok((t, String::from_utf8_lossy(&d).into_owned()))
    };
    let (stale, stale_data) = read_text(IOVA + 0x10, HELLO.len())?;
    let _ = viommu.take_events();
    driver
        .invalidate(DID, 0, Some(IOVA), AM, true)
        .map_err(guest_err)?;
    let events = viommu.take_events();
    let forwarded = events
        .iter()
        .filter(|e| matches!(e, Event::Forwarded { .. }))
        .collect::<Vec<_>>();
    let before = host.stats();
    let (fresh, fresh_data) = read_text(IOVA + 0x10, REMAPPED.len())?;
    let rewalk = host.stats().since(&before);
    let mut lines = vec![
        String::new(),
        format!("8. The guest remaps IOVA {IOVA:#x} → GPA {GPA_NEW:#x} in its stage 1"),
        format!(
            "   before it invalidates: nic0 reads {stale_data:?} from GPA {} ({}): STALE",
            gpa_of(stale.hpa).map_or("?".into(), |g| format!("{g:#x}")),
            if stale.from_iotlb {
                "the IOTLB still holds the old translation"
            } else {
                "walked"
            }
        ),
        format!(
            "   the guest queues a PASID-based IOTLB invalidation (DID {DID}, PASID 0, {IOVA:#x}, {} page) and waits",
            1u64 << AM
        ),
    ];
    lines.extend(
        forwarded
            .iter()
            .map(|e| format!("   vIOMMU: {}", event_line(e))),
    );
    lines.push(format!(
        "   after: nic0 reads {fresh_data:?} from GPA {} (walked again: {} paging reads): FRESH",
        gpa_of(fresh.hpa).map_or("?".into(), |g| format!("{g:#x}")),
        rewalk.paging_reads()
    ));
    rep.record(
        "invalidation",
        json!({
            "stale": {"data": stale_data, "gpa": gpa_of(stale.hpa), "from_iotlb": stale.from_iotlb},
            "forwarded": forwarded.iter().map(|e| event_line(e)).collect::<Vec<_>>(),
            "forwarded_hwpt": nested,
            "fresh": {"data": fresh_data, "gpa": gpa_of(fresh.hpa), "from_iotlb": fresh.from_iotlb, "paging_reads": rewalk.paging_reads()},
        }),
        &lines,
    )?;

    // 9. The counters of the host unit over steps 6-8.
    let s = host.stats().since(&start);
    counters(rep, &s)?;
    Ok(())
}

fn fail_text(e: &DmaFail) -> String {
    match e {
        DmaFail::Fault(f) => f.to_string(),
        DmaFail::Abort(a) => format!("master abort at {a:#x}"),
    }
}

fn recording_text(f: Option<&Fault>) -> String {
    match f.map(|f| (f.recording, f.sid)) {
        Some((FaultRecording::Recorded { index }, sid)) => format!(
            "recorded in the guest unit's FRCD[{index}] with the guest's source id {}",
            bdf(sid)
        ),
        Some((other, _)) => format!("{other:?}"),
        None => "not reported (unknown device)".into(),
    }
}

fn translation_json(t: &Translation, gpa: Option<u64>) -> serde_json::Value {
    json!({"text": translation_line(t), "gpa": gpa, "kind": crate::explain::kind_name(t.kind),
           "page_size": t.page_size.bytes(), "from_iotlb": t.from_iotlb})
}

/// The counter block (also used by `trace`).
pub fn counters(rep: &mut Report<'_>, s: &Stats) -> Result<()> {
    let hits = s.iotlb_hits;
    let faults: Vec<String> = s
        .faults_by_reason
        .iter()
        .map(|(r, n)| format!("{} ({:#04x}) × {n}", r.name(), r.code()))
        .collect();
    let lines = vec![
        String::new(),
        "9. Host unit counters over steps 6-8".into(),
        format!(
            "   translations {} (ok {}), IOTLB served {}",
            s.translations, s.translations_ok, s.served_from_iotlb
        ),
        format!(
            "   walk references: first stage {}, stage 2 for first-stage tables {}, stage 2 for final addresses {} ({} in all)",
            s.fs_entry_reads,
            s.ss_reads_for_fs_tables,
            s.ss_reads_final,
            s.paging_reads()
        ),
        format!(
            "   A/D writes: first stage {} (by the erratum {}), stage 2 {}",
            s.fs_ad_writes, s.fs_ad_writes_by_erratum, s.ss_ad_writes
        ),
        format!(
            "   caches (hits/misses): IOTLB {}/{}, context {}/{}, PASID {}/{}, FS paging-structure {}/{}, SS paging-structure {}/{}",
            hits,
            s.iotlb_misses,
            s.context_cache_hits,
            s.context_cache_misses,
            s.pasid_cache_hits,
            s.pasid_cache_misses,
            s.fs_psc_hits,
            s.fs_psc_misses,
            s.ss_psc_hits,
            s.ss_psc_misses
        ),
        format!(
            "   faults by reason: {}",
            if faults.is_empty() {
                "none".to_string()
            } else {
                faults.join(", ")
            }
        ),
        format!("   invalidation descriptors processed: {}", s.invalidations),
    ];
    let mut fields = serde_json::Map::new();
    for (name, v) in s.counters() {
        fields.insert(name.into(), json!(v));
    }
    fields.insert(
        "faults_by_reason".into(),
        json!(
            s.faults_by_reason
                .iter()
                .map(|(r, n)| (r.name().to_string(), *n))
                .collect::<std::collections::BTreeMap<_, _>>()
        ),
    );
    rep.record("counters", serde_json::Value::Object(fields), &lines)?;
    Ok(())
}
