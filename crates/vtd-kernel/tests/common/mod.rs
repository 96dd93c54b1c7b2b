//! Fixtures for the end-to-end tests: guest RAM as a VMM has it (an anonymous mapping,
//! addressed by guest-physical address), and a VMM-side setup on a simulated platform.
#![allow(dead_code)]

use std::sync::Arc;

use vtd_iommufd::uapi::{HwptAllocFlags, MapFlags};
use vtd_iommufd::{IoctlFd, Iommufd, VfioDevice, VtdS1};
use vtd_kernel::{IommufdFile, Platform, PlatformDesc, VfioDeviceFile};
use vtd_model::build::{Format, Leaf, PageTable};
use vtd_model::mem::{MemError, PhysMem};
use vtd_spec::addr::PageSize;

/// Guest RAM: an anonymous, 2 MiB-aligned mapping of this process. GPA `g` lives at
/// host virtual address `hva(g)`.
pub struct GuestRam {
    base: *mut u8,
    size: usize,
    /// The raw mapping (larger than `size`, for alignment) to unmap on drop.
    raw: (*mut libc::c_void, usize),
    next_table: std::sync::atomic::AtomicU64,
}

// SAFETY: the mapping is plain memory owned by this value; every access goes through
// atomic or volatile operations, bounds-checked against `size`.
unsafe impl Send for GuestRam {}
// SAFETY: as above.
unsafe impl Sync for GuestRam {}

const ALIGN: usize = 2 << 20;

impl GuestRam {
    /// `size` bytes of zeroed guest RAM. Page-table pages for the guest's stage 1 are
    /// handed out from the top down by [`GuestRam::alloc_table`].
    pub fn new(size: usize) -> Self {
        let len = size + ALIGN;
        // SAFETY: an anonymous private mapping; no existing memory is affected.
        let raw = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(raw, libc::MAP_FAILED, "mmap of guest RAM failed");
        let base = (raw as usize).next_multiple_of(ALIGN) as *mut u8;
        Self {
            base,
            size,
            raw: (raw, len),
            next_table: std::sync::atomic::AtomicU64::new(size as u64),
        }
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.size as u64
    }

    /// The host virtual address of guest-physical `gpa`.
    pub fn hva(&self, gpa: u64) -> u64 {
        self.base as u64 + gpa
    }

    /// A pointer to guest-physical `gpa` for IOAS_MAP.
    pub fn ptr(&self, gpa: u64) -> *const u8 {
        self.hva(gpa) as *const u8
    }

    /// A zeroed 4 KiB page of guest RAM for guest page tables (GPA).
    pub fn alloc_table(&self) -> u64 {
        let gpa = self
            .next_table
            .fetch_sub(4096, std::sync::atomic::Ordering::Relaxed)
            - 4096;
        self.fill(gpa, 0, 4096);
        gpa
    }

    /// Fill `[gpa, gpa + len)` with `byte`.
    pub fn fill(&self, gpa: u64, byte: u8, len: usize) {
        self.write_bytes(gpa, &vec![byte; len])
            .expect("fill inside guest RAM");
    }

    /// Read guest bytes.
    pub fn read(&self, gpa: u64, len: usize) -> Vec<u8> {
        let mut buf = vec![0; len];
        self.read_bytes(gpa, &mut buf)
            .expect("read inside guest RAM");
        buf
    }

    /// Change the host protection of `[gpa, gpa + len)` (page aligned).
    pub fn protect(&self, gpa: u64, len: usize, prot: i32) {
        // SAFETY: the range is inside our own mapping.
        let rc = unsafe { libc::mprotect(self.base.add(gpa as usize).cast(), len, prot) };
        assert_eq!(rc, 0, "mprotect");
    }

    fn check(&self, addr: u64, len: u64) -> Result<*mut u8, MemError> {
        match addr.checked_add(len) {
            Some(end) if end <= self.size as u64 => Ok(self.base.wrapping_add(addr as usize)),
            _ => Err(MemError::Unbacked { addr }),
        }
    }

    fn word(&self, addr: u64) -> Result<&std::sync::atomic::AtomicU64, MemError> {
        if !addr.is_multiple_of(8) {
            return Err(MemError::Misaligned { addr, size: 8 });
        }
        let p = self.check(addr, 8)?;
        // SAFETY: 8-aligned and inside the mapping, which lives as long as `self`.
        Ok(unsafe { &*(p as *const std::sync::atomic::AtomicU64) })
    }
}

impl Drop for GuestRam {
    fn drop(&mut self) {
        // SAFETY: unmapping the mapping created in `new`; nothing refers to it any more
        // (the simulated kernel's pins are gone with the IOAS).
        unsafe { libc::munmap(self.raw.0, self.raw.1) };
    }
}

impl PhysMem for GuestRam {
    fn read_u64(&self, addr: u64) -> Result<u64, MemError> {
        Ok(self.word(addr)?.load(std::sync::atomic::Ordering::Acquire))
    }

    fn write_u64(&self, addr: u64, value: u64) -> Result<(), MemError> {
        self.word(addr)?
            .store(value, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    fn compare_exchange_u64(
        &self,
        addr: u64,
        current: u64,
        new: u64,
    ) -> Result<Result<u64, u64>, MemError> {
        let w = self.word(addr)?;
        Ok(w.compare_exchange(
            current,
            new,
            std::sync::atomic::Ordering::AcqRel,
            std::sync::atomic::Ordering::Acquire,
        ))
    }

    fn write_u32(&self, addr: u64, value: u32) -> Result<(), MemError> {
        let shift = (addr % 8) * 8;
        let w = self.word(addr & !7)?;
        let mask = 0xFFFF_FFFFu64 << shift;
        let _ = w.fetch_update(
            std::sync::atomic::Ordering::AcqRel,
            std::sync::atomic::Ordering::Acquire,
            |old| Some((old & !mask) | (value as u64) << shift),
        );
        Ok(())
    }

    fn read_bytes(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let p = self.check(addr, buf.len() as u64)?;
        for (i, b) in buf.iter_mut().enumerate() {
            // SAFETY: inside the mapping (checked); volatile since devices write it too.
            *b = unsafe { std::ptr::read_volatile(p.add(i)) };
        }
        Ok(())
    }

    fn write_bytes(&self, addr: u64, data: &[u8]) -> Result<(), MemError> {
        let p = self.check(addr, data.len() as u64)?;
        for (i, b) in data.iter().enumerate() {
            // SAFETY: as in read_bytes.
            unsafe { std::ptr::write_volatile(p.add(i), *b) };
        }
        Ok(())
    }
}

/// A guest stage-1 (first-stage, 4-level) page table living in guest RAM.
pub fn guest_s1_table(ram: &GuestRam) -> PageTable<'_, GuestRam> {
    PageTable::new(ram, Format::FirstStage, 4, || ram.alloc_table(), |gpa| gpa)
}

/// Map `iova → gpa` with one 4 KiB read-write user leaf in a guest stage-1 table.
pub fn s1_map(table: &mut PageTable<'_, GuestRam>, iova: u64, gpa: u64) {
    table
        .map(iova, gpa, PageSize::Size4K, Leaf::read_write())
        .expect("guest stage-1 map");
}

/// A VMM's view of one assigned device on a simulated platform.
pub struct Vmm {
    pub platform: Platform,
    pub iommufd: Arc<Iommufd<IommufdFile>>,
    pub dev: VfioDevice<VfioDeviceFile>,
    pub dev_id: u32,
    pub dev_index: usize,
    pub ram: Arc<GuestRam>,
}

/// Guest RAM size of the fixtures.
pub const RAM: usize = 16 << 20;

impl Vmm {
    /// Sapphire Rapids platform, `nic0` bound to a fresh iommufd, 16 MiB of guest RAM.
    pub fn new() -> Self {
        Self::on(PlatformDesc::sapphire_rapids(), 0)
    }

    /// Device `dev_index` of a platform built from `desc`, bound to a fresh iommufd.
    pub fn on(desc: PlatformDesc, dev_index: usize) -> Self {
        let platform = Platform::new(desc).expect("platform");
        let iommufd = Arc::new(Iommufd::new(platform.open_iommufd()));
        let dev = VfioDevice::new(platform.open_vfio(dev_index).expect("vfio file"));
        let dev_id = dev.bind_iommufd(iommufd.fd().fd_number()).expect("bind");
        Self {
            platform,
            iommufd,
            dev,
            dev_id,
            dev_index,
            ram: Arc::new(GuestRam::new(RAM)),
        }
    }

    /// Map all guest RAM at GPA 0 into `ioas`, read-write.
    pub fn map_ram(&self, ioas: u32) {
        // SAFETY: guest RAM outlives the platform's use of it in every test (it is
        // dropped after the iommufd, which unmaps everything).
        unsafe {
            self.iommufd.ioas_map(
                ioas,
                self.ram.ptr(0),
                RAM as u64,
                Some(0),
                MapFlags::READABLE | MapFlags::WRITEABLE,
            )
        }
        .expect("map guest RAM");
    }

    /// IOAS, nest parent on it with all RAM mapped, device attached to the parent.
    pub fn with_parent(&self) -> (u32, u32) {
        let ioas = self.iommufd.ioas_alloc().expect("ioas");
        self.map_ram(ioas);
        let parent = self
            .iommufd
            .hwpt_alloc_paging(self.dev_id, ioas, HwptAllocFlags::NEST_PARENT)
            .expect("parent");
        assert_eq!(self.dev.attach_pt(parent).expect("attach parent"), parent);
        (ioas, parent)
    }

    /// A nested HWPT on `parent` for the guest stage-1 table rooted at `root` (GPA).
    pub fn nested(&self, parent: u32, root: u64) -> u32 {
        self.iommufd
            .hwpt_alloc_nested(self.dev_id, parent, &VtdS1::new(root), None)
            .expect("nested")
    }

    /// The device reads `len` bytes at `iova` (requests without PASID).
    pub fn dma_read(&self, iova: u64, len: usize) -> Result<Vec<u8>, vtd_kernel::DmaError> {
        let mut buf = vec![0; len];
        self.platform
            .dma_read(self.dev_index, None, iova, &mut buf)
            .map(|()| buf)
    }

    /// The device writes `data` at `iova`.
    pub fn dma_write(&self, iova: u64, data: &[u8]) -> Result<(), vtd_kernel::DmaError> {
        self.platform.dma_write(self.dev_index, None, iova, data)
    }
}

/// The errno of a failed vtd-iommufd call.
pub fn errno<T: std::fmt::Debug>(r: vtd_iommufd::Result<T>) -> vtd_iommufd::Errno {
    r.expect_err("call should fail")
        .errno()
        .expect("an ioctl errno")
}
