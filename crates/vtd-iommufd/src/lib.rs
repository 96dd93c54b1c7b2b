//! The iommufd user-space API, typed, over any file that answers ioctls.
//!
//! [`IoctlFd`] is the seam: it is implemented for real file descriptors (`/dev/iommu`,
//! `/dev/vfio/devices/vfioN`) and by `vtd-kernel`'s simulated device files, so code
//! written against [`Iommufd`] and [`VfioDevice`] runs unchanged on both.
//!
//! - [`Iommufd`]: every iommufd call the VT-d nesting path needs, with the uAPI structs of
//!   `iommufd-bindings`.
//! - [`VfioDevice`]: binding a VFIO cdev to an iommufd, attaching and detaching it.
//! - [`vtd`]: hw_info decoded into `vtd-spec`'s CAP/ECAP and the SPR17 erratum flag,
//!   stage-1 data for nested HWPTs, stage-1 invalidation entries.
//! - [`selftest`]: `IOMMU_TEST_CMD` and the mock driver's data, for kernels built with
//!   `CONFIG_IOMMUFD_TEST` (and the simulation's equivalent option).
//! - [`Ioas`] and [`Hwpt`]: owners that destroy their object on drop, in dependency order.

pub mod errno;
pub mod error;
mod fd;
pub mod ioctl;
mod iommufd;
mod object;
pub mod selftest;
pub mod uapi;
pub mod vfio;
pub mod vtd;

pub use errno::Errno;
pub use error::{Call, Error, Result};
pub use fd::IoctlFd;
pub use iommufd::{Iommufd, IovaRanges};
pub use object::{Hwpt, HwptParent, Ioas};
pub use vfio::{VfioDevice, VfioDeviceInfo, VfioRegionInfo};
pub use vtd::{HwInfo, VtdHwInfo, VtdS1, VtdS1Invalidate};
