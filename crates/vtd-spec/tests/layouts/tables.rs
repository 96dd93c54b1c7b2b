//! Root, context, PASID-directory and PASID-table entries (§2.2–§2.4, §3.1–§3.3), including
//! their little-endian byte images.

use vtd_spec::context::{
    LEGACY_CONTEXT_ENTRY_BYTES, LegacyContextEntry, LegacyTt, SM_CONTEXT_ENTRY_BYTES,
    SmContextEntry, SmContextEntryLo,
};
use vtd_spec::pasid::{
    self, Fspm, PASID_DIR_ENTRY_BYTES, PASID_ENTRY_BYTES, PasidDirEntry, PasidEntry, PasidEntryHi,
    PasidEntryLo, Pgtt,
};
use vtd_spec::root::{LegacyRootEntry, ROOT_ENTRY_BYTES, SmRootEntry};
use zerocopy::{FromBytes, IntoBytes};

// ---------------------------------------------------------------------------------------
// Scalable-mode root entry (§2.3)

fn sm_root_sample() -> SmRootEntry {
    SmRootEntry::new()
        .with_lp(true)
        .with_lctp(0x8_ABCD_EF01_2345)
        .with_up(true)
        .with_uctp(0x9_8765_4321_0FED)
}

#[test]
fn sm_root_entry_each_field_encodes_at_reference_bits() {
    assert_eq!(SmRootEntry::new().with_lp(true).into_bits(), 1 << 0);
    let lctp = SmRootEntry::new().with_lctp(0x8_ABCD_EF01_2345);
    assert_eq!(lctp.into_bits(), 0x8_ABCD_EF01_2345 << 12);
    assert_eq!(SmRootEntry::new().with_up(true).into_bits(), 1 << 64);
    let uctp = SmRootEntry::new().with_uctp(0x9_8765_4321_0FED);
    assert_eq!(uctp.into_bits(), 0x9_8765_4321_0FED << 76);
}

#[test]
fn sm_root_entry_fields_read_back_written_values() {
    let root = sm_root_sample();

    assert!(root.lp() && root.up());
    assert_eq!(root.lctp(), 0x8_ABCD_EF01_2345);
    assert_eq!(root.uctp(), 0x9_8765_4321_0FED);
}

#[test]
fn sm_root_entry_survives_raw_round_trip() {
    let root = sm_root_sample();

    assert_eq!(SmRootEntry::from_bits(root.into_bits()), root);
}

#[test]
fn sm_root_entry_devfn_0_to_127_uses_lower_context_table() {
    let root = SmRootEntry::from_bits(0x0000_0000_000B_B000 << 64 | 0x0000_0000_000A_A001);

    assert_eq!(root.context_table(0x00), (true, 0xAA000));
    assert_eq!(root.context_table(0x7F), (true, 0xAA000));
}

#[test]
fn sm_root_entry_devfn_128_to_255_uses_upper_context_table() {
    // UP clear, UCTP = 0xBB (bits 127:76) -> table at 0xBB000.
    let root = SmRootEntry::from_bits(0xBB << 76 | 0x0000_0000_000A_A001);

    assert_eq!(root.context_table(0x80), (false, 0xBB000));
    assert_eq!(root.context_table(0xFF), (false, 0xBB000));
}

#[test]
fn root_entry_is_16_bytes() {
    assert_eq!(ROOT_ENTRY_BYTES, 16);
    assert_eq!(SmRootEntry::new().as_bytes().len(), 16);
    assert_eq!(LegacyRootEntry::new().as_bytes().len(), 16);
}

// ---------------------------------------------------------------------------------------
// Legacy root and context entries (§2.2)

#[test]
fn legacy_root_entry_each_field_encodes_at_reference_bits() {
    assert_eq!(LegacyRootEntry::new().with_p(true).into_bits(), 1);
    let ctp = LegacyRootEntry::new().with_ctp(0x8_ABCD_EF01_2345);
    assert_eq!(ctp.into_bits(), 0x8_ABCD_EF01_2345 << 12);
}

#[test]
fn legacy_root_entry_fields_read_back_written_values() {
    let root = LegacyRootEntry::new()
        .with_p(true)
        .with_ctp(0x8_ABCD_EF01_2345);

    assert!(root.p());
    assert_eq!(root.ctp(), 0x8_ABCD_EF01_2345);
}

#[test]
fn legacy_root_entry_survives_raw_round_trip() {
    let root = LegacyRootEntry::new()
        .with_p(true)
        .with_ctp(0x8_ABCD_EF01_2345);

    assert_eq!(LegacyRootEntry::from_bits(root.into_bits()), root);
}

#[test]
fn legacy_root_entry_context_table_is_ctp_shifted() {
    let root = LegacyRootEntry::from_bits(0x1234_5001);

    assert_eq!(root.context_table(), 0x1234_5000);
}

fn legacy_context_sample() -> LegacyContextEntry {
    LegacyContextEntry::new()
        .with_p(true)
        .with_fpd(true)
        .with_tt(LegacyTt::PassThrough)
        .with_slptptr(0x8_ABCD_EF01_2345)
        .with_aw(0b101)
        .with_avail(0b1001)
        .with_did(0xBEEF)
}

#[test]
fn legacy_context_entry_each_field_encodes_at_reference_bits() {
    assert_eq!(LegacyContextEntry::new().with_p(true).into_bits(), 1 << 0);
    assert_eq!(LegacyContextEntry::new().with_fpd(true).into_bits(), 1 << 1);
    let tt = LegacyContextEntry::new().with_tt(LegacyTt::PassThrough);
    assert_eq!(tt.into_bits(), 0b10 << 2);
    let slptptr = LegacyContextEntry::new().with_slptptr(0x8_ABCD_EF01_2345);
    assert_eq!(slptptr.into_bits(), 0x8_ABCD_EF01_2345 << 12);
    assert_eq!(
        LegacyContextEntry::new().with_aw(0b101).into_bits(),
        0b101 << 64
    );
    assert_eq!(
        LegacyContextEntry::new().with_avail(0b1001).into_bits(),
        0b1001 << 67
    );
    assert_eq!(
        LegacyContextEntry::new().with_did(0xBEEF).into_bits(),
        0xBEEF << 72
    );
}

#[test]
fn legacy_context_entry_fields_read_back_written_values() {
    let ctx = legacy_context_sample();

    assert!(ctx.p() && ctx.fpd());
    assert_eq!(ctx.tt(), LegacyTt::PassThrough);
    assert_eq!(ctx.slptptr(), 0x8_ABCD_EF01_2345);
    assert_eq!(ctx.aw(), 0b101);
    assert_eq!(ctx.avail(), 0b1001);
    assert_eq!(ctx.did(), 0xBEEF);
}

#[test]
fn legacy_context_entry_survives_raw_round_trip() {
    let ctx = legacy_context_sample();

    assert_eq!(LegacyContextEntry::from_bits(ctx.into_bits()), ctx);
}

#[test]
fn legacy_context_entry_ss_table_is_slptptr_shifted() {
    let ctx = LegacyContextEntry::from_bits(0x1234_5009);

    assert_eq!(ctx.ss_table(), 0x1234_5000);
}

#[test]
fn legacy_tt_round_trips_all_four_encodings() {
    assert_eq!(LegacyTt::from_bits(0b00), LegacyTt::SecondStage);
    assert_eq!(LegacyTt::from_bits(0b01), LegacyTt::SecondStageWithDevTlb);
    assert_eq!(LegacyTt::from_bits(0b10), LegacyTt::PassThrough);
    assert_eq!(LegacyTt::from_bits(0b11), LegacyTt::Reserved);
    assert_eq!(LegacyTt::SecondStage.into_bits(), 0b00);
    assert_eq!(LegacyTt::SecondStageWithDevTlb.into_bits(), 0b01);
    assert_eq!(LegacyTt::PassThrough.into_bits(), 0b10);
    assert_eq!(LegacyTt::Reserved.into_bits(), 0b11);
}

#[test]
fn legacy_context_entry_is_16_bytes() {
    assert_eq!(LEGACY_CONTEXT_ENTRY_BYTES, 16);
    assert_eq!(LegacyContextEntry::new().as_bytes().len(), 16);
}

// ---------------------------------------------------------------------------------------
// Scalable-mode context entry (§2.4)

fn sm_context_lo_sample() -> SmContextEntryLo {
    SmContextEntryLo::new()
        .with_p(true)
        .with_fpd(true)
        .with_dte(true)
        .with_paside(true)
        .with_pre(true)
        .with_pdts(0b101)
        .with_pasiddirptr(0x8_ABCD_EF01_2345)
        .with_rid_pasid(0x8_1235)
        .with_rid_priv(true)
}

#[test]
fn sm_context_entry_each_field_encodes_at_reference_bits() {
    assert_eq!(SmContextEntryLo::new().with_p(true).into_bits(), 1 << 0);
    assert_eq!(SmContextEntryLo::new().with_fpd(true).into_bits(), 1 << 1);
    assert_eq!(SmContextEntryLo::new().with_dte(true).into_bits(), 1 << 2);
    assert_eq!(
        SmContextEntryLo::new().with_paside(true).into_bits(),
        1 << 3
    );
    assert_eq!(SmContextEntryLo::new().with_pre(true).into_bits(), 1 << 4);
    assert_eq!(
        SmContextEntryLo::new().with_pdts(0b101).into_bits(),
        0b101 << 9
    );
    let dir = SmContextEntryLo::new().with_pasiddirptr(0x8_ABCD_EF01_2345);
    assert_eq!(dir.into_bits(), 0x8_ABCD_EF01_2345 << 12);
    let rid_pasid = SmContextEntryLo::new().with_rid_pasid(0x8_1235);
    assert_eq!(rid_pasid.into_bits(), 0x8_1235 << 64);
    assert_eq!(
        SmContextEntryLo::new().with_rid_priv(true).into_bits(),
        1 << 84
    );
}

#[test]
fn sm_context_entry_fields_read_back_written_values() {
    let lo = sm_context_lo_sample();

    assert!(lo.p() && lo.fpd() && lo.dte() && lo.paside() && lo.pre());
    assert_eq!(lo.pdts(), 0b101);
    assert_eq!(lo.pasiddirptr(), 0x8_ABCD_EF01_2345);
    assert_eq!(lo.rid_pasid(), 0x8_1235);
    assert!(lo.rid_priv());
}

#[test]
fn sm_context_entry_lo_survives_raw_round_trip() {
    let lo = sm_context_lo_sample();

    assert_eq!(SmContextEntryLo::from_bits(lo.into_bits()), lo);
}

#[test]
fn sm_context_entry_survives_byte_round_trip() {
    let entry = SmContextEntry {
        lo: sm_context_lo_sample(),
        hi: 0xDEAD_BEEF << 64 | 0x1234,
    };

    assert_eq!(
        SmContextEntry::read_from_bytes(entry.as_bytes()).unwrap(),
        entry
    );
}

#[test]
fn sm_context_entry_bytes_are_little_endian_qwords_in_order() {
    let entry = SmContextEntry {
        lo: sm_context_lo_sample(),
        hi: 0,
    };

    // qword 0 = P|FPD|DTE|PASIDE|PRE (0x1F) | PDTS 0b101 << 9 | PASIDDIRPTR << 12
    //         = 0x8ABC_DEF0_1234_5A1F
    // qword 1 = RID_PASID 0x81235 | RID_PRIV << 20 = 0x0000_0000_0018_1235
    let expected: [u8; 32] = [
        0x1F, 0x5A, 0x34, 0x12, 0xF0, 0xDE, 0xBC, 0x8A, //
        0x35, 0x12, 0x18, 0x00, 0x00, 0x00, 0x00, 0x00, //
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, //
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, //
    ];
    assert_eq!(entry.as_bytes(), expected);
}

#[test]
fn sm_context_entry_reads_fields_from_little_endian_bytes() {
    let mut bytes = [0u8; 32];
    bytes[..11].copy_from_slice(&[
        0x1F, 0x5A, 0x34, 0x12, 0xF0, 0xDE, 0xBC, 0x8A, //
        0x35, 0x12, 0x18,
    ]);
    bytes[16] = 0x01;

    let entry = SmContextEntry::read_from_bytes(&bytes).unwrap();

    assert_eq!(entry.lo, sm_context_lo_sample());
    assert_eq!(entry.hi, 1);
}

#[test]
fn sm_context_entry_is_32_bytes() {
    assert_eq!(SM_CONTEXT_ENTRY_BYTES, 32);
    assert_eq!(SmContextEntry::default().as_bytes().len(), 32);
}

#[test]
fn sm_context_entry_pasid_dir_entries_is_two_to_pdts_plus_7() {
    let pdts = |value: u8| SmContextEntry {
        lo: SmContextEntryLo::from_bits((value as u128) << 9),
        hi: 0,
    };

    assert_eq!(pdts(0).pasid_dir_entries(), 128);
    assert_eq!(pdts(1).pasid_dir_entries(), 256);
    assert_eq!(pdts(7).pasid_dir_entries(), 16384);
}

#[test]
fn sm_context_entry_pasid_dir_is_pasiddirptr_shifted() {
    let entry = SmContextEntry {
        lo: SmContextEntryLo::from_bits(0x1234_5E01),
        hi: 0,
    };

    assert_eq!(entry.pasid_dir(), 0x1234_5000);
}

// ---------------------------------------------------------------------------------------
// PASID directory entry (§3.1, §3.2)

#[test]
fn pasid_dir_entry_each_field_encodes_at_reference_bits() {
    assert_eq!(PasidDirEntry::new().with_p(true).into_bits(), 1 << 0);
    assert_eq!(PasidDirEntry::new().with_fpd(true).into_bits(), 1 << 1);
    let table = PasidDirEntry::new().with_smptblptr(0x8_ABCD_EF01_2345);
    assert_eq!(table.into_bits(), 0x8_ABCD_EF01_2345 << 12);
}

#[test]
fn pasid_dir_entry_fields_read_back_written_values() {
    let dir = PasidDirEntry::new()
        .with_p(true)
        .with_fpd(true)
        .with_smptblptr(0x8_ABCD_EF01_2345);

    assert!(dir.p() && dir.fpd());
    assert_eq!(dir.smptblptr(), 0x8_ABCD_EF01_2345);
}

#[test]
fn pasid_dir_entry_survives_raw_round_trip() {
    let dir = PasidDirEntry::new()
        .with_p(true)
        .with_fpd(true)
        .with_smptblptr(0x8_ABCD_EF01_2345);

    assert_eq!(PasidDirEntry::from_bits(dir.into_bits()), dir);
}

#[test]
fn pasid_dir_entry_pasid_table_is_smptblptr_shifted() {
    assert_eq!(
        PasidDirEntry::from_bits(0x1234_5003).pasid_table(),
        0x1234_5000
    );
}

#[test]
fn pasid_indexing_splits_at_bit_6() {
    assert_eq!(pasid::dir_index(0xF_FFFF), 0x3FFF);
    assert_eq!(pasid::table_index(0xF_FFFF), 0x3F);
    assert_eq!(pasid::dir_index(0x1_2345), 0x48D);
    assert_eq!(pasid::table_index(0x1_2345), 0x05);
    assert_eq!(pasid::PASID_MAX, 0xF_FFFF);
    assert_eq!(pasid::PASID_TABLE_ENTRIES, 64);
}

#[test]
fn pasid_entry_sizes_match_reference() {
    assert_eq!(PASID_DIR_ENTRY_BYTES, 8);
    assert_eq!(PASID_ENTRY_BYTES, 64);
    assert_eq!(PasidDirEntry::new().as_bytes().len(), 8);
    assert_eq!(PasidEntry::default().as_bytes().len(), 64);
}

// ---------------------------------------------------------------------------------------
// PASID table entry (§3.3)

fn pasid_lo_sample() -> PasidEntryLo {
    PasidEntryLo::new()
        .with_p(true)
        .with_fpd(true)
        .with_aw(0b101)
        .with_ssee(true)
        .with_pgtt(Pgtt::Nested)
        .with_ssade(true)
        .with_ssptptr(0x8_ABCD_EF01_2345)
        .with_did(0xBEEF)
        .with_pwsnp(true)
        .with_pgsnp(true)
        .with_cd(true)
        .with_emte(true)
        .with_emt(0b101)
        .with_pwt(true)
        .with_pcd(true)
        .with_pat(0x8765_4321)
}

fn pasid_hi_sample() -> PasidEntryHi {
    PasidEntryHi::new()
        .with_sre(true)
        .with_ere(true)
        .with_fspm(Fspm::Level5)
        .with_wpe(true)
        .with_nxe(true)
        .with_smep(true)
        .with_eafe(true)
        .with_fsptptr(0x9_8765_4321_0FED)
}

fn pasid_entry_sample() -> PasidEntry {
    PasidEntry {
        lo: pasid_lo_sample(),
        hi: pasid_hi_sample(),
        rsvd: [0, 0],
    }
}

#[test]
fn pasid_entry_lo_each_field_encodes_at_reference_bits() {
    assert_eq!(PasidEntryLo::new().with_p(true).into_bits(), 1 << 0);
    assert_eq!(PasidEntryLo::new().with_fpd(true).into_bits(), 1 << 1);
    assert_eq!(PasidEntryLo::new().with_aw(0b101).into_bits(), 0b101 << 2);
    assert_eq!(PasidEntryLo::new().with_ssee(true).into_bits(), 1 << 5);
    assert_eq!(
        PasidEntryLo::new().with_pgtt(Pgtt::Nested).into_bits(),
        0b011 << 6
    );
    assert_eq!(
        PasidEntryLo::new().with_pgtt(Pgtt::PassThrough).into_bits(),
        0b100 << 6
    );
    assert_eq!(PasidEntryLo::new().with_ssade(true).into_bits(), 1 << 9);
    let ssptptr = PasidEntryLo::new().with_ssptptr(0x8_ABCD_EF01_2345);
    assert_eq!(ssptptr.into_bits(), 0x8_ABCD_EF01_2345 << 12);
    assert_eq!(
        PasidEntryLo::new().with_did(0xBEEF).into_bits(),
        0xBEEF << 64
    );
    assert_eq!(PasidEntryLo::new().with_pwsnp(true).into_bits(), 1 << 87);
    assert_eq!(PasidEntryLo::new().with_pgsnp(true).into_bits(), 1 << 88);
    assert_eq!(PasidEntryLo::new().with_cd(true).into_bits(), 1 << 89);
    assert_eq!(PasidEntryLo::new().with_emte(true).into_bits(), 1 << 90);
    assert_eq!(PasidEntryLo::new().with_emt(0b101).into_bits(), 0b101 << 91);
    assert_eq!(PasidEntryLo::new().with_pwt(true).into_bits(), 1 << 94);
    assert_eq!(PasidEntryLo::new().with_pcd(true).into_bits(), 1 << 95);
    assert_eq!(
        PasidEntryLo::new().with_pat(0x8765_4321).into_bits(),
        0x8765_4321 << 96
    );
}

#[test]
fn pasid_entry_hi_each_field_encodes_at_reference_bits() {
    assert_eq!(
        PasidEntryHi::new().with_sre(true).into_bits(),
        1 << (128 - 128)
    );
    assert_eq!(
        PasidEntryHi::new().with_ere(true).into_bits(),
        1 << (129 - 128)
    );
    let fspm = PasidEntryHi::new().with_fspm(Fspm::Level5);
    assert_eq!(fspm.into_bits(), 0b01 << (130 - 128));
    assert_eq!(
        PasidEntryHi::new().with_wpe(true).into_bits(),
        1 << (132 - 128)
    );
    assert_eq!(
        PasidEntryHi::new().with_nxe(true).into_bits(),
        1 << (133 - 128)
    );
    assert_eq!(
        PasidEntryHi::new().with_smep(true).into_bits(),
        1 << (134 - 128)
    );
    assert_eq!(
        PasidEntryHi::new().with_eafe(true).into_bits(),
        1 << (135 - 128)
    );
    let fsptptr = PasidEntryHi::new().with_fsptptr(0x9_8765_4321_0FED);
    assert_eq!(fsptptr.into_bits(), 0x9_8765_4321_0FED << (140 - 128));
}

#[test]
fn pasid_entry_lo_fields_read_back_written_values() {
    let lo = pasid_lo_sample();

    assert!(lo.p() && lo.fpd());
    assert_eq!(lo.aw(), 0b101);
    assert!(lo.ssee());
    assert_eq!(lo.pgtt(), Pgtt::Nested);
    assert!(lo.ssade());
    assert_eq!(lo.ssptptr(), 0x8_ABCD_EF01_2345);
    assert_eq!(lo.did(), 0xBEEF);
    assert!(lo.pwsnp() && lo.pgsnp() && lo.cd() && lo.emte());
    assert_eq!(lo.emt(), 0b101);
    assert!(lo.pwt() && lo.pcd());
    assert_eq!(lo.pat(), 0x8765_4321);
}

#[test]
fn pasid_entry_hi_fields_read_back_written_values() {
    let hi = pasid_hi_sample();

    assert!(hi.sre() && hi.ere());
    assert_eq!(hi.fspm(), Fspm::Level5);
    assert!(hi.wpe() && hi.nxe() && hi.smep() && hi.eafe());
    assert_eq!(hi.fsptptr(), 0x9_8765_4321_0FED);
}

#[test]
fn pasid_entry_halves_survive_raw_round_trip() {
    let lo = pasid_lo_sample();
    let hi = pasid_hi_sample();

    assert_eq!(PasidEntryLo::from_bits(lo.into_bits()), lo);
    assert_eq!(PasidEntryHi::from_bits(hi.into_bits()), hi);
}

#[test]
fn pasid_entry_to_words_gives_qwords_in_absolute_bit_order() {
    let entry = PasidEntry {
        lo: PasidEntryLo::new()
            .with_p(true)
            .with_aw(0b010)
            .with_pgtt(Pgtt::Nested)
            .with_ssptptr(0x12345)
            .with_did(0xBEEF)
            .with_pat(0x8765_4321),
        hi: PasidEntryHi::new()
            .with_sre(true)
            .with_fspm(Fspm::Level5)
            .with_fsptptr(0xABCDE),
        rsvd: [
            0x0706_0504_0302_0100 << 64 | 0x0F0E_0D0C_0B0A_0908,
            0x1111 << 64 | 0x2222,
        ],
    };

    // qword 0: P | AW 010 << 2 | PGTT 011 << 6 | SSPTPTR 0x12345 << 12
    // qword 1: DID (79:64) | PAT (127:96)
    // qword 2: SRE (128) | FSPM 01 (131:130) | FSPTPTR 0xABCDE (191:140)
    assert_eq!(
        entry.to_words(),
        [
            0x0000_0000_1234_50C9,
            0x8765_4321_0000_BEEF,
            0x0000_0000_ABCD_E005,
            0x0000_0000_0000_0000,
            0x0F0E_0D0C_0B0A_0908,
            0x0706_0504_0302_0100,
            0x0000_0000_0000_2222,
            0x0000_0000_0000_1111,
        ]
    );
}

#[test]
fn pasid_entry_from_words_reads_fields_at_absolute_bits() {
    let words = [
        0x0000_0000_1234_50C9,
        0x8765_4321_0000_BEEF,
        0x0000_0000_ABCD_E005,
        0,
        0,
        0,
        0,
        0,
    ];

    let entry = PasidEntry::from_words(words);

    assert!(entry.lo.p());
    assert_eq!(entry.lo.aw(), 0b010);
    assert_eq!(entry.lo.pgtt(), Pgtt::Nested);
    assert_eq!(entry.ss_table(), 0x1234_5000);
    assert_eq!(entry.lo.did(), 0xBEEF);
    assert_eq!(entry.lo.pat(), 0x8765_4321);
    assert!(entry.hi.sre());
    assert_eq!(entry.hi.fspm(), Fspm::Level5);
    assert_eq!(entry.fs_table(), 0xABCD_E000);
}

#[test]
fn pasid_entry_survives_words_round_trip() {
    let entry = PasidEntry {
        rsvd: [u128::MAX, 0x1234 << 100],
        ..pasid_entry_sample()
    };

    assert_eq!(PasidEntry::from_words(entry.to_words()), entry);
}

#[test]
fn pasid_entry_bytes_are_little_endian_qwords_in_order() {
    let entry = PasidEntry::from_words([
        0x0000_0000_1234_50C9,
        0x8765_4321_0000_BEEF,
        0x0000_0000_ABCD_E005,
        0,
        0,
        0,
        0,
        0x8000_0000_0000_0001,
    ]);
    let mut expected = [0u8; 64];
    expected[..24].copy_from_slice(&[
        0xC9, 0x50, 0x34, 0x12, 0x00, 0x00, 0x00, 0x00, //
        0xEF, 0xBE, 0x00, 0x00, 0x21, 0x43, 0x65, 0x87, //
        0x05, 0xE0, 0xCD, 0xAB, 0x00, 0x00, 0x00, 0x00, //
    ]);
    expected[56] = 0x01;
    expected[63] = 0x80;

    assert_eq!(entry.as_bytes(), expected);
}

#[test]
fn pasid_entry_reads_fields_from_little_endian_bytes() {
    let mut bytes = [0u8; 64];
    bytes[..24].copy_from_slice(&[
        0xC9, 0x50, 0x34, 0x12, 0x00, 0x00, 0x00, 0x00, //
        0xEF, 0xBE, 0x00, 0x00, 0x21, 0x43, 0x65, 0x87, //
        0x05, 0xE0, 0xCD, 0xAB, 0x00, 0x00, 0x00, 0x00, //
    ]);

    let entry = PasidEntry::read_from_bytes(&bytes).unwrap();

    assert_eq!(entry.lo.pgtt(), Pgtt::Nested);
    assert_eq!(entry.lo.did(), 0xBEEF);
    assert_eq!(entry.lo.pat(), 0x8765_4321);
    assert_eq!(entry.ss_table(), 0x1234_5000);
    assert_eq!(entry.hi.fspm(), Fspm::Level5);
    assert_eq!(entry.fs_table(), 0xABCD_E000);
}

#[test]
fn pasid_entry_survives_byte_round_trip() {
    let entry = PasidEntry {
        rsvd: [0x55 << 64, 0xAA],
        ..pasid_entry_sample()
    };

    assert_eq!(
        PasidEntry::read_from_bytes(entry.as_bytes()).unwrap(),
        entry
    );
}

#[test]
fn pgtt_round_trips_all_eight_encodings() {
    assert_eq!(Pgtt::from_bits(0b000), Pgtt::Reserved0);
    assert_eq!(Pgtt::from_bits(0b001), Pgtt::FirstStage);
    assert_eq!(Pgtt::from_bits(0b010), Pgtt::SecondStage);
    assert_eq!(Pgtt::from_bits(0b011), Pgtt::Nested);
    assert_eq!(Pgtt::from_bits(0b100), Pgtt::PassThrough);
    assert_eq!(Pgtt::from_bits(0b101), Pgtt::Reserved5);
    assert_eq!(Pgtt::from_bits(0b110), Pgtt::Reserved6);
    assert_eq!(Pgtt::from_bits(0b111), Pgtt::Reserved7);
    let codes: [u8; 8] = core::array::from_fn(|code| code as u8);
    assert_eq!(codes.map(|code| Pgtt::from_bits(code).into_bits()), codes);
}

#[test]
fn pgtt_defines_only_001_to_100() {
    let codes: [u8; 8] = core::array::from_fn(|code| code as u8);

    let defined = codes.map(|code| Pgtt::from_bits(code).is_defined());

    assert_eq!(
        defined,
        [false, true, true, true, true, false, false, false]
    );
}

#[test]
fn pgtt_stage_use_follows_reference_table() {
    assert!(Pgtt::FirstStage.uses_first_stage() && !Pgtt::FirstStage.uses_second_stage());
    assert!(!Pgtt::SecondStage.uses_first_stage() && Pgtt::SecondStage.uses_second_stage());
    assert!(Pgtt::Nested.uses_first_stage() && Pgtt::Nested.uses_second_stage());
    assert!(!Pgtt::PassThrough.uses_first_stage() && !Pgtt::PassThrough.uses_second_stage());
}

#[test]
fn fspm_round_trips_all_four_encodings() {
    assert_eq!(Fspm::from_bits(0b00), Fspm::Level4);
    assert_eq!(Fspm::from_bits(0b01), Fspm::Level5);
    assert_eq!(Fspm::from_bits(0b10), Fspm::Reserved2);
    assert_eq!(Fspm::from_bits(0b11), Fspm::Reserved3);
    let codes: [u8; 4] = [0, 1, 2, 3];
    assert_eq!(codes.map(|code| Fspm::from_bits(code).into_bits()), codes);
}

#[test]
fn fspm_levels_are_4_and_5_for_defined_modes_only() {
    assert_eq!(Fspm::Level4.levels(), Some(4));
    assert_eq!(Fspm::Level5.levels(), Some(5));
    assert_eq!(Fspm::Reserved2.levels(), None);
    assert_eq!(Fspm::Reserved3.levels(), None);
}
