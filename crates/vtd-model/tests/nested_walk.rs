//! Nested translation end to end (§6.1): where the bytes land, how many paging reads a
//! cold walk makes, and the A/D updates through the second stage.

mod common;

use common::{GUEST_BASE, Nested, PASID, SID};
use vtd_model::build::Leaf;
use vtd_model::config::{Spr17, UnitConfig};
use vtd_model::request::{Request, TranslationKind};
use vtd_spec::addr::PageSize;
use vtd_spec::fault::FaultReason;
use vtd_spec::first_stage::FsEntry;

const IOVA: u64 = 0x7_4020_3000;
const GPA: u64 = 0x0020_5000;

#[test]
fn nested_read_lands_at_second_stage_output_of_first_stage_output() {
    let n = Nested::new();
    n.map(IOVA, GPA, PageSize::Size4K, Leaf::read_write());

    let t = n
        .unit
        .translate(&Request::read(SID, IOVA + 0x123).with_pasid(PASID))
        .unwrap();

    assert_eq!(t.kind, TranslationKind::Nested);
    assert_eq!(t.gpa, Some(GPA + 0x123));
    assert_eq!(t.hpa, GUEST_BASE + GPA + 0x123);
    assert_eq!(t.page_size, PageSize::Size4K);
}

#[test]
fn cold_four_over_four_nested_walk_reads_exactly_24_paging_entries() {
    let n = Nested::new();
    n.map(IOVA, GPA, PageSize::Size4K, Leaf::read_write());
    n.unit.reset_stats();

    n.unit
        .translate(&Request::read(SID, IOVA).with_pasid(PASID))
        .unwrap();

    let s = n.unit.stats();
    assert_eq!(s.fs_entry_reads, 4);
    assert_eq!(s.ss_reads_for_fs_tables, 16);
    assert_eq!(s.ss_reads_final, 4);
    assert_eq!(s.paging_reads(), 24);
    assert_eq!(
        (
            s.root_reads,
            s.context_reads,
            s.pasid_dir_reads,
            s.pasid_entry_reads
        ),
        (1, 1, 1, 1)
    );
}

#[test]
fn write_sets_accessed_on_every_level_and_dirty_on_the_leaf() {
    let n = Nested::new();
    n.map(IOVA, GPA, PageSize::Size4K, Leaf::read_write());

    n.unit
        .translate(&Request::write(SID, IOVA).with_pasid(PASID))
        .unwrap();

    let path = n.fs().path(IOVA).unwrap();
    assert_eq!(path.len(), 4);
    for &(level, _, value) in &path {
        assert!(FsEntry::from_bits(value).a(), "A missing at level {level}");
    }
    assert!(FsEntry::from_bits(path[3].2).d());
    assert!(!FsEntry::from_bits(path[2].2).d());
}

/// Map the page holding the first-stage top-level table read-only in stage 2.
fn make_fs_root_table_read_only(n: &Nested) {
    n.ss().update_leaf(n.fs_root_gpa, |v| v & !2).unwrap();
}

#[test]
fn fs_accessed_update_in_read_only_table_page_faults_sfs8_without_erratum() {
    let n = Nested::new();
    n.map(IOVA, GPA, PageSize::Size4K, Leaf::read_write());
    make_fs_root_table_read_only(&n);
    let root_entry_before = n.fs().path(IOVA).unwrap()[0].2;

    let fault = n
        .unit
        .translate(&Request::read(SID, IOVA).with_pasid(PASID))
        .unwrap_err();

    assert_eq!(fault.reason, FaultReason::SfsAdWriteDenied);
    assert_eq!(fault.code(), 0x77);
    assert_eq!(fault.fs_level, Some(4));
    assert_eq!(n.fs().path(IOVA).unwrap()[0].2, root_entry_before);
}

#[test]
fn spr17_erratum_writes_accessed_into_read_only_table_page() {
    let mut config = UnitConfig::sapphire_rapids();
    config.caches = vtd_model::cache::CacheConfig::disabled();
    assert_eq!(config.switches.erratum_spr17, Spr17::TopLevel);
    let n = Nested::with_config(config);
    n.map(IOVA, GPA, PageSize::Size4K, Leaf::read_write());
    make_fs_root_table_read_only(&n);

    let t = n
        .unit
        .translate(&Request::read(SID, IOVA).with_pasid(PASID));

    assert!(t.is_ok());
    let root_entry = n.fs().path(IOVA).unwrap()[0].2;
    assert!(
        FsEntry::from_bits(root_entry).a(),
        "the erratum wrote A into a read-only page"
    );
    assert_eq!(n.unit.stats().fs_ad_writes_by_erratum, 1);
}
