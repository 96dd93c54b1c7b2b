//! Caching never changes a result (§6.4, §8.1): with no table change between requests, a
//! unit with its caches on answers every request exactly as a unit with
//! `CacheConfig::disabled()` over identical memory — same HPA, page size, rights, kind,
//! GPA and domain, or the same fault reason.
//!
//! Both units see the same request sequence (twice over, so the second pass is served
//! from warm caches), since A/D updates make table contents depend on history. Tables
//! are the random scenarios of `prop_support` with PASID entries of every kind (nested,
//! first stage, second stage, pass-through, not present, reserved), or the same second
//! stage behind legacy context entries. Cache geometries are tiny as often as not, so
//! entries are evicted and refilled; caching mode (CAP.CM) caches not-present entries.

mod prop_support;

use prop_support::{ReqSpec, Scenario, mixed_scenario, req_spec};
use proptest::prelude::*;
use vtd_model::cache::{CacheConfig, Geometry, Replacement};
use vtd_model::config::{AdTiming, NestedSsAd, NonSnoopedAd, Spr17, SsPermissionFault, UnitConfig};
use vtd_model::mem::SparseMem;
use vtd_model::request::{AddressType, Translation};
use vtd_model::{Fault, Unit};

/// How the tables are reached.
#[derive(Clone, Copy, Debug)]
enum Mode {
    Scalable,
    /// Legacy root and context entries with this TT for the first device.
    Legacy(u8),
}

/// Everything about the unit except the caches.
#[derive(Clone, Copy, Debug)]
struct Knobs {
    caching_mode: bool,
    erratum: Spr17,
    ad_timing: AdTiming,
    nested_ss_ad: NestedSsAd,
    ss_permission_fault: SsPermissionFault,
    non_snooped_ad: NonSnoopedAd,
}

fn knobs() -> impl Strategy<Value = Knobs> {
    (
        any::<bool>(),
        prop_oneof![
            Just(Spr17::Off),
            Just(Spr17::TopLevel),
            Just(Spr17::AllLevels)
        ],
        prop_oneof![Just(AdTiming::PerLevel), Just(AdTiming::AfterWalk)],
        prop_oneof![Just(NestedSsAd::Full), Just(NestedSsAd::FinalAccessOnly)],
        prop_oneof![
            Just(SsPermissionFault::General),
            Just(SsPermissionFault::SecondStage)
        ],
        prop_oneof![Just(NonSnoopedAd::Fault), Just(NonSnoopedAd::Perform)],
    )
        .prop_map(
            |(
                caching_mode,
                erratum,
                ad_timing,
                nested_ss_ad,
                ss_permission_fault,
                non_snooped_ad,
            )| {
                Knobs {
                    caching_mode,
                    erratum,
                    ad_timing,
                    nested_ss_ad,
                    ss_permission_fault,
                    non_snooped_ad,
                }
            },
        )
}

/// Cache geometry of the cached unit: the default, or every cache a few entries.
fn caches() -> impl Strategy<Value = CacheConfig> {
    let replacement = prop_oneof![
        Just(Replacement::Clock),
        Just(Replacement::Fifo),
        Just(Replacement::Random)
    ];
    prop_oneof![
        1 => Just(CacheConfig::default()),
        1 => (1usize..=4, 1usize..=2, replacement).prop_map(|(sets, ways, replacement)| {
            let g = Geometry::new(sets, ways);
            CacheConfig {
                enabled: true,
                context: g,
                pasid: g,
                iotlb: g,
                fs_psc: g,
                ss_psc: g,
                devtlb: g,
                replacement,
            }
        }),
    ]
}

fn mode() -> impl Strategy<Value = Mode> {
    prop_oneof![3 => Just(Mode::Scalable), 1 => (0u8..3).prop_map(Mode::Legacy)]
}

/// A request of the scenario, sometimes as an ATS translation request.
fn request() -> impl Strategy<Value = (ReqSpec, bool)> {
    (req_spec(0.1), prop::bool::weighted(0.1))
}

/// A unit with `caches` over a fresh memory holding the scenario's tables.
fn unit(scn: &Scenario, mode: Mode, knobs: Knobs, caches: CacheConfig) -> Unit<SparseMem> {
    let mut config = UnitConfig::default();
    config.cap = config.cap.with_cm(knobs.caching_mode);
    config.switches.erratum_spr17 = knobs.erratum;
    config.switches.ad_timing = knobs.ad_timing;
    config.switches.nested_ss_ad = knobs.nested_ss_ad;
    config.switches.ss_permission_fault = knobs.ss_permission_fault;
    config.switches.non_snooped_ad = knobs.non_snooped_ad;
    config.caches = caches;
    let mem = SparseMem::new();
    let layout = match mode {
        Mode::Scalable => scn.build(&mem),
        Mode::Legacy(tt) => scn.build_legacy(&mem, tt),
    };
    let unit = Unit::new(config, mem).expect("valid configuration");
    vtd_model::build::enable_translation(&unit, layout.rtaddr).expect("enable translation");
    unit
}

/// The parts of a result caching must not change.
type Outcome = Result<
    (
        u64,
        vtd_spec::addr::PageSize,
        vtd_model::request::Perms,
        vtd_model::request::TranslationKind,
        Option<u64>,
        Option<u16>,
    ),
    vtd_spec::fault::FaultReason,
>;

fn outcome(result: &Result<Translation, Fault>) -> Outcome {
    match result {
        Ok(t) => Ok((t.hpa, t.page_size, t.perms, t.kind, t.gpa, t.did)),
        Err(f) => Err(f.reason),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A cached unit and an uncached unit over identical tables give every request of the
    /// same sequence the same translation or the same fault reason.
    #[test]
    fn caches_never_change_a_translation_result(
        scn in mixed_scenario(),
        mode in mode(),
        knobs in knobs(),
        caches in caches(),
        reqs in prop::collection::vec(request(), 1..24),
    ) {
        let cached = unit(&scn, mode, knobs, caches);
        let uncached = unit(&scn, mode, knobs, CacheConfig::disabled());
        for (i, (spec, ats)) in reqs.iter().chain(reqs.iter()).enumerate() {
            let mut req = spec.request(&scn);
            if *ats {
                req = req.with_address_type(AddressType::TranslationRequest);
            }
            let with = cached.translate(&req);
            let without = uncached.translate(&req);
            prop_assert_eq!(
                outcome(&with),
                outcome(&without),
                "request #{} {:x?}: cached {:x?} vs uncached {:x?}",
                i,
                req,
                with,
                without
            );
        }
    }
}
