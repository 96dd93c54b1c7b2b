//! The uAPI structs and flag words, from `iommufd-bindings` and `vfio-bindings`.
//!
//! The bindings follow a newer kernel than 6.12, but every struct keeps the 6.12 layout
//! as a prefix and the kernel's size rules accept the longer form, so they work on both.

use bitflags::bitflags;

pub use iommufd_bindings::{
    iommu_destroy, iommu_fault_alloc, iommu_hw_info, iommu_hw_info_vtd, iommu_hwpt_alloc,
    iommu_hwpt_get_dirty_bitmap, iommu_hwpt_invalidate, iommu_hwpt_page_response,
    iommu_hwpt_pgfault, iommu_hwpt_set_dirty_tracking, iommu_hwpt_vtd_s1,
    iommu_hwpt_vtd_s1_invalidate, iommu_ioas_alloc, iommu_ioas_allow_iovas, iommu_ioas_copy,
    iommu_ioas_iova_ranges, iommu_ioas_map, iommu_ioas_unmap, iommu_iova_range, iommu_option,
    iommu_vfio_ioas,
};
pub use vfio_bindings::bindings::vfio::{
    vfio_device_attach_iommufd_pt, vfio_device_bind_iommufd, vfio_device_detach_iommufd_pt,
    vfio_device_info, vfio_region_info,
};

/// `IOMMU_PGFAULT_FLAGS_PASID_VALID`: the fault record's `pasid` is valid.
pub const IOMMU_PGFAULT_FLAGS_PASID_VALID: u32 =
    iommufd_bindings::iommu_hwpt_pgfault_flags_IOMMU_PGFAULT_FLAGS_PASID_VALID;
/// `IOMMU_PGFAULT_FLAGS_LAST_PAGE`: the last fault of its group.
pub const IOMMU_PGFAULT_FLAGS_LAST_PAGE: u32 =
    iommufd_bindings::iommu_hwpt_pgfault_flags_IOMMU_PGFAULT_FLAGS_LAST_PAGE;
/// `IOMMUFD_PAGE_RESP_SUCCESS`: the fault was handled, retry the access.
pub const IOMMUFD_PAGE_RESP_SUCCESS: u32 =
    iommufd_bindings::iommufd_page_response_code_IOMMUFD_PAGE_RESP_SUCCESS;
/// `IOMMUFD_PAGE_RESP_INVALID`: the fault could not be handled.
pub const IOMMUFD_PAGE_RESP_INVALID: u32 =
    iommufd_bindings::iommufd_page_response_code_IOMMUFD_PAGE_RESP_INVALID;
/// `IOMMU_NO_PASID`: the PASID of requests without one.
pub const IOMMU_NO_PASID: u32 = 0;

/// `IOMMU_HWPT_DATA_NONE`.
pub const IOMMU_HWPT_DATA_NONE: u32 = 0;
/// `IOMMU_HWPT_DATA_VTD_S1`.
pub const IOMMU_HWPT_DATA_VTD_S1: u32 = 1;
/// `IOMMU_HWPT_INVALIDATE_DATA_VTD_S1` (note: 0, unlike the alloc data type).
pub const IOMMU_HWPT_INVALIDATE_DATA_VTD_S1: u32 = 0;
/// `IOMMU_HW_INFO_TYPE_NONE`.
pub const IOMMU_HW_INFO_TYPE_NONE: u32 = 0;
/// `IOMMU_HW_INFO_TYPE_INTEL_VTD`.
pub const IOMMU_HW_INFO_TYPE_INTEL_VTD: u32 = 1;
/// `IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17`.
pub const IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17: u32 = 1;
/// `IOMMU_VTD_INV_FLAGS_LEAF`.
pub const IOMMU_VTD_INV_FLAGS_LEAF: u32 = 1;
/// `IOMMU_HWPT_DIRTY_TRACKING_ENABLE`.
pub const IOMMU_HWPT_DIRTY_TRACKING_ENABLE: u32 = 1;
/// `IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR`.
pub const IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR: u32 = 1;
/// Size of `struct iommu_hwpt_vtd_s1` and of `struct iommu_hwpt_vtd_s1_invalidate`.
pub const VTD_S1_DATA_LEN: u32 = 24;
/// Stage-1 address width for 4-level paging.
pub const VTD_S1_ADDR_WIDTH_4LEVEL: u32 = 48;
/// Stage-1 address width for 5-level paging.
pub const VTD_S1_ADDR_WIDTH_5LEVEL: u32 = 57;

bitflags! {
    /// `IOMMU_IOAS_MAP` / `IOMMU_IOAS_COPY` flags.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct MapFlags: u32 {
        /// Map at the given IOVA instead of allocating one.
        const FIXED_IOVA = 1 << 0;
        /// Devices may write.
        const WRITEABLE = 1 << 1;
        /// Devices may read.
        const READABLE = 1 << 2;
    }
}

bitflags! {
    /// `IOMMU_HWPT_ALLOC` flags.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct HwptAllocFlags: u32 {
        /// The HWPT can be the parent (stage 2) of nested HWPTs.
        const NEST_PARENT = 1 << 0;
        /// Dirty tracking is possible on this HWPT.
        const DIRTY_TRACKING = 1 << 1;
        /// `fault_id` names a FAULT object.
        const FAULT_ID_VALID = 1 << 2;
        /// The HWPT may be attached to a PASID (6.15 and later).
        const PASID = 1 << 3;
    }
}

bitflags! {
    /// `struct iommu_hwpt_vtd_s1` flags.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct VtdS1Flags: u64 {
        /// Supervisor requests enabled (PASID-entry SRE).
        const SRE = 1 << 0;
        /// Extended-accessed flag enabled (PASID-entry EAFE).
        const EAFE = 1 << 1;
        /// Write-protect enabled for supervisor requests (PASID-entry WPE).
        const WPE = 1 << 2;
    }
}

bitflags! {
    /// `IOMMU_GET_HW_INFO` `out_capabilities`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct HwCaps: u64 {
        /// The IOMMU can track dirty pages.
        const DIRTY_TRACKING = 1 << 0;
        /// The PCI device's PASID capability allows execute.
        const PCI_PASID_EXEC = 1 << 1;
        /// The PCI device's PASID capability allows privileged mode.
        const PCI_PASID_PRIV = 1 << 2;
    }
}

/// `size` of a uAPI struct as the kernel reads it.
pub const fn size_of<T>() -> u32 {
    std::mem::size_of::<T>() as u32
}
