//! A nested-translation fixture shared by the integration tests: one scalable-mode unit,
//! one device, a second stage that maps guest memory at a fixed offset, and a first stage
//! whose tables live in guest memory.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};

use vtd_model::build::{
    Format, Leaf, PageTable, ScalableTables, enable_translation, nested_pasid_entry,
};
use vtd_model::cache::CacheConfig;
use vtd_model::config::UnitConfig;
use vtd_model::mem::{PhysMem, SparseMem};
use vtd_model::unit::Unit;
use vtd_spec::addr::PageSize;
use vtd_spec::pasid::{Fspm, PasidEntry};

/// Guest-physical address `g` lives at host-physical `g + GUEST_BASE`.
pub const GUEST_BASE: u64 = 0x10_0000_0000;
/// Size of guest memory backed and mapped by the second stage.
pub const GUEST_SIZE: u64 = 64 << 20;
/// The device under test: bus 0, device 3, function 0.
pub const SID: u16 = 0x0018;
/// The PASID used for requests with PASID.
pub const PASID: u32 = 7;
/// Domain id of the nested PASID entry.
pub const DID: u16 = 5;
/// Guest-physical start of the page-table pool (first-stage tables).
pub const GUEST_TABLES: u64 = 0x0100_0000;

/// A unit with one nested device.
pub struct Nested {
    pub unit: Unit<SparseMem>,
    pub root: u64,
    pub ss_root: u64,
    pub fs_root_gpa: u64,
    next_guest_table: AtomicU64,
}

impl Nested {
    /// Default unit (Sapphire Rapids-like, erratum off), caches off.
    pub fn new() -> Self {
        Self::with_config(UnitConfig {
            caches: CacheConfig::disabled(),
            ..UnitConfig::default()
        })
    }

    /// `config`, with 4-level first stage over 4-level second stage.
    pub fn with_config(config: UnitConfig) -> Self {
        Self::build(config, 4, 2)
    }

    /// `config` with `fs_levels` first-stage levels and second-stage AW `aw`.
    pub fn build(config: UnitConfig, fs_levels: u8, aw: u8) -> Self {
        let mem = SparseMem::new();
        mem.back(GUEST_BASE, GUEST_SIZE);
        let unit = Unit::new(config, mem).expect("valid config");
        let next = AtomicU64::new(GUEST_TABLES);
        let (root, ss_root, fs_root_gpa) = {
            let mem = unit.mem();
            let tables = ScalableTables::new(mem, mem);
            tables.add_device(SID, 0).unwrap();
            let mut ss =
                PageTable::physical(mem, mem, Format::SecondStage, vtd_spec::addr::ss_levels(aw));
            ss.map_range(
                0,
                GUEST_BASE,
                GUEST_SIZE,
                PageSize::Size4K,
                Leaf::read_write(),
            )
            .unwrap();
            let fs_root_gpa = guest_table(mem, &next, fs_levels).root();
            let entry = nested_entry(ss.root(), fs_root_gpa, fs_levels, aw);
            tables.set_pasid_entry(SID, 0, entry).unwrap();
            tables.set_pasid_entry(SID, PASID, entry).unwrap();
            enable_translation(&unit, tables.rtaddr()).unwrap();
            (tables.root(), ss.root(), fs_root_gpa)
        };
        Self {
            unit,
            root,
            ss_root,
            fs_root_gpa,
            next_guest_table: next,
        }
    }

    pub fn mem(&self) -> &SparseMem {
        self.unit.mem()
    }

    /// The first-stage table (tables in guest memory, addressed by GPA).
    pub fn fs(&self) -> PageTable<'_, SparseMem> {
        self.fs_at(self.fs_root_gpa)
    }

    /// The first-stage table whose root is at `root_gpa` (tables in guest memory).
    pub fn fs_at(&self, root_gpa: u64) -> PageTable<'_, SparseMem> {
        let levels = self.pasid_entry(0).hi.fspm().levels().unwrap_or(4);
        let next = &self.next_guest_table;
        PageTable::open(
            self.mem(),
            Format::FirstStage,
            levels,
            root_gpa,
            move || next.fetch_add(4096, Ordering::Relaxed),
            |gpa| gpa + GUEST_BASE,
        )
    }

    /// A new, empty first-stage table from the guest table pool; returns its root GPA.
    pub fn new_first_stage(&self) -> u64 {
        let levels = self.pasid_entry(0).hi.fspm().levels().unwrap_or(4);
        guest_table(self.mem(), &self.next_guest_table, levels).root()
    }

    /// The second-stage table.
    pub fn ss(&self) -> PageTable<'_, SparseMem> {
        let mem = self.mem();
        let aw = self.pasid_entry(0).lo.aw();
        PageTable::open_physical(
            mem,
            mem,
            Format::SecondStage,
            vtd_spec::addr::ss_levels(aw),
            self.ss_root,
        )
    }

    pub fn tables(&self) -> ScalableTables<'_, SparseMem, SparseMem> {
        ScalableTables::with_root(self.mem(), self.mem(), self.root)
    }

    pub fn pasid_entry(&self, pasid: u32) -> PasidEntry {
        self.tables().pasid_entry(SID, pasid).unwrap()
    }

    /// Rewrite the PASID entry of `pasid` with `f(old)`.
    pub fn update_pasid_entry(&self, pasid: u32, f: impl FnOnce(PasidEntry) -> PasidEntry) {
        let e = f(self.pasid_entry(pasid));
        self.tables().set_pasid_entry(SID, pasid, e).unwrap();
    }

    /// Map IOVA `iova` to GPA `gpa` in the first stage.
    pub fn map(&self, iova: u64, gpa: u64, size: PageSize, leaf: Leaf) {
        self.fs().map(iova, gpa, size, leaf).unwrap();
    }

    /// Read the 64-bit word at guest-physical `gpa`.
    pub fn read_guest(&self, gpa: u64) -> u64 {
        self.mem().read_u64(gpa + GUEST_BASE).unwrap()
    }
}

fn guest_table<'a>(
    mem: &'a SparseMem,
    next: &'a AtomicU64,
    levels: u8,
) -> PageTable<'a, SparseMem> {
    let alloc = move || next.fetch_add(4096, Ordering::Relaxed);
    PageTable::new(mem, Format::FirstStage, levels, alloc, |gpa| {
        gpa + GUEST_BASE
    })
}

/// A nested PASID entry: PGTT=011b, PWSNP=1, DID [`DID`], FSPM from `fs_levels`.
pub fn nested_entry(ss_root: u64, fs_root_gpa: u64, fs_levels: u8, aw: u8) -> PasidEntry {
    let fspm = if fs_levels == 5 {
        Fspm::Level5
    } else {
        Fspm::Level4
    };
    nested_pasid_entry(ss_root, fs_root_gpa, fspm, DID, aw)
}
