//! The device files user space opens, implementing [`IoctlFd`] with Linux semantics, and
//! the table of file-descriptor numbers that `VFIO_DEVICE_BIND_IOMMUFD` resolves.

use std::collections::BTreeMap;
use std::ffi::c_void;
use std::sync::{Arc, Mutex, Weak};

use vtd_iommufd::ioctl::{
    VFIO_DEVICE_ATTACH_IOMMUFD_PT, VFIO_DEVICE_BIND_IOMMUFD, VFIO_DEVICE_DETACH_IOMMUFD_PT,
};
use vtd_iommufd::uapi::{
    vfio_device_attach_iommufd_pt, vfio_device_bind_iommufd, vfio_device_detach_iommufd_pt,
};
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
        ctx.set_fd(fd);
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
}

impl VfioDeviceFile {
    pub(crate) fn open(platform: &Arc<PlatformInner>, dev: usize) -> Self {
        let fd = platform.files.insert(OpenFile::Vfio);
        Self {
            platform: Arc::clone(platform),
            dev,
            fd,
            bound: Mutex::new(None),
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
            // Other device ioctls on an unbound cdev are EINVAL; the rest of the VFIO
            // device API (regions, interrupts, reset) is not simulated.
            _ if self.binding().is_none() => Err(Errno::EINVAL),
            _ => Err(Errno::ENOTTY),
        }
    }

    fn fd_number(&self) -> i32 {
        self.fd
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
