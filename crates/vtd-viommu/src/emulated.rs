//! Emulated devices behind the vIOMMU: their DMA is translated in software by the
//! guest-facing unit, exposed as vm-memory's [`Iommu`] so rust-vmm device models can use
//! [`vm_memory::IommuMemory`] unchanged.
//!
//! The vm-memory IOTLB in front of the unit holds only what the unit granted for the
//! access it translated (a read caches read permission only), so a later write goes back
//! to the unit, which sets the dirty flag as hardware would. Every guest invalidation
//! moves the vIOMMU's generation counter, and the next translation drops everything.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};

use vm_memory::iommu::{Error as IommuError, IotlbIterator, IovaRange};
use vm_memory::{GuestAddress, Iommu, Iotlb, Permissions};
use vtd_model::Unit;
use vtd_model::mem::PhysMem;
use vtd_model::request::{Access, Perms, Request};

const PAGE: u64 = 4096;

/// The vIOMMU as one emulated device (`sid`, optional `pasid`) sees it.
pub struct DeviceIommu<M: PhysMem> {
    unit: Arc<Unit<M>>,
    sid: u16,
    pasid: Option<u32>,
    generation: Arc<AtomicU64>,
    seen: AtomicU64,
    iotlb: RwLock<Iotlb>,
    /// `[first, last]` output ranges writes may not reach (ROM).
    read_only: Vec<(u64, u64)>,
}

impl<M: PhysMem> fmt::Debug for DeviceIommu<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceIommu")
            .field("sid", &self.sid)
            .field("pasid", &self.pasid)
            .finish()
    }
}

impl<M: PhysMem> DeviceIommu<M> {
    /// Device `sid` (requests with `pasid` if given) translating through `unit`;
    /// `generation` is the vIOMMU's invalidation counter
    /// ([`crate::VIommu::generation`]).
    pub fn new(
        unit: Arc<Unit<M>>,
        sid: u16,
        pasid: Option<u32>,
        generation: Arc<AtomicU64>,
    ) -> Self {
        let seen = AtomicU64::new(generation.load(Ordering::Acquire));
        Self {
            unit,
            sid,
            pasid,
            generation,
            seen,
            iotlb: RwLock::new(Iotlb::new()),
            read_only: Vec::new(),
        }
    }

    /// The same, refusing writes whose translation lands in any of the `[first, last]`
    /// output ranges: the guest's read-only memory, which the unit (first stage only)
    /// does not know of. [`crate::VIommu::device_iommu`] passes the memory map's ROM.
    pub fn with_read_only(mut self, ranges: impl IntoIterator<Item = (u64, u64)>) -> Self {
        self.read_only.extend(ranges);
        self
    }

    fn read_only(&self, page: u64) -> bool {
        let last = page | (PAGE - 1);
        self.read_only
            .iter()
            .any(|&(first, end)| page <= end && first <= last)
    }

    fn read_iotlb(&self) -> RwLockReadGuard<'_, Iotlb> {
        self.iotlb.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Drop everything if the guest invalidated anything since the last translation.
    fn sync_generation(&self) {
        let now = self.generation.load(Ordering::Acquire);
        if self.seen.load(Ordering::Acquire) != now {
            let mut tlb = self.iotlb.write().unwrap_or_else(|e| e.into_inner());
            tlb.invalidate_all();
            self.seen.store(now, Ordering::Release);
        }
    }

    /// Translate the pages of `range` through the unit and cache what it granted.
    fn fill(&self, range: &IovaRange, access: Permissions) -> Result<(), IommuError> {
        let model_access = match access {
            Permissions::Write | Permissions::ReadWrite => Access::Write,
            _ => Access::Read,
        };
        let start = range.base.0 & !(PAGE - 1);
        let end = range.base.0.saturating_add(range.length as u64);
        let cannot = |page: u64, reason: String| IommuError::CannotResolve {
            iova_range: IovaRange {
                base: GuestAddress(page),
                length: PAGE as usize,
            },
            reason,
        };
        let mut page = start;
        while page < end {
            let mut req = Request::new(self.sid, page, model_access);
            if let Some(p) = self.pasid {
                req = req.with_pasid(p);
            }
            let t = self
                .unit
                .translate(&req)
                .map_err(|fault| cannot(page, fault.to_string()))?;
            let out = t.hpa & !(PAGE - 1);
            if model_access == Access::Write && self.read_only(out) {
                return Err(cannot(page, format!("{out:#x} is read-only guest memory")));
            }
            let mut granted = Permissions::Read;
            if model_access == Access::Write {
                granted = if t.perms.contains(Perms::READ) {
                    Permissions::ReadWrite
                } else {
                    Permissions::Write
                };
            }
            // Locked per page, not across the loop: the translation above may record a
            // fault and raise an interrupt into VMM code, which must not find this lock held.
            let mut tlb = self.iotlb.write().unwrap_or_else(|e| e.into_inner());
            tlb.set_mapping(
                GuestAddress(page),
                GuestAddress(out),
                PAGE as usize,
                granted,
            )?;
            // The last page of the address space ends the range.
            let Some(next) = page.checked_add(PAGE) else {
                break;
            };
            page = next;
        }
        Ok(())
    }
}

impl<M: PhysMem> Iommu for DeviceIommu<M> {
    type IotlbGuard<'a>
        = RwLockReadGuard<'a, Iotlb>
    where
        Self: 'a;

    fn translate(
        &self,
        iova: GuestAddress,
        length: usize,
        access: Permissions,
    ) -> Result<IotlbIterator<Self::IotlbGuard<'_>>, IommuError> {
        self.sync_generation();
        let fails = match Iotlb::lookup(self.read_iotlb(), iova, length, access) {
            Ok(it) => return Ok(it),
            Err(fails) => fails,
        };
        for range in fails.misses.iter().chain(&fails.access_fails) {
            self.fill(range, access)?;
        }
        Iotlb::lookup(self.read_iotlb(), iova, length, access).map_err(|_| {
            IommuError::CannotResolve {
                iova_range: IovaRange { base: iova, length },
                reason: "the vIOMMU does not grant this access".into(),
            }
        })
    }
}
