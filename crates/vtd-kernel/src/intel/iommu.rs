//! Unit bring-up, device probe, paging domains, attach and block, map and unmap,
//! hw_info and dirty tracking (iommu.c), and the driver-trait implementation.

use std::sync::atomic::Ordering;
use vtd_iommufd::uapi::{
    HwCaps, HwptAllocFlags, IOMMU_HW_INFO_TYPE_INTEL_VTD, IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17,
    iommu_hw_info_vtd,
};

use vtd_iommufd::Errno;
use vtd_model::mem::PhysMem;
use vtd_spec::inv::{
    ContextCacheInvDesc, IotlbInvDesc, PasidCacheGranularity, PasidCacheInvDesc, RawDescriptor,
};
use vtd_spec::regs::{CcmdGranularity, GlobalCommand, IotlbGranularity, RtAddr, Ttm, offset};
use vtd_spec::second_stage::SsEntry;

use super::pagetable::{LeafAttrs, SsPageTable};
use super::pasid::SecondLevel;
use super::qi::{Qi, gcmd_with};
use super::tables::Tables;
use super::{Domain, DomainCommon, IntelDriver, PagingDomain, State, TagKind, UnitHw, UnitState};
use crate::driver::{
    DevIndex, DomainGeometry, DomainHandle, DomainKind, HwInfoReport, IommuDriver, Prot, ResvKind,
    ResvRegion, UserData, UserInvalidation,
};
use crate::hostmem::HostMem;
use crate::uaccess::as_bytes;

fn raw(lo: u128) -> RawDescriptor {
    RawDescriptor { lo, hi: 0 }
}

/// Bring a unit up as boot does: root table, queued invalidation, root pointer latched,
/// every cache invalidated, translation enabled.
pub(super) fn bring_up(hw: &UnitHw, mem: &HostMem) -> UnitState {
    let unit = &hw.unit;
    let tables = Tables::new(mem);
    let mut qi = Qi::enable(unit, mem, hw.sm());
    let ttm = if hw.sm() { Ttm::Scalable } else { Ttm::Legacy };
    let _ = unit.mmio_write(
        offset::RTADDR,
        8,
        RtAddr::from_table(tables.root, ttm).into_bits(),
    );
    let _ = unit.mmio_write(offset::GCMD, 4, gcmd_with(unit, GlobalCommand::SRTP));
    let mut descs = vec![
        raw(ContextCacheInvDesc::new()
            .with_g(CcmdGranularity::Global)
            .into_bits()),
        raw(IotlbInvDesc::new()
            .with_g(IotlbGranularity::Global)
            .with_dw(hw.cap.dwd())
            .with_dr(hw.cap.drd())
            .into_bits()),
    ];
    if hw.sm() {
        descs.insert(
            1,
            raw(PasidCacheInvDesc::new()
                .with_g(PasidCacheGranularity::Global)
                .into_bits()),
        );
    }
    let _ = qi.submit(unit, mem, &descs);
    let _ = unit.mmio_write(offset::GCMD, 4, gcmd_with(unit, GlobalCommand::TE));
    let num_dids = hw.cap.num_domains().max(2) as usize;
    let mut used_dids = vec![false; num_dids];
    used_dids[0] = true;
    used_dids[1] = true;
    UnitState {
        tables,
        qi,
        used_dids,
    }
}

impl IntelDriver {
    /// Probe a device: its PASID directory and a present scalable-mode context entry
    /// (intel_pasid_alloc_table, intel_pasid_setup_sm_context). Its PASID entries stay
    /// clear, so its DMA is blocked until it is attached.
    pub(super) fn probe_device(&self, dev: usize) {
        let info = self.devices[dev];
        let hw = &self.hw[info.unit];
        if !hw.sm() {
            return;
        }
        let paside = info.pasid_bits > 0 && hw.ecap.pasid();
        let dte = info.ats && hw.ecap.dt();
        let mut st = self.lock();
        st.units[info.unit].tables.setup_context(
            &self.mem,
            info.sid,
            info.pasid_bits as u32,
            paside,
            dte,
        );
        if hw.cap.cm() {
            let flush = ContextCacheInvDesc::new()
                .with_g(CcmdGranularity::Device)
                .with_sid(info.sid);
            self.submit(&mut st, info.unit, &[raw(flush.into_bits())]);
        }
    }

    /// Put `dev` on the blocking domain (device_block_translation): tear down its entry,
    /// drop its cache tags and domain-id reference, disable ATS.
    pub(crate) fn block(&self, st: &mut State, dev: usize) {
        let Some(dom) = st.attached[dev].take() else {
            return;
        };
        self.tear_down(st, dev, 0);
        self.detach_bookkeeping(st, dom, dev);
        st.ats_enabled[dev] = false;
    }

    /// Forget that `dev` is attached to `dom`: the cache tags its attach assigned, the
    /// domain-id reference, the device list entry.
    fn detach_bookkeeping(&self, st: &mut State, dom: u64, dev: usize) {
        let info = self.devices[dev];
        let Some(d) = st.domains.get(&dom) else {
            return;
        };
        let Some(&(did, _)) = d.common().dids.get(&info.unit) else {
            return;
        };
        let parent = match d {
            Domain::Nested(n) => Some(n.parent),
            Domain::Paging(_) => None,
        };
        let ats = st.ats_enabled[dev];
        Self::tag_unassign(st, dom, TagKind::Iotlb, info.unit, did, 0, 0);
        if ats {
            Self::tag_unassign(st, dom, TagKind::DevTlb, info.unit, did, 0, info.sid);
        }
        if let Some(parent) = parent {
            Self::tag_unassign(st, parent, TagKind::NestingIotlb, info.unit, did, 0, 0);
            if ats {
                Self::tag_unassign(
                    st,
                    parent,
                    TagKind::NestingDevTlb,
                    info.unit,
                    did,
                    0,
                    info.sid,
                );
            }
        }
        self.domain_detach_iommu(st, dom, info.unit);
        if let Some(d) = st.domains.get_mut(&dom) {
            d.common_mut().devices.retain(|&x| x != dev);
        }
    }

    /// Take a domain-id reference of `dom` on `unit` (domain_attach_iommu).
    pub(crate) fn domain_attach_iommu(
        &self,
        st: &mut State,
        dom: u64,
        unit: usize,
    ) -> Result<u16, Errno> {
        if let Some((did, refs)) = st
            .domains
            .get_mut(&dom)
            .and_then(|d| d.common_mut().dids.get_mut(&unit))
        {
            *refs += 1;
            return Ok(*did);
        }
        let did = st.alloc_did(unit)?;
        if let Some(d) = st.domains.get_mut(&dom) {
            d.common_mut().dids.insert(unit, (did, 1));
        }
        Ok(did)
    }

    /// Drop a domain-id reference (domain_detach_iommu).
    pub(crate) fn domain_detach_iommu(&self, st: &mut State, dom: u64, unit: usize) {
        let Some(d) = st.domains.get_mut(&dom) else {
            return;
        };
        let dids = &mut d.common_mut().dids;
        let Some((did, refs)) = dids.get_mut(&unit) else {
            return;
        };
        *refs -= 1;
        if *refs == 0 {
            let did = *did;
            dids.remove(&unit);
            st.free_did(unit, did);
        }
    }

    /// The checks a paging domain passes before it can serve a unit
    /// (prepare_domain_attach_device); lowers the domain's address width to the unit's.
    pub(crate) fn prepare_paging_attach(
        &self,
        st: &mut State,
        dom: u64,
        unit: usize,
    ) -> Result<(), Errno> {
        let hw = &self.hw[unit];
        let Some(Domain::Paging(d)) = st.domains.get_mut(&dom) else {
            return Err(Errno::EINVAL);
        };
        if d.force_snooping && !hw.ecap.sc() {
            return Err(Errno::EINVAL);
        }
        if d.dirty_ops && !hw.ecap.slads() {
            return Err(Errno::EINVAL);
        }
        let width = hw.addr_width();
        if width < 64 && d.max_addr > (1u64 << width) {
            return Err(Errno::EINVAL);
        }
        d.gaw = width;
        Ok(())
    }

    /// Attach `dev` to the paging domain `dom` (intel_iommu_attach_device).
    fn attach_paging(&self, st: &mut State, dom: u64, dev: usize) -> Result<(), Errno> {
        let info = self.devices[dev];
        let hw = &self.hw[info.unit];
        self.block(st, dev);
        self.prepare_paging_attach(st, dom, info.unit)?;
        let did = self.domain_attach_iommu(st, dom, info.unit)?;
        Self::tag_assign(st, dom, TagKind::Iotlb, info.unit, did, 0, 0);
        let ats = info.ats && hw.ecap.dt();
        if ats {
            Self::tag_assign(st, dom, TagKind::DevTlb, info.unit, did, 0, info.sid);
        }
        let Some(Domain::Paging(d)) = st.domains.get(&dom) else {
            return Err(Errno::EINVAL);
        };
        let sl = SecondLevel {
            ssptptr: d.pgtbl.root,
            agaw: d.agaw,
            did,
            dirty: d.dirty_tracking,
            snoop: d.force_snooping,
        };
        if let Err(e) = self.setup_second_level(st, dev, 0, &sl) {
            Self::tag_unassign(st, dom, TagKind::Iotlb, info.unit, did, 0, 0);
            if ats {
                Self::tag_unassign(st, dom, TagKind::DevTlb, info.unit, did, 0, info.sid);
            }
            self.domain_detach_iommu(st, dom, info.unit);
            return Err(e);
        }
        if let Some(Domain::Paging(d)) = st.domains.get_mut(&dom) {
            d.iotlb_sync_map |= hw.cap.cm() || hw.cap.rwbf();
            d.common.devices.push(dev);
        }
        st.ats_enabled[dev] = ats;
        st.attached[dev] = Some(dom);
        Ok(())
    }

    /// Allocate a second-stage paging domain for `dev` (intel_iommu_domain_alloc_user,
    /// §3.2 step 6).
    fn alloc_paging(
        &self,
        st: &mut State,
        dev: usize,
        flags: u32,
        data: Option<UserData>,
    ) -> Result<u64, Errno> {
        let hw = &self.hw[self.unit_of(dev)];
        let flags = HwptAllocFlags::from_bits_retain(flags);
        if !(HwptAllocFlags::NEST_PARENT | HwptAllocFlags::DIRTY_TRACKING).contains(flags) {
            return Err(Errno::EOPNOTSUPP);
        }
        let nest_parent = flags.contains(HwptAllocFlags::NEST_PARENT);
        let dirty_ops = flags.contains(HwptAllocFlags::DIRTY_TRACKING);
        if nest_parent && !hw.nested_supported() {
            return Err(Errno::EOPNOTSUPP);
        }
        if data.is_some() || (dirty_ops && !hw.ssads_supported()) {
            return Err(Errno::EOPNOTSUPP);
        }
        let gaw = hw.addr_width();
        // The domain structure, then its top-level table: both allocations can fail.
        self.mem.fail_point()?;
        let domain = PagingDomain {
            pgtbl: SsPageTable::new(&self.mem, vtd_spec::addr::ss_levels(hw.agaw))?,
            agaw: hw.agaw,
            gaw,
            // A fresh domain claims its whole width, so a narrower unit refuses it.
            max_addr: if gaw >= 64 {
                u64::MAX
            } else {
                (1u64 << gaw) - 1
            },
            nest_parent,
            dirty_ops,
            dirty_tracking: false,
            force_snooping: false,
            iotlb_sync_map: false,
            page_sizes: hw.page_sizes(),
            children: Vec::new(),
            common: DomainCommon::default(),
        };
        let id = st.alloc_domain_id();
        st.domains.insert(id, Domain::Paging(domain));
        Ok(id)
    }

    /// Devices whose requests without PASID a dirty-tracking change of `dom` must reach:
    /// those attached to it, and for a nest parent those attached to its children.
    fn dirty_scope(st: &State, dom: u64) -> Vec<usize> {
        let mut devs = Vec::new();
        if let Some(Domain::Paging(d)) = st.domains.get(&dom) {
            devs.extend(d.common.devices.iter().copied());
            for child in &d.children {
                if let Some(c) = st.domains.get(child) {
                    devs.extend(c.common().devices.iter().copied());
                }
            }
        }
        devs
    }
}

impl IommuDriver for IntelDriver {
    fn hw_info(&self, dev: DevIndex) -> HwInfoReport {
        let info = self.devices[dev];
        let hw = &self.hw[info.unit];
        let data = iommu_hw_info_vtd {
            // Linux sets the erratum flag on every VT-d unit, whatever the CPU.
            flags: IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17,
            __reserved: 0,
            cap_reg: hw.cap.into_bits(),
            ecap_reg: hw.ecap.into_bits(),
        };
        let mut capabilities = HwCaps::empty();
        capabilities.set(HwCaps::DIRTY_TRACKING, hw.ssads_supported());
        let pasid = info.pasid_bits > 0 && hw.ecap.pasid();
        HwInfoReport {
            data_type: IOMMU_HW_INFO_TYPE_INTEL_VTD,
            data: as_bytes(&data).to_vec(),
            capabilities: capabilities.bits(),
            max_pasid_log2: if pasid { info.pasid_bits } else { 0 },
        }
    }

    fn dirty_tracking_capable(&self, dev: DevIndex) -> bool {
        self.hw[self.unit_of(dev)].ssads_supported()
    }

    fn enforce_cache_coherency_capable(&self, dev: DevIndex) -> bool {
        self.hw[self.unit_of(dev)].ecap.sc()
    }

    fn domain_alloc_user(
        &self,
        dev: DevIndex,
        flags: u32,
        parent: Option<DomainHandle>,
        data: Option<UserData>,
    ) -> Result<DomainHandle, Errno> {
        let mut st = self.lock();
        let id = match parent {
            None => self.alloc_paging(&mut st, dev, flags, data)?,
            Some(parent) => self.alloc_nested(&mut st, dev, flags, parent.0, data)?,
        };
        Ok(DomainHandle(id))
    }

    fn domain_free(&self, dom: DomainHandle) {
        let mut st = self.lock();
        match st.domains.remove(&dom.0) {
            Some(Domain::Paging(d)) => d.pgtbl.destroy(&self.mem),
            Some(Domain::Nested(n)) => {
                if let Some(Domain::Paging(p)) = st.domains.get_mut(&n.parent) {
                    p.children.retain(|&c| c != dom.0);
                }
            }
            None => {}
        }
    }

    fn domain_kind(&self, dom: DomainHandle) -> DomainKind {
        match self.lock().domains.get(&dom.0) {
            Some(Domain::Nested(n)) => DomainKind::Nested {
                parent: DomainHandle(n.parent),
            },
            Some(Domain::Paging(d)) => DomainKind::Paging {
                nest_parent: d.nest_parent,
                dirty_ops: d.dirty_ops,
            },
            None => DomainKind::Paging {
                nest_parent: false,
                dirty_ops: false,
            },
        }
    }

    fn domain_geometry(&self, dom: DomainHandle) -> DomainGeometry {
        match self.lock().domains.get(&dom.0) {
            Some(Domain::Paging(d)) => DomainGeometry {
                aperture_start: 0,
                aperture_last: if d.gaw >= 64 {
                    u64::MAX
                } else {
                    (1u64 << d.gaw) - 1
                },
                page_sizes: d.page_sizes.iter().map(|s| s.bytes()).fold(0, |a, b| a | b),
            },
            _ => DomainGeometry {
                aperture_start: 0,
                aperture_last: 0,
                page_sizes: 0,
            },
        }
    }

    fn enforce_cache_coherency(&self, dom: DomainHandle) -> Result<(), Errno> {
        let mut st = self.lock();
        let units: Vec<usize> = match st.domains.get(&dom.0) {
            Some(d) => d.common().dids.keys().copied().collect(),
            None => return Err(Errno::EINVAL),
        };
        if units.iter().any(|&u| !self.hw[u].ecap.sc()) {
            return Err(Errno::EINVAL);
        }
        match st.domains.get_mut(&dom.0) {
            Some(Domain::Paging(d)) => {
                d.force_snooping = true;
                Ok(())
            }
            _ => Err(Errno::EINVAL),
        }
    }

    fn map(
        &self,
        dom: DomainHandle,
        iova: u64,
        paddr: u64,
        len: u64,
        prot: Prot,
    ) -> Result<(), Errno> {
        let mut st = self.lock();
        let Some(Domain::Paging(d)) = st.domains.get_mut(&dom.0) else {
            return Err(Errno::EINVAL);
        };
        let last = iova
            .checked_add(len.saturating_sub(1))
            .ok_or(Errno::EINVAL)?;
        if d.gaw < 64 && last >> d.gaw != 0 {
            return Err(Errno::EFAULT);
        }
        if !prot.intersects(Prot::READ | Prot::WRITE) {
            return Err(Errno::EINVAL);
        }
        if d.nest_parent
            && !prot.contains(Prot::WRITE)
            && self.refuse_ro_in_nest_parent.load(Ordering::Relaxed)
        {
            // ERRATA_772415_SPR17: the hardware may write A/D bits through a read-only
            // stage-2 mapping of a first-stage table, so a parent refuses them outright.
            return Err(Errno::EINVAL);
        }
        let attrs = LeafAttrs {
            prot,
            snoop: d.force_snooping,
        };
        let replaced = match d
            .pgtbl
            .map(&self.mem, iova, paddr, len, attrs, &d.page_sizes)
        {
            Ok(replaced) => replaced,
            Err(e) => {
                // iommu_map unmaps what it mapped before the failure, with a flush.
                if e.mapped > 0 {
                    self.flush_range(&mut st, dom.0, iova, iova + e.mapped - 1, false);
                }
                return Err(e.errno);
            }
        };
        d.max_addr = d.max_addr.max(last);
        let sync_map = d.iotlb_sync_map;
        // A superpage over a table freed on the way: flush it whatever the caching mode
        // (switch_to_super_page, ih 0).
        for (start, end) in replaced {
            self.flush_range(&mut st, dom.0, start, end, false);
        }
        if sync_map {
            self.flush_range_np(&mut st, dom.0, iova, last);
        }
        Ok(())
    }

    fn unmap(&self, dom: DomainHandle, iova: u64, len: u64) -> u64 {
        let mut st = self.lock();
        let Some(Domain::Paging(d)) = st.domains.get(&dom.0) else {
            return 0;
        };
        let (unmapped, freed) = d.pgtbl.unmap(&self.mem, iova, len);
        if unmapped > 0 {
            let last = iova.saturating_add(len.saturating_sub(1));
            self.flush_range(&mut st, dom.0, iova, last, !freed);
        }
        unmapped
    }

    fn attach_dev(&self, dom: DomainHandle, dev: DevIndex) -> Result<(), Errno> {
        let mut st = self.lock();
        match st.domains.get(&dom.0) {
            Some(Domain::Paging(_)) => self.attach_paging(&mut st, dom.0, dev),
            Some(Domain::Nested(_)) => self.attach_nested(&mut st, dom.0, dev),
            None => Err(Errno::EINVAL),
        }
    }

    fn block_dev(&self, dev: DevIndex) {
        let mut st = self.lock();
        self.block(&mut st, dev);
    }

    fn cache_invalidate_user(
        &self,
        dom: DomainHandle,
        inv: UserInvalidation,
    ) -> (u32, Result<(), Errno>) {
        let mut st = self.lock();
        self.invalidate_user(&mut st, dom.0, inv)
    }

    fn set_dirty_tracking(&self, dom: DomainHandle, enable: bool) -> Result<(), Errno> {
        let mut st = self.lock();
        let Some(Domain::Paging(d)) = st.domains.get(&dom.0) else {
            return Err(Errno::EINVAL);
        };
        if d.dirty_tracking == enable {
            return Ok(());
        }
        let devs = Self::dirty_scope(&st, dom.0);
        let mut done = Vec::new();
        for dev in devs {
            if let Err(e) = self.set_entry_dirty(&mut st, dev, 0, enable) {
                for undo in done {
                    let _ = self.set_entry_dirty(&mut st, undo, 0, !enable);
                }
                return Err(e);
            }
            done.push(dev);
        }
        if let Some(Domain::Paging(d)) = st.domains.get_mut(&dom.0) {
            d.dirty_tracking = enable;
        }
        Ok(())
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
        let st = self.lock();
        let Some(Domain::Paging(d)) = st.domains.get(&dom.0) else {
            return Err(Errno::EINVAL);
        };
        if !d.dirty_tracking && bitmap {
            return Err(Errno::EINVAL);
        }
        d.pgtbl
            .for_each_leaf(&self.mem, iova, len, |leaf_iova, slot, value, size| {
                if !SsEntry::from_bits(value).d() {
                    return;
                }
                if !keep {
                    // Clear D atomically: the hardware may be setting A in the same entry.
                    let mut cur = value;
                    while let Ok(Err(now)) =
                        self.mem.compare_exchange_u64(slot, cur, cur & !SsEntry::D)
                    {
                        cur = now;
                    }
                }
                record(leaf_iova, size.bytes());
            });
        Ok(())
    }

    fn iotlb_sync(&self, dom: DomainHandle, gathered: Option<(u64, u64)>) {
        let mut st = self.lock();
        match gathered {
            Some((start, last)) => self.flush_range(&mut st, dom.0, start, last, true),
            None => self.flush_empty_gather(&mut st, dom.0),
        }
    }

    fn resv_regions(&self, _dev: DevIndex) -> Vec<ResvRegion> {
        vec![ResvRegion {
            start: vtd_spec::addr::INTERRUPT_RANGE_BASE,
            last: vtd_spec::addr::INTERRUPT_RANGE_LAST,
            kind: ResvKind::Msi,
        }]
    }
}
