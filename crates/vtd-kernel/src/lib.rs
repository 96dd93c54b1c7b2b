//! A simulated Linux 6.12 kernel for Intel VT-d nesting: the iommufd core and the Intel
//! IOMMU driver, behind device files that answer the real uAPI errno for errno.
//!
//! A [`Platform`] is a machine: VT-d units (the `vtd-model` hardware), PCI devices
//! behind them and host memory. User space opens [`IommufdFile`]s and
//! [`VfioDeviceFile`]s from it and drives them with the very calls it would make on a
//! real `/dev/iommu` — `vtd_iommufd::Iommufd` and `VfioDevice` work on both, through the
//! [`vtd_iommufd::IoctlFd`] seam. Devices then do DMA through their unit
//! ([`Platform::dma_read`], [`Platform::dma_write`]).
//!
//! | module | Linux | concern |
//! |---|---|---|
//! | [`platform`] | — | the machine, its devices and DMA |
//! | `files` | vfio/device_cdev.c, iommufd/main.c | device files and descriptor numbers |
//! | `iommufd` | drivers/iommu/iommufd | objects, IOAS, HWPT, devices, ioctl dispatch |
//! | [`driver`] | include/linux/iommu.h | the core ↔ driver seam |
//! | [`intel`] | drivers/iommu/intel | the VT-d driver: tables, PASID entries, cache tags, QI |
//! | [`hostmem`] | mm | host memory: kernel pages and pinned user memory |
//! | `uaccess` | copy_{from,to}_user | safe access to the caller's memory |
//! | `iommufd::selftest` | iommufd/selftest.c | `IOMMU_TEST_CMD` and the mock IOMMU driver (with [`PlatformDesc::iommufd_test`]) |
//! | [`edu`] | QEMU hw/misc/edu.c | the `edu` device behind a VFIO file: config space, BAR 0, DMA |
//!
//! The semantics follow `../shared/spec/kernel-semantics.md` (KS) and
//! `docs/iommufd-core-semantics.md`; where the simulation departs from Linux, the item
//! says so.

pub mod driver;
pub mod edu;
mod files;
pub mod hostmem;
pub mod intel;
mod iommufd;
pub mod platform;
mod uaccess;

pub use files::{IommufdFile, VfioDeviceFile};
pub use hostmem::HostMem;
pub use intel::IntelDriver;
pub use platform::{DeviceDesc, DmaError, Platform, PlatformDesc, PlatformError};
