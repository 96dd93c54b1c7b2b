//! Register access semantics (§1): read-only registers, write-1-to-clear bits, the
//! GCMD→GSTS handshakes (TE, SRTP, QIE), register-based invalidation handshakes, 4- and
//! 8-byte accesses and malformed accesses, and translation with remapping disabled.

mod support;

use support::{HPA, IOVA, PASID, SID, Sm, config, fsts};
use vtd_model::build::{
    Format, InvalidationQueue, Leaf, PageTable, ScalableTables, enable_translation,
};
use vtd_model::mem::{PhysMem, SparseMem};
use vtd_model::request::{Request, TranslationKind};
use vtd_model::unit::{MmioError, Unit};
use vtd_spec::addr::PageSize;
use vtd_spec::inv::{InvWaitDesc, RawDescriptor};
use vtd_spec::regs::{
    Ccmd, CcmdGranularity, GlobalCommand, GlobalStatus, IotlbGranularity, IotlbReg, RtAddr, Ttm,
    iotlb_reg_offset, offset,
};

const TE: u64 = GlobalCommand::TE.bits() as u64;
const SRTP: u64 = GlobalCommand::SRTP.bits() as u64;
const QIE: u64 = GlobalCommand::QIE.bits() as u64;

fn unit() -> Unit<SparseMem> {
    Unit::new(config(), SparseMem::new()).unwrap()
}

fn gsts(unit: &Unit<SparseMem>) -> GlobalStatus {
    GlobalStatus::from_bits_retain(unit.mmio_read(offset::GSTS, 4).unwrap() as u32)
}

// ---------------------------------------------------------------------------------------
// Read-only registers.
// ---------------------------------------------------------------------------------------

#[test]
fn version_register_ignores_writes() {
    let u = unit();

    u.mmio_write(offset::VER, 4, 0xFFFF_FFFF).unwrap();

    assert_eq!(
        u.mmio_read(offset::VER, 4).unwrap(),
        config().version as u64
    );
}

#[test]
fn cap_register_reads_the_configured_capabilities() {
    let u = unit();

    assert_eq!(
        u.mmio_read(offset::CAP, 8).unwrap(),
        config().cap.into_bits()
    );
}

#[test]
fn cap_register_ignores_an_eight_byte_write() {
    let u = unit();

    u.mmio_write(offset::CAP, 8, 0).unwrap();

    assert_eq!(
        u.mmio_read(offset::CAP, 8).unwrap(),
        config().cap.into_bits()
    );
}

#[test]
fn cap_register_ignores_four_byte_writes_to_either_half() {
    let u = unit();

    u.mmio_write(offset::CAP, 4, 0).unwrap();
    u.mmio_write(offset::CAP + 4, 4, 0).unwrap();

    assert_eq!(
        u.mmio_read(offset::CAP, 8).unwrap(),
        config().cap.into_bits()
    );
}

#[test]
fn ecap_register_ignores_writes() {
    let u = unit();

    u.mmio_write(offset::ECAP, 8, !0).unwrap();

    assert_eq!(
        u.mmio_read(offset::ECAP, 8).unwrap(),
        config().ecap.into_bits()
    );
}

#[test]
fn gsts_ignores_writes() {
    let u = unit();

    u.mmio_write(offset::GSTS, 4, 0xFFFF_FFFF).unwrap();

    assert_eq!(gsts(&u), GlobalStatus::empty());
}

#[test]
fn gcmd_reads_as_zero_after_a_command() {
    let u = unit();

    u.mmio_write(offset::GCMD, 4, TE).unwrap();

    assert_eq!(u.mmio_read(offset::GCMD, 4).unwrap(), 0);
}

// ---------------------------------------------------------------------------------------
// 4- and 8-byte accesses.
// ---------------------------------------------------------------------------------------

#[test]
fn eight_byte_read_is_the_two_four_byte_halves() {
    let u = unit();

    let whole = u.mmio_read(offset::CAP, 8).unwrap();
    let low = u.mmio_read(offset::CAP, 4).unwrap();
    let high = u.mmio_read(offset::CAP + 4, 4).unwrap();

    assert_eq!(whole, high << 32 | low);
}

#[test]
fn four_byte_read_of_the_upper_half_returns_bits_63_32() {
    let u = unit();

    assert_eq!(
        u.mmio_read(offset::ECAP + 4, 4).unwrap(),
        config().ecap.into_bits() >> 32
    );
}

#[test]
fn rtaddr_reads_back_an_eight_byte_write() {
    let u = unit();
    let value = RtAddr::from_table(0x12_3456_7000, Ttm::Scalable).into_bits();

    u.mmio_write(offset::RTADDR, 8, value).unwrap();

    assert_eq!(u.mmio_read(offset::RTADDR, 8).unwrap(), value);
}

#[test]
fn two_four_byte_writes_make_one_eight_byte_value() {
    let u = unit();

    u.mmio_write(offset::RTADDR, 4, 0x5678_9400).unwrap();
    u.mmio_write(offset::RTADDR + 4, 4, 0x12).unwrap();

    assert_eq!(u.mmio_read(offset::RTADDR, 8).unwrap(), 0x12_5678_9400);
}

#[test]
fn four_byte_write_to_one_half_keeps_the_other_half() {
    let u = unit();
    u.mmio_write(offset::RTADDR, 8, 0x12_5678_9000).unwrap();

    u.mmio_write(offset::RTADDR + 4, 4, 0x34).unwrap();

    assert_eq!(u.mmio_read(offset::RTADDR, 8).unwrap(), 0x34_5678_9000);
}

// ---------------------------------------------------------------------------------------
// Malformed accesses.
// ---------------------------------------------------------------------------------------

#[test]
fn one_byte_read_is_a_bad_size() {
    let u = unit();

    assert_eq!(
        u.mmio_read(offset::CAP, 1),
        Err(MmioError::BadSize {
            offset: offset::CAP,
            size: 1
        })
    );
}

#[test]
fn two_byte_read_is_a_bad_size() {
    let u = unit();

    assert_eq!(
        u.mmio_read(offset::CAP, 2),
        Err(MmioError::BadSize {
            offset: offset::CAP,
            size: 2
        })
    );
}

#[test]
fn sixteen_byte_read_is_a_bad_size() {
    let u = unit();

    assert_eq!(
        u.mmio_read(offset::CAP, 16),
        Err(MmioError::BadSize {
            offset: offset::CAP,
            size: 16
        })
    );
}

#[test]
fn four_byte_read_at_an_offset_not_divisible_by_four_is_unaligned() {
    let u = unit();

    assert_eq!(
        u.mmio_read(offset::CAP + 2, 4),
        Err(MmioError::Unaligned {
            offset: offset::CAP + 2,
            size: 4
        })
    );
}

#[test]
fn eight_byte_read_at_an_offset_not_divisible_by_eight_is_unaligned() {
    let u = unit();

    assert_eq!(
        u.mmio_read(offset::GSTS, 8),
        Err(MmioError::Unaligned {
            offset: offset::GSTS,
            size: 8
        })
    );
}

#[test]
fn read_at_the_end_of_the_window_is_out_of_the_window() {
    let u = unit();
    let end = u.mmio_size();

    assert_eq!(
        u.mmio_read(end, 4),
        Err(MmioError::OutOfWindow {
            offset: end,
            window: end
        })
    );
}

#[test]
fn last_dword_of_the_window_is_readable() {
    let u = unit();

    assert_eq!(u.mmio_read(u.mmio_size() - 4, 4), Ok(0));
}

#[test]
fn read_whose_end_overflows_is_out_of_the_window() {
    let u = unit();
    let last_qword = u64::MAX - 7;

    assert_eq!(
        u.mmio_read(last_qword, 8),
        Err(MmioError::OutOfWindow {
            offset: last_qword,
            window: u.mmio_size()
        })
    );
}

#[test]
fn malformed_write_is_reported_like_a_malformed_read() {
    let u = unit();

    assert_eq!(
        u.mmio_write(offset::RTADDR, 2, 0x5000),
        Err(MmioError::BadSize {
            offset: offset::RTADDR,
            size: 2
        })
    );
    assert_eq!(
        u.mmio_write(offset::RTADDR + 4, 8, 0x5000),
        Err(MmioError::Unaligned {
            offset: offset::RTADDR + 4,
            size: 8
        })
    );
}

#[test]
fn malformed_write_changes_nothing() {
    let u = unit();

    assert_eq!(
        u.mmio_write(offset::RTADDR, 2, 0x5000),
        Err(MmioError::BadSize {
            offset: offset::RTADDR,
            size: 2
        })
    );
    assert_eq!(
        u.mmio_write(offset::GCMD + 2, 4, TE),
        Err(MmioError::Unaligned {
            offset: offset::GCMD + 2,
            size: 4
        })
    );

    assert_eq!(u.mmio_read(offset::RTADDR, 8).unwrap(), 0);
    assert_eq!(gsts(&u), GlobalStatus::empty());
}

// ---------------------------------------------------------------------------------------
// GCMD → GSTS handshakes (§1.4).
// ---------------------------------------------------------------------------------------

#[test]
fn te_command_sets_tes() {
    let u = unit();

    u.mmio_write(offset::GCMD, 4, TE).unwrap();

    assert!(gsts(&u).contains(GlobalStatus::TES));
}

#[test]
fn gcmd_without_te_clears_tes() {
    let u = unit();
    u.mmio_write(offset::GCMD, 4, TE).unwrap();

    u.mmio_write(offset::GCMD, 4, 0).unwrap();

    assert!(!gsts(&u).contains(GlobalStatus::TES));
}

#[test]
fn srtp_command_sets_rtps() {
    let u = unit();
    u.mmio_write(offset::RTADDR, 8, 0x5000 | 1 << 10).unwrap();

    u.mmio_write(offset::GCMD, 4, SRTP).unwrap();

    assert!(gsts(&u).contains(GlobalStatus::RTPS));
}

#[test]
fn srtp_with_te_keeps_translation_enabled() {
    let u = unit();
    u.mmio_write(offset::GCMD, 4, TE).unwrap();

    u.mmio_write(offset::GCMD, 4, TE | SRTP).unwrap();

    assert!(gsts(&u).contains(GlobalStatus::TES | GlobalStatus::RTPS));
}

/// A second-stage-only device mapping [`IOVA`] to [`HPA`], plus a second root table
/// (not yet latched) that maps [`IOVA`] to [`HPA`] + 4 KiB. Returns the second root.
fn second_root_table(sm: &Sm) -> u64 {
    sm.map_ss(IOVA, HPA, PageSize::Size4K, Leaf::read_write());
    let mem = sm.mem();
    let tables = ScalableTables::new(mem, mem);
    tables.add_device(SID, 0).unwrap();
    let mut ss = PageTable::physical(mem, mem, Format::SecondStage, 4);
    ss.map(IOVA, HPA + 0x1000, PageSize::Size4K, Leaf::read_write())
        .unwrap();
    tables
        .set_pasid_entry(SID, PASID, support::ss_only_entry(ss.root(), 2))
        .unwrap();
    tables.root()
}

#[test]
fn rtaddr_written_without_srtp_does_not_change_translation() {
    let sm = Sm::second_stage(config(), 2);
    let other = second_root_table(&sm);

    sm.unit
        .mmio_write(
            offset::RTADDR,
            8,
            RtAddr::from_table(other, Ttm::Scalable).into_bits(),
        )
        .unwrap();

    let t = sm
        .translate(&Request::read(SID, IOVA).with_pasid(PASID))
        .unwrap();
    assert_eq!(t.hpa, HPA);
}

#[test]
fn srtp_latches_the_new_rtaddr_for_translation() {
    let sm = Sm::second_stage(config(), 2);
    let other = second_root_table(&sm);
    sm.unit
        .mmio_write(
            offset::RTADDR,
            8,
            RtAddr::from_table(other, Ttm::Scalable).into_bits(),
        )
        .unwrap();

    sm.unit.mmio_write(offset::GCMD, 4, TE | SRTP).unwrap();

    let t = sm
        .translate(&Request::read(SID, IOVA).with_pasid(PASID))
        .unwrap();
    assert_eq!(t.hpa, HPA + 0x1000);
}

#[test]
fn srtp_latches_the_translation_table_mode() {
    let sm = Sm::second_stage(config(), 2);
    sm.map_ss(IOVA, HPA, PageSize::Size4K, Leaf::read_write());
    sm.unit
        .mmio_write(
            offset::RTADDR,
            8,
            RtAddr::from_table(sm.root, Ttm::Legacy).into_bits(),
        )
        .unwrap();

    sm.unit.mmio_write(offset::GCMD, 4, TE | SRTP).unwrap();

    // In legacy mode a request with PASID is RTA.2.
    let fault = sm
        .translate(&Request::read(SID, IOVA).with_pasid(PASID))
        .unwrap_err();
    assert_eq!(fault.code(), 0x31);
}

#[test]
fn srtp_with_esrtps_drops_cached_translations() {
    let c = vtd_model::UnitConfig::default();
    assert!(c.cap.esrtps());
    let sm = Sm::second_stage(c, 2);
    sm.map_ss(IOVA, HPA, PageSize::Size4K, Leaf::read_write());
    let req = Request::read(SID, IOVA).with_pasid(PASID);
    sm.translate(&req).unwrap();
    assert!(sm.translate(&req).unwrap().from_iotlb);
    sm.ss()
        .update_leaf(IOVA, |v| (v & 0xFFF) | (HPA + 0x1000))
        .unwrap();

    sm.unit.mmio_write(offset::GCMD, 4, TE | SRTP).unwrap();

    let t = sm.translate(&req).unwrap();
    assert_eq!(t.hpa, HPA + 0x1000);
    assert!(!t.from_iotlb);
}

#[test]
fn qie_command_sets_qies() {
    let u = unit();

    u.mmio_write(offset::GCMD, 4, QIE).unwrap();

    assert!(gsts(&u).contains(GlobalStatus::QIES));
}

#[test]
fn gcmd_without_qie_clears_qies_when_the_queue_is_empty() {
    let u = unit();
    u.mmio_write(offset::GCMD, 4, QIE).unwrap();

    u.mmio_write(offset::GCMD, 4, 0).unwrap();

    assert!(!gsts(&u).contains(GlobalStatus::QIES));
}

#[test]
fn te_command_keeps_qies_when_qie_is_repeated() {
    let u = unit();
    u.mmio_write(offset::GCMD, 4, QIE).unwrap();

    u.mmio_write(offset::GCMD, 4, QIE | TE).unwrap();

    assert!(gsts(&u).contains(GlobalStatus::QIES | GlobalStatus::TES));
}

// ---------------------------------------------------------------------------------------
// Write-1-to-clear status (§1.8, §1.10) and event registers.
// ---------------------------------------------------------------------------------------

/// A unit whose invalidation queue completed a wait descriptor with IF=1 (ICS.IWC = 1).
fn completed_wait_with_interrupt() -> Unit<SparseMem> {
    let u = unit();
    {
        let mut queue = InvalidationQueue::enable(&u, u.mem(), true).unwrap();
        let wait = InvWaitDesc::new().with_intr(true);
        queue
            .submit(&[RawDescriptor {
                lo: wait.into_bits(),
                hi: 0,
            }])
            .unwrap();
    }
    u
}

#[test]
fn wait_descriptor_with_if_sets_ics_iwc() {
    let u = completed_wait_with_interrupt();

    assert_eq!(u.mmio_read(offset::ICS, 4).unwrap() & 1, 1);
}

#[test]
fn writing_zero_to_ics_iwc_leaves_it_set() {
    let u = completed_wait_with_interrupt();

    u.mmio_write(offset::ICS, 4, 0).unwrap();

    assert_eq!(u.mmio_read(offset::ICS, 4).unwrap() & 1, 1);
}

#[test]
fn writing_one_to_ics_iwc_clears_it() {
    let u = completed_wait_with_interrupt();

    u.mmio_write(offset::ICS, 4, 1).unwrap();

    assert_eq!(u.mmio_read(offset::ICS, 4).unwrap() & 1, 0);
}

/// A unit whose invalidation queue stopped on an undefined descriptor (FSTS.IQE = 1).
fn queue_error() -> Unit<SparseMem> {
    let u = unit();
    {
        let mut queue = InvalidationQueue::enable(&u, u.mem(), true).unwrap();
        // Descriptor type 0xF is not defined (§8.3).
        queue.submit(&[RawDescriptor { lo: 0xF, hi: 0 }]).unwrap();
    }
    u
}

#[test]
fn writing_zero_to_fsts_iqe_leaves_it_set() {
    let u = queue_error();

    u.mmio_write(offset::FSTS, 4, 0).unwrap();

    assert_eq!(fsts(&u) & support::FSTS_IQE, support::FSTS_IQE);
}

#[test]
fn writing_one_to_fsts_iqe_clears_it_once_the_bad_descriptor_is_replaced() {
    let u = queue_error();
    // IQH = 0 still points at the bad descriptor: overwrite it with a fenced wait.
    let queue_base = u.mmio_read(offset::IQA, 8).unwrap() & !0xFFF;
    u.mem()
        .write_u128(queue_base, InvWaitDesc::new().with_fence(true).into_bits())
        .unwrap();

    u.mmio_write(offset::FSTS, 4, support::FSTS_IQE as u64)
        .unwrap();

    assert_eq!(fsts(&u) & support::FSTS_IQE, 0);
}

#[test]
fn clearing_iqe_refetches_the_bad_descriptor_at_iqh_and_stops_again() {
    let u = queue_error();

    u.mmio_write(offset::FSTS, 4, support::FSTS_IQE as u64)
        .unwrap();

    assert_eq!(fsts(&u) & support::FSTS_IQE, support::FSTS_IQE);
    assert_eq!(u.mmio_read(offset::IQH, 8).unwrap(), 0);
}

#[test]
fn fsts_write_of_all_ones_leaves_a_clean_fsts_clear() {
    let u = unit();

    u.mmio_write(offset::FSTS, 4, 0xFFFF_FFFF).unwrap();

    assert_eq!(fsts(&u), 0);
}

#[test]
fn feaddr_ignores_bits_1_0() {
    let u = unit();

    u.mmio_write(offset::FEADDR, 4, 0xFEE0_1003).unwrap();

    assert_eq!(u.mmio_read(offset::FEADDR, 4).unwrap(), 0xFEE0_1000);
}

#[test]
fn fedata_reads_back_the_message_data() {
    let u = unit();

    u.mmio_write(offset::FEDATA, 4, 0x4021).unwrap();

    assert_eq!(u.mmio_read(offset::FEDATA, 4).unwrap(), 0x4021);
}

#[test]
fn fectl_im_reads_back() {
    let u = unit();

    u.mmio_write(offset::FECTL, 4, 1 << 31).unwrap();
    let masked = u.mmio_read(offset::FECTL, 4).unwrap();
    u.mmio_write(offset::FECTL, 4, 0).unwrap();
    let unmasked = u.mmio_read(offset::FECTL, 4).unwrap();

    assert_eq!(masked >> 31, 1);
    assert_eq!(unmasked >> 31, 0);
}

#[test]
fn fectl_ip_ignores_writes() {
    let u = unit();

    u.mmio_write(offset::FECTL, 4, 1 << 30).unwrap();

    assert_eq!(u.mmio_read(offset::FECTL, 4).unwrap() & 1 << 30, 0);
}

// ---------------------------------------------------------------------------------------
// Register-based invalidation handshakes (§1.6, §1.7).
// ---------------------------------------------------------------------------------------

#[test]
fn global_context_command_completes_with_icc_clear_and_global_caig() {
    let u = unit();
    let cmd = Ccmd::new()
        .with_cirg(CcmdGranularity::Global)
        .with_icc(true);

    u.mmio_write(offset::CCMD, 8, cmd.into_bits()).unwrap();

    let done = Ccmd::from_bits(u.mmio_read(offset::CCMD, 8).unwrap());
    assert!(!done.icc());
    assert_eq!(done.caig(), CcmdGranularity::Global);
}

#[test]
fn global_iotlb_command_completes_with_ivt_clear_and_global_iaig() {
    let u = unit();
    let at = iotlb_reg_offset(config().ecap.iro());
    let cmd = IotlbReg::new()
        .with_iirg(IotlbGranularity::Global)
        .with_ivt(true);

    u.mmio_write(at, 8, cmd.into_bits()).unwrap();

    let done = IotlbReg::from_bits(u.mmio_read(at, 8).unwrap());
    assert!(!done.ivt());
    assert_eq!(done.iaig(), IotlbGranularity::Global);
}

// ---------------------------------------------------------------------------------------
// Remapping disabled (GSTS.TES = 0).
// ---------------------------------------------------------------------------------------

#[test]
fn translation_before_te_passes_the_address_through() {
    let u = unit();

    let t = u.translate(&Request::write(SID, 0xDEAD_B000)).unwrap();

    assert_eq!(t.kind, TranslationKind::Disabled);
    assert_eq!(t.hpa, 0xDEAD_B000);
}

#[test]
fn translation_before_te_records_no_fault() {
    let u = unit();

    u.translate(&Request::read(SID, IOVA).with_pasid(PASID))
        .unwrap();

    assert_eq!(fsts(&u), 0);
}

#[test]
fn root_table_latched_without_te_still_passes_addresses_through() {
    let sm = Sm::second_stage(config(), 2);
    sm.map_ss(IOVA, HPA, PageSize::Size4K, Leaf::read_write());

    sm.unit.mmio_write(offset::GCMD, 4, 0).unwrap();

    let t = sm
        .translate(&Request::read(SID, IOVA).with_pasid(PASID))
        .unwrap();
    assert_eq!(t.kind, TranslationKind::Disabled);
    assert_eq!(t.hpa, IOVA);
}

#[test]
fn setting_te_again_resumes_translation() {
    let sm = Sm::second_stage(config(), 2);
    sm.map_ss(IOVA, HPA, PageSize::Size4K, Leaf::read_write());
    sm.unit.mmio_write(offset::GCMD, 4, 0).unwrap();

    sm.unit.mmio_write(offset::GCMD, 4, TE).unwrap();

    let t = sm
        .translate(&Request::read(SID, IOVA).with_pasid(PASID))
        .unwrap();
    assert_eq!(t.kind, TranslationKind::SecondStage);
    assert_eq!(t.hpa, HPA);
}

#[test]
fn enable_translation_sequence_sets_rtps_and_tes() {
    let u = unit();

    enable_translation(&u, RtAddr::from_table(0x10_0000, Ttm::Scalable)).unwrap();

    assert!(gsts(&u).contains(GlobalStatus::RTPS | GlobalStatus::TES));
}
