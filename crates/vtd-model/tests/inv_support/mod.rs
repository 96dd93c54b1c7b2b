//! Fixture for the cache and invalidation tests (`invalidation.rs`, `stale.rs`,
//! `queue_errors.rs`): one scalable-mode unit with caches on, an interrupt recorder, and
//! helpers to create PASID entries of each translation type, change their tables the way
//! a driver would, and build invalidation descriptors.
//!
//! Every translation space of one rig shares the same "domain" second-stage table, which
//! maps guest-physical memory `[0, GUEST_SIZE)` at `GUEST_BASE`. Spaces may also share
//! first-stage tables ([`Rig::alias`]): a table change is then seen by every space that
//! shares it, so an invalidation that covers one of them and not the other shows, side by
//! side, what it dropped (fresh translation) and what survived (stale translation).
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use vtd_model::build::{
    Format, InvalidationQueue, Leaf, PageTable, ScalableTables, enable_translation,
};
use vtd_model::config::UnitConfig;
use vtd_model::mem::{PhysMem, SparseMem};
use vtd_model::regs::{EventKind, Msi};
use vtd_model::request::{Request, Translation, TranslationKind};
use vtd_model::unit::{InterruptSink, Unit};
use vtd_model::{Fault, cache::CacheOccupancy, stats::Stats};
use vtd_spec::addr::PageSize;
use vtd_spec::context::SmContextEntry;
use vtd_spec::fault::FaultReason;
use vtd_spec::first_stage::FsEntry;
use vtd_spec::pasid::{Fspm, PasidEntry, PasidEntryHi, PasidEntryLo, Pgtt};
use vtd_spec::regs::offset;
use vtd_spec::second_stage::SsEntry;

/// Guest-physical address `g` lives at host-physical `g + GUEST_BASE`.
pub const GUEST_BASE: u64 = 0x10_0000_0000;
/// Guest memory backed and mapped 1:1 (plus `GUEST_BASE`) by the domain second stage.
pub const GUEST_SIZE: u64 = 16 << 20;
/// Guest-physical pool for first-stage tables of nested spaces.
pub const GUEST_TABLES: u64 = 0x0010_0000;
/// Guest-physical data pages that nested first stages map to (`GUEST_DATA + n * 4 KiB`).
pub const GUEST_DATA: u64 = 0x0080_0000;
/// Host-physical data pages that first-stage-only and second-stage-only spaces map to.
pub const HOST_DATA: u64 = 0x2_0000_0000;

/// The `n`th guest data page (a GPA).
pub const fn gpa(n: u64) -> u64 {
    GUEST_DATA + n * 4096
}

/// The `n`th host data page (an HPA).
pub const fn hpa(n: u64) -> u64 {
    HOST_DATA + n * 4096
}

/// Records every MSI the unit sends.
#[derive(Default)]
pub struct Recorder(Mutex<Vec<(EventKind, Msi)>>);

impl InterruptSink for Recorder {
    fn deliver(&self, kind: EventKind, msi: Msi) {
        self.0.lock().unwrap().push((kind, msi));
    }
}

impl Recorder {
    /// Every MSI delivered so far.
    pub fn events(&self) -> Vec<(EventKind, Msi)> {
        self.0.lock().unwrap().clone()
    }
}

/// The PGTT of a space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// PGTT=001b: first-stage tables in host memory.
    FirstStage,
    /// PGTT=010b: the domain second stage.
    SecondStage,
    /// PGTT=011b: first-stage tables in guest memory over the domain second stage.
    Nested,
}

/// One PASID entry of one device, and the tables it points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Space {
    pub sid: u16,
    /// PASID 0 is used by requests-without-PASID (the unit has no ECAP.RPS).
    pub pasid: u32,
    pub did: u16,
    pub kind: Kind,
    /// FSPTPTR: HPA for first stage, GPA for nested; 0 for second stage.
    pub fs_root: u64,
    /// SSPTPTR (the domain second stage).
    pub ss_root: u64,
}

impl Space {
    /// A read of `iova` from this space: with the PASID, or without one for PASID 0.
    pub fn read(&self, iova: u64) -> Request {
        let req = Request::read(self.sid, iova);
        if self.pasid == 0 {
            req
        } else {
            req.with_pasid(self.pasid)
        }
    }

    /// Host-physical address of an output of this space's leaf tables (a GPA for nested
    /// spaces, already an HPA otherwise).
    pub fn hpa_of(&self, out: u64) -> u64 {
        match self.kind {
            Kind::Nested => out + GUEST_BASE,
            _ => out,
        }
    }
}

/// One unit with caches enabled, its tables and an interrupt recorder.
pub struct Rig {
    pub unit: Unit<SparseMem>,
    pub irq: Arc<Recorder>,
    pub root: u64,
    pub domain_ss: u64,
    next_guest_table: AtomicU64,
}

impl Default for Rig {
    fn default() -> Self {
        Self::new()
    }
}

impl Rig {
    /// `UnitConfig::default()`: Sapphire Rapids-like, caches on, CAP.CM=0.
    pub fn new() -> Self {
        Self::with_config(UnitConfig::default())
    }

    /// A rig over a unit built from `config`; translation enabled, queued invalidation off.
    pub fn with_config(config: UnitConfig) -> Self {
        let mem = SparseMem::new();
        mem.back(GUEST_BASE, GUEST_SIZE);
        let irq = Arc::new(Recorder::default());
        let unit = Unit::new(config, mem)
            .expect("valid config")
            .with_interrupt_sink(irq.clone());
        let (root, domain_ss) = {
            let mem = unit.mem();
            let tables = ScalableTables::new(mem, mem);
            let mut ss = PageTable::physical(mem, mem, Format::SecondStage, 4);
            ss.map_range(
                0,
                GUEST_BASE,
                GUEST_SIZE,
                PageSize::Size4K,
                Leaf::read_write(),
            )
            .unwrap();
            enable_translation(&unit, tables.rtaddr()).unwrap();
            (tables.root(), ss.root())
        };
        Self {
            unit,
            irq,
            root,
            domain_ss,
            next_guest_table: AtomicU64::new(GUEST_TABLES),
        }
    }

    pub fn mem(&self) -> &SparseMem {
        self.unit.mem()
    }

    pub fn tables(&self) -> ScalableTables<'_, SparseMem, SparseMem> {
        ScalableTables::with_root(self.mem(), self.mem(), self.root)
    }

    /// Give `sid` a context entry with a PASID directory, unless it has one.
    pub fn device(&self, sid: u16) {
        let tables = self.tables();
        if !tables.context(sid).unwrap().lo.p() {
            tables.add_device(sid, 0).unwrap();
        }
    }

    /// Make `sid` an ATS endpoint: set DTE in its context entry (ECAP.DT is set).
    pub fn enable_ats(&self, sid: u16) {
        self.device(sid);
        let tables = self.tables();
        let ctx = tables.context(sid).unwrap();
        tables
            .set_context(
                sid,
                SmContextEntry {
                    lo: ctx.lo.with_dte(true),
                    hi: ctx.hi,
                },
            )
            .unwrap();
    }

    /// Clear P in the context entry of `sid` (device detached), leaving the rest.
    pub fn clear_context(&self, sid: u16) {
        self.set_context_present(sid, false);
    }

    /// Set or clear P in the context entry of `sid`, leaving the rest.
    pub fn set_context_present(&self, sid: u16, present: bool) {
        let tables = self.tables();
        let ctx = tables.context(sid).unwrap();
        tables
            .set_context(
                sid,
                SmContextEntry {
                    lo: ctx.lo.with_p(present),
                    hi: ctx.hi,
                },
            )
            .unwrap();
    }

    fn guest_page(&self) -> u64 {
        self.next_guest_table.fetch_add(4096, Ordering::Relaxed)
    }

    /// A first-stage-only space (PGTT=001b) with a fresh, empty first-stage table.
    pub fn first_stage(&self, sid: u16, pasid: u32, did: u16) -> Space {
        let space = Space {
            sid,
            pasid,
            did,
            kind: Kind::FirstStage,
            fs_root: self.mem().alloc_page(),
            ss_root: self.domain_ss,
        };
        self.write_pasid_entry(&space);
        space
    }

    /// A second-stage-only space (PGTT=010b) over the domain second stage.
    pub fn second_stage(&self, sid: u16, pasid: u32, did: u16) -> Space {
        let space = Space {
            sid,
            pasid,
            did,
            kind: Kind::SecondStage,
            fs_root: 0,
            ss_root: self.domain_ss,
        };
        self.write_pasid_entry(&space);
        space
    }

    /// A nested space (PGTT=011b): a fresh first-stage table in guest memory over the
    /// domain second stage.
    pub fn nested(&self, sid: u16, pasid: u32, did: u16) -> Space {
        let space = Space {
            sid,
            pasid,
            did,
            kind: Kind::Nested,
            fs_root: self.guest_page(),
            ss_root: self.domain_ss,
        };
        self.write_pasid_entry(&space);
        space
    }

    /// `space` with a fresh, empty first-stage table (host memory for first stage, guest
    /// memory for nested). The PASID entry in memory is not rewritten.
    pub fn with_new_first_stage(&self, space: &Space) -> Space {
        let fs_root = match space.kind {
            Kind::FirstStage => self.mem().alloc_page(),
            Kind::Nested => self.guest_page(),
            Kind::SecondStage => panic!("a second-stage-only space has no first stage"),
        };
        Space { fs_root, ..*space }
    }

    /// A space of `sid`/`pasid`/`did` sharing the tables of `other`.
    pub fn alias(&self, other: &Space, sid: u16, pasid: u32, did: u16) -> Space {
        let space = Space {
            sid,
            pasid,
            did,
            ..*other
        };
        self.write_pasid_entry(&space);
        space
    }

    /// The PASID entry a space describes.
    pub fn pasid_entry(space: &Space) -> PasidEntry {
        let pgtt = match space.kind {
            Kind::FirstStage => Pgtt::FirstStage,
            Kind::SecondStage => Pgtt::SecondStage,
            Kind::Nested => Pgtt::Nested,
        };
        let lo = PasidEntryLo::new()
            .with_p(true)
            .with_aw(2)
            .with_pgtt(pgtt)
            .with_ssptptr(space.ss_root >> 12)
            .with_did(space.did)
            .with_pwsnp(true);
        let hi = PasidEntryHi::new()
            .with_fspm(Fspm::Level4)
            .with_fsptptr(space.fs_root >> 12);
        PasidEntry {
            lo,
            hi,
            rsvd: [0, 0],
        }
    }

    /// (Re)write the PASID entry of `space`, creating the device if needed.
    pub fn write_pasid_entry(&self, space: &Space) {
        self.device(space.sid);
        self.tables()
            .set_pasid_entry(space.sid, space.pasid, Self::pasid_entry(space))
            .unwrap();
    }

    /// Clear P in the PASID entry of `space` (PASID torn down).
    pub fn clear_pasid_entry(&self, space: &Space) {
        let mut entry = Self::pasid_entry(space);
        entry.lo = entry.lo.with_p(false);
        self.tables()
            .set_pasid_entry(space.sid, space.pasid, entry)
            .unwrap();
    }

    /// The table whose leaves map the space's input addresses: the first stage (in host
    /// or guest memory), or the domain second stage.
    pub fn leaf_table(&self, space: &Space) -> PageTable<'_, SparseMem> {
        let mem = self.mem();
        match space.kind {
            Kind::FirstStage => {
                PageTable::open_physical(mem, mem, Format::FirstStage, 4, space.fs_root)
            }
            Kind::SecondStage => self.ss_table(),
            Kind::Nested => {
                let next = &self.next_guest_table;
                PageTable::open(
                    mem,
                    Format::FirstStage,
                    4,
                    space.fs_root,
                    move || next.fetch_add(4096, Ordering::Relaxed),
                    |gpa| gpa + GUEST_BASE,
                )
            }
        }
    }

    /// The domain second stage.
    pub fn ss_table(&self) -> PageTable<'_, SparseMem> {
        let mem = self.mem();
        PageTable::open_physical(mem, mem, Format::SecondStage, 4, self.domain_ss)
    }

    /// Map (or remap) the 4 KiB page `iova` of `space` to `out` (a GPA for nested spaces,
    /// an HPA otherwise), read-write.
    pub fn map(&self, space: &Space, iova: u64, out: u64) {
        self.leaf_table(space)
            .map(iova, out, PageSize::Size4K, Leaf::read_write())
            .unwrap();
    }

    /// Clear the leaf mapping `iova` in `space`.
    pub fn unmap(&self, space: &Space, iova: u64) {
        assert!(self.leaf_table(space).unmap(iova).unwrap());
    }

    /// Point the level-`level` entry on `iova`'s path in the space's leaf table at a
    /// fresh, empty table; later `map`s below it land in the new table, while a
    /// paging-structure cache still holding the old entry leads to the old table.
    pub fn repoint(&self, space: &Space, iova: u64, level: u8) {
        let table = self.leaf_table(space);
        let (_, slot, old) = table
            .path(iova)
            .unwrap()
            .into_iter()
            .find(|&(l, _, _)| l == level)
            .expect("the path reaches that level");
        let value = match space.kind {
            Kind::FirstStage => {
                assert!(FsEntry::from_bits(old).p());
                FsEntry::table(self.mem().alloc_page(), true, true).into_bits()
            }
            Kind::Nested => {
                assert!(FsEntry::from_bits(old).p());
                FsEntry::table(self.guest_page(), true, true).into_bits()
            }
            Kind::SecondStage => {
                assert!(SsEntry::from_bits(old).present());
                SsEntry::table(self.mem().alloc_page(), true, true).into_bits()
            }
        };
        self.mem().write_u64(slot, value).unwrap();
    }

    /// Map the second-stage page of guest-physical `gpa` to host-physical `hpa`.
    pub fn remap_guest_page(&self, gpa: u64, hpa: u64) {
        self.ss_table()
            .map(gpa, hpa, PageSize::Size4K, Leaf::read_write())
            .unwrap();
    }

    /// Translate a read of `iova` from `space`.
    pub fn translate(&self, space: &Space, iova: u64) -> Result<Translation, Fault> {
        self.unit.translate(&space.read(iova))
    }

    /// A read of `iova` from `space` by an ATS endpoint (device-TLB first).
    pub fn ats(&self, space: &Space, iova: u64) -> Result<Translation, Fault> {
        self.unit.translate_ats(&space.read(iova))
    }

    /// (HPA, served from the IOTLB) for a read of `iova` from `space`; panics on a fault.
    pub fn served(&self, space: &Space, iova: u64) -> (u64, bool) {
        let t = self.translate(space, iova).expect("the read translates");
        (t.hpa, t.from_iotlb)
    }

    /// (HPA, kind) for an ATS read of `iova` from `space`; `PreTranslated` means the
    /// device-TLB answered. Panics on a fault.
    pub fn ats_served(&self, space: &Space, iova: u64) -> (u64, TranslationKind) {
        let t = self.ats(space, iova).expect("the ATS read translates");
        (t.hpa, t.kind)
    }

    /// `Ok(())` when a read of `iova` from `space` translates, else the fault reason.
    pub fn outcome(&self, space: &Space, iova: u64) -> Result<(), FaultReason> {
        self.translate(space, iova)
            .map(|_| ())
            .map_err(|f| f.reason)
    }

    /// Enable queued invalidation with a one-page queue (256-bit descriptors if `wide`).
    pub fn queue(&self, wide: bool) -> InvalidationQueue<'_, SparseMem, SparseMem> {
        InvalidationQueue::enable(&self.unit, self.unit.mem(), wide).unwrap()
    }

    pub fn read32(&self, off: u64) -> u32 {
        self.unit.mmio_read(off, 4).unwrap() as u32
    }

    pub fn read64(&self, off: u64) -> u64 {
        self.unit.mmio_read(off, 8).unwrap()
    }

    pub fn write32(&self, off: u64, value: u32) {
        self.unit.mmio_write(off, 4, value as u64).unwrap();
    }

    pub fn write64(&self, off: u64, value: u64) {
        self.unit.mmio_write(off, 8, value).unwrap();
    }

    /// FSTS as software reads it.
    pub fn fsts(&self) -> u32 {
        self.read32(offset::FSTS)
    }

    pub fn stats(&self) -> Stats {
        self.unit.stats()
    }

    pub fn occupancy(&self) -> CacheOccupancy {
        self.unit.cache_occupancy()
    }
}

/// Invalidation descriptors (§8.3), built with the `vtd_spec::inv` types.
pub mod desc {
    use vtd_spec::inv::{
        ContextCacheInvDesc, DevTlbInvDesc, InvWaitDesc, IotlbInvDesc, PasidCacheGranularity,
        PasidCacheInvDesc, PasidDevTlbInvDesc, PasidIotlbGranularity, PasidIotlbInvDesc,
        RawDescriptor,
    };
    use vtd_spec::regs::{CcmdGranularity, IotlbGranularity};

    pub fn raw(lo: u128) -> RawDescriptor {
        RawDescriptor { lo, hi: 0 }
    }

    /// Type 1, G=01.
    pub fn cc_global() -> RawDescriptor {
        raw(ContextCacheInvDesc::new()
            .with_g(CcmdGranularity::Global)
            .into_bits())
    }

    /// Type 1, G=10.
    pub fn cc_domain(did: u16) -> RawDescriptor {
        raw(ContextCacheInvDesc::new()
            .with_g(CcmdGranularity::Domain)
            .with_did(did)
            .into_bits())
    }

    /// Type 1, G=11 with function mask `fm`.
    pub fn cc_device(sid: u16, fm: u8) -> RawDescriptor {
        raw(ContextCacheInvDesc::new()
            .with_g(CcmdGranularity::Device)
            .with_sid(sid)
            .with_fm(fm)
            .into_bits())
    }

    /// Type 7, G=00.
    pub fn pc_domain(did: u16) -> RawDescriptor {
        raw(PasidCacheInvDesc::new()
            .with_g(PasidCacheGranularity::Domain)
            .with_did(did)
            .into_bits())
    }

    /// Type 7, G=01.
    pub fn pc_pasid(did: u16, pasid: u32) -> RawDescriptor {
        raw(PasidCacheInvDesc::new()
            .with_g(PasidCacheGranularity::Pasid)
            .with_did(did)
            .with_pasid(pasid)
            .into_bits())
    }

    /// Type 7, G=11.
    pub fn pc_global() -> RawDescriptor {
        raw(PasidCacheInvDesc::new()
            .with_g(PasidCacheGranularity::Global)
            .into_bits())
    }

    /// Type 2, G=01.
    pub fn iotlb_global() -> RawDescriptor {
        raw(IotlbInvDesc::new()
            .with_g(IotlbGranularity::Global)
            .into_bits())
    }

    /// Type 2, G=10.
    pub fn iotlb_domain(did: u16) -> RawDescriptor {
        raw(IotlbInvDesc::new()
            .with_g(IotlbGranularity::Domain)
            .with_did(did)
            .into_bits())
    }

    /// Type 2, G=11: 2^`am` pages at `addr` in domain `did`.
    pub fn iotlb_page(did: u16, addr: u64, am: u8, ih: bool) -> RawDescriptor {
        raw(IotlbInvDesc::new()
            .with_g(IotlbGranularity::Page)
            .with_did(did)
            .with_am(am)
            .with_ih(ih)
            .with_addr(addr >> 12)
            .into_bits())
    }

    /// Type 6, G=10.
    pub fn piotlb_pasid(did: u16, pasid: u32) -> RawDescriptor {
        raw(PasidIotlbInvDesc::new()
            .with_g(PasidIotlbGranularity::Pasid)
            .with_did(did)
            .with_pasid(pasid)
            .into_bits())
    }

    /// Type 6, G=11: 2^`am` pages at `addr` of `pasid` in domain `did`.
    pub fn piotlb_page(did: u16, pasid: u32, addr: u64, am: u8, ih: bool) -> RawDescriptor {
        raw(PasidIotlbInvDesc::new()
            .with_g(PasidIotlbGranularity::Page)
            .with_did(did)
            .with_pasid(pasid)
            .with_am(am)
            .with_ih(ih)
            .with_addr(addr >> 12)
            .into_bits())
    }

    /// Type 3 with S=0: one 4 KiB page at `addr`.
    pub fn devtlb_page(sid: u16, addr: u64) -> RawDescriptor {
        raw(DevTlbInvDesc::new()
            .with_sid(sid)
            .with_addr(addr >> 12)
            .into_bits())
    }

    /// Type 3 with S=1: ADDR[63:12] = `addr_field`, whose low one-bits encode the size.
    pub fn devtlb_sized(sid: u16, addr_field: u64) -> RawDescriptor {
        raw(DevTlbInvDesc::new()
            .with_sid(sid)
            .with_s(true)
            .with_addr(addr_field)
            .into_bits())
    }

    /// Type 8 with S=0: one 4 KiB page at `addr` of `pasid`.
    pub fn pdevtlb_page(sid: u16, pasid: u32, addr: u64) -> RawDescriptor {
        raw(PasidDevTlbInvDesc::new()
            .with_sid(sid)
            .with_pasid(pasid)
            .with_addr(addr >> 12)
            .into_bits())
    }

    /// Type 8 with G=1, S=1 and ADDR all ones: every address of every PASID of `sid`.
    pub fn pdevtlb_global(sid: u16) -> RawDescriptor {
        raw(PasidDevTlbInvDesc::new()
            .with_sid(sid)
            .with_g(true)
            .with_s(true)
            .with_addr((1 << 52) - 1)
            .into_bits())
    }

    /// Type 5 with SW=1: write `data` to `addr`.
    pub fn wait_status(addr: u64, data: u32) -> RawDescriptor {
        raw(InvWaitDesc::new()
            .with_sw(true)
            .with_status_data(data)
            .with_status_addr(addr >> 2)
            .into_bits())
    }

    /// Type 5 with IF=1 only.
    pub fn wait_interrupt() -> RawDescriptor {
        raw(InvWaitDesc::new().with_intr(true).into_bits())
    }

    /// Type 5 with FN=1 only.
    pub fn wait_fence() -> RawDescriptor {
        raw(InvWaitDesc::new().with_fence(true).into_bits())
    }
}
