//! The Intel VT-d driver (drivers/iommu/intel), split by concern as Linux splits it:
//!
//! | module | Linux | concern |
//! |---|---|---|
//! | `iommu` | iommu.c | unit bring-up, domain allocation, attach/block, map/unmap, hw_info, dirty tracking |
//! | `tables` | iommu.c, pasid.c | root, context and PASID tables |
//! | `pasid` | pasid.c | PASID-entry programming for second-stage and nested translation, tear-down |
//! | `nested` | nested.c | nested domains: allocation, attach, user cache invalidation |
//! | `cache` | cache.c | cache tags and the invalidations a range flush issues |
//! | `pagetable` | iommu.c (dma_pte) | second-stage page tables |
//! | `qi` | dmar.c | queued-invalidation submission |
//!
//! The driver reaches the hardware only through its registers, the tables it writes in
//! host memory and the invalidation queue — never through the model's internals.

mod cache;
mod iommu;
mod nested;
mod pagetable;
mod pasid;
mod qi;
mod tables;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use vtd_model::Unit;
use vtd_spec::addr::PageSize;
use vtd_spec::inv::RawDescriptor;
use vtd_spec::regs::{Cap, Ecap};

use crate::hostmem::HostMem;
use crate::platform::DeviceDesc;
pub(crate) use cache::{CacheTag, TagKind};
use pagetable::SsPageTable;
use qi::Qi;
use tables::Tables;

pub use qi::QiError;

/// What the driver knows of one unit's hardware.
pub(crate) struct UnitHw {
    pub(crate) unit: Arc<Unit<Arc<HostMem>>>,
    pub(crate) cap: Cap,
    pub(crate) ecap: Ecap,
    /// The AGAW the driver uses (`iommu->agaw`): 1, 2 or 3.
    pub(crate) agaw: u8,
}

impl UnitHw {
    /// Scalable mode is in use (the driver always enables it when ECAP.SMTS is set).
    pub(crate) fn sm(&self) -> bool {
        self.ecap.smts()
    }

    /// `nested_supported`: scalable mode and ECAP.NEST.
    pub(crate) fn nested_supported(&self) -> bool {
        self.ecap.nested_supported()
    }

    /// `ssads_supported`: scalable mode, SLADS and SMPWC.
    pub(crate) fn ssads_supported(&self) -> bool {
        self.ecap.dirty_tracking_supported()
    }

    /// `iommu->agaw`: the largest AGAW (at most 57 bits) the unit's effective SAGAW
    /// allows. In scalable mode with a first stage that is the second-stage SAGAW limited
    /// to what first-stage tables can match (48 bits, plus 57 with FS5LP); with only a
    /// first stage, the first-stage widths alone.
    fn calculate_agaw(cap: Cap, ecap: Ecap) -> u8 {
        let fs = 1 << 2 | if cap.fs5lp() { 1 << 3 } else { 0 };
        let sagaw = if !ecap.smts() || !ecap.flts() {
            cap.sagaw()
        } else if !ecap.slts() {
            fs
        } else {
            cap.sagaw() & fs
        };
        (1..=3).rev().find(|aw| sagaw & (1 << aw) != 0).unwrap_or(0)
    }

    /// The address width the unit supports for a domain: min(AGAW width, MGAW).
    pub(crate) fn addr_width(&self) -> u32 {
        vtd_spec::addr::agaw_width(self.agaw).min(self.cap.mgaw_bits())
    }

    /// Page sizes the second stage supports.
    pub(crate) fn page_sizes(&self) -> Vec<PageSize> {
        let mut sizes = vec![PageSize::Size4K];
        if self.cap.ss_2m() {
            sizes.push(PageSize::Size2M);
        }
        if self.cap.ss_1g() {
            sizes.push(PageSize::Size1G);
        }
        sizes
    }
}

/// A PCI device behind a unit.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DeviceInfo {
    pub(crate) unit: usize,
    pub(crate) sid: u16,
    /// PASID width the device supports (0: no PASID capability).
    pub(crate) pasid_bits: u8,
    /// The device has an ATS capability.
    pub(crate) ats: bool,
}

/// Per-unit driver state: tables, the invalidation queue, domain ids.
pub(crate) struct UnitState {
    pub(crate) tables: Tables,
    pub(crate) qi: Qi,
    /// Free domain ids; 0 and 1 are reserved as in Linux.
    used_dids: Vec<bool>,
}

/// A paging (second-stage) domain.
pub(crate) struct PagingDomain {
    pub(crate) pgtbl: SsPageTable,
    pub(crate) agaw: u8,
    /// Guest address width; an attach may lower it to the unit's width.
    pub(crate) gaw: u32,
    /// Highest IOVA ever mapped (`max_addr`), checked against a unit's width on attach.
    pub(crate) max_addr: u64,
    pub(crate) nest_parent: bool,
    pub(crate) dirty_ops: bool,
    pub(crate) dirty_tracking: bool,
    pub(crate) force_snooping: bool,
    /// Flush the IOTLB after map (caching mode or RWBF on an attached unit).
    pub(crate) iotlb_sync_map: bool,
    pub(crate) page_sizes: Vec<PageSize>,
    /// Nested domains with this domain as parent.
    pub(crate) children: Vec<u64>,
    pub(crate) common: DomainCommon,
}

/// A nested domain: a user stage 1 over a nest-parent paging domain.
pub(crate) struct NestedDomain {
    pub(crate) parent: u64,
    /// The user's `struct iommu_hwpt_vtd_s1`, unvalidated as in Linux.
    pub(crate) s1: vtd_iommufd::uapi::iommu_hwpt_vtd_s1,
    pub(crate) common: DomainCommon,
}

/// What every domain tracks: domain ids per unit, cache tags, attached devices.
#[derive(Default)]
pub(crate) struct DomainCommon {
    /// Unit → (DID, devices attached through it).
    pub(crate) dids: HashMap<usize, (u16, u32)>,
    pub(crate) tags: Vec<CacheTag>,
    pub(crate) devices: Vec<usize>,
}

/// A domain.
pub(crate) enum Domain {
    Paging(PagingDomain),
    Nested(NestedDomain),
}

impl Domain {
    pub(crate) fn common(&self) -> &DomainCommon {
        match self {
            Domain::Paging(d) => &d.common,
            Domain::Nested(d) => &d.common,
        }
    }

    pub(crate) fn common_mut(&mut self) -> &mut DomainCommon {
        match self {
            Domain::Paging(d) => &mut d.common,
            Domain::Nested(d) => &mut d.common,
        }
    }
}

/// Mutable driver state, under one lock.
pub(crate) struct State {
    pub(crate) units: Vec<UnitState>,
    pub(crate) domains: HashMap<u64, Domain>,
    next_domain: u64,
    /// The domain each device's requests without PASID use (`None`: blocked).
    pub(crate) attached: Vec<Option<u64>>,
    /// ATS is enabled on the device (6.12 enables it on paging attach only).
    pub(crate) ats_enabled: Vec<bool>,
}

/// The Intel IOMMU driver for every unit of a platform.
pub struct IntelDriver {
    pub(crate) mem: Arc<HostMem>,
    pub(crate) hw: Vec<UnitHw>,
    pub(crate) devices: Vec<DeviceInfo>,
    state: Mutex<State>,
    /// Refuse read-only mappings in nest parents (the ERRATA_772415_SPR17 workaround).
    pub(crate) refuse_ro_in_nest_parent: AtomicBool,
}

impl IntelDriver {
    /// Bring up every unit (root table, queued invalidation, translation enabled) and set
    /// up every device's context entry and PASID directory, as boot and probe do.
    pub(crate) fn new(
        mem: Arc<HostMem>,
        units: Vec<Arc<Unit<Arc<HostMem>>>>,
        devices: &[DeviceDesc],
    ) -> Self {
        let hw: Vec<UnitHw> = units
            .into_iter()
            .map(|unit| {
                let (cap, ecap) = (unit.config().cap, unit.config().ecap);
                UnitHw {
                    agaw: UnitHw::calculate_agaw(cap, ecap),
                    unit,
                    cap,
                    ecap,
                }
            })
            .collect();
        let devices: Vec<DeviceInfo> = devices
            .iter()
            .map(|d| DeviceInfo {
                unit: d.unit,
                sid: d.sid,
                pasid_bits: d.pasid_bits,
                ats: d.ats,
            })
            .collect();
        let units = hw.iter().map(|h| iommu::bring_up(h, &mem)).collect();
        let driver = Self {
            state: Mutex::new(State {
                units,
                domains: HashMap::new(),
                next_domain: 1,
                attached: vec![None; devices.len()],
                ats_enabled: vec![false; devices.len()],
            }),
            mem,
            hw,
            devices,
            refuse_ro_in_nest_parent: AtomicBool::new(true),
        };
        for dev in 0..driver.devices.len() {
            driver.probe_device(dev);
        }
        driver
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Submit descriptors to a unit's queue. A rejected descriptor is a driver bug; it is
    /// reported and the queue error cleared so later submissions work.
    pub(crate) fn submit(&self, st: &mut State, unit: usize, descs: &[RawDescriptor]) {
        if descs.is_empty() {
            return;
        }
        let hw = &self.hw[unit];
        if let Err(e) = st.units[unit].qi.submit(&hw.unit, &self.mem, descs) {
            eprintln!("vtd-kernel: unit {unit}: {e}");
            let _ = hw.unit.mmio_write(vtd_spec::regs::offset::FSTS, 4, 1 << 4);
        }
    }

    /// Start (or stop) keeping every submitted descriptor of `unit`, for tests.
    pub fn log_invalidations(&self, unit: usize, on: bool) {
        let mut st = self.lock();
        if let Some(u) = st.units.get_mut(unit) {
            u.qi.log = on;
            u.qi.submitted.clear();
        }
    }

    /// The descriptors submitted to `unit` since logging was turned on.
    pub fn submitted_invalidations(&self, unit: usize) -> Vec<RawDescriptor> {
        self.lock()
            .units
            .get(unit)
            .map(|u| u.qi.submitted.clone())
            .unwrap_or_default()
    }

    /// Behave like a kernel without the ERRATA_772415_SPR17 workaround (`false`): nest
    /// parents then accept read-only mappings. Only for showing what the workaround
    /// prevents; Linux has no such switch.
    pub fn set_nest_parent_ro_refusal(&self, refuse: bool) {
        self.refuse_ro_in_nest_parent
            .store(refuse, Ordering::Relaxed);
    }

    /// The unit a device sits behind.
    pub(crate) fn unit_of(&self, dev: usize) -> usize {
        self.devices[dev].unit
    }
}

impl State {
    fn alloc_domain_id(&mut self) -> u64 {
        let id = self.next_domain;
        self.next_domain += 1;
        id
    }

    /// Allocate the lowest free domain id of `unit`; ENOSPC when none is left.
    pub(crate) fn alloc_did(&mut self, unit: usize) -> Result<u16, vtd_iommufd::Errno> {
        let used = &mut self.units[unit].used_dids;
        let did = used
            .iter()
            .position(|u| !u)
            .ok_or(vtd_iommufd::Errno::ENOSPC)?;
        used[did] = true;
        Ok(did as u16)
    }

    pub(crate) fn free_did(&mut self, unit: usize, did: u16) {
        if let Some(u) = self.units[unit].used_dids.get_mut(did as usize) {
            *u = did < 2;
        }
    }
}
