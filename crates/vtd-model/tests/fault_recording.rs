//! Primary fault logging as a guest driver sees it over MMIO (§7.2): the fields of
//! FRCD (§1.9), FSTS.PPF/FRI/PFO (§1.8), clearing records and overflow, fault-processing
//! disable (§7.3), the fault-event MSI under FECTL.IM, and collapsing by source id.

mod support;

use std::sync::Arc;

use support::{
    FECTL_IM, FECTL_IP, FSTS_IQE, FSTS_PFO, FSTS_PPF, HPA, IOVA, Legacy, OTHER_SID, PASID,
    RecordingSink, SID, Sm, clear_frcd, config, fectl, frcd_offset, fri, fsts, read_frcd,
};
use vtd_model::build::{InvalidationQueue, Leaf};
use vtd_model::config::UnitConfig;
use vtd_model::fault::{Fault, FaultRecording};
use vtd_model::mem::{PhysMem, SparseMem};
use vtd_model::regs::Msi;
use vtd_model::request::{Access, AddressType, Request};
use vtd_model::unit::Unit;
use vtd_spec::addr::PageSize;
use vtd_spec::context::SmContextEntry;
use vtd_spec::fault::FaultReason;
use vtd_spec::inv::RawDescriptor;
use vtd_spec::pasid::{PasidDirEntry, PasidEntry, PasidEntryLo};
use vtd_spec::regs::{GlobalCommand, offset};

/// First stage only with nothing mapped: every request with [`PASID`] faults SFS.2.
fn unmapped() -> Sm {
    Sm::first_stage(config(), 4)
}

fn unmapped_with(config: UnitConfig) -> Sm {
    Sm::first_stage(config, 4)
}

/// A unit with two fault-recording registers (NFR = 1).
fn two_records() -> UnitConfig {
    let mut c = config();
    c.cap = c.cap.with_nfr(1);
    c
}

fn read_fault(sm: &Sm, addr: u64) -> Fault {
    sm.translate(&Request::read(SID, addr).with_pasid(PASID))
        .unwrap_err()
}

fn recorded(index: u16) -> FaultRecording {
    FaultRecording::Recorded { index }
}

// ---------------------------------------------------------------------------------------
// FRCD fields (§1.9).
// ---------------------------------------------------------------------------------------

#[test]
fn first_fault_is_recorded_in_frcd_0_with_f_set() {
    let sm = unmapped();

    let fault = read_fault(&sm, IOVA);

    assert_eq!(fault.recording, recorded(0));
    let r = read_frcd(&sm.unit, 0);
    assert!(r.f());
    assert_eq!(r.fr(), 0x71);
    assert_eq!(r.sid(), SID);
}

#[test]
fn fault_record_holds_the_faulting_page_address_with_bits_11_0_clear() {
    let sm = unmapped();

    read_fault(&sm, IOVA + 0x123);

    let r = read_frcd(&sm.unit, 0);
    assert_eq!(r.fault_page(), IOVA);
    assert_eq!(r.lo & 0xFFF, 0);
}

#[test]
fn fault_record_of_request_with_pasid_has_pp_set_and_the_pasid_in_pv() {
    let sm = unmapped();

    read_fault(&sm, IOVA);

    let r = read_frcd(&sm.unit, 0);
    assert!(r.pp());
    assert_eq!(r.pv(), PASID);
}

#[test]
fn fault_record_of_request_without_pasid_has_pp_clear() {
    let sm = unmapped();

    sm.translate(&Request::read(SID, IOVA)).unwrap_err();

    let r = read_frcd(&sm.unit, 0);
    assert_eq!(r.fr(), 0x71);
    assert!(!r.pp());
}

#[test]
fn fault_record_of_privileged_request_has_priv_set() {
    let sm = unmapped();

    sm.translate(&Request::read(SID, IOVA).with_pasid(PASID).privileged())
        .unwrap_err();

    let r = read_frcd(&sm.unit, 0);
    assert_eq!(r.fr(), 0x5D);
    assert!(r.privileged());
}

#[test]
fn fault_record_of_user_request_has_priv_clear() {
    let sm = unmapped();

    read_fault(&sm, IOVA);

    assert!(!read_frcd(&sm.unit, 0).privileged());
}

#[test]
fn fault_record_of_execute_request_has_exe_set() {
    let sm = unmapped();

    sm.translate(&Request::read(SID, IOVA).with_pasid(PASID).execute())
        .unwrap_err();

    let r = read_frcd(&sm.unit, 0);
    assert_eq!(r.fr(), 0x5C);
    assert!(r.exe());
}

#[test]
fn write_fault_is_recorded_with_t1_clear_and_t2_clear() {
    let sm = unmapped();

    sm.translate(&Request::write(SID, IOVA).with_pasid(PASID))
        .unwrap_err();

    let r = read_frcd(&sm.unit, 0);
    assert!(!r.t1());
    assert!(!r.t2());
}

#[test]
fn read_fault_is_recorded_with_t1_set_and_t2_clear() {
    let sm = unmapped();

    read_fault(&sm, IOVA);

    let r = read_frcd(&sm.unit, 0);
    assert!(r.t1());
    assert!(!r.t2());
}

#[test]
fn atomic_fault_is_recorded_with_t2_set() {
    let sm = unmapped();

    sm.translate(&Request::new(SID, IOVA, Access::AtomicRmw).with_pasid(PASID))
        .unwrap_err();

    assert!(read_frcd(&sm.unit, 0).t2());
}

#[test]
fn untranslated_request_fault_is_recorded_with_address_type_00() {
    let sm = unmapped();

    read_fault(&sm, IOVA);

    assert_eq!(read_frcd(&sm.unit, 0).at(), 0b00);
}

#[test]
fn translated_request_fault_is_recorded_with_address_type_10() {
    let sm = unmapped();
    let req = Request::read(SID, HPA).with_address_type(AddressType::Translated);

    sm.translate(&req).unwrap_err();

    let r = read_frcd(&sm.unit, 0);
    assert_eq!(r.fr(), 0x44);
    assert_eq!(r.at(), 0b10);
}

#[test]
fn fault_record_fields_ignore_writes() {
    let sm = unmapped();
    read_fault(&sm, IOVA);
    let before = read_frcd(&sm.unit, 0);
    let off = frcd_offset(&sm.unit, 0);

    sm.unit.mmio_write(off, 8, 0).unwrap();
    sm.unit.mmio_write(off + 8, 4, 0).unwrap();

    assert_eq!(read_frcd(&sm.unit, 0), before);
}

// ---------------------------------------------------------------------------------------
// FSTS.PPF and FRI (§1.8, §7.2).
// ---------------------------------------------------------------------------------------

#[test]
fn no_fault_leaves_ppf_clear() {
    let sm = unmapped();

    assert_eq!(fsts(&sm.unit) & FSTS_PPF, 0);
}

#[test]
fn first_fault_sets_ppf_and_points_fri_at_record_0() {
    let sm = unmapped();

    read_fault(&sm, IOVA);

    assert_eq!(fsts(&sm.unit) & FSTS_PPF, FSTS_PPF);
    assert_eq!(fri(&sm.unit), 0);
}

#[test]
fn second_fault_goes_to_the_next_record_and_fri_stays_at_the_first() {
    let sm = unmapped();
    read_fault(&sm, IOVA);

    let fault = read_fault(&sm, IOVA + 0x1000);

    assert_eq!(fault.recording, recorded(1));
    let r = read_frcd(&sm.unit, 1);
    assert!(r.f());
    assert_eq!(r.fault_page(), IOVA + 0x1000);
    assert_eq!(fri(&sm.unit), 0);
}

#[test]
fn ppf_stays_set_while_any_record_is_pending() {
    let sm = unmapped();
    read_fault(&sm, IOVA);
    read_fault(&sm, IOVA + 0x1000);

    clear_frcd(&sm.unit, 0);

    assert_eq!(fsts(&sm.unit) & FSTS_PPF, FSTS_PPF);
}

#[test]
fn ppf_clears_once_every_record_is_cleared() {
    let sm = unmapped();
    read_fault(&sm, IOVA);
    read_fault(&sm, IOVA + 0x1000);

    clear_frcd(&sm.unit, 0);
    clear_frcd(&sm.unit, 1);

    assert_eq!(fsts(&sm.unit) & FSTS_PPF, 0);
}

#[test]
fn fri_points_at_the_record_written_when_ppf_was_clear() {
    let sm = unmapped();
    read_fault(&sm, IOVA);
    read_fault(&sm, IOVA + 0x1000);
    clear_frcd(&sm.unit, 0);
    clear_frcd(&sm.unit, 1);

    let fault = read_fault(&sm, IOVA + 0x2000);

    assert_eq!(fault.recording, recorded(2));
    assert_eq!(fri(&sm.unit), 2);
}

#[test]
fn ppf_and_fri_ignore_writes() {
    let sm = unmapped();
    read_fault(&sm, IOVA);

    // Write 1 to PPF and 5 to FRI.
    sm.unit
        .mmio_write(offset::FSTS, 4, (5 << 8) | FSTS_PPF as u64)
        .unwrap();

    assert_eq!(fsts(&sm.unit) & FSTS_PPF, FSTS_PPF);
    assert_eq!(fri(&sm.unit), 0);
}

/// §7.2 (QEMU behaviour): TE going from 1 to 0 resets the next record index.
#[test]
fn disabling_translation_restarts_recording_at_record_0() {
    let sm = unmapped();
    read_fault(&sm, IOVA);
    clear_frcd(&sm.unit, 0);
    let te = GlobalCommand::TE.bits() as u64;

    sm.unit.mmio_write(offset::GCMD, 4, 0).unwrap();
    sm.unit.mmio_write(offset::GCMD, 4, te).unwrap();

    let fault = read_fault(&sm, IOVA + 0x1000);
    assert_eq!(fault.recording, recorded(0));
}

// ---------------------------------------------------------------------------------------
// Clearing F (§1.9: bit 127 is RW1C).
// ---------------------------------------------------------------------------------------

#[test]
fn writing_one_to_bit_127_clears_f() {
    let sm = unmapped();
    read_fault(&sm, IOVA);

    sm.unit
        .mmio_write(frcd_offset(&sm.unit, 0) + 12, 4, 1 << 31)
        .unwrap();

    assert!(!read_frcd(&sm.unit, 0).f());
}

#[test]
fn writing_zero_to_bit_127_leaves_the_record_pending() {
    let sm = unmapped();
    read_fault(&sm, IOVA);

    sm.unit
        .mmio_write(frcd_offset(&sm.unit, 0) + 12, 4, 0)
        .unwrap();

    assert!(read_frcd(&sm.unit, 0).f());
}

#[test]
fn eight_byte_write_of_bit_63_to_the_upper_qword_clears_f() {
    let sm = unmapped();
    read_fault(&sm, IOVA);

    sm.unit
        .mmio_write(frcd_offset(&sm.unit, 0) + 8, 8, 1 << 63)
        .unwrap();

    assert!(!read_frcd(&sm.unit, 0).f());
}

// ---------------------------------------------------------------------------------------
// Overflow (§7.2 steps 1 and 3, FSTS.PFO).
// ---------------------------------------------------------------------------------------

/// Two records, both pending with faults at [`IOVA`] and [`IOVA`] + 4 KiB.
fn both_records_pending() -> Sm {
    let sm = unmapped_with(two_records());
    read_fault(&sm, IOVA);
    read_fault(&sm, IOVA + 0x1000);
    sm
}

#[test]
fn records_wrap_around_to_record_0() {
    let sm = both_records_pending();
    clear_frcd(&sm.unit, 0);
    clear_frcd(&sm.unit, 1);

    let fault = read_fault(&sm, IOVA + 0x2000);

    assert_eq!(fault.recording, recorded(0));
    assert_eq!(read_frcd(&sm.unit, 0).fault_page(), IOVA + 0x2000);
}

#[test]
fn fault_when_every_record_is_pending_sets_pfo() {
    let sm = both_records_pending();

    let fault = read_fault(&sm, IOVA + 0x2000);

    assert_eq!(fault.recording, FaultRecording::Overflow);
    assert_eq!(fsts(&sm.unit) & FSTS_PFO, FSTS_PFO);
}

#[test]
fn fault_when_every_record_is_pending_overwrites_no_record() {
    let sm = both_records_pending();

    read_fault(&sm, IOVA + 0x2000);

    assert_eq!(read_frcd(&sm.unit, 0).fault_page(), IOVA);
    assert_eq!(read_frcd(&sm.unit, 1).fault_page(), IOVA + 0x1000);
}

#[test]
fn fault_while_pfo_is_set_is_dropped_even_with_a_free_record() {
    let sm = both_records_pending();
    read_fault(&sm, IOVA + 0x2000);
    clear_frcd(&sm.unit, 0);

    let fault = read_fault(&sm, IOVA + 0x3000);

    assert_eq!(fault.recording, FaultRecording::Overflow);
    assert!(!read_frcd(&sm.unit, 0).f());
}

#[test]
fn writing_zero_to_pfo_leaves_it_set() {
    let sm = both_records_pending();
    read_fault(&sm, IOVA + 0x2000);

    sm.unit.mmio_write(offset::FSTS, 4, 0).unwrap();

    assert_eq!(fsts(&sm.unit) & FSTS_PFO, FSTS_PFO);
}

#[test]
fn writing_one_to_pfo_clears_it() {
    let sm = both_records_pending();
    read_fault(&sm, IOVA + 0x2000);

    sm.unit
        .mmio_write(offset::FSTS, 4, FSTS_PFO as u64)
        .unwrap();

    assert_eq!(fsts(&sm.unit) & FSTS_PFO, 0);
}

#[test]
fn fault_after_pfo_and_a_record_are_cleared_is_recorded() {
    let sm = both_records_pending();
    read_fault(&sm, IOVA + 0x2000);
    clear_frcd(&sm.unit, 0);
    sm.unit
        .mmio_write(offset::FSTS, 4, FSTS_PFO as u64)
        .unwrap();

    let fault = read_fault(&sm, IOVA + 0x3000);

    assert_eq!(fault.recording, recorded(0));
    assert_eq!(read_frcd(&sm.unit, 0).fault_page(), IOVA + 0x3000);
}

// ---------------------------------------------------------------------------------------
// Fault processing disable (§7.3).
// ---------------------------------------------------------------------------------------

fn set_context_fpd(sm: &Sm) {
    sm.update_context(SID, |c| SmContextEntry {
        lo: c.lo.with_fpd(true),
        ..c
    });
}

fn assert_nothing_recorded(sm: &Sm) {
    assert!(!read_frcd(&sm.unit, 0).f());
    assert_eq!(fsts(&sm.unit) & FSTS_PPF, 0);
}

#[test]
fn context_fpd_suppresses_a_first_stage_fault() {
    let sm = unmapped();
    set_context_fpd(&sm);

    let fault = read_fault(&sm, IOVA);

    assert_eq!(fault.reason, FaultReason::SfsNotPresent);
    assert_eq!(fault.recording, FaultRecording::SuppressedByFpd);
    assert_nothing_recorded(&sm);
}

#[test]
fn fpd_in_a_non_present_context_entry_suppresses_sct2() {
    let sm = unmapped();
    sm.update_context(SID, |c| SmContextEntry {
        lo: c.lo.with_p(false).with_fpd(true),
        ..c
    });

    let fault = read_fault(&sm, IOVA);

    assert_eq!(fault.reason, FaultReason::SctNotPresent);
    assert_eq!(fault.recording, FaultRecording::SuppressedByFpd);
    assert_nothing_recorded(&sm);
}

#[test]
fn pasid_directory_fpd_suppresses_a_non_present_pasid_entry_fault() {
    let sm = unmapped();
    sm.modify_u64(sm.pasid_dir_entry_addr(PASID), |v| v | 1 << 1);

    // PASID 8 shares the directory entry of PASID 7 and has no PASID entry.
    let fault = sm
        .translate(&Request::read(SID, IOVA).with_pasid(8))
        .unwrap_err();

    assert_eq!(fault.reason, FaultReason::SptNotPresent);
    assert_eq!(fault.recording, FaultRecording::SuppressedByFpd);
    assert_nothing_recorded(&sm);
}

#[test]
fn fpd_in_a_non_present_pasid_directory_entry_suppresses_spd2() {
    let sm = unmapped();
    let fpd_only = PasidDirEntry::new().with_fpd(true);
    sm.mem()
        .write_u64(sm.pasid_dir_entry_addr(64), fpd_only.into_bits())
        .unwrap();

    let fault = sm
        .translate(&Request::read(SID, IOVA).with_pasid(64))
        .unwrap_err();

    assert_eq!(fault.reason, FaultReason::SpdNotPresent);
    assert_eq!(fault.recording, FaultRecording::SuppressedByFpd);
    assert_nothing_recorded(&sm);
}

#[test]
fn pasid_entry_fpd_suppresses_a_first_stage_fault() {
    let sm = unmapped();
    sm.update_pasid_entries(|e| PasidEntry {
        lo: e.lo.with_fpd(true),
        ..e
    });

    let fault = read_fault(&sm, IOVA);

    assert_eq!(fault.recording, FaultRecording::SuppressedByFpd);
    assert_nothing_recorded(&sm);
}

#[test]
fn fpd_in_a_non_present_pasid_entry_suppresses_spt2() {
    let sm = unmapped();
    let fpd_only = PasidEntry {
        lo: PasidEntryLo::new().with_fpd(true),
        ..PasidEntry::default()
    };
    sm.set_pasid_entry(8, fpd_only);

    let fault = sm
        .translate(&Request::read(SID, IOVA).with_pasid(8))
        .unwrap_err();

    assert_eq!(fault.reason, FaultReason::SptNotPresent);
    assert_eq!(fault.recording, FaultRecording::SuppressedByFpd);
    assert_nothing_recorded(&sm);
}

#[test]
fn pasid_entry_fpd_does_not_suppress_faults_of_another_pasid() {
    let sm = unmapped();
    let e = sm.pasid_entry(PASID);
    sm.set_pasid_entry(
        PASID,
        PasidEntry {
            lo: e.lo.with_fpd(true),
            ..e
        },
    );

    let fault = sm.translate(&Request::read(SID, IOVA)).unwrap_err();

    assert_eq!(fault.recording, recorded(0));
}

#[test]
fn context_fpd_does_not_suppress_a_root_entry_fault() {
    let sm = unmapped();
    set_context_fpd(&sm);
    let root = sm.mem().read_u128(sm.root_entry_addr(0)).unwrap();
    sm.mem()
        .write_u128(sm.root_entry_addr(0), root | 1 << 1)
        .unwrap();

    let fault = read_fault(&sm, IOVA);

    assert_eq!(fault.reason, FaultReason::SrtReserved);
    assert_eq!(fault.recording, recorded(0));
    assert!(read_frcd(&sm.unit, 0).f());
}

#[test]
fn context_fpd_does_not_suppress_a_reserved_bit_in_the_context_entry() {
    let sm = unmapped();
    sm.update_context(SID, |c| SmContextEntry {
        lo: c.lo.with_fpd(true),
        hi: 1,
    });

    let fault = read_fault(&sm, IOVA);

    assert_eq!(fault.reason, FaultReason::SctReserved);
    assert_eq!(fault.recording, recorded(0));
}

#[test]
fn context_fpd_does_not_suppress_a_pasid_directory_access_error() {
    let sm = unmapped();
    sm.update_context(SID, |c| SmContextEntry {
        lo: c
            .lo
            .with_fpd(true)
            .with_pasiddirptr(support::UNBACKED >> 12),
        ..c
    });

    let fault = read_fault(&sm, IOVA);

    assert_eq!(fault.reason, FaultReason::SpdAccessError);
    assert_eq!(fault.recording, recorded(0));
}

#[test]
fn context_fpd_does_not_suppress_a_pasid_table_access_error() {
    let sm = unmapped();
    set_context_fpd(&sm);
    let pde = PasidDirEntry::new()
        .with_p(true)
        .with_smptblptr(support::UNBACKED >> 12);
    sm.mem()
        .write_u64(sm.pasid_dir_entry_addr(64), pde.into_bits())
        .unwrap();

    let fault = sm
        .translate(&Request::read(SID, IOVA).with_pasid(64))
        .unwrap_err();

    assert_eq!(fault.reason, FaultReason::SptAccessError);
    assert_eq!(fault.recording, recorded(0));
}

#[test]
fn legacy_context_fpd_suppresses_a_second_stage_fault() {
    let l = Legacy::new(config());
    l.set_context(support::legacy_context(l.ss_root).with_fpd(true));

    let fault = l.translate(&Request::read(SID, IOVA)).unwrap_err();

    assert_eq!(fault.reason, FaultReason::LgnReadDenied);
    assert_eq!(fault.recording, FaultRecording::SuppressedByFpd);
    assert!(!read_frcd(&l.unit, 0).f());
}

// ---------------------------------------------------------------------------------------
// Fault-event MSI (§7.2 step 5, FECTL/FEDATA/FEADDR/FEUADDR).
// ---------------------------------------------------------------------------------------

const FEDATA: u32 = 0x4021;
const FEADDR: u32 = 0xFEE0_1000;
const FEUADDR: u32 = 0x12;

/// An unmapped first-stage unit routing MSIs to a recording sink, the fault-event message
/// programmed, FECTL.IM = `masked`.
fn with_sink(masked: bool) -> (Sm, Arc<RecordingSink>) {
    let sink = Arc::new(RecordingSink::default());
    let unit = Unit::new(config(), SparseMem::new())
        .unwrap()
        .with_interrupt_sink(sink.clone());
    let sm = Sm::first_stage_on(unit, 4);
    sm.unit
        .mmio_write(offset::FEDATA, 4, FEDATA as u64)
        .unwrap();
    sm.unit
        .mmio_write(offset::FEADDR, 4, FEADDR as u64)
        .unwrap();
    sm.unit
        .mmio_write(offset::FEUADDR, 4, FEUADDR as u64)
        .unwrap();
    let im = u64::from(masked) * FECTL_IM as u64;
    sm.unit.mmio_write(offset::FECTL, 4, im).unwrap();
    (sm, sink)
}

fn programmed_msi() -> Msi {
    Msi {
        addr: (FEUADDR as u64) << 32 | FEADDR as u64,
        data: FEDATA,
    }
}

#[test]
fn unmasked_fault_sends_the_programmed_msi() {
    let (sm, sink) = with_sink(false);

    read_fault(&sm, IOVA);

    assert_eq!(sink.fault_msis(), vec![programmed_msi()]);
}

#[test]
fn unmasked_fault_leaves_ip_clear() {
    let (sm, _sink) = with_sink(false);

    read_fault(&sm, IOVA);

    assert_eq!(fectl(&sm.unit) & FECTL_IP, 0);
}

#[test]
fn masked_fault_sets_ip_and_sends_nothing() {
    let (sm, sink) = with_sink(true);

    read_fault(&sm, IOVA);

    assert_eq!(fectl(&sm.unit) & FECTL_IP, FECTL_IP);
    assert_eq!(sink.fault_msis(), vec![]);
}

#[test]
fn clearing_im_delivers_the_pending_fault_event() {
    let (sm, sink) = with_sink(true);
    read_fault(&sm, IOVA);

    sm.unit.mmio_write(offset::FECTL, 4, 0).unwrap();

    assert_eq!(sink.fault_msis(), vec![programmed_msi()]);
    assert_eq!(fectl(&sm.unit) & FECTL_IP, 0);
}

#[test]
fn clearing_im_without_a_pending_event_sends_nothing() {
    let (sm, sink) = with_sink(true);

    sm.unit.mmio_write(offset::FECTL, 4, 0).unwrap();

    assert_eq!(sink.fault_msis(), vec![]);
}

#[test]
fn second_fault_while_ppf_is_set_sends_no_new_event() {
    let (sm, sink) = with_sink(false);
    read_fault(&sm, IOVA);

    read_fault(&sm, IOVA + 0x1000);

    assert_eq!(sink.fault_msis().len(), 1);
}

#[test]
fn fault_after_every_record_was_cleared_sends_a_new_event() {
    let (sm, sink) = with_sink(false);
    read_fault(&sm, IOVA);
    clear_frcd(&sm.unit, 0);

    read_fault(&sm, IOVA + 0x1000);

    assert_eq!(sink.fault_msis(), vec![programmed_msi(), programmed_msi()]);
}

#[test]
fn fault_while_iqe_is_pending_sends_no_new_event() {
    let (sm, sink) = with_sink(false);
    {
        let mut queue = InvalidationQueue::enable(&sm.unit, sm.mem(), true).unwrap();
        // Descriptor type 0xF is not defined (§8.3): the queue stops with IQE.
        queue.submit(&[RawDescriptor { lo: 0xF, hi: 0 }]).unwrap();
    }
    assert_eq!(fsts(&sm.unit) & FSTS_IQE, FSTS_IQE);
    assert_eq!(sink.fault_msis().len(), 1);

    read_fault(&sm, IOVA);

    assert!(read_frcd(&sm.unit, 0).f());
    assert_eq!(sink.fault_msis().len(), 1);
}

#[test]
fn fault_suppressed_by_fpd_sends_no_event() {
    let (sm, sink) = with_sink(false);
    set_context_fpd(&sm);

    read_fault(&sm, IOVA);

    assert_eq!(sink.fault_msis(), vec![]);
}

#[test]
fn successful_translation_sends_no_event() {
    let (sm, sink) = with_sink(false);
    sm.map_fs(IOVA, HPA, PageSize::Size4K, Leaf::read_write());

    sm.translate(&Request::read(SID, IOVA).with_pasid(PASID))
        .unwrap();

    assert_eq!(sink.events(), vec![]);
}

// ---------------------------------------------------------------------------------------
// Collapsing faults of one source id (§7.2 step 2, model switch).
// ---------------------------------------------------------------------------------------

fn collapsing(on: bool) -> Sm {
    let mut c = config();
    c.switches.collapse_faults_by_sid = on;
    let sm = unmapped_with(c);
    sm.add_device(OTHER_SID);
    sm
}

#[test]
fn without_collapse_a_second_fault_from_the_same_sid_is_recorded() {
    let sm = collapsing(false);
    read_fault(&sm, IOVA);

    let fault = read_fault(&sm, IOVA + 0x1000);

    assert_eq!(fault.recording, recorded(1));
}

#[test]
fn with_collapse_a_second_fault_from_the_same_sid_is_collapsed() {
    let sm = collapsing(true);
    read_fault(&sm, IOVA);

    let fault = read_fault(&sm, IOVA + 0x1000);

    assert_eq!(fault.recording, FaultRecording::Collapsed);
    assert!(!read_frcd(&sm.unit, 1).f());
}

#[test]
fn with_collapse_a_fault_from_another_sid_is_recorded() {
    let sm = collapsing(true);
    read_fault(&sm, IOVA);

    let fault = sm
        .translate(&Request::read(OTHER_SID, IOVA).with_pasid(PASID))
        .unwrap_err();

    assert_eq!(fault.recording, recorded(1));
    assert_eq!(read_frcd(&sm.unit, 1).sid(), OTHER_SID);
}

#[test]
fn with_collapse_a_fault_is_recorded_again_once_its_sid_has_no_pending_record() {
    let sm = collapsing(true);
    read_fault(&sm, IOVA);
    clear_frcd(&sm.unit, 0);

    let fault = read_fault(&sm, IOVA + 0x1000);

    assert_eq!(fault.recording, recorded(1));
}
