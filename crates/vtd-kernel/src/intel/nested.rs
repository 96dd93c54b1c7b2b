//! Nested domains (nested.c): allocation on a nest parent, attach with the checks of
//! §5.2, and the user's stage-1 cache invalidation (§6.2).

use vtd_iommufd::Errno;
use vtd_iommufd::uapi::{
    IOMMU_HWPT_DATA_VTD_S1, IOMMU_HWPT_INVALIDATE_DATA_VTD_S1, IOMMU_VTD_INV_FLAGS_LEAF,
    VTD_S1_DATA_LEN, iommu_hwpt_vtd_s1, iommu_hwpt_vtd_s1_invalidate,
};

use super::pasid::{NestedSetup, SecondLevel};
use super::{Domain, DomainCommon, IntelDriver, NestedDomain, State, TagKind};
use crate::driver::{UserData, UserInvalidation};
use crate::uaccess::read_user;

/// Copy a driver blob of type `want` and exact length `len` (iommu_copy_struct_from_user,
/// §1.3): a wrong type or any length but the struct's is EINVAL, a bad pointer EFAULT.
fn copy_blob<T: Copy + Default>(
    data_type: u32,
    want: u32,
    uptr: u64,
    len: u32,
) -> Result<T, Errno> {
    if data_type != want || len as usize != std::mem::size_of::<T>() {
        return Err(Errno::EINVAL);
    }
    read_user(uptr)
}

impl IntelDriver {
    /// Allocate a nested domain on `parent` (intel_nested_domain_alloc, §3.4 step 4).
    pub(super) fn alloc_nested(
        &self,
        st: &mut State,
        dev: usize,
        flags: u32,
        parent: u64,
        data: Option<UserData>,
    ) -> Result<u64, Errno> {
        if !self.hw[self.unit_of(dev)].nested_supported() || flags != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        let data = data.ok_or(Errno::EOPNOTSUPP)?;
        if data.data_type != IOMMU_HWPT_DATA_VTD_S1 {
            return Err(Errno::EOPNOTSUPP);
        }
        if !matches!(st.domains.get(&parent), Some(Domain::Paging(p)) if p.nest_parent) {
            return Err(Errno::EINVAL);
        }
        let s1: iommu_hwpt_vtd_s1 =
            copy_blob(data.data_type, IOMMU_HWPT_DATA_VTD_S1, data.uptr, data.len)?;
        self.mem.fail_point()?;
        let id = st.alloc_domain_id();
        st.domains.insert(
            id,
            Domain::Nested(NestedDomain {
                parent,
                s1,
                common: DomainCommon::default(),
            }),
        );
        if let Some(Domain::Paging(p)) = st.domains.get_mut(&parent) {
            p.children.push(id);
        }
        Ok(id)
    }

    /// Attach `dev` to the nested domain `dom` (intel_nested_attach_dev, §5.2).
    pub(super) fn attach_nested(&self, st: &mut State, dom: u64, dev: usize) -> Result<(), Errno> {
        let info = self.devices[dev];
        let hw = &self.hw[info.unit];
        self.block(st, dev);
        let Some(Domain::Nested(n)) = st.domains.get(&dom) else {
            return Err(Errno::EINVAL);
        };
        let (parent, s1) = (n.parent, n.s1);
        let Some(Domain::Paging(p)) = st.domains.get(&parent) else {
            return Err(Errno::EINVAL);
        };
        if hw.agaw < p.agaw {
            return Err(Errno::ENODEV);
        }
        self.prepare_paging_attach(st, parent, info.unit)?;
        let did = self.domain_attach_iommu(st, dom, info.unit)?;
        Self::tag_assign(st, dom, TagKind::Iotlb, info.unit, did, 0, 0);
        Self::tag_assign(st, parent, TagKind::NestingIotlb, info.unit, did, 0, 0);
        let Some(Domain::Paging(p)) = st.domains.get(&parent) else {
            return Err(Errno::EINVAL);
        };
        let setup = NestedSetup {
            s1,
            parent: SecondLevel {
                ssptptr: p.pgtbl.root,
                agaw: p.agaw,
                did,
                dirty: p.dirty_tracking,
                snoop: p.force_snooping,
            },
            did,
        };
        if let Err(e) = self.setup_nested(st, dev, 0, &setup) {
            Self::tag_unassign(st, dom, TagKind::Iotlb, info.unit, did, 0, 0);
            Self::tag_unassign(st, parent, TagKind::NestingIotlb, info.unit, did, 0, 0);
            self.domain_detach_iommu(st, dom, info.unit);
            return Err(e);
        }
        if let Some(d) = st.domains.get_mut(&dom) {
            d.common_mut().devices.push(dev);
        }
        // 6.12 leaves ATS off on a nested attach (block disabled it and this path does not
        // re-enable it), so no device-TLB tags.
        st.attached[dev] = Some(dom);
        Ok(())
    }

    /// The user's stage-1 invalidation (intel_nested_cache_invalidate_user, §6.2): each
    /// entry in order, stopping at the first failure; returns how many were handled.
    pub(super) fn invalidate_user(
        &self,
        st: &mut State,
        dom: u64,
        inv: UserInvalidation,
    ) -> (u32, Result<(), Errno>) {
        if inv.data_type != IOMMU_HWPT_INVALIDATE_DATA_VTD_S1 {
            return (0, Err(Errno::EINVAL));
        }
        for i in 0..inv.num {
            let addr = inv.uptr.wrapping_add(i as u64 * inv.entry_len as u64);
            let entry: iommu_hwpt_vtd_s1_invalidate = match copy_blob(
                inv.data_type,
                IOMMU_HWPT_INVALIDATE_DATA_VTD_S1,
                addr,
                inv.entry_len,
            ) {
                Ok(e) => e,
                Err(e) => return (i, Err(e)),
            };
            debug_assert_eq!(inv.entry_len, VTD_S1_DATA_LEN);
            if entry.flags & !IOMMU_VTD_INV_FLAGS_LEAF != 0 || entry.__reserved != 0 {
                return (i, Err(Errno::EOPNOTSUPP));
            }
            if entry.addr & 0xFFF != 0 || (entry.npages == u64::MAX && entry.addr != 0) {
                return (i, Err(Errno::EINVAL));
            }
            let leaf = entry.flags & IOMMU_VTD_INV_FLAGS_LEAF != 0;
            // npages = 0 asks for nothing; Linux computes an end below the start and
            // flushes no guaranteed range. Here it flushes nothing.
            if entry.npages != 0 {
                let end = entry
                    .addr
                    .saturating_add(entry.npages.saturating_mul(4096))
                    .saturating_sub(1);
                let end = if entry.npages == u64::MAX {
                    u64::MAX
                } else {
                    end
                };
                self.flush_range(st, dom, entry.addr, end, leaf);
            }
        }
        (inv.num, Ok(()))
    }
}
