//! A scripted guest driver for the vIOMMU: what a guest's intel-iommu driver does, in a
//! few calls — root and context tables, PASID entries, stage-1 page tables in guest
//! memory, and invalidations through the queue. Scenarios, the demo and tests play the
//! guest with it; a real guest would do the same through MMIO and its own memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use vtd_model::Unit;
use vtd_model::build::{
    BuildError, Format, InvalidationQueue, Leaf, PageAlloc, PageTable, ScalableTables,
    enable_translation,
};
use vtd_model::mem::PhysMem;
use vtd_spec::addr::PageSize;
use vtd_spec::inv::{
    PasidCacheGranularity, PasidCacheInvDesc, PasidIotlbGranularity, PasidIotlbInvDesc,
    RawDescriptor,
};
use vtd_spec::pasid::{Fspm, PasidEntry, PasidEntryHi, PasidEntryLo, Pgtt};

use crate::memory::GuestMemory;

/// An address no guest memory has: what the page pool hands out once it is empty, so the
/// next table write fails (with [`GuestError::OutOfTablePages`]) instead of corrupting RAM.
const EXHAUSTED: u64 = 0xFFFF_FFFF_FFFF_F000;

/// PASID-directory size field of the context entries the guest writes: 2^(0+7) directory
/// entries of 64 PASIDs each.
const PDTS: u8 = 0;
/// PASIDs a device's directory covers.
const PASIDS: u32 = 1 << (PDTS as u32 + 7 + vtd_spec::pasid::PASID_PDE_SHIFT);

/// Guest pages for the guest's IOMMU tables: a bump allocator over a GPA range.
#[derive(Debug)]
pub struct GuestPages {
    mem: Arc<GuestMemory>,
    next: AtomicU64,
    end: u64,
    exhausted: AtomicBool,
}

impl GuestPages {
    /// Pages from `[start, start + size)` of guest memory.
    pub fn new(mem: Arc<GuestMemory>, start: u64, size: u64) -> Self {
        Self {
            mem,
            next: AtomicU64::new(start),
            end: start.saturating_add(size),
            exhausted: AtomicBool::new(false),
        }
    }

    /// The pool ran out at some point.
    pub fn exhausted(&self) -> bool {
        self.exhausted.load(Ordering::Relaxed)
    }
}

impl PageAlloc for GuestPages {
    fn alloc_page(&self) -> u64 {
        let page = self.next.fetch_add(4096, Ordering::Relaxed);
        if page.checked_add(4096).is_none_or(|end| end > self.end) {
            self.exhausted.store(true, Ordering::Relaxed);
            return EXHAUSTED;
        }
        // The guest zeroes the page itself, so a pool over ROM or a hole runs dry here.
        if self.mem.write_bytes(page, &[0u8; 4096]).is_err() {
            self.exhausted.store(true, Ordering::Relaxed);
            return EXHAUSTED;
        }
        page
    }
}

/// Why a scripted guest operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GuestError {
    /// The pool of guest pages for IOMMU tables is used up.
    #[error("the guest ran out of pages for its IOMMU tables")]
    OutOfTablePages,
    /// A table or register operation failed.
    #[error("{0}")]
    Build(BuildError),
    /// No stage-1 table of that name.
    #[error("no such guest stage-1 table")]
    NoTable,
    /// The PASID is beyond the PASID directory the guest gives each device.
    #[error("PASID {0:#x} is beyond the guest's PASID directory ({PASIDS} PASIDs)")]
    PasidOutOfRange(u32),
    /// The address mask does not fit a descriptor's 6-bit AM field.
    #[error("address mask {0} does not fit an invalidation descriptor (at most 63)")]
    BadMask(u8),
}

/// The first-stage attributes a guest PASID entry carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FirstStage {
    /// GPA of the stage-1 root (FSPTPTR).
    pub root: u64,
    /// 4 or 5 levels.
    pub levels: u8,
    /// Supervisor requests enabled.
    pub sre: bool,
    /// Write protect for supervisor requests.
    pub wpe: bool,
    /// Extended-accessed flag.
    pub eafe: bool,
}

impl FirstStage {
    /// A stage 1 rooted at GPA `root` with `levels` (4 or 5) levels that serves
    /// user-privilege requests only: SRE, WPE and EAFE clear (§3.3).
    pub const fn new(root: u64, levels: u8) -> Self {
        Self {
            root,
            levels,
            sre: false,
            wpe: false,
            eafe: false,
        }
    }
}

/// What the guest puts in a PASID entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestPasid {
    /// First-stage translation with this table, domain id `did`.
    FirstStage {
        /// The stage 1.
        fs: FirstStage,
        /// Guest domain id.
        did: u16,
    },
    /// Pass-through, domain id `did`.
    PassThrough {
        /// Guest domain id.
        did: u16,
    },
    /// Not present.
    None,
}

/// A scripted guest driving one guest-facing unit.
pub struct GuestDriver<'a, M: PhysMem> {
    unit: &'a Unit<M>,
    mem: Arc<GuestMemory>,
    pages: &'a GuestPages,
    root: u64,
    queue: InvalidationQueue<'a, M, GuestPages>,
}

impl<'a, M: PhysMem> GuestDriver<'a, M> {
    /// Boot the guest's IOMMU driver: root table, queued invalidation, translation on.
    pub fn boot(
        unit: &'a Unit<M>,
        mem: Arc<GuestMemory>,
        pages: &'a GuestPages,
    ) -> Result<Self, GuestError> {
        let tables = ScalableTables::new(&*mem, pages);
        let root = tables.root();
        let queue =
            InvalidationQueue::enable(unit, pages, true).map_err(|e| Self::fail(pages, e))?;
        enable_translation(unit, tables.rtaddr()).map_err(|e| Self::fail(pages, e))?;
        Ok(Self {
            unit,
            mem,
            pages,
            root,
            queue,
        })
    }

    fn fail(pages: &GuestPages, e: BuildError) -> GuestError {
        if pages.exhausted() {
            GuestError::OutOfTablePages
        } else {
            GuestError::Build(e)
        }
    }

    fn tables(&self) -> ScalableTables<'_, GuestMemory, GuestPages> {
        ScalableTables::with_root(&*self.mem, self.pages, self.root)
    }

    /// Give the device `sid` a context entry with a PASID directory (as probe does).
    pub fn add_device(&mut self, sid: u16) -> Result<(), GuestError> {
        self.tables()
            .add_device(sid, PDTS)
            .map_err(|e| Self::fail(self.pages, e))
    }

    /// Write the PASID entry of (`sid`, `pasid`) and invalidate the PASID cache for it, as
    /// a guest with caching mode must.
    pub fn set_pasid(&mut self, sid: u16, pasid: u32, what: GuestPasid) -> Result<(), GuestError> {
        // Beyond the directory the tables would be written past its end.
        if pasid >= PASIDS {
            return Err(GuestError::PasidOutOfRange(pasid));
        }
        let present = |pgtt, did| {
            PasidEntryLo::new()
                .with_p(true)
                .with_pgtt(pgtt)
                .with_did(did)
                .with_pwsnp(true)
        };
        let entry = match what {
            GuestPasid::None => PasidEntry::default(),
            GuestPasid::PassThrough { did } => PasidEntry {
                lo: present(Pgtt::PassThrough, did),
                ..Default::default()
            },
            GuestPasid::FirstStage { fs, did } => {
                let fspm = if fs.levels == 5 {
                    Fspm::Level5
                } else {
                    Fspm::Level4
                };
                let hi = PasidEntryHi::new()
                    .with_fspm(fspm)
                    .with_sre(fs.sre)
                    .with_wpe(fs.wpe)
                    .with_eafe(fs.eafe)
                    .with_fsptptr(fs.root >> 12);
                PasidEntry {
                    lo: present(Pgtt::FirstStage, did),
                    hi,
                    ..Default::default()
                }
            }
        };
        self.tables()
            .set_pasid_entry(sid, pasid, entry)
            .map_err(|e| Self::fail(self.pages, e))?;
        let inv = PasidCacheInvDesc::new()
            .with_g(PasidCacheGranularity::Pasid)
            .with_did(entry.lo.did())
            .with_pasid(pasid);
        self.submit(&[RawDescriptor {
            lo: inv.into_bits(),
            hi: 0,
        }])
    }

    /// Invalidate the IOTLB for `[addr, addr + 2^am pages)` of (`did`, `pasid`) — or
    /// everything of the PASID with `addr = None` — as the guest does after changing its
    /// stage 1. `leaf`: only leaf entries changed (IH).
    pub fn invalidate(
        &mut self,
        did: u16,
        pasid: u32,
        addr: Option<u64>,
        am: u8,
        leaf: bool,
    ) -> Result<(), GuestError> {
        if pasid > vtd_spec::pasid::PASID_MAX {
            return Err(GuestError::PasidOutOfRange(pasid));
        }
        if am > 63 {
            return Err(GuestError::BadMask(am));
        }
        let d = match addr {
            Some(a) => PasidIotlbInvDesc::new()
                .with_g(PasidIotlbGranularity::Page)
                .with_did(did)
                .with_pasid(pasid)
                .with_addr(a >> 12)
                .with_am(am)
                .with_ih(leaf),
            None => PasidIotlbInvDesc::new()
                .with_g(PasidIotlbGranularity::Pasid)
                .with_did(did)
                .with_pasid(pasid),
        };
        self.submit(&[RawDescriptor {
            lo: d.into_bits(),
            hi: 0,
        }])
    }

    /// Queue descriptors and wait for them.
    pub fn submit(&mut self, descs: &[RawDescriptor]) -> Result<(), GuestError> {
        self.queue.submit_and_wait(descs).map_err(GuestError::Build)
    }

    /// A new, empty stage-1 table of `levels` levels in guest memory.
    pub fn new_stage1(&self, levels: u8) -> PageTable<'_, GuestMemory> {
        let pages = self.pages;
        PageTable::new(
            &*self.mem,
            Format::FirstStage,
            levels,
            move || pages.alloc_page(),
            |gpa| gpa,
        )
    }

    /// The stage-1 table rooted at `root`.
    pub fn stage1(&self, root: u64, levels: u8) -> PageTable<'_, GuestMemory> {
        let pages = self.pages;
        PageTable::open(
            &*self.mem,
            Format::FirstStage,
            levels,
            root,
            move || pages.alloc_page(),
            |gpa| gpa,
        )
    }

    /// Map `iova → gpa` with one leaf of `size` in the stage 1 rooted at `root`.
    pub fn map(
        &self,
        root: u64,
        levels: u8,
        iova: u64,
        gpa: u64,
        size: PageSize,
        leaf: Leaf,
    ) -> Result<(), GuestError> {
        let mut t = self.stage1(root, levels);
        t.map(iova, gpa, size, leaf)
            .map_err(|e| Self::fail(self.pages, e))
    }

    /// Clear the leaf mapping `iova` in the stage 1 rooted at `root`.
    pub fn unmap(&self, root: u64, levels: u8, iova: u64) -> Result<bool, GuestError> {
        self.stage1(root, levels)
            .unmap(iova)
            .map_err(|e| Self::fail(self.pages, e))
    }

    /// The unit this guest drives.
    pub fn unit(&self) -> &Unit<M> {
        self.unit
    }

    /// Guest-physical address of the guest's root table.
    pub fn root_table(&self) -> u64 {
        self.root
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryMap;

    const POOL: u64 = 0x10_0000;

    fn guest() -> (Arc<GuestMemory>, GuestPages, Unit<Arc<GuestMemory>>) {
        let mem = Arc::new(GuestMemory::new(MemoryMap::pc(4 << 20)).unwrap());
        let pages = GuestPages::new(mem.clone(), POOL, 1 << 20);
        let unit = Unit::new(vtd_model::UnitConfig::sapphire_rapids(), mem.clone()).unwrap();
        (mem, pages, unit)
    }

    #[test]
    fn pasids_beyond_the_directory_are_refused_not_written_past_it() {
        let (mem, pages, unit) = guest();
        let mut driver = GuestDriver::boot(&unit, mem.clone(), &pages).unwrap();
        driver.add_device(0x10).unwrap();
        let pt = GuestPasid::PassThrough { did: 1 };
        let before = pages.next.load(Ordering::Relaxed);
        for pasid in [PASIDS, 100_000, 1 << 20, u32::MAX] {
            assert_eq!(
                driver.set_pasid(0x10, pasid, pt),
                Err(GuestError::PasidOutOfRange(pasid))
            );
        }
        assert_eq!(pages.next.load(Ordering::Relaxed), before);
        assert_eq!(driver.set_pasid(0x10, PASIDS - 1, pt), Ok(()));
    }

    #[test]
    fn invalidations_that_do_not_fit_a_descriptor_are_refused() {
        let (mem, pages, unit) = guest();
        let mut driver = GuestDriver::boot(&unit, mem, &pages).unwrap();
        assert_eq!(
            driver.invalidate(1, 0, Some(0x1000), 64, false),
            Err(GuestError::BadMask(64))
        );
        assert_eq!(
            driver.invalidate(1, 1 << 20, None, 0, false),
            Err(GuestError::PasidOutOfRange(1 << 20))
        );
        assert_eq!(driver.invalidate(1, 0, Some(0x1000), 63, true), Ok(()));
    }
}
