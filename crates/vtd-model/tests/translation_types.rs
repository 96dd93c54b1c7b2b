//! Every translation type (PGTT of §3.4, legacy TT of §2.2), both first-stage depths
//! (§4.1), every page size of each stage (§4.1, §5.1) with the capability gates of §4.3
//! and §5.3, every second-stage depth (§5.1), the page size of a nested translation
//! (§6.1 step 10) and the canonical-address check (§4.1, §6.1 step 1).

mod common;
mod support;

use common::{GUEST_BASE, GUEST_SIZE, Nested};
use support::{HPA, IOVA, Legacy, PASID, SID, Sm, config, legacy_context};
use vtd_model::build::{Format, Leaf, PageTable};
use vtd_model::config::UnitConfig;
use vtd_model::fault::FaultStage;
use vtd_model::request::{AddressType, Request, TranslationKind};
use vtd_spec::addr::PageSize;
use vtd_spec::context::{LegacyTt, SmContextEntry};
use vtd_spec::fault::FaultReason;
use vtd_spec::pasid::PasidEntry;

/// 2 MiB-aligned input and output pages.
const IOVA_2M: u64 = 0x7_4020_0000;
const HPA_2M: u64 = 0x4_5660_0000;
/// 1 GiB-aligned input and output pages.
const IOVA_1G: u64 = 0x80_4000_0000;
const HPA_1G: u64 = 0x4_4000_0000;
/// Needs bits 56:48, so only a 5-level first stage or a 5-level second stage maps it;
/// bits 63:56 are zero and bit 56 is zero, so it is canonical for 5-level paging.
const IOVA_57: u64 = 0x00AB_CDEF_1234_5000;
/// Guest-physical pages of the nested tests.
const GPA: u64 = 0x0020_5000;
const GPA_2M: u64 = 0x0040_0000;

fn read(addr: u64) -> Request {
    Request::read(SID, addr).with_pasid(PASID)
}

/// The default unit advertising 39-, 48- and 57-bit second stages (SAGAW bits 1–3).
fn all_sagaw() -> UnitConfig {
    let mut c = config();
    c.cap = c.cap.with_sagaw(0b0_1110);
    c
}

// ---------------------------------------------------------------------------------------
// PGTT (§3.4) and legacy TT (§2.2).
// ---------------------------------------------------------------------------------------

#[test]
fn pgtt_001_first_stage_only_maps_input_to_host_physical_page() {
    let sm = Sm::first_stage(config(), 4);
    sm.map_fs(IOVA, HPA, PageSize::Size4K, Leaf::read_write());

    let t = sm.translate(&read(IOVA + 0x123)).unwrap();

    assert_eq!(t.kind, TranslationKind::FirstStage);
    assert_eq!(t.hpa, HPA + 0x123);
    assert_eq!(t.gpa, None);
    assert_eq!(t.did, Some(support::DID));
}

#[test]
fn pgtt_001_reads_first_stage_tables_at_host_physical_addresses_without_second_stage() {
    let sm = Sm::first_stage(config(), 4);
    sm.map_fs(IOVA, HPA, PageSize::Size4K, Leaf::read_write());
    sm.unit.reset_stats();

    sm.translate(&read(IOVA)).unwrap();

    let s = sm.unit.stats();
    assert_eq!(s.fs_entry_reads, 4);
    assert_eq!(s.ss_reads_for_fs_tables + s.ss_reads_final, 0);
}

#[test]
fn pgtt_010_second_stage_only_translates_request_without_pasid_through_pasid_0() {
    let sm = Sm::second_stage(config(), 2);
    sm.map_ss(IOVA, HPA, PageSize::Size4K, Leaf::read_write());
    sm.set_pasid_entry(PASID, PasidEntry::default());

    let t = sm.translate(&Request::read(SID, IOVA + 0x8)).unwrap();

    assert_eq!(t.kind, TranslationKind::SecondStage);
    assert_eq!(t.hpa, HPA + 0x8);
}

#[test]
fn pgtt_010_second_stage_only_translates_request_with_pasid() {
    let sm = Sm::second_stage(config(), 2);
    sm.map_ss(IOVA, HPA, PageSize::Size4K, Leaf::read_write());
    sm.set_pasid_entry(0, PasidEntry::default());

    let t = sm.translate(&read(IOVA + 0x8)).unwrap();

    assert_eq!(t.kind, TranslationKind::SecondStage);
    assert_eq!(t.hpa, HPA + 0x8);
    assert_eq!(t.gpa, None);
}

#[test]
fn pgtt_010_reads_only_second_stage_entries() {
    let sm = Sm::second_stage(config(), 2);
    sm.map_ss(IOVA, HPA, PageSize::Size4K, Leaf::read_write());
    sm.unit.reset_stats();

    sm.translate(&read(IOVA)).unwrap();

    let s = sm.unit.stats();
    assert_eq!(s.ss_reads_final, 4);
    assert_eq!(s.fs_entry_reads + s.ss_reads_for_fs_tables, 0);
}

#[test]
fn pgtt_011_nested_maps_first_stage_output_through_second_stage() {
    let n = Nested::new();
    n.map(IOVA, GPA, PageSize::Size4K, Leaf::read_write());

    let t = n.unit.translate(&read(IOVA + 0x40)).unwrap();

    assert_eq!(t.kind, TranslationKind::Nested);
    assert_eq!(t.gpa, Some(GPA + 0x40));
    assert_eq!(t.hpa, GUEST_BASE + GPA + 0x40);
}

#[test]
fn pgtt_100_pass_through_returns_the_input_address() {
    let sm = Sm::pass_through(config());

    let t = sm.translate(&read(0x1234_5678)).unwrap();

    assert_eq!(t.kind, TranslationKind::PassThrough);
    assert_eq!(t.hpa, 0x1234_5678);
    assert_eq!(t.did, Some(support::DID));
}

#[test]
fn pgtt_100_pass_through_reads_no_paging_entry() {
    let sm = Sm::pass_through(config());
    sm.unit.reset_stats();

    sm.translate(&Request::write(SID, 0x1234_5678)).unwrap();

    assert_eq!(sm.unit.stats().paging_reads(), 0);
}

#[test]
fn legacy_tt_00_translates_through_second_stage() {
    let l = Legacy::new(config());
    l.map(IOVA, HPA, PageSize::Size4K, Leaf::read_write());

    let t = l.translate(&Request::write(SID, IOVA + 0xFF0)).unwrap();

    assert_eq!(t.kind, TranslationKind::SecondStage);
    assert_eq!(t.hpa, HPA + 0xFF0);
    assert_eq!(t.did, Some(support::DID));
}

#[test]
fn legacy_tt_01_translates_a_translation_request() {
    let l = Legacy::new(config());
    l.map(IOVA, HPA, PageSize::Size4K, Leaf::read_write());
    l.set_context(legacy_context(l.ss_root).with_tt(LegacyTt::SecondStageWithDevTlb));
    let req = Request::read(SID, IOVA).with_address_type(AddressType::TranslationRequest);

    let t = l.translate(&req).unwrap();

    assert_eq!(t.hpa, HPA);
}

#[test]
fn legacy_tt_10_passes_the_input_address_through() {
    let l = Legacy::new(config());
    l.set_context(legacy_context(0).with_tt(LegacyTt::PassThrough));

    let t = l.translate(&Request::read(SID, 0x9876_5432)).unwrap();

    assert_eq!(t.kind, TranslationKind::PassThrough);
    assert_eq!(t.hpa, 0x9876_5432);
}

#[test]
fn request_without_pasid_uses_the_rid_pasid_entry_with_rps() {
    let mut c = config();
    c.ecap = c.ecap.with_rps(true);
    let sm = Sm::second_stage(c, 2);
    sm.map_ss(IOVA, HPA, PageSize::Size4K, Leaf::read_write());
    sm.set_pasid_entry(0, PasidEntry::default());
    sm.update_context(SID, |ctx| SmContextEntry {
        lo: ctx.lo.with_rid_pasid(PASID),
        ..ctx
    });

    let t = sm.translate(&Request::read(SID, IOVA)).unwrap();

    assert_eq!(t.hpa, HPA);
}

// ---------------------------------------------------------------------------------------
// First-stage depth (§4.1): FSPM 00 = 4 levels, 01 = 5 levels.
// ---------------------------------------------------------------------------------------

#[test]
fn four_level_first_stage_reads_four_entries() {
    let sm = Sm::first_stage(config(), 4);
    sm.map_fs(IOVA, HPA, PageSize::Size4K, Leaf::read_write());
    sm.unit.reset_stats();

    sm.translate(&read(IOVA)).unwrap();

    assert_eq!(sm.unit.stats().fs_entry_reads, 4);
}

#[test]
fn five_level_first_stage_translates_an_address_above_bit_47() {
    let sm = Sm::first_stage(config(), 5);
    sm.map_fs(IOVA_57, HPA, PageSize::Size4K, Leaf::read_write());

    let t = sm.translate(&read(IOVA_57 + 0x10)).unwrap();

    assert_eq!(t.hpa, HPA + 0x10);
}

#[test]
fn five_level_first_stage_reads_five_entries() {
    let sm = Sm::first_stage(config(), 5);
    sm.map_fs(IOVA_57, HPA, PageSize::Size4K, Leaf::read_write());
    sm.unit.reset_stats();

    sm.translate(&read(IOVA_57)).unwrap();

    assert_eq!(sm.unit.stats().fs_entry_reads, 5);
}

/// §6.2: n_fs·(n_ss+1) + n_ss paging reads on a cold walk.
#[test]
fn nested_five_over_four_walk_reads_29_paging_entries() {
    let n = Nested::build(config(), 5, 2);
    n.map(IOVA_57, GPA, PageSize::Size4K, Leaf::read_write());
    n.unit.reset_stats();

    n.unit.translate(&read(IOVA_57)).unwrap();

    assert_eq!(n.unit.stats().paging_reads(), 29);
}

#[test]
fn nested_five_over_five_walk_reads_35_paging_entries() {
    let n = Nested::build(config(), 5, 3);
    n.map(IOVA_57, GPA, PageSize::Size4K, Leaf::read_write());
    n.unit.reset_stats();

    n.unit.translate(&read(IOVA_57)).unwrap();

    assert_eq!(n.unit.stats().paging_reads(), 35);
}

#[test]
fn nested_four_over_three_walk_reads_19_paging_entries() {
    let n = Nested::build(all_sagaw(), 4, 1);
    n.map(IOVA, GPA, PageSize::Size4K, Leaf::read_write());
    n.unit.reset_stats();

    n.unit.translate(&read(IOVA)).unwrap();

    assert_eq!(n.unit.stats().paging_reads(), 19);
}

// ---------------------------------------------------------------------------------------
// First-stage page sizes (§4.1, §4.3).
// ---------------------------------------------------------------------------------------

#[test]
fn first_stage_4k_page() {
    let sm = Sm::first_stage(config(), 4);
    sm.map_fs(IOVA, HPA, PageSize::Size4K, Leaf::read_write());

    let t = sm.translate(&read(IOVA + 0xABC)).unwrap();

    assert_eq!(t.page_size, PageSize::Size4K);
    assert_eq!(t.hpa, HPA + 0xABC);
}

#[test]
fn first_stage_2m_page() {
    let sm = Sm::first_stage(config(), 4);
    sm.map_fs(IOVA_2M, HPA_2M, PageSize::Size2M, Leaf::read_write());

    let t = sm.translate(&read(IOVA_2M + 0x1_2345)).unwrap();

    assert_eq!(t.page_size, PageSize::Size2M);
    assert_eq!(t.hpa, HPA_2M + 0x1_2345);
}

#[test]
fn first_stage_1g_page_with_fs1gp() {
    let sm = Sm::first_stage(config(), 4);
    assert!(sm.unit.config().cap.fs1gp());
    sm.map_fs(IOVA_1G, HPA_1G, PageSize::Size1G, Leaf::read_write());

    let t = sm.translate(&read(IOVA_1G + 0x2345_6789)).unwrap();

    assert_eq!(t.page_size, PageSize::Size1G);
    assert_eq!(t.hpa, HPA_1G + 0x2345_6789);
}

#[test]
fn first_stage_1g_page_without_fs1gp_faults_sfs3() {
    let mut c = config();
    c.cap = c.cap.with_fs1gp(false);
    let sm = Sm::first_stage(c, 4);
    sm.map_fs(IOVA_1G, HPA_1G, PageSize::Size1G, Leaf::read_write());

    let fault = sm.translate(&read(IOVA_1G)).unwrap_err();

    assert_eq!(fault.reason, FaultReason::SfsReserved);
    assert_eq!(fault.code(), 0x72);
    assert_eq!(fault.fs_level, Some(3));
}

#[test]
fn first_stage_2m_leaf_with_bit_13_set_faults_sfs3() {
    let sm = Sm::first_stage(config(), 4);
    // Bits 20:13 of a 2 MiB leaf are reserved (bit 12 is PAT).
    sm.map_fs(
        IOVA_2M,
        HPA_2M,
        PageSize::Size2M,
        Leaf::read_write().with_extra(1 << 13),
    );

    let fault = sm.translate(&read(IOVA_2M)).unwrap_err();

    assert_eq!(fault.reason, FaultReason::SfsReserved);
    assert_eq!(fault.fs_level, Some(2));
}

#[test]
fn first_stage_2m_leaf_with_pat_bit_12_set_translates() {
    let sm = Sm::first_stage(config(), 4);
    sm.map_fs(
        IOVA_2M,
        HPA_2M,
        PageSize::Size2M,
        Leaf::read_write().with_extra(1 << 12),
    );

    let t = sm.translate(&read(IOVA_2M + 0x10)).unwrap();

    assert_eq!(t.hpa, HPA_2M + 0x10);
}

// ---------------------------------------------------------------------------------------
// Second-stage page sizes (§5.1, §5.3), gated by CAP.SLLPS.
// ---------------------------------------------------------------------------------------

#[test]
fn second_stage_4k_page() {
    let sm = Sm::second_stage(config(), 2);
    sm.map_ss(IOVA, HPA, PageSize::Size4K, Leaf::read_write());

    let t = sm.translate(&read(IOVA + 0xABC)).unwrap();

    assert_eq!(t.page_size, PageSize::Size4K);
    assert_eq!(t.hpa, HPA + 0xABC);
}

#[test]
fn second_stage_2m_page() {
    let sm = Sm::second_stage(config(), 2);
    sm.map_ss(IOVA_2M, HPA_2M, PageSize::Size2M, Leaf::read_write());

    let t = sm.translate(&read(IOVA_2M + 0x1_2345)).unwrap();

    assert_eq!(t.page_size, PageSize::Size2M);
    assert_eq!(t.hpa, HPA_2M + 0x1_2345);
}

#[test]
fn second_stage_1g_page() {
    let sm = Sm::second_stage(config(), 2);
    sm.map_ss(IOVA_1G, HPA_1G, PageSize::Size1G, Leaf::read_write());

    let t = sm.translate(&read(IOVA_1G + 0x2345_6789)).unwrap();

    assert_eq!(t.page_size, PageSize::Size1G);
    assert_eq!(t.hpa, HPA_1G + 0x2345_6789);
}

#[test]
fn second_stage_1g_page_without_sllps_1g_faults_sss3() {
    let mut c = config();
    // 2 MiB pages only.
    c.cap = c.cap.with_sllps(0b01);
    let sm = Sm::second_stage(c, 2);
    sm.map_ss(IOVA_1G, HPA_1G, PageSize::Size1G, Leaf::read_write());

    let fault = sm.translate(&read(IOVA_1G)).unwrap_err();

    assert_eq!(fault.reason, FaultReason::SssReserved);
    assert_eq!(fault.code(), 0x7A);
    assert_eq!(fault.ss_level, Some(3));
}

#[test]
fn second_stage_2m_page_without_sllps_2m_faults_sss3() {
    let mut c = config();
    c.cap = c.cap.with_sllps(0);
    let sm = Sm::second_stage(c, 2);
    sm.map_ss(IOVA_2M, HPA_2M, PageSize::Size2M, Leaf::read_write());

    let fault = sm.translate(&read(IOVA_2M)).unwrap_err();

    assert_eq!(fault.reason, FaultReason::SssReserved);
    assert_eq!(fault.ss_level, Some(2));
}

#[test]
fn second_stage_2m_leaf_with_bit_12_set_faults_sss3() {
    let sm = Sm::second_stage(config(), 2);
    // Bits 20:12 of a 2 MiB second-stage leaf are reserved.
    sm.map_ss(
        IOVA_2M,
        HPA_2M,
        PageSize::Size2M,
        Leaf::read_write().with_extra(1 << 12),
    );

    let fault = sm.translate(&read(IOVA_2M)).unwrap_err();

    assert_eq!(fault.reason, FaultReason::SssReserved);
    assert_eq!(fault.ss_level, Some(2));
}

#[test]
fn legacy_2m_page_without_sllps_faults_lsl2() {
    let mut c = config();
    c.cap = c.cap.with_sllps(0);
    let l = Legacy::new(c);
    l.map(IOVA_2M, HPA_2M, PageSize::Size2M, Leaf::read_write());

    let fault = l.translate(&Request::read(SID, IOVA_2M)).unwrap_err();

    assert_eq!(fault.reason, FaultReason::LslReserved);
    assert_eq!(fault.code(), 0x0C);
}

#[test]
fn legacy_1g_page() {
    let l = Legacy::new(config());
    l.map(IOVA_1G, HPA_1G, PageSize::Size1G, Leaf::read_write());

    let t = l.translate(&Request::read(SID, IOVA_1G + 0x777)).unwrap();

    assert_eq!(t.page_size, PageSize::Size1G);
    assert_eq!(t.hpa, HPA_1G + 0x777);
}

// ---------------------------------------------------------------------------------------
// Second-stage depth (§5.1): AW 1/2/3 = 3/4/5 levels, 39/48/57 bits.
// ---------------------------------------------------------------------------------------

#[test]
fn aw1_second_stage_walks_three_levels() {
    let sm = Sm::second_stage(all_sagaw(), 1);
    sm.map_ss(IOVA, HPA, PageSize::Size4K, Leaf::read_write());
    sm.unit.reset_stats();

    let t = sm.translate(&read(IOVA + 4)).unwrap();

    assert_eq!(t.hpa, HPA + 4);
    assert_eq!(sm.unit.stats().ss_reads_final, 3);
}

#[test]
fn aw1_second_stage_rejects_input_at_2_pow_39() {
    let sm = Sm::second_stage(all_sagaw(), 1);

    let fault = sm.translate(&read(1 << 39)).unwrap_err();

    assert_eq!(fault.reason, FaultReason::SgnAddressBeyond);
    assert_eq!(fault.code(), 0x83);
}

#[test]
fn aw2_second_stage_walks_four_levels() {
    let sm = Sm::second_stage(all_sagaw(), 2);
    sm.map_ss(IOVA, HPA, PageSize::Size4K, Leaf::read_write());
    sm.unit.reset_stats();

    let t = sm.translate(&read(IOVA + 4)).unwrap();

    assert_eq!(t.hpa, HPA + 4);
    assert_eq!(sm.unit.stats().ss_reads_final, 4);
}

#[test]
fn aw2_second_stage_rejects_input_at_2_pow_48() {
    let sm = Sm::second_stage(all_sagaw(), 2);

    let fault = sm.translate(&read(1 << 48)).unwrap_err();

    assert_eq!(fault.reason, FaultReason::SgnAddressBeyond);
}

#[test]
fn aw3_second_stage_walks_five_levels_for_an_input_above_2_pow_48() {
    let sm = Sm::second_stage(all_sagaw(), 3);
    sm.map_ss(IOVA_57, HPA, PageSize::Size4K, Leaf::read_write());
    sm.unit.reset_stats();

    let t = sm.translate(&read(IOVA_57 + 4)).unwrap();

    assert_eq!(t.hpa, HPA + 4);
    assert_eq!(sm.unit.stats().ss_reads_final, 5);
}

#[test]
fn aw3_second_stage_width_is_capped_by_mgaw() {
    let mut c = all_sagaw();
    // MGAW = 47: 48-bit guest addresses, below the 57-bit AGAW of AW=3.
    c.cap = c.cap.with_mgaw(47);
    let sm = Sm::second_stage(c, 3);
    sm.map_ss(1 << 48, HPA, PageSize::Size4K, Leaf::read_write());

    let fault = sm.translate(&read(1 << 48)).unwrap_err();

    assert_eq!(fault.reason, FaultReason::SgnAddressBeyond);
}

#[test]
fn legacy_aw1_second_stage_rejects_input_at_2_pow_39_with_lgn1() {
    let l = Legacy::new(all_sagaw());
    l.set_context(legacy_context(l.ss_root).with_aw(1));

    let fault = l.translate(&Request::read(SID, 1 << 39)).unwrap_err();

    assert_eq!(fault.reason, FaultReason::LgnAddressBeyond);
    assert_eq!(fault.code(), 0x04);
}

// ---------------------------------------------------------------------------------------
// Nested page size = min(first-stage page, second-stage page) (§6.1 step 10).
// ---------------------------------------------------------------------------------------

/// A nested unit whose second stage maps guest memory (at least 64 MiB, one page when
/// `size` is 1 GiB) with pages of `size`.
fn nested_with_ss_pages(size: PageSize) -> Nested {
    let n = Nested::new();
    let root = {
        let mem = n.mem();
        let mut ss = PageTable::physical(mem, mem, Format::SecondStage, 4);
        let len = GUEST_SIZE.max(size.bytes());
        ss.map_range(0, GUEST_BASE, len, size, Leaf::read_write())
            .unwrap();
        ss.root()
    };
    n.update_pasid_entry(PASID, |e| PasidEntry {
        lo: e.lo.with_ssptptr(root >> 12),
        ..e
    });
    n
}

#[test]
fn nested_first_stage_2m_over_second_stage_4k_is_a_4k_translation() {
    let n = nested_with_ss_pages(PageSize::Size4K);
    n.map(IOVA_2M, GPA_2M, PageSize::Size2M, Leaf::read_write());

    let t = n.unit.translate(&read(IOVA_2M + 0x1_2345)).unwrap();

    assert_eq!(t.page_size, PageSize::Size4K);
    assert_eq!(t.hpa, GUEST_BASE + GPA_2M + 0x1_2345);
}

#[test]
fn nested_first_stage_4k_over_second_stage_2m_is_a_4k_translation() {
    let n = nested_with_ss_pages(PageSize::Size2M);
    n.map(IOVA, GPA, PageSize::Size4K, Leaf::read_write());

    let t = n.unit.translate(&read(IOVA + 0x10)).unwrap();

    assert_eq!(t.page_size, PageSize::Size4K);
    assert_eq!(t.hpa, GUEST_BASE + GPA + 0x10);
}

#[test]
fn nested_first_stage_2m_over_second_stage_2m_is_a_2m_translation() {
    let n = nested_with_ss_pages(PageSize::Size2M);
    n.map(IOVA_2M, GPA_2M, PageSize::Size2M, Leaf::read_write());

    let t = n.unit.translate(&read(IOVA_2M + 0x1_2345)).unwrap();

    assert_eq!(t.page_size, PageSize::Size2M);
    assert_eq!(t.hpa, GUEST_BASE + GPA_2M + 0x1_2345);
}

#[test]
fn nested_first_stage_1g_over_second_stage_2m_is_a_2m_translation() {
    let n = nested_with_ss_pages(PageSize::Size2M);
    n.map(IOVA_1G, 0, PageSize::Size1G, Leaf::read_write());

    let t = n.unit.translate(&read(IOVA_1G + 0x12_3456)).unwrap();

    assert_eq!(t.page_size, PageSize::Size2M);
    assert_eq!(t.hpa, GUEST_BASE + 0x12_3456);
}

#[test]
fn nested_first_stage_2m_over_second_stage_1g_is_a_2m_translation() {
    let n = nested_with_ss_pages(PageSize::Size1G);
    n.map(IOVA_2M, GPA_2M, PageSize::Size2M, Leaf::read_write());

    let t = n.unit.translate(&read(IOVA_2M + 0x1_2345)).unwrap();

    assert_eq!(t.page_size, PageSize::Size2M);
    assert_eq!(t.hpa, GUEST_BASE + GPA_2M + 0x1_2345);
}

#[test]
fn nested_first_stage_1g_over_second_stage_1g_is_a_1g_translation() {
    let n = nested_with_ss_pages(PageSize::Size1G);
    n.map(IOVA_1G, 0, PageSize::Size1G, Leaf::read_write());

    let t = n.unit.translate(&read(IOVA_1G + 0x2345_6789)).unwrap();

    assert_eq!(t.page_size, PageSize::Size1G);
    assert_eq!(t.hpa, GUEST_BASE + 0x2345_6789);
}

// ---------------------------------------------------------------------------------------
// Canonical input addresses (§4.1, §6.1 step 1).
// ---------------------------------------------------------------------------------------

/// Bits 63:47 all set: the lowest upper-half address of 4-level paging.
const UPPER_HALF_48: u64 = 0xFFFF_8000_0000_0000;
/// Bit 47 set, bits 63:48 clear.
const NON_CANONICAL_48: u64 = 0x0000_8000_0000_0000;
/// Bit 56 set, bits 63:57 clear.
const NON_CANONICAL_57: u64 = 0x0100_0000_0000_0000;

#[test]
fn four_level_first_stage_translates_an_upper_half_canonical_address() {
    let sm = Sm::first_stage(config(), 4);
    sm.map_fs(UPPER_HALF_48, HPA, PageSize::Size4K, Leaf::read_write());

    let t = sm.translate(&read(UPPER_HALF_48 + 0x20)).unwrap();

    assert_eq!(t.hpa, HPA + 0x20);
}

#[test]
fn four_level_first_stage_rejects_bit_47_without_sign_extension() {
    let sm = Sm::first_stage(config(), 4);

    let fault = sm.translate(&read(NON_CANONICAL_48)).unwrap_err();

    assert_eq!(fault.reason, FaultReason::SgnNonCanonical);
    assert_eq!(fault.code(), 0x80);
}

#[test]
fn five_level_first_stage_accepts_bit_47_without_sign_extension() {
    let sm = Sm::first_stage(config(), 5);
    sm.map_fs(NON_CANONICAL_48, HPA, PageSize::Size4K, Leaf::read_write());

    let t = sm.translate(&read(NON_CANONICAL_48)).unwrap();

    assert_eq!(t.hpa, HPA);
}

#[test]
fn five_level_first_stage_rejects_bit_56_without_sign_extension() {
    let sm = Sm::first_stage(config(), 5);

    let fault = sm.translate(&read(NON_CANONICAL_57)).unwrap_err();

    assert_eq!(fault.reason, FaultReason::SgnNonCanonical);
}

#[test]
fn nested_rejects_a_non_canonical_address() {
    let n = Nested::new();

    let fault = n.unit.translate(&read(NON_CANONICAL_48)).unwrap_err();

    assert_eq!(fault.reason, FaultReason::SgnNonCanonical);
    assert_eq!(fault.stage, FaultStage::Request);
}

#[test]
fn second_stage_only_has_no_canonical_check_and_reports_the_width() {
    let sm = Sm::second_stage(config(), 2);

    let fault = sm.translate(&read(UPPER_HALF_48)).unwrap_err();

    assert_eq!(fault.reason, FaultReason::SgnAddressBeyond);
}

/// §6.1 runs the canonical check (step 1) before the privilege check (step 2).
#[test]
fn canonical_check_comes_before_the_supervisor_request_check() {
    let sm = Sm::first_stage(config(), 4);
    assert!(!sm.pasid_entry(PASID).hi.sre());

    let fault = sm
        .translate(&read(NON_CANONICAL_48).privileged())
        .unwrap_err();

    assert_eq!(fault.reason, FaultReason::SgnNonCanonical);
}
