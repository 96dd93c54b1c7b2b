//! Helpers of the uAPI conformance suite (`tests/uapi_*.rs`): raw ioctl buffers with the
//! Linux 6.12 struct layouts, platforms with chosen capabilities, a fixture with one
//! iommufd and guest RAM, and the checks every test repeats (object ids, kernel pages,
//! invalidation descriptors).
//!
//! Every test file declares `mod common; mod uapi_support;`.
#![allow(dead_code)]

use std::ffi::c_void;

use vtd_iommufd::uapi::{HwptAllocFlags, MapFlags};
use vtd_iommufd::{Errno, IoctlFd, Iommufd, VfioDevice, VtdS1};
use vtd_kernel::{DeviceDesc, IommufdFile, Platform, PlatformDesc, VfioDeviceFile};
use vtd_model::UnitConfig;
use vtd_spec::inv::{DescType, RawDescriptor};

use crate::common::GuestRam;

pub use vtd_iommufd::ioctl as nr;

/// A zeroed, 8-byte aligned argument buffer for a raw ioctl, addressed by byte offset as
/// the uAPI tables give them.
pub struct Buf {
    words: Vec<u64>,
    len: usize,
}

impl Buf {
    /// `len` zero bytes (plus slack up to the next 8 bytes, never passed as `size`).
    pub fn new(len: usize) -> Self {
        Self {
            words: vec![0; len.div_ceil(8) + 1],
            len,
        }
    }

    /// `len` zero bytes with the leading `size` field set to `size`.
    pub fn sized(len: usize, size: u32) -> Self {
        let mut b = Self::new(len);
        b.set_u32(0, size);
        b
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: a shared view of the words' own bytes, in bounds.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast::<u8>(), self.len) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: an exclusive view of the words' own bytes, in bounds.
        unsafe { std::slice::from_raw_parts_mut(self.words.as_mut_ptr().cast::<u8>(), self.len) }
    }

    pub fn set_u8(&mut self, off: usize, v: u8) -> &mut Self {
        self.bytes_mut()[off] = v;
        self
    }

    pub fn set_u16(&mut self, off: usize, v: u16) -> &mut Self {
        self.bytes_mut()[off..off + 2].copy_from_slice(&v.to_le_bytes());
        self
    }

    pub fn set_u32(&mut self, off: usize, v: u32) -> &mut Self {
        self.bytes_mut()[off..off + 4].copy_from_slice(&v.to_le_bytes());
        self
    }

    pub fn set_u64(&mut self, off: usize, v: u64) -> &mut Self {
        self.bytes_mut()[off..off + 8].copy_from_slice(&v.to_le_bytes());
        self
    }

    pub fn u8(&self, off: usize) -> u8 {
        self.bytes()[off]
    }

    pub fn u32(&self, off: usize) -> u32 {
        u32::from_le_bytes(self.bytes()[off..off + 4].try_into().expect("4 bytes"))
    }

    pub fn u64(&self, off: usize) -> u64 {
        u64::from_le_bytes(self.bytes()[off..off + 8].try_into().expect("8 bytes"))
    }

    /// Fill `[from, to)` with `byte`.
    pub fn poison(&mut self, from: usize, to: usize, byte: u8) -> &mut Self {
        self.bytes_mut()[from..to].fill(byte);
        self
    }

    /// The user address of byte `off`.
    pub fn addr(&self, off: usize) -> u64 {
        self.words.as_ptr() as u64 + off as u64
    }

    fn ptr(&mut self) -> *mut c_void {
        self.words.as_mut_ptr().cast()
    }
}

/// Issue `request` on `fd` with the raw buffer.
pub fn raw(fd: &impl IoctlFd, request: u64, buf: &mut Buf) -> Result<(), Errno> {
    // SAFETY: the simulated kernel reads and writes user memory only through
    // process_vm_readv/writev, so any pointer inside `buf` is at worst EFAULT; `buf` itself
    // is live and at least as long as the sizes the tests pass.
    unsafe { fd.ioctl(request, buf.ptr()) }.map(|_| ())
}

/// Issue `request` with an arbitrary argument pointer (NULL, unmapped, ...).
pub fn raw_ptr(fd: &impl IoctlFd, request: u64, arg: u64) -> Result<i32, Errno> {
    // SAFETY: as in `raw`: the simulation never dereferences `arg` directly.
    unsafe { fd.ioctl(request, arg as *mut c_void) }
}

/// Linux 6.12 layouts (byte offsets) of the structs the raw tests build.
pub mod layout {
    /// `(request, minimum size, 6.12 kernel size)` of every iommufd ioctl.
    pub const IOCTLS: [(&str, u64, usize, usize); 15] = [
        ("IOMMU_DESTROY", super::nr::IOMMU_DESTROY, 8, 8),
        ("IOMMU_IOAS_ALLOC", super::nr::IOMMU_IOAS_ALLOC, 12, 12),
        (
            "IOMMU_IOAS_ALLOW_IOVAS",
            super::nr::IOMMU_IOAS_ALLOW_IOVAS,
            24,
            24,
        ),
        ("IOMMU_IOAS_COPY", super::nr::IOMMU_IOAS_COPY, 40, 40),
        (
            "IOMMU_IOAS_IOVA_RANGES",
            super::nr::IOMMU_IOAS_IOVA_RANGES,
            32,
            32,
        ),
        ("IOMMU_IOAS_MAP", super::nr::IOMMU_IOAS_MAP, 40, 40),
        ("IOMMU_IOAS_UNMAP", super::nr::IOMMU_IOAS_UNMAP, 24, 24),
        ("IOMMU_OPTION", super::nr::IOMMU_OPTION, 24, 24),
        ("IOMMU_VFIO_IOAS", super::nr::IOMMU_VFIO_IOAS, 12, 12),
        ("IOMMU_HWPT_ALLOC", super::nr::IOMMU_HWPT_ALLOC, 24, 48),
        ("IOMMU_GET_HW_INFO", super::nr::IOMMU_GET_HW_INFO, 32, 40),
        (
            "IOMMU_HWPT_SET_DIRTY_TRACKING",
            super::nr::IOMMU_HWPT_SET_DIRTY_TRACKING,
            16,
            16,
        ),
        (
            "IOMMU_HWPT_GET_DIRTY_BITMAP",
            super::nr::IOMMU_HWPT_GET_DIRTY_BITMAP,
            48,
            48,
        ),
        (
            "IOMMU_HWPT_INVALIDATE",
            super::nr::IOMMU_HWPT_INVALIDATE,
            32,
            32,
        ),
        (
            "IOMMU_FAULT_QUEUE_ALLOC",
            super::nr::IOMMU_FAULT_QUEUE_ALLOC,
            16,
            16,
        ),
    ];

    pub mod hwpt_alloc {
        pub const SIZE: usize = 48;
        pub const FLAGS: usize = 4;
        pub const DEV_ID: usize = 8;
        pub const PT_ID: usize = 12;
        pub const OUT_HWPT_ID: usize = 16;
        pub const RESERVED: usize = 20;
        pub const DATA_TYPE: usize = 24;
        pub const DATA_LEN: usize = 28;
        pub const DATA_UPTR: usize = 32;
        pub const FAULT_ID: usize = 40;
        pub const RESERVED2: usize = 44;
    }

    pub mod hw_info {
        pub const SIZE: usize = 40;
        pub const FLAGS: usize = 4;
        pub const DEV_ID: usize = 8;
        pub const DATA_LEN: usize = 12;
        pub const DATA_UPTR: usize = 16;
        pub const OUT_DATA_TYPE: usize = 24;
        pub const OUT_MAX_PASID_LOG2: usize = 28;
        pub const RESERVED: usize = 29;
        pub const OUT_CAPABILITIES: usize = 32;
    }

    pub mod invalidate {
        pub const SIZE: usize = 32;
        pub const HWPT_ID: usize = 4;
        pub const DATA_UPTR: usize = 8;
        pub const DATA_TYPE: usize = 16;
        pub const ENTRY_LEN: usize = 20;
        pub const ENTRY_NUM: usize = 24;
        pub const RESERVED: usize = 28;
    }

    pub mod option {
        pub const SIZE: usize = 24;
        pub const OPTION_ID: usize = 4;
        pub const OP: usize = 8;
        pub const RESERVED: usize = 10;
        pub const OBJECT_ID: usize = 12;
        pub const VAL64: usize = 16;
        pub const RLIMIT_MODE: u32 = 0;
        pub const HUGE_PAGES: u32 = 1;
        pub const SET: u16 = 0;
        pub const GET: u16 = 1;
    }

    pub mod vfio_ioas {
        pub const SIZE: usize = 12;
        pub const IOAS_ID: usize = 4;
        pub const OP: usize = 8;
        pub const RESERVED: usize = 10;
        pub const GET: u16 = 0;
        pub const SET: u16 = 1;
        pub const CLEAR: u16 = 2;
    }

    pub mod fault_alloc {
        pub const SIZE: usize = 16;
        pub const FLAGS: usize = 4;
        pub const OUT_FAULT_ID: usize = 8;
        pub const OUT_FAULT_FD: usize = 12;
    }

    pub mod iova_ranges {
        pub const SIZE: usize = 32;
        pub const IOAS_ID: usize = 4;
        pub const NUM_IOVAS: usize = 8;
        pub const RESERVED: usize = 12;
        pub const ALLOWED_IOVAS: usize = 16;
        pub const OUT_IOVA_ALIGNMENT: usize = 24;
    }

    pub mod map {
        pub const SIZE: usize = 40;
        pub const FLAGS: usize = 4;
        pub const IOAS_ID: usize = 8;
        pub const RESERVED: usize = 12;
        pub const USER_VA: usize = 16;
        pub const LENGTH: usize = 24;
        pub const IOVA: usize = 32;
    }

    pub mod unmap {
        pub const SIZE: usize = 24;
        pub const IOAS_ID: usize = 4;
        pub const IOVA: usize = 8;
        pub const LENGTH: usize = 16;
    }

    pub mod dirty_bitmap {
        pub const SIZE: usize = 48;
        pub const HWPT_ID: usize = 4;
        pub const FLAGS: usize = 8;
        pub const RESERVED: usize = 12;
        pub const IOVA: usize = 16;
        pub const LENGTH: usize = 24;
        pub const PAGE_SIZE: usize = 32;
        pub const DATA: usize = 40;
    }

    pub mod set_dirty {
        pub const SIZE: usize = 16;
        pub const FLAGS: usize = 4;
        pub const HWPT_ID: usize = 8;
        pub const RESERVED: usize = 12;
    }
}

/// `IOMMU_HWPT_DATA_VTD_S1` payload bytes (`struct iommu_hwpt_vtd_s1`, 24 bytes).
pub fn vtd_s1_bytes(flags: u64, pgtbl_addr: u64, addr_width: u32, reserved: u32) -> Buf {
    let mut b = Buf::new(24);
    b.set_u64(0, flags)
        .set_u64(8, pgtbl_addr)
        .set_u32(16, addr_width)
        .set_u32(20, reserved);
    b
}

/// One `struct iommu_hwpt_vtd_s1_invalidate` entry.
#[derive(Clone, Copy, Debug)]
pub struct InvEntry {
    pub addr: u64,
    pub npages: u64,
    pub flags: u32,
    pub reserved: u32,
}

impl InvEntry {
    pub fn new(addr: u64, npages: u64) -> Self {
        Self {
            addr,
            npages,
            flags: 0,
            reserved: 0,
        }
    }
}

/// An array of invalidation entries laid out with `entry_len` bytes each (the first 24
/// bytes of each are the entry, the rest is `tail`).
pub fn inv_array(entries: &[InvEntry], entry_len: usize, tail: u8) -> Buf {
    let mut b = Buf::new(entries.len().max(1) * entry_len.max(24));
    for (i, e) in entries.iter().enumerate() {
        let at = i * entry_len;
        b.poison(at, at + entry_len, tail);
        if entry_len >= 24 {
            b.set_u64(at, e.addr)
                .set_u64(at + 8, e.npages)
                .set_u32(at + 16, e.flags)
                .set_u32(at + 20, e.reserved);
        }
    }
    b
}

/// A `struct iommu_hwpt_alloc` for a nested HWPT with VT-d stage-1 data at `data`.
pub fn nested_alloc_cmd(dev_id: u32, parent: u32, data: &Buf, len: u32) -> Buf {
    use layout::hwpt_alloc::*;
    let mut b = Buf::sized(SIZE, SIZE as u32);
    b.set_u32(DEV_ID, dev_id)
        .set_u32(PT_ID, parent)
        .set_u32(DATA_TYPE, 1)
        .set_u32(DATA_LEN, len)
        .set_u64(DATA_UPTR, data.addr(0));
    b
}

/// A `struct iommu_hwpt_invalidate` for entries at `data`.
pub fn invalidate_cmd(hwpt: u32, data_uptr: u64, entry_len: u32, entry_num: u32) -> Buf {
    use layout::invalidate::*;
    let mut b = Buf::sized(SIZE, SIZE as u32);
    b.set_u32(HWPT_ID, hwpt)
        .set_u64(DATA_UPTR, data_uptr)
        .set_u32(DATA_TYPE, 0)
        .set_u32(ENTRY_LEN, entry_len)
        .set_u32(ENTRY_NUM, entry_num);
    b
}

// ---------------------------------------------------------------------------------------
// Platforms.

/// The Sapphire Rapids unit with its extended capabilities changed by `f`.
pub fn spr_unit_with(f: impl FnOnce(UnitConfig) -> UnitConfig) -> UnitConfig {
    f(UnitConfig::sapphire_rapids())
}

/// A unit without second-stage A/D (no SSADS, so no dirty tracking).
pub fn unit_without_ssads() -> UnitConfig {
    spr_unit_with(|mut c| {
        c.ecap = c.ecap.with_slads(false);
        c
    })
}

/// A unit without snoop control (ECAP.SC clear).
pub fn unit_without_sc() -> UnitConfig {
    spr_unit_with(|mut c| {
        c.ecap = c.ecap.with_sc(false);
        c
    })
}

/// A scalable-mode unit with only a 39-bit (3-level) second stage and no first stage.
pub fn unit_39bit() -> UnitConfig {
    spr_unit_with(|mut c| {
        c.cap = c.cap.with_sagaw(0b0_0010).with_mgaw(38).with_fs5lp(false);
        c.ecap = c.ecap.with_flts(false);
        c
    })
}

/// Unit 0 Sapphire Rapids with `nic0` (00:03.0) and `nic1` (00:05.0); unit 1 built from
/// `second` with `ext0` (01:00.0).
pub fn two_units(second: UnitConfig) -> PlatformDesc {
    PlatformDesc {
        units: vec![UnitConfig::sapphire_rapids(), second],
        devices: vec![
            DeviceDesc::new("nic0", 0, 3, 0),
            DeviceDesc::new("nic1", 0, 5, 0),
            DeviceDesc::new("ext0", 1, 0, 0).behind(1),
        ],
        allow_unsafe_interrupts: false,
        iommufd_test: false,
    }
}

/// Device indexes of [`two_units`].
pub const NIC0: usize = 0;
pub const NIC1: usize = 1;
pub const EXT0: usize = 2;

// ---------------------------------------------------------------------------------------
// The fixture.

/// Guest RAM of the fixture (GPA 0 .. RAM).
pub const RAM: u64 = 16 << 20;

/// One platform, one open iommufd, guest RAM to map.
pub struct Env {
    pub fd: Iommufd<IommufdFile>,
    pub platform: Platform,
    /// Dropped last: the kernel may hold pins on it until the iommufd goes.
    pub ram: GuestRam,
}

impl Env {
    pub fn new(desc: PlatformDesc) -> Self {
        let platform = Platform::new(desc).expect("platform builds");
        Self {
            fd: Iommufd::new(platform.open_iommufd()),
            platform,
            ram: GuestRam::new(RAM as usize),
        }
    }

    /// The Sapphire Rapids platform (`nic0` without ATS, `ssd0` with PASID and ATS).
    pub fn spr() -> Self {
        Self::new(PlatformDesc::sapphire_rapids())
    }

    /// Open device `index`'s VFIO cdev without binding it.
    pub fn open(&self, index: usize) -> VfioDevice<VfioDeviceFile> {
        VfioDevice::new(self.platform.open_vfio(index).expect("device exists"))
    }

    /// Open and bind device `index`; returns the device and its DEVICE id.
    pub fn bind(&self, index: usize) -> (VfioDevice<VfioDeviceFile>, u32) {
        let dev = self.open(index);
        let id = dev
            .bind_iommufd(self.fd.fd().fd_number())
            .expect("bind to the fixture's iommufd");
        (dev, id)
    }

    /// A raw ioctl on the iommufd.
    pub fn raw(&self, request: u64, buf: &mut Buf) -> Result<(), Errno> {
        raw(self.fd.fd(), request, buf)
    }

    pub fn ioas(&self) -> u32 {
        self.fd.ioas_alloc().expect("IOAS_ALLOC")
    }

    /// IOAS_MAP of guest RAM `[gpa, gpa + len)` at `iova` (or an allocated IOVA).
    pub fn map(
        &self,
        ioas: u32,
        gpa: u64,
        len: u64,
        iova: Option<u64>,
        flags: MapFlags,
    ) -> Result<u64, Errno> {
        assert!(gpa + len <= RAM, "map inside guest RAM");
        // SAFETY: guest RAM is a field of the fixture and outlives the iommufd (dropped
        // after it), so the range stays mapped while the IOAS may use it.
        unsafe { self.fd.ioas_map(ioas, self.ram.ptr(gpa), len, iova, flags) }.map_err(err)
    }

    /// IOAS_MAP of an arbitrary user address (for EFAULT and alignment cases).
    pub fn map_va(
        &self,
        ioas: u32,
        user_va: u64,
        len: u64,
        iova: Option<u64>,
        flags: MapFlags,
    ) -> Result<u64, Errno> {
        use layout::map::*;
        let mut flags = flags - MapFlags::FIXED_IOVA;
        if iova.is_some() {
            flags |= MapFlags::FIXED_IOVA;
        }
        let mut b = Buf::sized(SIZE, SIZE as u32);
        b.set_u32(FLAGS, flags.bits())
            .set_u32(IOAS_ID, ioas)
            .set_u64(USER_VA, user_va)
            .set_u64(LENGTH, len)
            .set_u64(IOVA, iova.unwrap_or(0));
        self.raw(nr::IOMMU_IOAS_MAP, &mut b)?;
        Ok(b.u64(IOVA))
    }

    pub fn unmap(&self, ioas: u32, iova: u64, len: u64) -> Result<u64, Errno> {
        self.fd.ioas_unmap(ioas, iova, len).map_err(err)
    }

    pub fn unmap_all(&self, ioas: u32) -> Result<u64, Errno> {
        self.fd.ioas_unmap_all(ioas).map_err(err)
    }

    pub fn paging(&self, dev_id: u32, pt: u32, flags: HwptAllocFlags) -> Result<u32, Errno> {
        self.fd.hwpt_alloc_paging(dev_id, pt, flags).map_err(err)
    }

    pub fn parent(&self, dev_id: u32, ioas: u32) -> u32 {
        self.paging(dev_id, ioas, HwptAllocFlags::NEST_PARENT)
            .expect("nest parent")
    }

    pub fn nested(&self, dev_id: u32, parent: u32, s1: &VtdS1) -> Result<u32, Errno> {
        self.fd
            .hwpt_alloc_nested(dev_id, parent, s1, None)
            .map_err(err)
    }

    pub fn destroy(&self, id: u32) -> Result<(), Errno> {
        self.fd.destroy(id).map_err(err)
    }

    /// The id the next object gets: allocate an IOAS and destroy it again.
    pub fn next_id(&self) -> u32 {
        let id = self.ioas();
        self.destroy(id).expect("destroy the probe IOAS");
        id
    }

    /// `IOMMU_FAULT_QUEUE_ALLOC`: (fault id, fault fd).
    pub fn fault_alloc(&self) -> Result<(u32, i32), Errno> {
        use layout::fault_alloc::*;
        let mut b = Buf::sized(SIZE, SIZE as u32);
        self.raw(nr::IOMMU_FAULT_QUEUE_ALLOC, &mut b)?;
        Ok((b.u32(OUT_FAULT_ID), b.u32(OUT_FAULT_FD) as i32))
    }

    /// RAM mapped RW at GPA 0 in a fresh IOAS with a nest parent for `dev_id`.
    pub fn parent_with_ram(&self, dev_id: u32) -> (u32, u32) {
        let ioas = self.ioas();
        self.map(
            ioas,
            0,
            RAM,
            Some(0),
            MapFlags::READABLE | MapFlags::WRITEABLE,
        )
        .expect("map guest RAM");
        (ioas, self.parent(dev_id, ioas))
    }

    /// Device `dev` writes `data` at `iova` (requests without PASID).
    pub fn dma_write(
        &self,
        dev: usize,
        iova: u64,
        data: &[u8],
    ) -> Result<(), vtd_kernel::DmaError> {
        self.platform.dma_write(dev, None, iova, data)
    }

    /// Device `dev` reads `len` bytes at `iova`.
    pub fn dma_read(
        &self,
        dev: usize,
        iova: u64,
        len: usize,
    ) -> Result<Vec<u8>, vtd_kernel::DmaError> {
        let mut buf = vec![0; len];
        self.platform
            .dma_read(dev, None, iova, &mut buf)
            .map(|()| buf)
    }

    /// Device `dev` gets an IOMMU fault for `access` at `iova` (no translation or no
    /// permission), as opposed to a translation to memory that is merely not backed.
    pub fn faults(&self, dev: usize, iova: u64, access: vtd_model::request::Access) -> bool {
        matches!(
            self.platform.translate(dev, None, iova, 4, access),
            Err(vtd_kernel::DmaError::Fault(_))
        )
    }

    /// Start logging unit `unit`'s invalidation descriptors (clears the log).
    pub fn log(&self, unit: usize) {
        self.platform.intel_driver().log_invalidations(unit, true);
    }

    /// The descriptors unit `unit` received since [`Env::log`].
    pub fn logged(&self, unit: usize) -> Vec<RawDescriptor> {
        self.platform.intel_driver().submitted_invalidations(unit)
    }

    pub fn kernel_pages(&self) -> usize {
        self.platform.host_mem().kernel_pages()
    }
}

/// The errno of a typed call's error.
pub fn err(e: vtd_iommufd::Error) -> Errno {
    e.errno()
        .unwrap_or_else(|| panic!("not an ioctl error: {e}"))
}

/// Split a descriptor log into submissions (each ends with a wait descriptor), asserting
/// that it does end with one.
pub fn submissions(log: &[RawDescriptor]) -> Vec<Vec<RawDescriptor>> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    for d in log {
        if d.desc_type() == DescType::Wait {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(*d);
        }
    }
    assert!(
        cur.is_empty(),
        "descriptors {cur:?} were submitted without a closing wait descriptor"
    );
    out
}

/// The descriptor types of a log, waits included.
pub fn types(log: &[RawDescriptor]) -> Vec<DescType> {
    log.iter().map(|d| d.desc_type()).collect()
}
