//! What a VMM gets from a unit the guest drives: completed invalidations and remapping
//! changes (`UnitObserver`), side-effect-free PASID-entry lookups, and faults it reports.

mod common;

use std::sync::{Arc, Mutex};

use common::{DID, Nested, PASID, SID};
use vtd_model::build::{InvalidationQueue, ScalableTables, enable_translation};
use vtd_model::invalidation::Invalidation;
use vtd_model::mem::SparseMem;
use vtd_model::request::Request;
use vtd_model::{PasidLookup, Unit, UnitConfig, UnitObserver};
use vtd_spec::fault::FaultReason;
use vtd_spec::inv::{PasidIotlbGranularity, PasidIotlbInvDesc, RawDescriptor};
use vtd_spec::pasid::Pgtt;
use vtd_spec::regs::offset;

#[derive(Default)]
struct Log {
    invalidations: Mutex<Vec<Invalidation>>,
    remapping: Mutex<Vec<bool>>,
}

impl UnitObserver for Log {
    fn invalidated(&self, inv: &Invalidation) {
        self.invalidations.lock().unwrap().push(*inv);
    }

    fn remapping_changed(&self, enabled: bool) {
        self.remapping.lock().unwrap().push(enabled);
    }
}

fn observed_unit() -> (Unit<SparseMem>, Arc<Log>) {
    let log = Arc::new(Log::default());
    let mem = SparseMem::new();
    let unit = Unit::new(UnitConfig::default(), mem)
        .unwrap()
        .with_observer(log.clone());
    (unit, log)
}

#[test]
fn queued_pasid_iotlb_invalidation_reaches_the_observer() {
    let (unit, log) = observed_unit();
    let mem = unit.mem();
    let mut queue = InvalidationQueue::enable(&unit, mem, true).unwrap();
    let desc = PasidIotlbInvDesc::new()
        .with_g(PasidIotlbGranularity::Page)
        .with_did(DID)
        .with_pasid(PASID)
        .with_addr(0x4000)
        .with_am(1)
        .with_ih(true);

    queue
        .submit_and_wait(&[RawDescriptor {
            lo: desc.into_bits(),
            hi: 0,
        }])
        .unwrap();

    let want = Invalidation::PasidIotlbPage {
        did: DID,
        pasid: PASID,
        addr: 0x400_0000,
        am: 1,
        ih: true,
    };
    assert_eq!(*log.invalidations.lock().unwrap(), vec![want]);
}

#[test]
fn enabling_and_disabling_remapping_is_reported() {
    let (unit, log) = observed_unit();
    let tables = ScalableTables::new(unit.mem(), unit.mem());

    enable_translation(&unit, tables.rtaddr()).unwrap();
    unit.mmio_write(offset::GCMD, 4, 0).unwrap();

    assert_eq!(*log.remapping.lock().unwrap(), vec![true, false]);
}

#[test]
fn lookup_finds_the_entry_of_requests_without_pasid() {
    let n = Nested::new();

    match n.unit.lookup_pasid_entry(SID, None) {
        PasidLookup::Entry { pasid, entry } => {
            assert_eq!(pasid, 0);
            assert_eq!(entry.lo.pgtt(), Pgtt::Nested);
        }
        other => panic!("expected the RID_PASID entry, got {other:?}"),
    }
}

#[test]
fn lookup_of_a_missing_pasid_entry_gives_the_lookup_fault() {
    let n = Nested::new();

    assert_eq!(
        n.unit.lookup_pasid_entry(SID, Some(PASID + 1)),
        PasidLookup::Fault(FaultReason::SptNotPresent)
    );
}

#[test]
fn lookup_of_an_unknown_device_gives_the_context_fault() {
    let n = Nested::new();

    assert_eq!(
        n.unit.lookup_pasid_entry(SID + 8, None),
        PasidLookup::Fault(FaultReason::SctNotPresent)
    );
}

#[test]
fn lookup_with_remapping_off_says_disabled() {
    let (unit, _) = observed_unit();

    assert_eq!(unit.lookup_pasid_entry(SID, None), PasidLookup::Disabled);
}

#[test]
fn lookup_records_nothing() {
    let n = Nested::new();

    n.unit.lookup_pasid_entry(SID + 8, None);

    assert_eq!(n.unit.stats().faults(), 0);
}

#[test]
fn reported_fault_lands_in_the_fault_recording_registers() {
    let n = Nested::new();
    let fault = n
        .unit
        .translate(&Request::read(SID + 8, 0x1000))
        .unwrap_err();
    let before = n.unit.stats().faults();

    let reported = n.unit.report_fault(fault, false);

    assert!(
        matches!(
            reported.recording,
            vtd_model::fault::FaultRecording::Recorded { .. }
        ),
        "{reported:?}"
    );
    assert_eq!(n.unit.stats().faults(), before + 1);
}
