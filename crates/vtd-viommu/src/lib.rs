//! The VMM side of VT-d nesting (ARCHITECTURE §5).
//!
//! | module | concern |
//! |---|---|
//! | [`memory`] | the guest memory map and the mmap'd host memory behind it |
//! | [`shadow`] | guest PASID entries → host attachments (parent, nested HWPT, blocked) |
//! | [`viommu`] | the guest-facing unit; invalidations forwarded, entries re-shadowed, faults reported back |
//! | [`emulated`] | emulated devices: DMA translated by the guest-facing unit, as vm-memory's `Iommu` |
//! | [`config`] | the guest-facing unit's CAP/ECAP, derived from the host's |
//! | [`guest`] | a scripted guest driver |
//! | [`stage2`] | the nest parent built from the memory map, with the ERRATA_772415_SPR17 policy |
//! | [`probe`] | what a host offers a nesting vIOMMU, asked of its kernel before a VM starts |
//!
//! Everything here talks to the kernel through [`vtd_iommufd`] over any
//! [`vtd_iommufd::IoctlFd`], so the same code runs on a real `/dev/iommu` and on the
//! simulated kernel.

pub mod config;
pub mod emulated;
pub mod guest;
pub mod memory;
pub mod probe;
pub mod shadow;
pub mod stage2;
pub mod viommu;

pub use memory::{GuestMemory, MemoryMap, MemoryMapError, Region, RegionKind};
pub use stage2::{Placement, SkipReason, Stage2, Stage2Error, Stage2Plan, Stage2Policy};
pub use viommu::{Event, GuestUnit, NewDevice, VIommu, VIommuError};
