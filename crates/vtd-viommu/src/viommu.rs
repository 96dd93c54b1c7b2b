//! The vIOMMU: a guest-facing VT-d (a `vtd-model` unit over guest memory) that shadows
//! the guest's PASID entries of assigned devices into nested HWPTs on the host and
//! forwards the guest's stage-1 invalidations as `IOMMU_HWPT_INVALIDATE` (KS §9.2).
//!
//! The guest drives the unit through MMIO and its own memory, as it would drive hardware.
//! Every invalidation the unit completes reaches [`VIommu`]'s observer synchronously,
//! inside the guest's register write, so the host caches are flushed before the guest
//! can see its wait descriptor complete.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use vtd_iommufd::{Errno, IoctlFd, Iommufd, VfioDevice, VtdHwInfo, VtdS1Invalidate};
use vtd_model::fault::Fault;
use vtd_model::invalidation::Invalidation;
use vtd_model::{PasidLookup, Unit, UnitObserver};

use crate::config::{HostUnsupported, guest_unit_config};
use crate::emulated::DeviceIommu;
use crate::memory::GuestMemory;
use crate::shadow::{Attachment, BlockReason, Change, PendingDestroys, Shadow, Target};
use crate::stage2::{Stage2, Stage2Error, Stage2Plan, Stage2Policy};

/// The guest-facing unit.
pub type GuestUnit = Unit<Arc<GuestMemory>>;

/// Why the vIOMMU could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum VIommuError {
    /// An iommufd or VFIO call failed.
    #[error("{0}")]
    Iommufd(#[from] vtd_iommufd::Error),
    /// The host cannot back a nesting vIOMMU.
    #[error("{0}")]
    Host(#[from] HostUnsupported),
    /// Building stage 2 failed.
    #[error("{0}")]
    Stage2(#[from] Stage2Error),
    /// The guest-facing unit's configuration is impossible.
    #[error("guest unit: {0}")]
    Config(#[from] vtd_model::config::ConfigError),
}

/// An assigned device as the VMM opens it: its VFIO cdev and where the guest sees it.
pub struct NewDevice<D> {
    /// A name for reports.
    pub name: String,
    /// The guest-visible source id (bus:dev.fn in the guest).
    pub guest_sid: u16,
    /// The device's VFIO cdev.
    pub vfio: VfioDevice<D>,
}

/// What the vIOMMU did, for logs and the CLI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The nest parent was built from the guest memory map.
    Stage2Built {
        /// The IOAS.
        ioas: u32,
        /// The nest parent HWPT.
        hwpt: u32,
        /// What was mapped and what was left out.
        plan: Stage2Plan,
    },
    /// An assigned device's host attachment was brought to what the guest's entry says.
    Shadowed {
        /// The device.
        device: String,
        /// What the guest's entry asked for.
        target: Target,
        /// What changed on the host.
        change: Change,
    },
    /// The host refused what the guest asked for; the device is blocked.
    ShadowFailed {
        /// The device.
        device: String,
        /// What the guest's entry asked for.
        target: Target,
        /// The host's errno.
        errno: Option<Errno>,
    },
    /// A guest invalidation was forwarded to a nested HWPT.
    Forwarded {
        /// The device whose nested HWPT it was.
        device: String,
        /// The HWPT.
        hwpt: u32,
        /// The entries sent.
        entries: Vec<VtdS1Invalidate>,
        /// Entries the host processed, or its errno.
        result: Result<u32, Errno>,
    },
    /// The host refused to destroy a nested HWPT the device no longer uses; the vIOMMU
    /// keeps its id and tries again at every later invalidation and on drop (see
    /// [`VIommu::pending_destroys`]). Logged once per HWPT.
    DestroyRefused {
        /// The device whose HWPT it was.
        device: String,
        /// The HWPT.
        hwpt: u32,
        /// The host's errno.
        errno: Option<Errno>,
    },
}

/// One assigned device.
struct Assigned<D> {
    name: String,
    guest_sid: u16,
    vfio: VfioDevice<D>,
    dev_id: u32,
    shadow: Shadow,
    /// The PASID the guest's lookup for requests without PASID used (RID_PASID).
    rid_pasid: u32,
}

/// Events kept until [`VIommu::take_events`]; older ones are dropped and counted, so a
/// guest that invalidates without end cannot grow the VMM's memory.
pub const MAX_EVENTS: usize = 1024;

/// The events not yet taken.
#[derive(Default)]
struct EventLog {
    events: VecDeque<Event>,
    dropped: u64,
}

/// The state the observer works on.
///
/// Lock order: the guest unit's register lock (held around every observer call) before
/// `devices`, `devices` before `events`. Nothing here takes the register lock while
/// holding `devices`: lookups of guest entries and the host's ioctls take none.
struct Core<I, D> {
    iommufd: Arc<Iommufd<I>>,
    host: VtdHwInfo,
    stage2: Stage2,
    devices: Mutex<Vec<Assigned<D>>>,
    /// Nested HWPTs the host refused to destroy, for every device: ids are the
    /// iommufd's. Locked after `devices`, before `events`.
    pending: Mutex<PendingDestroys>,
    events: Mutex<EventLog>,
    unit: OnceLock<Weak<GuestUnit>>,
    /// Moves on every invalidation and remapping change, so software IOTLBs in front of
    /// the unit (emulated devices) know to drop what they hold.
    generation: Arc<AtomicU64>,
}

/// A nesting vIOMMU in front of assigned devices, over an iommufd of type `I` and VFIO
/// device files of type `D` (both `std::fs::File` on a real host).
pub struct VIommu<I: IoctlFd + Send + Sync + 'static, D: IoctlFd + Send + Sync + 'static> {
    unit: Arc<GuestUnit>,
    core: Arc<Core<I, D>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<I: IoctlFd + Send + Sync + 'static, D: IoctlFd + Send + Sync + 'static> VIommu<I, D> {
    /// Set up the vIOMMU around the first assigned device: bind it, read hw_info, build
    /// the nest parent from `mem` (read-only regions out under the erratum), attach the
    /// device to it (the guest's remapping is off at reset), and create the guest-facing
    /// unit. `dirty_tracking` asks for a parent that tracks dirty pages.
    pub fn new(
        iommufd: Arc<Iommufd<I>>,
        mem: Arc<GuestMemory>,
        first: NewDevice<D>,
        dirty_tracking: bool,
    ) -> Result<Self, VIommuError> {
        let dev_id = first.vfio.bind_iommufd(iommufd.fd().fd_number())?;
        let (info, host) = iommufd.get_vtd_hw_info(dev_id)?;
        if !info.is_vtd() {
            return Err(HostUnsupported::NotVtd.into());
        }
        let config = guest_unit_config(&host)?;
        let policy = Stage2Policy {
            nest_parent: true,
            erratum_772415: host.errata_772415_spr17,
            dirty_tracking,
        };
        let stage2 = Stage2::build(&iommufd, dev_id, &mem, policy)?;
        let built = Event::Stage2Built {
            ioas: stage2.ioas,
            hwpt: stage2.hwpt,
            plan: stage2.plan.clone(),
        };
        let core = Arc::new(Core {
            iommufd,
            host,
            devices: Mutex::new(Vec::new()),
            pending: Mutex::new(PendingDestroys::default()),
            events: Mutex::new(EventLog::default()),
            unit: OnceLock::new(),
            generation: Arc::new(AtomicU64::new(0)),
            stage2,
        });
        core.log(built);
        let unit = Arc::new(Unit::new(config, mem)?.with_observer(core.clone()));
        let _ = core.unit.set(Arc::downgrade(&unit));
        let viommu = Self { unit, core };
        viommu.attach_new(first, dev_id)?;
        Ok(viommu)
    }

    /// Assign another device: bind it and attach it to the nest parent; the guest's
    /// tables decide the rest.
    pub fn add_device(&self, dev: NewDevice<D>) -> Result<(), VIommuError> {
        let dev_id = dev.vfio.bind_iommufd(self.core.iommufd.fd().fd_number())?;
        self.attach_new(dev, dev_id)
    }

    /// Shadow a new device and add it to the list. The device lock is held throughout,
    /// so an invalidation the guest completes meanwhile waits and then re-shadows this
    /// device too, instead of missing it. A guest stage 1 the host refuses leaves the
    /// device assigned but blocked, as a later change of the entry would; a refused
    /// attach to the parent is the VMM's setup failing, and an error.
    fn attach_new(&self, dev: NewDevice<D>, dev_id: u32) -> Result<(), VIommuError> {
        let mut devices = lock(&self.core.devices);
        let mut assigned = Assigned {
            name: dev.name,
            guest_sid: dev.guest_sid,
            vfio: dev.vfio,
            dev_id,
            shadow: Shadow::new(self.core.stage2.hwpt),
            rid_pasid: 0,
        };
        let mut pending = lock(&self.core.pending);
        let (target, applied) = self
            .core
            .shadow_device(&self.unit, &mut assigned, &mut pending);
        drop(pending);
        match applied {
            Ok(change) => self.core.log(Event::Shadowed {
                device: assigned.name.clone(),
                target,
                change,
            }),
            Err(e) if matches!(target, Target::Nested { .. }) => {
                self.core.log(Event::ShadowFailed {
                    device: assigned.name.clone(),
                    target,
                    errno: e.errno(),
                })
            }
            Err(e) => return Err(e.into()),
        }
        devices.push(assigned);
        Ok(())
    }

    /// The guest-facing unit: the guest's MMIO goes here, emulated devices translate here.
    pub fn unit(&self) -> &Arc<GuestUnit> {
        &self.unit
    }

    /// The host unit's hw_info.
    pub fn host(&self) -> &VtdHwInfo {
        &self.core.host
    }

    /// The nest parent and what went into it.
    pub fn stage2(&self) -> &Stage2 {
        &self.core.stage2
    }

    /// The iommufd the vIOMMU works through.
    pub fn iommufd(&self) -> &Arc<Iommufd<I>> {
        &self.core.iommufd
    }

    /// Take the events logged so far.
    pub fn take_events(&self) -> Vec<Event> {
        lock(&self.core.events).events.drain(..).collect()
    }

    /// How many events were dropped, oldest first, because [`MAX_EVENTS`] were waiting.
    pub fn dropped_events(&self) -> u64 {
        lock(&self.core.events).dropped
    }

    /// How many nested HWPTs the host refused to destroy and the vIOMMU keeps to retry
    /// (at the guest's next invalidation, and on drop); zero once all are destroyed.
    pub fn pending_destroys(&self) -> usize {
        lock(&self.core.pending).ids().len()
    }

    /// The ids of those nested HWPTs: none of them is any device's attachment.
    pub fn pending_destroy_ids(&self) -> Vec<u32> {
        lock(&self.core.pending).ids().to_vec()
    }

    /// How many times the host refused to destroy a nested HWPT nothing used any more,
    /// retries included.
    pub fn refused_destroys(&self) -> u64 {
        lock(&self.core.pending).refused()
    }

    /// The host attachment of the assigned device `name`.
    pub fn attachment(&self, name: &str) -> Option<Attachment> {
        lock(&self.core.devices)
            .iter()
            .find(|d| d.name == name)
            .map(|d| d.shadow.attachment)
    }

    /// The counter software IOTLBs in front of the unit watch (see
    /// [`crate::emulated::DeviceIommu`]).
    pub fn generation(&self) -> Arc<AtomicU64> {
        self.core.generation.clone()
    }

    /// The vIOMMU as the emulated device `sid` (requests with `pasid` if given) sees it,
    /// with the memory map's ROM read-only to its DMA.
    pub fn device_iommu(&self, sid: u16, pasid: Option<u32>) -> DeviceIommu<Arc<GuestMemory>> {
        let rom = self.unit.mem().map().rom_ranges().collect::<Vec<_>>();
        DeviceIommu::new(self.unit.clone(), sid, pasid, self.generation()).with_read_only(rom)
    }

    /// Report a fault the host saw for the assigned device `name` into the guest's fault
    /// records, as seen from the guest (its source id). Returns how it was recorded, or
    /// `None` for an unknown device.
    pub fn report_host_fault(&self, name: &str, fault: &Fault) -> Option<Fault> {
        let sid = lock(&self.core.devices)
            .iter()
            .find(|d| d.name == name)?
            .guest_sid;
        let mut guest = *fault;
        guest.sid = sid;
        Some(self.unit.report_fault(guest, false))
    }
}

impl<I: IoctlFd + Send + Sync + 'static, D: IoctlFd + Send + Sync + 'static> Drop for VIommu<I, D> {
    /// Release the host side in dependency order: each device detached and its nested
    /// HWPT destroyed, then the nest parent and its IOAS. Nested HWPTs the host refused to
    /// destroy (now or before) are tried once more after every device file is closed,
    /// which also undoes a detach the host refused, and before the parent they sit on.
    /// The guest-facing unit may outlive this (emulated devices hold it); with no devices
    /// left, its observer has nothing to shadow or forward.
    fn drop(&mut self) {
        let devices = std::mem::take(&mut *lock(&self.core.devices));
        let iommufd = &self.core.iommufd;
        let mut pending = lock(&self.core.pending);
        for dev in devices {
            let Assigned {
                vfio, mut shadow, ..
            } = dev;
            shadow.block(iommufd, &vfio, &mut pending);
            drop(vfio);
            if let Some(hwpt) = shadow.device_closed() {
                pending.add(hwpt);
            }
        }
        // Every device file is closed: nothing is attached any more.
        pending.retry(iommufd);
        drop(pending);
        let _ = iommufd.destroy(self.core.stage2.hwpt);
        let _ = iommufd.destroy(self.core.stage2.ioas);
    }
}

impl<I: IoctlFd, D: IoctlFd> Core<I, D> {
    fn log(&self, event: Event) {
        let mut log = lock(&self.events);
        if log.events.len() == MAX_EVENTS {
            log.events.pop_front();
            log.dropped += 1;
        }
        log.events.push_back(event);
    }

    /// Log the HWPTs the host newly refused to destroy, released by `device`.
    fn log_refusals(&self, device: &str, pending: &mut PendingDestroys) {
        for (hwpt, errno) in pending.take_new() {
            self.log(Event::DestroyRefused {
                device: device.to_string(),
                hwpt,
                errno,
            });
        }
    }

    /// What the guest's tables say for the device's requests without PASID.
    fn target_for(&self, unit: &GuestUnit, dev: &mut Assigned<D>) -> Target {
        match unit.lookup_pasid_entry(dev.guest_sid, None) {
            PasidLookup::Disabled => Target::Parent,
            PasidLookup::NotScalable => Target::Blocked(BlockReason::NotScalable),
            PasidLookup::Fault(reason) => {
                Target::from_guest_entry(Err(reason), self.host.stage1_widths())
            }
            PasidLookup::Entry { pasid, entry } => {
                dev.rid_pasid = pasid;
                Target::from_guest_entry(Ok(entry), self.host.stage1_widths())
            }
        }
    }

    /// Bring `dev`'s host attachment to what the guest's tables say for its requests
    /// without PASID, logging the HWPTs the host refused to destroy on the way; the
    /// caller holds `devices` and `pending` (the lookup of the guest entry takes no lock)
    /// and decides what the outcome means.
    fn shadow_device(
        &self,
        unit: &GuestUnit,
        dev: &mut Assigned<D>,
        pending: &mut PendingDestroys,
    ) -> (Target, Result<Change, vtd_iommufd::Error>) {
        let target = self.target_for(unit, dev);
        let applied = dev
            .shadow
            .apply(&self.iommufd, &dev.vfio, dev.dev_id, target, pending);
        self.log_refusals(&dev.name, pending);
        (target, applied)
    }

    /// Bring every device's host attachment to what the guest's tables say now.
    fn reshadow_all(&self) {
        let Some(unit) = self.unit.get().and_then(Weak::upgrade) else {
            return;
        };
        let mut devices = lock(&self.devices);
        let mut pending = lock(&self.pending);
        pending.retry(&self.iommufd);
        for dev in devices.iter_mut() {
            let (target, applied) = self.shadow_device(&unit, dev, &mut pending);
            match applied {
                Ok(Change::None) => {}
                Ok(change) => self.log(Event::Shadowed {
                    device: dev.name.clone(),
                    target,
                    change,
                }),
                Err(e) => self.log(Event::ShadowFailed {
                    device: dev.name.clone(),
                    target,
                    errno: e.errno(),
                }),
            }
        }
    }

    /// Send `entries` to the nested HWPT of every device the guest's (`did`, `pasid`)
    /// invalidation covers (`pasid` `None`: every PASID of the domain). The guest sees its
    /// invalidation complete once this returns, so a device whose HWPT the host would not
    /// flush, not even whole, is blocked: the host may still hold what the guest dropped.
    /// The next re-shadow gives it a fresh HWPT.
    fn forward(&self, did: Option<u16>, pasid: Option<u32>, entries: &[VtdS1Invalidate]) {
        let all = [VtdS1Invalidate::all()];
        let mut devices = lock(&self.devices);
        let mut pending = lock(&self.pending);
        // Every forwarded invalidation is a chance to free what the host refused to
        // destroy before, whichever devices it covers.
        pending.retry(&self.iommufd);
        for dev in devices.iter_mut() {
            let Attachment::Nested {
                hwpt, did: dev_did, ..
            } = dev.shadow.attachment
            else {
                continue;
            };
            if did.is_some_and(|d| d != dev_did) || pasid.is_some_and(|p| p != dev.rid_pasid) {
                continue;
            }
            let mut result = self.invalidate(dev, hwpt, entries);
            if result.is_err() && entries != all {
                result = self.invalidate(dev, hwpt, &all);
            }
            let Err(errno) = result else {
                continue;
            };
            dev.shadow.block(&self.iommufd, &dev.vfio, &mut pending);
            self.log_refusals(&dev.name, &mut pending);
            if dev.shadow.attachment == Attachment::Blocked {
                self.log(Event::Shadowed {
                    device: dev.name.clone(),
                    target: Target::Blocked(BlockReason::HostRefused(errno)),
                    change: Change::ToBlocked,
                });
            }
        }
    }

    /// One `IOMMU_HWPT_INVALIDATE`, logged.
    fn invalidate(
        &self,
        dev: &Assigned<D>,
        hwpt: u32,
        entries: &[VtdS1Invalidate],
    ) -> Result<u32, Errno> {
        let result = self
            .iommufd
            .hwpt_invalidate(hwpt, entries)
            .map_err(|e| e.errno().unwrap_or(Errno::EIO));
        self.log(Event::Forwarded {
            device: dev.name.clone(),
            hwpt,
            entries: entries.to_vec(),
            result,
        });
        result
    }
}

/// The host invalidation for a guest's page-selective one: the aligned block of `2^am`
/// pages holding `addr` that the guest's unit dropped (the address bits below the mask do
/// not count), or everything once that block is the whole space. The range never runs
/// past 2^64, which a kernel would compute with wraparound.
fn page_selective(addr: u64, am: u8, leaf: bool) -> VtdS1Invalidate {
    let (start, last) = Invalidation::page_range(addr, am);
    if start == 0 && last == u64::MAX {
        return VtdS1Invalidate {
            leaf,
            ..VtdS1Invalidate::all()
        };
    }
    VtdS1Invalidate {
        addr: start,
        npages: (last - start) / 4096 + 1,
        leaf,
    }
}

impl<I: IoctlFd + Send + Sync, D: IoctlFd + Send + Sync> UnitObserver for Core<I, D> {
    fn invalidated(&self, inv: &Invalidation) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        let all = [VtdS1Invalidate::all()];
        match *inv {
            Invalidation::ContextAll
            | Invalidation::ContextDomain { .. }
            | Invalidation::ContextDevice { .. }
            | Invalidation::PasidCacheAll
            | Invalidation::PasidCacheDomain { .. }
            | Invalidation::PasidCachePasid { .. } => self.reshadow_all(),
            Invalidation::Everything => {
                self.reshadow_all();
                self.forward(None, None, &all);
            }
            Invalidation::PasidIotlbPage {
                did,
                pasid,
                addr,
                am,
                ih,
            } => self.forward(Some(did), Some(pasid), &[page_selective(addr, am, ih)]),
            Invalidation::PasidIotlbPasid { did, pasid } => {
                self.forward(Some(did), Some(pasid), &all)
            }
            // Domain- and page-selective IOTLB invalidations drop every first-stage entry
            // of the domain (§8.4).
            Invalidation::IotlbDomain { did } | Invalidation::IotlbPage { did, .. } => {
                self.forward(Some(did), None, &all)
            }
            Invalidation::IotlbAll => self.forward(None, None, &all),
            // 6.12 runs nested devices without ATS: nothing to forward.
            Invalidation::DevTlb { .. } | Invalidation::PasidDevTlb { .. } => {}
        }
    }

    fn remapping_changed(&self, _enabled: bool) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.reshadow_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_selective_forwarding_is_the_aligned_block_the_guest_invalidated() {
        let inv = page_selective(0x4000_1000, 2, true);
        assert_eq!((inv.addr, inv.npages, inv.leaf), (0x4000_0000, 4, true));
        assert_eq!(page_selective(0x5000, 0, false).npages, 1);
    }

    #[test]
    fn page_selective_forwarding_of_the_whole_space_is_everything() {
        // am = 52 and beyond cover every address, whatever the address field says.
        for am in [52, 63] {
            let inv = page_selective(0xFFFF_FFFF_FFFF_F000, am, false);
            assert_eq!((inv.addr, inv.npages), (0, u64::MAX));
        }
        // The top block of a smaller mask ends exactly at 2^64.
        let inv = page_selective(0xFFFF_FFFF_FFFF_F000, 51, false);
        assert_eq!(inv.addr as u128 + inv.npages as u128 * 4096, 1 << 64);
    }
}
