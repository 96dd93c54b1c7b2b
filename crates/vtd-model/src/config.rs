//! Unit configuration: capabilities, host address width, model switches and presets.
//!
//! Every point the hardware reference marks UNSURE that changes observable behaviour is a
//! field of [`ModelSwitches`] with a documented default; the crate documentation lists
//! them all.

use vtd_spec::regs::{Cap, Ecap};

use crate::cache::CacheConfig;

/// SPR17 (Intel erratum 772415) behaviour, §6.5.
///
/// On affected parts, with PGTT=011b (nested) and PWSNP=1, the hardware sets first-stage
/// A/D (and EA) bits even when stage 2 maps the page holding that first-stage table
/// read-only, where it should fault with SFS.8 (0x77).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Spr17 {
    /// Architectural behaviour: the update needs stage-2 write permission (default).
    #[default]
    Off,
    /// The erratum as its text demonstrates it: only updates of the top-level entry
    /// (PML5E with 5-level, PML4E with 4-level first stage) skip the stage-2 write check.
    TopLevel,
    /// Worst case: updates at every first-stage level skip the stage-2 write check.
    AllLevels,
}

/// When first-stage A and EA are set during a walk (§4.5, UNSURE).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum AdTiming {
    /// Each level's A/EA is set as soon as that level passed its present and reserved
    /// checks, before the next level is read, so upper levels keep A even when a lower
    /// level faults; D is set on the leaf after the permission check (x86 and QEMU
    /// behaviour; default).
    #[default]
    PerLevel,
    /// Nothing is written unless the whole translation succeeds; then every level gets
    /// A/EA and the leaf D in one pass.
    AfterWalk,
}

/// Second-stage accessed/dirty for the accesses a nested walk makes to first-stage tables
/// (§5.5, UNSURE).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum NestedSsAd {
    /// With SSADE=1, reading a first-stage table sets second-stage A on the entries used,
    /// and a first-stage A/D update sets second-stage D on the table page, as for any
    /// write (EPT treats guest page-walk accesses the same way; default).
    #[default]
    Full,
    /// Only the final data access sets second-stage A/D.
    FinalAccessOnly,
}

/// Fault reason for a second-stage permission failure on the final access (§5.4, UNSURE).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SsPermissionFault {
    /// SGN.6 (0x85) for a denied write or atomic, SGN.7 (0x86) for a denied read; a
    /// not-present entry (R=W=0) met during the walk is SSS.2 (0x79) (default).
    #[default]
    General,
    /// Every second-stage denial, present or not, is SSS.2 (0x79).
    SecondStage,
}

/// A/D updates the page walk needs while it is not snooped (PWSNP=0), §4.5 and §5.5
/// (trigger UNSURE).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum NonSnoopedAd {
    /// The update faults: SFS.9 (0x90) for first stage, SSS.5 (0x7C) for second stage
    /// (default; Linux pre-sets A/D in tables it builds for such hardware).
    #[default]
    Fault,
    /// The update is performed as if snooped.
    Perform,
}

/// Behaviour switches for every UNSURE point of the hardware reference that changes what a
/// translation observes. The defaults are documented on each type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ModelSwitches {
    /// SPR17 erratum (§6.5); off by default, [`Spr17::TopLevel`] in the Sapphire Rapids preset.
    pub erratum_spr17: Spr17,
    /// Timing of first-stage A/D updates (§4.5).
    pub ad_timing: AdTiming,
    /// Second-stage A/D for first-stage table accesses under nesting (§5.5).
    pub nested_ss_ad: NestedSsAd,
    /// Reason code of a second-stage permission failure on the final access (§5.4).
    pub ss_permission_fault: SsPermissionFault,
    /// A/D updates on a non-snooped walk (§4.5, §5.5).
    pub non_snooped_ad: NonSnoopedAd,
    /// Collapse a fault whose source id already has a pending record (§7.2, "may
    /// collapse"); off by default so every fault is visible, on in the QEMU presets.
    pub collapse_faults_by_sid: bool,
    /// Treat capability-dependent PASID/context-entry fields as reserved when the feature
    /// is not advertised (§3.5; SSADE without SLADS, SRE without SRS, EAFE without EAFS,
    /// PGSNP without SC, PWSNP without SMPWCS, MTS fields without MTS, ERE without ERS,
    /// DTE without DT, PASIDE without PASID, PRE without PRS, RID_PASID without RPS,
    /// RID_PRIV without RPRIVS). On by default.
    pub capability_reserved_fields: bool,
}

/// The documented defaults ([`ModelSwitches::architectural`]), so a configuration built
/// field by field enforces the same reserved fields as every preset.
impl Default for ModelSwitches {
    fn default() -> Self {
        Self::architectural()
    }
}

impl ModelSwitches {
    /// The defaults: each switch's documented default, capability-dependent reserved fields
    /// enforced.
    pub const fn architectural() -> Self {
        Self {
            erratum_spr17: Spr17::Off,
            ad_timing: AdTiming::PerLevel,
            nested_ss_ad: NestedSsAd::Full,
            ss_permission_fault: SsPermissionFault::General,
            non_snooped_ad: NonSnoopedAd::Fault,
            collapse_faults_by_sid: false,
            capability_reserved_fields: true,
        }
    }
}

/// Everything a unit is built from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitConfig {
    /// Value of VER_REG (major in bits 7:4, minor in 3:0).
    pub version: u32,
    /// Value of CAP_REG.
    pub cap: Cap,
    /// Value of ECAP_REG.
    pub ecap: Ecap,
    /// Host address width in bits: table pointers and page frames at or above it are
    /// reserved. The CPU's physical-address width; not part of CAP.
    pub host_address_width: u8,
    /// Behaviour switches for UNSURE points.
    pub switches: ModelSwitches,
    /// Cache sizes and policy.
    pub caches: CacheConfig,
}

/// An impossible configuration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// CAP.ND is the reserved value 7.
    #[error("CAP.ND = 7 is reserved")]
    ReservedNd,
    /// The host address width is outside 32..=52.
    #[error("host address width {0} is outside 32..=52 bits")]
    HostAddressWidth(u8),
    /// CAP.MGAW is below 29 (30-bit guest addresses are the minimum).
    #[error("CAP.MGAW = {0} is below the minimum of 29")]
    Mgaw(u8),
    /// A cache geometry is impossible.
    #[error("cache configuration: {0}")]
    Cache(String),
    /// The fault-recording registers overlap the fixed registers.
    #[error("fault-recording registers at {0:#x} overlap the fixed register block")]
    FroOverlap(u64),
    /// The IOTLB registers overlap the fixed registers.
    #[error("IOTLB registers at {0:#x} overlap the fixed register block")]
    IroOverlap(u64),
    /// Scalable mode needs queued invalidation (256-bit descriptors for PASID types).
    #[error("ECAP.SMTS without ECAP.QI")]
    ScalableWithoutQi,
}

/// End of the fixed register block that FRCD and IOTLB registers must not overlap.
pub(crate) const FIXED_REGS_END: u64 = 0xF0;

impl UnitConfig {
    /// Check the configuration can be built into a unit.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.cap.nd() == 7 {
            return Err(ConfigError::ReservedNd);
        }
        if !(32..=52).contains(&self.host_address_width) {
            return Err(ConfigError::HostAddressWidth(self.host_address_width));
        }
        if self.cap.mgaw() < 29 {
            return Err(ConfigError::Mgaw(self.cap.mgaw()));
        }
        let fro = vtd_spec::regs::frcd_offset(self.cap.fro(), 0);
        if fro < FIXED_REGS_END {
            return Err(ConfigError::FroOverlap(fro));
        }
        let iro = vtd_spec::regs::iva_reg_offset(self.ecap.iro());
        if iro < FIXED_REGS_END {
            return Err(ConfigError::IroOverlap(iro));
        }
        if self.ecap.smts() && !self.ecap.qi() {
            return Err(ConfigError::ScalableWithoutQi);
        }
        self.caches.validate().map_err(ConfigError::Cache)
    }

    /// Size of the MMIO register window in bytes: enough for every register, rounded up
    /// to 4 KiB.
    pub fn mmio_size(&self) -> u64 {
        let frcd_end = vtd_spec::regs::frcd_offset(self.cap.fro(), self.cap.fault_records());
        let iotlb_end = vtd_spec::regs::iotlb_reg_offset(self.ecap.iro()) + 8;
        frcd_end
            .max(iotlb_end)
            .max(FIXED_REGS_END)
            .next_multiple_of(4096)
    }

    /// A Sapphire Rapids-like unit: scalable mode with nesting, 5-level first stage, 1 GiB
    /// pages in both stages, SRS/EAFS, second-stage A/D, snoop control, page-walk
    /// coherency, 20-bit PASIDs, 16-bit domain ids, 8 fault records — and the SPR17
    /// erratum switched on ([`Spr17::TopLevel`]).
    ///
    /// The register values are built from those features, not copied from a real part.
    pub fn sapphire_rapids() -> Self {
        let cap = Cap::new()
            .with_nd(6)
            .with_sagaw(0b0_1100) // 48- and 57-bit second stage
            .with_mgaw(56)
            .with_zlr(true)
            .with_fro(0x22)
            .with_sllps(0b11)
            .with_psi(true)
            .with_nfr(7)
            .with_mamv(18)
            .with_dwd(true)
            .with_drd(true)
            .with_fs1gp(true)
            .with_pi(true)
            .with_fs5lp(true)
            .with_esrtps(true);
        let ecap = Ecap::new()
            .with_qi(true)
            .with_dt(true)
            .with_ir(true)
            .with_eim(true)
            .with_pt(true)
            .with_sc(true)
            .with_iro(0x1F)
            .with_mhmv(0xF)
            .with_nest(true)
            .with_prs(true)
            .with_srs(true)
            .with_eafs(true)
            .with_pss(19)
            .with_pasid(true)
            .with_dit(true)
            .with_pds(true)
            .with_smts(true)
            .with_slads(true)
            .with_slts(true)
            .with_flts(true)
            .with_smpwcs(true);
        let switches = ModelSwitches {
            erratum_spr17: Spr17::TopLevel,
            ..ModelSwitches::architectural()
        };
        Self {
            version: vtd_spec::regs::version(6, 0),
            cap,
            ecap,
            host_address_width: 52,
            switches,
            caches: CacheConfig::default(),
        }
    }

    /// A scalable-mode unit without nesting (NEST clear), otherwise like
    /// [`UnitConfig::sapphire_rapids`] with the erratum off.
    pub fn without_nesting() -> Self {
        let mut config = Self::sapphire_rapids();
        config.ecap = config.ecap.with_nest(false);
        config.switches.erratum_spr17 = Spr17::Off;
        config
    }

    /// QEMU's `intel-iommu,x-scalable-mode=on` (§1.11): CAP `0x00D2008C222F0606`,
    /// ECAP `0x480080000F42` (second stage and pass-through only).
    pub fn qemu_scalable() -> Self {
        Self {
            version: vtd_spec::regs::version(1, 0),
            cap: Cap::from_bits(0x00D2_008C_222F_0606),
            ecap: Ecap::from_bits(0x4800_8000_0F42),
            host_address_width: 48,
            switches: ModelSwitches {
                collapse_faults_by_sid: true,
                ..ModelSwitches::architectural()
            },
            caches: CacheConfig::default(),
        }
    }

    /// QEMU 10.0's `intel-iommu,intremap=on,x-scalable-mode=on`, as its hw_info reports
    /// it: [`UnitConfig::qemu_scalable`] plus interrupt remapping (ECAP.IR) and
    /// MHMV = 15, ECAP `0x480080F00F4A`. The conformance suite's real guests run this
    /// unit; VFIO binds a device only behind interrupt remapping.
    pub fn qemu_scalable_intremap() -> Self {
        Self {
            ecap: Ecap::from_bits(0x4800_80F0_0F4A),
            ..Self::qemu_scalable()
        }
    }

    /// QEMU's `intel-iommu,x-scalable-mode=on,x-flts=on` (§1.11): CAP with FS1GP,
    /// ECAP `0x880000000F42` (first stage and pass-through only).
    pub fn qemu_first_stage() -> Self {
        Self {
            cap: Cap::from_bits(0x00D2_008C_222F_0606).with_fs1gp(true),
            ecap: Ecap::from_bits(0x8800_0000_0F42),
            ..Self::qemu_scalable()
        }
    }

    /// QEMU's default legacy-mode unit (§1.11): CAP `0x00D2008C222F0606`, ECAP `0xF42`.
    pub fn qemu_legacy() -> Self {
        Self {
            ecap: Ecap::from_bits(0xF42),
            ..Self::qemu_scalable()
        }
    }
}

impl Default for UnitConfig {
    fn default() -> Self {
        let mut config = Self::sapphire_rapids();
        config.switches.erratum_spr17 = Spr17::Off;
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_switches_are_each_documented_default_with_reserved_fields_enforced() {
        let expected = ModelSwitches {
            erratum_spr17: Spr17::default(),
            ad_timing: AdTiming::default(),
            nested_ss_ad: NestedSsAd::default(),
            ss_permission_fault: SsPermissionFault::default(),
            non_snooped_ad: NonSnoopedAd::default(),
            collapse_faults_by_sid: false,
            capability_reserved_fields: true,
        };
        assert_eq!(ModelSwitches::default(), expected);
        assert_eq!(
            UnitConfig {
                switches: ModelSwitches::default(),
                ..UnitConfig::default()
            },
            UnitConfig::default(),
            "a configuration built field by field matches the default unit"
        );
    }

    #[test]
    fn presets_validate() {
        for config in [
            UnitConfig::sapphire_rapids(),
            UnitConfig::without_nesting(),
            UnitConfig::qemu_scalable(),
            UnitConfig::qemu_first_stage(),
            UnitConfig::qemu_legacy(),
            UnitConfig::default(),
        ] {
            assert_eq!(config.validate(), Ok(()));
        }
    }

    #[test]
    fn sapphire_rapids_preset_turns_the_erratum_on() {
        assert_eq!(
            UnitConfig::sapphire_rapids().switches.erratum_spr17,
            Spr17::TopLevel
        );
        assert_eq!(UnitConfig::default().switches.erratum_spr17, Spr17::Off);
    }

    #[test]
    fn qemu_window_covers_the_single_fault_record() {
        assert_eq!(UnitConfig::qemu_scalable().mmio_size(), 0x1000);
        assert!(UnitConfig::qemu_scalable().mmio_size() >= 0x230);
    }

    #[test]
    fn reserved_nd_is_rejected() {
        let mut config = UnitConfig::default();
        config.cap = config.cap.with_nd(7);
        assert_eq!(config.validate(), Err(ConfigError::ReservedNd));
    }
}
