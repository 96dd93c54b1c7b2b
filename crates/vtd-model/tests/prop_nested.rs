//! Nested translation (§6.1) over random first-stage tables and a random second stage.
//!
//! Every successful nested translation lands where stage 2 maps its guest-physical
//! address, with no more rights than either stage grants (§4.4, §5.4) and enough for the
//! request; every fault is one a nested walk can raise. With the SPR17 erratum off no
//! first-stage A/D update ever writes a page stage 2 maps read-only or not at all (§6.1
//! step 6); with the erratum at its demonstrated scope only the page of the top-level
//! first-stage table may be written that way (§6.5).

mod prop_support;

use prop_support::{Layout, ReqSpec, Scenario, nested_scenario, perms_allow, req_spec, snapshot};
use proptest::prelude::*;
use vtd_model::cache::CacheConfig;
use vtd_model::config::{AdTiming, NestedSsAd, NonSnoopedAd, Spr17, SsPermissionFault, UnitConfig};
use vtd_model::mem::SparseMem;
use vtd_model::request::{Perms, Request, Translation, TranslationKind};
use vtd_model::{Fault, Unit};
use vtd_spec::addr::is_canonical;
use vtd_spec::fault::FaultReason;

/// Faults a nested translation can raise once the context and PASID entries are valid:
/// the request checks (§6.1 steps 1–2), every first-stage and second-stage code, and the
/// general permission and output codes.
const NESTED_REASONS: &[FaultReason] = &[
    FaultReason::SgnNonCanonical,
    FaultReason::SptExecuteDisabled,
    FaultReason::SptSupervisorDisabled,
    FaultReason::SfsAccessError,
    FaultReason::SfsNotPresent,
    FaultReason::SfsReserved,
    FaultReason::SfsRootAccessError,
    FaultReason::SfsGpaBeyond,
    FaultReason::SfsRootReadDenied,
    FaultReason::SfsReadDenied,
    FaultReason::SfsAdWriteDenied,
    FaultReason::SfsAdNonSnooped,
    FaultReason::SfsAdUpdateFailed,
    FaultReason::SssAccessError,
    FaultReason::SssNotPresent,
    FaultReason::SssReserved,
    FaultReason::SssInvalidRoot,
    FaultReason::SssAdNonSnooped,
    FaultReason::SgnUserDenied,
    FaultReason::SgnExecuteDenied,
    FaultReason::SgnWriteDenied,
    FaultReason::SgnReadDenied,
    FaultReason::SgnInterruptRange,
];

/// The model switches and cache setting a case runs with.
#[derive(Clone, Copy, Debug)]
struct Knobs {
    ad_timing: AdTiming,
    nested_ss_ad: NestedSsAd,
    ss_permission_fault: SsPermissionFault,
    non_snooped_ad: NonSnoopedAd,
    caches: bool,
}

fn knobs() -> impl Strategy<Value = Knobs> {
    (
        prop_oneof![Just(AdTiming::PerLevel), Just(AdTiming::AfterWalk)],
        prop_oneof![Just(NestedSsAd::Full), Just(NestedSsAd::FinalAccessOnly)],
        prop_oneof![
            Just(SsPermissionFault::General),
            Just(SsPermissionFault::SecondStage)
        ],
        prop_oneof![Just(NonSnoopedAd::Fault), Just(NonSnoopedAd::Perform)],
        any::<bool>(),
    )
        .prop_map(
            |(ad_timing, nested_ss_ad, ss_permission_fault, non_snooped_ad, caches)| Knobs {
                ad_timing,
                nested_ss_ad,
                ss_permission_fault,
                non_snooped_ad,
                caches,
            },
        )
}

/// A Sapphire Rapids-like unit with `erratum` over the scenario's tables, translation on.
fn build(scn: &Scenario, knobs: Knobs, erratum: Spr17) -> (Unit<SparseMem>, Layout) {
    let mut config = UnitConfig::default();
    config.switches.erratum_spr17 = erratum;
    config.switches.ad_timing = knobs.ad_timing;
    config.switches.nested_ss_ad = knobs.nested_ss_ad;
    config.switches.ss_permission_fault = knobs.ss_permission_fault;
    config.switches.non_snooped_ad = knobs.non_snooped_ad;
    if !knobs.caches {
        config.caches = CacheConfig::disabled();
    }
    let mem = SparseMem::new();
    let layout = scn.build(&mem);
    let unit = Unit::new(config, mem).expect("valid configuration");
    vtd_model::build::enable_translation(&unit, layout.rtaddr).expect("enable translation");
    (unit, layout)
}

/// Requests at the scenario's device (never the device without a context entry).
fn requests() -> impl Strategy<Value = Vec<ReqSpec>> {
    prop::collection::vec(req_spec(0.0), 1..24)
}

/// The privilege a nested request is checked with: PR for requests with PASID; user for
/// requests without (the unit has no ECAP.RPRIVS), §4.4.
fn effective_privilege(req: &Request) -> bool {
    req.pasid.is_some() && req.privileged
}

/// Check one nested translation against the shadow models.
fn check_translation(
    scn: &Scenario,
    unit: &Unit<SparseMem>,
    req: &Request,
    result: &Result<Translation, Fault>,
) -> Result<(), TestCaseError> {
    let t = match result {
        Ok(t) => t,
        Err(f) => {
            prop_assert!(
                NESTED_REASONS.contains(&f.reason),
                "fault {} is not a nested-path reason ({:?})",
                f.reason,
                f
            );
            return Ok(());
        }
    };
    prop_assert_eq!(t.kind, TranslationKind::Nested);
    let gpa = t
        .gpa
        .ok_or_else(|| TestCaseError::fail(format!("nested translation without GPA: {t:?}")))?;
    let fs = scn.reference_fs(unit.mem(), req.addr).ok_or_else(|| {
        TestCaseError::fail(format!(
            "translated {:#x} although the first-stage tables do not map it: {t:?}",
            req.addr
        ))
    })?;
    prop_assert_eq!(
        gpa,
        fs.gpa,
        "GPA differs from the first-stage tables' output"
    );
    for &table in &fs.tables {
        let readable = scn
            .ss_lookup(table)
            .is_some_and(|m| m.perms.contains(Perms::READ));
        prop_assert!(
            readable,
            "translated through a first-stage table at GPA {:#x} that stage 2 does not map readable",
            table
        );
    }
    let ss = scn.ss_lookup(gpa).ok_or_else(|| {
        TestCaseError::fail(format!("GPA {gpa:#x} is not mapped by stage 2: {t:?}"))
    })?;
    prop_assert_eq!(
        t.hpa,
        ss.hpa,
        "HPA is not stage 2's output for GPA {:#x}",
        gpa
    );
    prop_assert!(
        ss.perms.contains(t.perms),
        "rights {:?} exceed stage 2's {:?}",
        t.perms,
        ss.perms
    );
    let fs_perms = fs.perms(effective_privilege(req), scn.pe.wpe);
    prop_assert!(
        fs_perms.contains(t.perms),
        "rights {:?} exceed the first stage's {:?} (rw={}, us={})",
        t.perms,
        fs_perms,
        fs.rw,
        fs.us
    );
    // Each stage allows the access by its own rights (§6.1); a zero-length read under
    // CAP.ZLR needs only W from stage 2, so the combined rights may then lack R and W.
    prop_assert!(
        perms_allow(fs_perms, req, false) && perms_allow(ss.perms, req, unit.config().cap.zlr()),
        "stage rights {:?} / {:?} do not allow the request's {:?}",
        fs_perms,
        ss.perms,
        req.access
    );
    prop_assert_eq!(t.page_size, fs.size.min(ss.size));
    Ok(())
}

/// True when the shadow models say the translation must succeed: a canonical,
/// non-execute request whose privilege the PASID entry allows, a first-stage path whose
/// every table stage 2 maps readable and writable (so any A/D update is allowed) over a
/// snooped walk, and both stages granting the access.
fn shadows_allow(scn: &Scenario, unit: &Unit<SparseMem>, req: &Request) -> bool {
    let privileged = effective_privilege(req);
    if !is_canonical(req.addr, scn.fs_levels)
        || req.execute
        || (privileged && !scn.pe.sre)
        || !scn.pe.pwsnp
    {
        return false;
    }
    let Some(fs) = scn.reference_fs(unit.mem(), req.addr) else {
        return false;
    };
    let tables_writable = fs.tables.iter().all(|&table| {
        scn.ss_lookup(table)
            .is_some_and(|m| m.perms.contains(Perms::READ | Perms::WRITE))
    });
    let Some(ss) = scn.ss_lookup(fs.gpa) else {
        return false;
    };
    tables_writable
        && fs.perms(privileged, scn.pe.wpe).allow(req.access)
        && perms_allow(ss.perms, req, unit.config().cap.zlr())
}

/// Translate every request; check each with `check`.
fn run(
    scn: &Scenario,
    unit: &Unit<SparseMem>,
    reqs: &[ReqSpec],
    mut check: impl FnMut(&Request, &Result<Translation, Fault>) -> Result<(), TestCaseError>,
) -> Result<(), TestCaseError> {
    for spec in reqs {
        let req = spec.request(scn);
        let result = unit.translate(&req);
        check(&req, &result)?;
    }
    Ok(())
}

/// Assert every page of `pages` except `allowed` holds the bytes of `before`.
fn assert_unchanged(
    unit: &Unit<SparseMem>,
    scn: &Scenario,
    pages: &[u64],
    before: &[Option<Vec<u8>>],
    allowed: Option<u64>,
) -> Result<(), TestCaseError> {
    let after = snapshot(unit.mem(), pages);
    for ((page, b), a) in pages.iter().zip(before).zip(&after) {
        if Some(*page) == allowed {
            continue;
        }
        let gpa = scn
            .table_pool
            .iter()
            .map(|&p| p as u64 * 4096)
            .find(|&g| scn.backing(g) == Some(*page));
        let ss = gpa.and_then(|g| scn.ss_lookup(g));
        prop_assert!(
            b == a,
            "host page {:#x} (guest page {:x?}, stage-2 mapping {:?}) was written",
            page,
            gpa,
            ss
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Ok(t) ⇒ t.hpa is stage 2's output for t.gpa, t.gpa is the first stage's output,
    /// every first-stage table on the path is stage-2 readable, and t.perms ⊆ stage-2
    /// rights ∩ first-stage rights and allows the access; Err(f) ⇒ a nested-path reason.
    #[test]
    fn nested_translation_stays_within_both_stages(
        scn in nested_scenario(),
        knobs in knobs(),
        reqs in requests(),
    ) {
        let (unit, _) = build(&scn, knobs, Spr17::Off);
        run(&scn, &unit, &reqs, |req, result| check_translation(&scn, &unit, req, result))?;
    }

    /// A request both shadow models allow (and whose A/D updates stage 2 permits) is
    /// translated.
    #[test]
    fn nested_translation_succeeds_where_both_stages_allow_it(
        scn in nested_scenario(),
        knobs in knobs(),
        reqs in requests(),
    ) {
        let (unit, _) = build(&scn, knobs, Spr17::Off);
        run(&scn, &unit, &reqs, |req, result| {
            let expected = shadows_allow(&scn, &unit, req);
            prop_assert!(
                !expected || result.is_ok(),
                "request {:x?} faulted although both stages allow it: {:?}",
                req,
                result
            );
            Ok(())
        })?;
    }

    /// Erratum off: no translation writes a page stage 2 maps read-only (or write-only, or
    /// not at all), first-stage table pages included, nor any root/context/PASID page, nor
    /// a stage-2 table without SSADE.
    #[test]
    fn without_erratum_no_translation_writes_a_page_stage2_maps_read_only(
        scn in nested_scenario(),
        knobs in knobs(),
        reqs in requests(),
    ) {
        let (unit, layout) = build(&scn, knobs, Spr17::Off);
        let pages = scn.protected_pages(&layout);
        let before = snapshot(unit.mem(), &pages);
        run(&scn, &unit, &reqs, |_, _| Ok(()))?;
        assert_unchanged(&unit, &scn, &pages, &before, None)?;
    }

    /// Erratum at its demonstrated scope (§6.5): among those pages only the one holding
    /// the top-level first-stage table may be written.
    #[test]
    fn top_level_erratum_writes_no_read_only_page_but_the_top_level_table(
        scn in nested_scenario(),
        knobs in knobs(),
        reqs in requests(),
    ) {
        let (unit, layout) = build(&scn, knobs, Spr17::TopLevel);
        let pages = scn.protected_pages(&layout);
        let before = snapshot(unit.mem(), &pages);
        run(&scn, &unit, &reqs, |_, _| Ok(()))?;
        let top = scn.backing(layout.fs_root_gpa);
        assert_unchanged(&unit, &scn, &pages, &before, top)?;
    }
}
