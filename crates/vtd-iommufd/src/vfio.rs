//! Typed VFIO cdev calls (`/dev/vfio/devices/vfioN`) for iommufd binding and attachment.

use crate::error::{Call, Result};
use crate::fd::IoctlFd;
use crate::ioctl;
use crate::iommufd::raw_call;
use crate::uapi::{
    size_of, vfio_device_attach_iommufd_pt, vfio_device_bind_iommufd, vfio_device_detach_iommufd_pt,
};

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
}
