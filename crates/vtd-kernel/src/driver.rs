//! The seam between the vendor-neutral iommufd core and an IOMMU driver, as
//! `struct iommu_ops` / `iommu_domain_ops` are in Linux.
//!
//! The core owns objects, IOVA spaces and the uAPI rules; the driver owns domains and
//! everything the hardware sees. Errors are errno values, as the core passes them on.

use bitflags::bitflags;
use vtd_iommufd::Errno;

/// A device by its index in the platform.
pub type DevIndex = usize;

/// A domain the driver allocated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DomainHandle(pub u64);

bitflags! {
    /// Protection of a mapping (`IOMMU_READ`, `IOMMU_WRITE`, `IOMMU_CACHE`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct Prot: u32 {
        /// Devices may read.
        const READ = 1 << 0;
        /// Devices may write.
        const WRITE = 1 << 1;
        /// Cache-coherent DMA (always requested by iommufd).
        const CACHE = 1 << 2;
    }
}

/// What kind of domain a handle names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomainKind {
    /// A paging domain (stage 2 on VT-d); `nest_parent` when allocated as a parent.
    Paging {
        /// Allocated with `IOMMU_HWPT_ALLOC_NEST_PARENT`.
        nest_parent: bool,
        /// Has dirty-tracking operations.
        dirty_ops: bool,
    },
    /// A nested (user-managed stage-1) domain on a parent.
    Nested {
        /// The parent paging domain.
        parent: DomainHandle,
    },
}

/// The IOVA geometry of a paging domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DomainGeometry {
    /// First IOVA the domain can translate.
    pub aperture_start: u64,
    /// Last IOVA the domain can translate (the aperture is
    /// `[aperture_start, aperture_last]`).
    pub aperture_last: u64,
    /// Supported page sizes as a bitmap of sizes.
    pub page_sizes: u64,
}

/// `IOMMU_GET_HW_INFO` data from the driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HwInfoReport {
    /// `out_data_type`.
    pub data_type: u32,
    /// The type-specific data.
    pub data: Vec<u8>,
    /// `out_capabilities`.
    pub capabilities: u64,
    /// `out_max_pasid_log2`.
    pub max_pasid_log2: u8,
}

/// Kind of a reserved IOVA region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResvKind {
    /// Must be identity-mapped (RMRR).
    Direct,
    /// The MSI window (interrupt addresses).
    Msi,
    /// Not usable.
    Reserved,
}

/// An IOVA range a device cannot use for DMA mappings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResvRegion {
    /// First IOVA.
    pub start: u64,
    /// Last IOVA (inclusive).
    pub last: u64,
    /// Why it is reserved.
    pub kind: ResvKind,
}

/// Driver data passed with `IOMMU_HWPT_ALLOC`: the type and a user pointer to `len`
/// bytes, copied by the driver with the driver-blob rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UserData {
    /// `data_type`.
    pub data_type: u32,
    /// `data_uptr`.
    pub uptr: u64,
    /// `data_len`.
    pub len: u32,
}

/// A user cache-invalidation request: `num` entries of `entry_len` bytes at `uptr`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UserInvalidation {
    /// `data_type`.
    pub data_type: u32,
    /// `data_uptr`.
    pub uptr: u64,
    /// `entry_len`.
    pub entry_len: u32,
    /// `entry_num`.
    pub num: u32,
}

/// An IOMMU driver as the iommufd core uses it.
pub trait IommuDriver: Send + Sync {
    /// `hw_info` for a device.
    fn hw_info(&self, dev: DevIndex) -> HwInfoReport;

    /// The device's IOMMU can track dirty pages (`IOMMU_CAP_DIRTY_TRACKING`).
    fn dirty_tracking_capable(&self, dev: DevIndex) -> bool;

    /// The device's IOMMU can enforce cache coherency (`IOMMU_CAP_ENFORCE_CACHE_COHERENCY`).
    fn enforce_cache_coherency_capable(&self, dev: DevIndex) -> bool;

    /// Allocate a domain for `dev`: a paging domain when `parent` is `None` (with
    /// `flags` NEST_PARENT/DIRTY_TRACKING), or a nested domain on `parent` with `data`.
    fn domain_alloc_user(
        &self,
        dev: DevIndex,
        flags: u32,
        parent: Option<DomainHandle>,
        data: Option<UserData>,
    ) -> Result<DomainHandle, Errno>;

    /// Free a domain no device is attached to.
    fn domain_free(&self, dom: DomainHandle);

    /// What kind of domain `dom` is.
    fn domain_kind(&self, dom: DomainHandle) -> DomainKind;

    /// The IOVA geometry of a paging domain.
    fn domain_geometry(&self, dom: DomainHandle) -> DomainGeometry;

    /// Make every mapping of a paging domain cache-coherent (snooped).
    fn enforce_cache_coherency(&self, dom: DomainHandle) -> Result<(), Errno>;

    /// Map `[iova, iova + len)` to host-physical `paddr` in a paging domain.
    fn map(
        &self,
        dom: DomainHandle,
        iova: u64,
        paddr: u64,
        len: u64,
        prot: Prot,
    ) -> Result<(), Errno>;

    /// Unmap `[iova, iova + len)` and flush the caches; returns the bytes unmapped.
    fn unmap(&self, dom: DomainHandle, iova: u64, len: u64) -> u64;

    /// Attach `dev` (its requests without PASID) to `dom`, replacing what it had.
    fn attach_dev(&self, dom: DomainHandle, dev: DevIndex) -> Result<(), Errno>;

    /// Put `dev` on the blocking domain: all its DMA is refused.
    fn block_dev(&self, dev: DevIndex);

    /// Turn on I/O page faults for `dev` (`iommu_dev_enable_feature(IOMMU_DEV_FEAT_IOPF)`),
    /// which attaching it to a HWPT with a FAULT needs. VT-d needs ATS and PRI on the
    /// device (`intel_iommu_enable_iopf`) and no simulated PCI device has PRI: ENODEV.
    fn enable_iopf(&self, dev: DevIndex) -> Result<(), Errno> {
        let _ = dev;
        Err(Errno::ENODEV)
    }

    /// Process a user cache-invalidation request on a nested domain; returns how many
    /// entries were handled and the first failure, if any.
    fn cache_invalidate_user(
        &self,
        dom: DomainHandle,
        inv: UserInvalidation,
    ) -> (u32, Result<(), Errno>);

    /// Turn dirty tracking of a paging domain on or off.
    fn set_dirty_tracking(&self, dom: DomainHandle, enable: bool) -> Result<(), Errno>;

    /// Report (`record(iova, len)`) and, unless `keep`, clear the dirty state of the
    /// leaves mapping `[iova, iova + len)`. `bitmap`: the caller collects a bitmap,
    /// which needs tracking enabled (EINVAL otherwise); without one, stale bits are just
    /// cleared. The caller flushes with [`IommuDriver::iotlb_sync`].
    fn read_and_clear_dirty(
        &self,
        dom: DomainHandle,
        iova: u64,
        len: u64,
        keep: bool,
        bitmap: bool,
        record: &mut dyn FnMut(u64, u64),
    ) -> Result<(), Errno>;

    /// Flush the caches of `dom` for the gathered range `[start, last]`, or for an empty
    /// gather (`None`), which still flushes (core semantics §5.4.4).
    fn iotlb_sync(&self, dom: DomainHandle, gathered: Option<(u64, u64)>);

    /// The IOVA regions `dev` cannot use.
    fn resv_regions(&self, dev: DevIndex) -> Vec<ResvRegion>;
}
