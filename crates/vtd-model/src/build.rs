//! Building translation structures in physical memory, and programming a unit through
//! its registers: what a driver does, packaged for tests, scenarios and benchmarks.
//!
//! Everything here goes through [`PhysMem`] and MMIO only, so a structure built with it is
//! exactly what the hardware would find.

use vtd_spec::addr::{PageSize, table_index};
use vtd_spec::context::{SM_CONTEXT_ENTRY_BYTES, SmContextEntry, SmContextEntryLo};
use vtd_spec::first_stage::FsEntry;
use vtd_spec::inv::RawDescriptor;
use vtd_spec::pasid::{
    Fspm, PASID_DIR_ENTRY_BYTES, PASID_ENTRY_BYTES, PasidDirEntry, PasidEntry, PasidEntryHi,
    PasidEntryLo, Pgtt,
};
use vtd_spec::regs::{GlobalCommand, GlobalStatus, Iqa, QueueIndex, RtAddr, Ttm, offset};
use vtd_spec::root::{ROOT_ENTRY_BYTES, SmRootEntry};
use vtd_spec::second_stage::SsEntry;

use crate::mem::{FlatMem, MemError, PhysMem, SparseMem};
use crate::request::Perms;
use crate::unit::{MmioError, Unit};

/// Hands out zeroed 4 KiB pages of physical memory.
pub trait PageAlloc {
    /// A fresh zeroed, backed 4 KiB page.
    fn alloc_page(&self) -> u64;
}

impl PageAlloc for SparseMem {
    fn alloc_page(&self) -> u64 {
        SparseMem::alloc_page(self)
    }
}

impl PageAlloc for FlatMem {
    fn alloc_page(&self) -> u64 {
        FlatMem::alloc_page(self)
    }
}

/// Why a structure could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// A memory access failed.
    #[error(transparent)]
    Mem(#[from] MemError),
    /// The input address is not aligned to the page size.
    #[error("address {0:#x} is not aligned to the page size")]
    Unaligned(u64),
    /// A larger page already maps part of the range.
    #[error("address {0:#x} is already mapped by a larger page")]
    Overlap(u64),
    /// The page size does not fit the table format and depth.
    #[error("page size {0:?} cannot be mapped at this depth")]
    BadSize(PageSize),
    /// The device has no context entry with a PASID directory.
    #[error("source id {0:#06x} has no scalable-mode context entry with a PASID directory")]
    NoPasidDirectory(u16),
    /// A register access failed.
    #[error(transparent)]
    Mmio(#[from] MmioError),
    /// The invalidation queue stopped with an error (FSTS.IQE).
    #[error("the invalidation queue stopped with FSTS = {0:#x}")]
    QueueError(u32),
}

/// Which paging-structure format a table uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// First-stage (IA-32e) entries, §4.2.
    FirstStage,
    /// Second-stage (VT-d) entries, §5.2.
    SecondStage,
}

/// Rights and extra bits of a leaf.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leaf {
    /// Readable (second stage; first-stage pages are always readable when present).
    pub read: bool,
    /// Writable.
    pub write: bool,
    /// User-accessible (first-stage U/S).
    pub user: bool,
    /// Raw bits OR-ed into the leaf (A/D preset, SNP, XD, ...).
    pub extra: u64,
}

impl Leaf {
    /// Read-write, user-accessible.
    pub const fn read_write() -> Self {
        Self {
            read: true,
            write: true,
            user: true,
            extra: 0,
        }
    }

    /// Read-only, user-accessible.
    pub const fn read_only() -> Self {
        Self {
            read: true,
            write: false,
            user: true,
            extra: 0,
        }
    }

    /// Rights from a [`Perms`] set, user-accessible.
    pub fn from_perms(perms: Perms) -> Self {
        Self {
            read: perms.contains(Perms::READ),
            write: perms.contains(Perms::WRITE),
            user: true,
            extra: 0,
        }
    }

    /// The same leaf with `bits` OR-ed in.
    pub const fn with_extra(mut self, bits: u64) -> Self {
        self.extra |= bits;
        self
    }

    /// The same leaf as supervisor-only (first-stage U/S = 0).
    pub const fn supervisor(mut self) -> Self {
        self.user = false;
        self
    }
}

/// A multi-level page table in memory, built top-down.
///
/// Table addresses are in the table's own address space: host-physical for second-stage
/// and first-stage-only tables, guest-physical for the first stage of a nested
/// translation. `to_phys` maps such an address to where the bytes live, and `alloc`
/// returns a fresh zeroed table in that space.
pub struct PageTable<'a, M> {
    mem: &'a M,
    format: Format,
    levels: u8,
    root: u64,
    alloc: Box<dyn FnMut() -> u64 + 'a>,
    to_phys: Box<dyn Fn(u64) -> u64 + 'a>,
}

impl<'a, M: PhysMem> PageTable<'a, M> {
    /// A new, empty table of `levels` levels whose pages live where `to_phys` says.
    pub fn new(
        mem: &'a M,
        format: Format,
        levels: u8,
        mut alloc: impl FnMut() -> u64 + 'a,
        to_phys: impl Fn(u64) -> u64 + 'a,
    ) -> Self {
        let root = alloc();
        Self {
            mem,
            format,
            levels,
            root,
            alloc: Box::new(alloc),
            to_phys: Box::new(to_phys),
        }
    }

    /// An existing table rooted at `root`.
    pub fn open(
        mem: &'a M,
        format: Format,
        levels: u8,
        root: u64,
        alloc: impl FnMut() -> u64 + 'a,
        to_phys: impl Fn(u64) -> u64 + 'a,
    ) -> Self {
        Self {
            mem,
            format,
            levels,
            root,
            alloc: Box::new(alloc),
            to_phys: Box::new(to_phys),
        }
    }

    /// A new table whose addresses are physical addresses from `pages`.
    pub fn physical<A: PageAlloc>(mem: &'a M, pages: &'a A, format: Format, levels: u8) -> Self {
        Self::new(mem, format, levels, move || pages.alloc_page(), |a| a)
    }

    /// An existing table rooted at physical `root`, growing with pages from `pages`.
    pub fn open_physical<A: PageAlloc>(
        mem: &'a M,
        pages: &'a A,
        format: Format,
        levels: u8,
        root: u64,
    ) -> Self {
        Self::open(mem, format, levels, root, move || pages.alloc_page(), |a| a)
    }

    /// Address of the top-level table (FSPTPTR or SSPTPTR).
    pub fn root(&self) -> u64 {
        self.root
    }

    /// Number of levels.
    pub fn levels(&self) -> u8 {
        self.levels
    }

    fn non_leaf(&self, table: u64) -> u64 {
        match self.format {
            Format::FirstStage => FsEntry::table(table, true, true).into_bits(),
            Format::SecondStage => SsEntry::table(table, true, true).into_bits(),
        }
    }

    fn present(&self, value: u64) -> bool {
        match self.format {
            Format::FirstStage => FsEntry::from_bits(value).p(),
            Format::SecondStage => SsEntry::from_bits(value).present(),
        }
    }

    fn is_leaf(&self, value: u64, level: u8) -> bool {
        level == 1 || (level <= 3 && value & (1 << 7) != 0)
    }

    fn leaf_value(&self, output: u64, size: PageSize, leaf: Leaf) -> u64 {
        let bits = match self.format {
            Format::FirstStage => FsEntry::leaf(output, size, leaf.write, leaf.user).into_bits(),
            Format::SecondStage => SsEntry::leaf(output, size, leaf.read, leaf.write).into_bits(),
        };
        bits | leaf.extra
    }

    /// Map `input` to `output` with one leaf of `size`, creating intermediate tables with
    /// full rights. Replaces an existing leaf of the same size.
    pub fn map(
        &mut self,
        input: u64,
        output: u64,
        size: PageSize,
        leaf: Leaf,
    ) -> Result<(), BuildError> {
        if input & size.offset_mask() != 0 || output & size.offset_mask() != 0 {
            return Err(BuildError::Unaligned(input));
        }
        if size.level() > self.levels.min(3) {
            return Err(BuildError::BadSize(size));
        }
        let mut table = self.root;
        for level in (size.level() + 1..=self.levels).rev() {
            let slot = (self.to_phys)(table) + 8 * table_index(input, level);
            let value = self.mem.read_u64(slot)?;
            if self.present(value) {
                if self.is_leaf(value, level) {
                    return Err(BuildError::Overlap(input));
                }
                table = value & FsEntry::ADDR_MASK;
            } else {
                let next = (self.alloc)();
                self.mem.write_u64(slot, self.non_leaf(next))?;
                table = next;
            }
        }
        let slot = (self.to_phys)(table) + 8 * table_index(input, size.level());
        self.mem
            .write_u64(slot, self.leaf_value(output, size, leaf))?;
        Ok(())
    }

    /// Map `[input, input + len)` to `[output, output + len)` with pages of `size`.
    pub fn map_range(
        &mut self,
        input: u64,
        output: u64,
        len: u64,
        size: PageSize,
        leaf: Leaf,
    ) -> Result<(), BuildError> {
        let mut off = 0;
        while off < len {
            self.map(input + off, output + off, size, leaf)?;
            off += size.bytes();
        }
        Ok(())
    }

    /// The entries a walk of `input` reads: (level, physical address of the entry, value),
    /// top first, ending at the leaf or the first non-present entry.
    pub fn path(&self, input: u64) -> Result<Vec<(u8, u64, u64)>, BuildError> {
        let mut out = Vec::new();
        let mut table = self.root;
        for level in (1..=self.levels).rev() {
            let slot = (self.to_phys)(table) + 8 * table_index(input, level);
            let value = self.mem.read_u64(slot)?;
            out.push((level, slot, value));
            if !self.present(value) || self.is_leaf(value, level) {
                break;
            }
            table = value & FsEntry::ADDR_MASK;
        }
        Ok(out)
    }

    /// Physical address and value of the leaf mapping `input`, if present.
    pub fn leaf(&self, input: u64) -> Result<Option<(u64, u64)>, BuildError> {
        let path = self.path(input)?;
        Ok(path
            .last()
            .filter(|(l, _, v)| self.present(*v) && self.is_leaf(*v, *l))
            .map(|&(_, a, v)| (a, v)))
    }

    /// Rewrite the leaf mapping `input` with `f(old)`. Returns false when nothing maps it.
    pub fn update_leaf(&self, input: u64, f: impl FnOnce(u64) -> u64) -> Result<bool, BuildError> {
        match self.leaf(input)? {
            Some((addr, value)) => {
                self.mem.write_u64(addr, f(value))?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Clear the leaf mapping `input`. Returns false when nothing maps it.
    pub fn unmap(&self, input: u64) -> Result<bool, BuildError> {
        self.update_leaf(input, |_| 0)
    }

    /// Table-space addresses of every table on the path to `input`, top first.
    pub fn tables_on_path(&self, input: u64) -> Result<Vec<u64>, BuildError> {
        let path = self.path(input)?;
        let mut tables = vec![self.root];
        for &(level, _, value) in &path {
            if level > 1 && self.present(value) && !self.is_leaf(value, level) {
                tables.push(value & FsEntry::ADDR_MASK);
            }
        }
        Ok(tables)
    }
}

/// Scalable-mode root, context and PASID tables in physical memory.
pub struct ScalableTables<'a, M, A> {
    mem: &'a M,
    pages: &'a A,
    root: u64,
}

impl<'a, M: PhysMem, A: PageAlloc> ScalableTables<'a, M, A> {
    /// An empty root table.
    pub fn new(mem: &'a M, pages: &'a A) -> Self {
        Self {
            mem,
            pages,
            root: pages.alloc_page(),
        }
    }

    /// The tables under an existing root table at `root`.
    pub fn with_root(mem: &'a M, pages: &'a A, root: u64) -> Self {
        Self { mem, pages, root }
    }

    /// Physical address of the root table.
    pub fn root(&self) -> u64 {
        self.root
    }

    /// RTADDR value selecting this root table in scalable mode.
    pub fn rtaddr(&self) -> RtAddr {
        RtAddr::from_table(self.root, Ttm::Scalable)
    }

    /// Physical address of the context entry of `sid`, creating its context table.
    pub fn context_entry_addr(&self, sid: u16) -> Result<u64, BuildError> {
        let (bus, devfn) = ((sid >> 8) as u64, sid as u8);
        let root_addr = self.root + bus * ROOT_ENTRY_BYTES;
        let mut root = SmRootEntry::from_bits(self.mem.read_u128(root_addr)?);
        let (present, mut table) = root.context_table(devfn);
        if !present {
            table = self.pages.alloc_page();
            root = if devfn < 128 {
                root.with_lp(true).with_lctp(table >> 12)
            } else {
                root.with_up(true).with_uctp(table >> 12)
            };
            self.mem.write_u128(root_addr, root.into_bits())?;
        }
        Ok(table + (devfn & 0x7F) as u64 * SM_CONTEXT_ENTRY_BYTES)
    }

    /// Write the context entry of `sid`.
    pub fn set_context(&self, sid: u16, entry: SmContextEntry) -> Result<(), BuildError> {
        let addr = self.context_entry_addr(sid)?;
        self.mem.write_u128(addr + 16, entry.hi)?;
        self.mem.write_u128(addr, entry.lo.into_bits())?;
        Ok(())
    }

    /// Read the context entry of `sid`.
    pub fn context(&self, sid: u16) -> Result<SmContextEntry, BuildError> {
        let addr = self.context_entry_addr(sid)?;
        Ok(SmContextEntry {
            lo: SmContextEntryLo::from_bits(self.mem.read_u128(addr)?),
            hi: self.mem.read_u128(addr + 16)?,
        })
    }

    /// Give `sid` a present context entry with a fresh PASID directory of 2^(pdts+7)
    /// entries, PASIDs allowed, faults reported.
    pub fn add_device(&self, sid: u16, pdts: u8) -> Result<(), BuildError> {
        let dir_pages = ((1u64 << (pdts as u32 + 7)) * PASID_DIR_ENTRY_BYTES).div_ceil(4096);
        // Directory pages must be contiguous; the allocator hands them out in order.
        let dir = self.pages.alloc_page();
        for _ in 1..dir_pages {
            self.pages.alloc_page();
        }
        let lo = SmContextEntryLo::new()
            .with_p(true)
            .with_paside(true)
            .with_pdts(pdts)
            .with_pasiddirptr(dir >> 12);
        self.set_context(sid, SmContextEntry { lo, hi: 0 })
    }

    /// Physical address of the PASID-table entry of (`sid`, `pasid`), creating the PASID
    /// table its directory entry points at.
    pub fn pasid_entry_addr(&self, sid: u16, pasid: u32) -> Result<u64, BuildError> {
        let ctx = self.context(sid)?;
        if !ctx.lo.p() || ctx.pasid_dir() == 0 {
            return Err(BuildError::NoPasidDirectory(sid));
        }
        let dir_addr =
            ctx.pasid_dir() + vtd_spec::pasid::dir_index(pasid) as u64 * PASID_DIR_ENTRY_BYTES;
        let mut pde = PasidDirEntry::from_bits(self.mem.read_u64(dir_addr)?);
        if !pde.p() {
            pde = PasidDirEntry::new()
                .with_p(true)
                .with_smptblptr(self.pages.alloc_page() >> 12);
            self.mem.write_u64(dir_addr, pde.into_bits())?;
        }
        Ok(pde.pasid_table() + vtd_spec::pasid::table_index(pasid) as u64 * PASID_ENTRY_BYTES)
    }

    /// Write the PASID-table entry of (`sid`, `pasid`); the present word goes last, as a
    /// driver must.
    pub fn set_pasid_entry(
        &self,
        sid: u16,
        pasid: u32,
        entry: PasidEntry,
    ) -> Result<(), BuildError> {
        let addr = self.pasid_entry_addr(sid, pasid)?;
        let words = entry.to_words();
        for (i, w) in words.iter().enumerate().skip(1) {
            self.mem.write_u64(addr + 8 * i as u64, *w)?;
        }
        self.mem.write_u64(addr, words[0])?;
        Ok(())
    }

    /// Read the PASID-table entry of (`sid`, `pasid`).
    pub fn pasid_entry(&self, sid: u16, pasid: u32) -> Result<PasidEntry, BuildError> {
        let addr = self.pasid_entry_addr(sid, pasid)?;
        let mut words = [0u64; 8];
        for (i, w) in words.iter_mut().enumerate() {
            *w = self.mem.read_u64(addr + 8 * i as u64)?;
        }
        Ok(PasidEntry::from_words(words))
    }
}

/// A present nested PASID entry (PGTT=011b, §3.3), as a driver writes one for a guest
/// first stage over a host second stage: SSPTPTR `ss_root` (HPA), FSPTPTR `fs_root_gpa`
/// (a GPA, translated by stage 2), first-stage paging mode `fspm`, domain `did`, stage-2
/// address width `aw` (1 = 39-bit, 2 = 48-bit, 3 = 57-bit) and PWSNP=1. Every other field
/// is zero.
pub fn nested_pasid_entry(
    ss_root: u64,
    fs_root_gpa: u64,
    fspm: Fspm,
    did: u16,
    aw: u8,
) -> PasidEntry {
    PasidEntry {
        lo: PasidEntryLo::new()
            .with_p(true)
            .with_aw(aw)
            .with_pgtt(Pgtt::Nested)
            .with_ssptptr(ss_root >> 12)
            .with_did(did)
            .with_pwsnp(true),
        hi: PasidEntryHi::new()
            .with_fspm(fspm)
            .with_fsptptr(fs_root_gpa >> 12),
        rsvd: [0, 0],
    }
}

/// Program the root table and enable translation, as a driver does: RTADDR, GCMD.SRTP,
/// wait for RTPS, GCMD.TE, wait for TES.
pub fn enable_translation<M: PhysMem>(unit: &Unit<M>, rtaddr: RtAddr) -> Result<(), BuildError> {
    unit.mmio_write(offset::RTADDR, 8, rtaddr.into_bits())?;
    let status = GlobalStatus::from_bits_retain(unit.mmio_read(offset::GSTS, 4)? as u32);
    let persistent = status & GlobalStatus::PERSISTENT;
    unit.mmio_write(
        offset::GCMD,
        4,
        (persistent.bits() | GlobalCommand::SRTP.bits()) as u64,
    )?;
    unit.mmio_write(
        offset::GCMD,
        4,
        (persistent.bits() | GlobalCommand::TE.bits()) as u64,
    )?;
    Ok(())
}

/// A driver's view of the invalidation queue: descriptors written at the tail, IQT moved,
/// completion awaited with a wait descriptor's status write.
pub struct InvalidationQueue<'a, M, A> {
    unit: &'a Unit<M>,
    pages: &'a A,
    base: u64,
    slots: u64,
    wide: bool,
    tail: u64,
    status: u64,
    next_status: u32,
}

impl<'a, M: PhysMem, A: PageAlloc> InvalidationQueue<'a, M, A> {
    /// Allocate a one-page queue (256-bit descriptors when `wide`) plus a status page,
    /// program IQA and enable queued invalidation.
    pub fn enable(unit: &'a Unit<M>, pages: &'a A, wide: bool) -> Result<Self, BuildError> {
        let base = pages.alloc_page();
        let status = pages.alloc_page();
        let iqa = Iqa::new().with_iqa(base >> 12).with_dw(wide).with_qs(0);
        unit.mmio_write(offset::IQT, 8, 0)?;
        unit.mmio_write(offset::IQA, 8, iqa.into_bits())?;
        let gsts = GlobalStatus::from_bits_retain(unit.mmio_read(offset::GSTS, 4)? as u32)
            & GlobalStatus::PERSISTENT;
        unit.mmio_write(
            offset::GCMD,
            4,
            (gsts.bits() | GlobalCommand::QIE.bits()) as u64,
        )?;
        Ok(Self {
            unit,
            pages,
            base,
            slots: iqa.slots(),
            wide,
            tail: 0,
            status,
            next_status: 1,
        })
    }

    /// Queue `descs` and move IQT once.
    pub fn submit(&mut self, descs: &[RawDescriptor]) -> Result<(), BuildError> {
        let mem = self.unit.mem();
        let size = if self.wide { 32 } else { 16 };
        for d in descs {
            let slot = self.base + self.tail * size;
            mem.write_u128(slot, d.lo)?;
            if self.wide {
                mem.write_u128(slot + 16, d.hi)?;
            }
            self.tail = (self.tail + 1) % self.slots;
        }
        let tail = QueueIndex::from_byte_offset(self.tail * size);
        self.unit.mmio_write(offset::IQT, 8, tail.into_bits())?;
        Ok(())
    }

    /// Queue `descs` followed by a wait descriptor with a status write, and check the
    /// status arrived (the model completes descriptors synchronously).
    pub fn submit_and_wait(&mut self, descs: &[RawDescriptor]) -> Result<(), BuildError> {
        let data = self.next_status;
        self.next_status = self.next_status.wrapping_add(1);
        let wait = vtd_spec::inv::InvWaitDesc::new()
            .with_sw(true)
            .with_fence(true)
            .with_status_data(data)
            .with_status_addr(self.status >> 2);
        let mut all = descs.to_vec();
        all.push(RawDescriptor {
            lo: wait.into_bits(),
            hi: 0,
        });
        self.submit(&all)?;
        let fsts = self.unit.mmio_read(offset::FSTS, 4)? as u32;
        if fsts & (1 << 4) != 0 {
            return Err(BuildError::QueueError(fsts));
        }
        let got = self.unit.mem().read_u64(self.status & !7)?;
        let got = if self.status & 4 != 0 {
            (got >> 32) as u32
        } else {
            got as u32
        };
        if got != data {
            return Err(BuildError::QueueError(fsts));
        }
        Ok(())
    }

    /// The page allocator the queue was built with.
    pub fn pages(&self) -> &'a A {
        self.pages
    }
}
