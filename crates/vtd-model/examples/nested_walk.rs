//! Print one nested (PGTT=011b) translation step by step: the two-dimensional walk of a
//! 4-level first stage over a 4-level second stage, then the same DMA served by the
//! IOTLB, then the SPR17 erratum writing into a read-only stage-2 page.
//!
//! Run with `cargo run --release -p vtd-model --example nested_walk`.

use vtd_model::build::{
    Format, Leaf, PageTable, ScalableTables, enable_translation, nested_pasid_entry,
};
use vtd_model::config::UnitConfig;
use vtd_model::mem::SparseMem;
use vtd_model::request::Request;
use vtd_model::trace::{SsPurpose, WalkEvent, WalkRecorder};
use vtd_model::{PhysMem, Unit};
use vtd_spec::addr::PageSize;
use vtd_spec::pasid::Fspm;

const GUEST_BASE: u64 = 0x10_0000_0000;
const SID: u16 = 0x0018;
const IOVA: u64 = 0x7_4020_3000;
const GPA: u64 = 0x20_5000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let unit = Unit::new(UnitConfig::sapphire_rapids(), SparseMem::new())?;
    let mem = unit.mem();
    mem.back(GUEST_BASE, 16 << 20);

    // Host side: root/context/PASID tables and a second stage mapping guest memory.
    let tables = ScalableTables::new(mem, mem);
    tables.add_device(SID, 0)?;
    let mut ss = PageTable::physical(mem, mem, Format::SecondStage, 4);
    ss.map_range(
        0,
        GUEST_BASE,
        16 << 20,
        PageSize::Size4K,
        Leaf::read_write(),
    )?;

    // Guest side: a first stage whose tables live in guest memory, named by GPA.
    let next = std::cell::Cell::new(0x80_0000u64);
    let mut fs = PageTable::new(
        mem,
        Format::FirstStage,
        4,
        || {
            let gpa = next.get();
            next.set(gpa + 4096);
            gpa
        },
        |gpa| gpa + GUEST_BASE,
    );
    fs.map(IOVA, GPA, PageSize::Size4K, Leaf::read_write())?;

    let entry = nested_pasid_entry(ss.root(), fs.root(), Fspm::Level4, 5, 2);
    tables.set_pasid_entry(SID, 0, entry)?;
    enable_translation(&unit, tables.rtaddr())?;

    println!(
        "Nested translation of a DMA write to IOVA {IOVA:#x} from {SID:#06x} (no PASID → RID_PASID 0)\n"
    );
    let req = Request::write(SID, IOVA);
    let mut walk = WalkRecorder::default();
    unit.explain(&req, &mut walk)?;
    for event in &walk.events {
        print_event(event);
    }
    println!(
        "\n{} paging-structure reads (§6.2: 4 first-stage + 16 stage-2 for tables + 4 stage-2 for the page)\n",
        walk.paging_reads()
    );

    let t = unit.translate(&req)?;
    let again = unit.translate(&req)?;
    println!(
        "translate: HPA {:#x} via GPA {:#x}, {} page, rights {:?}",
        t.hpa,
        t.gpa.unwrap_or(0),
        t.page_size.name(),
        t.perms
    );
    println!("again:     served from the IOTLB = {}\n", again.from_iotlb);

    // The erratum: stage 2 maps the page holding the first-stage top-level table
    // read-only, and the guest cleared the A bit of its top-level entry.
    ss.update_leaf(fs.root(), |v| v & !2)?;
    let root_entry_addr = fs.path(IOVA)?[0].1;
    mem.write_u64(root_entry_addr, mem.read_u64(root_entry_addr)? & !(1 << 5))?;
    unit.invalidate(vtd_model::invalidation::Invalidation::Everything);
    let before = unit.stats().fs_ad_writes_by_erratum;
    unit.translate(&req)?;
    println!(
        "SPR17: stage 2 maps GPA {:#x} (first-stage PML4) read-only, yet the walk set A there: {} write(s) by the erratum",
        fs.root(),
        unit.stats().fs_ad_writes_by_erratum - before
    );
    println!(
        "        with the erratum off this is fault SFS.8 (0x77) — why Linux refuses read-only nest-parent mappings."
    );
    Ok(())
}

fn print_event(event: &WalkEvent) {
    match event {
        WalkEvent::RootEntry { addr, value } => {
            println!("  root entry      @ {addr:#014x} = {value:#034x}")
        }
        WalkEvent::ContextEntry { addr, value } => {
            println!("  context entry   @ {addr:#014x} = {value:#034x}")
        }
        WalkEvent::PasidDirEntry { addr, value } => {
            println!("  PASID dir entry @ {addr:#014x} = {value:#018x}")
        }
        WalkEvent::PasidEntry { addr, pasid, entry } => println!(
            "  PASID entry {pasid:<3} @ {addr:#014x}: PGTT={:?} DID={} FSPTPTR(GPA)={:#x} SSPTPTR={:#x}",
            entry.lo.pgtt(),
            entry.lo.did(),
            entry.fs_table(),
            entry.ss_table()
        ),
        WalkEvent::SecondStageEntry {
            purpose,
            level,
            input,
            addr,
            value,
            leaf,
        } => {
            let why = match purpose {
                SsPurpose::FirstStageTable { fs_level } => {
                    format!("stage 2 for FS L{fs_level} table")
                }
                SsPurpose::Final => "stage 2 for the page".to_string(),
            };
            println!(
                "      {why:<26} GPA {input:#012x} SS L{level} @ {addr:#014x} = {value:#018x}{}",
                if *leaf { " (leaf)" } else { "" }
            );
        }
        WalkEvent::FirstStageEntry {
            level,
            table,
            addr,
            value,
            leaf,
        } => println!(
            "    FS L{level} table GPA {table:#010x} entry @ {addr:#014x} = {value:#018x}{}",
            if *leaf { " (leaf)" } else { "" }
        ),
        WalkEvent::AdUpdate {
            first_stage,
            level,
            addr,
            old,
            new,
            by_erratum,
        } => println!(
            "    {} L{level} A/D update @ {addr:#014x}: {old:#x} -> {new:#x}{}",
            if *first_stage { "FS" } else { "SS" },
            if *by_erratum { " (SPR17 erratum)" } else { "" }
        ),
        WalkEvent::Cache { cache, hit } => {
            println!("  {cache:?} cache {}", if *hit { "hit" } else { "miss" })
        }
        WalkEvent::Done(Ok(t)) => println!(
            "  => HPA {:#x} ({:?}, {} page)",
            t.hpa,
            t.kind,
            t.page_size.name()
        ),
        WalkEvent::Done(Err(f)) => println!("  => fault {f}"),
    }
}
