//! Access rights: the first-stage rules of §4.4 (user/supervisor, read/write/atomic, R/W
//! and U/S over every level, WPE, SRE), the second-stage rights a nested walk needs
//! (§6.1: R to read first-stage tables, R+W to update their A/D flags, R for the final
//! read, W for the final write, both for an atomic), the AND over second-stage levels
//! (§5.4), the rights a translation reports, and zero-length reads (CAP.ZLR).

mod common;
mod support;

use common::{GUEST_BASE, Nested};
use support::{HPA, IOVA, PASID, SID, Sm, config};
use vtd_model::build::Leaf;
use vtd_model::mem::PhysMem;
use vtd_model::request::{Access, Perms, Request};
use vtd_spec::addr::PageSize;
use vtd_spec::context::SmContextEntry;
use vtd_spec::fault::FaultReason;
use vtd_spec::first_stage::FsEntry;
use vtd_spec::pasid::PasidEntry;

/// Guest-physical page the nested tests map [`IOVA`] to.
const GPA: u64 = 0x0020_5000;
/// Entry bits: first-stage R/W (1) and U/S (2); second-stage R (0) and W (1).
const FS_RW: u64 = 1 << 1;
const FS_US: u64 = 1 << 2;
const SS_R: u64 = 1 << 0;
const SS_W: u64 = 1 << 1;

fn user_read() -> Request {
    Request::read(SID, IOVA).with_pasid(PASID)
}

fn user_write() -> Request {
    Request::write(SID, IOVA).with_pasid(PASID)
}

fn user_atomic() -> Request {
    Request::new(SID, IOVA, Access::AtomicRmw).with_pasid(PASID)
}

fn write_only() -> Leaf {
    Leaf {
        read: false,
        write: true,
        user: true,
        extra: 0,
    }
}

/// First stage only, supervisor requests enabled (SRE=1) with write protection `wpe`,
/// [`IOVA`] mapped to [`HPA`] by `leaf`.
fn first_stage(wpe: bool, leaf: Leaf) -> Sm {
    let sm = Sm::first_stage(config(), 4);
    sm.update_pasid_entries(|e| PasidEntry {
        hi: e.hi.with_sre(true).with_wpe(wpe),
        ..e
    });
    sm.map_fs(IOVA, HPA, PageSize::Size4K, leaf);
    sm
}

fn read_write(perms: Perms) -> Perms {
    perms & (Perms::READ | Perms::WRITE)
}

// ---------------------------------------------------------------------------------------
// §4.4: user requests.
// ---------------------------------------------------------------------------------------

#[test]
fn user_read_of_user_page_is_allowed() {
    let sm = first_stage(false, Leaf::read_write());

    let t = sm.translate(&user_read()).unwrap();

    assert_eq!(t.hpa, HPA);
}

#[test]
fn user_read_of_read_only_user_page_is_allowed() {
    let sm = first_stage(false, Leaf::read_only());

    assert!(sm.translate(&user_read()).is_ok());
}

#[test]
fn user_read_of_supervisor_page_faults_sgn2() {
    let sm = first_stage(false, Leaf::read_write().supervisor());

    let fault = sm.translate(&user_read()).unwrap_err();

    assert_eq!(fault.reason, FaultReason::SgnUserDenied);
    assert_eq!(fault.code(), 0x81);
}

#[test]
fn user_read_with_us_clear_in_the_pml4e_faults_sgn2() {
    let sm = first_stage(false, Leaf::read_write());
    sm.modify_u64(sm.fs_entry_addr(IOVA, 4), |v| v & !FS_US);

    let fault = sm.translate(&user_read()).unwrap_err();

    assert_eq!(fault.reason, FaultReason::SgnUserDenied);
}

#[test]
fn user_write_of_writable_user_page_is_allowed() {
    let sm = first_stage(false, Leaf::read_write());

    assert!(sm.translate(&user_write()).is_ok());
}

#[test]
fn user_write_of_read_only_page_faults_sgn6() {
    let sm = first_stage(false, Leaf::read_only());

    let fault = sm.translate(&user_write()).unwrap_err();

    assert_eq!(fault.reason, FaultReason::SgnWriteDenied);
    assert_eq!(fault.code(), 0x85);
}

#[test]
fn user_write_with_rw_clear_in_the_pde_faults_sgn6() {
    let sm = first_stage(false, Leaf::read_write());
    sm.modify_u64(sm.fs_entry_addr(IOVA, 2), |v| v & !FS_RW);

    let fault = sm.translate(&user_write()).unwrap_err();

    assert_eq!(fault.reason, FaultReason::SgnWriteDenied);
}

#[test]
fn user_write_of_writable_supervisor_page_faults_sgn2() {
    let sm = first_stage(false, Leaf::read_write().supervisor());

    let fault = sm.translate(&user_write()).unwrap_err();

    assert_eq!(fault.reason, FaultReason::SgnUserDenied);
}

#[test]
fn user_atomic_of_writable_user_page_is_allowed() {
    let sm = first_stage(false, Leaf::read_write());

    assert!(sm.translate(&user_atomic()).is_ok());
}

#[test]
fn user_atomic_of_read_only_page_faults_sgn6() {
    let sm = first_stage(false, Leaf::read_only());

    let fault = sm.translate(&user_atomic()).unwrap_err();

    assert_eq!(fault.reason, FaultReason::SgnWriteDenied);
}

#[test]
fn request_without_pasid_is_a_user_request_without_rprivs() {
    let sm = first_stage(false, Leaf::read_write().supervisor());
    assert!(!sm.unit.config().ecap.rprivs());

    let fault = sm.translate(&Request::read(SID, IOVA)).unwrap_err();

    assert_eq!(fault.reason, FaultReason::SgnUserDenied);
}

#[test]
fn request_without_pasid_takes_supervisor_privilege_from_rid_priv_with_rprivs() {
    let mut c = config();
    c.ecap = c.ecap.with_rprivs(true);
    let sm = Sm::first_stage(c, 4);
    sm.update_pasid_entries(|e| PasidEntry {
        hi: e.hi.with_sre(true),
        ..e
    });
    sm.update_context(SID, |ctx| SmContextEntry {
        lo: ctx.lo.with_rid_priv(true),
        ..ctx
    });
    sm.map_fs(IOVA, HPA, PageSize::Size4K, Leaf::read_write().supervisor());

    let t = sm.translate(&Request::read(SID, IOVA)).unwrap();

    assert_eq!(t.hpa, HPA);
}

// ---------------------------------------------------------------------------------------
// §4.4: supervisor requests, WPE and SRE.
// ---------------------------------------------------------------------------------------

#[test]
fn supervisor_read_of_supervisor_page_is_allowed() {
    let sm = first_stage(false, Leaf::read_only().supervisor());

    assert!(sm.translate(&user_read().privileged()).is_ok());
}

#[test]
fn supervisor_read_of_user_page_is_allowed() {
    let sm = first_stage(false, Leaf::read_only());

    assert!(sm.translate(&user_read().privileged()).is_ok());
}

#[test]
fn supervisor_write_of_read_only_page_is_allowed_with_wpe_clear() {
    let sm = first_stage(false, Leaf::read_only().supervisor());

    assert!(sm.translate(&user_write().privileged()).is_ok());
}

#[test]
fn supervisor_write_with_rw_clear_in_the_pde_is_allowed_with_wpe_clear() {
    let sm = first_stage(false, Leaf::read_write().supervisor());
    sm.modify_u64(sm.fs_entry_addr(IOVA, 2), |v| v & !FS_RW);

    assert!(sm.translate(&user_write().privileged()).is_ok());
}

#[test]
fn supervisor_atomic_of_read_only_page_is_allowed_with_wpe_clear() {
    let sm = first_stage(false, Leaf::read_only().supervisor());

    assert!(sm.translate(&user_atomic().privileged()).is_ok());
}

#[test]
fn supervisor_write_of_read_only_page_faults_sgn6_with_wpe_set() {
    let sm = first_stage(true, Leaf::read_only().supervisor());

    let fault = sm.translate(&user_write().privileged()).unwrap_err();

    assert_eq!(fault.reason, FaultReason::SgnWriteDenied);
    assert_eq!(fault.code(), 0x85);
}

#[test]
fn supervisor_write_with_rw_clear_in_the_pde_faults_sgn6_with_wpe_set() {
    let sm = first_stage(true, Leaf::read_write().supervisor());
    sm.modify_u64(sm.fs_entry_addr(IOVA, 2), |v| v & !FS_RW);

    let fault = sm.translate(&user_write().privileged()).unwrap_err();

    assert_eq!(fault.reason, FaultReason::SgnWriteDenied);
}

#[test]
fn supervisor_write_of_writable_page_is_allowed_with_wpe_set() {
    let sm = first_stage(true, Leaf::read_write().supervisor());

    assert!(sm.translate(&user_write().privileged()).is_ok());
}

#[test]
fn supervisor_atomic_of_read_only_page_faults_sgn6_with_wpe_set() {
    let sm = first_stage(true, Leaf::read_only().supervisor());

    let fault = sm.translate(&user_atomic().privileged()).unwrap_err();

    assert_eq!(fault.reason, FaultReason::SgnWriteDenied);
}

#[test]
fn supervisor_read_faults_spt6_with_sre_clear() {
    let sm = first_stage(false, Leaf::read_write().supervisor());
    sm.update_pasid_entries(|e| PasidEntry {
        hi: e.hi.with_sre(false),
        ..e
    });

    let fault = sm.translate(&user_read().privileged()).unwrap_err();

    assert_eq!(fault.reason, FaultReason::SptSupervisorDisabled);
    assert_eq!(fault.code(), 0x5D);
}

#[test]
fn supervisor_read_of_user_page_faults_spt6_with_sre_clear() {
    let sm = first_stage(false, Leaf::read_write());
    sm.update_pasid_entries(|e| PasidEntry {
        hi: e.hi.with_sre(false),
        ..e
    });

    let fault = sm.translate(&user_read().privileged()).unwrap_err();

    assert_eq!(fault.reason, FaultReason::SptSupervisorDisabled);
}

// ---------------------------------------------------------------------------------------
// Rights a first-stage translation reports.
// ---------------------------------------------------------------------------------------

#[test]
fn user_translation_of_read_only_page_reports_read_only() {
    let sm = first_stage(false, Leaf::read_only());

    let t = sm.translate(&user_read()).unwrap();

    assert_eq!(read_write(t.perms), Perms::READ);
}

#[test]
fn user_translation_of_writable_page_reports_read_write() {
    let sm = first_stage(false, Leaf::read_write());

    let t = sm.translate(&user_read()).unwrap();

    assert_eq!(read_write(t.perms), Perms::READ | Perms::WRITE);
}

#[test]
fn supervisor_translation_of_read_only_page_reports_write_with_wpe_clear() {
    let sm = first_stage(false, Leaf::read_only().supervisor());

    let t = sm.translate(&user_read().privileged()).unwrap();

    assert_eq!(read_write(t.perms), Perms::READ | Perms::WRITE);
}

#[test]
fn supervisor_translation_of_read_only_page_reports_read_only_with_wpe_set() {
    let sm = first_stage(true, Leaf::read_only().supervisor());

    let t = sm.translate(&user_read().privileged()).unwrap();

    assert_eq!(read_write(t.perms), Perms::READ);
}

// ---------------------------------------------------------------------------------------
// §6.1: second-stage rights for first-stage table reads and A/D updates.
// ---------------------------------------------------------------------------------------

fn nested() -> Nested {
    let n = Nested::new();
    n.map(IOVA, GPA, PageSize::Size4K, Leaf::read_write());
    n
}

/// Guest-physical addresses of the first-stage tables on the path of [`IOVA`], top first.
fn fs_tables(n: &Nested) -> Vec<u64> {
    n.fs().tables_on_path(IOVA).unwrap()
}

/// Physical address of the second-stage entry at `level` on the path of `gpa`.
fn ss_entry(n: &Nested, gpa: u64, level: u8) -> u64 {
    support::path_entry(&n.ss(), gpa, level)
}

fn modify(n: &Nested, addr: u64, f: impl FnOnce(u64) -> u64) {
    let old = n.mem().read_u64(addr).unwrap();
    n.mem().write_u64(addr, f(old)).unwrap();
}

/// Set A on every first-stage entry on the path of [`IOVA`].
fn preset_accessed(n: &Nested) {
    for (_, addr, value) in n.fs().path(IOVA).unwrap() {
        n.mem().write_u64(addr, value | FsEntry::A).unwrap();
    }
}

/// Set A on every first-stage entry on the path of [`IOVA`], and D on the leaf.
fn preset_accessed_and_dirty(n: &Nested) {
    preset_accessed(n);
    let (leaf, value) = n.fs().leaf(IOVA).unwrap().unwrap();
    n.mem().write_u64(leaf, value | FsEntry::D).unwrap();
}

#[test]
fn reading_the_first_stage_root_table_needs_stage2_read_sfs6() {
    let n = nested();
    n.ss().update_leaf(n.fs_root_gpa, |v| v & !SS_R).unwrap();

    let fault = n.unit.translate(&user_read()).unwrap_err();

    assert_eq!(fault.reason, FaultReason::SfsRootReadDenied);
    assert_eq!(fault.code(), 0x75);
    assert_eq!(fault.fs_level, Some(4));
}

#[test]
fn reading_the_first_stage_page_table_needs_stage2_read_sfs7() {
    let n = nested();
    let page_table = fs_tables(&n)[3];
    n.ss().update_leaf(page_table, |v| v & !SS_R).unwrap();

    let fault = n.unit.translate(&user_read()).unwrap_err();

    assert_eq!(fault.reason, FaultReason::SfsReadDenied);
    assert_eq!(fault.code(), 0x76);
    assert_eq!(fault.fs_level, Some(1));
}

#[test]
fn reading_a_first_stage_table_needs_read_in_every_stage2_level() {
    let n = nested();
    // The level-2 stage-2 entry covering the 2 MiB that holds every first-stage table.
    modify(&n, ss_entry(&n, n.fs_root_gpa, 2), |v| v & !SS_R);

    let fault = n.unit.translate(&user_read()).unwrap_err();

    assert_eq!(fault.reason, FaultReason::SfsRootReadDenied);
}

#[test]
fn accessed_update_needs_stage2_write_on_the_table_page_sfs8() {
    let n = nested();
    let page_table = fs_tables(&n)[3];
    n.ss().update_leaf(page_table, |v| v & !SS_W).unwrap();

    let fault = n.unit.translate(&user_read()).unwrap_err();

    assert_eq!(fault.reason, FaultReason::SfsAdWriteDenied);
    assert_eq!(fault.code(), 0x77);
    assert_eq!(fault.fs_level, Some(1));
}

#[test]
fn accessed_update_needs_write_in_every_stage2_level() {
    let n = nested();
    modify(&n, ss_entry(&n, n.fs_root_gpa, 2), |v| v & !SS_W);

    let fault = n.unit.translate(&user_read()).unwrap_err();

    assert_eq!(fault.reason, FaultReason::SfsAdWriteDenied);
    assert_eq!(fault.fs_level, Some(4));
}

#[test]
fn dirty_update_needs_stage2_write_on_the_table_page_sfs8() {
    let n = nested();
    let page_table = fs_tables(&n)[3];
    // A is already set everywhere, so only the write's D update needs stage-2 W.
    preset_accessed(&n);
    n.ss().update_leaf(page_table, |v| v & !SS_W).unwrap();

    let fault = n.unit.translate(&user_write()).unwrap_err();

    assert_eq!(fault.reason, FaultReason::SfsAdWriteDenied);
    assert_eq!(fault.fs_level, Some(1));
}

#[test]
fn read_through_read_only_stage2_table_pages_needs_no_write_when_a_is_preset() {
    let n = nested();
    preset_accessed_and_dirty(&n);
    modify(&n, ss_entry(&n, n.fs_root_gpa, 2), |v| v & !SS_W);

    let t = n.unit.translate(&user_read()).unwrap();

    assert_eq!(t.hpa, GUEST_BASE + GPA);
}

#[test]
fn write_through_read_only_stage2_table_pages_needs_no_write_when_a_and_d_are_preset() {
    let n = nested();
    preset_accessed_and_dirty(&n);
    modify(&n, ss_entry(&n, n.fs_root_gpa, 2), |v| v & !SS_W);

    let t = n.unit.translate(&user_write()).unwrap();

    assert_eq!(t.hpa, GUEST_BASE + GPA);
}

// ---------------------------------------------------------------------------------------
// §6.1: second-stage rights for the final access.
// ---------------------------------------------------------------------------------------

#[test]
fn final_read_needs_stage2_read_sgn7() {
    let n = nested();
    n.ss().update_leaf(GPA, |v| v & !SS_R).unwrap();

    let fault = n.unit.translate(&user_read()).unwrap_err();

    assert_eq!(fault.reason, FaultReason::SgnReadDenied);
    assert_eq!(fault.code(), 0x86);
}

#[test]
fn final_write_needs_stage2_write_sgn6() {
    let n = nested();
    n.ss().update_leaf(GPA, |v| v & !SS_W).unwrap();

    let fault = n.unit.translate(&user_write()).unwrap_err();

    assert_eq!(fault.reason, FaultReason::SgnWriteDenied);
    assert_eq!(fault.code(), 0x85);
}

#[test]
fn final_atomic_needs_stage2_write_sgn6() {
    let n = nested();
    n.ss().update_leaf(GPA, |v| v & !SS_W).unwrap();

    let fault = n.unit.translate(&user_atomic()).unwrap_err();

    assert_eq!(fault.reason, FaultReason::SgnWriteDenied);
}

#[test]
fn final_atomic_needs_stage2_read_sgn7() {
    let n = nested();
    n.ss().update_leaf(GPA, |v| v & !SS_R).unwrap();

    let fault = n.unit.translate(&user_atomic()).unwrap_err();

    assert_eq!(fault.reason, FaultReason::SgnReadDenied);
}

#[test]
fn final_read_of_read_only_stage2_page_is_allowed() {
    let n = nested();
    n.ss().update_leaf(GPA, |v| v & !SS_W).unwrap();

    assert!(n.unit.translate(&user_read()).is_ok());
}

#[test]
fn final_write_of_write_only_stage2_page_is_allowed() {
    let n = nested();
    n.ss().update_leaf(GPA, |v| v & !SS_R).unwrap();

    assert!(n.unit.translate(&user_write()).is_ok());
}

#[test]
fn final_atomic_of_read_write_stage2_page_is_allowed() {
    let n = nested();

    assert!(n.unit.translate(&user_atomic()).is_ok());
}

// ---------------------------------------------------------------------------------------
// A nested translation reports no right that either stage withholds.
// ---------------------------------------------------------------------------------------

#[test]
fn nested_rights_are_read_write_when_both_stages_grant_both() {
    let n = nested();

    let t = n.unit.translate(&user_read()).unwrap();

    assert_eq!(read_write(t.perms), Perms::READ | Perms::WRITE);
}

#[test]
fn nested_rights_lack_write_when_stage1_is_read_only() {
    let n = Nested::new();
    n.map(IOVA, GPA, PageSize::Size4K, Leaf::read_only());

    let t = n.unit.translate(&user_read()).unwrap();

    assert_eq!(read_write(t.perms), Perms::READ);
}

#[test]
fn nested_rights_lack_write_when_stage2_is_read_only() {
    let n = nested();
    n.ss().update_leaf(GPA, |v| v & !SS_W).unwrap();

    let t = n.unit.translate(&user_read()).unwrap();

    assert_eq!(read_write(t.perms), Perms::READ);
}

#[test]
fn nested_rights_lack_read_when_stage2_is_write_only() {
    let n = nested();
    n.ss().update_leaf(GPA, |v| v & !SS_R).unwrap();

    let t = n.unit.translate(&user_write()).unwrap();

    assert_eq!(read_write(t.perms), Perms::WRITE);
}

#[test]
fn nested_rights_lack_write_when_a_stage2_upper_level_is_read_only() {
    let n = nested();
    // The level-2 entry covering GPA's 2 MiB, which holds no first-stage table.
    modify(&n, ss_entry(&n, GPA, 2), |v| v & !SS_W);

    let t = n.unit.translate(&user_read()).unwrap();

    assert_eq!(read_write(t.perms), Perms::READ);
}

#[test]
fn nested_rights_lack_write_for_user_when_stage1_upper_level_is_read_only() {
    let n = nested();
    let (_, pml4e, _) = n.fs().path(IOVA).unwrap()[0];
    modify(&n, pml4e, |v| v & !FS_RW);

    let t = n.unit.translate(&user_read()).unwrap();

    assert_eq!(read_write(t.perms), Perms::READ);
}

// ---------------------------------------------------------------------------------------
// §5.4: second-stage rights are the AND over every level.
// ---------------------------------------------------------------------------------------

#[test]
fn second_stage_read_needs_read_in_the_upper_levels_too() {
    let sm = Sm::second_stage(config(), 2);
    sm.map_ss(IOVA, HPA, PageSize::Size4K, Leaf::read_write());
    sm.modify_u64(sm.ss_entry_addr(IOVA, 3), |v| v & !SS_R);

    let fault = sm.translate(&user_read()).unwrap_err();

    assert_eq!(fault.reason, FaultReason::SgnReadDenied);
}

#[test]
fn second_stage_write_needs_write_in_the_upper_levels_too() {
    let sm = Sm::second_stage(config(), 2);
    sm.map_ss(IOVA, HPA, PageSize::Size4K, Leaf::read_write());
    sm.modify_u64(sm.ss_entry_addr(IOVA, 4), |v| v & !SS_W);

    let fault = sm.translate(&user_write()).unwrap_err();

    assert_eq!(fault.reason, FaultReason::SgnWriteDenied);
}

#[test]
fn second_stage_translation_reports_read_only_below_a_read_only_upper_level() {
    let sm = Sm::second_stage(config(), 2);
    sm.map_ss(IOVA, HPA, PageSize::Size4K, Leaf::read_write());
    sm.modify_u64(sm.ss_entry_addr(IOVA, 4), |v| v & !SS_W);

    let t = sm.translate(&user_read()).unwrap();

    assert_eq!(read_write(t.perms), Perms::READ);
}

// ---------------------------------------------------------------------------------------
// CAP.ZLR: zero-length reads to write-only pages (§1.2).
// ---------------------------------------------------------------------------------------

fn write_only_second_stage(zlr: bool) -> Sm {
    let mut c = config();
    c.cap = c.cap.with_zlr(zlr);
    let sm = Sm::second_stage(c, 2);
    sm.map_ss(IOVA, HPA, PageSize::Size4K, write_only());
    sm
}

#[test]
fn zero_length_read_of_write_only_page_is_allowed_with_zlr() {
    let sm = write_only_second_stage(true);

    let t = sm.translate(&user_read().with_len(0)).unwrap();

    assert_eq!(t.hpa, HPA);
}

#[test]
fn zero_length_read_of_write_only_page_faults_sgn7_without_zlr() {
    let sm = write_only_second_stage(false);

    let fault = sm.translate(&user_read().with_len(0)).unwrap_err();

    assert_eq!(fault.reason, FaultReason::SgnReadDenied);
}

#[test]
fn four_byte_read_of_write_only_page_faults_sgn7_with_zlr() {
    let sm = write_only_second_stage(true);

    let fault = sm.translate(&user_read().with_len(4)).unwrap_err();

    assert_eq!(fault.reason, FaultReason::SgnReadDenied);
}

#[test]
fn zero_length_read_of_nested_write_only_page_is_allowed_with_zlr() {
    let n = nested();
    assert!(n.unit.config().cap.zlr());
    n.ss().update_leaf(GPA, |v| v & !SS_R).unwrap();

    let t = n.unit.translate(&user_read().with_len(0)).unwrap();

    assert_eq!(t.hpa, GUEST_BASE + GPA);
}
