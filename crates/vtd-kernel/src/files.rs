//! The device files user space opens, implementing [`IoctlFd`] with Linux semantics, and
//! the table of file-descriptor numbers that `VFIO_DEVICE_BIND_IOMMUFD` resolves.

use std::collections::BTreeMap;
use std::ffi::c_void;
use std::sync::{Arc, Mutex, Weak};

use vtd_iommufd::ioctl::{
    VFIO_DEVICE_ATTACH_IOMMUFD_PT, VFIO_DEVICE_BIND_IOMMUFD, VFIO_DEVICE_DETACH_IOMMUFD_PT,
    VFIO_DEVICE_GET_INFO, VFIO_DEVICE_GET_REGION_INFO,
};
use vtd_iommufd::uapi::{
    vfio_device_attach_iommufd_pt, vfio_device_bind_iommufd, vfio_device_detach_iommufd_pt,
};
use vtd_iommufd::vfio::{
    VFIO_DEVICE_FLAGS_PCI, VFIO_PCI_BAR0_REGION_INDEX, VFIO_PCI_CONFIG_REGION_INDEX,
    VFIO_REGION_INFO_FLAG_MMAP, VFIO_REGION_INFO_FLAG_READ, VFIO_REGION_INFO_FLAG_WRITE,
};

use crate::edu::{DmaOp, EDU_BAR0_SIZE, EDU_CONFIG_SIZE, Edu};
use vtd_iommufd::{Errno, IoctlFd};

use crate::iommufd::Ictx;
use crate::platform::PlatformInner;
use crate::uaccess::{copy_to_user, read_user};

/// What a descriptor number refers to.
#[derive(Clone)]
pub(crate) enum OpenFile {
    Iommufd(Weak<Ictx>),
    Vfio,
    /// A fault queue's file (`IOMMU_FAULT_QUEUE_ALLOC`): it holds a reference on its
    /// FAULT object and on the context, until closed (fault.c: iommufd_fault_fops_release).
    Fault {
        ctx: Arc<Ictx>,
        id: u32,
    },
}

/// Descriptor numbers of the simulation: lowest free number from 3, like a process's.
#[derive(Default)]
pub(crate) struct FdTable {
    files: Mutex<BTreeMap<i32, OpenFile>>,
}

impl FdTable {
    pub(crate) fn insert(&self, file: OpenFile) -> i32 {
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        let fd = (3..).find(|n| !files.contains_key(n)).unwrap_or(i32::MAX);
        files.insert(fd, file);
        fd
    }

    pub(crate) fn remove(&self, fd: i32) -> Option<OpenFile> {
        self.files
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&fd)
    }

    /// Remove `fd` if it is a fault queue's file, returning its context and FAULT id.
    pub(crate) fn take_fault(&self, fd: i32) -> Option<(Arc<Ictx>, u32)> {
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        match files.get(&fd) {
            Some(OpenFile::Fault { .. }) => match files.remove(&fd) {
                Some(OpenFile::Fault { ctx, id }) => Some((ctx, id)),
                _ => None,
            },
            _ => None,
        }
    }

    pub(crate) fn get(&self, fd: i32) -> Option<OpenFile> {
        self.files
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&fd)
            .cloned()
    }
}

/// An open `/dev/iommu`. Closing it releases the context only once no bound device
/// holds it any more (§1.6).
pub struct IommufdFile {
    pub(crate) ctx: Arc<Ictx>,
    platform: Arc<PlatformInner>,
    fd: i32,
}

impl IommufdFile {
    pub(crate) fn open(platform: &Arc<PlatformInner>) -> Self {
        let ctx = Arc::new_cyclic(|me| Ictx::new(Arc::downgrade(platform), me.clone()));
        let fd = platform
            .files
            .insert(OpenFile::Iommufd(Arc::downgrade(&ctx)));
        Self {
            ctx,
            platform: Arc::clone(platform),
            fd,
        }
    }
}

impl IoctlFd for IommufdFile {
    unsafe fn ioctl(&self, request: u64, arg: *mut c_void) -> Result<i32, Errno> {
        // The simulated kernel reads and writes `arg` only through uaccess, which turns a
        // bad pointer into EFAULT; no unsafe access happens here.
        self.ctx.ioctl(request, arg as u64)
    }

    fn fd_number(&self) -> i32 {
        self.fd
    }
}

impl Drop for IommufdFile {
    fn drop(&mut self) {
        // The descriptor goes; the context goes with its last reference (Ictx's Drop).
        self.platform.files.remove(self.fd);
    }
}

/// The binding of a VFIO device file: the context (a file reference, which keeps it
/// alive) and the DEVICE id in it.
struct Binding {
    ctx: Arc<Ictx>,
    id: u32,
}

/// An open `/dev/vfio/devices/vfioN`.
pub struct VfioDeviceFile {
    platform: Arc<PlatformInner>,
    dev: usize,
    fd: i32,
    bound: Mutex<Option<Binding>>,
    /// The device model behind the regions, for an `edu` device.
    edu: Option<Mutex<Edu>>,
}

/// vfio-pci's region count (BARs 0–5, ROM, config, VGA) and interrupt types.
const VFIO_PCI_NUM_REGIONS: u32 = 9;
const VFIO_PCI_NUM_IRQS: u32 = 5;
/// Region `index` starts at `index << 40` in the device file (VFIO_PCI_INDEX_TO_OFFSET).
const REGION_SHIFT: u32 = 40;
/// vfio-pci's VGA region index, which exists only for VGA devices.
const VFIO_PCI_VGA_REGION_INDEX: u32 = 8;

impl VfioDeviceFile {
    pub(crate) fn open(platform: &Arc<PlatformInner>, dev: usize) -> Self {
        let fd = platform.files.insert(OpenFile::Vfio);
        let edu = platform.devices[dev].edu.then(|| Mutex::new(Edu::new()));
        Self {
            platform: Arc::clone(platform),
            dev,
            fd,
            bound: Mutex::new(None),
            edu,
        }
    }

    /// The device index in the platform.
    pub fn device(&self) -> usize {
        self.dev
    }

    fn binding(&self) -> std::sync::MutexGuard<'_, Option<Binding>> {
        self.bound.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The bound context and DEVICE id; EINVAL on an unbound file.
    fn bound(&self) -> Result<(Arc<Ictx>, u32), Errno> {
        self.binding()
            .as_ref()
            .map(|b| (Arc::clone(&b.ctx), b.id))
            .ok_or(Errno::EINVAL)
    }

    /// VFIO_DEVICE_BIND_IOMMUFD (core semantics §4.1).
    fn bind(&self, arg: u64) -> Result<i32, Errno> {
        // 6.12 copies the first 16 bytes (argsz, flags, iommufd, out_devid) only.
        let [argsz, flags, iommufd]: [u32; 3] = read_user(arg)?;
        let cmd = vfio_device_bind_iommufd {
            argsz,
            flags,
            iommufd: iommufd as i32,
            ..Default::default()
        };
        if cmd.argsz < 16 || cmd.flags != 0 || cmd.iommufd < 0 {
            return Err(Errno::EINVAL);
        }
        let mut bound = self.binding();
        if bound.is_some() {
            return Err(Errno::EINVAL);
        }
        let ctx = match self.platform.files.get(cmd.iommufd) {
            Some(OpenFile::Iommufd(ctx)) => ctx.upgrade().ok_or(Errno::EBADF)?,
            Some(_) => return Err(Errno::EBADFD),
            None => return Err(Errno::EBADF),
        };
        // The device is open through another file (bound there): vfio_df_open refuses.
        if !self.platform.claim(self.dev) {
            return Err(Errno::EINVAL);
        }
        let id = match ctx.bind_device(self.dev) {
            Ok(id) => id,
            Err(e) => {
                self.platform.release(self.dev);
                return Err(e);
            }
        };
        if let Err(e) = copy_to_user(arg + 12, &id.to_le_bytes()) {
            ctx.unbind_device(id);
            self.platform.release(self.dev);
            return Err(e);
        }
        *bound = Some(Binding { ctx, id });
        Ok(0)
    }

    /// VFIO_DEVICE_ATTACH_IOMMUFD_PT (§4.2): a failed write-back detaches completely.
    fn attach(&self, arg: u64) -> Result<i32, Errno> {
        let (ctx, id) = self.bound()?;
        let [argsz, flags, pt_id]: [u32; 3] = read_user(arg)?;
        let cmd = vfio_device_attach_iommufd_pt {
            argsz,
            flags,
            pt_id,
            ..Default::default()
        };
        if cmd.argsz < 12 || cmd.flags != 0 {
            return Err(Errno::EINVAL);
        }
        let pt = ctx.attach_device(id, cmd.pt_id)?;
        if let Err(e) = copy_to_user(arg + 8, &pt.to_le_bytes()) {
            let _ = ctx.detach_device(id);
            return Err(e);
        }
        Ok(0)
    }

    /// VFIO_DEVICE_GET_INFO (vfio_pci_ioctl_get_info): a PCI device with vfio-pci's
    /// fixed region and interrupt counts; reset is not offered. Writes back the 16 bytes
    /// up to `num_irqs`.
    fn get_info(&self, arg: u64) -> Result<i32, Errno> {
        let argsz: u32 = read_user(arg)?;
        if argsz < 16 {
            return Err(Errno::EINVAL);
        }
        let out = [
            argsz,
            VFIO_DEVICE_FLAGS_PCI,
            VFIO_PCI_NUM_REGIONS,
            VFIO_PCI_NUM_IRQS,
        ];
        let bytes: Vec<u8> = out.iter().flat_map(|v| v.to_le_bytes()).collect();
        copy_to_user(arg, &bytes)?;
        Ok(0)
    }

    /// The size and flags of region `index` (0 size: absent).
    fn region(&self, index: u32) -> Result<(u64, u32), Errno> {
        let rw = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
        match index {
            VFIO_PCI_CONFIG_REGION_INDEX => Ok((EDU_CONFIG_SIZE, rw)),
            VFIO_PCI_BAR0_REGION_INDEX if self.edu.is_some() => {
                Ok((EDU_BAR0_SIZE, rw | VFIO_REGION_INFO_FLAG_MMAP))
            }
            VFIO_PCI_VGA_REGION_INDEX => Err(Errno::EINVAL),
            i if i < VFIO_PCI_NUM_REGIONS => Ok((0, 0)),
            _ => Err(Errno::EINVAL),
        }
    }

    /// VFIO_DEVICE_GET_REGION_INFO (vfio_pci_ioctl_get_region_info).
    fn get_region_info(&self, arg: u64) -> Result<i32, Errno> {
        let [argsz, _flags, index, _cap]: [u32; 4] = read_user(arg)?;
        if argsz < 32 {
            return Err(Errno::EINVAL);
        }
        let (size, flags) = self.region(index)?;
        let offset = (index as u64) << REGION_SHIFT;
        let mut out = Vec::with_capacity(32);
        for v in [argsz, flags, index, 0] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&offset.to_le_bytes());
        copy_to_user(arg, &out)?;
        Ok(0)
    }

    /// The region and offset a file position names; EINVAL past a region's end.
    fn locate(&self, pos: u64, len: usize) -> Result<(u32, u64), Errno> {
        if self.binding().is_none() {
            return Err(Errno::EINVAL);
        }
        let index = u32::try_from(pos >> REGION_SHIFT).map_err(|_| Errno::EINVAL)?;
        let off = pos & ((1 << REGION_SHIFT) - 1);
        let (size, _) = self.region(index)?;
        if off >= size || len as u64 > size - off {
            return Err(Errno::EINVAL);
        }
        Ok((index, off))
    }

    /// One BAR access of `size` bytes at `off`, and the DMA it starts.
    fn bar_access(&self, edu: &Mutex<Edu>, off: u64, chunk: &mut [u8], write: bool) {
        let mut dev = edu.lock().unwrap_or_else(|e| e.into_inner());
        if !write {
            let v = dev.mmio_read(off, chunk.len());
            chunk.copy_from_slice(&v.to_le_bytes()[..chunk.len()]);
            return;
        }
        let mut bytes = [0u8; 8];
        bytes[..chunk.len()].copy_from_slice(chunk);
        let Some(op) = dev.mmio_write(off, chunk.len(), u64::from_le_bytes(bytes)) else {
            return;
        };
        // With bus mastering off the device's requests never leave it.
        if dev.bus_master() {
            let platform = crate::Platform {
                inner: Arc::clone(&self.platform),
            };
            // A refused DMA moves nothing and still completes, as QEMU's edu does.
            match op {
                DmaOp::FromMemory { iova, buf_off, len } => {
                    let mut tmp = vec![0u8; len];
                    if platform.dma_read(self.dev, None, iova, &mut tmp).is_ok() {
                        dev.buffer()[buf_off..buf_off + len].copy_from_slice(&tmp);
                    }
                }
                DmaOp::ToMemory { iova, buf_off, len } => {
                    let data = dev.buffer()[buf_off..buf_off + len].to_vec();
                    let _ = platform.dma_write(self.dev, None, iova, &data);
                }
            }
        }
        dev.finish_dma();
    }

    /// read/write on the device file (vfio_pci_rw): config space, or BAR 0 in aligned
    /// accesses of at most 8 bytes (vfio_pci_core_do_io_rw).
    fn region_rw(&self, buf: &mut [u8], pos: u64, write: bool) -> Result<usize, Errno> {
        let (index, off) = self.locate(pos, buf.len())?;
        if index == VFIO_PCI_CONFIG_REGION_INDEX {
            match (&self.edu, write) {
                (Some(edu), false) => edu.lock().unwrap_or_else(|e| e.into_inner()).config_read(
                    &self.platform.devices[self.dev],
                    off,
                    buf,
                ),
                (Some(edu), true) => edu
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .config_write(off, buf),
                // A device without a model reads as absent and ignores writes.
                (None, false) => buf.fill(0xff),
                (None, true) => {}
            }
            return Ok(buf.len());
        }
        let edu = self.edu.as_ref().ok_or(Errno::EINVAL)?;
        let mut done = 0;
        while done < buf.len() {
            let at = off + done as u64;
            let left = buf.len() - done;
            let size = [8usize, 4, 2, 1]
                .into_iter()
                .find(|&s| left >= s && at.is_multiple_of(s as u64))
                .unwrap_or(1);
            self.bar_access(edu, at, &mut buf[done..done + size], write);
            done += size;
        }
        Ok(buf.len())
    }

    /// VFIO_DEVICE_DETACH_IOMMUFD_PT (§4.2).
    fn detach(&self, arg: u64) -> Result<i32, Errno> {
        let (ctx, id) = self.bound()?;
        let [argsz, flags]: [u32; 2] = read_user(arg)?;
        let cmd = vfio_device_detach_iommufd_pt {
            argsz,
            flags,
            ..Default::default()
        };
        if cmd.argsz < 8 || cmd.flags != 0 {
            return Err(Errno::EINVAL);
        }
        ctx.detach_device(id)?;
        Ok(0)
    }
}

impl IoctlFd for VfioDeviceFile {
    unsafe fn ioctl(&self, request: u64, arg: *mut c_void) -> Result<i32, Errno> {
        // As for IommufdFile: every access to `arg` goes through uaccess.
        let arg = arg as u64;
        match request {
            VFIO_DEVICE_BIND_IOMMUFD => self.bind(arg),
            VFIO_DEVICE_ATTACH_IOMMUFD_PT => self.attach(arg),
            VFIO_DEVICE_DETACH_IOMMUFD_PT => self.detach(arg),
            // Other device ioctls on an unbound cdev are EINVAL.
            _ if self.binding().is_none() => Err(Errno::EINVAL),
            VFIO_DEVICE_GET_INFO => self.get_info(arg),
            VFIO_DEVICE_GET_REGION_INFO => self.get_region_info(arg),
            // Interrupts and reset are not simulated.
            _ => Err(Errno::ENOTTY),
        }
    }

    fn fd_number(&self) -> i32 {
        self.fd
    }

    fn pread(&self, buf: &mut [u8], offset: u64) -> Result<usize, Errno> {
        self.region_rw(buf, offset, false)
    }

    fn pwrite(&self, data: &[u8], offset: u64) -> Result<usize, Errno> {
        let mut tmp = data.to_vec();
        self.region_rw(&mut tmp, offset, true)
    }
}

impl Drop for VfioDeviceFile {
    fn drop(&mut self) {
        // close(): detach, unbind, release ownership, drop the context reference (§4.8).
        if let Some(b) = self.binding().take() {
            b.ctx.unbind_device(b.id);
            self.platform.release(self.dev);
        }
        self.platform.files.remove(self.fd);
    }
}
