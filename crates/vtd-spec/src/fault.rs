//! Fault reason codes of DMA remapping, legacy and scalable mode (§7.1).
//!
//! The names are the specification's condition codes (LRT/LCT/LGN/LSL for legacy mode;
//! RTA/SRT/SCT/SPD/SPT/SFS/SSS/SGN for scalable mode). Descriptions are one line each,
//! in this project's own words.

/// Generates the [`FaultReason`] enum and its tables from one list.
macro_rules! fault_reasons {
    ($( $(#[$doc:meta])* $variant:ident = $code:literal, $name:literal, $meaning:literal; )*) => {
        /// A DMA-remapping fault reason (FRCD.FR), §7.1.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[repr(u8)]
        pub enum FaultReason {
            $( $(#[$doc])* $variant = $code, )*
        }

        impl FaultReason {
            /// Every fault reason, in code order.
            pub const ALL: &'static [FaultReason] = &[$(FaultReason::$variant,)*];

            /// Decode a reason code; `None` for codes without a defined DMA-remapping meaning.
            pub const fn from_code(code: u8) -> Option<FaultReason> {
                match code {
                    $( $code => Some(FaultReason::$variant), )*
                    _ => None,
                }
            }

            /// The specification's condition code, e.g. `"SFS.8"`.
            pub const fn name(self) -> &'static str {
                match self {
                    $( FaultReason::$variant => $name, )*
                }
            }

            /// One line saying what went wrong.
            pub const fn meaning(self) -> &'static str {
                match self {
                    $( FaultReason::$variant => $meaning, )*
                }
            }
        }
    };
}

fault_reasons! {
    /// Legacy: root entry not present.
    LrtNotPresent = 0x01, "LRT.2", "root entry for the request's bus is not present";
    /// Legacy: context entry not present.
    LctNotPresent = 0x02, "LCT.2", "context entry for the request's device is not present";
    /// Legacy: context entry programmed wrongly.
    LctInvalid = 0x03, "LCT.4", "context entry is programmed with an invalid value (AW, TT or table pointer)";
    /// Legacy: address beyond the guest address width.
    LgnAddressBeyond = 0x04, "LGN.1", "input address is beyond the domain's address width";
    /// Legacy: write denied.
    LgnWriteDenied = 0x05, "LGN.2", "write request to a page without write permission";
    /// Legacy: read denied.
    LgnReadDenied = 0x06, "LGN.3", "read request to a page without read permission";
    /// Legacy: error accessing a second-stage entry.
    LslAccessError = 0x07, "LSL.1", "memory error while reading a second-stage paging entry";
    /// Legacy: error accessing the root entry.
    LrtAccessError = 0x08, "LRT.1", "memory error while reading the root entry";
    /// Legacy: error accessing the context entry.
    LctAccessError = 0x09, "LCT.1", "memory error while reading the context entry";
    /// Legacy: reserved bit in the root entry.
    LrtReserved = 0x0A, "LRT.3", "reserved bit set in the root entry";
    /// Legacy: reserved bit in the context entry.
    LctReserved = 0x0B, "LCT.3", "reserved bit set in the context entry";
    /// Legacy: reserved bit in a second-stage entry.
    LslReserved = 0x0C, "LSL.2", "reserved bit set in a second-stage paging entry";
    /// Legacy: translation type blocks the request.
    LctTtBlocked = 0x0D, "LCT.5", "context-entry translation type blocks this kind of request";
    /// Legacy: output in the interrupt range.
    LgnInterruptRange = 0x0E, "LGN.4", "translated address falls in the interrupt range 0xFEEx_xxxx";
    /// Scalable: invalid root-table address.
    RtaInvalid = 0x30, "RTA.1", "root-table address or translation-table mode is invalid";
    /// Scalable: request-with-PASID in legacy mode.
    RtaPasidInLegacy = 0x31, "RTA.2", "request with PASID while the root table is in legacy mode";
    /// Scalable: page request in legacy mode.
    RtaPageRequestInLegacy = 0x32, "RTA.3", "page request while the root table is in legacy mode";
    /// Scalable: RTA.4 (condition not pinned down by the reference).
    RtaOther = 0x33, "RTA.4", "root-table condition RTA.4";
    /// Scalable: error accessing the root entry.
    SrtAccessError = 0x38, "SRT.1", "memory error while reading the scalable-mode root entry";
    /// Scalable: root entry half not present.
    SrtNotPresent = 0x39, "SRT.2", "root entry's lower/upper context-table present bit is clear";
    /// Scalable: reserved bit in the root entry.
    SrtReserved = 0x3A, "SRT.3", "reserved bit set in the scalable-mode root entry";
    /// Scalable: error accessing the context entry.
    SctAccessError = 0x40, "SCT.1", "memory error while reading the scalable-mode context entry";
    /// Scalable: context entry not present.
    SctNotPresent = 0x41, "SCT.2", "scalable-mode context entry is not present";
    /// Scalable: reserved bit in the context entry.
    SctReserved = 0x42, "SCT.3", "reserved bit set in the scalable-mode context entry";
    /// Scalable: context entry programmed wrongly.
    SctInvalid = 0x43, "SCT.4", "scalable-mode context entry is programmed with an invalid value";
    /// Scalable: ATS request while DTE=0.
    SctDteBlocked = 0x44, "SCT.5", "ATS translation or translated request while the context entry's DTE is clear";
    /// Scalable: PASID request while PASIDE=0.
    SctPasidDisabled = 0x45, "SCT.6", "request with PASID while the context entry's PASIDE is clear";
    /// Scalable: PASID beyond the directory.
    SctPasidBeyondDir = 0x46, "SCT.7", "PASID is beyond the PASID directory size (PDTS)";
    /// Scalable: page request while PRE=0.
    SctPageRequestDisabled = 0x47, "SCT.8", "page request while the context entry's PRE is clear";
    /// Scalable: RID_PASID field error.
    SctRidPasidInvalid = 0x48, "SCT.9", "context entry's RID_PASID is invalid";
    /// Scalable: error accessing the PASID-directory entry.
    SpdAccessError = 0x50, "SPD.1", "memory error while reading the PASID-directory entry";
    /// Scalable: PASID-directory entry not present.
    SpdNotPresent = 0x51, "SPD.2", "PASID-directory entry is not present";
    /// Scalable: reserved bit in the PASID-directory entry.
    SpdReserved = 0x52, "SPD.3", "reserved bit set in the PASID-directory entry";
    /// Scalable: error accessing the PASID-table entry.
    SptAccessError = 0x58, "SPT.1", "memory error while reading the PASID-table entry";
    /// Scalable: PASID-table entry not present.
    SptNotPresent = 0x59, "SPT.2", "PASID-table entry is not present";
    /// Scalable: reserved bit in the PASID-table entry.
    SptReserved = 0x5A, "SPT.3", "reserved bit set in the PASID-table entry";
    /// Scalable: PASID-table entry programmed wrongly.
    SptInvalid = 0x5B, "SPT.4", "PASID-table entry is programmed with an invalid value (PGTT, AW or FSPM)";
    /// Scalable: execute request while ERE=0.
    SptExecuteDisabled = 0x5C, "SPT.5", "execute request while the PASID entry's ERE is clear";
    /// Scalable: supervisor request while SRE=0.
    SptSupervisorDisabled = 0x5D, "SPT.6", "supervisor request while the PASID entry's SRE is clear";
    /// Scalable: error accessing a first-stage entry.
    SfsAccessError = 0x70, "SFS.1", "memory error while reading a first-stage paging entry";
    /// Scalable: first-stage entry not present.
    SfsNotPresent = 0x71, "SFS.2", "first-stage paging entry is not present";
    /// Scalable: reserved bit in a first-stage entry.
    SfsReserved = 0x72, "SFS.3", "reserved bit set in a first-stage paging entry";
    /// Scalable: error accessing the first-stage top-level entry.
    SfsRootAccessError = 0x73, "SFS.4", "memory error while reading the first-stage top-level entry through FSPTPTR";
    /// Scalable: nested, first-stage table address beyond the second-stage width.
    SfsGpaBeyond = 0x74, "SFS.5", "nested: a first-stage table address is beyond the second-stage address width";
    /// Scalable: nested, stage 2 denies reading the first-stage top-level table.
    SfsRootReadDenied = 0x75, "SFS.6", "nested: second stage denies read of the first-stage top-level table";
    /// Scalable: nested, stage 2 denies reading a first-stage table.
    SfsReadDenied = 0x76, "SFS.7", "nested: second stage denies read of a first-stage table";
    /// Scalable: nested, stage 2 denies the write of a first-stage A/D update.
    SfsAdWriteDenied = 0x77, "SFS.8", "nested: second stage denies the write a first-stage A/D update needs";
    /// Scalable: error accessing a second-stage entry.
    SssAccessError = 0x78, "SSS.1", "memory error while reading a second-stage paging entry";
    /// Scalable: second-stage entry not present.
    SssNotPresent = 0x79, "SSS.2", "second-stage paging entry is not present (R and W clear)";
    /// Scalable: reserved bit in a second-stage entry.
    SssReserved = 0x7A, "SSS.3", "reserved bit set in a second-stage paging entry";
    /// Scalable: invalid SSPTPTR.
    SssInvalidRoot = 0x7B, "SSS.4", "second-stage table pointer (SSPTPTR) is invalid";
    /// Scalable: second-stage A/D update needed on a non-snooped walk.
    SssAdNonSnooped = 0x7C, "SSS.5", "second-stage A/D update needed but the page walk is not snooped";
    /// Scalable: SSS.6 (condition not pinned down by the reference).
    SssOther = 0x7D, "SSS.6", "second-stage condition SSS.6";
    /// Scalable: non-canonical first-stage input.
    SgnNonCanonical = 0x80, "SGN.1", "first-stage input address is not canonical";
    /// Scalable: user request to a supervisor page.
    SgnUserDenied = 0x81, "SGN.2", "user request to a page whose first-stage U/S is clear";
    /// Scalable: execute denied.
    SgnExecuteDenied = 0x82, "SGN.3", "execute request denied";
    /// Scalable: address beyond the hardware maximum.
    SgnAddressBeyond = 0x83, "SGN.4", "input address is beyond the second-stage address width";
    /// Scalable: second-stage entry address beyond the maximum.
    SgnSsAddressBeyond = 0x84, "SGN.5", "a second-stage entry's address is beyond the host address width";
    /// Scalable: write or atomic denied.
    SgnWriteDenied = 0x85, "SGN.6", "write or atomic request to a page without write permission";
    /// Scalable: read or atomic denied.
    SgnReadDenied = 0x86, "SGN.7", "read or atomic request to a page without read permission";
    /// Scalable: output in the interrupt range.
    SgnInterruptRange = 0x87, "SGN.8", "translated address falls in the interrupt range 0xFEEx_xxxx";
    /// Scalable: SGN.9 (condition not pinned down by the reference).
    SgnOther9 = 0x88, "SGN.9", "general condition SGN.9";
    /// Scalable: SGN.10 (condition not pinned down by the reference).
    SgnOther10 = 0x89, "SGN.10", "general condition SGN.10";
    /// Scalable: first-stage A/D update needed on a non-snooped walk.
    SfsAdNonSnooped = 0x90, "SFS.9", "first-stage A/D update needed but the page walk is not snooped";
    /// Scalable: first-stage A/D update failed.
    SfsAdUpdateFailed = 0x91, "SFS.10", "the atomic update of a first-stage A/D bit failed";
}

impl FaultReason {
    /// The reason code as recorded in FRCD.FR.
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// True for the legacy-mode codes (0x01–0x0E).
    pub const fn is_legacy(self) -> bool {
        self.code() < 0x30
    }

    /// Whether FPD can suppress recording of this fault (§7.3).
    ///
    /// The reference's list (QEMU's classification): faults found before any entry that
    /// carries FPD is read, and errors reading the tables that carry it, are never
    /// suppressible; everything found after is. This is an UNSURE point of the reference.
    pub const fn is_qualified(self) -> bool {
        !matches!(
            self,
            FaultReason::LrtNotPresent
                | FaultReason::LrtAccessError
                | FaultReason::LrtReserved
                | FaultReason::LctAccessError
                | FaultReason::LctReserved
                | FaultReason::RtaInvalid
                | FaultReason::RtaPasidInLegacy
                | FaultReason::RtaPageRequestInLegacy
                | FaultReason::RtaOther
                | FaultReason::SrtAccessError
                | FaultReason::SrtNotPresent
                | FaultReason::SrtReserved
                | FaultReason::SctAccessError
                | FaultReason::SctReserved
                | FaultReason::SpdAccessError
                | FaultReason::SptAccessError
        )
    }
}

impl core::fmt::Display for FaultReason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{} ({:#04x}): {}",
            self.name(),
            self.code(),
            self.meaning()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_round_trips_through_its_code() {
        for &reason in FaultReason::ALL {
            assert_eq!(FaultReason::from_code(reason.code()), Some(reason));
        }
    }

    #[test]
    fn codes_without_meaning_decode_to_none() {
        for code in [0x00, 0x0F, 0x20, 0x34, 0x49, 0x5E, 0x7E, 0x8A, 0x92, 0xFF] {
            assert_eq!(FaultReason::from_code(code), None, "code {code:#x}");
        }
    }

    #[test]
    fn nested_fault_codes_match_reference_table() {
        assert_eq!(FaultReason::SfsGpaBeyond.code(), 0x74);
        assert_eq!(FaultReason::SfsRootReadDenied.code(), 0x75);
        assert_eq!(FaultReason::SfsReadDenied.code(), 0x76);
        assert_eq!(FaultReason::SfsAdWriteDenied.code(), 0x77);
        assert_eq!(FaultReason::SfsAdWriteDenied.name(), "SFS.8");
    }

    #[test]
    fn root_faults_are_never_suppressible() {
        assert!(!FaultReason::SrtNotPresent.is_qualified());
        assert!(!FaultReason::SctReserved.is_qualified());
        assert!(FaultReason::SctNotPresent.is_qualified());
        assert!(FaultReason::SfsAdWriteDenied.is_qualified());
    }
}
