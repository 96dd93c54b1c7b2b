//! Register layouts (§1.1–§1.10): every field at its reference bit position, read-back and
//! raw round trips.

use vtd_spec::regs::{
    Aflog, Cap, Ccmd, CcmdGranularity, Ecap, EventControl, FaultRecord, Fsts, GlobalCommand,
    GlobalStatus, Ics, IotlbGranularity, IotlbReg, Iqa, Iqei, Iqercd, IvaReg, Pmen, QueueIndex,
    RtAddr, Ttm,
};

// ---------------------------------------------------------------------------------------
// CAP_REG (§1.2)

fn cap_sample() -> Cap {
    Cap::new()
        .with_nd(0b101)
        .with_afl(true)
        .with_rwbf(true)
        .with_plmr(true)
        .with_phmr(true)
        .with_cm(true)
        .with_sagaw(0b10011)
        .with_mgaw(0b100101)
        .with_zlr(true)
        .with_isoch(true)
        .with_fro(0x2A5)
        .with_sllps(0b1001)
        .with_psi(true)
        .with_nfr(0xA5)
        .with_mamv(0b110001)
        .with_dwd(true)
        .with_drd(true)
        .with_fs1gp(true)
        .with_pi(true)
        .with_fs5lp(true)
        .with_ecmds(true)
        .with_esirtps(true)
        .with_esrtps(true)
}

#[test]
fn cap_each_field_encodes_at_reference_bits() {
    assert_eq!(Cap::new().with_nd(0b101).into_bits(), 0b101);
    assert_eq!(Cap::new().with_afl(true).into_bits(), 1 << 3);
    assert_eq!(Cap::new().with_rwbf(true).into_bits(), 1 << 4);
    assert_eq!(Cap::new().with_plmr(true).into_bits(), 1 << 5);
    assert_eq!(Cap::new().with_phmr(true).into_bits(), 1 << 6);
    assert_eq!(Cap::new().with_cm(true).into_bits(), 1 << 7);
    assert_eq!(Cap::new().with_sagaw(0b10011).into_bits(), 0b10011 << 8);
    assert_eq!(Cap::new().with_mgaw(0b100101).into_bits(), 0b100101 << 16);
    assert_eq!(Cap::new().with_zlr(true).into_bits(), 1 << 22);
    assert_eq!(Cap::new().with_isoch(true).into_bits(), 1 << 23);
    assert_eq!(Cap::new().with_fro(0x2A5).into_bits(), 0x2A5 << 24);
    assert_eq!(Cap::new().with_sllps(0b1001).into_bits(), 0b1001 << 34);
    assert_eq!(Cap::new().with_psi(true).into_bits(), 1 << 39);
    assert_eq!(Cap::new().with_nfr(0xA5).into_bits(), 0xA5 << 40);
    assert_eq!(Cap::new().with_mamv(0b110001).into_bits(), 0b110001 << 48);
    assert_eq!(Cap::new().with_dwd(true).into_bits(), 1 << 54);
    assert_eq!(Cap::new().with_drd(true).into_bits(), 1 << 55);
    assert_eq!(Cap::new().with_fs1gp(true).into_bits(), 1 << 56);
    assert_eq!(Cap::new().with_pi(true).into_bits(), 1 << 59);
    assert_eq!(Cap::new().with_fs5lp(true).into_bits(), 1 << 60);
    assert_eq!(Cap::new().with_ecmds(true).into_bits(), 1 << 61);
    assert_eq!(Cap::new().with_esirtps(true).into_bits(), 1 << 62);
    assert_eq!(Cap::new().with_esrtps(true).into_bits(), 1 << 63);
}

#[test]
fn cap_fields_read_back_written_values() {
    let cap = cap_sample();

    assert_eq!(cap.nd(), 0b101);
    assert!(cap.afl() && cap.rwbf() && cap.plmr() && cap.phmr() && cap.cm());
    assert_eq!(cap.sagaw(), 0b10011);
    assert_eq!(cap.mgaw(), 0b100101);
    assert!(cap.zlr() && cap.isoch());
    assert_eq!(cap.fro(), 0x2A5);
    assert_eq!(cap.sllps(), 0b1001);
    assert!(cap.psi());
    assert_eq!(cap.nfr(), 0xA5);
    assert_eq!(cap.mamv(), 0b110001);
    assert!(cap.dwd() && cap.drd() && cap.fs1gp() && cap.pi() && cap.fs5lp());
    assert!(cap.ecmds() && cap.esirtps() && cap.esrtps());
}

#[test]
fn cap_survives_raw_round_trip() {
    let cap = cap_sample();

    assert_eq!(Cap::from_bits(cap.into_bits()), cap);
}

#[test]
fn cap_domain_id_width_is_four_plus_two_nd() {
    assert_eq!(Cap::new().with_nd(0).domain_id_bits(), Some(4));
    assert_eq!(Cap::new().with_nd(6).domain_id_bits(), Some(16));
    assert_eq!(Cap::new().with_nd(6).num_domains(), 65536);
}

#[test]
fn cap_nd_seven_is_reserved() {
    let cap = Cap::new().with_nd(7);

    assert_eq!(cap.domain_id_bits(), None);
    assert_eq!(cap.num_domains(), 0);
}

#[test]
fn cap_supports_aw_reads_sagaw_bit_one_to_three_only() {
    let only_57 = Cap::from_bits(0b01000 << 8);
    let only_30 = Cap::from_bits(0b00001 << 8);

    assert!(only_57.supports_aw(3));
    assert!(!only_57.supports_aw(2));
    assert!(!only_30.supports_aw(0));
    assert!(!only_30.supports_aw(1));
}

// ---------------------------------------------------------------------------------------
// ECAP_REG (§1.3)

fn ecap_sample() -> Ecap {
    Ecap::new()
        .with_c(true)
        .with_qi(true)
        .with_dt(true)
        .with_ir(true)
        .with_eim(true)
        .with_pt(true)
        .with_sc(true)
        .with_iro(0x2A5)
        .with_mhmv(0b1001)
        .with_ecs(true)
        .with_mts(true)
        .with_nest(true)
        .with_deprecated27(true)
        .with_deprecated28(true)
        .with_prs(true)
        .with_ers(true)
        .with_srs(true)
        .with_nwfs(true)
        .with_eafs(true)
        .with_pss(0b10011)
        .with_pasid(true)
        .with_dit(true)
        .with_pds(true)
        .with_smts(true)
        .with_vcs(true)
        .with_slads(true)
        .with_slts(true)
        .with_flts(true)
        .with_smpwcs(true)
        .with_rps(true)
        .with_tdxio(true)
        .with_pms(true)
        .with_adms(true)
        .with_rprivs(true)
        .with_hpts(true)
        .with_ptrs(true)
        .with_pbds(true)
}

#[test]
fn ecap_each_field_encodes_at_reference_bits() {
    assert_eq!(Ecap::new().with_c(true).into_bits(), 1 << 0);
    assert_eq!(Ecap::new().with_qi(true).into_bits(), 1 << 1);
    assert_eq!(Ecap::new().with_dt(true).into_bits(), 1 << 2);
    assert_eq!(Ecap::new().with_ir(true).into_bits(), 1 << 3);
    assert_eq!(Ecap::new().with_eim(true).into_bits(), 1 << 4);
    assert_eq!(Ecap::new().with_pt(true).into_bits(), 1 << 6);
    assert_eq!(Ecap::new().with_sc(true).into_bits(), 1 << 7);
    assert_eq!(Ecap::new().with_iro(0x2A5).into_bits(), 0x2A5 << 8);
    assert_eq!(Ecap::new().with_mhmv(0b1001).into_bits(), 0b1001 << 20);
    assert_eq!(Ecap::new().with_ecs(true).into_bits(), 1 << 24);
    assert_eq!(Ecap::new().with_mts(true).into_bits(), 1 << 25);
    assert_eq!(Ecap::new().with_nest(true).into_bits(), 1 << 26);
    assert_eq!(Ecap::new().with_deprecated27(true).into_bits(), 1 << 27);
    assert_eq!(Ecap::new().with_deprecated28(true).into_bits(), 1 << 28);
    assert_eq!(Ecap::new().with_prs(true).into_bits(), 1 << 29);
    assert_eq!(Ecap::new().with_ers(true).into_bits(), 1 << 30);
    assert_eq!(Ecap::new().with_srs(true).into_bits(), 1 << 31);
    assert_eq!(Ecap::new().with_nwfs(true).into_bits(), 1 << 33);
    assert_eq!(Ecap::new().with_eafs(true).into_bits(), 1 << 34);
    assert_eq!(Ecap::new().with_pss(0b10011).into_bits(), 0b10011 << 35);
    assert_eq!(Ecap::new().with_pasid(true).into_bits(), 1 << 40);
    assert_eq!(Ecap::new().with_dit(true).into_bits(), 1 << 41);
    assert_eq!(Ecap::new().with_pds(true).into_bits(), 1 << 42);
    assert_eq!(Ecap::new().with_smts(true).into_bits(), 1 << 43);
    assert_eq!(Ecap::new().with_vcs(true).into_bits(), 1 << 44);
    assert_eq!(Ecap::new().with_slads(true).into_bits(), 1 << 45);
    assert_eq!(Ecap::new().with_slts(true).into_bits(), 1 << 46);
    assert_eq!(Ecap::new().with_flts(true).into_bits(), 1 << 47);
    assert_eq!(Ecap::new().with_smpwcs(true).into_bits(), 1 << 48);
    assert_eq!(Ecap::new().with_rps(true).into_bits(), 1 << 49);
    assert_eq!(Ecap::new().with_tdxio(true).into_bits(), 1 << 50);
    assert_eq!(Ecap::new().with_pms(true).into_bits(), 1 << 51);
    assert_eq!(Ecap::new().with_adms(true).into_bits(), 1 << 52);
    assert_eq!(Ecap::new().with_rprivs(true).into_bits(), 1 << 53);
    assert_eq!(Ecap::new().with_hpts(true).into_bits(), 1 << 55);
    assert_eq!(Ecap::new().with_ptrs(true).into_bits(), 1 << 56);
    assert_eq!(Ecap::new().with_pbds(true).into_bits(), 1 << 57);
}

#[test]
fn ecap_fields_read_back_written_values() {
    let ecap = ecap_sample();

    assert!(ecap.c() && ecap.qi() && ecap.dt() && ecap.ir() && ecap.eim());
    assert!(ecap.pt() && ecap.sc());
    assert_eq!(ecap.iro(), 0x2A5);
    assert_eq!(ecap.mhmv(), 0b1001);
    assert!(ecap.ecs() && ecap.mts() && ecap.nest() && ecap.deprecated27());
    assert!(ecap.deprecated28() && ecap.prs() && ecap.ers() && ecap.srs());
    assert!(ecap.nwfs() && ecap.eafs());
    assert_eq!(ecap.pss(), 0b10011);
    assert!(ecap.pasid() && ecap.dit() && ecap.pds() && ecap.smts() && ecap.vcs());
    assert!(ecap.slads() && ecap.slts() && ecap.flts() && ecap.smpwcs() && ecap.rps());
    assert!(ecap.tdxio() && ecap.pms() && ecap.adms() && ecap.rprivs());
    assert!(ecap.hpts() && ecap.ptrs() && ecap.pbds());
}

#[test]
fn ecap_survives_raw_round_trip() {
    let ecap = ecap_sample();

    assert_eq!(Ecap::from_bits(ecap.into_bits()), ecap);
}

#[test]
fn ecap_pasid_width_is_pss_plus_one() {
    assert_eq!(Ecap::from_bits(19 << 35).pasid_bits(), 20);
}

#[test]
fn ecap_nested_supported_needs_smts_and_nest() {
    let smts = 1 << 43;
    let nest = 1 << 26;

    assert!(Ecap::from_bits(smts | nest).nested_supported());
    assert!(!Ecap::from_bits(nest).nested_supported());
    assert!(!Ecap::from_bits(smts).nested_supported());
}

#[test]
fn ecap_dirty_tracking_needs_smts_slads_and_smpwcs() {
    let smts = 1 << 43;
    let slads = 1 << 45;
    let smpwcs = 1 << 48;

    assert!(Ecap::from_bits(smts | slads | smpwcs).dirty_tracking_supported());
    assert!(!Ecap::from_bits(slads | smpwcs).dirty_tracking_supported());
    assert!(!Ecap::from_bits(smts | smpwcs).dirty_tracking_supported());
    assert!(!Ecap::from_bits(smts | slads).dirty_tracking_supported());
}

// ---------------------------------------------------------------------------------------
// GCMD_REG / GSTS_REG (§1.4)

#[test]
fn global_command_bits_sit_at_reference_positions() {
    assert_eq!(GlobalCommand::TE.bits(), 1 << 31);
    assert_eq!(GlobalCommand::SRTP.bits(), 1 << 30);
    assert_eq!(GlobalCommand::SFL.bits(), 1 << 29);
    assert_eq!(GlobalCommand::EAFL.bits(), 1 << 28);
    assert_eq!(GlobalCommand::WBF.bits(), 1 << 27);
    assert_eq!(GlobalCommand::QIE.bits(), 1 << 26);
    assert_eq!(GlobalCommand::IRE.bits(), 1 << 25);
    assert_eq!(GlobalCommand::SIRTP.bits(), 1 << 24);
    assert_eq!(GlobalCommand::CFI.bits(), 1 << 23);
}

#[test]
fn global_status_bits_sit_at_reference_positions() {
    assert_eq!(GlobalStatus::TES.bits(), 1 << 31);
    assert_eq!(GlobalStatus::RTPS.bits(), 1 << 30);
    assert_eq!(GlobalStatus::FLS.bits(), 1 << 29);
    assert_eq!(GlobalStatus::AFLS.bits(), 1 << 28);
    assert_eq!(GlobalStatus::WBFS.bits(), 1 << 27);
    assert_eq!(GlobalStatus::QIES.bits(), 1 << 26);
    assert_eq!(GlobalStatus::IRES.bits(), 1 << 25);
    assert_eq!(GlobalStatus::IRTPS.bits(), 1 << 24);
    assert_eq!(GlobalStatus::CFIS.bits(), 1 << 23);
}

#[test]
fn global_command_and_status_leave_bits_22_to_0_undefined() {
    assert_eq!(GlobalCommand::all().bits(), 0xFF80_0000);
    assert_eq!(GlobalStatus::all().bits(), 0xFF80_0000);
}

// ---------------------------------------------------------------------------------------
// RTADDR_REG (§1.5)

fn rtaddr_sample() -> RtAddr {
    RtAddr::new()
        .with_ttm(Ttm::Reserved)
        .with_rta(0x8_ABCD_EF01_2345)
}

#[test]
fn rtaddr_each_field_encodes_at_reference_bits() {
    assert_eq!(
        RtAddr::new().with_ttm(Ttm::Reserved).into_bits(),
        0b10 << 10
    );
    assert_eq!(
        RtAddr::new().with_ttm(Ttm::Scalable).into_bits(),
        0b01 << 10
    );
    assert_eq!(
        RtAddr::new().with_rta(0x8_ABCD_EF01_2345).into_bits(),
        0x8_ABCD_EF01_2345 << 12
    );
}

#[test]
fn rtaddr_fields_read_back_written_values() {
    let rtaddr = rtaddr_sample();

    assert_eq!(rtaddr.ttm(), Ttm::Reserved);
    assert_eq!(rtaddr.rta(), 0x8_ABCD_EF01_2345);
}

#[test]
fn rtaddr_survives_raw_round_trip() {
    let rtaddr = rtaddr_sample();

    assert_eq!(RtAddr::from_bits(rtaddr.into_bits()), rtaddr);
}

#[test]
fn rtaddr_from_table_drops_low_twelve_bits_and_sets_ttm() {
    let rtaddr = RtAddr::from_table(0x1234_5FFF, Ttm::Scalable);

    assert_eq!(rtaddr.into_bits(), 0x1234_5000 | 0b01 << 10);
    assert_eq!(rtaddr.root_table(), 0x1234_5000);
}

#[test]
fn ttm_round_trips_all_four_encodings() {
    assert_eq!(Ttm::from_bits(0b00), Ttm::Legacy);
    assert_eq!(Ttm::from_bits(0b01), Ttm::Scalable);
    assert_eq!(Ttm::from_bits(0b10), Ttm::Reserved);
    assert_eq!(Ttm::from_bits(0b11), Ttm::AbortDma);
    assert_eq!(Ttm::Legacy.into_bits(), 0b00);
    assert_eq!(Ttm::Scalable.into_bits(), 0b01);
    assert_eq!(Ttm::Reserved.into_bits(), 0b10);
    assert_eq!(Ttm::AbortDma.into_bits(), 0b11);
}

// ---------------------------------------------------------------------------------------
// CCMD_REG (§1.6)

fn ccmd_sample() -> Ccmd {
    Ccmd::new()
        .with_did(0xBEEF)
        .with_sid(0xA55A)
        .with_fm(0b10)
        .with_caig(CcmdGranularity::Domain)
        .with_cirg(CcmdGranularity::Global)
        .with_icc(true)
}

#[test]
fn ccmd_each_field_encodes_at_reference_bits() {
    assert_eq!(Ccmd::new().with_did(0xBEEF).into_bits(), 0xBEEF);
    assert_eq!(Ccmd::new().with_sid(0xA55A).into_bits(), 0xA55A << 16);
    assert_eq!(Ccmd::new().with_fm(0b10).into_bits(), 0b10 << 32);
    assert_eq!(
        Ccmd::new().with_caig(CcmdGranularity::Domain).into_bits(),
        0b10 << 59
    );
    assert_eq!(
        Ccmd::new().with_cirg(CcmdGranularity::Global).into_bits(),
        0b01 << 61
    );
    assert_eq!(Ccmd::new().with_icc(true).into_bits(), 1 << 63);
}

#[test]
fn ccmd_fields_read_back_written_values() {
    let ccmd = ccmd_sample();

    assert_eq!(ccmd.did(), 0xBEEF);
    assert_eq!(ccmd.sid(), 0xA55A);
    assert_eq!(ccmd.fm(), 0b10);
    assert_eq!(ccmd.caig(), CcmdGranularity::Domain);
    assert_eq!(ccmd.cirg(), CcmdGranularity::Global);
    assert!(ccmd.icc());
}

#[test]
fn ccmd_survives_raw_round_trip() {
    let ccmd = ccmd_sample();

    assert_eq!(Ccmd::from_bits(ccmd.into_bits()), ccmd);
}

#[test]
fn ccmd_granularity_round_trips_all_four_encodings() {
    assert_eq!(CcmdGranularity::from_bits(0b00), CcmdGranularity::Reserved);
    assert_eq!(CcmdGranularity::from_bits(0b01), CcmdGranularity::Global);
    assert_eq!(CcmdGranularity::from_bits(0b10), CcmdGranularity::Domain);
    assert_eq!(CcmdGranularity::from_bits(0b11), CcmdGranularity::Device);
    assert_eq!(CcmdGranularity::Reserved.into_bits(), 0b00);
    assert_eq!(CcmdGranularity::Global.into_bits(), 0b01);
    assert_eq!(CcmdGranularity::Domain.into_bits(), 0b10);
    assert_eq!(CcmdGranularity::Device.into_bits(), 0b11);
}

// ---------------------------------------------------------------------------------------
// IVA_REG / IOTLB_REG (§1.7)

fn iva_sample() -> IvaReg {
    IvaReg::new()
        .with_am(0b100101)
        .with_ih(true)
        .with_addr(0x8_ABCD_EF01_2345)
}

#[test]
fn iva_reg_each_field_encodes_at_reference_bits() {
    assert_eq!(IvaReg::new().with_am(0b100101).into_bits(), 0b100101);
    assert_eq!(IvaReg::new().with_ih(true).into_bits(), 1 << 6);
    assert_eq!(
        IvaReg::new().with_addr(0x8_ABCD_EF01_2345).into_bits(),
        0x8_ABCD_EF01_2345 << 12
    );
}

#[test]
fn iva_reg_fields_read_back_written_values() {
    let iva = iva_sample();

    assert_eq!(iva.am(), 0b100101);
    assert!(iva.ih());
    assert_eq!(iva.addr(), 0x8_ABCD_EF01_2345);
}

#[test]
fn iva_reg_survives_raw_round_trip() {
    let iva = iva_sample();

    assert_eq!(IvaReg::from_bits(iva.into_bits()), iva);
}

fn iotlb_reg_sample() -> IotlbReg {
    IotlbReg::new()
        .with_did(0xBEEF)
        .with_dw(true)
        .with_dr(true)
        .with_iaig(IotlbGranularity::Domain)
        .with_iirg(IotlbGranularity::Page)
        .with_ivt(true)
}

#[test]
fn iotlb_reg_each_field_encodes_at_reference_bits() {
    assert_eq!(IotlbReg::new().with_did(0xBEEF).into_bits(), 0xBEEF << 32);
    assert_eq!(IotlbReg::new().with_dw(true).into_bits(), 1 << 48);
    assert_eq!(IotlbReg::new().with_dr(true).into_bits(), 1 << 49);
    assert_eq!(
        IotlbReg::new()
            .with_iaig(IotlbGranularity::Domain)
            .into_bits(),
        0b10 << 57
    );
    assert_eq!(
        IotlbReg::new()
            .with_iirg(IotlbGranularity::Global)
            .into_bits(),
        0b01 << 60
    );
    assert_eq!(IotlbReg::new().with_ivt(true).into_bits(), 1 << 63);
}

#[test]
fn iotlb_reg_fields_read_back_written_values() {
    let iotlb = iotlb_reg_sample();

    assert_eq!(iotlb.did(), 0xBEEF);
    assert!(iotlb.dw() && iotlb.dr());
    assert_eq!(iotlb.iaig(), IotlbGranularity::Domain);
    assert_eq!(iotlb.iirg(), IotlbGranularity::Page);
    assert!(iotlb.ivt());
}

#[test]
fn iotlb_reg_survives_raw_round_trip() {
    let iotlb = iotlb_reg_sample();

    assert_eq!(IotlbReg::from_bits(iotlb.into_bits()), iotlb);
}

#[test]
fn iotlb_granularity_round_trips_all_four_encodings() {
    assert_eq!(
        IotlbGranularity::from_bits(0b00),
        IotlbGranularity::Reserved
    );
    assert_eq!(IotlbGranularity::from_bits(0b01), IotlbGranularity::Global);
    assert_eq!(IotlbGranularity::from_bits(0b10), IotlbGranularity::Domain);
    assert_eq!(IotlbGranularity::from_bits(0b11), IotlbGranularity::Page);
    assert_eq!(IotlbGranularity::Reserved.into_bits(), 0b00);
    assert_eq!(IotlbGranularity::Global.into_bits(), 0b01);
    assert_eq!(IotlbGranularity::Domain.into_bits(), 0b10);
    assert_eq!(IotlbGranularity::Page.into_bits(), 0b11);
}

// ---------------------------------------------------------------------------------------
// FSTS_REG (§1.8), FECTL/IECTL/PECTL (§1.1)

fn fsts_sample() -> Fsts {
    Fsts::new()
        .with_pfo(true)
        .with_ppf(true)
        .with_afo(true)
        .with_apf(true)
        .with_iqe(true)
        .with_ice(true)
        .with_ite(true)
        .with_pro(true)
        .with_fri(0xA5)
}

#[test]
fn fsts_each_field_encodes_at_reference_bits() {
    assert_eq!(Fsts::new().with_pfo(true).into_bits(), 1 << 0);
    assert_eq!(Fsts::new().with_ppf(true).into_bits(), 1 << 1);
    assert_eq!(Fsts::new().with_afo(true).into_bits(), 1 << 2);
    assert_eq!(Fsts::new().with_apf(true).into_bits(), 1 << 3);
    assert_eq!(Fsts::new().with_iqe(true).into_bits(), 1 << 4);
    assert_eq!(Fsts::new().with_ice(true).into_bits(), 1 << 5);
    assert_eq!(Fsts::new().with_ite(true).into_bits(), 1 << 6);
    assert_eq!(Fsts::new().with_pro(true).into_bits(), 1 << 7);
    assert_eq!(Fsts::new().with_fri(0xA5).into_bits(), 0xA5 << 8);
}

#[test]
fn fsts_fields_read_back_written_values() {
    let fsts = fsts_sample();

    assert!(fsts.pfo() && fsts.ppf() && fsts.afo() && fsts.apf());
    assert!(fsts.iqe() && fsts.ice() && fsts.ite() && fsts.pro());
    assert_eq!(fsts.fri(), 0xA5);
}

#[test]
fn fsts_survives_raw_round_trip() {
    let fsts = fsts_sample();

    assert_eq!(Fsts::from_bits(fsts.into_bits()), fsts);
}

#[test]
fn fsts_rw1c_mask_covers_pfo_and_iqe_but_not_ppf_or_fri() {
    assert_eq!(Fsts::RW1C_MASK & (1 << 0), 1 << 0);
    assert_eq!(Fsts::RW1C_MASK & (1 << 4), 1 << 4);
    assert_eq!(Fsts::RW1C_MASK & (1 << 1), 0);
    assert_eq!(Fsts::RW1C_MASK & (0xFF << 8), 0);
}

#[test]
fn event_control_each_field_encodes_at_reference_bits() {
    assert_eq!(EventControl::new().with_ip(true).into_bits(), 1 << 30);
    assert_eq!(EventControl::new().with_im(true).into_bits(), 1 << 31);
}

#[test]
fn event_control_fields_read_back_written_values() {
    let ctl = EventControl::new().with_ip(true).with_im(true);

    assert!(ctl.ip() && ctl.im());
}

#[test]
fn event_control_survives_raw_round_trip() {
    let ctl = EventControl::new().with_ip(true).with_im(true);

    assert_eq!(EventControl::from_bits(ctl.into_bits()), ctl);
}

// ---------------------------------------------------------------------------------------
// FRCD_REG (§1.9)

fn fault_record_sample() -> FaultRecord {
    FaultRecord::new()
        .with_fi(0x8_ABCD_EF01_2345)
        .with_sid(0xBEEF)
        .with_t2(true)
        .with_priv_mode(true)
        .with_exe(true)
        .with_pp(true)
        .with_fr(0x77)
        .with_pv(0x8_1235)
        .with_at(0b10)
        .with_t1(true)
        .with_f(true)
}

#[test]
fn fault_record_each_field_encodes_at_reference_bits() {
    let fi = FaultRecord::new().with_fi(0x8_ABCD_EF01_2345);

    assert_eq!(fi.into_bits(), 0x8_ABCD_EF01_2345 << 12);
    assert_eq!(
        FaultRecord::new().with_sid(0xBEEF).into_bits(),
        0xBEEF << 64
    );
    assert_eq!(FaultRecord::new().with_t2(true).into_bits(), 1 << 92);
    assert_eq!(FaultRecord::new().with_priv_mode(true).into_bits(), 1 << 93);
    assert_eq!(FaultRecord::new().with_exe(true).into_bits(), 1 << 94);
    assert_eq!(FaultRecord::new().with_pp(true).into_bits(), 1 << 95);
    assert_eq!(FaultRecord::new().with_fr(0x77).into_bits(), 0x77 << 96);
    assert_eq!(
        FaultRecord::new().with_pv(0x8_1235).into_bits(),
        0x8_1235 << 104
    );
    assert_eq!(FaultRecord::new().with_at(0b10).into_bits(), 0b10 << 124);
    assert_eq!(FaultRecord::new().with_t1(true).into_bits(), 1 << 126);
    assert_eq!(FaultRecord::new().with_f(true).into_bits(), 1 << 127);
}

#[test]
fn fault_record_fields_read_back_written_values() {
    let frcd = fault_record_sample();

    assert_eq!(frcd.fi(), 0x8_ABCD_EF01_2345);
    assert_eq!(frcd.sid(), 0xBEEF);
    assert!(frcd.t2() && frcd.priv_mode() && frcd.exe() && frcd.pp());
    assert_eq!(frcd.fr(), 0x77);
    assert_eq!(frcd.pv(), 0x8_1235);
    assert_eq!(frcd.at(), 0b10);
    assert!(frcd.t1() && frcd.f());
}

#[test]
fn fault_record_survives_raw_round_trip() {
    let frcd = fault_record_sample();

    assert_eq!(FaultRecord::from_bits(frcd.into_bits()), frcd);
}

#[test]
fn fault_record_fault_addr_is_fi_shifted_to_page_address() {
    let frcd = FaultRecord::from_bits(0xBEEF << 64 | 0xFFFF_8000_1234_5FFF);

    assert_eq!(frcd.fault_addr(), 0xFFFF_8000_1234_5000);
}

// ---------------------------------------------------------------------------------------
// Queued-invalidation registers (§1.10)

fn iqa_sample() -> Iqa {
    Iqa::new()
        .with_qs(0b101)
        .with_dw(true)
        .with_iqa(0x8_ABCD_EF01_2345)
}

#[test]
fn iqa_each_field_encodes_at_reference_bits() {
    assert_eq!(Iqa::new().with_qs(0b101).into_bits(), 0b101);
    assert_eq!(Iqa::new().with_dw(true).into_bits(), 1 << 11);
    assert_eq!(
        Iqa::new().with_iqa(0x8_ABCD_EF01_2345).into_bits(),
        0x8_ABCD_EF01_2345 << 12
    );
}

#[test]
fn iqa_fields_read_back_written_values() {
    let iqa = iqa_sample();

    assert_eq!(iqa.qs(), 0b101);
    assert!(iqa.dw());
    assert_eq!(iqa.iqa(), 0x8_ABCD_EF01_2345);
}

#[test]
fn iqa_survives_raw_round_trip() {
    let iqa = iqa_sample();

    assert_eq!(Iqa::from_bits(iqa.into_bits()), iqa);
}

#[test]
fn iqa_qs0_with_128bit_descriptors_has_256_slots() {
    let iqa = Iqa::from_bits(0x1234_5000);

    assert_eq!(iqa.slots(), 256);
    assert_eq!(iqa.descriptor_bytes(), 16);
}

#[test]
fn iqa_qs0_with_256bit_descriptors_has_128_slots() {
    let iqa = Iqa::from_bits(0x1234_5000 | 1 << 11);

    assert_eq!(iqa.slots(), 128);
    assert_eq!(iqa.descriptor_bytes(), 32);
}

#[test]
fn iqa_slots_double_with_each_qs_step() {
    assert_eq!(Iqa::from_bits(0b001).slots(), 512);
    assert_eq!(Iqa::from_bits(0b111).slots(), 1 << 15);
    assert_eq!(Iqa::from_bits(0b111 | 1 << 11).slots(), 1 << 14);
}

#[test]
fn iqa_base_is_the_4k_aligned_queue_address() {
    let iqa = Iqa::from_bits(0x0000_00AB_CDEF_0000 | 1 << 11 | 0b011);

    assert_eq!(iqa.base(), 0x0000_00AB_CDEF_0000);
}

#[test]
fn queue_index_field_encodes_at_bits_18_to_4() {
    assert_eq!(QueueIndex::new().with_qh(0x4A5B).into_bits(), 0x4A5B << 4);
}

#[test]
fn queue_index_fields_read_back_written_values() {
    let index = QueueIndex::new().with_qh(0x4A5B);

    assert_eq!(index.qh(), 0x4A5B);
}

#[test]
fn queue_index_survives_raw_round_trip() {
    let index = QueueIndex::new().with_qh(0x4A5B);

    assert_eq!(QueueIndex::from_bits(index.into_bits()), index);
}

#[test]
fn queue_index_byte_offset_is_bits_18_to_4() {
    // Bits 3:0 and 63:19 lie outside the index field.
    let index = QueueIndex::from_bits(0xFFFF_FFFF_FFF8_0000 | 0x7_FFF0 | 0xF);

    assert_eq!(index.byte_offset(), 0x7_FFF0);
    assert_eq!(QueueIndex::from_bits(0x20).byte_offset(), 0x20);
}

#[test]
fn queue_index_from_byte_offset_keeps_only_bits_18_to_4() {
    let index = QueueIndex::from_byte_offset(0x8_0000 | 0x1230 | 0xF);

    assert_eq!(index.into_bits(), 0x1230);
}

#[test]
fn ics_iwc_encodes_at_bit_0() {
    assert_eq!(Ics::new().with_iwc(true).into_bits(), 1);
}

#[test]
fn ics_fields_read_back_written_values() {
    assert!(Ics::new().with_iwc(true).iwc());
}

#[test]
fn ics_survives_raw_round_trip() {
    let ics = Ics::new().with_iwc(true);

    assert_eq!(Ics::from_bits(ics.into_bits()), ics);
}

fn iqercd_sample() -> Iqercd {
    Iqercd::new()
        .with_iqei(Iqei::TailMisaligned)
        .with_itesid(0xBEEF)
        .with_icesid(0xA55A)
}

#[test]
fn iqercd_each_field_encodes_at_reference_bits() {
    assert_eq!(Iqercd::new().with_iqei(Iqei::TailMisaligned).into_bits(), 6);
    assert_eq!(Iqercd::new().with_itesid(0xBEEF).into_bits(), 0xBEEF << 32);
    assert_eq!(Iqercd::new().with_icesid(0xA55A).into_bits(), 0xA55A << 48);
}

#[test]
fn iqercd_fields_read_back_written_values() {
    let iqercd = iqercd_sample();

    assert_eq!(iqercd.iqei(), Iqei::TailMisaligned);
    assert_eq!(iqercd.itesid(), 0xBEEF);
    assert_eq!(iqercd.icesid(), 0xA55A);
}

#[test]
fn iqercd_survives_raw_round_trip() {
    let iqercd = iqercd_sample();

    assert_eq!(Iqercd::from_bits(iqercd.into_bits()), iqercd);
}

#[test]
fn iqei_decodes_reference_codes_0_to_7() {
    assert_eq!(Iqei::from_bits(0), Iqei::NoInfo);
    assert_eq!(Iqei::from_bits(1), Iqei::InvalidTail);
    assert_eq!(Iqei::from_bits(2), Iqei::FetchError);
    assert_eq!(Iqei::from_bits(3), Iqei::InvalidType);
    assert_eq!(Iqei::from_bits(4), Iqei::ReservedField);
    assert_eq!(Iqei::from_bits(5), Iqei::InvalidWidth);
    assert_eq!(Iqei::from_bits(6), Iqei::TailMisaligned);
    assert_eq!(Iqei::from_bits(7), Iqei::InvalidTtm);
    assert_eq!(Iqei::from_bits(8), Iqei::Reserved(8));
    assert_eq!(Iqei::from_bits(15), Iqei::Reserved(15));
}

#[test]
fn iqei_round_trips_all_sixteen_encodings() {
    let codes: [u8; 16] = core::array::from_fn(|code| code as u8);

    assert_eq!(codes.map(|code| Iqei::from_bits(code).into_bits()), codes);
}

// ---------------------------------------------------------------------------------------
// AFLOG_REG, PMEN_REG (§1.1)

fn aflog_sample() -> Aflog {
    Aflog::new().with_fls(0b101).with_fla(0x8_ABCD_EF01_2345)
}

#[test]
fn aflog_each_field_encodes_at_reference_bits() {
    assert_eq!(Aflog::new().with_fls(0b101).into_bits(), 0b101 << 9);
    assert_eq!(
        Aflog::new().with_fla(0x8_ABCD_EF01_2345).into_bits(),
        0x8_ABCD_EF01_2345 << 12
    );
}

#[test]
fn aflog_fields_read_back_written_values() {
    let aflog = aflog_sample();

    assert_eq!(aflog.fls(), 0b101);
    assert_eq!(aflog.fla(), 0x8_ABCD_EF01_2345);
}

#[test]
fn aflog_survives_raw_round_trip() {
    let aflog = aflog_sample();

    assert_eq!(Aflog::from_bits(aflog.into_bits()), aflog);
}

#[test]
fn pmen_each_field_encodes_at_reference_bits() {
    assert_eq!(Pmen::new().with_prs(true).into_bits(), 1 << 0);
    assert_eq!(Pmen::new().with_epm(true).into_bits(), 1 << 31);
}

#[test]
fn pmen_fields_read_back_written_values() {
    let pmen = Pmen::new().with_prs(true).with_epm(true);

    assert!(pmen.prs() && pmen.epm());
}

#[test]
fn pmen_survives_raw_round_trip() {
    let pmen = Pmen::new().with_prs(true).with_epm(true);

    assert_eq!(Pmen::from_bits(pmen.into_bits()), pmen);
}
