//! One test per fault reason the model raises (§7.1), each reached through the condition
//! the reference names for it: legacy codes through hand-written legacy tables (§2.2), the
//! scalable-mode root/context/PASID checks of §2.5 and §3.5, the first-stage walk of §4,
//! the second-stage walk of §5 and the nested rules of §6.1.

mod common;
mod support;

use support::{
    CasFails, CasFailure, HPA, IOVA, Legacy, OTHER_SID, PASID, SID, Sm, UNBACKED, config,
    legacy_context, unit_with_rtaddr,
};
use vtd_model::build::Leaf;
use vtd_model::config::UnitConfig;
use vtd_model::fault::{Fault, FaultStage};
use vtd_model::mem::PhysMem;
use vtd_model::request::{Access, AddressType, Request};
use vtd_model::unit::Unit;
use vtd_spec::addr::PageSize;
use vtd_spec::context::{LegacyContextEntry, LegacyTt, SmContextEntry, SmContextEntryLo};
use vtd_spec::fault::FaultReason;
use vtd_spec::pasid::{Fspm, PasidDirEntry, PasidEntry, PasidEntryLo, Pgtt};
use vtd_spec::regs::{RtAddr, Ttm};
use vtd_spec::root::{LegacyRootEntry, SmRootEntry};

/// Guest-physical page the nested tests map [`IOVA`] to.
const GPA: u64 = 0x0020_5000;
/// First page of the interrupt address range 0xFEE0_0000–0xFEEF_FFFF.
const INTERRUPT_PAGE: u64 = 0xFEE0_0000;

fn assert_reason(fault: &Fault, reason: FaultReason, code: u8) {
    assert_eq!(fault.reason, reason, "{fault}");
    assert_eq!(fault.code(), code, "{fault}");
}

fn read_with_pasid() -> Request {
    Request::read(SID, IOVA).with_pasid(PASID)
}

fn write_only() -> Leaf {
    Leaf {
        read: false,
        write: true,
        user: true,
        extra: 0,
    }
}

fn with_ers() -> UnitConfig {
    let mut c = config();
    c.ecap = c.ecap.with_ers(true);
    c
}

// ---------------------------------------------------------------------------------------
// Legacy mode (RTADDR.TTM = 00b), §2.2 and the legacy table of §7.1.
// ---------------------------------------------------------------------------------------

#[test]
fn lrt2_root_entry_not_present() {
    let l = Legacy::new(config());
    l.set_root_entry(0);

    let fault = l.translate(&Request::read(SID, IOVA)).unwrap_err();

    assert_reason(&fault, FaultReason::LrtNotPresent, 0x01);
    assert_eq!(fault.stage, FaultStage::RootEntry);
}

#[test]
fn lct2_context_entry_not_present() {
    let l = Legacy::new(config());
    l.set_context(LegacyContextEntry::new());

    let fault = l.translate(&Request::read(SID, IOVA)).unwrap_err();

    assert_reason(&fault, FaultReason::LctNotPresent, 0x02);
    assert_eq!(fault.stage, FaultStage::ContextEntry);
}

#[test]
fn lct4_context_entry_with_reserved_translation_type() {
    let l = Legacy::new(config());
    l.set_context(legacy_context(l.ss_root).with_tt(LegacyTt::Reserved));

    let fault = l.translate(&Request::read(SID, IOVA)).unwrap_err();

    assert_reason(&fault, FaultReason::LctInvalid, 0x03);
    assert_eq!(fault.stage, FaultStage::ContextEntry);
}

#[test]
fn lct4_context_entry_with_address_width_not_in_sagaw() {
    let l = Legacy::new(config());
    assert!(!l.unit.config().cap.supports_aw(1));
    l.set_context(legacy_context(l.ss_root).with_aw(1));

    let fault = l.translate(&Request::read(SID, IOVA)).unwrap_err();

    assert_reason(&fault, FaultReason::LctInvalid, 0x03);
}

#[test]
fn lgn1_address_beyond_the_domain_address_width() {
    let l = Legacy::new(config());

    // AW=2: 48-bit domain, below MGAW+1 = 57.
    let fault = l.translate(&Request::read(SID, 1 << 48)).unwrap_err();

    assert_reason(&fault, FaultReason::LgnAddressBeyond, 0x04);
    assert_eq!(fault.stage, FaultStage::SecondStage);
}

#[test]
fn lgn2_write_to_read_only_page() {
    let l = Legacy::new(config());
    l.map(IOVA, HPA, PageSize::Size4K, Leaf::read_only());

    let fault = l.translate(&Request::write(SID, IOVA)).unwrap_err();

    assert_reason(&fault, FaultReason::LgnWriteDenied, 0x05);
    assert_eq!(fault.ss_level, Some(1));
}

#[test]
fn lgn3_read_from_write_only_page() {
    let l = Legacy::new(config());
    l.map(IOVA, HPA, PageSize::Size4K, write_only());

    let fault = l.translate(&Request::read(SID, IOVA)).unwrap_err();

    assert_reason(&fault, FaultReason::LgnReadDenied, 0x06);
    assert_eq!(fault.ss_level, Some(1));
}

#[test]
fn lsl1_second_stage_table_unbacked() {
    let l = Legacy::new(config());
    l.map(IOVA, HPA, PageSize::Size4K, Leaf::read_write());
    let pml4e = support::path_entry(&l.ss(), IOVA, 4);
    l.mem().write_u64(pml4e, UNBACKED | 0b11).unwrap();

    let fault = l.translate(&Request::read(SID, IOVA)).unwrap_err();

    assert_reason(&fault, FaultReason::LslAccessError, 0x07);
    assert_eq!(fault.ss_level, Some(3));
}

#[test]
fn lrt1_root_table_unbacked() {
    let unit = unit_with_rtaddr(config(), RtAddr::from_table(UNBACKED, Ttm::Legacy));

    let fault = unit.translate(&Request::read(SID, IOVA)).unwrap_err();

    assert_reason(&fault, FaultReason::LrtAccessError, 0x08);
    assert_eq!(fault.stage, FaultStage::RootEntry);
}

#[test]
fn lct1_context_table_unbacked() {
    let l = Legacy::new(config());
    l.set_root_entry(
        LegacyRootEntry::new()
            .with_p(true)
            .with_ctp(UNBACKED >> 12)
            .into_bits(),
    );

    let fault = l.translate(&Request::read(SID, IOVA)).unwrap_err();

    assert_reason(&fault, FaultReason::LctAccessError, 0x09);
    assert_eq!(fault.stage, FaultStage::ContextEntry);
}

#[test]
fn lrt3_root_entry_reserved_bit() {
    let l = Legacy::new(config());
    let root = l.mem().read_u128(l.root_entry_addr()).unwrap();
    // Bits 127:64 of a legacy root entry are reserved.
    l.set_root_entry(root | 1 << 64);

    let fault = l.translate(&Request::read(SID, IOVA)).unwrap_err();

    assert_reason(&fault, FaultReason::LrtReserved, 0x0A);
    assert_eq!(fault.stage, FaultStage::RootEntry);
}

#[test]
fn lct3_context_entry_reserved_bit() {
    let l = Legacy::new(config());
    // Bit 71 of a legacy context entry is reserved (§2.2).
    let raw = legacy_context(l.ss_root).into_bits() | 1 << 71;
    l.set_context(LegacyContextEntry::from_bits(raw));

    let fault = l.translate(&Request::read(SID, IOVA)).unwrap_err();

    assert_reason(&fault, FaultReason::LctReserved, 0x0B);
    assert_eq!(fault.stage, FaultStage::ContextEntry);
}

#[test]
fn lsl2_second_stage_entry_reserved_bit() {
    let l = Legacy::new(config());
    // TM (bit 62) is reserved since spec 3.2 (§5.2, §5.3).
    l.map(
        IOVA,
        HPA,
        PageSize::Size4K,
        Leaf::read_write().with_extra(1 << 62),
    );

    let fault = l.translate(&Request::read(SID, IOVA)).unwrap_err();

    assert_reason(&fault, FaultReason::LslReserved, 0x0C);
    assert_eq!(fault.ss_level, Some(1));
}

#[test]
fn lct5_translation_request_blocked_by_translation_type_00() {
    let l = Legacy::new(config());
    l.map(IOVA, HPA, PageSize::Size4K, Leaf::read_write());
    let req = Request::read(SID, IOVA).with_address_type(AddressType::TranslationRequest);

    let fault = l.translate(&req).unwrap_err();

    assert_reason(&fault, FaultReason::LctTtBlocked, 0x0D);
    assert_eq!(fault.stage, FaultStage::ContextEntry);
}

#[test]
fn lgn4_output_in_interrupt_range() {
    let l = Legacy::new(config());
    l.map(IOVA, INTERRUPT_PAGE, PageSize::Size4K, Leaf::read_write());

    let fault = l.translate(&Request::read(SID, IOVA)).unwrap_err();

    assert_reason(&fault, FaultReason::LgnInterruptRange, 0x0E);
    assert_eq!(fault.stage, FaultStage::Output);
}

#[test]
fn lgn4_pass_through_input_in_interrupt_range() {
    let l = Legacy::new(config());
    l.set_context(legacy_context(0).with_tt(LegacyTt::PassThrough));

    let fault = l
        .translate(&Request::write(SID, INTERRUPT_PAGE + 0x40))
        .unwrap_err();

    assert_reason(&fault, FaultReason::LgnInterruptRange, 0x0E);
}

// ---------------------------------------------------------------------------------------
// Root-table address (RTA), §1.5 and §7.1.
// ---------------------------------------------------------------------------------------

#[test]
fn rta1_reserved_translation_table_mode() {
    let unit = unit_with_rtaddr(config(), RtAddr::from_table(0x10_0000, Ttm::Reserved));

    let fault = unit.translate(&Request::read(SID, IOVA)).unwrap_err();

    assert_reason(&fault, FaultReason::RtaInvalid, 0x30);
    assert_eq!(fault.stage, FaultStage::RootPointer);
}

#[test]
fn rta1_abort_dma_mode_without_adms() {
    let c = config();
    assert!(!c.ecap.adms());
    let unit = unit_with_rtaddr(c, RtAddr::from_table(0x10_0000, Ttm::AbortDma));

    let fault = unit.translate(&Request::read(SID, IOVA)).unwrap_err();

    assert_reason(&fault, FaultReason::RtaInvalid, 0x30);
}

#[test]
fn rta1_scalable_mode_on_a_unit_without_smts() {
    let c = UnitConfig {
        caches: vtd_model::cache::CacheConfig::disabled(),
        ..UnitConfig::qemu_legacy()
    };
    assert!(!c.ecap.smts());
    let unit = unit_with_rtaddr(c, RtAddr::from_table(0x10_0000, Ttm::Scalable));

    let fault = unit.translate(&Request::read(SID, IOVA)).unwrap_err();

    assert_reason(&fault, FaultReason::RtaInvalid, 0x30);
}

#[test]
fn rta2_request_with_pasid_in_legacy_mode() {
    let l = Legacy::new(config());
    l.map(IOVA, HPA, PageSize::Size4K, Leaf::read_write());

    let fault = l.translate(&read_with_pasid()).unwrap_err();

    assert_reason(&fault, FaultReason::RtaPasidInLegacy, 0x31);
}

// ---------------------------------------------------------------------------------------
// Scalable-mode root entry (SRT), §2.3 and §2.5.
// ---------------------------------------------------------------------------------------

#[test]
fn srt1_root_table_unbacked() {
    let unit = unit_with_rtaddr(config(), RtAddr::from_table(UNBACKED, Ttm::Scalable));

    let fault = unit.translate(&Request::read(SID, IOVA)).unwrap_err();

    assert_reason(&fault, FaultReason::SrtAccessError, 0x38);
    assert_eq!(fault.stage, FaultStage::RootEntry);
}

#[test]
fn srt2_lower_context_table_not_present() {
    let sm = Sm::bare(config());
    // Bus 1 has an all-zero root entry.
    let fault = sm.translate(&Request::read(0x0118, IOVA)).unwrap_err();

    assert_reason(&fault, FaultReason::SrtNotPresent, 0x39);
    assert_eq!(fault.stage, FaultStage::RootEntry);
}

#[test]
fn srt2_upper_context_table_not_present_for_devfn_above_127() {
    let sm = Sm::bare(config());
    let root = SmRootEntry::from_bits(sm.mem().read_u128(sm.root_entry_addr(0)).unwrap());
    assert!(root.lp() && !root.up());

    // Bus 0, devfn 0x80: served by the upper half.
    let fault = sm.translate(&Request::read(0x0080, IOVA)).unwrap_err();

    assert_reason(&fault, FaultReason::SrtNotPresent, 0x39);
}

#[test]
fn srt3_root_entry_reserved_bit() {
    let sm = Sm::bare(config());
    let addr = sm.root_entry_addr(0);
    let root = sm.mem().read_u128(addr).unwrap();
    sm.mem().write_u128(addr, root | 1 << 1).unwrap();

    let fault = sm.translate(&Request::read(SID, IOVA)).unwrap_err();

    assert_reason(&fault, FaultReason::SrtReserved, 0x3A);
    assert_eq!(fault.stage, FaultStage::RootEntry);
}

// ---------------------------------------------------------------------------------------
// Scalable-mode context entry (SCT), §2.4 and §2.5.
// ---------------------------------------------------------------------------------------

#[test]
fn sct1_context_table_unbacked() {
    let sm = Sm::bare(config());
    let root = SmRootEntry::new().with_lp(true).with_lctp(UNBACKED >> 12);
    sm.mem()
        .write_u128(sm.root_entry_addr(0), root.into_bits())
        .unwrap();

    let fault = sm.translate(&Request::read(SID, IOVA)).unwrap_err();

    assert_reason(&fault, FaultReason::SctAccessError, 0x40);
    assert_eq!(fault.stage, FaultStage::ContextEntry);
}

#[test]
fn sct2_context_entry_not_present() {
    let sm = Sm::second_stage(config(), 2);
    sm.update_context(SID, |c| SmContextEntry {
        lo: c.lo.with_p(false),
        ..c
    });

    let fault = sm.translate(&Request::read(SID, IOVA)).unwrap_err();

    assert_reason(&fault, FaultReason::SctNotPresent, 0x41);
    assert_eq!(fault.stage, FaultStage::ContextEntry);
}

#[test]
fn sct3_context_entry_reserved_bit() {
    let sm = Sm::second_stage(config(), 2);
    // Bits 8:5 are reserved (§2.4).
    sm.update_context(SID, |c| SmContextEntry {
        lo: SmContextEntryLo::from_bits(c.lo.into_bits() | 1 << 5),
        ..c
    });

    let fault = sm.translate(&Request::read(SID, IOVA)).unwrap_err();

    assert_reason(&fault, FaultReason::SctReserved, 0x42);
    assert_eq!(fault.stage, FaultStage::ContextEntry);
}

#[test]
fn sct3_context_entry_upper_half_non_zero() {
    let sm = Sm::second_stage(config(), 2);
    // Bits 255:128 are reserved.
    sm.update_context(SID, |c| SmContextEntry { hi: 1, ..c });

    let fault = sm.translate(&Request::read(SID, IOVA)).unwrap_err();

    assert_reason(&fault, FaultReason::SctReserved, 0x42);
}

#[test]
fn sct5_translation_request_while_dte_clear() {
    let sm = Sm::second_stage(config(), 2);
    sm.map_ss(IOVA, HPA, PageSize::Size4K, Leaf::read_write());
    let req = Request::read(SID, IOVA).with_address_type(AddressType::TranslationRequest);

    let fault = sm.translate(&req).unwrap_err();

    assert_reason(&fault, FaultReason::SctDteBlocked, 0x44);
    assert_eq!(fault.stage, FaultStage::ContextEntry);
}

#[test]
fn sct5_translated_request_while_dte_clear() {
    let sm = Sm::second_stage(config(), 2);
    let req = Request::read(SID, HPA).with_address_type(AddressType::Translated);

    let fault = sm.translate(&req).unwrap_err();

    assert_reason(&fault, FaultReason::SctDteBlocked, 0x44);
}

#[test]
fn sct6_request_with_pasid_while_paside_clear() {
    let sm = Sm::second_stage(config(), 2);
    sm.map_ss(IOVA, HPA, PageSize::Size4K, Leaf::read_write());
    sm.update_context(SID, |c| SmContextEntry {
        lo: c.lo.with_paside(false),
        ..c
    });

    let fault = sm.translate(&read_with_pasid()).unwrap_err();

    assert_reason(&fault, FaultReason::SctPasidDisabled, 0x45);
    assert_eq!(fault.stage, FaultStage::ContextEntry);
}

#[test]
fn sct7_pasid_beyond_the_pasid_directory() {
    let sm = Sm::second_stage(config(), 2);
    // PDTS=0: 2^7 directory entries of 64 PASIDs each, so PASIDs 0..8192.
    let fault = sm
        .translate(&Request::read(SID, IOVA).with_pasid(8192))
        .unwrap_err();

    assert_reason(&fault, FaultReason::SctPasidBeyondDir, 0x46);
    assert_eq!(fault.stage, FaultStage::ContextEntry);
}

#[test]
fn sct9_rid_pasid_wider_than_the_pasid_width() {
    let mut c = config();
    // RID_PASID honoured, 8-bit PASIDs.
    c.ecap = c.ecap.with_rps(true).with_pss(7);
    let sm = Sm::second_stage(c, 2);
    sm.update_context(SID, |ctx| SmContextEntry {
        lo: ctx.lo.with_rid_pasid(0x100),
        ..ctx
    });

    let fault = sm.translate(&Request::read(SID, IOVA)).unwrap_err();

    assert_reason(&fault, FaultReason::SctRidPasidInvalid, 0x48);
    assert_eq!(fault.stage, FaultStage::ContextEntry);
}

// ---------------------------------------------------------------------------------------
// PASID directory entry (SPD), §3.2.
// ---------------------------------------------------------------------------------------

#[test]
fn spd1_pasid_directory_unbacked() {
    let sm = Sm::second_stage(config(), 2);
    sm.update_context(SID, |c| SmContextEntry {
        lo: c.lo.with_pasiddirptr(UNBACKED >> 12),
        ..c
    });

    let fault = sm.translate(&read_with_pasid()).unwrap_err();

    assert_reason(&fault, FaultReason::SpdAccessError, 0x50);
    assert_eq!(fault.stage, FaultStage::PasidDirectory);
}

#[test]
fn spd2_pasid_directory_entry_not_present() {
    let sm = Sm::second_stage(config(), 2);
    // PASID 64 is in directory entry 1, which nothing wrote.
    let fault = sm
        .translate(&Request::read(SID, IOVA).with_pasid(64))
        .unwrap_err();

    assert_reason(&fault, FaultReason::SpdNotPresent, 0x51);
    assert_eq!(fault.stage, FaultStage::PasidDirectory);
}

#[test]
fn spd3_pasid_directory_entry_reserved_bit() {
    let sm = Sm::second_stage(config(), 2);
    // Bits 11:2 are reserved (§3.2).
    sm.modify_u64(sm.pasid_dir_entry_addr(PASID), |v| v | 1 << 2);

    let fault = sm.translate(&read_with_pasid()).unwrap_err();

    assert_reason(&fault, FaultReason::SpdReserved, 0x52);
    assert_eq!(fault.stage, FaultStage::PasidDirectory);
}

// ---------------------------------------------------------------------------------------
// PASID table entry (SPT), §3.3 and §3.5.
// ---------------------------------------------------------------------------------------

#[test]
fn spt1_pasid_table_unbacked() {
    let sm = Sm::second_stage(config(), 2);
    let pde = PasidDirEntry::new()
        .with_p(true)
        .with_smptblptr(UNBACKED >> 12);
    sm.mem()
        .write_u64(sm.pasid_dir_entry_addr(64), pde.into_bits())
        .unwrap();

    let fault = sm
        .translate(&Request::read(SID, IOVA).with_pasid(64))
        .unwrap_err();

    assert_reason(&fault, FaultReason::SptAccessError, 0x58);
    assert_eq!(fault.stage, FaultStage::PasidEntry);
}

#[test]
fn spt2_pasid_entry_not_present() {
    let sm = Sm::second_stage(config(), 2);
    // PASID 8 shares the PASID table of PASID 7 but its entry is zero.
    let fault = sm
        .translate(&Request::read(SID, IOVA).with_pasid(8))
        .unwrap_err();

    assert_reason(&fault, FaultReason::SptNotPresent, 0x59);
    assert_eq!(fault.stage, FaultStage::PasidEntry);
}

#[test]
fn spt3_pasid_entry_reserved_bit() {
    let sm = Sm::second_stage(config(), 2);
    // Bits 11:10 are reserved (§3.3).
    sm.update_pasid_entries(|e| PasidEntry {
        lo: PasidEntryLo::from_bits(e.lo.into_bits() | 1 << 10),
        ..e
    });

    let fault = sm.translate(&read_with_pasid()).unwrap_err();

    assert_reason(&fault, FaultReason::SptReserved, 0x5A);
    assert_eq!(fault.stage, FaultStage::PasidEntry);
}

#[test]
fn spt3_pasid_entry_reserved_upper_qwords_non_zero() {
    let sm = Sm::second_stage(config(), 2);
    // Bits 511:256 are reserved.
    sm.update_pasid_entries(|e| PasidEntry {
        rsvd: [0, 1 << 100],
        ..e
    });

    let fault = sm.translate(&read_with_pasid()).unwrap_err();

    assert_reason(&fault, FaultReason::SptReserved, 0x5A);
}

#[test]
fn spt4_reserved_pgtt() {
    let sm = Sm::second_stage(config(), 2);
    sm.update_pasid_entries(|e| PasidEntry {
        lo: e.lo.with_pgtt(Pgtt::Reserved0),
        ..e
    });

    let fault = sm.translate(&read_with_pasid()).unwrap_err();

    assert_reason(&fault, FaultReason::SptInvalid, 0x5B);
    assert_eq!(fault.stage, FaultStage::PasidEntry);
}

#[test]
fn spt4_second_stage_address_width_not_in_sagaw() {
    let sm = Sm::second_stage(config(), 2);
    assert!(!sm.unit.config().cap.supports_aw(1));
    sm.update_pasid_entries(|e| PasidEntry {
        lo: e.lo.with_aw(1),
        ..e
    });

    let fault = sm.translate(&read_with_pasid()).unwrap_err();

    assert_reason(&fault, FaultReason::SptInvalid, 0x5B);
}

#[test]
fn spt4_reserved_first_stage_paging_mode() {
    let sm = Sm::first_stage(config(), 4);
    sm.update_pasid_entries(|e| PasidEntry {
        hi: e.hi.with_fspm(Fspm::Reserved2),
        ..e
    });

    let fault = sm.translate(&read_with_pasid()).unwrap_err();

    assert_reason(&fault, FaultReason::SptInvalid, 0x5B);
}

#[test]
fn spt4_five_level_first_stage_without_fs5lp() {
    let mut c = config();
    c.cap = c.cap.with_fs5lp(false);
    let sm = Sm::first_stage(c, 5);

    let fault = sm.translate(&read_with_pasid()).unwrap_err();

    assert_reason(&fault, FaultReason::SptInvalid, 0x5B);
}

#[test]
fn spt4_nested_pgtt_without_nest() {
    let c = UnitConfig {
        caches: vtd_model::cache::CacheConfig::disabled(),
        ..UnitConfig::without_nesting()
    };
    let sm = Sm::second_stage(c, 2);
    sm.update_pasid_entries(|e| PasidEntry {
        lo: e.lo.with_pgtt(Pgtt::Nested),
        ..e
    });

    let fault = sm.translate(&read_with_pasid()).unwrap_err();

    assert_reason(&fault, FaultReason::SptInvalid, 0x5B);
}

#[test]
fn spt5_execute_request_while_ere_clear() {
    let sm = Sm::first_stage(config(), 4);
    sm.map_fs(IOVA, HPA, PageSize::Size4K, Leaf::read_write());

    let fault = sm.translate(&read_with_pasid().execute()).unwrap_err();

    assert_reason(&fault, FaultReason::SptExecuteDisabled, 0x5C);
    assert_eq!(fault.stage, FaultStage::PasidEntry);
}

#[test]
fn spt6_supervisor_request_while_sre_clear() {
    let sm = Sm::first_stage(config(), 4);
    sm.map_fs(IOVA, HPA, PageSize::Size4K, Leaf::read_write());

    let fault = sm.translate(&read_with_pasid().privileged()).unwrap_err();

    assert_reason(&fault, FaultReason::SptSupervisorDisabled, 0x5D);
    assert_eq!(fault.stage, FaultStage::PasidEntry);
}

// ---------------------------------------------------------------------------------------
// First stage (SFS), §4 and §6.1.
// ---------------------------------------------------------------------------------------

#[test]
fn sfs1_first_stage_table_unbacked() {
    let sm = Sm::first_stage(config(), 4);
    sm.map_fs(IOVA, HPA, PageSize::Size4K, Leaf::read_write());
    // P | R/W | U/S pointing at nothing.
    sm.mem()
        .write_u64(sm.fs_entry_addr(IOVA, 4), UNBACKED | 0b111)
        .unwrap();

    let fault = sm.translate(&read_with_pasid()).unwrap_err();

    assert_reason(&fault, FaultReason::SfsAccessError, 0x70);
    assert_eq!(fault.stage, FaultStage::FirstStage);
    assert_eq!(fault.fs_level, Some(3));
}

#[test]
fn sfs2_first_stage_entry_not_present() {
    let sm = Sm::first_stage(config(), 4);
    sm.map_fs(IOVA, HPA, PageSize::Size4K, Leaf::read_write());
    sm.fs().unmap(IOVA).unwrap();

    let fault = sm.translate(&read_with_pasid()).unwrap_err();

    assert_reason(&fault, FaultReason::SfsNotPresent, 0x71);
    assert_eq!(fault.stage, FaultStage::FirstStage);
    assert_eq!(fault.fs_level, Some(1));
}

#[test]
fn sfs3_page_size_bit_in_pml4e() {
    let sm = Sm::first_stage(config(), 4);
    sm.map_fs(IOVA, HPA, PageSize::Size4K, Leaf::read_write());
    sm.modify_u64(sm.fs_entry_addr(IOVA, 4), |v| v | 1 << 7);

    let fault = sm.translate(&read_with_pasid()).unwrap_err();

    assert_reason(&fault, FaultReason::SfsReserved, 0x72);
    assert_eq!(fault.stage, FaultStage::FirstStage);
    assert_eq!(fault.fs_level, Some(4));
}

#[test]
fn sfs4_first_stage_root_table_unbacked() {
    let sm = Sm::first_stage(config(), 4);
    sm.set_pasid_entry(PASID, support::fs_only_entry(UNBACKED, 4));

    let fault = sm.translate(&read_with_pasid()).unwrap_err();

    assert_reason(&fault, FaultReason::SfsRootAccessError, 0x73);
    assert_eq!(fault.stage, FaultStage::FirstStage);
    assert_eq!(fault.fs_level, Some(4));
}

#[test]
fn sfs5_first_stage_table_gpa_beyond_second_stage_width() {
    let n = common::Nested::new();
    n.map(IOVA, GPA, PageSize::Size4K, Leaf::read_write());
    let (_, pml4e, value) = n.fs().path(IOVA).unwrap()[0];
    // The second stage has AW=2: 48-bit guest-physical addresses.
    let beyond = 1u64 << 48;
    n.mem().write_u64(pml4e, (value & 0xFFF) | beyond).unwrap();

    let fault = n.unit.translate(&read_with_pasid()).unwrap_err();

    assert_reason(&fault, FaultReason::SfsGpaBeyond, 0x74);
    assert_eq!(fault.stage, FaultStage::SecondStageForFirstStageTable);
    assert_eq!(fault.fs_level, Some(3));
    assert_eq!(fault.gpa, Some(beyond));
}

#[test]
fn sfs5_first_stage_page_gpa_beyond_second_stage_width() {
    let n = common::Nested::new();
    n.map(IOVA, 1 << 48, PageSize::Size4K, Leaf::read_write());

    let fault = n.unit.translate(&read_with_pasid()).unwrap_err();

    assert_reason(&fault, FaultReason::SfsGpaBeyond, 0x74);
}

#[test]
fn sfs6_second_stage_denies_read_of_first_stage_root_table() {
    let n = common::Nested::new();
    n.map(IOVA, GPA, PageSize::Size4K, Leaf::read_write());
    n.ss().update_leaf(n.fs_root_gpa, |v| v & !1).unwrap();

    let fault = n.unit.translate(&read_with_pasid()).unwrap_err();

    assert_reason(&fault, FaultReason::SfsRootReadDenied, 0x75);
    assert_eq!(fault.stage, FaultStage::SecondStageForFirstStageTable);
    assert_eq!(fault.fs_level, Some(4));
}

#[test]
fn sfs7_second_stage_denies_read_of_lower_first_stage_table() {
    let n = common::Nested::new();
    n.map(IOVA, GPA, PageSize::Size4K, Leaf::read_write());
    let pdpt_gpa = n.fs().tables_on_path(IOVA).unwrap()[1];
    n.ss().update_leaf(pdpt_gpa, |v| v & !1).unwrap();

    let fault = n.unit.translate(&read_with_pasid()).unwrap_err();

    assert_reason(&fault, FaultReason::SfsReadDenied, 0x76);
    assert_eq!(fault.stage, FaultStage::SecondStageForFirstStageTable);
    assert_eq!(fault.fs_level, Some(3));
}

#[test]
fn sfs8_ad_update_through_read_only_stage2() {
    let n = common::Nested::new();
    n.map(IOVA, GPA, PageSize::Size4K, Leaf::read_write());
    let page_table_gpa = n.fs().tables_on_path(IOVA).unwrap()[3];
    n.ss().update_leaf(page_table_gpa, |v| v & !2).unwrap();

    let fault = n.unit.translate(&read_with_pasid()).unwrap_err();

    assert_reason(&fault, FaultReason::SfsAdWriteDenied, 0x77);
    assert_eq!(fault.stage, FaultStage::FirstStageAdUpdate);
    assert_eq!(fault.fs_level, Some(1));
}

#[test]
fn sfs9_first_stage_ad_update_on_non_snooped_walk() {
    let sm = Sm::first_stage(config(), 4);
    sm.map_fs(IOVA, HPA, PageSize::Size4K, Leaf::read_write());
    sm.update_pasid_entries(|e| PasidEntry {
        lo: e.lo.with_pwsnp(false),
        ..e
    });

    let fault = sm.translate(&read_with_pasid()).unwrap_err();

    assert_reason(&fault, FaultReason::SfsAdNonSnooped, 0x90);
    assert_eq!(fault.stage, FaultStage::FirstStageAdUpdate);
    assert_eq!(fault.fs_level, Some(4));
}

#[test]
fn sfs10_ad_update_memory_error() {
    let unit = Unit::new(config(), CasFails::new(CasFailure::MemoryError)).unwrap();
    let sm = Sm::first_stage_on(unit, 4);
    sm.map_fs(IOVA, HPA, PageSize::Size4K, Leaf::read_write());

    let fault = sm.translate(&read_with_pasid()).unwrap_err();

    assert_reason(&fault, FaultReason::SfsAdUpdateFailed, 0x91);
    assert_eq!(fault.stage, FaultStage::FirstStageAdUpdate);
    assert_eq!(fault.entry_addr, Some(sm.fs_entry_addr(IOVA, 4)));
}

#[test]
fn sfs10_ad_update_of_an_entry_that_keeps_changing() {
    let unit = Unit::new(config(), CasFails::new(CasFailure::AlwaysChanged)).unwrap();
    let sm = Sm::first_stage_on(unit, 4);
    sm.map_fs(IOVA, HPA, PageSize::Size4K, Leaf::read_write());

    let fault = sm.translate(&read_with_pasid()).unwrap_err();

    assert_reason(&fault, FaultReason::SfsAdUpdateFailed, 0x91);
    assert_eq!(fault.stage, FaultStage::FirstStageAdUpdate);
}

// ---------------------------------------------------------------------------------------
// Second stage (SSS), §5.
// ---------------------------------------------------------------------------------------

#[test]
fn sss1_second_stage_table_unbacked() {
    let sm = Sm::second_stage(config(), 2);
    sm.map_ss(IOVA, HPA, PageSize::Size4K, Leaf::read_write());
    sm.mem()
        .write_u64(sm.ss_entry_addr(IOVA, 4), UNBACKED | 0b11)
        .unwrap();

    let fault = sm.translate(&read_with_pasid()).unwrap_err();

    assert_reason(&fault, FaultReason::SssAccessError, 0x78);
    assert_eq!(fault.stage, FaultStage::SecondStage);
    assert_eq!(fault.ss_level, Some(3));
}

#[test]
fn sss2_second_stage_entry_not_present() {
    let sm = Sm::second_stage(config(), 2);
    sm.map_ss(IOVA, HPA, PageSize::Size4K, Leaf::read_write());
    sm.ss().unmap(IOVA).unwrap();

    let fault = sm.translate(&read_with_pasid()).unwrap_err();

    assert_reason(&fault, FaultReason::SssNotPresent, 0x79);
    assert_eq!(fault.stage, FaultStage::SecondStage);
    assert_eq!(fault.ss_level, Some(1));
}

#[test]
fn sss2_non_present_entry_above_the_leaf() {
    let sm = Sm::second_stage(config(), 2);

    let fault = sm.translate(&read_with_pasid()).unwrap_err();

    assert_reason(&fault, FaultReason::SssNotPresent, 0x79);
    assert_eq!(fault.ss_level, Some(4));
}

#[test]
fn sss3_second_stage_entry_reserved_bit() {
    let sm = Sm::second_stage(config(), 2);
    // TM (bit 62) is reserved.
    sm.map_ss(
        IOVA,
        HPA,
        PageSize::Size4K,
        Leaf::read_write().with_extra(1 << 62),
    );

    let fault = sm.translate(&read_with_pasid()).unwrap_err();

    assert_reason(&fault, FaultReason::SssReserved, 0x7A);
    assert_eq!(fault.stage, FaultStage::SecondStage);
    assert_eq!(fault.ss_level, Some(1));
}

#[test]
fn sss4_second_stage_root_table_unbacked() {
    let sm = Sm::second_stage(config(), 2);
    sm.set_pasid_entry(PASID, support::ss_only_entry(UNBACKED, 2));

    let fault = sm.translate(&read_with_pasid()).unwrap_err();

    assert_reason(&fault, FaultReason::SssInvalidRoot, 0x7B);
    assert_eq!(fault.stage, FaultStage::SecondStage);
    assert_eq!(fault.ss_level, Some(4));
}

#[test]
fn sss5_second_stage_ad_update_on_non_snooped_walk() {
    let sm = Sm::second_stage(config(), 2);
    sm.map_ss(IOVA, HPA, PageSize::Size4K, Leaf::read_write());
    sm.update_pasid_entries(|e| PasidEntry {
        lo: e.lo.with_ssade(true).with_pwsnp(false),
        ..e
    });

    let fault = sm.translate(&read_with_pasid()).unwrap_err();

    assert_reason(&fault, FaultReason::SssAdNonSnooped, 0x7C);
    assert_eq!(fault.stage, FaultStage::SecondStage);
    assert_eq!(fault.ss_level, Some(4));
}

// ---------------------------------------------------------------------------------------
// General (SGN), §4.1, §4.4, §5.1, §5.4, §6.1.
// ---------------------------------------------------------------------------------------

#[test]
fn sgn1_non_canonical_first_stage_input() {
    let sm = Sm::first_stage(config(), 4);
    // Bit 47 set, bits 63:48 clear: not canonical for 4-level paging.
    let fault = sm
        .translate(&Request::read(SID, 0x0000_8000_0000_0000).with_pasid(PASID))
        .unwrap_err();

    assert_reason(&fault, FaultReason::SgnNonCanonical, 0x80);
    assert_eq!(fault.stage, FaultStage::Request);
}

#[test]
fn sgn2_user_request_to_supervisor_page() {
    let sm = Sm::first_stage(config(), 4);
    sm.map_fs(IOVA, HPA, PageSize::Size4K, Leaf::read_write().supervisor());

    let fault = sm.translate(&read_with_pasid()).unwrap_err();

    assert_reason(&fault, FaultReason::SgnUserDenied, 0x81);
    assert_eq!(fault.stage, FaultStage::FirstStage);
    assert_eq!(fault.fs_level, Some(1));
}

#[test]
fn sgn3_execute_request_to_execute_disabled_first_stage_page() {
    let sm = Sm::first_stage(with_ers(), 4);
    // XD (bit 63) with NXE=1.
    sm.map_fs(
        IOVA,
        HPA,
        PageSize::Size4K,
        Leaf::read_write().with_extra(1 << 63),
    );
    sm.update_pasid_entries(|e| PasidEntry {
        hi: e.hi.with_ere(true).with_nxe(true),
        ..e
    });

    let fault = sm.translate(&read_with_pasid().execute()).unwrap_err();

    assert_reason(&fault, FaultReason::SgnExecuteDenied, 0x82);
    assert_eq!(fault.stage, FaultStage::FirstStage);
}

/// §4.4: an execute request that is not allowed faults SGN.3; §6.1: the final execute
/// needs X in the second stage when SSEE=1.
#[test]
fn sgn3_execute_request_to_second_stage_page_with_x_clear() {
    let sm = Sm::second_stage(with_ers(), 2);
    sm.map_ss(IOVA, HPA, PageSize::Size4K, Leaf::read_write());
    sm.update_pasid_entries(|e| PasidEntry {
        lo: e.lo.with_ssee(true),
        hi: e.hi.with_ere(true),
        ..e
    });

    let fault = sm.translate(&read_with_pasid().execute()).unwrap_err();

    assert_reason(&fault, FaultReason::SgnExecuteDenied, 0x82);
}

#[test]
fn sgn4_input_beyond_second_stage_width() {
    let sm = Sm::second_stage(config(), 2);

    let fault = sm
        .translate(&Request::read(SID, 1 << 48).with_pasid(PASID))
        .unwrap_err();

    assert_reason(&fault, FaultReason::SgnAddressBeyond, 0x83);
    assert_eq!(fault.stage, FaultStage::SecondStage);
}

#[test]
fn sgn4_pass_through_input_beyond_host_address_width() {
    let sm = Sm::pass_through(config());
    assert_eq!(sm.unit.config().host_address_width, 52);

    let fault = sm
        .translate(&Request::read(SID, 1 << 52).with_pasid(PASID))
        .unwrap_err();

    assert_reason(&fault, FaultReason::SgnAddressBeyond, 0x83);
}

#[test]
fn sgn6_user_write_to_read_only_first_stage_page() {
    let sm = Sm::first_stage(config(), 4);
    sm.map_fs(IOVA, HPA, PageSize::Size4K, Leaf::read_only());

    let fault = sm
        .translate(&Request::write(SID, IOVA).with_pasid(PASID))
        .unwrap_err();

    assert_reason(&fault, FaultReason::SgnWriteDenied, 0x85);
    assert_eq!(fault.stage, FaultStage::FirstStage);
    assert_eq!(fault.fs_level, Some(1));
}

#[test]
fn sgn6_write_to_read_only_second_stage_page() {
    let sm = Sm::second_stage(config(), 2);
    sm.map_ss(IOVA, HPA, PageSize::Size4K, Leaf::read_only());

    let fault = sm
        .translate(&Request::write(SID, IOVA).with_pasid(PASID))
        .unwrap_err();

    assert_reason(&fault, FaultReason::SgnWriteDenied, 0x85);
    assert_eq!(fault.stage, FaultStage::SecondStage);
    assert_eq!(fault.ss_level, Some(1));
}

#[test]
fn sgn7_read_from_write_only_second_stage_page() {
    let sm = Sm::second_stage(config(), 2);
    sm.map_ss(IOVA, HPA, PageSize::Size4K, write_only());

    let fault = sm.translate(&read_with_pasid()).unwrap_err();

    assert_reason(&fault, FaultReason::SgnReadDenied, 0x86);
    assert_eq!(fault.stage, FaultStage::SecondStage);
    assert_eq!(fault.ss_level, Some(1));
}

#[test]
fn sgn8_output_in_interrupt_range() {
    let sm = Sm::second_stage(config(), 2);
    sm.map_ss(IOVA, INTERRUPT_PAGE, PageSize::Size4K, Leaf::read_write());

    let fault = sm.translate(&read_with_pasid()).unwrap_err();

    assert_reason(&fault, FaultReason::SgnInterruptRange, 0x87);
    assert_eq!(fault.stage, FaultStage::Output);
}

#[test]
fn sgn8_pass_through_with_pasid_to_interrupt_range() {
    let sm = Sm::pass_through(config());

    let fault = sm
        .translate(&Request::write(SID, INTERRUPT_PAGE + 0x1000).with_pasid(PASID))
        .unwrap_err();

    assert_reason(&fault, FaultReason::SgnInterruptRange, 0x87);
}

// ---------------------------------------------------------------------------------------
// Further reserved-bit triggers: pointers and frames at or above the host address width
// (§2.3, §4.3, §5.3), SNP in a non-leaf entry (§5.3), PS in a PML5E (§4.3), and fields of
// features the unit does not advertise (§3.5).
// ---------------------------------------------------------------------------------------

/// The default unit with a 46-bit host address width: bits 51:46 of every table pointer
/// and frame are reserved.
fn haw46() -> UnitConfig {
    let mut c = config();
    c.host_address_width = 46;
    c
}

const ABOVE_HAW46: u64 = 1 << 46;

#[test]
fn srt3_context_table_pointer_above_host_address_width() {
    let sm = Sm::bare(haw46());
    let root = SmRootEntry::new()
        .with_lp(true)
        .with_lctp(ABOVE_HAW46 >> 12);
    sm.mem()
        .write_u128(sm.root_entry_addr(0), root.into_bits())
        .unwrap();

    let fault = sm.translate(&Request::read(SID, IOVA)).unwrap_err();

    assert_reason(&fault, FaultReason::SrtReserved, 0x3A);
}

#[test]
fn sct3_pasid_directory_pointer_above_host_address_width() {
    let sm = Sm::second_stage(haw46(), 2);
    sm.update_context(SID, |c| SmContextEntry {
        lo: c.lo.with_pasiddirptr(ABOVE_HAW46 >> 12),
        ..c
    });

    let fault = sm.translate(&Request::read(SID, IOVA)).unwrap_err();

    assert_reason(&fault, FaultReason::SctReserved, 0x42);
}

#[test]
fn spd3_pasid_table_pointer_above_host_address_width() {
    let sm = Sm::second_stage(haw46(), 2);
    let pde = PasidDirEntry::new()
        .with_p(true)
        .with_smptblptr(ABOVE_HAW46 >> 12);
    sm.mem()
        .write_u64(sm.pasid_dir_entry_addr(PASID), pde.into_bits())
        .unwrap();

    let fault = sm.translate(&read_with_pasid()).unwrap_err();

    assert_reason(&fault, FaultReason::SpdReserved, 0x52);
}

#[test]
fn spt3_second_stage_pointer_above_host_address_width() {
    let sm = Sm::second_stage(haw46(), 2);
    sm.set_pasid_entry(PASID, support::ss_only_entry(ABOVE_HAW46, 2));

    let fault = sm.translate(&read_with_pasid()).unwrap_err();

    assert_reason(&fault, FaultReason::SptReserved, 0x5A);
}

#[test]
fn spt3_first_stage_pointer_above_host_address_width_without_nesting() {
    let sm = Sm::first_stage(haw46(), 4);
    sm.set_pasid_entry(PASID, support::fs_only_entry(ABOVE_HAW46, 4));

    let fault = sm.translate(&read_with_pasid()).unwrap_err();

    assert_reason(&fault, FaultReason::SptReserved, 0x5A);
}

#[test]
fn sfs3_first_stage_frame_above_host_address_width() {
    let sm = Sm::first_stage(haw46(), 4);
    sm.map_fs(IOVA, ABOVE_HAW46, PageSize::Size4K, Leaf::read_write());

    let fault = sm.translate(&read_with_pasid()).unwrap_err();

    assert_reason(&fault, FaultReason::SfsReserved, 0x72);
    assert_eq!(fault.fs_level, Some(1));
}

#[test]
fn sss3_second_stage_frame_above_host_address_width() {
    let sm = Sm::second_stage(haw46(), 2);
    sm.map_ss(IOVA, ABOVE_HAW46, PageSize::Size4K, Leaf::read_write());

    let fault = sm.translate(&read_with_pasid()).unwrap_err();

    assert_reason(&fault, FaultReason::SssReserved, 0x7A);
    assert_eq!(fault.ss_level, Some(1));
}

#[test]
fn sss3_snp_in_a_non_leaf_entry() {
    let sm = Sm::second_stage(config(), 2);
    sm.map_ss(IOVA, HPA, PageSize::Size4K, Leaf::read_write());
    // SNP is bit 11.
    sm.modify_u64(sm.ss_entry_addr(IOVA, 4), |v| v | 1 << 11);

    let fault = sm.translate(&read_with_pasid()).unwrap_err();

    assert_reason(&fault, FaultReason::SssReserved, 0x7A);
    assert_eq!(fault.ss_level, Some(4));
}

#[test]
fn sss3_snp_in_a_leaf_without_snoop_control() {
    let mut c = config();
    c.ecap = c.ecap.with_sc(false);
    let sm = Sm::second_stage(c, 2);
    sm.map_ss(
        IOVA,
        HPA,
        PageSize::Size4K,
        Leaf::read_write().with_extra(1 << 11),
    );

    let fault = sm.translate(&read_with_pasid()).unwrap_err();

    assert_reason(&fault, FaultReason::SssReserved, 0x7A);
    assert_eq!(fault.ss_level, Some(1));
}

#[test]
fn sfs3_page_size_bit_in_pml5e() {
    let sm = Sm::first_stage(config(), 5);
    sm.map_fs(IOVA, HPA, PageSize::Size4K, Leaf::read_write());
    sm.modify_u64(sm.fs_entry_addr(IOVA, 5), |v| v | 1 << 7);

    let fault = sm.translate(&read_with_pasid()).unwrap_err();

    assert_reason(&fault, FaultReason::SfsReserved, 0x72);
    assert_eq!(fault.fs_level, Some(5));
}

#[test]
fn spt3_ssade_without_slads() {
    let mut c = config();
    c.ecap = c.ecap.with_slads(false);
    let sm = Sm::second_stage(c, 2);
    sm.update_pasid_entries(|e| PasidEntry {
        lo: e.lo.with_ssade(true),
        ..e
    });

    let fault = sm.translate(&read_with_pasid()).unwrap_err();

    assert_reason(&fault, FaultReason::SptReserved, 0x5A);
}

#[test]
fn spt3_sre_without_srs() {
    let mut c = config();
    c.ecap = c.ecap.with_srs(false);
    let sm = Sm::first_stage(c, 4);
    sm.update_pasid_entries(|e| PasidEntry {
        hi: e.hi.with_sre(true),
        ..e
    });

    let fault = sm.translate(&read_with_pasid()).unwrap_err();

    assert_reason(&fault, FaultReason::SptReserved, 0x5A);
}

// ---------------------------------------------------------------------------------------
// The request a fault reports.
// ---------------------------------------------------------------------------------------

#[test]
fn fault_reports_the_request_it_belongs_to() {
    let sm = Sm::first_stage(config(), 4);
    sm.add_device(OTHER_SID);
    let req = Request::new(OTHER_SID, IOVA + 0x18, Access::AtomicRmw).with_pasid(PASID);

    let fault = sm.translate(&req).unwrap_err();

    assert_reason(&fault, FaultReason::SpdNotPresent, 0x51);
    assert_eq!(fault.sid, OTHER_SID);
    assert_eq!(fault.addr, IOVA + 0x18);
    assert_eq!(fault.pasid, Some(PASID));
    assert_eq!(fault.access, Access::AtomicRmw);
}
