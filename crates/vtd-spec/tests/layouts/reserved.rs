//! Reserved-bit masks (§2.2–§2.4, §3.2, §3.3, §8.3): each mask equals the reference's
//! reserved ranges, and the named fields plus the mask partition the covered width.

use vtd_spec::context::{LegacyContextEntry, LegacyTt, SmContextEntry, SmContextEntryLo};
use vtd_spec::inv::{
    ContextCacheInvDesc, DevTlbInvDesc, IecInvDesc, InvWaitDesc, IotlbInvDesc,
    PasidCacheGranularity, PasidCacheInvDesc, PasidDevTlbInvDesc, PasidIotlbGranularity,
    PasidIotlbInvDesc,
};
use vtd_spec::pasid::{Fspm, PasidDirEntry, PasidEntry, PasidEntryHi, PasidEntryLo, Pgtt};
use vtd_spec::regs::{CcmdGranularity, IotlbGranularity};
use vtd_spec::root::{LegacyRootEntry, SmRootEntry};

const ADDR52_MAX: u64 = (1 << 52) - 1;

// ---------------------------------------------------------------------------------------
// Root entries

#[test]
fn sm_root_entry_reserved_mask_is_bits_11_1_and_75_65() {
    assert_eq!(SmRootEntry::RESERVED, 0x7FF << 65 | 0xFFE);
}

#[test]
fn sm_root_entry_fields_and_reserved_mask_partition_128_bits() {
    let bits = SmRootEntry::new()
        .with_lp(true)
        .with_lctp(ADDR52_MAX)
        .with_up(true)
        .with_uctp(ADDR52_MAX)
        .into_bits();

    assert_eq!(bits & SmRootEntry::RESERVED, 0);
    assert_eq!(bits | SmRootEntry::RESERVED, u128::MAX);
}

#[test]
fn legacy_root_entry_reserved_mask_is_bits_11_1_and_127_64() {
    assert_eq!(
        LegacyRootEntry::RESERVED,
        0xFFFF_FFFF_FFFF_FFFF << 64 | 0xFFE
    );
}

#[test]
fn legacy_root_entry_fields_and_reserved_mask_partition_128_bits() {
    let bits = LegacyRootEntry::new()
        .with_p(true)
        .with_ctp(ADDR52_MAX)
        .into_bits();

    assert_eq!(bits & LegacyRootEntry::RESERVED, 0);
    assert_eq!(bits | LegacyRootEntry::RESERVED, u128::MAX);
}

// ---------------------------------------------------------------------------------------
// Context entries

#[test]
fn legacy_context_entry_reserved_mask_is_bits_11_4_71_and_127_88() {
    assert_eq!(
        LegacyContextEntry::RESERVED,
        0xFF_FFFF_FFFF << 88 | 1 << 71 | 0xFF0
    );
}

#[test]
fn legacy_context_entry_fields_and_reserved_mask_partition_128_bits() {
    let bits = LegacyContextEntry::new()
        .with_p(true)
        .with_fpd(true)
        .with_tt(LegacyTt::Reserved)
        .with_slptptr(ADDR52_MAX)
        .with_aw(0b111)
        .with_avail(0b1111)
        .with_did(0xFFFF)
        .into_bits();

    assert_eq!(bits & LegacyContextEntry::RESERVED, 0);
    assert_eq!(bits | LegacyContextEntry::RESERVED, u128::MAX);
}

#[test]
fn sm_context_entry_reserved_lo_mask_is_bits_8_5_and_127_85() {
    assert_eq!(SmContextEntry::RESERVED_LO, 0x7FF_FFFF_FFFF << 85 | 0x1E0);
}

#[test]
fn sm_context_entry_fields_and_reserved_lo_mask_partition_low_128_bits() {
    let bits = SmContextEntryLo::new()
        .with_p(true)
        .with_fpd(true)
        .with_dte(true)
        .with_paside(true)
        .with_pre(true)
        .with_pdts(0b111)
        .with_pasiddirptr(ADDR52_MAX)
        .with_rid_pasid(0xF_FFFF)
        .with_rid_priv(true)
        .into_bits();

    assert_eq!(bits & SmContextEntry::RESERVED_LO, 0);
    assert_eq!(bits | SmContextEntry::RESERVED_LO, u128::MAX);
}

// ---------------------------------------------------------------------------------------
// PASID directory and table entries

#[test]
fn pasid_dir_entry_reserved_mask_is_bits_11_2() {
    assert_eq!(PasidDirEntry::RESERVED, 0xFFC);
}

#[test]
fn pasid_dir_entry_fields_and_reserved_mask_partition_64_bits() {
    let bits = PasidDirEntry::new()
        .with_p(true)
        .with_fpd(true)
        .with_smptblptr(ADDR52_MAX)
        .into_bits();

    assert_eq!(bits & PasidDirEntry::RESERVED, 0);
    assert_eq!(bits | PasidDirEntry::RESERVED, u64::MAX);
}

#[test]
fn pasid_entry_reserved_lo_mask_is_bits_11_10_and_86_80() {
    assert_eq!(PasidEntry::RESERVED_LO, 0x7F << 80 | 0xC00);
}

#[test]
fn pasid_entry_reserved_hi_mask_is_bits_139_136_and_255_192() {
    assert_eq!(
        PasidEntry::RESERVED_HI,
        0xFFFF_FFFF_FFFF_FFFF << (192 - 128) | 0xF << (136 - 128)
    );
}

#[test]
fn pasid_entry_lo_fields_and_reserved_lo_mask_partition_bits_127_0() {
    let bits = PasidEntryLo::new()
        .with_p(true)
        .with_fpd(true)
        .with_aw(0b111)
        .with_ssee(true)
        .with_pgtt(Pgtt::Reserved7)
        .with_ssade(true)
        .with_ssptptr(ADDR52_MAX)
        .with_did(0xFFFF)
        .with_pwsnp(true)
        .with_pgsnp(true)
        .with_cd(true)
        .with_emte(true)
        .with_emt(0b111)
        .with_pwt(true)
        .with_pcd(true)
        .with_pat(u32::MAX)
        .into_bits();

    assert_eq!(bits & PasidEntry::RESERVED_LO, 0);
    assert_eq!(bits | PasidEntry::RESERVED_LO, u128::MAX);
}

#[test]
fn pasid_entry_hi_fields_and_reserved_hi_mask_partition_bits_255_128() {
    let bits = PasidEntryHi::new()
        .with_sre(true)
        .with_ere(true)
        .with_fspm(Fspm::Reserved3)
        .with_wpe(true)
        .with_nxe(true)
        .with_smep(true)
        .with_eafe(true)
        .with_fsptptr(ADDR52_MAX)
        .into_bits();

    assert_eq!(bits & PasidEntry::RESERVED_HI, 0);
    assert_eq!(bits | PasidEntry::RESERVED_HI, u128::MAX);
}

// ---------------------------------------------------------------------------------------
// Invalidation descriptors (type bits 3:0 and 11:9 are named fields, not reserved)

#[test]
fn context_cache_desc_reserved_mask_is_bits_8_6_15_12_and_127_50() {
    assert_eq!(
        ContextCacheInvDesc::RESERVED,
        u128::MAX << 50 | 0xF000 | 0x1C0
    );
}

#[test]
fn context_cache_desc_fields_and_reserved_mask_partition_128_bits() {
    let bits = ContextCacheInvDesc::new()
        .with_type_lo(0xF)
        .with_g(CcmdGranularity::Device)
        .with_type_hi(0b111)
        .with_did(0xFFFF)
        .with_sid(0xFFFF)
        .with_fm(0b11)
        .into_bits();

    assert_eq!(bits & ContextCacheInvDesc::RESERVED, 0);
    assert_eq!(bits | ContextCacheInvDesc::RESERVED, u128::MAX);
}

#[test]
fn iotlb_desc_reserved_mask_is_bits_8_15_12_63_32_and_75_71() {
    assert_eq!(
        IotlbInvDesc::RESERVED,
        0x1F << 71 | 0xFFFF_FFFF << 32 | 0xF000 | 0x100
    );
}

#[test]
fn iotlb_desc_fields_and_reserved_mask_partition_128_bits() {
    let bits = IotlbInvDesc::new()
        .with_type_lo(0xF)
        .with_g(IotlbGranularity::Page)
        .with_dw(true)
        .with_dr(true)
        .with_type_hi(0b111)
        .with_did(0xFFFF)
        .with_am(0b11_1111)
        .with_ih(true)
        .with_addr(ADDR52_MAX)
        .into_bits();

    assert_eq!(bits & IotlbInvDesc::RESERVED, 0);
    assert_eq!(bits | IotlbInvDesc::RESERVED, u128::MAX);
}

#[test]
fn devtlb_desc_reserved_mask_is_bits_8_4_31_21_51_48_and_75_65() {
    assert_eq!(
        DevTlbInvDesc::RESERVED,
        0x7FF << 65 | 0xF << 48 | 0x7FF << 21 | 0x1F0
    );
}

#[test]
fn devtlb_desc_fields_and_reserved_mask_partition_128_bits() {
    let bits = DevTlbInvDesc::new()
        .with_type_lo(0xF)
        .with_type_hi(0b111)
        .with_pfsid_lo(0xF)
        .with_mip(0b1_1111)
        .with_sid(0xFFFF)
        .with_pfsid_hi(0xFFF)
        .with_s(true)
        .with_addr(ADDR52_MAX)
        .into_bits();

    assert_eq!(bits & DevTlbInvDesc::RESERVED, 0);
    assert_eq!(bits | DevTlbInvDesc::RESERVED, u128::MAX);
}

#[test]
fn iec_desc_reserved_mask_is_bits_8_5_26_12_and_127_48() {
    assert_eq!(IecInvDesc::RESERVED, u128::MAX << 48 | 0x7FFF << 12 | 0x1E0);
}

#[test]
fn iec_desc_fields_and_reserved_mask_partition_128_bits() {
    let bits = IecInvDesc::new()
        .with_type_lo(0xF)
        .with_g(true)
        .with_type_hi(0b111)
        .with_im(0b1_1111)
        .with_iidx(0xFFFF)
        .into_bits();

    assert_eq!(bits & IecInvDesc::RESERVED, 0);
    assert_eq!(bits | IecInvDesc::RESERVED, u128::MAX);
}

#[test]
fn wait_desc_reserved_mask_is_bits_8_31_12_and_65_64() {
    assert_eq!(InvWaitDesc::RESERVED, 0b11 << 64 | 0xF_FFFF << 12 | 0x100);
}

#[test]
fn wait_desc_fields_and_reserved_mask_partition_128_bits() {
    let bits = InvWaitDesc::new()
        .with_type_lo(0xF)
        .with_intr(true)
        .with_sw(true)
        .with_fence(true)
        .with_pd(true)
        .with_type_hi(0b111)
        .with_status_data(u32::MAX)
        .with_status_addr((1 << 62) - 1)
        .into_bits();

    assert_eq!(bits & InvWaitDesc::RESERVED, 0);
    assert_eq!(bits | InvWaitDesc::RESERVED, u128::MAX);
}

#[test]
fn pasid_iotlb_desc_reserved_mask_is_bits_8_6_15_12_63_52_and_75_71() {
    assert_eq!(
        PasidIotlbInvDesc::RESERVED,
        0x1F << 71 | 0xFFF << 52 | 0xF000 | 0x1C0
    );
}

#[test]
fn pasid_iotlb_desc_fields_and_reserved_mask_partition_128_bits() {
    let bits = PasidIotlbInvDesc::new()
        .with_type_lo(0xF)
        .with_g(PasidIotlbGranularity::Page)
        .with_type_hi(0b111)
        .with_did(0xFFFF)
        .with_pasid(0xF_FFFF)
        .with_am(0b11_1111)
        .with_ih(true)
        .with_addr(ADDR52_MAX)
        .into_bits();

    assert_eq!(bits & PasidIotlbInvDesc::RESERVED, 0);
    assert_eq!(bits | PasidIotlbInvDesc::RESERVED, u128::MAX);
}

#[test]
fn pasid_cache_desc_reserved_mask_is_bits_8_6_15_12_and_127_52() {
    assert_eq!(
        PasidCacheInvDesc::RESERVED,
        u128::MAX << 52 | 0xF000 | 0x1C0
    );
}

#[test]
fn pasid_cache_desc_fields_and_reserved_mask_partition_128_bits() {
    let bits = PasidCacheInvDesc::new()
        .with_type_lo(0xF)
        .with_g(PasidCacheGranularity::Global)
        .with_type_hi(0b111)
        .with_did(0xFFFF)
        .with_pasid(0xF_FFFF)
        .into_bits();

    assert_eq!(bits & PasidCacheInvDesc::RESERVED, 0);
    assert_eq!(bits | PasidCacheInvDesc::RESERVED, u128::MAX);
}

#[test]
fn pasid_devtlb_desc_reserved_mask_is_bits_74_65() {
    assert_eq!(PasidDevTlbInvDesc::RESERVED, 0x3FF << 65);
}

#[test]
fn pasid_devtlb_desc_fields_and_reserved_mask_partition_128_bits() {
    let bits = PasidDevTlbInvDesc::new()
        .with_type_lo(0xF)
        .with_mip(0b1_1111)
        .with_type_hi(0b111)
        .with_pfsid_lo(0xF)
        .with_sid(0xFFFF)
        .with_pasid(0xF_FFFF)
        .with_pfsid_hi(0xFFF)
        .with_g(true)
        .with_s(true)
        .with_addr(ADDR52_MAX)
        .into_bits();

    assert_eq!(bits & PasidDevTlbInvDesc::RESERVED, 0);
    assert_eq!(bits | PasidDevTlbInvDesc::RESERVED, u128::MAX);
}

// ---------------------------------------------------------------------------------------
// Reserved bits are kept, not cleared, by from_bits (the model's reserved checks rely on it)

#[test]
fn reserved_bits_survive_from_bits_into_bits() {
    let sm_root = SmRootEntry::RESERVED;
    let legacy_root = LegacyRootEntry::RESERVED;
    let legacy_ctx = LegacyContextEntry::RESERVED;
    let sm_ctx = SmContextEntry::RESERVED_LO;
    let pasid_dir = PasidDirEntry::RESERVED;
    let pasid_lo = PasidEntry::RESERVED_LO;
    let pasid_hi = PasidEntry::RESERVED_HI;

    assert_eq!(SmRootEntry::from_bits(sm_root).into_bits(), sm_root);
    assert_eq!(
        LegacyRootEntry::from_bits(legacy_root).into_bits(),
        legacy_root
    );
    assert_eq!(
        LegacyContextEntry::from_bits(legacy_ctx).into_bits(),
        legacy_ctx
    );
    assert_eq!(SmContextEntryLo::from_bits(sm_ctx).into_bits(), sm_ctx);
    assert_eq!(PasidDirEntry::from_bits(pasid_dir).into_bits(), pasid_dir);
    assert_eq!(PasidEntryLo::from_bits(pasid_lo).into_bits(), pasid_lo);
    assert_eq!(PasidEntryHi::from_bits(pasid_hi).into_bits(), pasid_hi);
}

#[test]
fn reserved_descriptor_bits_survive_from_bits_into_bits() {
    let cc = ContextCacheInvDesc::RESERVED;
    let iotlb = IotlbInvDesc::RESERVED;
    let devtlb = DevTlbInvDesc::RESERVED;
    let iec = IecInvDesc::RESERVED;
    let wait = InvWaitDesc::RESERVED;
    let pasid_iotlb = PasidIotlbInvDesc::RESERVED;
    let pasid_cache = PasidCacheInvDesc::RESERVED;
    let pasid_devtlb = PasidDevTlbInvDesc::RESERVED;

    assert_eq!(ContextCacheInvDesc::from_bits(cc).into_bits(), cc);
    assert_eq!(IotlbInvDesc::from_bits(iotlb).into_bits(), iotlb);
    assert_eq!(DevTlbInvDesc::from_bits(devtlb).into_bits(), devtlb);
    assert_eq!(IecInvDesc::from_bits(iec).into_bits(), iec);
    assert_eq!(InvWaitDesc::from_bits(wait).into_bits(), wait);
    assert_eq!(
        PasidIotlbInvDesc::from_bits(pasid_iotlb).into_bits(),
        pasid_iotlb
    );
    assert_eq!(
        PasidCacheInvDesc::from_bits(pasid_cache).into_bits(),
        pasid_cache
    );
    assert_eq!(
        PasidDevTlbInvDesc::from_bits(pasid_devtlb).into_bits(),
        pasid_devtlb
    );
}
