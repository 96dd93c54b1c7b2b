//! ioctl request numbers of iommufd and the VFIO cdev interface.
//!
//! Both use `_IO(';', nr)`: no size or direction bits, the argument is a pointer to a
//! struct that starts with its own size.

/// The ioctl type byte of iommufd and VFIO (`';'`).
pub const IOCTL_TYPE: u8 = b';';

/// `_IO(';', nr)`.
pub const fn io(nr: u32) -> u64 {
    (IOCTL_TYPE as u64) << 8 | nr as u64
}

/// First iommufd command number.
pub const IOMMUFD_CMD_BASE: u32 = 0x80;
/// `IOMMU_DESTROY`.
pub const IOMMU_DESTROY: u64 = io(0x80);
/// `IOMMU_IOAS_ALLOC`.
pub const IOMMU_IOAS_ALLOC: u64 = io(0x81);
/// `IOMMU_IOAS_ALLOW_IOVAS`.
pub const IOMMU_IOAS_ALLOW_IOVAS: u64 = io(0x82);
/// `IOMMU_IOAS_COPY`.
pub const IOMMU_IOAS_COPY: u64 = io(0x83);
/// `IOMMU_IOAS_IOVA_RANGES`.
pub const IOMMU_IOAS_IOVA_RANGES: u64 = io(0x84);
/// `IOMMU_IOAS_MAP`.
pub const IOMMU_IOAS_MAP: u64 = io(0x85);
/// `IOMMU_IOAS_UNMAP`.
pub const IOMMU_IOAS_UNMAP: u64 = io(0x86);
/// `IOMMU_OPTION`.
pub const IOMMU_OPTION: u64 = io(0x87);
/// `IOMMU_VFIO_IOAS`.
pub const IOMMU_VFIO_IOAS: u64 = io(0x88);
/// `IOMMU_HWPT_ALLOC`.
pub const IOMMU_HWPT_ALLOC: u64 = io(0x89);
/// `IOMMU_GET_HW_INFO`.
pub const IOMMU_GET_HW_INFO: u64 = io(0x8a);
/// `IOMMU_HWPT_SET_DIRTY_TRACKING`.
pub const IOMMU_HWPT_SET_DIRTY_TRACKING: u64 = io(0x8b);
/// `IOMMU_HWPT_GET_DIRTY_BITMAP`.
pub const IOMMU_HWPT_GET_DIRTY_BITMAP: u64 = io(0x8c);
/// `IOMMU_HWPT_INVALIDATE`.
pub const IOMMU_HWPT_INVALIDATE: u64 = io(0x8d);
/// `IOMMU_FAULT_QUEUE_ALLOC`.
pub const IOMMU_FAULT_QUEUE_ALLOC: u64 = io(0x8e);
/// `IOMMU_TEST_CMD` (kernels built with `CONFIG_IOMMUFD_TEST` only).
pub const IOMMU_TEST_CMD: u64 = io(0xa0);

/// First VFIO command number.
pub const VFIO_BASE: u32 = 100;
/// `VFIO_DEVICE_GET_INFO`.
pub const VFIO_DEVICE_GET_INFO: u64 = io(VFIO_BASE + 7);
/// `VFIO_DEVICE_GET_REGION_INFO`.
pub const VFIO_DEVICE_GET_REGION_INFO: u64 = io(VFIO_BASE + 8);
/// `VFIO_DEVICE_BIND_IOMMUFD`.
pub const VFIO_DEVICE_BIND_IOMMUFD: u64 = io(VFIO_BASE + 18);
/// `VFIO_DEVICE_ATTACH_IOMMUFD_PT`.
pub const VFIO_DEVICE_ATTACH_IOMMUFD_PT: u64 = io(VFIO_BASE + 19);
/// `VFIO_DEVICE_DETACH_IOMMUFD_PT`.
pub const VFIO_DEVICE_DETACH_IOMMUFD_PT: u64 = io(VFIO_BASE + 20);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_match_the_kernel_encoding() {
        // Golden values: the iommufd-ioctls crate checks IOMMU_HWPT_ALLOC == 15241 and
        // IOMMU_HWPT_INVALIDATE == 15245.
        assert_eq!(IOMMU_HWPT_ALLOC, 15241);
        assert_eq!(IOMMU_HWPT_INVALIDATE, 15245);
        assert_eq!(IOMMU_DESTROY, 0x3B80);
        assert_eq!(VFIO_DEVICE_BIND_IOMMUFD, 0x3B76);
        assert_eq!(VFIO_DEVICE_ATTACH_IOMMUFD_PT, 0x3B77);
        assert_eq!(VFIO_DEVICE_DETACH_IOMMUFD_PT, 0x3B78);
        assert_eq!(IOMMU_TEST_CMD, 0x3BA0);
        assert_eq!(VFIO_DEVICE_GET_INFO, 0x3B6B);
        assert_eq!(VFIO_DEVICE_GET_REGION_INFO, 0x3B6C);
    }
}
