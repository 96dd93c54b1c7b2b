//! Typed VFIO cdev calls (`/dev/vfio/devices/vfioN`) for iommufd binding and attachment.

use crate::error::{Call, Error, Result};
use crate::fd::IoctlFd;
use crate::ioctl;
use crate::iommufd::raw_call;
use crate::uapi::{
    size_of, vfio_device_attach_iommufd_pt, vfio_device_bind_iommufd,
    vfio_device_detach_iommufd_pt, vfio_device_info, vfio_region_info,
};

/// What `VFIO_DEVICE_GET_INFO` reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VfioDeviceInfo {
    /// `VFIO_DEVICE_FLAGS_*` (bit 1: a PCI device).
    pub flags: u32,
    /// Number of regions (for PCI: BARs 0–5, ROM, config space, VGA, …).
    pub num_regions: u32,
    /// Number of interrupt types.
    pub num_irqs: u32,
}

/// What `VFIO_DEVICE_GET_REGION_INFO` reports about one region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VfioRegionInfo {
    /// `VFIO_REGION_INFO_FLAG_*`: bit 0 read, bit 1 write, bit 2 mmap.
    pub flags: u32,
    /// Region size in bytes (0: the region does not exist).
    pub size: u64,
    /// Where the region starts in the device file, for `pread`/`pwrite`/`mmap`.
    pub offset: u64,
}

/// `VFIO_PCI_BAR0_REGION_INDEX`.
pub const VFIO_PCI_BAR0_REGION_INDEX: u32 = 0;
/// `VFIO_PCI_CONFIG_REGION_INDEX`.
pub const VFIO_PCI_CONFIG_REGION_INDEX: u32 = 7;
/// `VFIO_REGION_INFO_FLAG_READ`.
pub const VFIO_REGION_INFO_FLAG_READ: u32 = 1 << 0;
/// `VFIO_REGION_INFO_FLAG_WRITE`.
pub const VFIO_REGION_INFO_FLAG_WRITE: u32 = 1 << 1;
/// `VFIO_REGION_INFO_FLAG_MMAP`.
pub const VFIO_REGION_INFO_FLAG_MMAP: u32 = 1 << 2;
/// `VFIO_DEVICE_FLAGS_PCI`.
pub const VFIO_DEVICE_FLAGS_PCI: u32 = 1 << 1;

/// A VFIO device opened through its cdev.
#[derive(Debug)]
pub struct VfioDevice<F> {
    fd: F,
}

/// Bytes of `struct vfio_device_bind_iommufd` up to `out_devid` (the 6.12 layout).
const BIND_ARGSZ: u32 = 16;
/// Bytes of `struct vfio_device_attach_iommufd_pt` up to `pt_id` (the 6.12 layout).
const ATTACH_ARGSZ: u32 = 12;
/// Bytes of `struct vfio_device_detach_iommufd_pt` up to `flags` (the 6.12 layout).
const DETACH_ARGSZ: u32 = 8;

impl<F: IoctlFd> VfioDevice<F> {
    /// Wrap an open VFIO device cdev.
    pub fn new(fd: F) -> Self {
        Self { fd }
    }

    /// The underlying file.
    pub fn fd(&self) -> &F {
        &self.fd
    }

    /// `VFIO_DEVICE_BIND_IOMMUFD`: bind the device to the iommufd whose descriptor number
    /// is `iommufd`; returns the device id in that iommufd.
    pub fn bind_iommufd(&self, iommufd: i32) -> Result<u32> {
        let mut cmd = vfio_device_bind_iommufd {
            argsz: BIND_ARGSZ,
            iommufd,
            ..Default::default()
        };
        debug_assert!(size_of::<vfio_device_bind_iommufd>() >= BIND_ARGSZ);
        // SAFETY: the argument of VFIO_DEVICE_BIND_IOMMUFD; no pointers are read with
        // flags 0.
        unsafe {
            raw_call(
                &self.fd,
                Call::VfioBindIommufd,
                ioctl::VFIO_DEVICE_BIND_IOMMUFD,
                &mut cmd,
            )
        }?;
        Ok(cmd.out_devid)
    }

    /// `VFIO_DEVICE_ATTACH_IOMMUFD_PT`: attach (or, when attached, replace) to the IOAS or
    /// HWPT `pt_id`; returns the HWPT the device ended up on (for an IOAS, the automatic
    /// domain's HWPT).
    pub fn attach_pt(&self, pt_id: u32) -> Result<u32> {
        let mut cmd = vfio_device_attach_iommufd_pt {
            argsz: ATTACH_ARGSZ,
            pt_id,
            ..Default::default()
        };
        // SAFETY: the argument of VFIO_DEVICE_ATTACH_IOMMUFD_PT; no pointers.
        unsafe {
            raw_call(
                &self.fd,
                Call::VfioAttachPt,
                ioctl::VFIO_DEVICE_ATTACH_IOMMUFD_PT,
                &mut cmd,
            )
        }?;
        Ok(cmd.pt_id)
    }

    /// `VFIO_DEVICE_DETACH_IOMMUFD_PT`: detach; DMA is blocked afterwards.
    pub fn detach_pt(&self) -> Result<()> {
        let mut cmd = vfio_device_detach_iommufd_pt {
            argsz: DETACH_ARGSZ,
            ..Default::default()
        };
        // SAFETY: the argument of VFIO_DEVICE_DETACH_IOMMUFD_PT; no pointers.
        unsafe {
            raw_call(
                &self.fd,
                Call::VfioDetachPt,
                ioctl::VFIO_DEVICE_DETACH_IOMMUFD_PT,
                &mut cmd,
            )
        }?;
        Ok(())
    }

    /// `VFIO_DEVICE_GET_INFO` (EINVAL before the device is bound).
    pub fn get_info(&self) -> Result<VfioDeviceInfo> {
        let mut cmd = vfio_device_info {
            argsz: size_of::<vfio_device_info>(),
            ..Default::default()
        };
        // SAFETY: the argument of VFIO_DEVICE_GET_INFO; no pointers (argsz covers the
        // struct, so a capability chain would be written into it only if it fitted).
        unsafe {
            raw_call(
                &self.fd,
                Call::VfioGetInfo,
                ioctl::VFIO_DEVICE_GET_INFO,
                &mut cmd,
            )
        }?;
        Ok(VfioDeviceInfo {
            flags: cmd.flags,
            num_regions: cmd.num_regions,
            num_irqs: cmd.num_irqs,
        })
    }

    /// `VFIO_DEVICE_GET_REGION_INFO` for region `index`.
    pub fn region_info(&self, index: u32) -> Result<VfioRegionInfo> {
        let mut cmd = vfio_region_info {
            argsz: size_of::<vfio_region_info>(),
            index,
            ..Default::default()
        };
        // SAFETY: the argument of VFIO_DEVICE_GET_REGION_INFO; no pointers.
        unsafe {
            raw_call(
                &self.fd,
                Call::VfioGetRegionInfo,
                ioctl::VFIO_DEVICE_GET_REGION_INFO,
                &mut cmd,
            )
        }?;
        Ok(VfioRegionInfo {
            flags: cmd.flags,
            size: cmd.size,
            offset: cmd.offset,
        })
    }

    /// Read `buf.len()` bytes at `offset` in `region` (one `pread`, which VFIO turns into
    /// one device access of that size).
    pub fn read_region(&self, region: &VfioRegionInfo, offset: u64, buf: &mut [u8]) -> Result<()> {
        let at = region.offset.checked_add(offset).ok_or(Error::Ioctl {
            call: Call::VfioRegionRead,
            errno: crate::Errno::EINVAL,
        })?;
        let done = self.fd.pread(buf, at).map_err(|errno| Error::Ioctl {
            call: Call::VfioRegionRead,
            errno,
        })?;
        if done != buf.len() {
            return Err(Error::Short {
                call: Call::VfioRegionRead,
                done,
                wanted: buf.len(),
            });
        }
        Ok(())
    }

    /// Write `data` at `offset` in `region` (one `pwrite`).
    pub fn write_region(&self, region: &VfioRegionInfo, offset: u64, data: &[u8]) -> Result<()> {
        let at = region.offset.checked_add(offset).ok_or(Error::Ioctl {
            call: Call::VfioRegionWrite,
            errno: crate::Errno::EINVAL,
        })?;
        let done = self.fd.pwrite(data, at).map_err(|errno| Error::Ioctl {
            call: Call::VfioRegionWrite,
            errno,
        })?;
        if done != data.len() {
            return Err(Error::Short {
                call: Call::VfioRegionWrite,
                done,
                wanted: data.len(),
            });
        }
        Ok(())
    }
}
