//! The stage-2 builder: the nest-parent IOAS made from the guest memory map, with the
//! ERRATA_772415_SPR17 policy (KS §4.1, §9.1).
//!
//! With the erratum flag in hw_info, the kernel refuses read-only mappings in a nest
//! parent, because the hardware could set stage-1 A/D bits in them. So read-only guest
//! regions stay out of stage 2: device DMA to them faults (no stage-2 translation) instead
//! of reading the ROM. Every region left out is reported with its reason — never dropped
//! silently. Without the erratum, or without nesting, read-only regions are mapped
//! read-only.

use std::sync::Arc;

use vtd_iommufd::uapi::{HwptAllocFlags, MapFlags};
use vtd_iommufd::{IoctlFd, Iommufd};

use crate::memory::{GuestMemory, Region, RegionKind};

/// How stage 2 is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stage2Policy {
    /// The paging HWPT is a nest parent.
    pub nest_parent: bool,
    /// hw_info reported ERRATA_772415_SPR17: read-only mappings are refused in a parent.
    pub erratum_772415: bool,
    /// Ask for dirty tracking on the parent (live migration).
    pub dirty_tracking: bool,
}

/// Why a region is not in stage 2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkipReason {
    /// Read-only region under a nest parent with ERRATA_772415_SPR17.
    ReadOnlyUnderErratum,
    /// The region overlaps the interrupt window 0xFEE00000–0xFEEFFFFF, which the kernel
    /// reserves in every IOAS a VT-d device is attached to.
    InterruptWindow,
}

impl SkipReason {
    /// One line saying why.
    pub fn explain(self) -> &'static str {
        match self {
            SkipReason::ReadOnlyUnderErratum => {
                "read-only region kept out of the nest parent: ERRATA_772415_SPR17 lets the hardware set \
                 stage-1 A/D bits through read-only stage-2 mappings, so the kernel refuses them; \
                 device DMA to it will fault"
            }
            SkipReason::InterruptWindow => {
                "overlaps the interrupt window 0xFEE00000-0xFEEFFFFF, which the kernel reserves for MSIs"
            }
        }
    }
}

/// One region's place in the plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Mapped at IOVA = GPA with these rights.
    Mapped {
        /// The region.
        region: Region,
        /// Devices may write (false: read-only).
        writable: bool,
    },
    /// Left out.
    Skipped {
        /// The region.
        region: Region,
        /// Why.
        reason: SkipReason,
    },
}

/// What goes into stage 2.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stage2Plan {
    /// One placement per region of the memory map, lowest first.
    pub placements: Vec<Placement>,
}

impl Stage2Plan {
    /// Decide, region by region, what `policy` allows.
    pub fn new(mem: &GuestMemory, policy: Stage2Policy) -> Self {
        let placements = mem
            .map()
            .regions()
            .iter()
            .map(|r| {
                let window = r.gpa <= vtd_spec::addr::INTERRUPT_RANGE_LAST
                    && r.last() >= vtd_spec::addr::INTERRUPT_RANGE_BASE;
                if window {
                    return Placement::Skipped {
                        region: r.clone(),
                        reason: SkipReason::InterruptWindow,
                    };
                }
                match r.kind {
                    RegionKind::Ram => Placement::Mapped {
                        region: r.clone(),
                        writable: true,
                    },
                    RegionKind::Rom if policy.nest_parent && policy.erratum_772415 => {
                        Placement::Skipped {
                            region: r.clone(),
                            reason: SkipReason::ReadOnlyUnderErratum,
                        }
                    }
                    RegionKind::Rom => Placement::Mapped {
                        region: r.clone(),
                        writable: false,
                    },
                }
            })
            .collect();
        Self { placements }
    }

    /// The regions left out.
    pub fn skipped(&self) -> impl Iterator<Item = (&Region, SkipReason)> {
        self.placements.iter().filter_map(|p| match p {
            Placement::Skipped { region, reason } => Some((region, *reason)),
            Placement::Mapped { .. } => None,
        })
    }
}

/// Why building stage 2 failed.
#[derive(Debug, thiserror::Error)]
pub enum Stage2Error {
    /// An iommufd call failed.
    #[error("{0}")]
    Iommufd(#[from] vtd_iommufd::Error),
    /// A region has no host memory behind it.
    #[error("region {0} has no host memory")]
    NoHostMemory(String),
}

/// A built stage 2: the IOAS with guest memory mapped and the paging HWPT on it.
#[derive(Debug)]
pub struct Stage2 {
    /// The IOAS id.
    pub ioas: u32,
    /// The paging HWPT id (the nest parent when the policy asked for one).
    pub hwpt: u32,
    /// What was mapped and what was left out.
    pub plan: Stage2Plan,
}

impl Stage2 {
    /// Allocate the IOAS and the paging HWPT for `dev_id`, then map every placement of
    /// the plan at IOVA = GPA. The HWPT exists before the maps, so a refused mapping
    /// shows at the map that causes it.
    pub fn build<F: IoctlFd>(
        iommufd: &Arc<Iommufd<F>>,
        dev_id: u32,
        mem: &GuestMemory,
        policy: Stage2Policy,
    ) -> Result<Self, Stage2Error> {
        let plan = Stage2Plan::new(mem, policy);
        let ioas = iommufd.ioas_alloc()?;
        let mut flags = HwptAllocFlags::empty();
        flags.set(HwptAllocFlags::NEST_PARENT, policy.nest_parent);
        flags.set(HwptAllocFlags::DIRTY_TRACKING, policy.dirty_tracking);
        let hwpt = match iommufd.hwpt_alloc_paging(dev_id, ioas, flags) {
            Ok(h) => h,
            Err(e) => {
                let _ = iommufd.destroy(ioas);
                return Err(e.into());
            }
        };
        let stage2 = Self { ioas, hwpt, plan };
        if let Err(e) = stage2.map_all(iommufd, mem) {
            let _ = iommufd.destroy(hwpt);
            let _ = iommufd.destroy(ioas);
            return Err(e);
        }
        Ok(stage2)
    }

    fn map_all<F: IoctlFd>(
        &self,
        iommufd: &Iommufd<F>,
        mem: &GuestMemory,
    ) -> Result<(), Stage2Error> {
        for p in &self.plan.placements {
            let Placement::Mapped { region, writable } = p else {
                continue;
            };
            let hva = mem
                .hva(region.gpa)
                .ok_or_else(|| Stage2Error::NoHostMemory(region.name.clone()))?;
            let mut flags = MapFlags::READABLE;
            flags.set(MapFlags::WRITEABLE, *writable);
            // SAFETY: the region is host memory of `mem` (an mmap'd vm-memory region of
            // exactly `size` bytes), which the VMM keeps mapped for the guest's lifetime,
            // longer than the IOAS.
            unsafe { iommufd.ioas_map(self.ioas, hva, region.size, Some(region.gpa), flags) }?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryMap;

    fn pc() -> GuestMemory {
        GuestMemory::new(MemoryMap::pc(4 << 20)).unwrap()
    }

    #[test]
    fn nest_parent_with_erratum_keeps_the_vbios_out() {
        let policy = Stage2Policy {
            nest_parent: true,
            erratum_772415: true,
            dirty_tracking: false,
        };
        let plan = Stage2Plan::new(&pc(), policy);
        let skipped: Vec<_> = plan
            .skipped()
            .map(|(r, why)| (r.name.as_str(), why))
            .collect();
        assert_eq!(skipped, vec![("vbios", SkipReason::ReadOnlyUnderErratum)]);
    }

    #[test]
    fn a_large_pc_map_keeps_all_its_ram_in_stage2() {
        let mem = GuestMemory::new(MemoryMap::pc(5 << 30)).unwrap();
        let policy = Stage2Policy {
            nest_parent: true,
            erratum_772415: true,
            dirty_tracking: false,
        };
        let plan = Stage2Plan::new(&mem, policy);
        assert!(
            plan.skipped()
                .all(|(_, why)| why == SkipReason::ReadOnlyUnderErratum)
        );
    }

    #[test]
    fn plain_stage2_maps_the_vbios_read_only() {
        let policy = Stage2Policy {
            nest_parent: false,
            erratum_772415: true,
            dirty_tracking: false,
        };
        let plan = Stage2Plan::new(&pc(), policy);
        assert_eq!(plan.skipped().count(), 0);
        assert!(plan.placements.iter().any(
            |p| matches!(p, Placement::Mapped { region, writable: false } if region.name == "vbios")
        ));
    }
}
