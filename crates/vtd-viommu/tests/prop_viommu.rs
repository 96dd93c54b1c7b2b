//! Property tests of the vIOMMU on the simulated kernel, one invariant each:
//!
//! - DMA by an assigned device never reaches host memory outside the guest's RAM: what
//!   succeeds lands at the GPA both stages say, ROM and unmapped GPAs fault, and no ROM
//!   byte ever changes.
//! - Garbage from the guest (tables, registers, descriptors) neither panics the VMM nor
//!   lets DMA out of guest RAM (assigned or emulated), and the host attachment stays what
//!   the VMM recorded.
//! - Shadowing converges: after each properly invalidated PASID-entry change the host
//!   attachment is what the guest's entry says, and no stale nested HWPT stays allocated
//!   beyond the ones the VMM keeps to retry, also when the host refuses an allocation,
//!   attach, detach or destroy on the way; the next invalidation or the drop frees those.
//! - Forwarding is complete: after a stage-1 change and the right invalidation, the next
//!   DMA uses the new mapping (or faults, if the host refused to flush).
//!
//! The VMM's files are the simulated kernel's behind a wrapper that fails chosen ioctls
//! (`common::Faults`). Case counts are modest because CI time is tight; `PROPTEST_CASES`
//! overrides them.

mod common;

use common::{GUEST_SID, GUEST_SSD_SID, Setup, TABLE_POOL, setup_with};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use vtd_iommufd::Errno;
use vtd_kernel::DmaError;
use vtd_model::PasidLookup;
use vtd_model::build::{Leaf, ScalableTables};
use vtd_model::request::Access;
use vtd_spec::addr::{PageSize, table_index};
use vtd_spec::inv::{
    ContextCacheInvDesc, DevTlbInvDesc, InvWaitDesc, IotlbInvDesc, PasidCacheGranularity,
    PasidCacheInvDesc, PasidDevTlbInvDesc, PasidIotlbGranularity, PasidIotlbInvDesc, RawDescriptor,
};
use vtd_spec::pasid::{Fspm, PasidEntry, PasidEntryHi, PasidEntryLo, Pgtt};
use vtd_spec::regs::{CcmdGranularity, GlobalCommand, GlobalStatus, IotlbGranularity, offset};
use vtd_viommu::guest::{FirstStage, GuestDriver, GuestPasid};
use vtd_viommu::shadow::{Attachment, BlockReason, Target};
use vtd_viommu::{Event, GuestMemory, MemoryMap, Placement, Region, RegionKind};

/// Platform device indices and the host source ids of the two assigned devices.
const NIC: usize = 0;
const SSD: usize = 1;
const HOST_NIC_SID: u16 = 0x0018;
const HOST_SSD_SID: u16 = 0x0020;

/// Where the tests' guest stage 1s map from.
const IOVA_BASE: u64 = 0x40_0000_0000;
/// Guest RAM pages that (d) maps and checks.
const DATA: u64 = 0x30_0000;
const POOL_END: u64 = TABLE_POOL + (1 << 20);
const GIB: u64 = 1 << 30;

fn config(default_cases: u32) -> ProptestConfig {
    let mut config = ProptestConfig::with_cases(default_cases);
    if let Some(n) = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        config.cases = n;
    }
    config
}

/// A PC-like map with more edges than `MemoryMap::pc`: the VGA hole, two ROMs with a gap
/// between them, RAM in the interrupt window (which stage 2 must leave out) and RAM above
/// 4 GiB.
fn guest_map() -> MemoryMap {
    MemoryMap::new(vec![
        Region::new("ram-low", 0, 0xA_0000, RegionKind::Ram),
        Region::new("vbios", 0xC_0000, 0x1_0000, RegionKind::Rom),
        Region::new("bios", 0xF_0000, 0x1_0000, RegionKind::Rom),
        Region::new("ram", 0x10_0000, 0xF0_0000, RegionKind::Ram),
        Region::new("ram-msi", 0xFEE0_0000, 0x10_0000, RegionKind::Ram),
        Region::new("ram-high", 0x1_0000_0000, 0x20_0000, RegionKind::Ram),
    ])
    .unwrap()
}

/// GPAs at the edges of every region, and in the holes.
fn anchors() -> Vec<u64> {
    let mut out = vec![0xA_0000, 0xD_0000, 0x100_0000, 0xFEC0_0000, 0x1_0020_0000];
    for r in guest_map().regions() {
        out.extend([
            r.gpa.wrapping_sub(4096),
            r.gpa,
            r.last() - 4095,
            r.last() + 1,
        ]);
    }
    out.retain(|&g| g < 1 << 48);
    out
}

// ---------------------------------------------------------------------------------------
// Observing the system.

/// The VMM loads every ROM with a pattern; returns what it loaded.
fn load_roms(s: &Setup) -> Vec<(u64, Vec<u8>)> {
    s.mem
        .map()
        .regions()
        .iter()
        .filter(|r| r.kind == RegionKind::Rom)
        .map(|r| {
            let image: Vec<u8> = (0..r.size).map(|i| (i as u8) ^ 0xA5).collect();
            s.mem.write(r.gpa, &image).unwrap();
            (r.gpa, image)
        })
        .collect()
}

fn check_roms(s: &Setup, roms: &[(u64, Vec<u8>)]) -> Result<(), TestCaseError> {
    for (gpa, image) in roms {
        let mut now = vec![0; image.len()];
        s.mem.read(*gpa, &mut now).unwrap();
        if let Some(i) = now.iter().zip(image).position(|(a, b)| a != b) {
            return Err(TestCaseError::fail(format!(
                "ROM byte at {:#x} changed",
                gpa + i as u64
            )));
        }
    }
    Ok(())
}

/// Whether stage 2 maps `gpa`, and with write permission.
fn stage2_at(s: &Setup, gpa: u64) -> Option<bool> {
    s.viommu
        .stage2()
        .plan
        .placements
        .iter()
        .find_map(|p| match p {
            Placement::Mapped { region, writable } if region.contains(gpa) => Some(*writable),
            _ => None,
        })
}

/// The guest-physical address whose host memory `hpa` is, if it is guest memory.
fn gpa_of_host(s: &Setup, hpa: u64) -> Option<(u64, RegionKind)> {
    s.mem.map().regions().iter().find_map(|r| {
        let base = s.mem.hva(r.gpa)? as u64;
        (hpa >= base && hpa - base < r.size).then(|| (r.gpa + (hpa - base), r.kind))
    })
}

/// Device `dev` accesses `len` bytes at `iova`. A fault is `None`. A success must land in
/// guest RAM that stage 2 maps (writable for a write), at the GPA the host reports, and
/// move the bytes there; it returns that GPA.
fn dma(
    s: &Setup,
    dev: usize,
    iova: u64,
    len: usize,
    write: bool,
    seed: u8,
) -> Result<Option<u64>, TestCaseError> {
    let access = if write { Access::Write } else { Access::Read };
    let t = match s.platform.translate(dev, None, iova, len, access) {
        Ok(t) => t,
        Err(DmaError::Fault(_)) => return Ok(None),
        Err(e) => return Err(TestCaseError::fail(format!("DMA at {iova:#x}: {e}"))),
    };
    let landed = gpa_of_host(s, t.hpa);
    let Some((gpa, RegionKind::Ram)) = landed else {
        return Err(TestCaseError::fail(format!(
            "DMA at {iova:#x} reached host {:#x}, {landed:?}: not guest RAM",
            t.hpa
        )));
    };
    prop_assert!(
        stage2_at(s, gpa).is_some_and(|w| w || !write),
        "DMA at {:#x} reached GPA {:#x}, which stage 2 does not map for it",
        iova,
        gpa
    );
    if let Some(reported) = t.gpa {
        prop_assert_eq!(reported, gpa, "the host's GPA and the landing disagree");
    }
    let mut want = vec![0; len];
    if write {
        let data: Vec<u8> = (0..len)
            .map(|i| seed.wrapping_add((i as u8).wrapping_mul(7)))
            .collect();
        s.platform.dma_write(dev, None, iova, &data).unwrap();
        s.mem.read(gpa, &mut want).unwrap();
        prop_assert_eq!(
            want,
            data,
            "DMA write at {:#x} did not land at {:#x}",
            iova,
            gpa
        );
    } else {
        let mut got = vec![0; len];
        s.platform.dma_read(dev, None, iova, &mut got).unwrap();
        s.mem.read(gpa, &mut want).unwrap();
        prop_assert_eq!(
            got,
            want,
            "DMA read at {:#x} did not come from {:#x}",
            iova,
            gpa
        );
    }
    Ok(Some(gpa))
}

/// What the guest's stage 1 says for `iova`, read straight from guest memory.
#[derive(Clone, Copy, Debug)]
struct GuestS1 {
    gpa: u64,
    write: bool,
    user: bool,
}

fn guest_s1(mem: &GuestMemory, root: u64, levels: u8, iova: u64) -> Option<GuestS1> {
    const ADDR: u64 = 0x000F_FFFF_FFFF_F000;
    let (mut table, mut write, mut user) = (root, true, true);
    for level in (1..=levels).rev() {
        let mut word = [0; 8];
        mem.read(table + 8 * table_index(iova, level), &mut word)
            .ok()?;
        let e = u64::from_le_bytes(word);
        if e & 1 == 0 {
            return None;
        }
        write &= e & 2 != 0;
        user &= e & 4 != 0;
        if level == 1 || (level <= 3 && e & 1 << 7 != 0) {
            let size = PageSize::from_level(level)?;
            let gpa = (e & ADDR & !size.offset_mask()) | (iova & size.offset_mask());
            return Some(GuestS1 { gpa, write, user });
        }
        table = e & ADDR;
    }
    None
}

/// Where a DMA through the guest stage 1 must land: the GPA, if both stages allow it.
/// Requests without PASID are user requests.
fn expected(s: &Setup, s1: Option<GuestS1>, write: bool) -> Option<u64> {
    s1.filter(|t| t.user && (t.write || !write))
        .filter(|t| stage2_at(s, t.gpa).is_some_and(|w| w || !write))
        .map(|t| t.gpa)
}

/// The host unit's PASID entry for a device, seen as an attachment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HostView {
    Blocked,
    Parent,
    Nested {
        fs_root: u64,
        five_level: bool,
        flags: (bool, bool, bool),
    },
}

fn host_view(s: &Setup, host_sid: u16) -> HostView {
    match s
        .platform
        .unit(0)
        .unwrap()
        .lookup_pasid_entry(host_sid, None)
    {
        PasidLookup::Fault(_) => HostView::Blocked,
        PasidLookup::Entry { entry, .. } => match entry.lo.pgtt() {
            Pgtt::SecondStage => HostView::Parent,
            Pgtt::Nested => HostView::Nested {
                fs_root: entry.fs_table(),
                five_level: entry.hi.fspm() == Fspm::Level5,
                flags: (entry.hi.sre(), entry.hi.wpe(), entry.hi.eafe()),
            },
            other => panic!("the host kernel wrote PGTT {other:?}"),
        },
        other => panic!("the host unit is not in scalable mode: {other:?}"),
    }
}

fn recorded_view(a: Attachment) -> HostView {
    match a {
        Attachment::Blocked => HostView::Blocked,
        Attachment::Parent => HostView::Parent,
        Attachment::Nested { s1, .. } => {
            use vtd_iommufd::uapi::VtdS1Flags;
            HostView::Nested {
                fs_root: s1.pgtbl_addr,
                five_level: s1.addr_width == 57,
                // The kernel sets WPE only with SRE, as Linux does: it only concerns
                // supervisor requests.
                flags: (
                    s1.flags.contains(VtdS1Flags::SRE),
                    s1.flags.contains(VtdS1Flags::SRE | VtdS1Flags::WPE),
                    s1.flags.contains(VtdS1Flags::EAFE),
                ),
            }
        }
    }
}

/// The VMM's record of each device matches what the host hardware has.
fn check_host_matches(s: &Setup, devices: &[(&str, u16)]) -> Result<(), TestCaseError> {
    for &(name, host_sid) in devices {
        let recorded = s.viommu.attachment(name).unwrap();
        prop_assert_eq!(
            recorded_view(recorded),
            host_view(s, host_sid),
            "{}: the VMM's record is not what the host has",
            name
        );
    }
    Ok(())
}

/// Ids of the nested HWPTs the iommufd holds: only a nested HWPT takes a (zero-entry)
/// IOMMU_HWPT_INVALIDATE.
fn nested_hwpts(s: &Setup) -> Vec<u32> {
    (1..=64)
        .filter(|&id| s.viommu.iommufd().hwpt_invalidate(id, &[]).is_ok())
        .collect()
}

/// What the guest's tables say for `sid` now, computed afresh from the unit.
fn fresh_target(s: &Setup, sid: u16) -> Target {
    let widths = s.viommu.host().stage1_widths();
    match s.viommu.unit().lookup_pasid_entry(sid, None) {
        PasidLookup::Disabled => Target::Parent,
        PasidLookup::NotScalable => Target::Blocked(BlockReason::NotScalable),
        PasidLookup::Fault(r) => Target::from_guest_entry(Err(r), widths),
        PasidLookup::Entry { entry, .. } => Target::from_guest_entry(Ok(entry), widths),
    }
}

fn raw(lo: u128) -> RawDescriptor {
    RawDescriptor { lo, hi: 0 }
}

fn pasid_cache_all() -> RawDescriptor {
    raw(PasidCacheInvDesc::new()
        .with_g(PasidCacheGranularity::Global)
        .into_bits())
}

// ---------------------------------------------------------------------------------------
// (a) DMA stays in guest RAM.

#[derive(Clone, Debug)]
struct S1Map {
    iova: u64,
    gpa: u64,
    size: PageSize,
    write: bool,
    user: bool,
}

#[derive(Clone, Debug)]
enum Pick {
    /// A page of mapping `index`: `page` picks first, last or any page, `offset` the byte.
    Mapped {
        index: usize,
        page: u64,
        offset: u64,
    },
    Raw(u64),
}

#[derive(Clone, Debug)]
struct DmaOp {
    pick: Pick,
    write: bool,
    len: usize,
    seed: u8,
}

impl DmaOp {
    fn iova(&self, maps: &[S1Map]) -> u64 {
        match self.pick {
            Pick::Mapped {
                index,
                page,
                offset,
            } if !maps.is_empty() => {
                let m = &maps[index % maps.len()];
                let pages = m.size.bytes() / 4096;
                let page = match page % 4 {
                    0 => 0,
                    1 => pages - 1,
                    _ => (page >> 2) % pages,
                };
                m.iova + page * 4096 + offset.min(4096 - self.len as u64)
            }
            Pick::Mapped { offset, .. } => IOVA_BASE + offset,
            Pick::Raw(iova) => iova.min((1 << 47) - self.len as u64),
        }
    }
}

fn page_size() -> impl Strategy<Value = PageSize> {
    prop_oneof![
        6 => Just(PageSize::Size4K),
        3 => Just(PageSize::Size2M),
        1 => Just(PageSize::Size1G),
    ]
}

fn iova_for(size: PageSize) -> BoxedStrategy<u64> {
    let b = size.bytes();
    prop_oneof![
        4 => (0u64..4).prop_map(move |k| IOVA_BASE + k * b),
        2 => (0u64..4).prop_map(move |k| IOVA_BASE + GIB + k * b),
        1 => any::<u64>().prop_map(move |v| v & ((1 << 47) - 1) & !(b - 1)),
    ]
    .boxed()
}

fn gpa_for(size: PageSize) -> BoxedStrategy<u64> {
    let mask = !(size.bytes() - 1);
    prop_oneof![
        3 => prop::sample::select(anchors()).prop_map(move |g| g & mask),
        3 => (0x10_0000u64..TABLE_POOL).prop_map(move |g| g & mask & !0xFFF),
        2 => (0xA_0000u64..0x10_0000).prop_map(move |g| g & mask & !0xFFF),
        1 => any::<u64>().prop_map(move |v| v & ((1 << 48) - 1) & mask),
        1 => any::<u64>().prop_map(move |v| v & ((1 << 52) - 1) & mask),
    ]
    .boxed()
}

fn s1_map() -> impl Strategy<Value = S1Map> {
    page_size().prop_flat_map(|size| {
        (
            iova_for(size),
            gpa_for(size),
            any::<bool>(),
            prop::bool::weighted(0.9),
        )
            .prop_map(move |(iova, gpa, write, user)| S1Map {
                iova,
                gpa,
                size,
                write,
                user,
            })
    })
}

fn dma_op() -> impl Strategy<Value = DmaOp> {
    let pick = prop_oneof![
        5 => (any::<usize>(), any::<u64>(), 0u64..4096)
            .prop_map(|(index, page, offset)| Pick::Mapped { index, page, offset }),
        1 => (0u64..1 << 47).prop_map(Pick::Raw),
    ];
    (pick, any::<bool>(), 1usize..=64, any::<u8>()).prop_map(|(pick, write, len, seed)| DmaOp {
        pick,
        write,
        len,
        seed,
    })
}

fn dma_stays_in_guest_ram(
    levels: u8,
    did: u16,
    maps: Vec<S1Map>,
    ops: Vec<DmaOp>,
) -> Result<(), TestCaseError> {
    let s = setup_with(guest_map(), false);
    let roms = load_roms(&s);
    let mut driver = GuestDriver::boot(s.viommu.unit(), s.mem.clone(), &s.pages).unwrap();
    driver.add_device(GUEST_SID).unwrap();
    let root = driver.new_stage1(levels).root();
    for m in &maps {
        let leaf = Leaf {
            read: true,
            write: m.write,
            user: m.user,
            extra: 0,
        };
        // A mapping under a larger page is refused; the guest's tables stay as they were.
        let _ = driver.map(root, levels, m.iova, m.gpa, m.size, leaf);
    }
    let fs = FirstStage::new(root, levels);
    driver
        .set_pasid(GUEST_SID, 0, GuestPasid::FirstStage { fs, did })
        .unwrap();
    let attached = s.viommu.attachment("nic0");
    prop_assert!(
        matches!(attached, Some(Attachment::Nested { .. })),
        "the NIC is not nested: {:?}",
        attached
    );
    for op in &ops {
        let iova = op.iova(&maps);
        let s1 = guest_s1(&s.mem, root, levels, iova);
        // Writes into the guest's own page tables would change what is being checked.
        let into_tables = s1.is_some_and(|t| (TABLE_POOL..POOL_END).contains(&t.gpa));
        let write = op.write && !into_tables;
        let got = dma(&s, NIC, iova, op.len, write, op.seed)?;
        prop_assert_eq!(
            got,
            expected(&s, s1, write),
            "{} at IOVA {:#x}; the guest's stage 1 says {:?}",
            if write { "write" } else { "read" },
            iova,
            s1
        );
    }
    check_roms(&s, &roms)
}

proptest! {
    #![proptest_config(config(64))]

    /// (a) Every successful DMA lands in guest RAM at the GPA both stages say; ROM,
    /// holes, the interrupt window and unmapped GPAs fault; no ROM byte changes.
    #[test]
    fn dma_never_leaves_guest_ram(
        levels in prop_oneof![3 => Just(4u8), 1 => Just(5u8)],
        did in 1u16..8,
        maps in prop::collection::vec(s1_map(), 1..12),
        ops in prop::collection::vec(dma_op(), 1..24),
    ) {
        dma_stays_in_guest_ram(levels, did, maps, ops)?;
    }
}

// ---------------------------------------------------------------------------------------
// (b) Guest garbage.

#[derive(Clone, Debug)]
enum Garbage {
    /// The guest scribbles on its PASID entry, directory entry, context or root entry,
    /// then (maybe) invalidates the caches.
    PasidEntry([u64; 8], bool),
    PasidDir(u64, bool),
    Context([u64; 4], bool),
    Root([u64; 2], bool),
    /// A register access of any offset and size.
    MmioWrite {
        offset: u64,
        size: u8,
        value: u64,
    },
    MmioRead {
        offset: u64,
        size: u8,
    },
    /// Descriptors in the guest's queue, with a wait.
    Queue(Vec<RawDescriptor>),
    /// A well-formed PASID entry.
    Sane(GuestPasidSpec),
    /// The device does DMA.
    Dma {
        iova: u64,
        write: bool,
        seed: u8,
    },
    /// An emulated device with the NIC's source id does DMA through the guest-facing
    /// unit (which sets A/D bits wherever the guest's tables are).
    EmulatedDma {
        iova: u64,
        write: bool,
        seed: u8,
    },
}

#[derive(Clone, Debug)]
enum GuestPasidSpec {
    First { five: bool, did: u16 },
    PassThrough { did: u16 },
    None,
}

fn word_biased() -> impl Strategy<Value = u64> {
    prop_oneof![
        2 => any::<u64>(),
        1 => Just(0u64),
        1 => (0u64..64).prop_map(|b| 1u64 << b),
        1 => (TABLE_POOL / 4096..POOL_END / 4096).prop_map(|p| p << 12 | 1),
    ]
}

/// A PASID entry that is often nearly well formed, so checks past P and PGTT run.
fn pasid_words() -> impl Strategy<Value = [u64; 8]> {
    let structured = (
        any::<bool>(),
        0u8..8,
        any::<u16>(),
        0u8..4,
        prop_oneof![Just(TABLE_POOL), (0u64..1 << 40).prop_map(|g| g & !0xFFF)],
        any::<u8>(),
        prop::option::weighted(0.2, (0usize..8, any::<u64>())),
    )
        .prop_map(|(p, pgtt, did, fspm, root, flags, junk)| {
            let lo = PasidEntryLo::new()
                .with_p(p)
                .with_pgtt(Pgtt::from_bits(pgtt))
                .with_did(did);
            let hi = PasidEntryHi::from_bits((flags as u128) & 0xF1)
                .with_fspm(Fspm::from_bits(fspm))
                .with_fsptptr(root >> 12);
            let mut words = PasidEntry {
                lo,
                hi,
                rsvd: [0; 2],
            }
            .to_words();
            if let Some((i, bits)) = junk {
                words[i] ^= bits;
            }
            words
        });
    prop_oneof![3 => structured, 1 => prop::array::uniform8(word_biased())]
}

fn descriptor() -> impl Strategy<Value = RawDescriptor> {
    let rom_or_ram = prop_oneof![
        Just(0xC_0000u64),
        (0u64..0x4000).prop_map(|o| 0xF_0000 + (o & !3)),
        (0u64..1 << 20).prop_map(|o| TABLE_POOL + (o & !3)),
        any::<u64>().prop_map(|a| a & !3),
    ];
    let am = prop_oneof![0u8..10, 0u8..64];
    prop_oneof![
        (0u8..4, any::<u16>(), any::<u16>(), 0u8..4).prop_map(|(g, did, sid, fm)| raw(
            ContextCacheInvDesc::new()
                .with_g(CcmdGranularity::from_bits(g))
                .with_did(did)
                .with_sid(sid)
                .with_fm(fm)
                .into_bits()
        )),
        (
            0u8..4,
            any::<u16>(),
            am.clone(),
            any::<bool>(),
            any::<u64>()
        )
            .prop_map(|(g, did, am, ih, addr)| raw(IotlbInvDesc::new()
                .with_g(IotlbGranularity::from_bits(g))
                .with_did(did)
                .with_am(am)
                .with_ih(ih)
                .with_addr(addr >> 12)
                .into_bits())),
        (
            0u8..4,
            any::<u16>(),
            0u32..1 << 20,
            am,
            any::<bool>(),
            any::<u64>()
        )
            .prop_map(|(g, did, pasid, am, ih, addr)| raw(PasidIotlbInvDesc::new()
                .with_g(PasidIotlbGranularity::from_bits(g))
                .with_did(did)
                .with_pasid(pasid)
                .with_am(am)
                .with_ih(ih)
                .with_addr(addr >> 12)
                .into_bits())),
        (0u8..4, any::<u16>(), 0u32..1 << 20).prop_map(|(g, did, pasid)| raw(
            PasidCacheInvDesc::new()
                .with_g(PasidCacheGranularity::from_bits(g))
                .with_did(did)
                .with_pasid(pasid)
                .into_bits()
        )),
        (any::<u8>(), any::<u32>(), rom_or_ram).prop_map(|(flags, data, addr)| raw(
            InvWaitDesc::new()
                .with_intr(flags & 1 != 0)
                .with_sw(flags & 2 != 0)
                .with_fence(flags & 4 != 0)
                .with_pd(flags & 8 != 0)
                .with_status_data(data)
                .with_status_addr(addr >> 2)
                .into_bits()
        )),
        (any::<u16>(), any::<u64>(), any::<bool>()).prop_map(|(sid, addr, s)| raw(
            DevTlbInvDesc::new()
                .with_sid(sid)
                .with_s(s)
                .with_addr(addr >> 12)
                .into_bits()
        )),
        (any::<u16>(), 0u32..1 << 20, any::<u64>()).prop_map(|(sid, pasid, addr)| raw(
            PasidDevTlbInvDesc::new()
                .with_sid(sid)
                .with_pasid(pasid)
                .with_addr(addr >> 12)
                .into_bits()
        )),
        (
            any::<u128>(),
            0u128..16,
            prop::option::weighted(0.1, any::<u128>())
        )
            .prop_map(|(lo, ty, hi)| RawDescriptor {
                lo: lo & !0xF | ty,
                hi: hi.unwrap_or(0),
            }),
    ]
}

fn mmio_offset() -> impl Strategy<Value = u64> {
    let known = vec![
        offset::GCMD,
        offset::RTADDR,
        offset::RTADDR + 4,
        offset::CCMD,
        offset::CCMD + 4,
        offset::FSTS,
        offset::FECTL,
        offset::IQH,
        offset::IQT,
        offset::IQA,
        offset::IQA + 4,
        offset::ICS,
        offset::IECTL,
        0x1F0,
        0x1F8,
        0x1FC,
        0x220,
        0x22C,
        0x29C,
    ];
    prop_oneof![
        5 => prop::sample::select(known),
        2 => 0u64..0x1100,
        1 => any::<u64>(),
    ]
}

fn mmio_value() -> impl Strategy<Value = u64> {
    let gcmd = prop::sample::select(vec![
        GlobalCommand::TE.bits() | GlobalCommand::QIE.bits(),
        GlobalCommand::QIE.bits(),
        GlobalCommand::TE.bits(),
        GlobalCommand::SRTP.bits() | GlobalCommand::QIE.bits() | GlobalCommand::TE.bits(),
        0,
    ])
    .prop_map(u64::from);
    prop_oneof![
        3 => any::<u64>(),
        2 => gcmd,
        2 => (0u64..4, prop_oneof![Just(TABLE_POOL), any::<u64>().prop_map(|v| v & !0xFFF)])
            .prop_map(|(ttm, root)| root | ttm << 10),
        1 => (0u64..0x1000).prop_map(|v| v & !0xF),
        1 => Just(u64::MAX),
    ]
}

fn garbage() -> impl Strategy<Value = Garbage> {
    let spec = prop_oneof![
        (any::<bool>(), 1u16..8).prop_map(|(five, did)| GuestPasidSpec::First { five, did }),
        (1u16..8).prop_map(|did| GuestPasidSpec::PassThrough { did }),
        Just(GuestPasidSpec::None),
    ];
    let dma_iova = prop_oneof![
        (0u64..8).prop_map(|k| IOVA_BASE + k * 4096),
        prop::sample::select(anchors()),
        (0u64..1 << 40).prop_map(|v| v & !0xFFF),
    ];
    prop_oneof![
        3 => (pasid_words(), any::<bool>()).prop_map(|(w, i)| Garbage::PasidEntry(w, i)),
        1 => (word_biased(), any::<bool>()).prop_map(|(w, i)| Garbage::PasidDir(w, i)),
        1 => (prop::array::uniform4(word_biased()), any::<bool>())
            .prop_map(|(w, i)| Garbage::Context(w, i)),
        1 => (prop::array::uniform2(word_biased()), any::<bool>())
            .prop_map(|(w, i)| Garbage::Root(w, i)),
        4 => (mmio_offset(), prop_oneof![3 => Just(4u8), 3 => Just(8u8), 1 => any::<u8>()],
              mmio_value())
            .prop_map(|(offset, size, value)| Garbage::MmioWrite { offset, size, value }),
        1 => (mmio_offset(), any::<u8>()).prop_map(|(offset, size)| Garbage::MmioRead {
            offset,
            size
        }),
        4 => prop::collection::vec(descriptor(), 1..4).prop_map(Garbage::Queue),
        3 => spec.prop_map(Garbage::Sane),
        4 => (dma_iova.clone(), any::<bool>(), any::<u8>())
            .prop_map(|(iova, write, seed)| Garbage::Dma { iova, write, seed }),
        2 => (dma_iova, any::<bool>(), any::<u8>())
            .prop_map(|(iova, write, seed)| Garbage::EmulatedDma { iova, write, seed }),
    ]
}

/// Guest-physical addresses of the guest's structures for the NIC.
struct GuestTables {
    root: u64,
    context: u64,
    pasid_dir: u64,
    pasid_entry: u64,
}

fn guest_tables(s: &Setup, driver: &GuestDriver<'_, std::sync::Arc<GuestMemory>>) -> GuestTables {
    let root = driver.root_table();
    let tables = ScalableTables::with_root(&*s.mem, &s.pages, root);
    let context = tables.context_entry_addr(GUEST_SID).unwrap();
    let pasid_dir = tables.context(GUEST_SID).unwrap().pasid_dir();
    let pasid_entry = tables.pasid_entry_addr(GUEST_SID, 0).unwrap();
    GuestTables {
        root,
        context,
        pasid_dir,
        pasid_entry,
    }
}

/// What a guest's driver does when its queue stops on a bad descriptor (FSTS.IQE): put a
/// harmless wait where the head stopped and clear IQE, so the queue runs on.
fn recover_queue(s: &Setup) {
    const IQE: u64 = 1 << 4;
    let unit = s.viommu.unit();
    for _ in 0..16 {
        if unit.mmio_read(offset::FSTS, 4).unwrap() & IQE == 0 {
            return;
        }
        let base = unit.mmio_read(offset::IQA, 8).unwrap() & !0xFFF;
        let head = unit.mmio_read(offset::IQH, 8).unwrap() & 0x7_FFF0;
        let nop = InvWaitDesc::new().with_fence(true).into_bits();
        let mut slot = [0u8; 32];
        slot[..16].copy_from_slice(&nop.to_le_bytes());
        let _ = s.mem.write(base.wrapping_add(head), &slot);
        unit.mmio_write(offset::FSTS, 4, IQE).unwrap();
    }
}

fn write_words(s: &Setup, gpa: u64, words: &[u64]) {
    // Later words first, so a present bit in word 0 comes last, as a driver writes.
    for (i, w) in words.iter().enumerate().rev() {
        s.mem.write(gpa + 8 * i as u64, &w.to_le_bytes()).unwrap();
    }
}

fn guest_garbage_is_contained(
    ops: Vec<Garbage>,
    probes: Vec<(u64, bool)>,
) -> Result<(), TestCaseError> {
    let s = setup_with(guest_map(), false);
    let roms = load_roms(&s);
    let mut driver = GuestDriver::boot(s.viommu.unit(), s.mem.clone(), &s.pages).unwrap();
    driver.add_device(GUEST_SID).unwrap();
    let root4 = driver.new_stage1(4).root();
    let root5 = driver.new_stage1(5).root();
    for (root, levels) in [(root4, 4), (root5, 5)] {
        let targets = [
            DATA,
            DATA + 0x1000,
            0xC_0000,
            0xFEE0_0000,
            0x1_0000_0000,
            0xA_0000,
        ];
        for (k, gpa) in targets.into_iter().enumerate() {
            driver
                .map(
                    root,
                    levels,
                    IOVA_BASE + k as u64 * 4096,
                    gpa,
                    PageSize::Size4K,
                    Leaf::read_write(),
                )
                .unwrap();
        }
    }
    let fs = FirstStage::new(root4, 4);
    driver
        .set_pasid(GUEST_SID, 0, GuestPasid::FirstStage { fs, did: 1 })
        .unwrap();
    let t = guest_tables(&s, &driver);
    let unit = s.viommu.unit();
    let emulated = vm_memory::IommuMemory::new(
        s.mem.mmap().clone(),
        s.viommu.device_iommu(GUEST_SID, None),
        true,
        (),
    );
    for op in &ops {
        let invalidate = match op {
            Garbage::PasidEntry(words, inv) => {
                write_words(&s, t.pasid_entry, words);
                *inv
            }
            Garbage::PasidDir(word, inv) => {
                write_words(&s, t.pasid_dir, &[*word]);
                *inv
            }
            Garbage::Context(words, inv) => {
                write_words(&s, t.context, words);
                *inv
            }
            Garbage::Root(words, inv) => {
                write_words(&s, t.root, words);
                *inv
            }
            Garbage::MmioWrite {
                offset,
                size,
                value,
            } => {
                let _ = unit.mmio_write(*offset, *size, *value);
                false
            }
            Garbage::MmioRead { offset, size } => {
                let _ = unit.mmio_read(*offset, *size);
                false
            }
            Garbage::Queue(descs) => {
                if driver.submit(descs).is_err() {
                    recover_queue(&s);
                }
                false
            }
            Garbage::Sane(spec) => {
                let what = match *spec {
                    GuestPasidSpec::First { five: false, did } => GuestPasid::FirstStage {
                        fs: FirstStage::new(root4, 4),
                        did,
                    },
                    GuestPasidSpec::First { five: true, did } => GuestPasid::FirstStage {
                        fs: FirstStage::new(root5, 5),
                        did,
                    },
                    GuestPasidSpec::PassThrough { did } => GuestPasid::PassThrough { did },
                    GuestPasidSpec::None => GuestPasid::None,
                };
                let _ = driver.set_pasid(GUEST_SID, 0, what);
                false
            }
            Garbage::Dma { iova, write, seed } => {
                dma(&s, NIC, *iova, 16, *write, *seed)?;
                false
            }
            Garbage::EmulatedDma { iova, write, seed } => {
                use vm_memory::{Bytes, GuestAddress};
                let at = GuestAddress(*iova);
                if *write {
                    let _ = emulated.write_slice(&[*seed; 16], at);
                } else {
                    let _ = emulated.read_slice(&mut [0; 16], at);
                }
                false
            }
        };
        if invalidate {
            let ctx = ContextCacheInvDesc::new().with_g(CcmdGranularity::Global);
            if driver
                .submit(&[raw(ctx.into_bits()), pasid_cache_all()])
                .is_err()
            {
                recover_queue(&s);
            }
        }
        check_host_matches(&s, &[("nic0", HOST_NIC_SID)])?;
    }
    for &(iova, write) in &probes {
        dma(&s, NIC, iova, 8, write, 0x5A)?;
    }
    for k in 0..6 {
        dma(&s, NIC, IOVA_BASE + k * 4096, 8, true, 0x3C)?;
    }
    let _ = s.viommu.take_events();
    check_roms(&s, &roms)
}

proptest! {
    #![proptest_config(config(64))]

    /// (b) Random table contents, register accesses and descriptors from the guest never
    /// panic the VMM; the host attachment is always what the VMM recorded; DMA stays in
    /// guest RAM and no ROM byte changes.
    #[test]
    fn guest_garbage_never_panics_or_escapes(
        ops in prop::collection::vec(garbage(), 1..40),
        probes in prop::collection::vec(
            (prop_oneof![
                prop::sample::select(anchors()),
                (0u64..8).prop_map(|k| IOVA_BASE + k * 4096),
                (0u64..1 << 40).prop_map(|v| v & !0xFFF),
            ], any::<bool>()),
            0..12,
        ),
    ) {
        guest_garbage_is_contained(ops, probes)?;
    }
}

// ---------------------------------------------------------------------------------------
// (c) Shadowing converges.

#[derive(Clone, Debug)]
enum EntrySpec {
    First {
        root: usize,
        sre: bool,
        wpe: bool,
        eafe: bool,
        did: u16,
    },
    PassThrough {
        did: u16,
    },
    None,
    Raw([u64; 8]),
}

#[derive(Clone, Debug)]
enum Step {
    /// Set the PASID entry of device `ssd` (else the NIC), then invalidate it properly.
    Set { ssd: bool, entry: EntrySpec },
    /// Clear the device's context entry, then invalidate the context cache for it.
    DropContext { ssd: bool },
    /// Give the device a fresh context entry and PASID directory, then invalidate.
    Readd { ssd: bool },
    /// Turn remapping off or on.
    Remapping(bool),
}

fn entry_spec() -> impl Strategy<Value = EntrySpec> {
    prop_oneof![
        4 => (0usize..4, any::<bool>(), any::<bool>(), any::<bool>(), 1u16..6).prop_map(
            |(root, sre, wpe, eafe, did)| EntrySpec::First { root, sre, wpe, eafe, did }
        ),
        2 => (1u16..6).prop_map(|did| EntrySpec::PassThrough { did }),
        1 => Just(EntrySpec::None),
        2 => pasid_words().prop_map(EntrySpec::Raw),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => (any::<bool>(), entry_spec()).prop_map(|(ssd, entry)| Step::Set { ssd, entry }),
        1 => any::<bool>().prop_map(|ssd| Step::DropContext { ssd }),
        1 => any::<bool>().prop_map(|ssd| Step::Readd { ssd }),
        1 => any::<bool>().prop_map(Step::Remapping),
    ]
}

fn set_remapping(unit: &vtd_viommu::GuestUnit, on: bool) {
    let gsts = GlobalStatus::from_bits_retain(unit.mmio_read(offset::GSTS, 4).unwrap() as u32);
    let mut persistent = (gsts & GlobalStatus::PERSISTENT).bits();
    if on {
        persistent |= GlobalCommand::TE.bits();
    } else {
        persistent &= !GlobalCommand::TE.bits();
    }
    unit.mmio_write(offset::GCMD, 4, persistent as u64).unwrap();
}

/// A host call to fail once during a step.
fn host_failure() -> impl Strategy<Value = Option<(u64, Errno)>> {
    use vtd_iommufd::ioctl;
    prop_oneof![
        6 => Just(None),
        1 => Just(Some((ioctl::IOMMU_HWPT_ALLOC, Errno::ENOMEM))),
        1 => Just(Some((ioctl::VFIO_DEVICE_ATTACH_IOMMUFD_PT, Errno::ENOMEM))),
        1 => Just(Some((ioctl::VFIO_DEVICE_DETACH_IOMMUFD_PT, Errno::EINVAL))),
        1 => Just(Some((ioctl::IOMMU_DESTROY, Errno::EBUSY))),
    ]
}

/// The nested HWPTs the devices are attached to, sorted.
fn attached_hwpts(s: &Setup) -> Vec<u32> {
    let mut live: Vec<u32> = ["nic0", "ssd0"]
        .into_iter()
        .filter_map(|name| match s.viommu.attachment(name) {
            Some(Attachment::Nested { hwpt, .. }) => Some(hwpt),
            _ => None,
        })
        .collect();
    live.sort_unstable();
    live
}

/// `settle`: once the steps are done (and failures with them), the guest invalidates once
/// more before the VMM is dropped; else the VMM is dropped with whatever is pending.
fn shadowing_converges(
    steps: Vec<(Option<(u64, Errno)>, Step)>,
    settle: bool,
) -> Result<(), TestCaseError> {
    let s = setup_with(guest_map(), true);
    let mut driver = GuestDriver::boot(s.viommu.unit(), s.mem.clone(), &s.pages).unwrap();
    let mut roots = Vec::new();
    for levels in [4, 4, 4, 5] {
        let root = driver.new_stage1(levels).root();
        driver
            .map(
                root,
                levels,
                IOVA_BASE,
                DATA,
                PageSize::Size4K,
                Leaf::read_write(),
            )
            .unwrap();
        roots.push((root, levels));
    }
    for sid in [GUEST_SID, GUEST_SSD_SID] {
        driver.add_device(sid).unwrap();
    }
    let devices = [
        ("nic0", GUEST_SID, HOST_NIC_SID),
        ("ssd0", GUEST_SSD_SID, HOST_SSD_SID),
    ];
    let _ = s.viommu.take_events();
    for (failure, step) in &steps {
        if let Some((request, errno)) = *failure {
            s.faults.arm(request, errno);
        }
        match step {
            Step::Set { ssd, entry } => {
                let (_, sid, _) = devices[*ssd as usize];
                match entry {
                    EntrySpec::Raw(words) => {
                        let tables =
                            ScalableTables::with_root(&*s.mem, &s.pages, driver.root_table());
                        let did = PasidEntry::from_words(*words).lo.did();
                        if let Ok(addr) = tables.pasid_entry_addr(sid, 0) {
                            write_words(&s, addr, words);
                        }
                        let inv = PasidCacheInvDesc::new()
                            .with_g(PasidCacheGranularity::Pasid)
                            .with_did(did)
                            .with_pasid(0);
                        driver.submit(&[raw(inv.into_bits())]).unwrap();
                    }
                    spec => {
                        let what = match *spec {
                            EntrySpec::First {
                                root,
                                sre,
                                wpe,
                                eafe,
                                did,
                            } => {
                                let (root, levels) = roots[root];
                                let fs = FirstStage {
                                    root,
                                    levels,
                                    sre,
                                    wpe,
                                    eafe,
                                };
                                GuestPasid::FirstStage { fs, did }
                            }
                            EntrySpec::PassThrough { did } => GuestPasid::PassThrough { did },
                            _ => GuestPasid::None,
                        };
                        match driver.set_pasid(sid, 0, what) {
                            Ok(()) => {}
                            // The context entry is gone: nothing to set, but the guest
                            // still invalidates.
                            Err(vtd_viommu::guest::GuestError::Build(
                                vtd_model::build::BuildError::NoPasidDirectory(_),
                            )) => driver.submit(&[pasid_cache_all()]).unwrap(),
                            Err(e) => prop_assert!(false, "set_pasid: {e}"),
                        }
                    }
                }
            }
            Step::DropContext { ssd } => {
                let (_, sid, _) = devices[*ssd as usize];
                let tables = ScalableTables::with_root(&*s.mem, &s.pages, driver.root_table());
                let addr = tables.context_entry_addr(sid).unwrap();
                write_words(&s, addr, &[0; 4]);
                let inv = ContextCacheInvDesc::new()
                    .with_g(CcmdGranularity::Device)
                    .with_sid(sid);
                driver.submit(&[raw(inv.into_bits())]).unwrap();
            }
            Step::Readd { ssd } => {
                let (_, sid, _) = devices[*ssd as usize];
                driver.add_device(sid).unwrap();
                let inv = ContextCacheInvDesc::new()
                    .with_g(CcmdGranularity::Device)
                    .with_sid(sid);
                driver.submit(&[raw(inv.into_bits())]).unwrap();
            }
            Step::Remapping(on) => {
                set_remapping(s.viommu.unit(), *on);
                // As a guest driver does around the switch (and a no-op switch still
                // invalidates).
                let ctx = ContextCacheInvDesc::new().with_g(CcmdGranularity::Global);
                driver
                    .submit(&[raw(ctx.into_bits()), pasid_cache_all()])
                    .unwrap();
            }
        }
        s.faults.disarm();
        let events = s.viommu.take_events();
        let mut live = Vec::new();
        for (name, sid, _) in devices {
            let want = fresh_target(&s, sid);
            let got = s.viommu.attachment(name).unwrap();
            let refused = events
                .iter()
                .any(|e| matches!(e, Event::ShadowFailed { device, .. } if device == name));
            let ok = match (want, got) {
                (Target::Parent, Attachment::Parent) => true,
                (Target::Blocked(_), Attachment::Blocked) => true,
                (
                    Target::Nested { s1, did },
                    Attachment::Nested {
                        s1: got_s1,
                        did: got_did,
                        ..
                    },
                ) => s1 == got_s1 && did == got_did,
                // A host failure leaves the device blocked, never on a stage 1 the guest
                // abandoned; the next invalidation tries again.
                (Target::Nested { .. } | Target::Parent, Attachment::Blocked) => refused,
                _ => false,
            };
            prop_assert!(
                ok,
                "{}: the guest says {:?}, the host has {:?} (step {:?}, failing {:?})",
                name,
                want,
                got,
                step,
                failure
            );
            if let Attachment::Nested { hwpt, .. } = got {
                live.push(hwpt);
            }
        }
        check_host_matches(&s, &[("nic0", HOST_NIC_SID), ("ssd0", HOST_SSD_SID)])?;
        // What the host refused to destroy is kept, never the attached one; nothing else
        // stays allocated.
        let pending = s.viommu.pending_destroy_ids();
        prop_assert!(
            pending.iter().all(|id| !live.contains(id)),
            "pending {:?} holds an attached HWPT of {:?}",
            pending,
            live
        );
        live.extend(pending);
        live.sort_unstable();
        prop_assert_eq!(
            nested_hwpts(&s),
            live,
            "nested HWPTs left allocated after {:?}",
            step
        );
    }
    if settle {
        driver.submit(&[pasid_cache_all()]).unwrap();
        prop_assert_eq!(
            s.viommu.pending_destroys(),
            0,
            "pending after a clean invalidation"
        );
        prop_assert_eq!(nested_hwpts(&s), attached_hwpts(&s));
    }
    drop(driver);
    let iommufd = s.viommu.iommufd().clone();
    let (ioas, parent) = (s.viommu.stage2().ioas, s.viommu.stage2().hwpt);
    drop(s.viommu);
    let leaked: Vec<u32> = (1..=64)
        .filter(|&id| iommufd.hwpt_invalidate(id, &[]).is_ok())
        .collect();
    prop_assert_eq!(leaked, Vec::<u32>::new(), "nested HWPTs left after drop");
    for id in [parent, ioas] {
        prop_assert_eq!(
            iommufd.destroy(id).err().and_then(|e| e.errno()),
            Some(Errno::ENOENT),
            "object {} left after drop",
            id
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(64))]

    /// (c) After every PASID-entry, context or remapping change followed by its
    /// invalidation, each device's host attachment is what the guest's entry says now (or
    /// blocked, with an event, when a host call failed), the host unit has what the VMM
    /// recorded, and exactly the nested HWPTs in use, or kept because the host refused to
    /// destroy them, are allocated. Once failures stop, one more invalidation leaves none
    /// kept, and dropping the VMM leaves no nested HWPT, parent or IOAS.
    #[test]
    fn shadowing_converges_to_the_guest_entry(
        steps in prop::collection::vec((host_failure(), step()), 1..24),
        settle in any::<bool>(),
    ) {
        shadowing_converges(steps, settle)?;
    }
}

// ---------------------------------------------------------------------------------------
// (d) Forwarding is complete.

#[derive(Clone, Debug)]
enum Change {
    /// Map the slot to target `target` (0..8 data pages, 8 ROM, 9 a hole).
    Map {
        target: u64,
        write: bool,
    },
    Unmap,
}

#[derive(Clone, Debug)]
enum Inv {
    /// PASID-based, page-selective: `2^am` pages around the slot; `junk` sets address bits
    /// below the mask, which the hardware ignores.
    PasidPage {
        am: u8,
        junk: u64,
        ih: bool,
    },
    PasidAll,
    /// IOTLB invalidations by domain, page (which drops every first-stage entry of the
    /// domain) and globally.
    Domain,
    Page {
        am: u8,
        junk: u64,
        ih: bool,
    },
    Global,
    /// The guest moves both devices' entries to domain `to` with the same stage 1 (and
    /// invalidates the PASID cache for each), then flushes the old domain.
    SwitchDomain {
        to: u16,
    },
}

#[derive(Clone, Debug)]
struct Remap {
    slot: u64,
    change: Change,
    /// DMA before the change (fills the host caches).
    warm: bool,
    /// DMA between the change and the invalidation (may be stale; only containment is
    /// checked).
    peek: bool,
    inv: Inv,
    /// Also check a write after the invalidation.
    write: bool,
    /// How many IOMMU_HWPT_INVALIDATE calls the host refuses during the invalidation.
    host_fails: u32,
}

fn remap() -> impl Strategy<Value = Remap> {
    let change = prop_oneof![
        4 => (0u64..10, any::<bool>()).prop_map(|(target, write)| Change::Map { target, write }),
        1 => Just(Change::Unmap),
    ];
    let inv = prop_oneof![
        4 => (prop_oneof![4 => 0u8..10, 1 => 0u8..64], any::<u64>(), any::<bool>())
            .prop_map(|(am, junk, ih)| Inv::PasidPage { am, junk, ih }),
        1 => Just(Inv::PasidAll),
        1 => Just(Inv::Domain),
        1 => (0u8..10, any::<u64>(), any::<bool>())
            .prop_map(|(am, junk, ih)| Inv::Page { am, junk, ih }),
        1 => Just(Inv::Global),
        1 => (1u16..8).prop_map(|to| Inv::SwitchDomain { to }),
    ];
    let host_fails = prop_oneof![8 => Just(0u32), 1 => Just(1u32), 1 => Just(2u32)];
    (
        (
            0u64..8,
            change,
            any::<bool>(),
            any::<bool>(),
            inv,
            any::<bool>(),
        ),
        host_fails,
    )
        .prop_map(
            |((slot, change, warm, peek, inv, write), host_fails)| Remap {
                slot,
                change,
                warm,
                peek,
                inv,
                write,
                host_fails,
            },
        )
}

fn invalidation(inv: &Inv, did: u16, iova: u64) -> RawDescriptor {
    let in_block = |am: u8, junk: u64| {
        let block = 1u64.checked_shl(12 + am as u32).map_or(u64::MAX, |b| b - 1);
        (iova & !block) | (junk & block & !0xFFF)
    };
    match *inv {
        Inv::PasidPage { am, junk, ih } => raw(PasidIotlbInvDesc::new()
            .with_g(PasidIotlbGranularity::Page)
            .with_did(did)
            .with_pasid(0)
            .with_am(am)
            .with_ih(ih)
            .with_addr(in_block(am, junk) >> 12)
            .into_bits()),
        Inv::PasidAll => raw(PasidIotlbInvDesc::new()
            .with_g(PasidIotlbGranularity::Pasid)
            .with_did(did)
            .with_pasid(0)
            .into_bits()),
        Inv::Domain => raw(IotlbInvDesc::new()
            .with_g(IotlbGranularity::Domain)
            .with_did(did)
            .into_bits()),
        Inv::Page { am, junk, ih } => raw(IotlbInvDesc::new()
            .with_g(IotlbGranularity::Page)
            .with_did(did)
            .with_am(am)
            .with_ih(ih)
            .with_addr(in_block(am, junk) >> 12)
            .into_bits()),
        Inv::Global => raw(IotlbInvDesc::new()
            .with_g(IotlbGranularity::Global)
            .into_bits()),
        Inv::SwitchDomain { .. } => raw(PasidIotlbInvDesc::new()
            .with_g(PasidIotlbGranularity::Pasid)
            .with_did(did)
            .with_pasid(0)
            .into_bits()),
    }
}

/// Each device got the guest's invalidation as entries a real kernel takes (4 KiB aligned,
/// "everything" only from address 0, no range past 2^64), and either the host processed
/// entries covering what the guest's unit invalidated, or the device was blocked because
/// the host refused. Returns the blocked devices.
fn check_forwarded(
    inv: &Inv,
    desc: RawDescriptor,
    events: &[Event],
) -> Result<Vec<&'static str>, TestCaseError> {
    let covered = match *inv {
        Inv::PasidPage { .. } => {
            let d = PasidIotlbInvDesc::from_bits(desc.lo);
            vtd_model::invalidation::Invalidation::page_range(d.address(), d.am())
        }
        _ => (0, u64::MAX),
    };
    let mut blocked = Vec::new();
    for device in ["nic0", "ssd0"] {
        let sent: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                Event::Forwarded {
                    device: d,
                    entries,
                    result,
                    ..
                } if d == device => Some((entries, result)),
                _ => None,
            })
            .collect();
        prop_assert!(!sent.is_empty(), "{:?} not forwarded to {}", inv, device);
        for e in sent.iter().flat_map(|(entries, _)| entries.iter()) {
            let end = e.addr as u128 + e.npages as u128 * 4096;
            prop_assert!(
                e.addr % 4096 == 0
                    && (e.npages != u64::MAX || e.addr == 0)
                    && (e.npages == u64::MAX || end <= 1 << 64),
                "{} got an entry no kernel takes: {:?}",
                device,
                e
            );
        }
        let covers = sent.iter().any(|(entries, result)| {
            **result == Ok(entries.len() as u32)
                && entries.iter().any(|e| {
                    e.npages == u64::MAX
                        || (e.addr <= covered.0
                            && e.addr as u128 + e.npages as u128 * 4096 > covered.1 as u128)
                })
        });
        let refused = events.iter().any(|e| {
            matches!(e, Event::Shadowed {
                device: d,
                target: Target::Blocked(BlockReason::HostRefused(_)),
                change: vtd_viommu::shadow::Change::ToBlocked,
            } if d == device)
        });
        prop_assert!(
            covers || refused,
            "{}: {:?} neither covers {:#x?} of {:?} nor blocked the device",
            device,
            sent,
            covered,
            inv
        );
        if refused {
            blocked.push(device);
        }
    }
    Ok(blocked)
}

fn forwarding_is_complete(mut did: u16, remaps: Vec<Remap>) -> Result<(), TestCaseError> {
    let s = setup_with(guest_map(), true);
    for k in 0..8u64 {
        s.mem.write(DATA + k * 4096, &[k as u8 + 1; 64]).unwrap();
    }
    let mut driver = GuestDriver::boot(s.viommu.unit(), s.mem.clone(), &s.pages).unwrap();
    let root = driver.new_stage1(4).root();
    for k in 0..8u64 {
        let (iova, gpa) = (IOVA_BASE + k * 4096, DATA + k * 4096);
        driver
            .map(root, 4, iova, gpa, PageSize::Size4K, Leaf::read_write())
            .unwrap();
    }
    for sid in [GUEST_SID, GUEST_SSD_SID] {
        driver.add_device(sid).unwrap();
        let fs = FirstStage::new(root, 4);
        driver
            .set_pasid(sid, 0, GuestPasid::FirstStage { fs, did })
            .unwrap();
    }
    for r in &remaps {
        let iova = IOVA_BASE + r.slot * 4096;
        if r.warm {
            for dev in [NIC, SSD] {
                dma(&s, dev, iova, 16, false, 0)?;
            }
        }
        match r.change {
            Change::Map { target, write } => {
                let gpa = match target {
                    0..8 => DATA + target * 4096,
                    8 => 0xC_0000,
                    _ => 0xA_0000,
                };
                let leaf = if write {
                    Leaf::read_write()
                } else {
                    Leaf::read_only()
                };
                driver
                    .map(root, 4, iova, gpa, PageSize::Size4K, leaf)
                    .unwrap();
            }
            Change::Unmap => {
                driver.unmap(root, 4, iova).unwrap();
            }
        }
        if r.peek {
            dma(&s, NIC, iova, 16, false, 0)?;
        }
        let _ = s.viommu.take_events();
        let desc = invalidation(&r.inv, did, iova);
        if r.host_fails > 0 {
            let request = vtd_iommufd::ioctl::IOMMU_HWPT_INVALIDATE;
            s.faults.arm_times(request, Errno::EINVAL, r.host_fails);
        }
        if let Inv::SwitchDomain { to } = r.inv {
            let fs = FirstStage::new(root, 4);
            for sid in [GUEST_SID, GUEST_SSD_SID] {
                driver
                    .set_pasid(sid, 0, GuestPasid::FirstStage { fs, did: to })
                    .unwrap();
            }
        }
        driver.submit(&[desc]).unwrap();
        s.faults.disarm();
        let blocked = match r.inv {
            // The old domain's flush reaches no device now: the switch itself must have
            // left nothing the old domain cached.
            Inv::SwitchDomain { to } if to != did => {
                did = to;
                let _ = s.viommu.take_events();
                Vec::new()
            }
            _ => check_forwarded(&r.inv, desc, &s.viommu.take_events())?,
        };
        let s1 = guest_s1(&s.mem, root, 4, iova);
        for (dev, name) in [(NIC, "nic0"), (SSD, "ssd0")] {
            // A device whose HWPT the host would not flush is blocked, never stale.
            let fresh = |want: Option<u64>| if blocked.contains(&name) { None } else { want };
            let got = dma(&s, dev, iova, 16, false, 0)?;
            prop_assert_eq!(
                got,
                fresh(expected(&s, s1, false)),
                "read after {:?} on {}",
                r,
                name
            );
            if r.write {
                let got = dma(&s, dev, iova + 64, 16, true, r.slot as u8)?;
                let want = fresh(expected(&s, s1, true).map(|g| g + 64));
                prop_assert_eq!(got, want, "write after {:?} on {}", r, name);
            }
        }
        if !blocked.is_empty() {
            // The guest's next PASID-cache invalidation gives the device a fresh HWPT.
            let fs = FirstStage::new(root, 4);
            driver
                .set_pasid(GUEST_SID, 0, GuestPasid::FirstStage { fs, did })
                .unwrap();
            for name in ["nic0", "ssd0"] {
                let attached = s.viommu.attachment(name);
                prop_assert!(
                    matches!(attached, Some(Attachment::Nested { .. })),
                    "{} stays {:?}",
                    name,
                    attached
                );
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(64))]

    /// (d) After the guest changes a stage-1 leaf and issues an invalidation that covers
    /// it (PASID-based page or PASID, IOTLB page, domain or global, or a move to another
    /// domain) and waits, both devices' next DMA uses the new mapping; the forwarded
    /// entries are valid uAPI covering the guest's range. A device whose HWPT the host
    /// refuses to flush faults instead, until the guest's next PASID-cache invalidation.
    #[test]
    fn forwarded_invalidation_makes_the_next_dma_fresh(
        did in 1u16..8,
        remaps in prop::collection::vec(remap(), 1..16),
    ) {
        forwarding_is_complete(did, remaps)?;
    }
}
