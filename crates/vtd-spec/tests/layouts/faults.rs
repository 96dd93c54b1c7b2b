//! Fault reason codes (§7.1) as recorded in FRCD.FR (§1.9).

use vtd_spec::fault::FaultReason;
use vtd_spec::regs::FaultRecord;

/// Every (code, condition name) pair of the §7.1 tables with a defined DMA-remapping meaning.
const REFERENCE_CODES: [(u8, &str); 65] = [
    (0x01, "LRT.2"),
    (0x02, "LCT.2"),
    (0x03, "LCT.4"),
    (0x04, "LGN.1"),
    (0x05, "LGN.2"),
    (0x06, "LGN.3"),
    (0x07, "LSL.1"),
    (0x08, "LRT.1"),
    (0x09, "LCT.1"),
    (0x0A, "LRT.3"),
    (0x0B, "LCT.3"),
    (0x0C, "LSL.2"),
    (0x0D, "LCT.5"),
    (0x0E, "LGN.4"),
    (0x30, "RTA.1"),
    (0x31, "RTA.2"),
    (0x32, "RTA.3"),
    (0x33, "RTA.4"),
    (0x38, "SRT.1"),
    (0x39, "SRT.2"),
    (0x3A, "SRT.3"),
    (0x40, "SCT.1"),
    (0x41, "SCT.2"),
    (0x42, "SCT.3"),
    (0x43, "SCT.4"),
    (0x44, "SCT.5"),
    (0x45, "SCT.6"),
    (0x46, "SCT.7"),
    (0x47, "SCT.8"),
    (0x48, "SCT.9"),
    (0x50, "SPD.1"),
    (0x51, "SPD.2"),
    (0x52, "SPD.3"),
    (0x58, "SPT.1"),
    (0x59, "SPT.2"),
    (0x5A, "SPT.3"),
    (0x5B, "SPT.4"),
    (0x5C, "SPT.5"),
    (0x5D, "SPT.6"),
    (0x70, "SFS.1"),
    (0x71, "SFS.2"),
    (0x72, "SFS.3"),
    (0x73, "SFS.4"),
    (0x74, "SFS.5"),
    (0x75, "SFS.6"),
    (0x76, "SFS.7"),
    (0x77, "SFS.8"),
    (0x78, "SSS.1"),
    (0x79, "SSS.2"),
    (0x7A, "SSS.3"),
    (0x7B, "SSS.4"),
    (0x7C, "SSS.5"),
    (0x7D, "SSS.6"),
    (0x80, "SGN.1"),
    (0x81, "SGN.2"),
    (0x82, "SGN.3"),
    (0x83, "SGN.4"),
    (0x84, "SGN.5"),
    (0x85, "SGN.6"),
    (0x86, "SGN.7"),
    (0x87, "SGN.8"),
    (0x88, "SGN.9"),
    (0x89, "SGN.10"),
    (0x90, "SFS.9"),
    (0x91, "SFS.10"),
];

#[test]
fn every_reference_code_decodes_to_its_condition_name() {
    let names = REFERENCE_CODES.map(|(code, _)| FaultReason::from_code(code).map(|r| r.name()));

    assert_eq!(names, REFERENCE_CODES.map(|(_, name)| Some(name)));
}

#[test]
fn fault_reason_list_has_exactly_the_reference_codes() {
    let codes: Vec<u8> = FaultReason::ALL.iter().map(|r| r.code()).collect();

    assert_eq!(codes, REFERENCE_CODES.map(|(code, _)| code));
}

#[test]
fn unassigned_codes_decode_to_none() {
    let unassigned = [
        0x00, 0x0F, 0x20, 0x29, 0x34, 0x37, 0x49, 0x53, 0x5E, 0x6F, 0x7E, 0x8A, 0x92,
    ];

    assert_eq!(unassigned.map(FaultReason::from_code), [None; 13]);
}

#[test]
fn legacy_codes_are_below_0x30() {
    assert!(FaultReason::LgnInterruptRange.is_legacy());
    assert!(!FaultReason::RtaInvalid.is_legacy());
}

#[test]
fn faults_found_before_any_fpd_carrying_entry_are_not_qualified() {
    assert!(!FaultReason::SrtAccessError.is_qualified());
    assert!(!FaultReason::SrtNotPresent.is_qualified());
    assert!(!FaultReason::SrtReserved.is_qualified());
    assert!(!FaultReason::SctAccessError.is_qualified());
    assert!(!FaultReason::SctReserved.is_qualified());
    assert!(!FaultReason::SpdAccessError.is_qualified());
    assert!(!FaultReason::SptAccessError.is_qualified());
    assert!(!FaultReason::LrtNotPresent.is_qualified());
}

#[test]
fn faults_found_after_an_fpd_carrying_entry_are_qualified() {
    assert!(FaultReason::SctNotPresent.is_qualified());
    assert!(FaultReason::SpdNotPresent.is_qualified());
    assert!(FaultReason::SptNotPresent.is_qualified());
    assert!(FaultReason::SptInvalid.is_qualified());
    assert!(FaultReason::SfsAdWriteDenied.is_qualified());
    assert!(FaultReason::SgnInterruptRange.is_qualified());
    assert!(FaultReason::LctNotPresent.is_qualified());
}

#[test]
fn fault_record_fr_field_carries_the_reason_code_at_bits_103_96() {
    let frcd = FaultRecord::from_bits(0x77 << 96);

    assert_eq!(
        FaultReason::from_code(frcd.fr()),
        Some(FaultReason::SfsAdWriteDenied)
    );
}
