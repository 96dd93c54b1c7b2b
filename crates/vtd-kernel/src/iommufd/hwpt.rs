//! Hardware page tables (hw_pagetable.c): IOMMU_HWPT_ALLOC for paging, nest-parent and
//! nested HWPTs (KS §3), IOMMU_HWPT_INVALIDATE (KS §6.1) and the dirty-tracking ioctls
//! (KS §7, core semantics §3.15).

use vtd_iommufd::Errno;
use vtd_iommufd::uapi::{
    HwptAllocFlags, IOMMU_HWPT_DATA_NONE, IOMMU_HWPT_DIRTY_TRACKING_ENABLE,
    IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR, iommu_hwpt_alloc, iommu_hwpt_get_dirty_bitmap,
    iommu_hwpt_invalidate, iommu_hwpt_set_dirty_tracking,
};

use super::{HwptNested, HwptPaging, Ictx, ObjKind, ObjType, State, decode, encode};
use crate::driver::{DevIndex, DomainHandle, DomainKind, IommuDriver, UserData, UserInvalidation};
use crate::hostmem::HostMem;
use crate::uaccess::{copy_from_user, copy_to_user};

/// What a paging HWPT is allocated with.
pub(crate) struct PagingAlloc {
    /// The device whose IOMMU the domain is for.
    pub(crate) dev: DevIndex,
    /// The IOAS it mirrors.
    pub(crate) ioas: u32,
    /// `IOMMU_HWPT_ALLOC` flags.
    pub(crate) flags: u32,
    /// Driver data (refused by VT-d for paging domains).
    pub(crate) data: Option<UserData>,
    /// An automatic domain (attach to an IOAS): added to the IOAS by the caller.
    pub(crate) auto_domain: bool,
}

impl Ictx {
    /// Create a paging HWPT on `ioas_id` for `dev` (`iommufd_hwpt_paging_alloc`, KS §3.2):
    /// the driver domain, forced snooping where the device can enforce it, then the IOAS
    /// contents mapped in. Returns the new HWPT id.
    pub(crate) fn hwpt_paging_alloc(
        &self,
        st: &mut State,
        driver: &dyn IommuDriver,
        mem: &HostMem,
        req: PagingAlloc,
    ) -> Result<u32, Errno> {
        let PagingAlloc {
            dev,
            ioas: ioas_id,
            flags,
            data,
            auto_domain,
        } = req;
        let known = HwptAllocFlags::NEST_PARENT | HwptAllocFlags::DIRTY_TRACKING;
        let flags = HwptAllocFlags::from_bits(flags)
            .filter(|f| known.contains(*f))
            .ok_or(Errno::EOPNOTSUPP)?;
        if flags.contains(HwptAllocFlags::DIRTY_TRACKING) && !driver.dirty_tracking_capable(dev) {
            return Err(Errno::EOPNOTSUPP);
        }
        // The HWPT object comes before the driver's domain.
        mem.fail_point()?;
        let dom = driver.domain_alloc_user(dev, flags.bits(), None, data)?;
        let enforce = driver.enforce_cache_coherency_capable(dev);
        if enforce && driver.enforce_cache_coherency(dom).is_err() {
            driver.domain_free(dom);
            return Err(Errno::EINVAL);
        }
        let id = st.insert(ObjKind::HwptPaging(HwptPaging {
            ioas: ioas_id,
            domain: dom,
            nest_parent: flags.contains(HwptAllocFlags::NEST_PARENT),
            auto_domain,
        }));
        if !auto_domain
            && let Err(e) = st
                .ioas_mut(ioas_id)
                .and_then(|ioas| ioas.add_domain(driver, mem, id, dom))
        {
            st.objects.remove(&id);
            driver.domain_free(dom);
            return Err(e);
        }
        if let Ok(ioas) = st.ioas_mut(ioas_id) {
            ioas.hwpts.push(id);
        }
        st.add_user(ioas_id);
        Ok(id)
    }

    /// Create a nested HWPT on the paging HWPT `parent_id` (`iommufd_hwpt_nested_alloc`,
    /// KS §3.4).
    #[allow(clippy::too_many_arguments)]
    fn hwpt_nested_alloc(
        &self,
        st: &mut State,
        driver: &dyn IommuDriver,
        mem: &HostMem,
        dev: DevIndex,
        parent_id: u32,
        flags: u32,
        data: UserData,
    ) -> Result<u32, Errno> {
        if flags & !HwptAllocFlags::FAULT_ID_VALID.bits() != 0 || data.len == 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        let parent = st.hwpt_paging(parent_id)?;
        if parent.auto_domain || !parent.nest_parent {
            return Err(Errno::EINVAL);
        }
        let parent_dom = parent.domain;
        mem.fail_point()?;
        let dom = driver.domain_alloc_user(dev, 0, Some(parent_dom), Some(data))?;
        if !matches!(driver.domain_kind(dom), DomainKind::Nested { .. }) {
            driver.domain_free(dom);
            return Err(Errno::EINVAL);
        }
        let id = st.insert(ObjKind::HwptNested(HwptNested {
            parent: parent_id,
            domain: dom,
            fault: None,
        }));
        st.add_user(parent_id);
        Ok(id)
    }

    /// IOMMU_HWPT_ALLOC (KS §3.1).
    pub(super) fn hwpt_alloc_ioctl(&self, buf: &mut [u8], arg: u64) -> Result<(), Errno> {
        let mut cmd: iommu_hwpt_alloc = decode(buf);
        if cmd.__reserved != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        if (cmd.data_type == IOMMU_HWPT_DATA_NONE) != (cmd.data_len == 0) {
            return Err(Errno::EINVAL);
        }
        let platform = self.platform()?;
        let driver = platform.driver();
        let mut st = self.lock();
        let dev = st.device(cmd.dev_id)?.dev;
        let pt_type = st
            .objects
            .get(&cmd.pt_id)
            .map(|o| o.ty())
            .ok_or(Errno::EINVAL)?;
        let data = (cmd.data_len != 0).then_some(UserData {
            data_type: cmd.data_type,
            uptr: cmd.data_uptr,
            len: cmd.data_len,
        });
        let id = match pt_type {
            ObjType::Ioas => {
                let req = PagingAlloc {
                    dev,
                    ioas: cmd.pt_id,
                    flags: cmd.flags,
                    data,
                    auto_domain: false,
                };
                self.hwpt_paging_alloc(&mut st, driver, &platform.mem, req)?
            }
            ObjType::HwptPaging => {
                let data = data.unwrap_or(UserData {
                    data_type: IOMMU_HWPT_DATA_NONE,
                    uptr: 0,
                    len: 0,
                });
                self.hwpt_nested_alloc(
                    &mut st,
                    driver,
                    &platform.mem,
                    dev,
                    cmd.pt_id,
                    cmd.flags,
                    data,
                )?
            }
            _ => return Err(Errno::EINVAL),
        };
        if cmd.flags & HwptAllocFlags::FAULT_ID_VALID.bits() != 0 {
            if st.get(cmd.fault_id, ObjType::Fault).is_err() {
                self.destroy_object(&mut st, driver, &platform.mem, id);
                return Err(Errno::ENOENT);
            }
            if let Some(ObjKind::HwptNested(h)) = st.objects.get_mut(&id).map(|o| &mut o.kind) {
                h.fault = Some(cmd.fault_id);
            }
            st.add_user(cmd.fault_id);
        }
        cmd.out_hwpt_id = id;
        encode(buf, &cmd);
        if let Err(e) = Self::respond(buf, arg) {
            self.destroy_object(&mut st, driver, &platform.mem, id);
            return Err(e);
        }
        Ok(())
    }

    /// Tear down a paging HWPT nobody holds any more: out of its IOAS, domain freed.
    pub(super) fn destroy_hwpt_paging(
        &self,
        st: &mut State,
        driver: &dyn IommuDriver,
        mem: &HostMem,
        id: u32,
        h: HwptPaging,
    ) {
        if let Ok(ioas) = st.ioas_mut(h.ioas) {
            ioas.remove_domain(driver, mem, id);
            ioas.hwpts.retain(|&x| x != id);
        }
        driver.domain_free(h.domain);
        st.drop_user(h.ioas);
    }

    /// IOMMU_HWPT_INVALIDATE (KS §6.1): `entry_num` is written back on every path.
    pub(super) fn hwpt_invalidate_ioctl(&self, buf: &mut [u8], arg: u64) -> Result<(), Errno> {
        let mut cmd: iommu_hwpt_invalidate = decode(buf);
        let (done, result) = self.hwpt_invalidate(&cmd);
        cmd.entry_num = done;
        encode(buf, &cmd);
        Self::respond(buf, arg)?;
        result
    }

    fn hwpt_invalidate(&self, cmd: &iommu_hwpt_invalidate) -> (u32, Result<(), Errno>) {
        if cmd.__reserved != 0 {
            return (0, Err(Errno::EOPNOTSUPP));
        }
        if cmd.entry_num != 0 && (cmd.data_uptr == 0 || cmd.entry_len == 0) {
            return (0, Err(Errno::EINVAL));
        }
        let platform = match self.platform() {
            Ok(p) => p,
            Err(e) => return (0, Err(e)),
        };
        let st = self.lock();
        let dom = match st.objects.get(&cmd.hwpt_id).map(|o| &o.kind) {
            Some(ObjKind::HwptNested(h)) => h.domain,
            _ => return (0, Err(Errno::ENOENT)),
        };
        let inv = UserInvalidation {
            data_type: cmd.data_type,
            uptr: cmd.data_uptr,
            entry_len: cmd.entry_len,
            num: cmd.entry_num,
        };
        platform.driver().cache_invalidate_user(dom, inv)
    }

    /// IOMMU_HWPT_SET_DIRTY_TRACKING (KS §7): on enable, stale dirty bits are cleared
    /// first, with one flush.
    pub(super) fn hwpt_set_dirty_tracking_ioctl(
        &self,
        buf: &mut [u8],
        _arg: u64,
    ) -> Result<(), Errno> {
        let cmd: iommu_hwpt_set_dirty_tracking = decode(buf);
        if cmd.flags & !IOMMU_HWPT_DIRTY_TRACKING_ENABLE != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        let enable = cmd.flags & IOMMU_HWPT_DIRTY_TRACKING_ENABLE != 0;
        let platform = self.platform()?;
        let driver = platform.driver();
        let st = self.lock();
        let hwpt = st.hwpt_paging(cmd.hwpt_id)?;
        let dom = hwpt.domain;
        if !matches!(
            driver.domain_kind(dom),
            DomainKind::Paging {
                dirty_ops: true,
                ..
            }
        ) {
            return Err(Errno::EOPNOTSUPP);
        }
        if enable {
            let areas = st.ioas(hwpt.ioas)?.area_ranges();
            let mut gather = Gather::default();
            let mut result = Ok(());
            for (iova, len) in areas {
                result = driver.read_and_clear_dirty(dom, iova, len, false, false, &mut |s, l| {
                    gather.add(s, l)
                });
                if result.is_err() {
                    break;
                }
            }
            driver.iotlb_sync(dom, gather.range());
            result?;
        }
        driver.set_dirty_tracking(dom, enable)
    }

    /// IOMMU_HWPT_GET_DIRTY_BITMAP (core semantics §3.15). Like 6.12, failures inside the
    /// walk (a gap, tracking off, a bad bitmap pointer) are not reported.
    pub(super) fn hwpt_get_dirty_bitmap_ioctl(
        &self,
        buf: &mut [u8],
        _arg: u64,
    ) -> Result<(), Errno> {
        let cmd: iommu_hwpt_get_dirty_bitmap = decode(buf);
        if cmd.flags & !IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR != 0 || cmd.__reserved != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        let keep = cmd.flags & IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR != 0;
        let platform = self.platform()?;
        let driver = platform.driver();
        let st = self.lock();
        let hwpt = st.hwpt_paging(cmd.hwpt_id)?;
        let dom = hwpt.domain;
        let ioas = st.ioas(hwpt.ioas)?;
        let last = cmd
            .iova
            .checked_add(cmd.length.wrapping_sub(1))
            .ok_or(Errno::EOVERFLOW)?;
        let end = last.wrapping_add(1);
        let align = ioas.alignment();
        if !cmd.iova.is_multiple_of(align) || end % align != 0 || cmd.page_size == 0 {
            return Err(Errno::EINVAL);
        }
        let page_mask = cmd.page_size - 1;
        if cmd.iova & page_mask != 0 || end & page_mask != 0 {
            return Err(Errno::EINVAL);
        }
        if !matches!(
            driver.domain_kind(dom),
            DomainKind::Paging {
                dirty_ops: true,
                ..
            }
        ) {
            return Err(Errno::EOPNOTSUPP);
        }
        let granule_shift = cmd.page_size.trailing_zeros();
        let mut bitmap = DirtyBitmap {
            base: cmd.iova,
            last,
            shift: granule_shift,
            data: cmd.data,
        };
        let mut gather = Gather::default();
        // The areas before a gap are read (and cleared) before the gap is found; like
        // 6.12, the gap itself is not reported.
        for (s, l) in ioas.contig_ranges(cmd.iova, last) {
            let r = driver.read_and_clear_dirty(dom, s, l - s + 1, keep, true, &mut |iova, len| {
                bitmap.set(iova, len);
                if !keep {
                    gather.add(iova, len);
                }
            });
            if r.is_err() {
                break;
            }
        }
        if !keep {
            driver.iotlb_sync(dom, gather.range());
        }
        Ok(())
    }
}

/// The IOVA hull of the ranges whose dirty bits were cleared (`iommu_iotlb_gather`).
#[derive(Default)]
struct Gather {
    range: Option<(u64, u64)>,
}

impl Gather {
    fn add(&mut self, iova: u64, len: u64) {
        let last = iova.saturating_add(len.saturating_sub(1));
        self.range = Some(match self.range {
            Some((s, l)) => (s.min(iova), l.max(last)),
            None => (iova, last),
        });
    }

    fn range(&self) -> Option<(u64, u64)> {
        self.range
    }
}

/// The user's dirty bitmap for `[base, last]`: bit k for the granule at
/// `base + k << shift`. Only set bits are written, never a word past the granule of
/// `last`; write failures are ignored, as 6.12 ignores them.
struct DirtyBitmap {
    base: u64,
    last: u64,
    shift: u32,
    data: u64,
}

impl DirtyBitmap {
    fn set(&mut self, iova: u64, len: u64) {
        // A large leaf may start before or end after the range asked for.
        let start = iova.max(self.base);
        let end = iova.saturating_add(len.saturating_sub(1)).min(self.last);
        if start > end {
            return;
        }
        let first = (start - self.base) >> self.shift;
        let last = (end - self.base) >> self.shift;
        let mut bit = first;
        while bit <= last {
            let word_addr = self.data.wrapping_add((bit / 64) * 8);
            let mut word = [0u8; 8];
            if copy_from_user(word_addr, &mut word).is_err() {
                return;
            }
            let mut value = u64::from_le_bytes(word);
            let end = (bit | 63).min(last);
            for b in bit..=end {
                value |= 1 << (b % 64);
            }
            if copy_to_user(word_addr, &value.to_le_bytes()).is_err() {
                return;
            }
            bit = end + 1;
        }
    }
}

/// A nested HWPT's domain, for device attach.
pub(crate) fn domain_of(st: &State, id: u32) -> Option<(DomainHandle, Option<u32>)> {
    match st.objects.get(&id).map(|o| &o.kind) {
        Some(ObjKind::HwptPaging(h)) => Some((h.domain, None)),
        Some(ObjKind::HwptNested(h)) => Some((h.domain, Some(h.parent))),
        _ => None,
    }
}
