//! What a host offers a nesting vIOMMU, asked of its kernel the way [`crate::VIommu::new`]
//! asks: `IOMMU_GET_HW_INFO` for one assigned device, then the allocations nesting needs
//! (a nest-parent HWPT, and one with dirty tracking) tried on an empty IOAS and undone.
//!
//! The capability bits say what the hardware can do; the allocations say what this kernel
//! will do with it (a kernel without nesting support refuses the nest parent whatever
//! ECAP.NEST says). Together they answer, before a VM is started, whether vtd-viommu can
//! run on the host and what the VMM must do about the SPR17 erratum.

use std::sync::Arc;

use vtd_iommufd::uapi::HwptAllocFlags;
use vtd_iommufd::{Errno, HwInfo, Hwpt, Ioas, IoctlFd, Iommufd, VfioDevice, VtdHwInfo};

use crate::config::{HostUnsupported, guest_unit_config};

/// What the kernel answered for one device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostReport {
    /// The device's id in the iommufd (it stays bound).
    pub dev_id: u32,
    /// `IOMMU_GET_HW_INFO`, decoded (VT-d data included when the IOMMU is VT-d).
    pub hw_info: HwInfo,
    /// `IOMMU_HWPT_ALLOC` with `NEST_PARENT` on an empty IOAS: allowed, or the errno.
    pub nest_parent: Result<(), Errno>,
    /// `IOMMU_HWPT_ALLOC` with `DIRTY_TRACKING` (and `NEST_PARENT` when that was allowed,
    /// as the vIOMMU asks for a dirty-tracked parent): allowed, or the errno.
    pub dirty_tracking: Result<(), Errno>,
}

/// Why vtd-viommu cannot run on the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Blocker {
    /// The hardware lacks what nesting needs.
    #[error("{0}")]
    Host(#[from] HostUnsupported),
    /// The hardware would do, but the kernel refuses a nest-parent HWPT.
    #[error("the kernel refuses a nest-parent HWPT ({0}): no nesting support in this kernel")]
    NestParentRefused(Errno),
}

impl HostReport {
    /// The VT-d part of hw_info, when the IOMMU is VT-d.
    pub fn vtd(&self) -> Option<&VtdHwInfo> {
        self.hw_info.vtd.as_ref()
    }

    /// What keeps vtd-viommu from running here, if anything: the checks
    /// [`crate::VIommu::new`] makes, in its order.
    pub fn blocker(&self) -> Option<Blocker> {
        let Some(vtd) = self.vtd() else {
            return Some(HostUnsupported::NotVtd.into());
        };
        if let Err(e) = guest_unit_config(vtd) {
            return Some(e.into());
        }
        self.nest_parent.err().map(Blocker::NestParentRefused)
    }

    /// True when read-only guest memory (vBIOS, option ROMs) must stay out of stage 2:
    /// the kernel flags the SPR17 erratum and refuses read-only mappings in a nest parent
    /// (Linux 6.12 flags it on every VT-d unit).
    pub fn keep_read_only_out(&self) -> bool {
        self.vtd().is_some_and(|v| v.errata_772415_spr17)
    }
}

/// Ask the kernel behind `iommufd` about `device`: bind it (it stays bound), read
/// hw_info, and try the HWPT allocations nesting needs on a scratch IOAS, destroyed again
/// before returning. A refused allocation is part of the report; an error is returned
/// only when the device cannot be bound or hw_info cannot be read.
pub fn probe<I: IoctlFd, D: IoctlFd>(
    iommufd: &Arc<Iommufd<I>>,
    device: &VfioDevice<D>,
) -> Result<HostReport, vtd_iommufd::Error> {
    let dev_id = device.bind_iommufd(iommufd.fd().fd_number())?;
    let hw_info = iommufd.get_hw_info(dev_id)?;
    let ioas = Ioas::new(iommufd)?;
    let alloc = |flags: HwptAllocFlags| {
        // Dropped at once: the allocation is the question, the HWPT is not needed.
        Hwpt::paging(&ioas, dev_id, flags)
            .map(drop)
            .map_err(|e| e.errno().unwrap_or(Errno::EIO))
    };
    let nest_parent = alloc(HwptAllocFlags::NEST_PARENT);
    let dirty_flags = if nest_parent.is_ok() {
        HwptAllocFlags::NEST_PARENT | HwptAllocFlags::DIRTY_TRACKING
    } else {
        HwptAllocFlags::DIRTY_TRACKING
    };
    let dirty_tracking = alloc(dirty_flags);
    Ok(HostReport {
        dev_id,
        hw_info,
        nest_parent,
        dirty_tracking,
    })
}
