//! Devices (device.c): bind and unbind, attach, replace and detach with automatic
//! domains (core semantics §4), and IOMMU_GET_HW_INFO (KS §2).
//!
//! Every PCI device of the simulated platform is its own IOMMU group (a PCIe topology
//! with ACS), so "the group's HWPT" is the device's.

use vtd_iommufd::Errno;

use super::hwpt::{PagingAlloc, domain_of};
use super::selftest::is_mock_dev;
use super::{Device, Ictx, ObjKind, ObjType, Owner, State};
use crate::driver::{DevIndex, IommuDriver};
use crate::hostmem::HostMem;
use crate::uaccess::{clear_user, copy_to_user};

/// `struct iommu_hw_info` offsets (the bindings' newer layout has a union at 24).
mod hw_info {
    pub(super) const FLAGS: usize = 4;
    pub(super) const DEV_ID: usize = 8;
    pub(super) const DATA_LEN: usize = 12;
    pub(super) const DATA_UPTR: usize = 16;
    pub(super) const OUT_DATA_TYPE: usize = 24;
    pub(super) const OUT_MAX_PASID_LOG2: usize = 28;
    pub(super) const RESERVED: std::ops::Range<usize> = 29..32;
    pub(super) const OUT_CAPABILITIES: usize = 32;
}

fn u32_at(buf: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(buf[at..at + 4].try_into().unwrap_or_default())
}

fn u64_at(buf: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(buf[at..at + 8].try_into().unwrap_or_default())
}

impl State {
    /// The IOAS a HWPT maps through: its own, or its parent's for a nested HWPT.
    pub(crate) fn paging_ioas(&self, hwpt: u32) -> Option<u32> {
        match self.objects.get(&hwpt).map(|o| &o.kind)? {
            ObjKind::HwptPaging(h) => Some(h.ioas),
            ObjKind::HwptNested(n) => match self.objects.get(&n.parent).map(|o| &o.kind)? {
                ObjKind::HwptPaging(p) => Some(p.ioas),
                _ => None,
            },
            _ => None,
        }
    }

    /// The FAULT of HWPT `hwpt`, if it has one (only nested HWPTs can in 6.12).
    pub(super) fn hwpt_fault(&self, hwpt: u32) -> Option<u32> {
        match self.objects.get(&hwpt).map(|o| &o.kind)? {
            ObjKind::HwptNested(n) => n.fault,
            _ => None,
        }
    }

    fn is_auto(&self, hwpt: u32) -> bool {
        matches!(self.objects.get(&hwpt).map(|o| &o.kind), Some(ObjKind::HwptPaging(h)) if h.auto_domain)
    }
}

impl Ictx {
    /// `iommufd_device_bind`: a DEVICE object for `dev`, which is put on the blocking
    /// domain. The caller (the VFIO file) has checked the device is not open elsewhere.
    pub(crate) fn bind_device(&self, dev: DevIndex) -> Result<u32, Errno> {
        let platform = self.platform()?;
        // Mock devices skip the MSI isolation check, as in Linux.
        if !is_mock_dev(dev) && !platform.msi_isolated(dev) && !platform.allow_unsafe_interrupts {
            return Err(Errno::EPERM);
        }
        let mut st = self.lock();
        platform.mem.fail_point()?;
        platform.driver().block_dev(dev);
        let id = st.insert(ObjKind::Device(Device {
            dev,
            attached: None,
            attach_gen: 0,
        }));
        // The binding driver's reference: DESTROY of a DEVICE is always EBUSY.
        st.add_user(id);
        Ok(id)
    }

    /// `iommufd_device_unbind`: detach if attached, then remove the DEVICE object.
    pub(crate) fn unbind_device(&self, id: u32) {
        let Ok(platform) = self.platform() else {
            return;
        };
        let mut st = self.lock();
        self.detach_locked(&mut st, platform.driver(), &platform.mem, id);
        st.objects.remove(&id);
    }

    /// VFIO_DEVICE_ATTACH_IOMMUFD_PT: attach or replace (§4.2–4.6). Returns the id to
    /// write back in `pt_id`.
    pub(crate) fn attach_device(&self, id: u32, pt_id: u32) -> Result<u32, Errno> {
        let platform = self.platform()?;
        let (driver, mem) = (platform.driver(), &*platform.mem);
        let mut st = self.lock();
        let device = st.device(id)?;
        let (dev, current) = (device.dev, device.attached);
        let ty = st
            .objects
            .get(&pt_id)
            .map(|o| o.ty())
            .ok_or(Errno::ENOENT)?;
        let result = match (ty, current) {
            (ObjType::HwptPaging | ObjType::HwptNested, None) => self
                .hwpt_attach(&mut st, driver, id, dev, pt_id)
                .map(|()| pt_id),
            (ObjType::HwptPaging | ObjType::HwptNested, Some(old)) => self
                .hwpt_replace(&mut st, driver, mem, id, dev, old, pt_id)
                .map(|()| pt_id),
            (ObjType::Ioas, _) => {
                self.auto_get_domain(&mut st, driver, mem, id, dev, pt_id, current)
            }
            _ => Err(Errno::EINVAL),
        }?;
        if current.is_none() {
            st.add_user(id);
        }
        Ok(result)
    }

    /// VFIO_DEVICE_DETACH_IOMMUFD_PT: a no-op on a device that is not attached.
    pub(crate) fn detach_device(&self, id: u32) -> Result<(), Errno> {
        let platform = self.platform()?;
        let mut st = self.lock();
        st.device(id)?;
        self.detach_locked(&mut st, platform.driver(), &platform.mem, id);
        Ok(())
    }

    /// `iommufd_device_detach` (§4.7), dropping the attach reference on the DEVICE.
    pub(super) fn detach_locked(
        &self,
        st: &mut State,
        driver: &dyn IommuDriver,
        mem: &HostMem,
        id: u32,
    ) {
        if self.unattach(st, driver, mem, id) {
            st.drop_user(id);
        }
    }

    /// Block the device, release its reservations and its HWPT reference; false if it
    /// was not attached.
    fn unattach(&self, st: &mut State, driver: &dyn IommuDriver, mem: &HostMem, id: u32) -> bool {
        let Ok(device) = st.device_mut(id) else {
            return false;
        };
        let Some(hwpt) = device.attached.take() else {
            return false;
        };
        let (dev, attach_gen) = (device.dev, device.attach_gen);
        driver.block_dev(dev);
        if let Some(queue) = st.hwpt_fault(hwpt).and_then(|f| st.fault_queue_mut(f).ok()) {
            queue.answer_attachment(id, attach_gen);
        }
        if let Some(ioas) = st.paging_ioas(hwpt).and_then(|i| st.ioas_mut(i).ok()) {
            ioas.unreserve(Owner::Device(id));
        }
        self.put_hwpt(st, driver, mem, hwpt);
        true
    }

    /// Drop a device's reference on a HWPT; an automatic HWPT nobody uses goes away.
    fn put_hwpt(&self, st: &mut State, driver: &dyn IommuDriver, mem: &HostMem, hwpt: u32) {
        st.drop_user(hwpt);
        if st.is_auto(hwpt) && st.objects.get(&hwpt).is_some_and(|o| o.users == 0) {
            self.destroy_object(st, driver, mem, hwpt);
        }
    }

    /// First attach of `dev` to a HWPT (§4.4): reserved regions in the paging IOAS, IOPF
    /// for a HWPT with a FAULT, then the driver attach.
    fn hwpt_attach(
        &self,
        st: &mut State,
        driver: &dyn IommuDriver,
        id: u32,
        dev: DevIndex,
        hwpt: u32,
    ) -> Result<(), Errno> {
        let (dom, _) = domain_of(st, hwpt).ok_or(Errno::EINVAL)?;
        let ioas_id = st.paging_ioas(hwpt).ok_or(Errno::EINVAL)?;
        st.ioas_mut(ioas_id)?.enforce_dev_resv(driver, dev, id)?;
        // A HWPT with a FAULT needs the device's IOPF first.
        let result = match st.hwpt_fault(hwpt) {
            Some(_) => driver.enable_iopf(dev),
            None => Ok(()),
        }
        .and_then(|()| {
            driver
                .attach_dev(dom, dev)
                .inspect_err(|_| driver.block_dev(dev))
        });
        if let Err(e) = result {
            if let Ok(ioas) = st.ioas_mut(ioas_id) {
                ioas.unreserve(Owner::Device(id));
            }
            return Err(e);
        }
        let device = st.device_mut(id)?;
        device.attached = Some(hwpt);
        device.attach_gen += 1;
        st.add_user(hwpt);
        Ok(())
    }

    /// Move an attached device to another HWPT (§4.6).
    #[allow(clippy::too_many_arguments)]
    fn hwpt_replace(
        &self,
        st: &mut State,
        driver: &dyn IommuDriver,
        mem: &HostMem,
        id: u32,
        dev: DevIndex,
        old: u32,
        new: u32,
    ) -> Result<(), Errno> {
        if old == new {
            return Ok(());
        }
        let (new_dom, _) = domain_of(st, new).ok_or(Errno::EINVAL)?;
        let (old_dom, _) = domain_of(st, old).ok_or(Errno::EINVAL)?;
        let new_ioas = st.paging_ioas(new).ok_or(Errno::EINVAL)?;
        let old_ioas = st.paging_ioas(old);
        let moves = old_ioas != Some(new_ioas);
        if moves {
            st.ioas_mut(new_ioas)?.enforce_dev_resv(driver, dev, id)?;
        }
        let undo_reserve = |st: &mut State| {
            if moves && let Ok(ioas) = st.ioas_mut(new_ioas) {
                ioas.unreserve(Owner::Device(id));
            }
        };
        if st.hwpt_fault(new).is_some()
            && st.hwpt_fault(old).is_none()
            && let Err(e) = driver.enable_iopf(dev)
        {
            undo_reserve(st);
            return Err(e);
        }
        if let Err(e) = driver.attach_dev(new_dom, dev) {
            // The core puts the device back on its old domain.
            if driver.attach_dev(old_dom, dev).is_err() {
                driver.block_dev(dev);
            }
            undo_reserve(st);
            return Err(e);
        }
        if moves && let Some(ioas) = old_ioas.and_then(|i| st.ioas_mut(i).ok()) {
            ioas.unreserve(Owner::Device(id));
        }
        let device = st.device_mut(id)?;
        let old_gen = device.attach_gen;
        device.attached = Some(new);
        device.attach_gen += 1;
        // Linux 6.12 (iommufd_hwpt_replace_device) answers the old attachment's faults
        // in the queue of the *new* HWPT's FAULT: those in the old HWPT's queue are only
        // answered when both HWPTs share one FAULT, and otherwise stay queued.
        if st.hwpt_fault(old).is_some()
            && let Some(fault) = st.hwpt_fault(new)
            && let Ok(queue) = st.fault_queue_mut(fault)
        {
            queue.answer_attachment(id, old_gen);
        }
        st.add_user(new);
        self.put_hwpt(st, driver, mem, old);
        Ok(())
    }

    /// Attach (or replace) to an IOAS (§4.5): the first automatic HWPT that takes the
    /// device, or a new one. Only EINVAL means "try the next".
    #[allow(clippy::too_many_arguments)]
    fn auto_get_domain(
        &self,
        st: &mut State,
        driver: &dyn IommuDriver,
        mem: &HostMem,
        id: u32,
        dev: DevIndex,
        ioas_id: u32,
        current: Option<u32>,
    ) -> Result<u32, Errno> {
        let candidates: Vec<u32> = st
            .ioas(ioas_id)?
            .hwpts
            .iter()
            .copied()
            .filter(|&h| st.is_auto(h))
            .collect();
        for hwpt in candidates {
            let result = match current {
                None => self.hwpt_attach(st, driver, id, dev, hwpt),
                Some(old) => self.hwpt_replace(st, driver, mem, id, dev, old, hwpt),
            };
            match result {
                Ok(()) => return Ok(hwpt),
                Err(Errno::EINVAL) => continue,
                Err(e) => return Err(e),
            }
        }
        let req = PagingAlloc {
            dev,
            ioas: ioas_id,
            flags: 0,
            data: None,
            auto_domain: true,
        };
        let hwpt = self.hwpt_paging_alloc(st, driver, mem, req)?;
        let dom = domain_of(st, hwpt).map(|(d, _)| d).ok_or(Errno::EINVAL)?;
        match current {
            None => {
                // Attach to the empty domain first, then map the IOAS contents in.
                if let Err(e) = self.hwpt_attach(st, driver, id, dev, hwpt) {
                    self.destroy_object(st, driver, mem, hwpt);
                    return Err(e);
                }
                if let Err(e) = st
                    .ioas_mut(ioas_id)
                    .and_then(|ioas| ioas.add_domain(driver, mem, hwpt, dom))
                {
                    // Detaching drops the last reference, which destroys the HWPT.
                    self.unattach(st, driver, mem, id);
                    return Err(e);
                }
            }
            Some(old) => {
                let added = st
                    .ioas_mut(ioas_id)
                    .and_then(|ioas| ioas.add_domain(driver, mem, hwpt, dom));
                if let Err(e) =
                    added.and_then(|()| self.hwpt_replace(st, driver, mem, id, dev, old, hwpt))
                {
                    self.destroy_object(st, driver, mem, hwpt);
                    return Err(e);
                }
            }
        }
        Ok(hwpt)
    }

    /// IOMMU_GET_HW_INFO (KS §2).
    pub(super) fn get_hw_info_ioctl(&self, buf: &mut [u8], arg: u64) -> Result<(), Errno> {
        use hw_info::*;
        if u32_at(buf, FLAGS) != 0 || buf[RESERVED].iter().any(|&b| b != 0) {
            return Err(Errno::EOPNOTSUPP);
        }
        let platform = self.platform()?;
        let dev = self.lock().device(u32_at(buf, DEV_ID))?.dev;
        let report = platform.driver().hw_info(dev);
        let user_len = u32_at(buf, DATA_LEN) as usize;
        let uptr = u64_at(buf, DATA_UPTR);
        let n = user_len.min(report.data.len());
        copy_to_user(uptr, &report.data[..n])?;
        if user_len > report.data.len() {
            let rest = (user_len - report.data.len()) as u64;
            clear_user(uptr.wrapping_add(report.data.len() as u64), rest)?;
        }
        buf[DATA_LEN..DATA_LEN + 4].copy_from_slice(&(report.data.len() as u32).to_le_bytes());
        buf[OUT_DATA_TYPE..OUT_DATA_TYPE + 4].copy_from_slice(&report.data_type.to_le_bytes());
        buf[OUT_MAX_PASID_LOG2] = report.max_pasid_log2;
        buf[OUT_CAPABILITIES..OUT_CAPABILITIES + 8]
            .copy_from_slice(&report.capabilities.to_le_bytes());
        Self::respond(buf, arg)
    }
}
