//! Queued-invalidation descriptors (§8.2, §8.3).

use vtd_spec::inv::{
    self, ContextCacheInvDesc, DescType, DevTlbInvDesc, IecInvDesc, InvWaitDesc, IotlbInvDesc,
    PasidCacheGranularity, PasidCacheInvDesc, PasidDevTlbInvDesc, PasidIotlbGranularity,
    PasidIotlbInvDesc, RawDescriptor,
};
use vtd_spec::regs::{CcmdGranularity, IotlbGranularity};
use zerocopy::{FromBytes, IntoBytes};

// ---------------------------------------------------------------------------------------
// Type 0x1: context-cache invalidate

fn cc_sample() -> ContextCacheInvDesc {
    ContextCacheInvDesc::new()
        .with_g(CcmdGranularity::Device)
        .with_did(0xBEEF)
        .with_sid(0xA55A)
        .with_fm(0b10)
}

#[test]
fn context_cache_desc_new_holds_only_type_1() {
    assert_eq!(ContextCacheInvDesc::new().into_bits(), 0x1);
}

#[test]
fn context_cache_desc_each_field_encodes_at_reference_bits() {
    let zero = ContextCacheInvDesc::from_bits(0);

    assert_eq!(zero.with_type_lo(0b1001).into_bits(), 0b1001);
    assert_eq!(zero.with_g(CcmdGranularity::Domain).into_bits(), 0b10 << 4);
    assert_eq!(zero.with_type_hi(0b101).into_bits(), 0b101 << 9);
    assert_eq!(zero.with_did(0xBEEF).into_bits(), 0xBEEF << 16);
    assert_eq!(zero.with_sid(0xA55A).into_bits(), 0xA55A << 32);
    assert_eq!(zero.with_fm(0b10).into_bits(), 0b10 << 48);
}

#[test]
fn context_cache_desc_fields_read_back_written_values() {
    let desc = cc_sample();

    assert_eq!((desc.type_lo(), desc.type_hi()), (1, 0));
    assert_eq!(desc.g(), CcmdGranularity::Device);
    assert_eq!(desc.did(), 0xBEEF);
    assert_eq!(desc.sid(), 0xA55A);
    assert_eq!(desc.fm(), 0b10);
}

#[test]
fn context_cache_desc_survives_raw_round_trip() {
    let desc = cc_sample();

    assert_eq!(ContextCacheInvDesc::from_bits(desc.into_bits()), desc);
}

// ---------------------------------------------------------------------------------------
// Type 0x2: IOTLB invalidate

fn iotlb_sample() -> IotlbInvDesc {
    IotlbInvDesc::new()
        .with_g(IotlbGranularity::Page)
        .with_dw(true)
        .with_dr(true)
        .with_did(0xBEEF)
        .with_am(0b100101)
        .with_ih(true)
        .with_addr(0x8_ABCD_EF01_2345)
}

#[test]
fn iotlb_desc_new_holds_only_type_2() {
    assert_eq!(IotlbInvDesc::new().into_bits(), 0x2);
}

#[test]
fn iotlb_desc_each_field_encodes_at_reference_bits() {
    let zero = IotlbInvDesc::from_bits(0);

    assert_eq!(zero.with_type_lo(0b1001).into_bits(), 0b1001);
    assert_eq!(zero.with_g(IotlbGranularity::Domain).into_bits(), 0b10 << 4);
    assert_eq!(zero.with_dw(true).into_bits(), 1 << 6);
    assert_eq!(zero.with_dr(true).into_bits(), 1 << 7);
    assert_eq!(zero.with_type_hi(0b101).into_bits(), 0b101 << 9);
    assert_eq!(zero.with_did(0xBEEF).into_bits(), 0xBEEF << 16);
    assert_eq!(zero.with_am(0b100101).into_bits(), 0b100101 << 64);
    assert_eq!(zero.with_ih(true).into_bits(), 1 << 70);
    assert_eq!(
        zero.with_addr(0x8_ABCD_EF01_2345).into_bits(),
        0x8_ABCD_EF01_2345 << 76
    );
}

#[test]
fn iotlb_desc_fields_read_back_written_values() {
    let desc = iotlb_sample();

    assert_eq!((desc.type_lo(), desc.type_hi()), (2, 0));
    assert_eq!(desc.g(), IotlbGranularity::Page);
    assert!(desc.dw() && desc.dr());
    assert_eq!(desc.did(), 0xBEEF);
    assert_eq!(desc.am(), 0b100101);
    assert!(desc.ih());
    assert_eq!(desc.addr(), 0x8_ABCD_EF01_2345);
}

#[test]
fn iotlb_desc_survives_raw_round_trip() {
    let desc = iotlb_sample();

    assert_eq!(IotlbInvDesc::from_bits(desc.into_bits()), desc);
}

#[test]
fn iotlb_desc_address_is_qword1_with_low_12_bits_cleared() {
    let desc = IotlbInvDesc::from_bits(0xFFFF_8000_1234_5FFF << 64 | 0x2);

    assert_eq!(desc.address(), 0xFFFF_8000_1234_5000);
}

#[test]
fn iotlb_desc_bytes_are_little_endian_qwords() {
    // qword 0: type 2 | G=11 << 4 | DID 0xBEEF << 16; qword 1: AM 9 | ADDR 0x12345 << 12.
    let desc = IotlbInvDesc::from_bits(0x0000_0000_1234_5009 << 64 | 0x0000_0000_BEEF_0032);

    assert_eq!(
        desc.as_bytes(),
        [
            0x32, 0x00, 0xEF, 0xBE, 0x00, 0x00, 0x00, 0x00, //
            0x09, 0x50, 0x34, 0x12, 0x00, 0x00, 0x00, 0x00, //
        ]
    );
}

// ---------------------------------------------------------------------------------------
// Type 0x3: device-TLB invalidate

fn devtlb_sample() -> DevTlbInvDesc {
    DevTlbInvDesc::new()
        .with_pfsid_lo(0b1001)
        .with_mip(0b10011)
        .with_sid(0xBEEF)
        .with_pfsid_hi(0xA53)
        .with_s(true)
        .with_addr(0x8_ABCD_EF01_2345)
}

#[test]
fn devtlb_desc_new_holds_only_type_3() {
    assert_eq!(DevTlbInvDesc::new().into_bits(), 0x3);
}

#[test]
fn devtlb_desc_each_field_encodes_at_reference_bits() {
    let zero = DevTlbInvDesc::from_bits(0);

    assert_eq!(zero.with_type_lo(0b1001).into_bits(), 0b1001);
    assert_eq!(zero.with_type_hi(0b101).into_bits(), 0b101 << 9);
    assert_eq!(zero.with_pfsid_lo(0b1001).into_bits(), 0b1001 << 12);
    assert_eq!(zero.with_mip(0b10011).into_bits(), 0b10011 << 16);
    assert_eq!(zero.with_sid(0xBEEF).into_bits(), 0xBEEF << 32);
    assert_eq!(zero.with_pfsid_hi(0xA53).into_bits(), 0xA53 << 52);
    assert_eq!(zero.with_s(true).into_bits(), 1 << 64);
    assert_eq!(
        zero.with_addr(0x8_ABCD_EF01_2345).into_bits(),
        0x8_ABCD_EF01_2345 << 76
    );
}

#[test]
fn devtlb_desc_fields_read_back_written_values() {
    let desc = devtlb_sample();

    assert_eq!((desc.type_lo(), desc.type_hi()), (3, 0));
    assert_eq!(desc.pfsid_lo(), 0b1001);
    assert_eq!(desc.mip(), 0b10011);
    assert_eq!(desc.sid(), 0xBEEF);
    assert_eq!(desc.pfsid_hi(), 0xA53);
    assert!(desc.s());
    assert_eq!(desc.addr(), 0x8_ABCD_EF01_2345);
}

#[test]
fn devtlb_desc_survives_raw_round_trip() {
    let desc = devtlb_sample();

    assert_eq!(DevTlbInvDesc::from_bits(desc.into_bits()), desc);
}

#[test]
fn devtlb_range_without_s_is_one_4k_page() {
    assert_eq!(inv::devtlb_range(0x12345, false), (0x1234_5000, 0x1000));
}

#[test]
fn devtlb_range_with_s_takes_size_from_lowest_zero_bit() {
    // ADDR bit 12 = 0 -> 8 KiB; bits 13:12 = 01 -> 16 KiB; bits 14:12 = 011 -> 32 KiB.
    assert_eq!(inv::devtlb_range(0x12344, true), (0x1234_4000, 0x2000));
    assert_eq!(inv::devtlb_range(0x12345, true), (0x1234_4000, 0x4000));
    assert_eq!(inv::devtlb_range(0x12343, true), (0x1234_0000, 0x8000));
}

#[test]
fn devtlb_range_with_s_and_all_ones_covers_everything() {
    assert_eq!(inv::devtlb_range(0xF_FFFF_FFFF_FFFF, true), (0, 0));
}

// ---------------------------------------------------------------------------------------
// Type 0x4: interrupt-entry-cache invalidate

fn iec_sample() -> IecInvDesc {
    IecInvDesc::new()
        .with_g(true)
        .with_im(0b10011)
        .with_iidx(0xBEEF)
}

#[test]
fn iec_desc_new_holds_only_type_4() {
    assert_eq!(IecInvDesc::new().into_bits(), 0x4);
}

#[test]
fn iec_desc_each_field_encodes_at_reference_bits() {
    let zero = IecInvDesc::from_bits(0);

    assert_eq!(zero.with_type_lo(0b1001).into_bits(), 0b1001);
    assert_eq!(zero.with_g(true).into_bits(), 1 << 4);
    assert_eq!(zero.with_type_hi(0b101).into_bits(), 0b101 << 9);
    assert_eq!(zero.with_im(0b10011).into_bits(), 0b10011 << 27);
    assert_eq!(zero.with_iidx(0xBEEF).into_bits(), 0xBEEF << 32);
}

#[test]
fn iec_desc_fields_read_back_written_values() {
    let desc = iec_sample();

    assert_eq!((desc.type_lo(), desc.type_hi()), (4, 0));
    assert!(desc.g());
    assert_eq!(desc.im(), 0b10011);
    assert_eq!(desc.iidx(), 0xBEEF);
}

#[test]
fn iec_desc_survives_raw_round_trip() {
    let desc = iec_sample();

    assert_eq!(IecInvDesc::from_bits(desc.into_bits()), desc);
}

// ---------------------------------------------------------------------------------------
// Type 0x5: invalidation wait

fn wait_sample() -> InvWaitDesc {
    InvWaitDesc::new()
        .with_intr(true)
        .with_sw(true)
        .with_fence(true)
        .with_pd(true)
        .with_status_data(0x8765_4321)
        .with_status_addr(0x2ABC_DEF0_1234_5679)
}

#[test]
fn wait_desc_new_holds_only_type_5() {
    assert_eq!(InvWaitDesc::new().into_bits(), 0x5);
}

#[test]
fn wait_desc_each_field_encodes_at_reference_bits() {
    let zero = InvWaitDesc::from_bits(0);

    assert_eq!(zero.with_type_lo(0b1001).into_bits(), 0b1001);
    assert_eq!(zero.with_intr(true).into_bits(), 1 << 4);
    assert_eq!(zero.with_sw(true).into_bits(), 1 << 5);
    assert_eq!(zero.with_fence(true).into_bits(), 1 << 6);
    assert_eq!(zero.with_pd(true).into_bits(), 1 << 7);
    assert_eq!(zero.with_type_hi(0b101).into_bits(), 0b101 << 9);
    assert_eq!(
        zero.with_status_data(0x8765_4321).into_bits(),
        0x8765_4321 << 32
    );
    let addr = zero.with_status_addr(0x2ABC_DEF0_1234_5679);
    assert_eq!(addr.into_bits(), 0x2ABC_DEF0_1234_5679 << 66);
}

#[test]
fn wait_desc_fields_read_back_written_values() {
    let desc = wait_sample();

    assert_eq!((desc.type_lo(), desc.type_hi()), (5, 0));
    assert!(desc.intr() && desc.sw() && desc.fence() && desc.pd());
    assert_eq!(desc.status_data(), 0x8765_4321);
    assert_eq!(desc.status_addr(), 0x2ABC_DEF0_1234_5679);
}

#[test]
fn wait_desc_survives_raw_round_trip() {
    let desc = wait_sample();

    assert_eq!(InvWaitDesc::from_bits(desc.into_bits()), desc);
}

#[test]
fn wait_desc_status_address_is_qword1_for_a_dword_aligned_address() {
    let desc = InvWaitDesc::from_bits(0xFEE0_1234_5678_9ABC << 64 | 0x20);

    assert_eq!(desc.status_address(), 0xFEE0_1234_5678_9ABC);
}

// ---------------------------------------------------------------------------------------
// Type 0x6: PASID-based IOTLB invalidate

fn pasid_iotlb_sample() -> PasidIotlbInvDesc {
    PasidIotlbInvDesc::new()
        .with_g(PasidIotlbGranularity::Page)
        .with_did(0xBEEF)
        .with_pasid(0x8_1235)
        .with_am(0b100101)
        .with_ih(true)
        .with_addr(0x8_ABCD_EF01_2345)
}

#[test]
fn pasid_iotlb_desc_new_holds_only_type_6() {
    assert_eq!(PasidIotlbInvDesc::new().into_bits(), 0x6);
}

#[test]
fn pasid_iotlb_desc_each_field_encodes_at_reference_bits() {
    let zero = PasidIotlbInvDesc::from_bits(0);

    assert_eq!(zero.with_type_lo(0b1001).into_bits(), 0b1001);
    assert_eq!(
        zero.with_g(PasidIotlbGranularity::Pasid).into_bits(),
        0b10 << 4
    );
    assert_eq!(zero.with_type_hi(0b101).into_bits(), 0b101 << 9);
    assert_eq!(zero.with_did(0xBEEF).into_bits(), 0xBEEF << 16);
    assert_eq!(zero.with_pasid(0x8_1235).into_bits(), 0x8_1235 << 32);
    assert_eq!(zero.with_am(0b100101).into_bits(), 0b100101 << 64);
    assert_eq!(zero.with_ih(true).into_bits(), 1 << 70);
    assert_eq!(
        zero.with_addr(0x8_ABCD_EF01_2345).into_bits(),
        0x8_ABCD_EF01_2345 << 76
    );
}

#[test]
fn pasid_iotlb_desc_fields_read_back_written_values() {
    let desc = pasid_iotlb_sample();

    assert_eq!((desc.type_lo(), desc.type_hi()), (6, 0));
    assert_eq!(desc.g(), PasidIotlbGranularity::Page);
    assert_eq!(desc.did(), 0xBEEF);
    assert_eq!(desc.pasid(), 0x8_1235);
    assert_eq!(desc.am(), 0b100101);
    assert!(desc.ih());
    assert_eq!(desc.addr(), 0x8_ABCD_EF01_2345);
}

#[test]
fn pasid_iotlb_desc_survives_raw_round_trip() {
    let desc = pasid_iotlb_sample();

    assert_eq!(PasidIotlbInvDesc::from_bits(desc.into_bits()), desc);
}

#[test]
fn pasid_iotlb_desc_address_is_qword1_with_low_12_bits_cleared() {
    let desc = PasidIotlbInvDesc::from_bits(0x0000_7FFF_FFFF_FFFF << 64 | 0x6);

    assert_eq!(desc.address(), 0x0000_7FFF_FFFF_F000);
}

#[test]
fn pasid_iotlb_granularity_round_trips_all_four_encodings() {
    assert_eq!(
        PasidIotlbGranularity::from_bits(0b00),
        PasidIotlbGranularity::Reserved0
    );
    assert_eq!(
        PasidIotlbGranularity::from_bits(0b01),
        PasidIotlbGranularity::Reserved1
    );
    assert_eq!(
        PasidIotlbGranularity::from_bits(0b10),
        PasidIotlbGranularity::Pasid
    );
    assert_eq!(
        PasidIotlbGranularity::from_bits(0b11),
        PasidIotlbGranularity::Page
    );
    let codes: [u8; 4] = [0, 1, 2, 3];
    assert_eq!(
        codes.map(|code| PasidIotlbGranularity::from_bits(code).into_bits()),
        codes
    );
}

// ---------------------------------------------------------------------------------------
// Type 0x7: PASID-cache invalidate

fn pasid_cache_sample() -> PasidCacheInvDesc {
    PasidCacheInvDesc::new()
        .with_g(PasidCacheGranularity::Global)
        .with_did(0xBEEF)
        .with_pasid(0x8_1235)
}

#[test]
fn pasid_cache_desc_new_holds_only_type_7() {
    assert_eq!(PasidCacheInvDesc::new().into_bits(), 0x7);
}

#[test]
fn pasid_cache_desc_each_field_encodes_at_reference_bits() {
    let zero = PasidCacheInvDesc::from_bits(0);

    assert_eq!(zero.with_type_lo(0b1001).into_bits(), 0b1001);
    assert_eq!(
        zero.with_g(PasidCacheGranularity::Pasid).into_bits(),
        0b01 << 4
    );
    assert_eq!(zero.with_type_hi(0b101).into_bits(), 0b101 << 9);
    assert_eq!(zero.with_did(0xBEEF).into_bits(), 0xBEEF << 16);
    assert_eq!(zero.with_pasid(0x8_1235).into_bits(), 0x8_1235 << 32);
}

#[test]
fn pasid_cache_desc_fields_read_back_written_values() {
    let desc = pasid_cache_sample();

    assert_eq!((desc.type_lo(), desc.type_hi()), (7, 0));
    assert_eq!(desc.g(), PasidCacheGranularity::Global);
    assert_eq!(desc.did(), 0xBEEF);
    assert_eq!(desc.pasid(), 0x8_1235);
}

#[test]
fn pasid_cache_desc_survives_raw_round_trip() {
    let desc = pasid_cache_sample();

    assert_eq!(PasidCacheInvDesc::from_bits(desc.into_bits()), desc);
}

#[test]
fn pasid_cache_granularity_round_trips_all_four_encodings() {
    assert_eq!(
        PasidCacheGranularity::from_bits(0b00),
        PasidCacheGranularity::Domain
    );
    assert_eq!(
        PasidCacheGranularity::from_bits(0b01),
        PasidCacheGranularity::Pasid
    );
    assert_eq!(
        PasidCacheGranularity::from_bits(0b10),
        PasidCacheGranularity::Reserved
    );
    assert_eq!(
        PasidCacheGranularity::from_bits(0b11),
        PasidCacheGranularity::Global
    );
    let codes: [u8; 4] = [0, 1, 2, 3];
    assert_eq!(
        codes.map(|code| PasidCacheGranularity::from_bits(code).into_bits()),
        codes
    );
}

// ---------------------------------------------------------------------------------------
// Type 0x8: PASID-based device-TLB invalidate

fn pasid_devtlb_sample() -> PasidDevTlbInvDesc {
    PasidDevTlbInvDesc::new()
        .with_mip(0b10011)
        .with_pfsid_lo(0b1001)
        .with_sid(0xBEEF)
        .with_pasid(0x8_1235)
        .with_pfsid_hi(0xA53)
        .with_g(true)
        .with_s(true)
        .with_addr(0x8_ABCD_EF01_2345)
}

#[test]
fn pasid_devtlb_desc_new_holds_only_type_8() {
    assert_eq!(PasidDevTlbInvDesc::new().into_bits(), 0x8);
}

#[test]
fn pasid_devtlb_desc_each_field_encodes_at_reference_bits() {
    let zero = PasidDevTlbInvDesc::from_bits(0);

    assert_eq!(zero.with_type_lo(0b1001).into_bits(), 0b1001);
    assert_eq!(zero.with_mip(0b10011).into_bits(), 0b10011 << 4);
    assert_eq!(zero.with_type_hi(0b101).into_bits(), 0b101 << 9);
    assert_eq!(zero.with_pfsid_lo(0b1001).into_bits(), 0b1001 << 12);
    assert_eq!(zero.with_sid(0xBEEF).into_bits(), 0xBEEF << 16);
    assert_eq!(zero.with_pasid(0x8_1235).into_bits(), 0x8_1235 << 32);
    assert_eq!(zero.with_pfsid_hi(0xA53).into_bits(), 0xA53 << 52);
    assert_eq!(zero.with_g(true).into_bits(), 1 << 64);
    assert_eq!(zero.with_s(true).into_bits(), 1 << 75);
    assert_eq!(
        zero.with_addr(0x8_ABCD_EF01_2345).into_bits(),
        0x8_ABCD_EF01_2345 << 76
    );
}

#[test]
fn pasid_devtlb_desc_fields_read_back_written_values() {
    let desc = pasid_devtlb_sample();

    assert_eq!((desc.type_lo(), desc.type_hi()), (8, 0));
    assert_eq!(desc.mip(), 0b10011);
    assert_eq!(desc.pfsid_lo(), 0b1001);
    assert_eq!(desc.sid(), 0xBEEF);
    assert_eq!(desc.pasid(), 0x8_1235);
    assert_eq!(desc.pfsid_hi(), 0xA53);
    assert!(desc.g() && desc.s());
    assert_eq!(desc.addr(), 0x8_ABCD_EF01_2345);
}

#[test]
fn pasid_devtlb_desc_survives_raw_round_trip() {
    let desc = pasid_devtlb_sample();

    assert_eq!(PasidDevTlbInvDesc::from_bits(desc.into_bits()), desc);
}

// ---------------------------------------------------------------------------------------
// Type codes (§8.2) and the raw 256-bit slot

#[test]
fn desc_type_of_each_descriptor_new_is_its_type_code() {
    assert_eq!(inv::desc_type(ContextCacheInvDesc::new().into_bits()), 0x1);
    assert_eq!(inv::desc_type(IotlbInvDesc::new().into_bits()), 0x2);
    assert_eq!(inv::desc_type(DevTlbInvDesc::new().into_bits()), 0x3);
    assert_eq!(inv::desc_type(IecInvDesc::new().into_bits()), 0x4);
    assert_eq!(inv::desc_type(InvWaitDesc::new().into_bits()), 0x5);
    assert_eq!(inv::desc_type(PasidIotlbInvDesc::new().into_bits()), 0x6);
    assert_eq!(inv::desc_type(PasidCacheInvDesc::new().into_bits()), 0x7);
    assert_eq!(inv::desc_type(PasidDevTlbInvDesc::new().into_bits()), 0x8);
}

#[test]
fn raw_descriptor_type_of_each_descriptor_new_is_its_variant() {
    let raw = |lo: u128| RawDescriptor { lo, hi: 0 }.desc_type();

    assert_eq!(
        raw(ContextCacheInvDesc::new().into_bits()),
        DescType::ContextCache
    );
    assert_eq!(raw(IotlbInvDesc::new().into_bits()), DescType::Iotlb);
    assert_eq!(raw(DevTlbInvDesc::new().into_bits()), DescType::DevTlb);
    assert_eq!(raw(IecInvDesc::new().into_bits()), DescType::Iec);
    assert_eq!(raw(InvWaitDesc::new().into_bits()), DescType::Wait);
    assert_eq!(
        raw(PasidIotlbInvDesc::new().into_bits()),
        DescType::PasidIotlb
    );
    assert_eq!(
        raw(PasidCacheInvDesc::new().into_bits()),
        DescType::PasidCache
    );
    assert_eq!(
        raw(PasidDevTlbInvDesc::new().into_bits()),
        DescType::PasidDevTlb
    );
}

#[test]
fn desc_type_joins_bits_3_0_with_bits_11_9_as_high_nibble() {
    assert_eq!(inv::desc_type(0b011 << 9 | 0x2), 0x32);
    assert_eq!(inv::desc_type(0b111 << 9 | 0xF), 0x7F);
}

#[test]
fn desc_type_ignores_bits_8_to_4_and_above_11() {
    assert_eq!(inv::desc_type(u128::MAX << 12 | 0x1F0 | 0x5), 0x5);
}

#[test]
fn desc_type_codes_decode_to_reference_types() {
    assert_eq!(DescType::from_code(0x1), DescType::ContextCache);
    assert_eq!(DescType::from_code(0x2), DescType::Iotlb);
    assert_eq!(DescType::from_code(0x3), DescType::DevTlb);
    assert_eq!(DescType::from_code(0x4), DescType::Iec);
    assert_eq!(DescType::from_code(0x5), DescType::Wait);
    assert_eq!(DescType::from_code(0x6), DescType::PasidIotlb);
    assert_eq!(DescType::from_code(0x7), DescType::PasidCache);
    assert_eq!(DescType::from_code(0x8), DescType::PasidDevTlb);
    assert_eq!(DescType::from_code(0x9), DescType::PageGroupResponse);
    assert_eq!(DescType::from_code(0xA), DescType::PageStreamResponse);
    assert_eq!(DescType::from_code(0x0), DescType::Unknown(0x0));
    assert_eq!(DescType::from_code(0xB), DescType::Unknown(0xB));
}

#[test]
fn desc_type_round_trips_every_code() {
    let codes: [u8; 256] = core::array::from_fn(|code| code as u8);

    assert_eq!(codes.map(|code| DescType::from_code(code).code()), codes);
}

#[test]
fn only_types_6_7_and_8_need_a_256bit_queue() {
    let codes: [u8; 16] = core::array::from_fn(|code| code as u8);

    let needs_256 = codes.map(|code| DescType::from_code(code).needs_256bit());

    let mut expected = [false; 16];
    expected[6] = true;
    expected[7] = true;
    expected[8] = true;
    assert_eq!(needs_256, expected);
}

#[test]
fn raw_descriptor_bytes_are_lo_then_hi_little_endian() {
    let raw = RawDescriptor {
        lo: 0x0F0E_0D0C_0B0A_0908_0706_0504_0302_0100,
        hi: 0x1F1E_1D1C_1B1A_1918_1716_1514_1312_1110,
    };
    let expected: [u8; 32] = core::array::from_fn(|i| i as u8);

    assert_eq!(raw.as_bytes(), expected);
}

#[test]
fn raw_descriptor_reads_lo_and_hi_from_little_endian_bytes() {
    let bytes: [u8; 32] = core::array::from_fn(|i| i as u8);

    let raw = RawDescriptor::read_from_bytes(&bytes).unwrap();

    assert_eq!(raw.lo, 0x0F0E_0D0C_0B0A_0908_0706_0504_0302_0100);
    assert_eq!(raw.hi, 0x1F1E_1D1C_1B1A_1918_1716_1514_1312_1110);
}

#[test]
fn raw_descriptor_read_from_queue_bytes_reports_type_of_first_byte() {
    let mut slot = [0u8; 32];
    slot[0] = 0x07;

    let raw = RawDescriptor::read_from_bytes(&slot).unwrap();

    assert_eq!(raw.desc_type(), DescType::PasidCache);
}

#[test]
fn raw_descriptor_survives_byte_round_trip() {
    let raw = RawDescriptor {
        lo: iotlb_sample().into_bits(),
        hi: u128::MAX,
    };

    assert_eq!(RawDescriptor::read_from_bytes(raw.as_bytes()).unwrap(), raw);
}
