//! A missing invalidation leaves a stale translation; the right descriptor removes it; a
//! wrong descriptor leaves it stale (§8.1, §8.4, §8.5). One story per cache: context
//! cache, PASID cache, IOTLB, first- and second-stage paging-structure caches, device-TLB,
//! and caching mode (CAP.CM=1), where not-present entries are cached too.

mod inv_support;

use inv_support::{GUEST_BASE, Rig, Space, desc, gpa, hpa};
use vtd_model::config::UnitConfig;
use vtd_model::request::TranslationKind;
use vtd_model::stats::Stats;
use vtd_spec::fault::FaultReason;
use vtd_spec::inv::RawDescriptor;

const SID_A: u16 = 0x0018;
const SID_B: u16 = 0x0020;
const DID_1: u16 = 1;
const DID_2: u16 = 2;
const PASID_1: u32 = 1;
/// First-stage / nested input address.
const X: u64 = 0x7000_0000;
/// First-stage input address under another PML4 entry than `X` (no paging-structure-cache
/// entry of `X` covers it).
const Y: u64 = 0x80_0000_0000;
/// Second-stage-only input address.
const SX: u64 = 0x4000_0000;

// ---------------------------------------------------------------------------------------
// Context cache
// ---------------------------------------------------------------------------------------

/// `SID_A` translated once, then detached in memory (context entry P=0).
fn detached_device() -> (Rig, Space) {
    let rig = Rig::new();
    let s = rig.second_stage(SID_A, 0, DID_1);
    rig.map(&s, SX, hpa(0));
    rig.translate(&s, SX).unwrap();
    rig.clear_context(SID_A);
    (rig, s)
}

#[test]
fn detached_device_keeps_translating_while_its_context_entry_is_not_invalidated() {
    let (rig, s) = detached_device();

    let outcome = rig.outcome(&s, SX);

    assert_eq!(outcome, Ok(()));
}

#[test]
fn detached_device_faults_context_not_present_after_device_selective_context_invalidation() {
    let (rig, s) = detached_device();
    let mut q = rig.queue(false);

    q.submit_and_wait(&[desc::cc_device(SID_A, 0)]).unwrap();

    assert_eq!(rig.outcome(&s, SX), Err(FaultReason::SctNotPresent));
}

#[test]
fn detached_device_keeps_translating_after_context_invalidation_of_another_device() {
    let (rig, s) = detached_device();
    let mut q = rig.queue(false);

    q.submit_and_wait(&[desc::cc_device(SID_B, 0)]).unwrap();

    assert_eq!(rig.outcome(&s, SX), Ok(()));
}

// ---------------------------------------------------------------------------------------
// PASID cache
// ---------------------------------------------------------------------------------------

/// PASID 1 of `SID_A` (domain 1) translated `X` once through a first-stage table that
/// maps `Y` to `hpa(1)`; then its PASID entry was switched in memory to a new table that
/// maps `Y` to `hpa(2)`. `Y` was never translated and no paging-structure-cache entry
/// covers it, so only the PASID cache decides which table a walk of `Y` starts from.
fn switched_pasid_entry() -> (Rig, Space) {
    let rig = Rig::new();
    let old = rig.first_stage(SID_A, PASID_1, DID_1);
    rig.map(&old, X, hpa(0));
    rig.map(&old, Y, hpa(1));
    rig.translate(&old, X).unwrap();
    let new = rig.with_new_first_stage(&old);
    rig.map(&new, Y, hpa(2));
    rig.write_pasid_entry(&new);
    (rig, new)
}

#[test]
fn switched_pasid_entry_still_walks_the_old_table_without_pasid_cache_invalidation() {
    let (rig, s) = switched_pasid_entry();

    let served = rig.served(&s, Y);

    assert_eq!(served, (hpa(1), false));
}

#[test]
fn switched_pasid_entry_walks_the_new_table_after_pasid_selective_pasid_cache_invalidation() {
    let (rig, s) = switched_pasid_entry();
    let mut q = rig.queue(true);

    q.submit_and_wait(&[desc::pc_pasid(DID_1, PASID_1)])
        .unwrap();

    assert_eq!(rig.served(&s, Y), (hpa(2), false));
}

#[test]
fn switched_pasid_entry_still_walks_the_old_table_after_pasid_cache_invalidation_with_wrong_did() {
    let (rig, s) = switched_pasid_entry();
    let mut q = rig.queue(true);

    q.submit_and_wait(&[desc::pc_pasid(DID_2, PASID_1)])
        .unwrap();

    assert_eq!(rig.served(&s, Y), (hpa(1), false));
}

#[test]
fn switched_pasid_entry_still_walks_the_old_table_after_pasid_cache_invalidation_with_wrong_pasid()
{
    let (rig, s) = switched_pasid_entry();
    let mut q = rig.queue(true);

    q.submit_and_wait(&[desc::pc_pasid(DID_1, PASID_1 + 1)])
        .unwrap();

    assert_eq!(rig.served(&s, Y), (hpa(1), false));
}

// ---------------------------------------------------------------------------------------
// IOTLB
// ---------------------------------------------------------------------------------------

/// PASID 1 of `SID_A` (domain 1): `X` and `X + 4K` translated once, then `X` remapped
/// from `hpa(0)` to `hpa(100)` in memory.
fn remapped_first_stage_leaf() -> (Rig, Space) {
    let rig = Rig::new();
    let s = rig.first_stage(SID_A, PASID_1, DID_1);
    rig.map(&s, X, hpa(0));
    rig.map(&s, X + 0x1000, hpa(1));
    rig.translate(&s, X).unwrap();
    rig.translate(&s, X + 0x1000).unwrap();
    rig.map(&s, X, hpa(100));
    (rig, s)
}

#[test]
fn remapped_first_stage_leaf_serves_the_old_page_from_the_iotlb_without_invalidation() {
    let (rig, s) = remapped_first_stage_leaf();
    let before = rig.stats();

    let served = rig.served(&s, X);

    assert_eq!(served, (hpa(0), true));
    assert_eq!(rig.stats().since(&before).iotlb_hits, 1);
}

#[test]
fn remapped_first_stage_leaf_serves_the_new_page_after_pasid_iotlb_page_invalidation() {
    let (rig, s) = remapped_first_stage_leaf();
    let mut q = rig.queue(true);

    q.submit_and_wait(&[desc::piotlb_page(DID_1, PASID_1, X, 0, false)])
        .unwrap();

    assert_eq!(rig.served(&s, X), (hpa(100), false));
}

#[test]
fn remapped_first_stage_leaf_stays_stale_after_pasid_iotlb_invalidation_with_wrong_pasid() {
    let (rig, s) = remapped_first_stage_leaf();
    let mut q = rig.queue(true);

    q.submit_and_wait(&[desc::piotlb_pasid(DID_1, PASID_1 + 1)])
        .unwrap();

    assert_eq!(rig.served(&s, X), (hpa(0), true));
}

#[test]
fn remapped_first_stage_leaf_stays_stale_after_pasid_iotlb_invalidation_with_wrong_did() {
    let (rig, s) = remapped_first_stage_leaf();
    let mut q = rig.queue(true);

    q.submit_and_wait(&[desc::piotlb_pasid(DID_2, PASID_1)])
        .unwrap();

    assert_eq!(rig.served(&s, X), (hpa(0), true));
}

#[test]
fn remapped_first_stage_leaf_stays_stale_after_iotlb_domain_invalidation_of_another_domain() {
    let (rig, s) = remapped_first_stage_leaf();
    let mut q = rig.queue(true);

    q.submit_and_wait(&[desc::iotlb_domain(DID_2)]).unwrap();

    assert_eq!(rig.served(&s, X), (hpa(0), true));
}

#[test]
fn remapped_first_stage_leaf_stays_stale_after_pasid_iotlb_invalidation_of_the_next_page() {
    let (rig, s) = remapped_first_stage_leaf();
    let mut q = rig.queue(true);

    q.submit_and_wait(&[desc::piotlb_page(DID_1, PASID_1, X + 0x1000, 0, false)])
        .unwrap();

    assert_eq!(rig.served(&s, X), (hpa(0), true));
}

#[test]
fn unmapped_first_stage_leaf_keeps_translating_without_invalidation() {
    let (rig, s) = remapped_first_stage_leaf();
    rig.unmap(&s, X);

    let served = rig.served(&s, X);

    assert_eq!(served, (hpa(0), true));
}

#[test]
fn unmapped_first_stage_leaf_faults_not_present_after_pasid_iotlb_page_invalidation() {
    let (rig, s) = remapped_first_stage_leaf();
    rig.unmap(&s, X);
    let mut q = rig.queue(true);

    q.submit_and_wait(&[desc::piotlb_page(DID_1, PASID_1, X, 0, false)])
        .unwrap();

    assert_eq!(rig.outcome(&s, X), Err(FaultReason::SfsNotPresent));
}

/// A second-stage-only space (requests without PASID) of domain 1: `SX` translated once,
/// then remapped from `hpa(0)` to `hpa(100)`.
fn remapped_second_stage_leaf() -> (Rig, Space) {
    let rig = Rig::new();
    let s = rig.second_stage(SID_A, 0, DID_1);
    rig.map(&s, SX, hpa(0));
    rig.translate(&s, SX).unwrap();
    rig.map(&s, SX, hpa(100));
    (rig, s)
}

#[test]
fn remapped_second_stage_leaf_serves_the_old_page_from_the_iotlb_without_invalidation() {
    let (rig, s) = remapped_second_stage_leaf();

    let served = rig.served(&s, SX);

    assert_eq!(served, (hpa(0), true));
}

#[test]
fn remapped_second_stage_leaf_serves_the_new_page_after_iotlb_page_invalidation() {
    let (rig, s) = remapped_second_stage_leaf();
    let mut q = rig.queue(true);

    q.submit_and_wait(&[desc::iotlb_page(DID_1, SX, 0, false)])
        .unwrap();

    assert_eq!(rig.served(&s, SX), (hpa(100), false));
}

#[test]
fn remapped_second_stage_leaf_stays_stale_after_pasid_iotlb_invalidation_meant_for_first_stage() {
    // §8.4: type 6 does not drop second-stage-only entries; §8.5: PGTT=010b needs type 2.
    let (rig, s) = remapped_second_stage_leaf();
    let mut q = rig.queue(true);

    q.submit_and_wait(&[desc::piotlb_page(DID_1, 0, SX, 0, false)])
        .unwrap();

    assert_eq!(rig.served(&s, SX), (hpa(0), true));
}

/// A nested space of domain 1: `X` → `gpa(0)` translated once, then the host moved the
/// guest page: stage 2 now maps `gpa(0)` to `hpa(50)` instead of `GUEST_BASE + gpa(0)`.
fn nested_after_second_stage_remap() -> (Rig, Space) {
    let rig = Rig::new();
    let s = rig.nested(SID_A, 7, DID_1);
    rig.map(&s, X, gpa(0));
    rig.translate(&s, X).unwrap();
    rig.remap_guest_page(gpa(0), hpa(50));
    (rig, s)
}

#[test]
fn nested_translation_keeps_the_old_host_page_after_a_second_stage_remap_without_invalidation() {
    let (rig, s) = nested_after_second_stage_remap();

    let served = rig.served(&s, X);

    assert_eq!(served, (GUEST_BASE + gpa(0), true));
}

#[test]
fn nested_translation_gets_the_new_host_page_after_iotlb_page_invalidation_of_the_gpa() {
    // §8.4 nested rule: a type-2 invalidation by DID (here page-selective on the GPA) drops
    // every nested entry of the domain, whatever first-stage address it was cached under.
    let (rig, s) = nested_after_second_stage_remap();
    let mut q = rig.queue(true);

    q.submit_and_wait(&[desc::iotlb_page(DID_1, gpa(0), 0, false)])
        .unwrap();

    assert_eq!(rig.served(&s, X), (hpa(50), false));
}

#[test]
fn nested_translation_stays_stale_after_pasid_iotlb_page_invalidation_given_the_gpa() {
    // A type-6 page range is a first-stage input range: the GPA does not cover IOVA X.
    let (rig, s) = nested_after_second_stage_remap();
    let mut q = rig.queue(true);

    q.submit_and_wait(&[desc::piotlb_page(DID_1, 7, gpa(0), 0, false)])
        .unwrap();

    assert_eq!(rig.served(&s, X), (GUEST_BASE + gpa(0), true));
}

// ---------------------------------------------------------------------------------------
// First-stage paging-structure cache
// ---------------------------------------------------------------------------------------

/// A first-stage (or nested) space whose PDE covering `X` was repointed to a new page
/// table after a walk of `X` cached it; `X + 4K` maps to `out_old` in the old page table
/// and `out_new` in the new one, and was never translated.
fn repointed_pde(rig: &Rig, s: &Space, out_old: u64, out_new: u64) {
    rig.map(s, X, out_old);
    rig.map(s, X + 0x1000, out_old);
    rig.translate(s, X).unwrap();
    rig.repoint(s, X, 2);
    rig.map(s, X + 0x1000, out_new);
}

fn first_stage_with_repointed_pde() -> (Rig, Space) {
    let rig = Rig::new();
    let s = rig.first_stage(SID_A, PASID_1, DID_1);
    repointed_pde(&rig, &s, hpa(1), hpa(2));
    (rig, s)
}

#[test]
fn repointed_first_stage_pde_still_leads_to_the_old_page_table_without_invalidation() {
    let (rig, s) = first_stage_with_repointed_pde();
    let before = rig.stats();

    let served = rig.served(&s, X + 0x1000);

    assert_eq!(served, (hpa(1), false));
    assert_eq!(rig.stats().since(&before).fs_psc_hits, 1);
}

#[test]
fn repointed_first_stage_pde_leads_to_the_new_page_table_after_pasid_iotlb_page_invalidation() {
    let (rig, s) = first_stage_with_repointed_pde();
    let mut q = rig.queue(true);

    q.submit_and_wait(&[desc::piotlb_page(DID_1, PASID_1, X + 0x1000, 0, false)])
        .unwrap();

    assert_eq!(rig.served(&s, X + 0x1000), (hpa(2), false));
}

#[test]
fn repointed_first_stage_pde_stays_stale_after_page_invalidation_outside_its_2m_range() {
    let (rig, s) = first_stage_with_repointed_pde();
    let mut q = rig.queue(true);

    q.submit_and_wait(&[desc::piotlb_page(DID_1, PASID_1, X + 0x20_0000, 0, false)])
        .unwrap();

    assert_eq!(rig.served(&s, X + 0x1000), (hpa(1), false));
}

#[test]
fn repointed_nested_first_stage_pde_still_leads_to_the_old_page_table_without_invalidation() {
    let rig = Rig::new();
    let s = rig.nested(SID_A, 7, DID_1);
    repointed_pde(&rig, &s, gpa(1), gpa(2));

    let served = rig.served(&s, X + 0x1000);

    assert_eq!(served, (GUEST_BASE + gpa(1), false));
}

#[test]
fn repointed_nested_first_stage_pde_leads_to_the_new_page_table_after_pasid_iotlb_invalidation() {
    let rig = Rig::new();
    let s = rig.nested(SID_A, 7, DID_1);
    repointed_pde(&rig, &s, gpa(1), gpa(2));
    let mut q = rig.queue(true);

    q.submit_and_wait(&[desc::piotlb_pasid(DID_1, 7)]).unwrap();

    assert_eq!(rig.served(&s, X + 0x1000), (GUEST_BASE + gpa(2), false));
}

// ---------------------------------------------------------------------------------------
// Second-stage paging-structure cache
// ---------------------------------------------------------------------------------------

/// A second-stage-only space whose level-2 entry covering `SX` was repointed to a new
/// level-1 table after a walk of `SX` cached it; `SX + 4K` maps to `hpa(1)` in the old
/// table and `hpa(2)` in the new one, and was never translated.
fn second_stage_with_repointed_pde() -> (Rig, Space) {
    let rig = Rig::new();
    let s = rig.second_stage(SID_A, 0, DID_1);
    rig.map(&s, SX, hpa(0));
    rig.map(&s, SX + 0x1000, hpa(1));
    rig.translate(&s, SX).unwrap();
    rig.repoint(&s, SX, 2);
    rig.map(&s, SX + 0x1000, hpa(2));
    (rig, s)
}

#[test]
fn repointed_second_stage_pde_still_leads_to_the_old_table_without_invalidation() {
    let (rig, s) = second_stage_with_repointed_pde();
    let before = rig.stats();

    let served = rig.served(&s, SX + 0x1000);

    assert_eq!(served, (hpa(1), false));
    assert_eq!(rig.stats().since(&before).ss_psc_hits, 1);
}

#[test]
fn repointed_second_stage_pde_leads_to_the_new_table_after_iotlb_page_invalidation() {
    let (rig, s) = second_stage_with_repointed_pde();
    let mut q = rig.queue(true);

    q.submit_and_wait(&[desc::iotlb_page(DID_1, SX + 0x1000, 0, false)])
        .unwrap();

    assert_eq!(rig.served(&s, SX + 0x1000), (hpa(2), false));
}

#[test]
fn repointed_second_stage_pde_stays_stale_after_iotlb_invalidation_of_another_domain() {
    let (rig, s) = second_stage_with_repointed_pde();
    let mut q = rig.queue(true);

    q.submit_and_wait(&[desc::iotlb_domain(DID_2)]).unwrap();

    assert_eq!(rig.served(&s, SX + 0x1000), (hpa(1), false));
}

// ---------------------------------------------------------------------------------------
// Device-TLB
// ---------------------------------------------------------------------------------------

const SID_D: u16 = 0x0028;
const FROM_DEVTLB: TranslationKind = TranslationKind::PreTranslated;
const WALKED: TranslationKind = TranslationKind::FirstStage;

/// ATS endpoint `SID_D`: requests without PASID (PASID 0) and with PASID 1 share one
/// first stage; `X` was read once by each through the device-TLB, then remapped from
/// `hpa(0)` to `hpa(100)`. Every test invalidates the unit's IOTLB for the domain; what
/// else it submits decides whether the device-TLB still holds the old page.
fn remapped_ats_page() -> (Rig, Space, Space) {
    let rig = Rig::new();
    rig.enable_ats(SID_D);
    let d0 = rig.first_stage(SID_D, 0, DID_1);
    let d1 = rig.alias(&d0, SID_D, PASID_1, DID_1);
    rig.map(&d0, X, hpa(0));
    rig.ats(&d0, X).unwrap();
    rig.ats(&d1, X).unwrap();
    rig.map(&d0, X, hpa(100));
    (rig, d0, d1)
}

#[test]
fn ats_device_keeps_the_old_page_after_iotlb_invalidation_alone() {
    let (rig, d0, _) = remapped_ats_page();
    let mut q = rig.queue(true);

    q.submit_and_wait(&[desc::iotlb_domain(DID_1)]).unwrap();

    assert_eq!(rig.ats_served(&d0, X), (hpa(0), FROM_DEVTLB));
}

#[test]
fn ats_device_gets_the_new_page_after_iotlb_and_device_tlb_invalidation() {
    let (rig, d0, _) = remapped_ats_page();
    let mut q = rig.queue(true);

    q.submit_and_wait(&[desc::iotlb_domain(DID_1), desc::devtlb_page(SID_D, X)])
        .unwrap();

    assert_eq!(rig.ats_served(&d0, X), (hpa(100), WALKED));
}

#[test]
fn ats_device_keeps_the_old_page_after_device_tlb_invalidation_of_another_device() {
    let (rig, d0, _) = remapped_ats_page();
    let mut q = rig.queue(true);

    q.submit_and_wait(&[desc::iotlb_domain(DID_1), desc::devtlb_page(SID_D + 8, X)])
        .unwrap();

    assert_eq!(rig.ats_served(&d0, X), (hpa(0), FROM_DEVTLB));
}

#[test]
fn ats_pasid_request_keeps_the_old_page_after_device_tlb_invalidation_without_pasid() {
    let (rig, _, d1) = remapped_ats_page();
    let mut q = rig.queue(true);

    q.submit_and_wait(&[desc::iotlb_domain(DID_1), desc::devtlb_page(SID_D, X)])
        .unwrap();

    assert_eq!(rig.ats_served(&d1, X), (hpa(0), FROM_DEVTLB));
}

#[test]
fn ats_pasid_request_gets_the_new_page_after_pasid_based_device_tlb_invalidation() {
    let (rig, _, d1) = remapped_ats_page();
    let mut q = rig.queue(true);

    q.submit_and_wait(&[
        desc::iotlb_domain(DID_1),
        desc::pdevtlb_page(SID_D, PASID_1, X),
    ])
    .unwrap();

    assert_eq!(rig.ats_served(&d1, X), (hpa(100), WALKED));
}

// ---------------------------------------------------------------------------------------
// Caching mode (CAP.CM=1): not-present entries are cached
// ---------------------------------------------------------------------------------------

fn caching_mode() -> Rig {
    let mut config = UnitConfig::default();
    config.cap = config.cap.with_cm(true);
    Rig::with_config(config)
}

/// A first-stage space whose `X` was read while unmapped (fault), then mapped to `hpa(0)`.
fn leaf_mapped_after_a_fault(rig: &Rig) -> Space {
    let s = rig.first_stage(SID_A, PASID_1, DID_1);
    assert_eq!(rig.outcome(&s, X), Err(FaultReason::SfsNotPresent));
    rig.map(&s, X, hpa(0));
    s
}

#[test]
fn caching_mode_not_present_first_stage_entry_keeps_faulting_after_it_is_mapped() {
    let rig = caching_mode();
    let s = leaf_mapped_after_a_fault(&rig);

    let outcome = rig.outcome(&s, X);

    assert_eq!(outcome, Err(FaultReason::SfsNotPresent));
}

#[test]
fn caching_mode_newly_mapped_first_stage_page_translates_after_pasid_iotlb_invalidation() {
    let rig = caching_mode();
    let s = leaf_mapped_after_a_fault(&rig);
    let mut q = rig.queue(true);

    q.submit_and_wait(&[desc::piotlb_page(DID_1, PASID_1, X, 0, false)])
        .unwrap();

    assert_eq!(rig.served(&s, X), (hpa(0), false));
}

#[test]
fn without_caching_mode_newly_mapped_first_stage_page_translates_at_once() {
    // §8.1: with CM=0 hardware never caches not-present entries.
    let rig = Rig::new();
    let s = leaf_mapped_after_a_fault(&rig);

    let served = rig.served(&s, X);

    assert_eq!(served, (hpa(0), false));
}

/// A second-stage-only space whose `SX` was read while unmapped, then mapped to `hpa(0)`.
fn second_stage_leaf_mapped_after_a_fault(rig: &Rig) -> Space {
    let s = rig.second_stage(SID_A, 0, DID_1);
    rig.map(&s, SX + 0x1000, hpa(9));
    assert_eq!(rig.outcome(&s, SX), Err(FaultReason::SssNotPresent));
    rig.map(&s, SX, hpa(0));
    s
}

#[test]
fn caching_mode_not_present_second_stage_leaf_keeps_faulting_after_it_is_mapped() {
    let rig = caching_mode();
    let s = second_stage_leaf_mapped_after_a_fault(&rig);

    let outcome = rig.outcome(&s, SX);

    assert_eq!(outcome, Err(FaultReason::SssNotPresent));
}

#[test]
fn caching_mode_newly_mapped_second_stage_page_translates_after_iotlb_page_invalidation() {
    let rig = caching_mode();
    let s = second_stage_leaf_mapped_after_a_fault(&rig);
    let mut q = rig.queue(true);

    q.submit_and_wait(&[desc::iotlb_page(DID_1, SX, 0, false)])
        .unwrap();

    assert_eq!(rig.served(&s, SX), (hpa(0), false));
}

/// A first-stage space whose PASID entry was read while not present (fault), then
/// written present.
fn pasid_entry_written_after_a_fault(rig: &Rig) -> Space {
    let s = rig.first_stage(SID_A, PASID_1, DID_1);
    rig.map(&s, X, hpa(0));
    rig.clear_pasid_entry(&s);
    assert_eq!(rig.outcome(&s, X), Err(FaultReason::SptNotPresent));
    rig.write_pasid_entry(&s);
    s
}

#[test]
fn caching_mode_not_present_pasid_entry_keeps_faulting_after_it_is_written() {
    let rig = caching_mode();
    let s = pasid_entry_written_after_a_fault(&rig);

    let outcome = rig.outcome(&s, X);

    assert_eq!(outcome, Err(FaultReason::SptNotPresent));
}

#[test]
fn caching_mode_newly_written_pasid_entry_translates_after_pasid_selective_pasid_cache_invalidation()
 {
    // §8.5: not-present → present with CM=1 needs PASID-cache PSI (+ PASID-IOTLB).
    let rig = caching_mode();
    let s = pasid_entry_written_after_a_fault(&rig);
    let mut q = rig.queue(true);

    q.submit_and_wait(&[desc::pc_pasid(DID_1, PASID_1)])
        .unwrap();

    assert_eq!(rig.served(&s, X), (hpa(0), false));
}

/// A device whose context entry was read while not present (fault), then made present.
fn context_entry_made_present_after_a_fault(rig: &Rig) -> Space {
    let s = rig.second_stage(SID_A, 0, DID_1);
    rig.map(&s, SX, hpa(0));
    rig.clear_context(SID_A);
    assert_eq!(rig.outcome(&s, SX), Err(FaultReason::SctNotPresent));
    rig.set_context_present(SID_A, true);
    s
}

#[test]
fn caching_mode_not_present_context_entry_keeps_faulting_after_it_is_made_present() {
    let rig = caching_mode();
    let s = context_entry_made_present_after_a_fault(&rig);

    let outcome = rig.outcome(&s, SX);

    assert_eq!(outcome, Err(FaultReason::SctNotPresent));
}

#[test]
fn caching_mode_newly_present_context_entry_translates_after_device_selective_context_invalidation()
{
    let rig = caching_mode();
    let s = context_entry_made_present_after_a_fault(&rig);
    let mut q = rig.queue(true);

    q.submit_and_wait(&[desc::cc_device(SID_A, 0)]).unwrap();

    assert_eq!(rig.served(&s, SX), (hpa(0), false));
}

// ---------------------------------------------------------------------------------------
// Global invalidations of translations the front cache serves
// ---------------------------------------------------------------------------------------

/// PASID 1 of `SID_A`: `X` translated three times (a walk, a fast-path hit that fills the
/// front cache, a front-cache hit), then remapped from `hpa(0)` to `hpa(100)` in memory.
fn front_cached_first_stage_leaf() -> (Rig, Space) {
    let rig = Rig::new();
    let s = rig.first_stage(SID_A, PASID_1, DID_1);
    rig.map(&s, X, hpa(0));
    for _ in 0..3 {
        rig.translate(&s, X).unwrap();
    }
    rig.map(&s, X, hpa(100));
    (rig, s)
}

#[test]
fn front_cached_leaf_serves_the_old_page_without_invalidation() {
    let (rig, s) = front_cached_first_stage_leaf();

    assert_eq!(rig.served(&s, X), (hpa(0), true));
}

#[test]
fn front_cached_leaf_serves_the_new_page_after_global_iotlb_invalidation() {
    let (rig, s) = front_cached_first_stage_leaf();
    let mut q = rig.queue(true);

    q.submit_and_wait(&[desc::iotlb_global()]).unwrap();

    assert_eq!(rig.served(&s, X), (hpa(100), false));
}

/// The translation of `X` that follows a global invalidation by `descriptor`, and the
/// counters it moved.
fn front_cached_after(descriptor: RawDescriptor) -> ((u64, bool), Stats) {
    let (rig, s) = front_cached_first_stage_leaf();
    let mut q = rig.queue(true);
    q.submit_and_wait(&[descriptor]).unwrap();
    let before = rig.stats();
    let served = rig.served(&s, X);
    (served, rig.stats().since(&before))
}

#[test]
fn front_cached_translation_reads_the_context_entry_again_after_global_context_invalidation() {
    let (served, moved) = front_cached_after(desc::cc_global());

    assert_eq!(
        served,
        (hpa(0), true),
        "the IOTLB entry was not invalidated"
    );
    assert_eq!(moved.context_cache_misses, 1);
}

#[test]
fn front_cached_translation_reads_the_pasid_entry_again_after_global_pasid_cache_invalidation() {
    let (served, moved) = front_cached_after(desc::pc_global());

    assert_eq!(
        served,
        (hpa(0), true),
        "the IOTLB entry was not invalidated"
    );
    assert_eq!(moved.pasid_cache_misses, 1);
}
