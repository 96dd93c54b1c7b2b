//! VT-d nesting helpers: hw_info decoded into vtd-spec's CAP/ECAP, stage-1 data for
//! `IOMMU_HWPT_ALLOC`, and stage-1 invalidation entries.

use vtd_spec::pasid::{Fspm, PasidEntry, Pgtt};
use vtd_spec::regs::{Cap, Ecap};

use crate::uapi::{
    HwCaps, IOMMU_HW_INFO_TYPE_INTEL_VTD, IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17,
    IOMMU_VTD_INV_FLAGS_LEAF, VTD_S1_ADDR_WIDTH_4LEVEL, VTD_S1_ADDR_WIDTH_5LEVEL, VtdS1Flags,
    iommu_hw_info_vtd, iommu_hwpt_vtd_s1, iommu_hwpt_vtd_s1_invalidate,
};

/// What `IOMMU_GET_HW_INFO` says about a device's IOMMU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HwInfo {
    /// `out_data_type`.
    pub data_type: u32,
    /// The kernel's data length (`data_len` on return).
    pub data_len: u32,
    /// `out_capabilities`.
    pub capabilities: HwCaps,
    /// `out_max_pasid_log2`: the device's PASID width, 0 without PASID support.
    pub max_pasid_log2: u8,
    /// The VT-d data, when the type is `IOMMU_HW_INFO_TYPE_INTEL_VTD`.
    pub vtd: Option<VtdHwInfo>,
}

/// `struct iommu_hw_info_vtd`, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VtdHwInfo {
    /// `IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17`: read-only mappings are refused in a nest
    /// parent, so the VMM must keep read-only guest memory out of stage 2.
    pub errata_772415_spr17: bool,
    /// Raw `flags`.
    pub flags: u32,
    /// The unit's capability register.
    pub cap: Cap,
    /// The unit's extended capability register.
    pub ecap: Ecap,
}

impl VtdHwInfo {
    /// Decode the raw struct.
    pub fn from_raw(raw: &iommu_hw_info_vtd) -> Self {
        Self {
            errata_772415_spr17: raw.flags & IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17 != 0,
            flags: raw.flags,
            cap: Cap::from_bits(raw.cap_reg),
            ecap: Ecap::from_bits(raw.ecap_reg),
        }
    }

    /// Nested translation is available (scalable mode and ECAP.NEST).
    pub fn nesting(&self) -> bool {
        self.ecap.nested_supported()
    }

    /// Stage-1 address widths a nested HWPT may use: 48, and 57 with CAP.FS5LP.
    pub fn stage1_widths(&self) -> &'static [u32] {
        if self.cap.fs5lp() {
            &[VTD_S1_ADDR_WIDTH_4LEVEL, VTD_S1_ADDR_WIDTH_5LEVEL]
        } else {
            &[VTD_S1_ADDR_WIDTH_4LEVEL]
        }
    }
}

impl HwInfo {
    /// True when the IOMMU is Intel VT-d.
    pub fn is_vtd(&self) -> bool {
        self.data_type == IOMMU_HW_INFO_TYPE_INTEL_VTD
    }
}

/// Stage-1 page-table parameters for a nested HWPT (`struct iommu_hwpt_vtd_s1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VtdS1 {
    /// SRE, EAFE, WPE.
    pub flags: VtdS1Flags,
    /// Guest-physical address of the stage-1 root table (FSPTPTR).
    pub pgtbl_addr: u64,
    /// 48 (4-level) or 57 (5-level).
    pub addr_width: u32,
}

impl VtdS1 {
    /// A 4-level stage 1 rooted at guest-physical `pgtbl_addr`, no flags.
    pub fn new(pgtbl_addr: u64) -> Self {
        Self {
            flags: VtdS1Flags::empty(),
            pgtbl_addr,
            addr_width: VTD_S1_ADDR_WIDTH_4LEVEL,
        }
    }

    /// The same with 5-level paging.
    pub fn five_level(mut self) -> Self {
        self.addr_width = VTD_S1_ADDR_WIDTH_5LEVEL;
        self
    }

    /// The same with `flags` added.
    pub fn with_flags(mut self, flags: VtdS1Flags) -> Self {
        self.flags |= flags;
        self
    }

    /// The stage-1 data a VMM derives from a guest's first-stage PASID entry: FSPTPTR,
    /// FSPM and the SRE/EAFE/WPE bits. `None` unless the entry is present with PGTT=001b
    /// and a defined FSPM.
    pub fn from_guest_pasid_entry(entry: &PasidEntry) -> Option<Self> {
        if !entry.lo.p() || entry.lo.pgtt() != Pgtt::FirstStage {
            return None;
        }
        let addr_width = match entry.hi.fspm() {
            Fspm::Level4 => VTD_S1_ADDR_WIDTH_4LEVEL,
            Fspm::Level5 => VTD_S1_ADDR_WIDTH_5LEVEL,
            _ => return None,
        };
        let mut flags = VtdS1Flags::empty();
        flags.set(VtdS1Flags::SRE, entry.hi.sre());
        flags.set(VtdS1Flags::EAFE, entry.hi.eafe());
        flags.set(VtdS1Flags::WPE, entry.hi.wpe());
        Some(Self {
            flags,
            pgtbl_addr: entry.fs_table(),
            addr_width,
        })
    }

    /// The uAPI struct.
    pub fn to_raw(&self) -> iommu_hwpt_vtd_s1 {
        iommu_hwpt_vtd_s1 {
            flags: self.flags.bits(),
            pgtbl_addr: self.pgtbl_addr,
            addr_width: self.addr_width,
            __reserved: 0,
        }
    }
}

/// One stage-1 invalidation (`struct iommu_hwpt_vtd_s1_invalidate`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VtdS1Invalidate {
    /// First address, 4 KiB aligned.
    pub addr: u64,
    /// Number of 4 KiB pages; `u64::MAX` (with `addr` 0) means everything.
    pub npages: u64,
    /// Only leaf entries changed (`IOMMU_VTD_INV_FLAGS_LEAF`, the descriptor's IH).
    pub leaf: bool,
}

impl VtdS1Invalidate {
    /// Invalidate every address.
    pub const fn all() -> Self {
        Self {
            addr: 0,
            npages: u64::MAX,
            leaf: false,
        }
    }

    /// Invalidate the pages covering `[addr, addr + len)`.
    pub const fn range(addr: u64, len: u64) -> Self {
        let start = addr & !0xFFF;
        let end = addr.saturating_add(len);
        let npages = end.saturating_sub(start).div_ceil(4096);
        Self {
            addr: start,
            npages,
            leaf: false,
        }
    }

    /// The same, marking only leaf entries as changed.
    pub const fn leaf_only(mut self) -> Self {
        self.leaf = true;
        self
    }

    /// The uAPI struct.
    pub fn to_raw(&self) -> iommu_hwpt_vtd_s1_invalidate {
        iommu_hwpt_vtd_s1_invalidate {
            addr: self.addr,
            npages: self.npages,
            flags: if self.leaf {
                IOMMU_VTD_INV_FLAGS_LEAF
            } else {
                0
            },
            __reserved: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vtd_spec::pasid::{PasidEntryHi, PasidEntryLo};

    #[test]
    fn guest_first_stage_entry_becomes_stage1_data() {
        let entry = PasidEntry {
            lo: PasidEntryLo::new()
                .with_p(true)
                .with_pgtt(Pgtt::FirstStage)
                .with_did(9),
            hi: PasidEntryHi::new()
                .with_fspm(Fspm::Level5)
                .with_sre(true)
                .with_fsptptr(0x1234),
            rsvd: [0, 0],
        };
        let s1 = VtdS1::from_guest_pasid_entry(&entry).unwrap();
        assert_eq!(s1.pgtbl_addr, 0x0123_4000);
        assert_eq!(s1.addr_width, 57);
        assert_eq!(s1.flags, VtdS1Flags::SRE);
    }

    #[test]
    fn guest_pass_through_entry_gives_no_stage1_data() {
        let entry = PasidEntry {
            lo: PasidEntryLo::new()
                .with_p(true)
                .with_pgtt(Pgtt::PassThrough),
            ..PasidEntry::default()
        };
        assert_eq!(VtdS1::from_guest_pasid_entry(&entry), None);
    }

    #[test]
    fn range_invalidation_covers_partial_pages() {
        let inv = VtdS1Invalidate::range(0x1FFF, 2);
        assert_eq!((inv.addr, inv.npages), (0x1000, 2));
    }

    #[test]
    fn hw_info_decodes_the_erratum_flag_and_registers() {
        let raw = iommu_hw_info_vtd {
            flags: 1,
            __reserved: 0,
            cap_reg: 0x00D2_008C_222F_0606,
            ecap_reg: 0xF42,
        };
        let info = VtdHwInfo::from_raw(&raw);
        assert!(info.errata_772415_spr17);
        assert_eq!(info.cap.mgaw_bits(), 48);
        assert!(info.ecap.qi());
        assert!(!info.nesting());
    }
}
