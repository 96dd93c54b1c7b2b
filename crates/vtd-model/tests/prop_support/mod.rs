//! Generators and shadow models shared by the property tests (`prop_*.rs`).
//!
//! A [`Scenario`] is plain data that proptest generates and shrinks: a second stage over a
//! small guest space (eight 2 MiB regions, each unmapped, one 2 MiB leaf, or 512 4 KiB
//! leaves with per-page rights and a per-region host permutation), first-stage tables in
//! a random pool of guest pages of the first two regions (some of which stage 2 maps
//! read-only, write-only or not at all), random first-stage mappings (4 KiB and 2 MiB,
//! into guest memory or beyond it) and random tweaks of first-stage rights. Building it
//! into a [`SparseMem`] is deterministic, so two memories built from one scenario are
//! identical.
//!
//! The shadow models answer without the model's code: which host address and rights
//! stage 2 gives a guest address ([`Scenario::ss_lookup`]), where a guest page is backed
//! whether or not stage 2 maps it ([`Scenario::backing`]), and what a first-stage walk of
//! an IOVA finds in memory ([`Scenario::reference_fs`]).
#![allow(dead_code)]

use std::cell::Cell;
use std::collections::BTreeSet;

use proptest::prelude::*;
use vtd_model::build::{Format, Leaf, PageTable, ScalableTables};
use vtd_model::mem::{PhysMem, SparseMem};
use vtd_model::request::{Access, Perms, Request};
use vtd_spec::addr::{PageSize, is_canonical, table_index};
use vtd_spec::context::LegacyContextEntry;
use vtd_spec::first_stage::FsEntry;
use vtd_spec::pasid::{Fspm, PasidEntry, PasidEntryHi, PasidEntryLo, Pgtt};
use vtd_spec::regs::{RtAddr, Ttm};
use vtd_spec::root::LegacyRootEntry;
use vtd_spec::second_stage::SsEntry;

/// The device every scenario sets up: bus 0, device 3, function 0.
pub const SID: u16 = 0x0018;
/// A second device on the same bus (legacy scenarios give it its own context entry).
pub const SID2: u16 = 0x0019;
/// Domain id of the second stage (nested and second-stage-only PASID entries).
pub const DID: u16 = 5;
/// Domain id of first-stage-only PASID entries.
pub const FS_DID: u16 = 6;
/// Domain id of pass-through PASID entries.
pub const PT_DID: u16 = 7;
/// PASIDs with an entry; requests without PASID use PASID 0 (no RID_PASID support).
pub const PASIDS: [u32; 3] = [0, 7, 0x1234];

/// Guest space: this many 2 MiB regions starting at GPA 0.
pub const REGIONS: usize = 8;
/// Size of one region.
pub const REGION: u64 = 2 << 20;
/// Bytes of guest space.
pub const GUEST_SIZE: u64 = REGIONS as u64 * REGION;
/// Host-physical base of the memory backing guest regions (permuted per scenario).
pub const HOST_GUEST_BASE: u64 = 0x40_0000_0000;
/// Guest pages per region.
pub const PAGES_PER_REGION: u64 = REGION / 4096;
/// Guest pages in the guest space.
pub const GUEST_PAGES: u64 = GUEST_SIZE / 4096;
/// Number of guest pages reserved for first-stage tables (enough for every mapping).
pub const TABLE_POOL: usize = 40;
/// First-stage tables live in the first this-many regions, which are always [`RegionSpec::Small`].
pub const TABLE_REGIONS: usize = 2;
/// At most this many first-stage mappings.
pub const MAX_MAPS: usize = 8;

/// Second-stage rights of a leaf or non-leaf entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rights {
    /// R=W=0: not present.
    None,
    /// R=1, W=0.
    ReadOnly,
    /// R=0, W=1.
    WriteOnly,
    /// R=W=1.
    ReadWrite,
}

impl Rights {
    pub fn read(self) -> bool {
        matches!(self, Rights::ReadOnly | Rights::ReadWrite)
    }

    pub fn write(self) -> bool {
        matches!(self, Rights::WriteOnly | Rights::ReadWrite)
    }

    pub fn perms(self) -> Perms {
        let mut p = Perms::empty();
        p.set(Perms::READ, self.read());
        p.set(Perms::WRITE, self.write());
        p
    }

    fn leaf(self) -> Leaf {
        Leaf {
            read: self.read(),
            write: self.write(),
            user: true,
            extra: 0,
        }
    }
}

/// Rights weighted towards read-write, with every other case present.
pub fn rights() -> impl Strategy<Value = Rights> {
    prop_oneof![
        5 => Just(Rights::ReadWrite),
        3 => Just(Rights::ReadOnly),
        1 => Just(Rights::WriteOnly),
        1 => Just(Rights::None),
    ]
}

/// How stage 2 maps one 2 MiB guest region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegionSpec {
    /// No entry at all.
    Unmapped,
    /// One 2 MiB leaf.
    Huge(Rights),
    /// A page table of 4 KiB leaves.
    Small {
        /// Rights of the non-leaf SS-PDE pointing at the page table.
        pde: Rights,
        /// Rights of every page without an override (`None`: page left unmapped).
        default: Rights,
        /// Guest page `i` of the region lives at host page `i ^ xor` of the region.
        xor: u16,
        /// (page within the region, rights); the last one for a page wins.
        overrides: Vec<(u16, Rights)>,
    },
}

/// A region of 4 KiB pages whose page table is mostly reachable.
fn small_region() -> impl Strategy<Value = RegionSpec> {
    (
        prop_oneof![12 => Just(Rights::ReadWrite), 1 => Just(Rights::ReadOnly), 1 => rights()],
        prop_oneof![3 => Just(Rights::ReadWrite), 2 => Just(Rights::ReadOnly), 2 => rights()],
        0u16..PAGES_PER_REGION as u16,
        prop::collection::vec((0u16..PAGES_PER_REGION as u16, rights()), 0..6),
    )
        .prop_map(|(pde, default, xor, overrides)| RegionSpec::Small {
            pde,
            default,
            xor,
            overrides,
        })
}

fn region_spec() -> impl Strategy<Value = RegionSpec> {
    prop_oneof![
        1 => Just(RegionSpec::Unmapped),
        2 => rights().prop_map(RegionSpec::Huge),
        5 => small_region(),
    ]
}

/// Where a first-stage leaf points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Guest page number (aligned down to the leaf size).
    Guest(u16),
    /// An address outside the guest space (beyond it, or beyond the stage-2 width).
    Wild(u64),
}

impl Target {
    fn gpa(self, size: PageSize) -> u64 {
        let raw = match self {
            Target::Guest(page) => page as u64 * 4096,
            Target::Wild(addr) => addr,
        };
        size.align_down(raw) & FsEntry::ADDR_MASK
    }
}

/// One first-stage mapping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FsMap {
    /// Table index per level, top (PML5) first; the top index is ignored with 4 levels.
    pub idx: [u16; 5],
    pub large: bool,
    pub target: Target,
    pub rw: bool,
    pub us: bool,
    /// Preset A (bit 0) and D (bit 1) in the leaf.
    pub preset_ad: u8,
}

impl FsMap {
    pub fn size(&self) -> PageSize {
        if self.large {
            PageSize::Size2M
        } else {
            PageSize::Size4K
        }
    }

    /// The mapping's IOVA for a first stage of `levels` levels (sign-extended, so a top
    /// index of 511 gives an upper-half canonical address).
    pub fn iova(&self, levels: u8) -> u64 {
        let mut raw = 0u64;
        for level in 1..=levels {
            let index = self.idx[5 - level as usize] as u64 & 0x1FF;
            raw |= index << (12 + 9 * (level as u32 - 1));
        }
        let raw = self.size().align_down(raw);
        let shift = 64 - (12 + 9 * levels as u32);
        (((raw << shift) as i64) >> shift) as u64
    }
}

fn fs_map() -> impl Strategy<Value = FsMap> {
    let top = prop_oneof![3 => Just(0u16), 1 => Just(1u16), 1 => Just(511u16)];
    let idx = (
        top.clone(),
        top,
        0u16..2,
        0u16..3,
        prop_oneof![3 => 0u16..4, 1 => Just(511u16)],
    )
        .prop_map(|(a, b, c, d, e)| [a, b, c, d, e]);
    let target = prop_oneof![
        8 => (0u16..GUEST_PAGES as u16).prop_map(Target::Guest),
        1 => prop_oneof![
            (0u64..64).prop_map(|p| GUEST_SIZE + p * 4096),
            Just(1u64 << 47),
            Just(1u64 << 48),
            Just(1u64 << 51),
            Just(0xFEE0_0000u64),
        ]
        .prop_map(Target::Wild),
    ];
    (
        idx,
        prop::bool::weighted(0.25),
        target,
        prop::bool::weighted(0.85),
        prop::bool::weighted(0.85),
        0u8..4,
    )
        .prop_map(|(idx, large, target, rw, us, preset_ad)| FsMap {
            idx,
            large,
            target,
            rw,
            us,
            preset_ad,
        })
}

/// A change to one first-stage entry on a mapping's path after the tables are built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FsTweak {
    pub map: usize,
    pub level: u8,
    pub clear_rw: bool,
    pub clear_us: bool,
    pub set_a: bool,
}

fn fs_tweak() -> impl Strategy<Value = FsTweak> {
    (
        0..MAX_MAPS,
        1u8..=5,
        prop::bool::weighted(0.3),
        prop::bool::weighted(0.3),
        any::<bool>(),
    )
        .prop_map(|(map, level, clear_rw, clear_us, set_a)| FsTweak {
            map,
            level,
            clear_rw,
            clear_us,
            set_a,
        })
}

/// Bits of the nested PASID entry that the scenario varies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PasidBits {
    pub ssade: bool,
    pub pwsnp: bool,
    pub sre: bool,
    pub wpe: bool,
    pub eafe: bool,
}

fn pasid_bits() -> impl Strategy<Value = PasidBits> {
    (
        any::<bool>(),
        prop::bool::weighted(0.9),
        prop::bool::weighted(0.7),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(ssade, pwsnp, sre, wpe, eafe)| PasidBits {
            ssade,
            pwsnp,
            sre,
            wpe,
            eafe,
        })
}

/// What the PASID entry of one PASID translates with (prop_caches varies it per PASID).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PasidKind {
    Nested,
    FirstStage,
    SecondStage,
    PassThrough,
    NotPresent,
    /// Present with a reserved bit set (SPT.3).
    Reserved,
}

/// A random nested-translation scenario.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scenario {
    /// Second-stage AW (2: 4 levels, 3: 5 levels).
    pub aw: u8,
    /// First-stage levels (4 or 5).
    pub fs_levels: u8,
    pub regions: Vec<RegionSpec>,
    /// Guest region `r` is backed by host region `host_perm[r]`.
    pub host_perm: Vec<u8>,
    /// Guest pages first-stage tables are allocated from, in order (inside the first
    /// [`TABLE_REGIONS`] regions).
    pub table_pool: Vec<u16>,
    /// (index into the pool, stage-2 rights) for table-pool pages that stage 2 does not
    /// map read-write; the last one for an index wins. They override the region's rights.
    pub table_rights: Vec<(usize, Rights)>,
    pub maps: Vec<FsMap>,
    pub tweaks: Vec<FsTweak>,
    pub pe: PasidBits,
    /// Kind of the PASID entry of each of [`PASIDS`].
    pub kinds: [PasidKind; 3],
}

/// A scenario whose every PASID entry is nested.
pub fn nested_scenario() -> impl Strategy<Value = Scenario> {
    scenario(Just([PasidKind::Nested; 3]))
}

/// A scenario with PASID entries of random kinds (nested, first stage, second stage, ...).
pub fn mixed_scenario() -> impl Strategy<Value = Scenario> {
    let kind = prop_oneof![
        4 => Just(PasidKind::Nested),
        2 => Just(PasidKind::FirstStage),
        2 => Just(PasidKind::SecondStage),
        1 => Just(PasidKind::PassThrough),
        1 => Just(PasidKind::NotPresent),
        1 => Just(PasidKind::Reserved),
    ];
    scenario([kind.clone(), kind.clone(), kind])
}

fn scenario(kinds: impl Strategy<Value = [PasidKind; 3]>) -> impl Strategy<Value = Scenario> {
    (
        prop_oneof![3 => Just(2u8), 1 => Just(3u8)],
        prop_oneof![3 => Just(4u8), 1 => Just(5u8)],
        (
            prop::collection::vec(small_region(), TABLE_REGIONS),
            prop::collection::vec(region_spec(), REGIONS - TABLE_REGIONS),
        )
            .prop_map(|(mut a, b)| {
                a.extend(b);
                a
            }),
        Just((0..REGIONS as u8).collect::<Vec<u8>>()).prop_shuffle(),
        (
            prop::collection::btree_set(
                0u16..(TABLE_REGIONS as u64 * PAGES_PER_REGION) as u16,
                TABLE_POOL,
            )
            .prop_map(|s| s.into_iter().collect::<Vec<u16>>())
            .prop_shuffle(),
            // The first tables allocated are the ones every walk uses.
            prop_oneof![
                1 => Just(Vec::new()),
                2 => prop::collection::vec(
                    (
                        prop_oneof![1 => 0usize..4, 1 => 0usize..16],
                        prop_oneof![
                            3 => Just(Rights::ReadOnly),
                            1 => Just(Rights::WriteOnly),
                            1 => Just(Rights::None),
                        ],
                    ),
                    1..3,
                ),
            ],
        ),
        prop::collection::vec(fs_map(), 1..=MAX_MAPS),
        prop::collection::vec(fs_tweak(), 0..4),
        pasid_bits(),
        kinds,
    )
        .prop_map(
            |(
                aw,
                fs_levels,
                regions,
                host_perm,
                (table_pool, table_rights),
                maps,
                tweaks,
                pe,
                kinds,
            )| Scenario {
                aw,
                fs_levels,
                regions,
                host_perm,
                table_pool,
                table_rights,
                maps,
                tweaks,
                pe,
                kinds,
            },
        )
}

/// What stage 2 gives one guest address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SsMapping {
    /// Host-physical address of the guest address.
    pub hpa: u64,
    /// Rights ANDed over the levels (R/W only; no execute).
    pub perms: Perms,
    pub size: PageSize,
}

/// What a first-stage walk of an IOVA finds (from the tables in memory).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FsWalk {
    /// Output guest-physical address of the IOVA.
    pub gpa: u64,
    pub size: PageSize,
    /// R/W and U/S ANDed over every entry of the path.
    pub rw: bool,
    pub us: bool,
    /// GPAs of the tables on the path, top first.
    pub tables: Vec<u64>,
}

impl FsWalk {
    /// Rights the first stage grants a request (§4.4): reads need U/S for user requests;
    /// writes need U/S and R/W for user requests, and R/W for supervisor requests only
    /// with WPE=1. Never execute (the PASID entries have no ERE).
    pub fn perms(&self, privileged: bool, wpe: bool) -> Perms {
        let read = privileged || self.us;
        let write = if privileged {
            !wpe || self.rw
        } else {
            self.us && self.rw
        };
        let mut p = Perms::empty();
        p.set(Perms::READ, read);
        p.set(Perms::WRITE, write);
        p
    }
}

/// Physical layout of a built scenario.
#[derive(Clone, Debug)]
pub struct Layout {
    pub rtaddr: RtAddr,
    pub fs_root_gpa: u64,
    pub ss_root: u64,
    /// Host pages of second-stage tables.
    pub ss_tables: BTreeSet<u64>,
    /// Pages `[ALLOC_BASE, alloc_end)` were handed out by the SparseMem allocator (root,
    /// context, PASID and second-stage tables, first-stage-only tables).
    pub alloc_end: u64,
}

/// Where [`SparseMem::new`] starts allocating.
pub const ALLOC_BASE: u64 = 0x10_0000;

impl Scenario {
    /// Rights of page `i` of small region `r`, and whether the builder writes a leaf for
    /// it: a table-pool page's own rights, else the region's last override for the page,
    /// else the region's default (no leaf for a default of [`Rights::None`]).
    fn page_rights(&self, r: usize, i: u64) -> (Rights, bool) {
        let gpage = r as u64 * PAGES_PER_REGION + i;
        if let Some(k) = self.table_pool.iter().position(|&p| p as u64 == gpage) {
            let rights = self.table_rights.iter().rev().find(|(i, _)| *i == k);
            return (rights.map_or(Rights::ReadWrite, |&(_, r)| r), true);
        }
        let RegionSpec::Small {
            default, overrides, ..
        } = &self.regions[r]
        else {
            return (Rights::None, false);
        };
        match overrides.iter().rev().find(|(p, _)| *p as u64 == i) {
            Some(&(_, rights)) => (rights, true),
            None => (*default, *default != Rights::None),
        }
    }

    fn region_host_base(&self, r: usize) -> u64 {
        HOST_GUEST_BASE + self.host_perm[r] as u64 * REGION
    }

    /// Host address backing guest address `gpa`, whether or not stage 2 maps it; `None`
    /// outside the guest space.
    pub fn backing(&self, gpa: u64) -> Option<u64> {
        if gpa >= GUEST_SIZE {
            return None;
        }
        let r = (gpa / REGION) as usize;
        let off = gpa % REGION;
        let off = match &self.regions[r] {
            RegionSpec::Small { xor, .. } => ((off >> 12) ^ *xor as u64) << 12 | (off & 0xFFF),
            _ => off,
        };
        Some(self.region_host_base(r) + off)
    }

    /// The shadow of stage 2: `None` when some entry on the path is not present.
    pub fn ss_lookup(&self, gpa: u64) -> Option<SsMapping> {
        if gpa >= GUEST_SIZE {
            return None;
        }
        let r = (gpa / REGION) as usize;
        let (rights, size) = match &self.regions[r] {
            RegionSpec::Unmapped => return None,
            RegionSpec::Huge(rights) => (rights.perms(), PageSize::Size2M),
            RegionSpec::Small { pde, .. } => {
                let page = (gpa % REGION) / 4096;
                let (leaf, _) = self.page_rights(r, page);
                if *pde == Rights::None || leaf == Rights::None {
                    return None;
                }
                (pde.perms() & leaf.perms(), PageSize::Size4K)
            }
        };
        if rights.is_empty() && size == PageSize::Size2M {
            // A 2 MiB leaf with R=W=0 is not present.
            return None;
        }
        Some(SsMapping {
            hpa: self.backing(gpa)?,
            perms: rights,
            size,
        })
    }

    /// Walk the first stage of `iova` in `mem` as §4 describes, reading tables through
    /// [`Scenario::backing`]. `None` for a non-canonical IOVA or a not-present entry.
    pub fn reference_fs(&self, mem: &impl PhysMem, iova: u64) -> Option<FsWalk> {
        if !is_canonical(iova, self.fs_levels) {
            return None;
        }
        let mut table = self.table_pool[0] as u64 * 4096;
        let (mut rw, mut us) = (true, true);
        let mut tables = Vec::new();
        for level in (1..=self.fs_levels).rev() {
            tables.push(table);
            let value = mem
                .read_u64(self.backing(table)? + 8 * table_index(iova, level))
                .ok()?;
            let e = FsEntry::from_bits(value);
            if !e.p() {
                return None;
            }
            rw &= e.rw();
            us &= e.us();
            if level == 1 || (level <= 3 && e.ps()) {
                let size = PageSize::from_level(level)?;
                return Some(FsWalk {
                    gpa: e.frame_addr(size) | (iova & size.offset_mask()),
                    size,
                    rw,
                    us,
                    tables,
                });
            }
            table = e.table_addr();
        }
        None
    }

    /// Host pages backing the first-stage table pool.
    pub fn table_pool_hpas(&self) -> Vec<u64> {
        self.table_pool
            .iter()
            .filter_map(|&p| self.backing(p as u64 * 4096))
            .collect()
    }

    /// The PASID entry for `kind`.
    fn pasid_entry(
        &self,
        kind: PasidKind,
        ss_root: u64,
        fs_root: u64,
        fs_only_root: u64,
    ) -> PasidEntry {
        let fspm = if self.fs_levels == 5 {
            Fspm::Level5
        } else {
            Fspm::Level4
        };
        let pe = self.pe;
        let lo = PasidEntryLo::new()
            .with_p(true)
            .with_aw(self.aw)
            .with_ssptptr(ss_root >> 12)
            .with_did(DID)
            .with_pwsnp(pe.pwsnp)
            .with_ssade(pe.ssade);
        let hi = PasidEntryHi::new()
            .with_fspm(fspm)
            .with_fsptptr(fs_root >> 12)
            .with_sre(pe.sre)
            .with_wpe(pe.wpe)
            .with_eafe(pe.eafe);
        let (lo, hi) = match kind {
            PasidKind::Nested => (lo.with_pgtt(Pgtt::Nested), hi),
            PasidKind::FirstStage => (
                lo.with_pgtt(Pgtt::FirstStage).with_did(FS_DID),
                hi.with_fsptptr(fs_only_root >> 12),
            ),
            PasidKind::SecondStage => (lo.with_pgtt(Pgtt::SecondStage), hi),
            PasidKind::PassThrough => (lo.with_pgtt(Pgtt::PassThrough).with_did(PT_DID), hi),
            PasidKind::NotPresent => (lo.with_p(false).with_pgtt(Pgtt::Nested), hi),
            // Bit 10 of the low half is always reserved.
            PasidKind::Reserved => (
                PasidEntryLo::from_bits(lo.with_pgtt(Pgtt::Nested).into_bits() | 1 << 10),
                hi,
            ),
        };
        PasidEntry {
            lo,
            hi,
            rsvd: [0, 0],
        }
    }

    /// Write the scenario's tables into `mem` (scalable mode). Deterministic: the same
    /// scenario gives byte-identical memories.
    pub fn build(&self, mem: &SparseMem) -> Layout {
        let tables = ScalableTables::new(mem, mem);
        tables.add_device(SID, 0).expect("device");
        for hpa in self.table_pool_hpas() {
            mem.back(hpa, 4096);
        }
        let (ss_root, ss_tables) = self.build_ss(mem);
        let fs_root = self.build_fs(mem);
        let fs_only_root = self.build_fs_only(mem);
        for (&pasid, &kind) in PASIDS.iter().zip(&self.kinds) {
            let entry = self.pasid_entry(kind, ss_root, fs_root, fs_only_root);
            tables
                .set_pasid_entry(SID, pasid, entry)
                .expect("PASID entry");
        }
        Layout {
            rtaddr: tables.rtaddr(),
            fs_root_gpa: fs_root,
            ss_root,
            ss_tables,
            alloc_end: mem.alloc_page(),
        }
    }

    /// Write the scenario's second stage into `mem` behind a legacy root table: `SID`
    /// translates through it with TT `tt` (0, 1 or 2) and `SID2` with TT 0.
    pub fn build_legacy(&self, mem: &SparseMem, tt: u8) -> Layout {
        let root = mem.alloc_page();
        let ctx = mem.alloc_page();
        for hpa in self.table_pool_hpas() {
            mem.back(hpa, 4096);
        }
        let (ss_root, ss_tables) = self.build_ss(mem);
        let root_entry = LegacyRootEntry::new().with_p(true).with_ctp(ctx >> 12);
        mem.write_u128(root, root_entry.into_bits())
            .expect("root entry");
        for (sid, tt) in [(SID, tt), (SID2, 0)] {
            let ce = LegacyContextEntry::new()
                .with_p(true)
                .with_tt(vtd_spec::context::LegacyTt::from_bits(tt))
                .with_slptptr(ss_root >> 12)
                .with_aw(self.aw)
                .with_did(DID);
            mem.write_u128(ctx + (sid & 0xFF) as u64 * 16, ce.into_bits())
                .expect("context entry");
        }
        Layout {
            rtaddr: RtAddr::from_table(root, Ttm::Legacy),
            fs_root_gpa: 0,
            ss_root,
            ss_tables,
            alloc_end: mem.alloc_page(),
        }
    }

    fn build_ss(&self, mem: &SparseMem) -> (u64, BTreeSet<u64>) {
        let levels = vtd_spec::addr::ss_levels(self.aw);
        let mut ss = PageTable::physical(mem, mem, Format::SecondStage, levels);
        for (r, region) in self.regions.iter().enumerate() {
            let gbase = r as u64 * REGION;
            match region {
                RegionSpec::Unmapped => {}
                RegionSpec::Huge(rights) => {
                    let host = self.region_host_base(r);
                    ss.map(gbase, host, PageSize::Size2M, rights.leaf())
                        .expect("2M stage-2 leaf");
                }
                RegionSpec::Small { pde, .. } => {
                    for i in 0..PAGES_PER_REGION {
                        let (rights, write) = self.page_rights(r, i);
                        if write {
                            let gpa = gbase + i * 4096;
                            let host = self.backing(gpa).expect("inside guest space");
                            ss.map(gpa, host, PageSize::Size4K, rights.leaf())
                                .expect("4K stage-2 leaf");
                        }
                    }
                    let path = ss.path(gbase).expect("stage-2 path");
                    if let Some(&(2, addr, value)) = path.iter().find(|(l, _, _)| *l == 2)
                        && SsEntry::from_bits(value).present()
                        && value & (1 << 7) == 0
                    {
                        let bits = (value & !3) | pde.read() as u64 | (pde.write() as u64) << 1;
                        mem.write_u64(addr, bits).expect("SS-PDE");
                    }
                }
            }
        }
        let mut tables = BTreeSet::new();
        for r in 0..REGIONS as u64 {
            tables.extend(ss.tables_on_path(r * REGION).expect("stage-2 tables"));
        }
        (ss.root(), tables)
    }

    /// First-stage tables in guest memory (addressed by GPA); returns the root GPA.
    fn build_fs(&self, mem: &SparseMem) -> u64 {
        let next = Cell::new(0usize);
        let pool = &self.table_pool;
        let alloc = || {
            let i = next.get();
            next.set(i + 1);
            pool[i] as u64 * 4096
        };
        let to_phys = |gpa: u64| self.backing(gpa).expect("pool pages are guest pages");
        let mut fs = PageTable::new(mem, Format::FirstStage, self.fs_levels, alloc, to_phys);
        self.fill_fs(mem, &mut fs);
        fs.root()
    }

    /// The same first-stage mappings in host memory for PGTT=001b (outputs are host
    /// addresses equal to the nested GPAs).
    fn build_fs_only(&self, mem: &SparseMem) -> u64 {
        let mut fs = PageTable::physical(mem, mem, Format::FirstStage, self.fs_levels);
        self.fill_fs(mem, &mut fs);
        fs.root()
    }

    fn fill_fs(&self, mem: &SparseMem, fs: &mut PageTable<'_, SparseMem>) {
        for m in &self.maps {
            let size = m.size();
            let leaf = Leaf {
                read: true,
                write: m.rw,
                user: m.us,
                extra: (m.preset_ad as u64 & 1) * FsEntry::A
                    + (m.preset_ad as u64 >> 1) * FsEntry::D,
            };
            // A mapping under an existing larger page is skipped; the walks read memory.
            let _ = fs.map(m.iova(self.fs_levels), m.target.gpa(size), size, leaf);
        }
        for t in &self.tweaks {
            let Some(m) = self.maps.get(t.map % self.maps.len()) else {
                continue;
            };
            let path = fs.path(m.iova(self.fs_levels)).expect("first-stage path");
            if let Some(&(_, addr, value)) = path.iter().find(|(l, _, _)| *l == t.level)
                && FsEntry::from_bits(value).p()
            {
                let mut v = value;
                if t.clear_rw {
                    v &= !2;
                }
                if t.clear_us {
                    v &= !4;
                }
                if t.set_a {
                    v |= FsEntry::A;
                }
                mem.write_u64(addr, v).expect("tweak");
            }
        }
    }

    /// Host pages no nested translation may write: every page the allocator handed out
    /// (root, context and PASID tables, the unused first-stage-only tables, and the
    /// stage-2 tables unless SSADE lets hardware set their A/D flags), and every
    /// first-stage table page that stage 2 does not map readable and writable (an A/D
    /// update is an atomic read-modify-write needing both, §6.1 step 6).
    pub fn protected_pages(&self, layout: &Layout) -> Vec<u64> {
        let mut pages: Vec<u64> = (ALLOC_BASE..layout.alloc_end)
            .step_by(4096)
            .filter(|p| !(self.pe.ssade && layout.ss_tables.contains(p)))
            .collect();
        for &page in &self.table_pool {
            let gpa = page as u64 * 4096;
            let writable = self
                .ss_lookup(gpa)
                .is_some_and(|m| m.perms.contains(Perms::READ | Perms::WRITE));
            if !writable {
                pages.push(self.backing(gpa).expect("guest page"));
            }
        }
        pages
    }
}

/// Copy of the bytes of `pages` (unbacked pages read as `None`).
pub fn snapshot(mem: &impl PhysMem, pages: &[u64]) -> Vec<Option<Vec<u8>>> {
    pages
        .iter()
        .map(|&p| {
            let mut buf = vec![0u8; 4096];
            mem.read_bytes(p, &mut buf).ok().map(|_| buf)
        })
        .collect()
}

/// Where a request points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReqTarget {
    /// Mapping `index` (modulo the number of mappings) plus an offset inside its page.
    Mapped(usize, u32),
    /// A guest address (for second-stage-only and pass-through PASIDs).
    Guest(u32),
    /// Any address.
    Raw(u64),
}

/// A request of a scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReqSpec {
    pub target: ReqTarget,
    pub access: Access,
    pub privileged: bool,
    pub execute: bool,
    pub len: u32,
    /// 0: no PASID; i: `PASIDS[i - 1]`.
    pub pasid: usize,
    /// Request from [`SID2`] instead of [`SID`].
    pub other_sid: bool,
}

impl ReqSpec {
    pub fn request(&self, scn: &Scenario) -> Request {
        let addr = match self.target {
            ReqTarget::Mapped(i, off) => {
                let m = &scn.maps[i % scn.maps.len()];
                m.iova(scn.fs_levels) + (off as u64 & m.size().offset_mask())
            }
            ReqTarget::Guest(off) => off as u64 % GUEST_SIZE,
            ReqTarget::Raw(a) => a,
        };
        let mut req = Request::new(if self.other_sid { SID2 } else { SID }, addr, self.access)
            .with_len(self.len);
        req.privileged = self.privileged;
        req.execute = self.execute;
        if self.pasid > 0 {
            req = req.with_pasid(PASIDS[self.pasid - 1]);
        }
        req
    }
}

pub fn access() -> impl Strategy<Value = Access> {
    prop_oneof![
        Just(Access::Read),
        Just(Access::Write),
        Just(Access::AtomicRmw)
    ]
}

/// Requests mostly at mapped IOVAs, some at guest addresses or anywhere; from [`SID2`]
/// with probability `other_sid`.
pub fn req_spec(other_sid: f64) -> impl Strategy<Value = ReqSpec> {
    let target = prop_oneof![
        8 => (0..MAX_MAPS, any::<u32>()).prop_map(|(i, o)| ReqTarget::Mapped(i, o)),
        2 => (0..GUEST_SIZE as u32).prop_map(ReqTarget::Guest),
        1 => any::<u64>().prop_map(ReqTarget::Raw),
    ];
    (
        target,
        access(),
        prop::bool::weighted(0.3),
        prop::bool::weighted(0.05),
        prop_oneof![1 => Just(0u32), 6 => 1u32..=8],
        0usize..=PASIDS.len(),
        prop::bool::weighted(other_sid),
    )
        .prop_map(
            |(target, access, privileged, execute, len, pasid, other_sid)| ReqSpec {
                target,
                access,
                privileged,
                execute,
                len,
                pasid,
                other_sid,
            },
        )
}

/// True when `perms` let `req` make its access: the access's read/write needs, except that
/// a zero-length read needs only read or write when CAP.ZLR is set.
pub fn perms_allow(perms: Perms, req: &Request, zlr: bool) -> bool {
    if zlr && req.access == Access::Read && req.len == 0 {
        perms.intersects(Perms::READ | Perms::WRITE)
    } else {
        perms.allow(req.access)
    }
}
