//! The VT-d the guest sees, derived from the host unit's CAP/ECAP (hw_info).
//!
//! The guest gets a scalable-mode unit that translates with the first stage only: every
//! guest domain is then a stage-1 page table the host can run nested over its stage 2.
//! Features the guest may put in its PASID entries (5-level paging, 1 GiB pages, SRE,
//! EAFE) are offered only where the host can honour them in a nested HWPT. Caching mode
//! is on, so the guest reports every new PASID entry and every stage-1 change with an
//! invalidation the vIOMMU can forward.

use vtd_iommufd::VtdHwInfo;
use vtd_model::UnitConfig;
use vtd_model::cache::CacheConfig;
use vtd_model::config::ModelSwitches;
use vtd_spec::regs::{Cap, Ecap};

/// Why the host cannot back a nesting vIOMMU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HostUnsupported {
    /// The host IOMMU is not Intel VT-d.
    #[error("the host IOMMU is not Intel VT-d")]
    NotVtd,
    /// The host unit cannot run nested translation (scalable mode with ECAP.NEST).
    #[error(
        "the host VT-d unit does not support nested translation (ECAP.NEST or scalable mode missing)"
    )]
    NoNesting,
}

/// Guest-visible address width: 48-bit guest-physical and IOVA spaces, as QEMU's default.
const GUEST_AW: u8 = 48;

/// The guest-facing unit for a host whose hw_info is `host`.
pub fn guest_unit_config(host: &VtdHwInfo) -> Result<UnitConfig, HostUnsupported> {
    if !host.nesting() {
        return Err(HostUnsupported::NoNesting);
    }
    let (hcap, hecap) = (host.cap, host.ecap);
    let cap = Cap::new()
        .with_nd(hcap.nd().min(6))
        .with_cm(true)
        // The first stage does not use SAGAW; advertise 48-bit so legacy-minded guests
        // find a width they know.
        .with_sagaw(0b0_0100)
        .with_mgaw(GUEST_AW - 1)
        .with_zlr(hcap.zlr())
        .with_fro(0x22)
        .with_nfr(7)
        .with_psi(true)
        .with_mamv(hcap.mamv().min(18))
        .with_fs1gp(hcap.fs1gp())
        .with_fs5lp(hcap.fs5lp());
    let ecap = Ecap::new()
        .with_qi(true)
        .with_pt(true)
        .with_iro(0x1F)
        .with_mhmv(0xF)
        .with_srs(hecap.srs())
        .with_eafs(hecap.eafs())
        .with_pss(hecap.pss())
        .with_pasid(hecap.pasid())
        .with_smts(true)
        .with_flts(true)
        .with_smpwcs(true);
    Ok(UnitConfig {
        version: vtd_spec::regs::version(6, 0),
        cap,
        ecap,
        host_address_width: GUEST_AW,
        switches: ModelSwitches::architectural(),
        caches: CacheConfig::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(cap: Cap, ecap: Ecap) -> VtdHwInfo {
        VtdHwInfo {
            errata_772415_spr17: true,
            flags: 1,
            cap,
            ecap,
        }
    }

    #[test]
    fn guest_unit_is_first_stage_only_with_caching_mode() {
        let spr = UnitConfig::sapphire_rapids();
        let config = guest_unit_config(&host(spr.cap, spr.ecap)).unwrap();
        assert!(config.ecap.flts() && !config.ecap.slts() && !config.ecap.nest());
        assert!(config.cap.cm());
        assert!(config.validate().is_ok());
    }

    #[test]
    fn five_level_paging_is_offered_only_when_the_host_has_it() {
        let spr = UnitConfig::sapphire_rapids();
        let config = guest_unit_config(&host(spr.cap.with_fs5lp(false), spr.ecap)).unwrap();
        assert!(!config.cap.fs5lp());
    }

    #[test]
    fn host_without_nesting_cannot_back_the_viommu() {
        let plain = UnitConfig::without_nesting();
        assert_eq!(
            guest_unit_config(&host(plain.cap, plain.ecap)),
            Err(HostUnsupported::NoNesting)
        );
    }
}
