//! Errors of the typed calls: which ioctl failed and with what errno.

use std::fmt;

use crate::errno::Errno;

/// The ioctl a typed call issues.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Call {
    /// `IOMMU_DESTROY`.
    Destroy,
    /// `IOMMU_IOAS_ALLOC`.
    IoasAlloc,
    /// `IOMMU_IOAS_ALLOW_IOVAS`.
    IoasAllowIovas,
    /// `IOMMU_IOAS_COPY`.
    IoasCopy,
    /// `IOMMU_IOAS_IOVA_RANGES`.
    IoasIovaRanges,
    /// `IOMMU_IOAS_MAP`.
    IoasMap,
    /// `IOMMU_IOAS_UNMAP`.
    IoasUnmap,
    /// `IOMMU_HWPT_ALLOC`.
    HwptAlloc,
    /// `IOMMU_GET_HW_INFO`.
    GetHwInfo,
    /// `IOMMU_HWPT_SET_DIRTY_TRACKING`.
    HwptSetDirtyTracking,
    /// `IOMMU_HWPT_GET_DIRTY_BITMAP`.
    HwptGetDirtyBitmap,
    /// `IOMMU_HWPT_INVALIDATE`.
    HwptInvalidate,
    /// `IOMMU_TEST_CMD`.
    TestCmd,
    /// `VFIO_DEVICE_BIND_IOMMUFD`.
    VfioBindIommufd,
    /// `VFIO_DEVICE_ATTACH_IOMMUFD_PT`.
    VfioAttachPt,
    /// `VFIO_DEVICE_DETACH_IOMMUFD_PT`.
    VfioDetachPt,
    /// `VFIO_DEVICE_GET_INFO`.
    VfioGetInfo,
    /// `VFIO_DEVICE_GET_REGION_INFO`.
    VfioGetRegionInfo,
    /// `pread(2)` of a VFIO device region.
    VfioRegionRead,
    /// `pwrite(2)` of a VFIO device region.
    VfioRegionWrite,
    /// `read(2)` of a fault queue's page faults.
    FaultRead,
    /// `write(2)` of page responses to a fault queue.
    FaultWrite,
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Call::Destroy => "IOMMU_DESTROY",
            Call::IoasAlloc => "IOMMU_IOAS_ALLOC",
            Call::IoasAllowIovas => "IOMMU_IOAS_ALLOW_IOVAS",
            Call::IoasCopy => "IOMMU_IOAS_COPY",
            Call::IoasIovaRanges => "IOMMU_IOAS_IOVA_RANGES",
            Call::IoasMap => "IOMMU_IOAS_MAP",
            Call::IoasUnmap => "IOMMU_IOAS_UNMAP",
            Call::HwptAlloc => "IOMMU_HWPT_ALLOC",
            Call::GetHwInfo => "IOMMU_GET_HW_INFO",
            Call::HwptSetDirtyTracking => "IOMMU_HWPT_SET_DIRTY_TRACKING",
            Call::HwptGetDirtyBitmap => "IOMMU_HWPT_GET_DIRTY_BITMAP",
            Call::HwptInvalidate => "IOMMU_HWPT_INVALIDATE",
            Call::TestCmd => "IOMMU_TEST_CMD",
            Call::VfioBindIommufd => "VFIO_DEVICE_BIND_IOMMUFD",
            Call::VfioAttachPt => "VFIO_DEVICE_ATTACH_IOMMUFD_PT",
            Call::VfioDetachPt => "VFIO_DEVICE_DETACH_IOMMUFD_PT",
            Call::VfioGetInfo => "VFIO_DEVICE_GET_INFO",
            Call::VfioGetRegionInfo => "VFIO_DEVICE_GET_REGION_INFO",
            Call::VfioRegionRead => "pread(VFIO region)",
            Call::VfioRegionWrite => "pwrite(VFIO region)",
            Call::FaultRead => "read(2) of a fault queue",
            Call::FaultWrite => "write(2) of a fault queue",
        })
    }
}

/// A failed typed call.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The ioctl failed.
    #[error("{call}: {errno}")]
    Ioctl {
        /// Which ioctl.
        call: Call,
        /// Its errno.
        errno: Errno,
    },
    /// `IOMMU_HWPT_INVALIDATE` stopped at an entry; the ones before it were processed.
    #[error("IOMMU_HWPT_INVALIDATE: {errno} after {processed} of {requested} entries")]
    Invalidate {
        /// The errno of the entry that failed.
        errno: Errno,
        /// Entries handled before it (the kernel's `entry_num` write-back).
        processed: u32,
        /// Entries requested.
        requested: u32,
    },
    /// `IOMMU_GET_HW_INFO` reported a type other than Intel VT-d.
    #[error("IOMMU_GET_HW_INFO: the IOMMU is not Intel VT-d (type {0})")]
    NotVtd(u32),
    /// A length does not fit the uAPI's 32-bit fields.
    #[error("{0}: too many entries for one call")]
    TooMany(Call),
    /// A region read or write moved fewer bytes than asked.
    #[error("{call}: {done} of {wanted} bytes")]
    Short {
        /// Which call.
        call: Call,
        /// Bytes moved.
        done: usize,
        /// Bytes asked for.
        wanted: usize,
    },
}

impl Error {
    /// The errno, where the kernel returned one.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            Error::Ioctl { errno, .. } | Error::Invalidate { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}

/// Result of a typed call.
pub type Result<T> = std::result::Result<T, Error>;
