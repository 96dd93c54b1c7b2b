//! First-stage (§4.1–§4.3) and second-stage (§5.1–§5.3) paging entries and the address
//! helpers of `addr`.

use vtd_spec::addr::{self, PageSize};
use vtd_spec::first_stage::FsEntry;
use vtd_spec::second_stage::SsEntry;
use zerocopy::{FromBytes, IntoBytes};

// ---------------------------------------------------------------------------------------
// First-stage entry (§4.2)

fn fs_sample() -> FsEntry {
    FsEntry::new()
        .with_p(true)
        .with_rw(true)
        .with_us(true)
        .with_pwt(true)
        .with_pcd(true)
        .with_a(true)
        .with_d(true)
        .with_ps(true)
        .with_g(true)
        .with_ign9(true)
        .with_ea(true)
        .with_ign11(true)
        .with_addr(0x80_1234_5679)
        .with_ign52(0x4A5)
        .with_xd(true)
}

#[test]
fn fs_entry_each_field_encodes_at_reference_bits() {
    assert_eq!(FsEntry::new().with_p(true).into_bits(), 1 << 0);
    assert_eq!(FsEntry::new().with_rw(true).into_bits(), 1 << 1);
    assert_eq!(FsEntry::new().with_us(true).into_bits(), 1 << 2);
    assert_eq!(FsEntry::new().with_pwt(true).into_bits(), 1 << 3);
    assert_eq!(FsEntry::new().with_pcd(true).into_bits(), 1 << 4);
    assert_eq!(FsEntry::new().with_a(true).into_bits(), 1 << 5);
    assert_eq!(FsEntry::new().with_d(true).into_bits(), 1 << 6);
    assert_eq!(FsEntry::new().with_ps(true).into_bits(), 1 << 7);
    assert_eq!(FsEntry::new().with_g(true).into_bits(), 1 << 8);
    assert_eq!(FsEntry::new().with_ign9(true).into_bits(), 1 << 9);
    assert_eq!(FsEntry::new().with_ea(true).into_bits(), 1 << 10);
    assert_eq!(FsEntry::new().with_ign11(true).into_bits(), 1 << 11);
    assert_eq!(
        FsEntry::new().with_addr(0x80_1234_5679).into_bits(),
        0x80_1234_5679 << 12
    );
    assert_eq!(FsEntry::new().with_ign52(0x4A5).into_bits(), 0x4A5 << 52);
    assert_eq!(FsEntry::new().with_xd(true).into_bits(), 1 << 63);
}

#[test]
fn fs_entry_fields_read_back_written_values() {
    let e = fs_sample();

    assert!(e.p() && e.rw() && e.us() && e.pwt() && e.pcd() && e.a() && e.d() && e.ps());
    assert!(e.g() && e.ign9() && e.ea() && e.ign11() && e.xd());
    assert_eq!(e.addr(), 0x80_1234_5679);
    assert_eq!(e.ign52(), 0x4A5);
}

#[test]
fn fs_entry_survives_raw_round_trip() {
    let e = fs_sample();

    assert_eq!(FsEntry::from_bits(e.into_bits()), e);
}

#[test]
fn fs_entry_bytes_are_little_endian() {
    let e = FsEntry::from_bits(0x8000_0001_2345_6067);

    assert_eq!(
        e.as_bytes(),
        [0x67, 0x60, 0x45, 0x23, 0x01, 0x00, 0x00, 0x80]
    );
    assert_eq!(FsEntry::read_from_bytes(e.as_bytes()).unwrap(), e);
}

#[test]
fn fs_entry_flag_masks_match_reference_bits() {
    assert_eq!(FsEntry::A, 1 << 5);
    assert_eq!(FsEntry::D, 1 << 6);
    assert_eq!(FsEntry::EA, 1 << 10);
    assert_eq!(FsEntry::ADDR_MASK, 0x000F_FFFF_FFFF_F000);
}

#[test]
fn fs_entry_table_sets_present_rights_and_address_bits_51_to_12() {
    let e = FsEntry::table(0x0000_1234_5678_9FFF, true, true);

    assert_eq!(e.into_bits(), 0x0000_1234_5678_9007);
}

#[test]
fn fs_entry_table_drops_bits_above_51() {
    let e = FsEntry::table(0xFFF0_0000_0000_1000, false, true);

    assert_eq!(e.into_bits(), 0x0000_0000_0000_1005);
}

#[test]
fn fs_entry_4k_leaf_has_no_ps_bit() {
    let e = FsEntry::leaf(0x0000_0001_2345_6FFF, PageSize::Size4K, true, false);

    assert_eq!(e.into_bits(), 0x0000_0001_2345_6003);
}

#[test]
fn fs_entry_2m_leaf_sets_ps_and_aligns_frame_to_2m() {
    let e = FsEntry::leaf(0x0000_0001_2345_6789, PageSize::Size2M, false, true);

    assert_eq!(e.into_bits(), 0x0000_0001_2340_0085);
}

#[test]
fn fs_entry_1g_leaf_sets_ps_and_aligns_frame_to_1g() {
    let e = FsEntry::leaf(0x0000_0001_7FFF_FFFF, PageSize::Size1G, true, true);

    assert_eq!(e.into_bits(), 0x0000_0001_4000_0087);
}

#[test]
fn fs_entry_leaf_without_rights_is_only_present() {
    let e = FsEntry::leaf(0, PageSize::Size4K, false, false);

    assert_eq!(e.into_bits(), 1);
}

#[test]
fn fs_entry_addresses_come_from_bits_51_to_12() {
    // Bit 63 (XD), 62:52 (ignored) and the low flags must not leak into addresses;
    // bit 12 is PAT in a large leaf and is not part of its frame.
    let e = FsEntry::from_bits(0xFFF0_0001_2345_7FE7);

    assert_eq!(e.table_addr(), 0x0000_0001_2345_7000);
    assert_eq!(e.frame_addr(PageSize::Size4K), 0x0000_0001_2345_7000);
    assert_eq!(e.frame_addr(PageSize::Size2M), 0x0000_0001_2340_0000);
    assert_eq!(e.frame_addr(PageSize::Size1G), 0x0000_0001_0000_0000);
}

#[test]
fn fs_entry_large_leaf_reserved_bits_match_reference() {
    assert_eq!(FsEntry::large_leaf_reserved(PageSize::Size4K), 0);
    assert_eq!(
        FsEntry::large_leaf_reserved(PageSize::Size2M),
        0x0000_0000_001F_E000
    );
    assert_eq!(
        FsEntry::large_leaf_reserved(PageSize::Size1G),
        0x0000_0000_3FFF_E000
    );
}

#[test]
fn fs_entry_addr_bits_above_width_cover_width_to_51() {
    assert_eq!(FsEntry::addr_bits_above(39), 0x000F_FF80_0000_0000);
    assert_eq!(FsEntry::addr_bits_above(48), 0x000F_0000_0000_0000);
    assert_eq!(FsEntry::addr_bits_above(52), 0);
}

// ---------------------------------------------------------------------------------------
// Second-stage entry (§5.2)

fn ss_sample() -> SsEntry {
    SsEntry::new()
        .with_r(true)
        .with_w(true)
        .with_x(true)
        .with_emt(0b101)
        .with_ipat(true)
        .with_ps(true)
        .with_a(true)
        .with_d(true)
        .with_ign10(true)
        .with_snp(true)
        .with_addr(0x80_1234_5679)
        .with_ign52(0x2A5)
        .with_tm(true)
        .with_ign63(true)
}

#[test]
fn ss_entry_each_field_encodes_at_reference_bits() {
    assert_eq!(SsEntry::new().with_r(true).into_bits(), 1 << 0);
    assert_eq!(SsEntry::new().with_w(true).into_bits(), 1 << 1);
    assert_eq!(SsEntry::new().with_x(true).into_bits(), 1 << 2);
    assert_eq!(SsEntry::new().with_emt(0b101).into_bits(), 0b101 << 3);
    assert_eq!(SsEntry::new().with_ipat(true).into_bits(), 1 << 6);
    assert_eq!(SsEntry::new().with_ps(true).into_bits(), 1 << 7);
    assert_eq!(SsEntry::new().with_a(true).into_bits(), 1 << 8);
    assert_eq!(SsEntry::new().with_d(true).into_bits(), 1 << 9);
    assert_eq!(SsEntry::new().with_ign10(true).into_bits(), 1 << 10);
    assert_eq!(SsEntry::new().with_snp(true).into_bits(), 1 << 11);
    assert_eq!(
        SsEntry::new().with_addr(0x80_1234_5679).into_bits(),
        0x80_1234_5679 << 12
    );
    assert_eq!(SsEntry::new().with_ign52(0x2A5).into_bits(), 0x2A5 << 52);
    assert_eq!(SsEntry::new().with_tm(true).into_bits(), 1 << 62);
    assert_eq!(SsEntry::new().with_ign63(true).into_bits(), 1 << 63);
}

#[test]
fn ss_entry_fields_read_back_written_values() {
    let e = ss_sample();

    assert!(e.r() && e.w() && e.x());
    assert_eq!(e.emt(), 0b101);
    assert!(e.ipat() && e.ps() && e.a() && e.d() && e.ign10() && e.snp());
    assert_eq!(e.addr(), 0x80_1234_5679);
    assert_eq!(e.ign52(), 0x2A5);
    assert!(e.tm() && e.ign63());
}

#[test]
fn ss_entry_survives_raw_round_trip() {
    let e = ss_sample();

    assert_eq!(SsEntry::from_bits(e.into_bits()), e);
}

#[test]
fn ss_entry_flag_masks_match_reference_bits() {
    assert_eq!(SsEntry::A, 1 << 8);
    assert_eq!(SsEntry::D, 1 << 9);
    assert_eq!(SsEntry::SNP, 1 << 11);
    assert_eq!(SsEntry::TM, 1 << 62);
    assert_eq!(SsEntry::ADDR_MASK, 0x000F_FFFF_FFFF_F000);
}

#[test]
fn ss_entry_is_present_when_r_or_w_is_set() {
    assert!(SsEntry::from_bits(0b001).present());
    assert!(SsEntry::from_bits(0b010).present());
    assert!(!SsEntry::from_bits(0b100).present());
    assert!(!SsEntry::from_bits(0xFFFF_FFFF_FFFF_FFF8).present());
}

#[test]
fn ss_entry_with_x_counts_execute_only_as_present() {
    assert!(SsEntry::from_bits(0b100).present_with_x());
    assert!(!SsEntry::from_bits(0xFFFF_FFFF_FFFF_FFF8).present_with_x());
}

#[test]
fn ss_entry_table_sets_rights_and_address_bits_51_to_12() {
    let e = SsEntry::table(0xFFF0_0012_3456_7FFF, true, true);

    assert_eq!(e.into_bits(), 0x0000_0012_3456_7003);
}

#[test]
fn ss_entry_4k_leaf_has_no_ps_bit() {
    let e = SsEntry::leaf(0x0000_0001_2345_6FFF, PageSize::Size4K, true, false);

    assert_eq!(e.into_bits(), 0x0000_0001_2345_6001);
}

#[test]
fn ss_entry_2m_leaf_sets_ps_and_aligns_frame_to_2m() {
    let e = SsEntry::leaf(0x0000_0001_2345_6789, PageSize::Size2M, false, true);

    assert_eq!(e.into_bits(), 0x0000_0001_2340_0082);
}

#[test]
fn ss_entry_1g_leaf_sets_ps_and_aligns_frame_to_1g() {
    let e = SsEntry::leaf(0x0000_0001_7FFF_FFFF, PageSize::Size1G, true, true);

    assert_eq!(e.into_bits(), 0x0000_0001_4000_0083);
}

#[test]
fn ss_entry_addresses_come_from_bits_51_to_12() {
    let e = SsEntry::from_bits(0xFFF0_0001_2345_7FFF);

    assert_eq!(e.table_addr(), 0x0000_0001_2345_7000);
    assert_eq!(e.frame_addr(PageSize::Size2M), 0x0000_0001_2340_0000);
    assert_eq!(e.frame_addr(PageSize::Size1G), 0x0000_0001_0000_0000);
}

#[test]
fn ss_entry_large_leaf_reserved_bits_match_reference() {
    assert_eq!(SsEntry::large_leaf_reserved(PageSize::Size4K), 0);
    assert_eq!(
        SsEntry::large_leaf_reserved(PageSize::Size2M),
        0x0000_0000_001F_F000
    );
    assert_eq!(
        SsEntry::large_leaf_reserved(PageSize::Size1G),
        0x0000_0000_3FFF_F000
    );
}

#[test]
fn ss_entry_addr_bits_above_width_cover_width_to_51() {
    assert_eq!(SsEntry::addr_bits_above(39), 0x000F_FF80_0000_0000);
    assert_eq!(SsEntry::addr_bits_above(48), 0x000F_0000_0000_0000);
    assert_eq!(SsEntry::addr_bits_above(52), 0);
}

// ---------------------------------------------------------------------------------------
// Address helpers (§4.1, §5.1)

#[test]
fn four_level_canonical_addresses_sign_extend_bit_47() {
    assert!(addr::is_canonical(0x0000_7FFF_FFFF_FFFF, 4));
    assert!(addr::is_canonical(0xFFFF_8000_0000_0000, 4));
    assert!(!addr::is_canonical(0x0000_8000_0000_0000, 4));
    assert!(!addr::is_canonical(0xFFFF_7FFF_FFFF_FFFF, 4));
    assert!(!addr::is_canonical(0x8000_0000_0000_0000, 4));
}

#[test]
fn five_level_canonical_addresses_sign_extend_bit_56() {
    assert!(addr::is_canonical(0x00FF_FFFF_FFFF_FFFF, 5));
    assert!(addr::is_canonical(0xFF00_0000_0000_0000, 5));
    assert!(addr::is_canonical(0x0000_8000_0000_0000, 5));
    assert!(!addr::is_canonical(0x0100_0000_0000_0000, 5));
    assert!(!addr::is_canonical(0xFEFF_FFFF_FFFF_FFFF, 5));
}

#[test]
fn table_index_takes_nine_bits_per_level_from_bit_12() {
    // Level 5: bits 56:48, 4: 47:39, 3: 38:30, 2: 29:21, 1: 20:12.
    let ia = 0x1A5 << 48 | 0x0F3 << 39 | 0x101 << 30 | 0x1FF << 21 | 0x0AA << 12 | 0xABC;

    assert_eq!(addr::table_index(ia, 5), 0x1A5);
    assert_eq!(addr::table_index(ia, 4), 0x0F3);
    assert_eq!(addr::table_index(ia, 3), 0x101);
    assert_eq!(addr::table_index(ia, 2), 0x1FF);
    assert_eq!(addr::table_index(ia, 1), 0x0AA);
}

#[test]
fn table_index_ignores_bits_above_the_level() {
    assert_eq!(addr::table_index(0xFFFF_FFFF_FFFF_FFFF, 4), 0x1FF);
    assert_eq!(addr::table_index(0xFE00_0000_0000_0000, 5), 0);
}

#[test]
fn aw_encodings_give_reference_widths_levels_and_sagaw_bits() {
    assert_eq!(
        (addr::agaw_width(1), addr::ss_levels(1), addr::sagaw_bit(1)),
        (39, 3, 0b0010)
    );
    assert_eq!(
        (addr::agaw_width(2), addr::ss_levels(2), addr::sagaw_bit(2)),
        (48, 4, 0b0100)
    );
    assert_eq!(
        (addr::agaw_width(3), addr::ss_levels(3), addr::sagaw_bit(3)),
        (57, 5, 0b1000)
    );
}

#[test]
fn page_sizes_are_4k_2m_1g_at_levels_1_2_3() {
    assert_eq!(
        (PageSize::Size4K.bytes(), PageSize::Size4K.level()),
        (0x1000, 1)
    );
    assert_eq!(
        (PageSize::Size2M.bytes(), PageSize::Size2M.level()),
        (0x20_0000, 2)
    );
    assert_eq!(
        (PageSize::Size1G.bytes(), PageSize::Size1G.level()),
        (0x4000_0000, 3)
    );
}

#[test]
fn interrupt_range_is_fee00000_to_feefffff() {
    assert!(addr::in_interrupt_range(0xFEE0_0000));
    assert!(addr::in_interrupt_range(0xFEEF_FFFF));
    assert!(!addr::in_interrupt_range(0xFEDF_FFFF));
    assert!(!addr::in_interrupt_range(0xFEF0_0000));
}
