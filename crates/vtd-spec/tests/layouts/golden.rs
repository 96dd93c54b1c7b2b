//! Golden values from §1.11 (what QEMU exposes) and the register map of §1.1.

use vtd_spec::regs::{self, Cap, Ecap, offset};

/// QEMU CAP with aw-bits=48, dma-drain=on, no caching-mode (§1.11).
const QEMU_CAP: u64 = 0x00D2_008C_222F_0606;
/// Newer QEMU: QEMU_CAP | ESRTPS (bit 63).
const QEMU_CAP_ESRTPS: u64 = 0x80D2_008C_222F_0606;
/// caching-mode=on: QEMU_CAP | CM (bit 7).
const QEMU_CAP_CM: u64 = 0x00D2_008C_222F_0686;
/// x-flts=on with fs1gp=on: QEMU_CAP | FS1GP (bit 56).
const QEMU_CAP_FS1GP: u64 = 0x01D2_008C_222F_0606;

/// QEMU ECAP baseline: QI + PT + IRO=0xF (§1.11).
const QEMU_ECAP: u64 = 0xF42;
/// x-scalable-mode=on: baseline + SMTS, SRS, SLTS.
const QEMU_ECAP_SM: u64 = 0x4800_8000_0F42;
/// x-scalable-mode=on,x-flts=on: baseline + SMTS, FLTS.
const QEMU_ECAP_FLTS: u64 = 0x8800_0000_0F42;

/// Names of the one-bit CAP fields that are set, in bit order.
fn cap_flags_set(cap: Cap) -> Vec<&'static str> {
    [
        ("AFL", cap.afl()),
        ("RWBF", cap.rwbf()),
        ("PLMR", cap.plmr()),
        ("PHMR", cap.phmr()),
        ("CM", cap.cm()),
        ("ZLR", cap.zlr()),
        ("ISOCH", cap.isoch()),
        ("PSI", cap.psi()),
        ("DWD", cap.dwd()),
        ("DRD", cap.drd()),
        ("FS1GP", cap.fs1gp()),
        ("PI", cap.pi()),
        ("FS5LP", cap.fs5lp()),
        ("ECMDS", cap.ecmds()),
        ("ESIRTPS", cap.esirtps()),
        ("ESRTPS", cap.esrtps()),
    ]
    .into_iter()
    .filter(|&(_, set)| set)
    .map(|(name, _)| name)
    .collect()
}

/// The multi-bit CAP fields: (ND, SAGAW, MGAW, FRO, SLLPS, NFR, MAMV).
fn cap_numeric_fields(cap: Cap) -> (u8, u8, u8, u16, u8, u8, u8) {
    (
        cap.nd(),
        cap.sagaw(),
        cap.mgaw(),
        cap.fro(),
        cap.sllps(),
        cap.nfr(),
        cap.mamv(),
    )
}

/// Names of the one-bit ECAP fields that are set, in bit order.
fn ecap_flags_set(ecap: Ecap) -> Vec<&'static str> {
    [
        ("C", ecap.c()),
        ("QI", ecap.qi()),
        ("DT", ecap.dt()),
        ("IR", ecap.ir()),
        ("EIM", ecap.eim()),
        ("PT", ecap.pt()),
        ("SC", ecap.sc()),
        ("ECS", ecap.ecs()),
        ("MTS", ecap.mts()),
        ("NEST", ecap.nest()),
        ("DEPRECATED27", ecap.deprecated27()),
        ("DEPRECATED28", ecap.deprecated28()),
        ("PRS", ecap.prs()),
        ("ERS", ecap.ers()),
        ("SRS", ecap.srs()),
        ("NWFS", ecap.nwfs()),
        ("EAFS", ecap.eafs()),
        ("PASID", ecap.pasid()),
        ("DIT", ecap.dit()),
        ("PDS", ecap.pds()),
        ("SMTS", ecap.smts()),
        ("VCS", ecap.vcs()),
        ("SLADS", ecap.slads()),
        ("SLTS", ecap.slts()),
        ("FLTS", ecap.flts()),
        ("SMPWCS", ecap.smpwcs()),
        ("RPS", ecap.rps()),
        ("TDXIO", ecap.tdxio()),
        ("PMS", ecap.pms()),
        ("ADMS", ecap.adms()),
        ("RPRIVS", ecap.rprivs()),
        ("HPTS", ecap.hpts()),
        ("PTRS", ecap.ptrs()),
        ("PBDS", ecap.pbds()),
    ]
    .into_iter()
    .filter(|&(_, set)| set)
    .map(|(name, _)| name)
    .collect()
}

/// The multi-bit ECAP fields: (IRO, MHMV, PSS).
fn ecap_numeric_fields(ecap: Ecap) -> (u16, u8, u8) {
    (ecap.iro(), ecap.mhmv(), ecap.pss())
}

// ---------------------------------------------------------------------------------------
// CAP

#[test]
fn cap_qemu_default_decodes_to_documented_fields() {
    let cap = Cap::from_bits(QEMU_CAP);

    // SAGAW 0b00110: 39-bit (bit 1) and 48-bit (bit 2); SLLPS 0b0011: 2 MiB and 1 GiB.
    assert_eq!(
        cap_numeric_fields(cap),
        (6, 0b00110, 47, 0x22, 0b0011, 0, 18)
    );
}

#[test]
fn cap_qemu_default_sets_only_psi_dwd_and_drd_flags() {
    let cap = Cap::from_bits(QEMU_CAP);

    assert_eq!(cap_flags_set(cap), ["PSI", "DWD", "DRD"]);
}

#[test]
fn cap_qemu_default_supports_39_and_48_bit_but_not_57_bit_aw() {
    let cap = Cap::from_bits(QEMU_CAP);

    assert!(cap.supports_aw(1));
    assert!(cap.supports_aw(2));
    assert!(!cap.supports_aw(3));
}

#[test]
fn cap_qemu_default_helpers_report_48_bit_mgaw_one_fault_record_and_both_ss_large_pages() {
    let cap = Cap::from_bits(QEMU_CAP);

    assert_eq!(cap.mgaw_bits(), 48);
    assert_eq!(cap.fault_records(), 1);
    assert!(cap.ss_2m());
    assert!(cap.ss_1g());
    assert_eq!(cap.domain_id_bits(), Some(16));
}

#[test]
fn cap_qemu_with_esrtps_adds_only_esrtps() {
    let cap = Cap::from_bits(QEMU_CAP_ESRTPS);

    assert_eq!(cap_flags_set(cap), ["PSI", "DWD", "DRD", "ESRTPS"]);
    assert_eq!(
        cap_numeric_fields(cap),
        cap_numeric_fields(Cap::from_bits(QEMU_CAP))
    );
}

#[test]
fn cap_qemu_with_caching_mode_adds_only_cm() {
    let cap = Cap::from_bits(QEMU_CAP_CM);

    assert_eq!(cap_flags_set(cap), ["CM", "PSI", "DWD", "DRD"]);
    assert_eq!(
        cap_numeric_fields(cap),
        cap_numeric_fields(Cap::from_bits(QEMU_CAP))
    );
}

#[test]
fn cap_qemu_with_fs1gp_adds_only_fs1gp() {
    let cap = Cap::from_bits(QEMU_CAP_FS1GP);

    assert_eq!(cap_flags_set(cap), ["PSI", "DWD", "DRD", "FS1GP"]);
    assert_eq!(
        cap_numeric_fields(cap),
        cap_numeric_fields(Cap::from_bits(QEMU_CAP))
    );
}

#[test]
fn cap_qemu_default_re_encodes_to_the_same_value() {
    let cap = Cap::new()
        .with_nd(6)
        .with_sagaw(0b00110)
        .with_mgaw(47)
        .with_fro(0x22)
        .with_sllps(0b0011)
        .with_psi(true)
        .with_nfr(0)
        .with_mamv(18)
        .with_dwd(true)
        .with_drd(true);

    assert_eq!(cap.into_bits(), QEMU_CAP);
}

// ---------------------------------------------------------------------------------------
// ECAP

#[test]
fn ecap_qemu_baseline_has_only_qi_pt_and_iro_0xf() {
    let ecap = Ecap::from_bits(QEMU_ECAP);

    assert_eq!(ecap_flags_set(ecap), ["QI", "PT"]);
    assert_eq!(ecap_numeric_fields(ecap), (0xF, 0, 0));
}

#[test]
fn ecap_qemu_scalable_mode_adds_srs_smts_and_slts() {
    let ecap = Ecap::from_bits(QEMU_ECAP_SM);

    assert_eq!(ecap_flags_set(ecap), ["QI", "PT", "SRS", "SMTS", "SLTS"]);
    assert_eq!(ecap_numeric_fields(ecap), (0xF, 0, 0));
}

#[test]
fn ecap_qemu_flts_adds_smts_and_flts_without_slts_or_srs() {
    let ecap = Ecap::from_bits(QEMU_ECAP_FLTS);

    assert_eq!(ecap_flags_set(ecap), ["QI", "PT", "SMTS", "FLTS"]);
    assert_eq!(ecap_numeric_fields(ecap), (0xF, 0, 0));
}

#[test]
fn ecap_qemu_configurations_never_support_nesting() {
    assert!(!Ecap::from_bits(QEMU_ECAP).nested_supported());
    assert!(!Ecap::from_bits(QEMU_ECAP_SM).nested_supported());
    assert!(!Ecap::from_bits(QEMU_ECAP_FLTS).nested_supported());
}

// ---------------------------------------------------------------------------------------
// Register offsets (§1.1, §1.7, §1.9)

#[test]
fn iotlb_registers_sit_at_iro_times_16() {
    assert_eq!(regs::iva_reg_offset(0xF), 0xF0);
    assert_eq!(regs::iotlb_reg_offset(0xF), 0xF8);
}

#[test]
fn qemu_ecap_iro_places_iotlb_reg_at_0xf8() {
    let iro = Ecap::from_bits(QEMU_ECAP).iro();

    assert_eq!(regs::iotlb_reg_offset(iro), 0xF8);
}

#[test]
fn fault_records_sit_at_fro_times_16_plus_16_per_index() {
    assert_eq!(regs::frcd_offset(0x22, 0), 0x220);
    assert_eq!(regs::frcd_offset(0x22, 1), 0x230);
    assert_eq!(regs::frcd_offset(0x22, 3), 0x250);
}

#[test]
fn qemu_cap_fro_places_its_single_fault_record_at_0x220() {
    let cap = Cap::from_bits(QEMU_CAP);

    assert_eq!(regs::frcd_offset(cap.fro(), 0), 0x220);
}

#[test]
fn fixed_register_offsets_match_reference_map() {
    assert_eq!(offset::VER, 0x000);
    assert_eq!(offset::CAP, 0x008);
    assert_eq!(offset::ECAP, 0x010);
    assert_eq!(offset::GCMD, 0x018);
    assert_eq!(offset::GSTS, 0x01C);
    assert_eq!(offset::RTADDR, 0x020);
    assert_eq!(offset::CCMD, 0x028);
    assert_eq!(offset::FSTS, 0x034);
    assert_eq!(offset::FECTL, 0x038);
    assert_eq!(offset::FEDATA, 0x03C);
    assert_eq!(offset::FEADDR, 0x040);
    assert_eq!(offset::FEUADDR, 0x044);
    assert_eq!(offset::AFLOG, 0x058);
    assert_eq!(offset::PMEN, 0x064);
    assert_eq!(offset::PLMBASE, 0x068);
    assert_eq!(offset::PLMLIMIT, 0x06C);
    assert_eq!(offset::PHMBASE, 0x070);
    assert_eq!(offset::PHMLIMIT, 0x078);
    assert_eq!(offset::IQH, 0x080);
    assert_eq!(offset::IQT, 0x088);
    assert_eq!(offset::IQA, 0x090);
    assert_eq!(offset::ICS, 0x09C);
    assert_eq!(offset::IECTL, 0x0A0);
    assert_eq!(offset::IEDATA, 0x0A4);
    assert_eq!(offset::IEADDR, 0x0A8);
    assert_eq!(offset::IEUADDR, 0x0AC);
    assert_eq!(offset::IQERCD, 0x0B0);
    assert_eq!(offset::IRTA, 0x0B8);
    assert_eq!(offset::PQH, 0x0C0);
    assert_eq!(offset::PQT, 0x0C8);
    assert_eq!(offset::PQA, 0x0D0);
    assert_eq!(offset::PRS, 0x0DC);
    assert_eq!(offset::PECTL, 0x0E0);
    assert_eq!(offset::PEDATA, 0x0E4);
    assert_eq!(offset::PEADDR, 0x0E8);
    assert_eq!(offset::PEUADDR, 0x0EC);
}

#[test]
fn version_packs_major_in_bits_7_4_and_minor_in_bits_3_0() {
    assert_eq!(regs::version(1, 0), 0x10);
    assert_eq!(regs::version(6, 3), 0x63);
}
