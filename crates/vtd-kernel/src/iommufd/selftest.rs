//! The iommufd selftest interface (drivers/iommu/iommufd/selftest.c), present when the
//! platform is built with [`crate::PlatformDesc::iommufd_test`] (the simulation's
//! `CONFIG_IOMMUFD_TEST`): the mock IOMMU driver and the `IOMMU_TEST_CMD` ops that create
//! mock devices and look inside mock domains (core semantics §6).
//!
//! The mock driver is a second [`IommuDriver`]: its devices are created by
//! `IOMMU_TEST_OP_MOCK_DOMAIN` and live on their own bus, its paging domains map 2 KiB
//! pages inside the aperture `[2^24, 2^31 - 1]` and keep a dirty bit per entry, and its
//! nested domains hold four mock IOTLB slots that `IOMMU_HWPT_INVALIDATE` clears. The
//! core reaches it through [`Drivers`], which routes by device and by domain the way
//! Linux follows `dev->iommu->ops` and `domain->ops`.
//!
//! Not simulated: the in-kernel access ops (CREATE_ACCESS, DESTROY_ACCESS_PAGES,
//! ACCESS_PAGES, ACCESS_RW, ACCESS_REPLACE_IOAS: emulated-device pinning, which no VT-d
//! path uses) and MD_CHECK_REFS (the simulation keeps no per-page pin counts); they give
//! EOPNOTSUPP. TRIGGER_IOPF reports a page request, which reaches user space through
//! the FAULT of the HWPT the device is attached to (see `fault.rs`).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use vtd_iommufd::Errno;
use vtd_iommufd::selftest::{
    IOMMU_HW_INFO_SELFTEST_REGVAL, IOMMU_HW_INFO_TYPE_SELFTEST, IOMMU_HWPT_DATA_SELFTEST,
    IOMMU_HWPT_INVALIDATE_DATA_SELFTEST, IOMMU_TEST_INVALIDATE_FLAG_ALL, MOCK_APERTURE_LAST,
    MOCK_APERTURE_START, MOCK_FLAGS_DEVICE_HUGE_IOVA, MOCK_FLAGS_DEVICE_NO_DIRTY,
    MOCK_HUGE_PAGE_SIZE, MOCK_IO_PAGE_SIZE, MOCK_NESTED_DOMAIN_IOTLB_ID_MAX,
    MOCK_NESTED_DOMAIN_IOTLB_NUM, OP_ADD_RESERVED, OP_DIRTY, OP_MD_CHECK_IOTLB, OP_MD_CHECK_MAP,
    OP_MOCK_DOMAIN, OP_MOCK_DOMAIN_FLAGS, OP_MOCK_DOMAIN_REPLACE, OP_SET_TEMP_MEMORY_LIMIT,
    OP_TRIGGER_IOPF, iommu_test_cmd,
};
use vtd_iommufd::uapi::{
    HwCaps, HwptAllocFlags, IOMMU_NO_PASID, IOMMU_PGFAULT_FLAGS_LAST_PAGE,
    IOMMU_PGFAULT_FLAGS_PASID_VALID,
};

use super::fault::Iopf;
use super::{Ictx, ObjKind, Owner, State, decode, encode};
use crate::driver::{
    DevIndex, DomainGeometry, DomainHandle, DomainKind, HwInfoReport, IommuDriver, Prot,
    ResvRegion, UserData, UserInvalidation,
};
use crate::intel::IntelDriver;
use crate::uaccess::{check_user_range, copy_from_user, read_user, user_steps};

/// Device indices from here on are mock devices (the `iommufd_mock` bus).
pub(crate) const MOCK_DEV_BASE: DevIndex = 1 << 32;
/// Domain handles with this bit are the mock driver's.
const MOCK_DOMAIN_BIT: u64 = 1 << 63;

/// A mock device index.
pub(crate) fn is_mock_dev(dev: DevIndex) -> bool {
    dev >= MOCK_DEV_BASE
}

fn is_mock_domain(dom: DomainHandle) -> bool {
    dom.0 & MOCK_DOMAIN_BIT != 0
}

/// One 2 KiB entry of a mock paging domain (the xarray value of selftest.c).
#[derive(Clone, Copy, Debug)]
struct MockPte {
    paddr: u64,
    /// Mapped as part of a 1 MiB page.
    huge: bool,
    dirty: bool,
}

enum MockDomain {
    Paging {
        /// Entries by `iova / 2048`.
        ptes: BTreeMap<u64, MockPte>,
        nest_parent: bool,
        dirty_ops: bool,
        tracking: bool,
        /// Page sizes: 2 KiB, plus 1 MiB for a HUGE_IOVA device.
        page_sizes: u64,
    },
    Nested {
        parent: u64,
        iotlb: [u32; MOCK_NESTED_DOMAIN_IOTLB_NUM as usize],
    },
}

#[derive(Default)]
struct MockState {
    /// Mock devices by index, with their `MOCK_FLAGS_DEVICE_*`.
    devices: BTreeMap<DevIndex, u32>,
    next_dev: DevIndex,
    domains: HashMap<u64, MockDomain>,
    next_domain: u64,
}

/// The selftest's mock IOMMU driver (`mock_ops`).
#[derive(Default)]
pub struct MockDriver {
    state: Mutex<MockState>,
}

impl MockDriver {
    fn lock(&self) -> MutexGuard<'_, MockState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `mock_dev_create`: a new mock device; unknown flags are EINVAL.
    pub(crate) fn create_dev(&self, flags: u32) -> Result<DevIndex, Errno> {
        if flags & !(MOCK_FLAGS_DEVICE_NO_DIRTY | MOCK_FLAGS_DEVICE_HUGE_IOVA) != 0 {
            return Err(Errno::EINVAL);
        }
        let mut st = self.lock();
        let dev = MOCK_DEV_BASE + st.next_dev;
        st.next_dev += 1;
        st.devices.insert(dev, flags);
        Ok(dev)
    }

    /// `mock_dev_destroy`.
    pub(crate) fn destroy_dev(&self, dev: DevIndex) {
        self.lock().devices.remove(&dev);
    }

    fn dev_flags(&self, dev: DevIndex) -> u32 {
        self.lock().devices.get(&dev).copied().unwrap_or(0)
    }

    /// MD_CHECK_MAP's look at one entry: the physical address `iova` maps to.
    fn lookup(&self, dom: DomainHandle, iova: u64) -> Option<u64> {
        match self.lock().domains.get(&dom.0) {
            Some(MockDomain::Paging { ptes, .. }) => {
                ptes.get(&(iova / MOCK_IO_PAGE_SIZE)).map(|p| p.paddr)
            }
            _ => None,
        }
    }

    /// MD_CHECK_IOTLB's look at a nested domain: EINVAL unless slot `id` holds `value`.
    fn check_iotlb(&self, dom: DomainHandle, id: u32, value: u32) -> Result<(), Errno> {
        match self.lock().domains.get(&dom.0) {
            Some(MockDomain::Nested { iotlb, .. })
                if id <= MOCK_NESTED_DOMAIN_IOTLB_ID_MAX && iotlb[id as usize] == value =>
            {
                Ok(())
            }
            _ => Err(Errno::EINVAL),
        }
    }

    /// The DIRTY op: set the dirty bit of the entry at index `(iova + i·page_size) /
    /// page_size` for every set bit i — the kernel's indexing, right only for 2 KiB.
    fn mark_dirty(
        &self,
        dom: DomainHandle,
        iova: u64,
        page_size: u64,
        bits: &[u8],
    ) -> Result<u64, Errno> {
        let mut st = self.lock();
        let Some(MockDomain::Paging { ptes, tracking, .. }) = st.domains.get_mut(&dom.0) else {
            return Err(Errno::EINVAL);
        };
        if !*tracking {
            return Err(Errno::EINVAL);
        }
        let mut count = 0;
        for (i, byte) in bits.iter().enumerate() {
            for bit in 0..8 {
                if byte & (1 << bit) == 0 {
                    continue;
                }
                // Unsigned long arithmetic in the kernel: it wraps.
                let cur = (i as u64 * 8 + bit)
                    .wrapping_mul(page_size)
                    .wrapping_add(iova);
                if let Some(pte) = ptes.get_mut(&(cur / page_size)) {
                    pte.dirty = true;
                    count += 1;
                }
            }
        }
        Ok(count)
    }
}

impl IommuDriver for MockDriver {
    fn hw_info(&self, dev: DevIndex) -> HwInfoReport {
        let mut data = Vec::with_capacity(8);
        data.extend_from_slice(&0u32.to_le_bytes());
        data.extend_from_slice(&IOMMU_HW_INFO_SELFTEST_REGVAL.to_le_bytes());
        let mut caps = HwCaps::empty();
        caps.set(HwCaps::DIRTY_TRACKING, self.dirty_tracking_capable(dev));
        HwInfoReport {
            data_type: IOMMU_HW_INFO_TYPE_SELFTEST,
            data,
            capabilities: caps.bits(),
            max_pasid_log2: 0,
        }
    }

    fn dirty_tracking_capable(&self, dev: DevIndex) -> bool {
        self.dev_flags(dev) & MOCK_FLAGS_DEVICE_NO_DIRTY == 0
    }

    fn enforce_cache_coherency_capable(&self, _dev: DevIndex) -> bool {
        false
    }

    fn domain_alloc_user(
        &self,
        dev: DevIndex,
        flags: u32,
        parent: Option<DomainHandle>,
        data: Option<UserData>,
    ) -> Result<DomainHandle, Errno> {
        let dev_flags = self.dev_flags(dev);
        let domain = match parent {
            None => {
                let known = HwptAllocFlags::NEST_PARENT | HwptAllocFlags::DIRTY_TRACKING;
                if flags & !known.bits() != 0 {
                    return Err(Errno::EOPNOTSUPP);
                }
                let dirty = flags & HwptAllocFlags::DIRTY_TRACKING.bits() != 0;
                if data.is_some() || (dirty && dev_flags & MOCK_FLAGS_DEVICE_NO_DIRTY != 0) {
                    return Err(Errno::EOPNOTSUPP);
                }
                let mut page_sizes = MOCK_IO_PAGE_SIZE;
                if dev_flags & MOCK_FLAGS_DEVICE_HUGE_IOVA != 0 {
                    page_sizes |= MOCK_HUGE_PAGE_SIZE;
                }
                MockDomain::Paging {
                    ptes: BTreeMap::new(),
                    nest_parent: flags & HwptAllocFlags::NEST_PARENT.bits() != 0,
                    dirty_ops: dirty,
                    tracking: false,
                    page_sizes,
                }
            }
            Some(parent) => {
                let data = data.ok_or(Errno::EOPNOTSUPP)?;
                if data.data_type != IOMMU_HWPT_DATA_SELFTEST || flags != 0 {
                    return Err(Errno::EOPNOTSUPP);
                }
                if !matches!(
                    self.lock().domains.get(&parent.0),
                    Some(MockDomain::Paging { .. })
                ) {
                    return Err(Errno::EINVAL);
                }
                // iommu_copy_struct_from_user: exactly the 4-byte struct.
                if data.len != 4 {
                    return Err(Errno::EINVAL);
                }
                let iotlb: u32 = read_user(data.uptr)?;
                MockDomain::Nested {
                    parent: parent.0,
                    iotlb: [iotlb; MOCK_NESTED_DOMAIN_IOTLB_NUM as usize],
                }
            }
        };
        let mut st = self.lock();
        let id = MOCK_DOMAIN_BIT | st.next_domain;
        st.next_domain += 1;
        st.domains.insert(id, domain);
        Ok(DomainHandle(id))
    }

    fn domain_free(&self, dom: DomainHandle) {
        self.lock().domains.remove(&dom.0);
    }

    fn domain_kind(&self, dom: DomainHandle) -> DomainKind {
        match self.lock().domains.get(&dom.0) {
            Some(MockDomain::Nested { parent, .. }) => DomainKind::Nested {
                parent: DomainHandle(*parent),
            },
            Some(MockDomain::Paging {
                nest_parent,
                dirty_ops,
                ..
            }) => DomainKind::Paging {
                nest_parent: *nest_parent,
                dirty_ops: *dirty_ops,
            },
            None => DomainKind::Paging {
                nest_parent: false,
                dirty_ops: false,
            },
        }
    }

    fn domain_geometry(&self, dom: DomainHandle) -> DomainGeometry {
        let page_sizes = match self.lock().domains.get(&dom.0) {
            Some(MockDomain::Paging { page_sizes, .. }) => *page_sizes,
            _ => MOCK_IO_PAGE_SIZE,
        };
        DomainGeometry {
            aperture_start: MOCK_APERTURE_START,
            aperture_last: MOCK_APERTURE_LAST,
            page_sizes,
        }
    }

    fn enforce_cache_coherency(&self, _dom: DomainHandle) -> Result<(), Errno> {
        Err(Errno::EINVAL)
    }

    /// `iommu_map` on a mock domain: 2 KiB granules (1 MiB ones where the range allows
    /// and the domain has them), one entry per 2 KiB either way.
    fn map(
        &self,
        dom: DomainHandle,
        iova: u64,
        paddr: u64,
        len: u64,
        _prot: Prot,
    ) -> Result<(), Errno> {
        let mut st = self.lock();
        let Some(MockDomain::Paging {
            ptes, page_sizes, ..
        }) = st.domains.get_mut(&dom.0)
        else {
            return Err(Errno::EINVAL);
        };
        if !(iova | paddr | len).is_multiple_of(MOCK_IO_PAGE_SIZE) || len == 0 {
            return Err(Errno::EINVAL);
        }
        iova.checked_add(len - 1).ok_or(Errno::EINVAL)?;
        let huge_ok = *page_sizes & MOCK_HUGE_PAGE_SIZE != 0;
        let mut done = 0;
        while done < len {
            let (at, pa) = (iova + done, paddr + done);
            let huge = huge_ok
                && (at | pa) % MOCK_HUGE_PAGE_SIZE == 0
                && len - done >= MOCK_HUGE_PAGE_SIZE;
            let chunk = if huge {
                MOCK_HUGE_PAGE_SIZE
            } else {
                MOCK_IO_PAGE_SIZE
            };
            let mut off = 0;
            while off < chunk {
                ptes.insert(
                    (at + off) / MOCK_IO_PAGE_SIZE,
                    MockPte {
                        paddr: pa + off,
                        huge,
                        dirty: false,
                    },
                );
                off += MOCK_IO_PAGE_SIZE;
            }
            done += chunk;
        }
        Ok(())
    }

    fn unmap(&self, dom: DomainHandle, iova: u64, len: u64) -> u64 {
        let mut st = self.lock();
        let Some(MockDomain::Paging { ptes, .. }) = st.domains.get_mut(&dom.0) else {
            return 0;
        };
        let first = iova / MOCK_IO_PAGE_SIZE;
        let count = len.div_ceil(MOCK_IO_PAGE_SIZE);
        let keys: Vec<u64> = ptes
            .range(first..first.saturating_add(count))
            .map(|(k, _)| *k)
            .collect();
        for k in keys {
            ptes.remove(&k);
        }
        len
    }

    /// `mock_domain_nop_attach`: a domain with dirty ops cannot serve a NO_DIRTY device.
    fn attach_dev(&self, dom: DomainHandle, dev: DevIndex) -> Result<(), Errno> {
        let no_dirty = self.dev_flags(dev) & MOCK_FLAGS_DEVICE_NO_DIRTY != 0;
        match self.lock().domains.get(&dom.0) {
            Some(MockDomain::Paging {
                dirty_ops: true, ..
            }) if no_dirty => Err(Errno::EINVAL),
            Some(_) => Ok(()),
            None => Err(Errno::EINVAL),
        }
    }

    fn block_dev(&self, _dev: DevIndex) {}

    /// The mock IOMMU has an IOPF queue (`mock_dev_enable_feat`): every mock device can.
    fn enable_iopf(&self, _dev: DevIndex) -> Result<(), Errno> {
        Ok(())
    }

    /// `mock_domain_cache_invalidate_user`.
    fn cache_invalidate_user(
        &self,
        dom: DomainHandle,
        inv: UserInvalidation,
    ) -> (u32, Result<(), Errno>) {
        if inv.data_type != IOMMU_HWPT_INVALIDATE_DATA_SELFTEST {
            return (0, Err(Errno::EINVAL));
        }
        let mut st = self.lock();
        let Some(MockDomain::Nested { iotlb, .. }) = st.domains.get_mut(&dom.0) else {
            return (0, Err(Errno::EINVAL));
        };
        for i in 0..inv.num {
            // iommu_copy_struct_from_user_array: min = max = the 8-byte struct.
            if inv.entry_len != 8 {
                return (i, Err(Errno::EINVAL));
            }
            let at = inv.uptr.wrapping_add(i as u64 * inv.entry_len as u64);
            let [flags, id]: [u32; 2] = match read_user(at) {
                Ok(v) => v,
                Err(e) => return (i, Err(e)),
            };
            if flags & !IOMMU_TEST_INVALIDATE_FLAG_ALL != 0 {
                return (i, Err(Errno::EOPNOTSUPP));
            }
            if id > MOCK_NESTED_DOMAIN_IOTLB_ID_MAX {
                return (i, Err(Errno::EINVAL));
            }
            if flags & IOMMU_TEST_INVALIDATE_FLAG_ALL != 0 {
                *iotlb = [0; MOCK_NESTED_DOMAIN_IOTLB_NUM as usize];
            } else {
                iotlb[id as usize] = 0;
            }
        }
        (inv.num, Ok(()))
    }

    fn set_dirty_tracking(&self, dom: DomainHandle, enable: bool) -> Result<(), Errno> {
        match self.lock().domains.get_mut(&dom.0) {
            Some(MockDomain::Paging {
                dirty_ops,
                tracking,
                ..
            }) => {
                if enable && !*dirty_ops {
                    return Err(Errno::EINVAL);
                }
                *tracking = enable;
                Ok(())
            }
            _ => Err(Errno::EINVAL),
        }
    }

    /// `mock_domain_read_and_clear_dirty`: walk 2 KiB steps (a whole huge page at once
    /// where one is mapped), reporting the step when any entry under it is dirty.
    fn read_and_clear_dirty(
        &self,
        dom: DomainHandle,
        iova: u64,
        len: u64,
        keep: bool,
        bitmap: bool,
        record: &mut dyn FnMut(u64, u64),
    ) -> Result<(), Errno> {
        let mut st = self.lock();
        let Some(MockDomain::Paging { ptes, tracking, .. }) = st.domains.get_mut(&dom.0) else {
            return Err(Errno::EINVAL);
        };
        if !*tracking && bitmap {
            return Err(Errno::EINVAL);
        }
        let end = iova.saturating_add(len);
        let mut at = iova;
        while at < end {
            let Some(pte) = ptes.get(&(at / MOCK_IO_PAGE_SIZE)).copied() else {
                at += MOCK_IO_PAGE_SIZE;
                continue;
            };
            let size = if pte.huge {
                MOCK_HUGE_PAGE_SIZE
            } else {
                MOCK_IO_PAGE_SIZE
            };
            let head = at & !(size - 1);
            let mut dirty = false;
            let mut cur = head;
            while cur < head + size {
                if let Some(p) = ptes.get_mut(&(cur / MOCK_IO_PAGE_SIZE))
                    && p.dirty
                {
                    dirty = true;
                    if !keep {
                        p.dirty = false;
                    }
                }
                cur += MOCK_IO_PAGE_SIZE;
            }
            if dirty {
                record(at, size);
            }
            at += size;
        }
        Ok(())
    }

    fn iotlb_sync(&self, _dom: DomainHandle, _gathered: Option<(u64, u64)>) {}

    fn resv_regions(&self, _dev: DevIndex) -> Vec<ResvRegion> {
        Vec::new()
    }
}

/// The drivers of a platform, as the core sees them: each call goes to the driver of its
/// device or of its domain; a device and a domain of different drivers do not mix
/// (EINVAL, like Linux's `domain->owner != dev_iommu_ops(dev)` checks).
pub(crate) struct Drivers {
    pub(crate) intel: Arc<IntelDriver>,
    pub(crate) mock: Option<Arc<MockDriver>>,
}

impl Drivers {
    fn for_dev(&self, dev: DevIndex) -> &dyn IommuDriver {
        match &self.mock {
            Some(mock) if is_mock_dev(dev) => &**mock,
            _ => &*self.intel,
        }
    }

    fn for_dom(&self, dom: DomainHandle) -> &dyn IommuDriver {
        match &self.mock {
            Some(mock) if is_mock_domain(dom) => &**mock,
            _ => &*self.intel,
        }
    }

    /// The device and the domain belong to the same driver.
    fn same_owner(&self, dev: DevIndex, dom: DomainHandle) -> bool {
        is_mock_dev(dev) == is_mock_domain(dom)
    }
}

impl IommuDriver for Drivers {
    fn hw_info(&self, dev: DevIndex) -> HwInfoReport {
        self.for_dev(dev).hw_info(dev)
    }

    fn dirty_tracking_capable(&self, dev: DevIndex) -> bool {
        self.for_dev(dev).dirty_tracking_capable(dev)
    }

    fn enforce_cache_coherency_capable(&self, dev: DevIndex) -> bool {
        self.for_dev(dev).enforce_cache_coherency_capable(dev)
    }

    fn domain_alloc_user(
        &self,
        dev: DevIndex,
        flags: u32,
        parent: Option<DomainHandle>,
        data: Option<UserData>,
    ) -> Result<DomainHandle, Errno> {
        if parent.is_some_and(|p| !self.same_owner(dev, p)) {
            return Err(Errno::EINVAL);
        }
        self.for_dev(dev)
            .domain_alloc_user(dev, flags, parent, data)
    }

    fn domain_free(&self, dom: DomainHandle) {
        self.for_dom(dom).domain_free(dom)
    }

    fn domain_kind(&self, dom: DomainHandle) -> DomainKind {
        self.for_dom(dom).domain_kind(dom)
    }

    fn domain_geometry(&self, dom: DomainHandle) -> DomainGeometry {
        self.for_dom(dom).domain_geometry(dom)
    }

    fn enforce_cache_coherency(&self, dom: DomainHandle) -> Result<(), Errno> {
        self.for_dom(dom).enforce_cache_coherency(dom)
    }

    fn map(
        &self,
        dom: DomainHandle,
        iova: u64,
        paddr: u64,
        len: u64,
        prot: Prot,
    ) -> Result<(), Errno> {
        self.for_dom(dom).map(dom, iova, paddr, len, prot)
    }

    fn unmap(&self, dom: DomainHandle, iova: u64, len: u64) -> u64 {
        self.for_dom(dom).unmap(dom, iova, len)
    }

    fn attach_dev(&self, dom: DomainHandle, dev: DevIndex) -> Result<(), Errno> {
        if !self.same_owner(dev, dom) {
            return Err(Errno::EINVAL);
        }
        self.for_dom(dom).attach_dev(dom, dev)
    }

    fn block_dev(&self, dev: DevIndex) {
        self.for_dev(dev).block_dev(dev)
    }

    fn cache_invalidate_user(
        &self,
        dom: DomainHandle,
        inv: UserInvalidation,
    ) -> (u32, Result<(), Errno>) {
        self.for_dom(dom).cache_invalidate_user(dom, inv)
    }

    fn set_dirty_tracking(&self, dom: DomainHandle, enable: bool) -> Result<(), Errno> {
        self.for_dom(dom).set_dirty_tracking(dom, enable)
    }

    fn read_and_clear_dirty(
        &self,
        dom: DomainHandle,
        iova: u64,
        len: u64,
        keep: bool,
        bitmap: bool,
        record: &mut dyn FnMut(u64, u64),
    ) -> Result<(), Errno> {
        self.for_dom(dom)
            .read_and_clear_dirty(dom, iova, len, keep, bitmap, record)
    }

    fn iotlb_sync(&self, dom: DomainHandle, gathered: Option<(u64, u64)>) {
        self.for_dom(dom).iotlb_sync(dom, gathered)
    }

    fn resv_regions(&self, dev: DevIndex) -> Vec<ResvRegion> {
        self.for_dev(dev).resv_regions(dev)
    }

    fn enable_iopf(&self, dev: DevIndex) -> Result<(), Errno> {
        self.for_dev(dev).enable_iopf(dev)
    }
}

/// A SELFTEST object: a mock device and its DEVICE object. `None` while
/// `IOMMU_TEST_OP_MOCK_DOMAIN` is still building it (the id is reserved, not visible).
pub(crate) struct SelftestObj {
    pub(crate) idev: u32,
    pub(crate) dev: DevIndex,
}

/// Offsets in `struct iommu_test_cmd` of the fields the ops use.
mod at {
    pub(super) const MOCK_STDEV: usize = 16;
    pub(super) const MOCK_HWPT: usize = 20;
    pub(super) const MOCK_IDEV: usize = 24;
    pub(super) const MOCK_DEV_FLAGS: usize = 28;
    pub(super) const REPLACE_PT: usize = 16;
    pub(super) const RESV_START: usize = 16;
    pub(super) const RESV_LENGTH: usize = 24;
    pub(super) const MAP_IOVA: usize = 16;
    pub(super) const MAP_LENGTH: usize = 24;
    pub(super) const MAP_UPTR: usize = 32;
    pub(super) const LIMIT: usize = 16;
    pub(super) const DIRTY_IOVA: usize = 24;
    pub(super) const DIRTY_LENGTH: usize = 32;
    pub(super) const DIRTY_PAGE_SIZE: usize = 40;
    pub(super) const DIRTY_UPTR: usize = 48;
    pub(super) const DIRTY_OUT: usize = 56;
    pub(super) const IOTLB_ID: usize = 16;
    pub(super) const IOTLB_VALUE: usize = 20;
    pub(super) const IOPF_DEV: usize = 16;
    pub(super) const IOPF_PASID: usize = 20;
    pub(super) const IOPF_GRPID: usize = 24;
    pub(super) const IOPF_PERM: usize = 28;
    pub(super) const IOPF_ADDR: usize = 32;
}

impl Ictx {
    /// `iommufd_test_trigger_iopf`: the device reports a page request, the last of its
    /// group (`iommu_report_device_fault`). It reaches a FAULT queue only when the device
    /// is attached to a HWPT with a FAULT: with a PASID the mock IOMMU (which lets user
    /// space own the PASID table) takes the handler of the nested domain on the RID,
    /// without one the RID's domain; only nested HWPTs carry a FAULT in 6.12, so both
    /// come to the same. Otherwise the request is answered at once and the op still
    /// succeeds. ENOENT when the id is no DEVICE.
    fn trigger_iopf(&self, cmd: &iommu_test_cmd) -> Result<(), Errno> {
        let dev_id = cmd.u32_at(at::IOPF_DEV);
        let pasid = cmd.u32_at(at::IOPF_PASID);
        let mut st = self.lock();
        let device = st.device(dev_id)?;
        let (attached, attach_gen) = (device.attached, device.attach_gen);
        let Some(fault) = attached.and_then(|h| st.hwpt_fault(h)) else {
            return Ok(());
        };
        let pasid_valid = if pasid != IOMMU_NO_PASID {
            IOMMU_PGFAULT_FLAGS_PASID_VALID
        } else {
            0
        };
        st.fault_queue_mut(fault)?.report(Iopf {
            flags: IOMMU_PGFAULT_FLAGS_LAST_PAGE | pasid_valid,
            dev_id,
            pasid,
            grpid: cmd.u32_at(at::IOPF_GRPID),
            perm: cmd.u32_at(at::IOPF_PERM),
            addr: cmd.u64_at(at::IOPF_ADDR),
            attach_gen,
        });
        Ok(())
    }
}

impl State {
    /// A paging HWPT of the mock driver: ENOENT when `id` is no paging HWPT, EINVAL when
    /// its domain is not a mock one (get_md_pagetable).
    fn mock_paging_domain(&self, id: u32) -> Result<DomainHandle, Errno> {
        let dom = self.hwpt_paging(id)?.domain;
        if is_mock_domain(dom) {
            Ok(dom)
        } else {
            Err(Errno::EINVAL)
        }
    }

    /// A nested HWPT of the mock driver (get_md_pagetable_nested).
    fn mock_nested_domain(&self, id: u32) -> Result<DomainHandle, Errno> {
        match self.objects.get(&id).map(|o| &o.kind) {
            Some(ObjKind::HwptNested(h)) if is_mock_domain(h.domain) => Ok(h.domain),
            Some(ObjKind::HwptNested(_)) => Err(Errno::EINVAL),
            _ => Err(Errno::ENOENT),
        }
    }
}

impl Ictx {
    fn mock(&self) -> Result<Arc<MockDriver>, Errno> {
        self.platform()?.drivers.mock.clone().ok_or(Errno::ENOTTY)
    }

    /// IOMMU_TEST_CMD (`iommufd_test`): unknown ops, 0 included, are EOPNOTSUPP.
    pub(super) fn test_cmd_ioctl(&self, buf: &mut [u8], arg: u64) -> Result<(), Errno> {
        let mut cmd: iommu_test_cmd = decode(buf);
        let respond = match cmd.op {
            OP_ADD_RESERVED => {
                self.test_add_reserved(
                    cmd.id,
                    cmd.u64_at(at::RESV_START),
                    cmd.u64_at(at::RESV_LENGTH),
                )?;
                false
            }
            OP_MOCK_DOMAIN | OP_MOCK_DOMAIN_FLAGS => {
                let flags = if cmd.op == OP_MOCK_DOMAIN_FLAGS {
                    cmd.u32_at(at::MOCK_DEV_FLAGS)
                } else {
                    0
                };
                return self.test_mock_domain(&mut cmd, flags, buf, arg);
            }
            OP_MOCK_DOMAIN_REPLACE => {
                let pt = self.test_mock_domain_replace(cmd.id, cmd.u32_at(at::REPLACE_PT))?;
                cmd.set_u32_at(at::REPLACE_PT, pt);
                true
            }
            OP_MD_CHECK_MAP => {
                self.test_md_check_map(
                    cmd.id,
                    cmd.u64_at(at::MAP_IOVA),
                    cmd.u64_at(at::MAP_LENGTH),
                    cmd.u64_at(at::MAP_UPTR),
                )?;
                false
            }
            OP_SET_TEMP_MEMORY_LIMIT => {
                // Bounds the PFN batches of pages.c, which the simulation does not have;
                // only the argument check remains.
                if cmd.u32_at(at::LIMIT) < 12 {
                    return Err(Errno::EINVAL);
                }
                false
            }
            OP_DIRTY => {
                let n = self.test_dirty(
                    cmd.id,
                    cmd.u64_at(at::DIRTY_IOVA),
                    cmd.u64_at(at::DIRTY_LENGTH),
                    cmd.u64_at(at::DIRTY_PAGE_SIZE),
                    cmd.u64_at(at::DIRTY_UPTR),
                )?;
                cmd.set_u64_at(at::DIRTY_OUT, n);
                true
            }
            OP_MD_CHECK_IOTLB => {
                let dom = self.lock().mock_nested_domain(cmd.id)?;
                self.mock()?.check_iotlb(
                    dom,
                    cmd.u32_at(at::IOTLB_ID),
                    cmd.u32_at(at::IOTLB_VALUE),
                )?;
                false
            }
            OP_TRIGGER_IOPF => {
                self.trigger_iopf(&cmd)?;
                false
            }
            _ => return Err(Errno::EOPNOTSUPP),
        };
        if respond {
            encode(buf, &cmd);
            Self::respond(buf, arg)?;
        }
        Ok(())
    }

    /// ADD_RESERVED: a reservation with no owner, kept until the IOAS goes.
    fn test_add_reserved(&self, ioas: u32, start: u64, length: u64) -> Result<(), Errno> {
        if length == 0 {
            return Err(Errno::EINVAL);
        }
        let last = start.checked_add(length - 1).ok_or(Errno::EOVERFLOW)?;
        self.lock()
            .ioas_mut(ioas)?
            .reserve(start, last, Owner::Test)
    }

    /// MOCK_DOMAIN(_FLAGS): SELFTEST id first, then the DEVICE, then the attach (which
    /// may create an automatic HWPT); any failure undoes everything.
    fn test_mock_domain(
        &self,
        cmd: &mut iommu_test_cmd,
        flags: u32,
        buf: &mut [u8],
        arg: u64,
    ) -> Result<(), Errno> {
        let mock = self.mock()?;
        let platform = self.platform()?;
        let sobj = {
            let mut st = self.lock();
            platform.mem.fail_point()?;
            st.insert(ObjKind::Selftest(None))
        };
        let undo_sobj = |st: &mut State| {
            st.objects.remove(&sobj);
        };
        let dev = match mock.create_dev(flags) {
            Ok(dev) => dev,
            Err(e) => {
                undo_sobj(&mut self.lock());
                return Err(e);
            }
        };
        let idev = match self.bind_device(dev) {
            Ok(id) => id,
            Err(e) => {
                mock.destroy_dev(dev);
                undo_sobj(&mut self.lock());
                return Err(e);
            }
        };
        let undo_all = |this: &Ictx| {
            this.unbind_device(idev);
            mock.destroy_dev(dev);
            undo_sobj(&mut this.lock());
        };
        let hwpt = match self.attach_device(idev, cmd.id) {
            Ok(h) => h,
            Err(e) => {
                undo_all(self);
                return Err(e);
            }
        };
        cmd.set_u32_at(at::MOCK_HWPT, hwpt);
        cmd.set_u32_at(at::MOCK_STDEV, sobj);
        cmd.set_u32_at(at::MOCK_IDEV, idev);
        encode(buf, cmd);
        if let Err(e) = Self::respond(buf, arg) {
            undo_all(self);
            return Err(e);
        }
        if let Some(o) = self.lock().objects.get_mut(&sobj) {
            o.kind = ObjKind::Selftest(Some(SelftestObj { idev, dev }));
        }
        Ok(())
    }

    /// MOCK_DOMAIN_REPLACE: `iommufd_device_replace` of the SELFTEST object's device.
    fn test_mock_domain_replace(&self, stdev: u32, pt_id: u32) -> Result<u32, Errno> {
        let idev = match self.lock().objects.get(&stdev).map(|o| &o.kind) {
            Some(ObjKind::Selftest(Some(s))) => s.idev,
            _ => return Err(Errno::ENOENT),
        };
        self.attach_device(idev, pt_id)
    }

    /// MD_CHECK_MAP: every 2 KiB of `[iova, iova + length)` maps to the page under the
    /// matching user address (host-physical = user virtual in the simulation).
    fn test_md_check_map(&self, hwpt: u32, iova: u64, length: u64, uptr: u64) -> Result<(), Errno> {
        if !iova.is_multiple_of(MOCK_IO_PAGE_SIZE)
            || !length.is_multiple_of(MOCK_IO_PAGE_SIZE)
            || !uptr.is_multiple_of(MOCK_IO_PAGE_SIZE)
            || uptr.checked_add(length).is_none()
        {
            return Err(Errno::EINVAL);
        }
        let dom = self.lock().mock_paging_domain(hwpt)?;
        let mock = self.mock()?;
        let mut done = 0;
        while done < length {
            let (at, user) = (iova + done, uptr + done);
            check_user_range(user & !0xFFF, 0x1000, false)?;
            if mock.lookup(dom, at) != Some(user) {
                return Err(Errno::EINVAL);
            }
            done += MOCK_IO_PAGE_SIZE;
        }
        Ok(())
    }

    /// DIRTY: mark mock PTEs dirty from a user bitmap; returns how many.
    fn test_dirty(
        &self,
        hwpt: u32,
        iova: u64,
        length: u64,
        page_size: u64,
        uptr: u64,
    ) -> Result<u64, Errno> {
        if page_size == 0
            || length == 0
            || !iova.is_multiple_of(page_size)
            || !length.is_multiple_of(page_size)
            || uptr == 0
        {
            return Err(Errno::EINVAL);
        }
        let dom = self.lock().mock_paging_domain(hwpt)?;
        let mock = self.mock()?;
        let max = length / page_size;
        let bytes = max.div_ceil(8);
        // Linux allocates the bitmap with kvzalloc, which refuses more than INT_MAX bytes.
        if bytes > i32::MAX as u64 {
            return Err(Errno::ENOMEM);
        }
        // Tracking must be on before the bitmap is read.
        mock.mark_dirty(dom, iova, page_size, &[])?;
        // Linux copies the whole bitmap before marking anything, so an unreadable byte
        // marks nothing. The simulation checks the range, then reads it a page at a time
        // rather than holding a copy of the size user space chose.
        check_user_range(uptr, bytes, false)?;
        let mut chunk = [0u8; 4096];
        let mut count = 0;
        for (at, n) in user_steps(uptr, bytes)? {
            let bits = &mut chunk[..n];
            copy_from_user(at, bits)?;
            let done = at - uptr;
            // Bits past `max` in the last byte do not count.
            if done + n as u64 == bytes
                && !max.is_multiple_of(8)
                && let Some(last) = bits.last_mut()
            {
                *last &= (1u8 << (max % 8)) - 1;
            }
            let first = (done * 8).wrapping_mul(page_size).wrapping_add(iova);
            count += mock.mark_dirty(dom, first, page_size, bits)?;
        }
        Ok(count)
    }

    /// Destroy a SELFTEST object (`iommufd_selftest_destroy`): detach, unbind, delete
    /// the mock device.
    pub(super) fn destroy_selftest(
        &self,
        st: &mut State,
        driver: &dyn IommuDriver,
        mem: &crate::hostmem::HostMem,
        s: SelftestObj,
    ) {
        self.detach_locked(st, driver, mem, s.idev);
        st.objects.remove(&s.idev);
        if let Ok(mock) = self.mock() {
            mock.destroy_dev(s.dev);
        }
    }
}
