//! Fixtures for the fault, translation-type, permission, fault-recording and register
//! tests: scalable-mode units whose device has first-stage-only, second-stage-only or
//! pass-through PASID entries with tables at host-physical addresses, legacy-mode units
//! whose root and context entries are written by hand, a decoder for fault-recording
//! registers as a guest reads them over MMIO, an interrupt sink that keeps every MSI, and
//! physical memory whose compare-exchange fails.
#![allow(dead_code)]

use std::sync::Mutex;

use vtd_model::build::{Format, Leaf, PageAlloc, PageTable, ScalableTables, enable_translation};
use vtd_model::cache::CacheConfig;
use vtd_model::config::UnitConfig;
use vtd_model::fault::Fault;
use vtd_model::mem::{MemError, PhysMem, SparseMem};
use vtd_model::regs::{EventKind, Msi};
use vtd_model::request::{Request, Translation};
use vtd_model::unit::{InterruptSink, Unit};
use vtd_spec::addr::{PageSize, ss_levels};
use vtd_spec::context::{LegacyContextEntry, LegacyTt, SmContextEntry};
use vtd_spec::pasid::{Fspm, PasidEntry, PasidEntryHi, PasidEntryLo, Pgtt};
use vtd_spec::regs::{RtAddr, Ttm, offset};
use vtd_spec::root::LegacyRootEntry;

/// The device under test: bus 0, device 3, function 0.
pub const SID: u16 = 0x0018;
/// A second device on the same bus: bus 0, device 4, function 0.
pub const OTHER_SID: u16 = 0x0020;
/// The PASID used for requests with PASID.
pub const PASID: u32 = 7;
/// Domain id of every PASID entry and legacy context entry the fixtures write.
pub const DID: u16 = 5;
/// A physical address that is never backed: the allocator hands out pages from 1 MiB up
/// and the fixtures use only a few dozen.
pub const UNBACKED: u64 = 0x7000_0000;
/// An input address with a different index at every level of a 4-level walk.
pub const IOVA: u64 = 0x7_4020_3000;
/// A host-physical output page; translation never touches the data page, so it need not
/// be backed.
pub const HPA: u64 = 0x4_5678_9000;

/// The default (Sapphire Rapids-like, erratum off) unit with every cache off.
pub fn config() -> UnitConfig {
    UnitConfig {
        caches: CacheConfig::disabled(),
        ..UnitConfig::default()
    }
}

fn fspm(levels: u8) -> Fspm {
    match levels {
        5 => Fspm::Level5,
        _ => Fspm::Level4,
    }
}

/// PGTT=001b over the first-stage table at host-physical `fs_root`; PWSNP=1, SRE=0.
pub fn fs_only_entry(fs_root: u64, levels: u8) -> PasidEntry {
    PasidEntry {
        lo: PasidEntryLo::new()
            .with_p(true)
            .with_aw(2)
            .with_pgtt(Pgtt::FirstStage)
            .with_did(DID)
            .with_pwsnp(true),
        hi: PasidEntryHi::new()
            .with_fspm(fspm(levels))
            .with_fsptptr(fs_root >> 12),
        rsvd: [0, 0],
    }
}

/// PGTT=010b over the second-stage table at `ss_root` with address width `aw`; PWSNP=1.
pub fn ss_only_entry(ss_root: u64, aw: u8) -> PasidEntry {
    PasidEntry {
        lo: PasidEntryLo::new()
            .with_p(true)
            .with_aw(aw)
            .with_pgtt(Pgtt::SecondStage)
            .with_ssptptr(ss_root >> 12)
            .with_did(DID)
            .with_pwsnp(true),
        hi: PasidEntryHi::new(),
        rsvd: [0, 0],
    }
}

/// PGTT=100b.
pub fn pass_through_entry() -> PasidEntry {
    PasidEntry {
        lo: PasidEntryLo::new()
            .with_p(true)
            .with_aw(2)
            .with_pgtt(Pgtt::PassThrough)
            .with_did(DID),
        hi: PasidEntryHi::new(),
        rsvd: [0, 0],
    }
}

/// A scalable-mode unit whose device [`SID`] has a present context entry with a 128-entry
/// PASID directory (PDTS=0), PASIDs enabled, translation enabled. The constructors for a
/// translation type write the same PASID entry for PASID 0 (requests without PASID) and
/// [`PASID`].
pub struct Sm<M: PhysMem + PageAlloc = SparseMem> {
    pub unit: Unit<M>,
    pub root: u64,
    /// First-stage table root (host physical), when built by [`Sm::first_stage`].
    pub fs_root: u64,
    pub fs_levels: u8,
    /// Second-stage table root, when built by [`Sm::second_stage`].
    pub ss_root: u64,
    pub ss_levels: u8,
}

impl Sm<SparseMem> {
    /// Device present, no PASID entry.
    pub fn bare(config: UnitConfig) -> Self {
        Self::bare_on(Unit::new(config, SparseMem::new()).expect("valid config"))
    }

    /// PASID 0 and [`PASID`] translate first stage only through `levels` levels.
    pub fn first_stage(config: UnitConfig, levels: u8) -> Self {
        Self::first_stage_on(
            Unit::new(config, SparseMem::new()).expect("valid config"),
            levels,
        )
    }

    /// PASID 0 and [`PASID`] translate second stage only with address width `aw`.
    pub fn second_stage(config: UnitConfig, aw: u8) -> Self {
        Self::second_stage_on(
            Unit::new(config, SparseMem::new()).expect("valid config"),
            aw,
        )
    }

    /// PASID 0 and [`PASID`] pass through.
    pub fn pass_through(config: UnitConfig) -> Self {
        let sm = Self::bare(config);
        sm.set_pasid_entry_for_both(pass_through_entry());
        sm
    }
}

impl<M: PhysMem + PageAlloc> Sm<M> {
    /// Device present, no PASID entry, over `unit`.
    pub fn bare_on(unit: Unit<M>) -> Self {
        let root = {
            let tables = ScalableTables::new(unit.mem(), unit.mem());
            tables.add_device(SID, 0).expect("context entry");
            tables.root()
        };
        enable_translation(&unit, RtAddr::from_table(root, Ttm::Scalable)).expect("mmio");
        Self {
            unit,
            root,
            fs_root: 0,
            fs_levels: 0,
            ss_root: 0,
            ss_levels: 0,
        }
    }

    /// First-stage-only PASID entries over `unit`.
    pub fn first_stage_on(unit: Unit<M>, levels: u8) -> Self {
        let mut sm = Self::bare_on(unit);
        sm.fs_root = sm.mem().alloc_page();
        sm.fs_levels = levels;
        sm.set_pasid_entry_for_both(fs_only_entry(sm.fs_root, levels));
        sm
    }

    /// Second-stage-only PASID entries over `unit`.
    pub fn second_stage_on(unit: Unit<M>, aw: u8) -> Self {
        let mut sm = Self::bare_on(unit);
        sm.ss_root = sm.mem().alloc_page();
        sm.ss_levels = ss_levels(aw);
        sm.set_pasid_entry_for_both(ss_only_entry(sm.ss_root, aw));
        sm
    }

    pub fn mem(&self) -> &M {
        self.unit.mem()
    }

    pub fn translate(&self, req: &Request) -> Result<Translation, Fault> {
        self.unit.translate(req)
    }

    pub fn tables(&self) -> ScalableTables<'_, M, M> {
        ScalableTables::with_root(self.mem(), self.mem(), self.root)
    }

    /// The first-stage table (host-physical addresses).
    pub fn fs(&self) -> PageTable<'_, M> {
        PageTable::open_physical(
            self.mem(),
            self.mem(),
            Format::FirstStage,
            self.fs_levels,
            self.fs_root,
        )
    }

    /// The second-stage table.
    pub fn ss(&self) -> PageTable<'_, M> {
        PageTable::open_physical(
            self.mem(),
            self.mem(),
            Format::SecondStage,
            self.ss_levels,
            self.ss_root,
        )
    }

    /// Map `input` to `output` in the first-stage table.
    pub fn map_fs(&self, input: u64, output: u64, size: PageSize, leaf: Leaf) {
        self.fs().map(input, output, size, leaf).expect("map");
    }

    /// Map `input` to `output` in the second-stage table.
    pub fn map_ss(&self, input: u64, output: u64, size: PageSize, leaf: Leaf) {
        self.ss().map(input, output, size, leaf).expect("map");
    }

    /// Give `sid` a context entry and PASID directory like [`SID`]'s.
    pub fn add_device(&self, sid: u16) {
        self.tables().add_device(sid, 0).expect("context entry");
    }

    /// Physical address of the root entry of `bus`.
    pub fn root_entry_addr(&self, bus: u8) -> u64 {
        self.root + 16 * bus as u64
    }

    /// Physical address of the context entry of `sid`.
    pub fn context_entry_addr(&self, sid: u16) -> u64 {
        self.tables()
            .context_entry_addr(sid)
            .expect("context table")
    }

    /// Rewrite the context entry of `sid` with `f(old)`.
    pub fn update_context(&self, sid: u16, f: impl FnOnce(SmContextEntry) -> SmContextEntry) {
        let tables = self.tables();
        let old = tables.context(sid).expect("context entry");
        tables.set_context(sid, f(old)).expect("context entry");
    }

    /// Physical address of the PASID-directory entry of `pasid` for [`SID`].
    pub fn pasid_dir_entry_addr(&self, pasid: u32) -> u64 {
        let ctx = self.tables().context(SID).expect("context entry");
        ctx.pasid_dir() + 8 * vtd_spec::pasid::dir_index(pasid) as u64
    }

    /// Physical address of the PASID-table entry of `pasid` for [`SID`].
    pub fn pasid_entry_addr(&self, pasid: u32) -> u64 {
        self.tables()
            .pasid_entry_addr(SID, pasid)
            .expect("PASID table")
    }

    pub fn pasid_entry(&self, pasid: u32) -> PasidEntry {
        self.tables().pasid_entry(SID, pasid).expect("PASID entry")
    }

    pub fn set_pasid_entry(&self, pasid: u32, entry: PasidEntry) {
        self.tables()
            .set_pasid_entry(SID, pasid, entry)
            .expect("PASID entry");
    }

    /// Write `entry` for PASID 0 and for [`PASID`].
    pub fn set_pasid_entry_for_both(&self, entry: PasidEntry) {
        self.set_pasid_entry(0, entry);
        self.set_pasid_entry(PASID, entry);
    }

    /// Rewrite the PASID entries of PASID 0 and [`PASID`] with `f(old)`.
    pub fn update_pasid_entries(&self, f: impl Fn(PasidEntry) -> PasidEntry) {
        self.set_pasid_entry(0, f(self.pasid_entry(0)));
        self.set_pasid_entry(PASID, f(self.pasid_entry(PASID)));
    }

    /// Physical address of the entry at `level` on the first-stage path of `input`.
    pub fn fs_entry_addr(&self, input: u64, level: u8) -> u64 {
        path_entry(&self.fs(), input, level)
    }

    /// Physical address of the entry at `level` on the second-stage path of `input`.
    pub fn ss_entry_addr(&self, input: u64, level: u8) -> u64 {
        path_entry(&self.ss(), input, level)
    }

    /// Read-modify-write the 64-bit word at physical `addr`.
    pub fn modify_u64(&self, addr: u64, f: impl FnOnce(u64) -> u64) {
        let old = self.mem().read_u64(addr).expect("backed");
        self.mem().write_u64(addr, f(old)).expect("backed");
    }
}

/// Physical address of the entry at `level` on the path of `input` in `table`.
pub fn path_entry<M: PhysMem>(table: &PageTable<'_, M>, input: u64, level: u8) -> u64 {
    let path = table.path(input).expect("path");
    path.iter()
        .find(|(l, _, _)| *l == level)
        .map(|&(_, addr, _)| addr)
        .expect("level on the path")
}

/// A legacy-mode unit (RTADDR.TTM=00b) whose device [`SID`] has a hand-written root entry
/// and context entry: TT=00b, AW=2 (4-level second stage), DID [`DID`].
pub struct Legacy {
    pub unit: Unit<SparseMem>,
    pub root: u64,
    pub context_table: u64,
    pub ss_root: u64,
}

/// A legacy context entry: present, TT=00b, AW=2, DID [`DID`], second stage at `ss_root`.
pub fn legacy_context(ss_root: u64) -> LegacyContextEntry {
    LegacyContextEntry::new()
        .with_p(true)
        .with_tt(LegacyTt::SecondStage)
        .with_slptptr(ss_root >> 12)
        .with_aw(2)
        .with_did(DID)
}

impl Legacy {
    pub fn new(config: UnitConfig) -> Self {
        let unit = Unit::new(config, SparseMem::new()).expect("valid config");
        let (root, context_table, ss_root) = {
            let mem = unit.mem();
            let root = mem.alloc_page();
            let context_table = mem.alloc_page();
            let ss_root = mem.alloc_page();
            let root_entry = LegacyRootEntry::new()
                .with_p(true)
                .with_ctp(context_table >> 12);
            mem.write_u128(root + 16 * (SID >> 8) as u64, root_entry.into_bits())
                .expect("backed");
            mem.write_u128(
                context_table + 16 * (SID & 0xFF) as u64,
                legacy_context(ss_root).into_bits(),
            )
            .expect("backed");
            (root, context_table, ss_root)
        };
        enable_translation(&unit, RtAddr::from_table(root, Ttm::Legacy)).expect("mmio");
        Self {
            unit,
            root,
            context_table,
            ss_root,
        }
    }

    pub fn mem(&self) -> &SparseMem {
        self.unit.mem()
    }

    pub fn translate(&self, req: &Request) -> Result<Translation, Fault> {
        self.unit.translate(req)
    }

    pub fn root_entry_addr(&self) -> u64 {
        self.root + 16 * (SID >> 8) as u64
    }

    pub fn context_entry_addr(&self) -> u64 {
        self.context_table + 16 * (SID & 0xFF) as u64
    }

    pub fn set_root_entry(&self, value: u128) {
        self.mem()
            .write_u128(self.root_entry_addr(), value)
            .expect("backed");
    }

    pub fn set_context(&self, entry: LegacyContextEntry) {
        self.mem()
            .write_u128(self.context_entry_addr(), entry.into_bits())
            .expect("backed");
    }

    /// The second-stage table (4 levels).
    pub fn ss(&self) -> PageTable<'_, SparseMem> {
        PageTable::open_physical(self.mem(), self.mem(), Format::SecondStage, 4, self.ss_root)
    }

    pub fn map(&self, input: u64, output: u64, size: PageSize, leaf: Leaf) {
        self.ss().map(input, output, size, leaf).expect("map");
    }
}

/// A unit with translation enabled on a root table at `rtaddr` that nothing was built for.
pub fn unit_with_rtaddr(config: UnitConfig, rtaddr: RtAddr) -> Unit<SparseMem> {
    let unit = Unit::new(config, SparseMem::new()).expect("valid config");
    enable_translation(&unit, rtaddr).expect("mmio");
    unit
}

/// One fault-recording register as software reads it: two 8-byte MMIO reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frcd {
    /// Bits 63:0.
    pub lo: u64,
    /// Bits 127:64.
    pub hi: u64,
}

// Field positions of §1.9, relative to the upper qword (absolute bit − 64).
impl Frcd {
    /// FI as the faulting page address (bits 63:12 in place).
    pub fn fault_page(&self) -> u64 {
        self.lo & !0xFFF
    }
    /// SID, bits 79:64.
    pub fn sid(&self) -> u16 {
        self.hi as u16
    }
    /// T2, bit 92.
    pub fn t2(&self) -> bool {
        self.hi >> 28 & 1 == 1
    }
    /// PRIV, bit 93.
    pub fn privileged(&self) -> bool {
        self.hi >> 29 & 1 == 1
    }
    /// EXE, bit 94.
    pub fn exe(&self) -> bool {
        self.hi >> 30 & 1 == 1
    }
    /// PP, bit 95.
    pub fn pp(&self) -> bool {
        self.hi >> 31 & 1 == 1
    }
    /// FR, bits 103:96.
    pub fn fr(&self) -> u8 {
        (self.hi >> 32) as u8
    }
    /// PV, bits 123:104.
    pub fn pv(&self) -> u32 {
        (self.hi >> 40) as u32 & 0xF_FFFF
    }
    /// AT, bits 125:124.
    pub fn at(&self) -> u8 {
        (self.hi >> 60) as u8 & 3
    }
    /// T1, bit 126.
    pub fn t1(&self) -> bool {
        self.hi >> 62 & 1 == 1
    }
    /// F, bit 127.
    pub fn f(&self) -> bool {
        self.hi >> 63 & 1 == 1
    }
}

/// MMIO offset of fault-recording register `index`.
pub fn frcd_offset<M: PhysMem>(unit: &Unit<M>, index: u16) -> u64 {
    vtd_spec::regs::frcd_offset(unit.config().cap.fro(), index)
}

/// Read fault-recording register `index` over MMIO.
pub fn read_frcd<M: PhysMem>(unit: &Unit<M>, index: u16) -> Frcd {
    let off = frcd_offset(unit, index);
    Frcd {
        lo: unit.mmio_read(off, 8).expect("mmio"),
        hi: unit.mmio_read(off + 8, 8).expect("mmio"),
    }
}

/// Clear FRCD\[index\].F by writing 1 to bit 127 (bit 31 of the record's last dword).
pub fn clear_frcd<M: PhysMem>(unit: &Unit<M>, index: u16) {
    unit.mmio_write(frcd_offset(unit, index) + 12, 4, 1 << 31)
        .expect("mmio");
}

/// FSTS_REG bits (§1.8).
pub const FSTS_PFO: u32 = 1 << 0;
pub const FSTS_PPF: u32 = 1 << 1;
pub const FSTS_IQE: u32 = 1 << 4;

/// FSTS as software reads it.
pub fn fsts<M: PhysMem>(unit: &Unit<M>) -> u32 {
    unit.mmio_read(offset::FSTS, 4).expect("mmio") as u32
}

/// FSTS.FRI, bits 15:8.
pub fn fri<M: PhysMem>(unit: &Unit<M>) -> u8 {
    (fsts(unit) >> 8) as u8
}

/// FECTL bits: IM (31) and IP (30).
pub const FECTL_IM: u32 = 1 << 31;
pub const FECTL_IP: u32 = 1 << 30;

/// FECTL as software reads it.
pub fn fectl<M: PhysMem>(unit: &Unit<M>) -> u32 {
    unit.mmio_read(offset::FECTL, 4).expect("mmio") as u32
}

/// Every MSI the unit sent, in order.
#[derive(Default)]
pub struct RecordingSink {
    events: Mutex<Vec<(EventKind, Msi)>>,
}

impl RecordingSink {
    pub fn events(&self) -> Vec<(EventKind, Msi)> {
        self.events.lock().unwrap().clone()
    }

    /// The fault-event MSIs only.
    pub fn fault_msis(&self) -> Vec<Msi> {
        self.events()
            .into_iter()
            .filter(|(kind, _)| *kind == EventKind::Fault)
            .map(|(_, msi)| msi)
            .collect()
    }
}

impl InterruptSink for RecordingSink {
    fn deliver(&self, kind: EventKind, msi: Msi) {
        self.events.lock().unwrap().push((kind, msi));
    }
}

/// How [`CasFails`] answers a compare-exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CasFailure {
    /// The access fails as if the memory had gone away.
    MemoryError,
    /// The word reads back changed in a software-owned bit every time (bit 9, ignored by
    /// both paging formats), as if software kept rewriting the entry.
    AlwaysChanged,
}

/// Sparse memory whose compare-exchange (the A/D update) always fails; loads and stores
/// work.
pub struct CasFails {
    pub inner: SparseMem,
    pub failure: CasFailure,
}

impl CasFails {
    pub fn new(failure: CasFailure) -> Self {
        Self {
            inner: SparseMem::new(),
            failure,
        }
    }
}

impl PhysMem for CasFails {
    fn read_u64(&self, addr: u64) -> Result<u64, MemError> {
        self.inner.read_u64(addr)
    }

    fn write_u64(&self, addr: u64, value: u64) -> Result<(), MemError> {
        self.inner.write_u64(addr, value)
    }

    fn compare_exchange_u64(
        &self,
        addr: u64,
        current: u64,
        _new: u64,
    ) -> Result<Result<u64, u64>, MemError> {
        match self.failure {
            CasFailure::MemoryError => Err(MemError::Unbacked { addr }),
            CasFailure::AlwaysChanged => Ok(Err(current ^ 1 << 9)),
        }
    }

    fn write_u32(&self, addr: u64, value: u32) -> Result<(), MemError> {
        self.inner.write_u32(addr, value)
    }

    fn read_bytes(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemError> {
        self.inner.read_bytes(addr, buf)
    }

    fn write_bytes(&self, addr: u64, data: &[u8]) -> Result<(), MemError> {
        self.inner.write_bytes(addr, data)
    }
}

impl PageAlloc for CasFails {
    fn alloc_page(&self) -> u64 {
        self.inner.alloc_page()
    }
}
