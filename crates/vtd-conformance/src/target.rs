//! Where a case's files come from: a real kernel's device nodes, or a simulated platform.

use std::fs::OpenOptions;

use vtd_iommufd::{Errno, IoctlFd, Iommufd, VfioDevice};
use vtd_kernel::{DeviceDesc, Platform, PlatformDesc};
use vtd_model::UnitConfig;

use crate::{Failure, Suite};

/// A file as the cases hold it.
pub type Fd = Box<dyn IoctlFd + Send + Sync>;

/// The machine a case runs on.
pub trait Target {
    /// `"real"` or `"sim"`.
    fn side(&self) -> &'static str;

    /// A fresh iommufd (`open("/dev/iommu")`), so object ids start at 1.
    fn iommufd(&self) -> Result<Iommufd<Fd>, Failure>;

    /// The `edu` device's VFIO cdev, unbound (VT-d suite only).
    fn edu(&self) -> Result<VfioDevice<Fd>, Failure>;

    /// `read(2)` on a fault queue's descriptor (a number IOMMU_FAULT_QUEUE_ALLOC gave).
    fn fault_read(&self, fd: i32, buf: &mut [u8]) -> Result<usize, Errno>;

    /// `write(2)` of page responses to a fault queue's descriptor.
    fn fault_write(&self, fd: i32, data: &[u8]) -> Result<usize, Errno>;

    /// `close(2)` of a fault queue's descriptor.
    fn close_fd(&self, fd: i32) -> Result<(), Errno>;
}

/// A `read(2)`/`write(2)` return value as bytes done or errno.
fn syscall_len(rc: isize) -> Result<usize, Errno> {
    usize::try_from(rc).map_err(|_| Errno::last())
}

/// A real kernel: `/dev/iommu` and the VFIO cdev of QEMU's `edu` device.
#[derive(Debug, Default)]
pub struct RealTarget;

impl RealTarget {
    /// `/dev/iommu` exists here.
    pub fn available() -> bool {
        std::path::Path::new("/dev/iommu").exists()
    }

    /// The cdev (`/dev/vfio/devices/vfioN`) of a QEMU `edu` device (1234:11e8) bound to
    /// vfio-pci, found through sysfs. Only that device is ever opened: on a developer's
    /// machine other devices on vfio-pci (a GPU passed to a VM) are left alone.
    pub fn edu_cdev() -> Option<std::path::PathBuf> {
        let dir = std::fs::read_dir("/sys/bus/pci/devices").ok()?;
        dir.filter_map(Result::ok).find_map(|d| {
            let read = |f: &str| std::fs::read_to_string(d.path().join(f)).unwrap_or_default();
            let driver = std::fs::read_link(d.path().join("driver")).unwrap_or_default();
            if read("vendor").trim() != "0x1234"
                || read("device").trim() != "0x11e8"
                || !driver.ends_with("vfio-pci")
            {
                return None;
            }
            let cdevs = std::fs::read_dir(d.path().join("vfio-dev")).ok()?;
            cdevs
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .find(|n| n.starts_with("vfio"))
                .map(|n| std::path::Path::new("/dev/vfio/devices").join(n))
        })
    }
}

fn open_rw(path: &str) -> Result<Fd, Failure> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map(|f| Box::new(f) as Fd)
        .map_err(|e| Failure(format!("open {path}: {e}")))
}

impl Target for RealTarget {
    fn side(&self) -> &'static str {
        "real"
    }

    fn iommufd(&self) -> Result<Iommufd<Fd>, Failure> {
        open_rw("/dev/iommu").map(Iommufd::new)
    }

    fn edu(&self) -> Result<VfioDevice<Fd>, Failure> {
        let path = Self::edu_cdev()
            .ok_or_else(|| Failure("no edu device (1234:11e8) with a VFIO cdev".into()))?;
        open_rw(&path.to_string_lossy()).map(VfioDevice::new)
    }

    fn fault_read(&self, fd: i32, buf: &mut [u8]) -> Result<usize, Errno> {
        // SAFETY: `buf` is valid for writes of its length for the whole call; a bad
        // descriptor number is the kernel's EBADF, not undefined behaviour.
        syscall_len(unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) })
    }

    fn fault_write(&self, fd: i32, data: &[u8]) -> Result<usize, Errno> {
        // SAFETY: `data` is valid for reads of its length for the whole call.
        syscall_len(unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) })
    }

    fn close_fd(&self, fd: i32) -> Result<(), Errno> {
        // SAFETY: the descriptor came from IOMMU_FAULT_QUEUE_ALLOC and nothing else in
        // the suite owns it, so closing it cannot pull a file from under other code.
        if unsafe { libc::close(fd) } == 0 {
            Ok(())
        } else {
            Err(Errno::last())
        }
    }
}

/// QEMU 10.0's `-device intel-iommu,intremap=on,x-scalable-mode=on` as a simulated
/// unit: the CAP and ECAP values that unit reports through IOMMU_GET_HW_INFO.
pub fn qemu_scalable_unit() -> UnitConfig {
    UnitConfig::qemu_scalable_intremap()
}

/// The simulated kernel, configured like the guest the suite runs in on the real side.
pub struct SimTarget {
    platform: Platform,
}

impl SimTarget {
    /// A platform for `suite`: no VT-d unit with `CONFIG_IOMMUFD_TEST` for the selftest
    /// suite; QEMU's scalable-mode unit with `edu` at 00:02.0 for the VT-d suite.
    pub fn new(suite: Suite) -> Result<SimTarget, Failure> {
        let desc = match suite {
            Suite::Selftest => PlatformDesc::selftest_only(),
            Suite::Vtd => PlatformDesc {
                units: vec![qemu_scalable_unit()],
                devices: vec![DeviceDesc::new("edu", 0, 2, 0).as_edu()],
                allow_unsafe_interrupts: false,
                iommufd_test: true,
            },
        };
        let platform = Platform::new(desc).map_err(|e| Failure(format!("platform: {e}")))?;
        Ok(SimTarget { platform })
    }
}

impl Target for SimTarget {
    fn side(&self) -> &'static str {
        "sim"
    }

    fn iommufd(&self) -> Result<Iommufd<Fd>, Failure> {
        Ok(Iommufd::new(Box::new(self.platform.open_iommufd()) as Fd))
    }

    fn edu(&self) -> Result<VfioDevice<Fd>, Failure> {
        let file = self
            .platform
            .open_vfio(0)
            .map_err(|e| Failure(format!("open_vfio: {e}")))?;
        Ok(VfioDevice::new(Box::new(file) as Fd))
    }

    fn fault_read(&self, fd: i32, buf: &mut [u8]) -> Result<usize, Errno> {
        self.platform.fault_read(fd, buf)
    }

    fn fault_write(&self, fd: i32, data: &[u8]) -> Result<usize, Errno> {
        self.platform.fault_write(fd, data)
    }

    fn close_fd(&self, fd: i32) -> Result<(), Errno> {
        self.platform.close_fd(fd)
    }
}
