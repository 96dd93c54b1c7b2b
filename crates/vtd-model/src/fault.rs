//! Translation faults as the model reports them to the caller of `translate`.

use std::fmt;

use vtd_spec::fault::FaultReason;

use crate::request::{Access, AddressType, Request};

/// Where in the translation a fault was detected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultStage {
    /// The root-table pointer or translation-table mode.
    RootPointer,
    /// The root entry.
    RootEntry,
    /// The context entry.
    ContextEntry,
    /// The PASID-directory entry.
    PasidDirectory,
    /// The PASID-table entry.
    PasidEntry,
    /// Checks on the request itself (canonical address, privilege, address width).
    Request,
    /// A first-stage paging entry.
    FirstStage,
    /// The second-stage walk that fetches a first-stage table (nested only).
    SecondStageForFirstStageTable,
    /// A first-stage A/D update and the second-stage permission it needs (nested only).
    FirstStageAdUpdate,
    /// The second-stage walk of the final address (or the only stage, PGTT=010b/legacy).
    SecondStage,
    /// The translated output address.
    Output,
}

impl FaultStage {
    /// Plain-words name of the stage.
    pub const fn describe(self) -> &'static str {
        match self {
            FaultStage::RootPointer => "root-table pointer",
            FaultStage::RootEntry => "root entry",
            FaultStage::ContextEntry => "context entry",
            FaultStage::PasidDirectory => "PASID-directory entry",
            FaultStage::PasidEntry => "PASID-table entry",
            FaultStage::Request => "request checks",
            FaultStage::FirstStage => "first-stage walk",
            FaultStage::SecondStageForFirstStageTable => {
                "second-stage walk for a first-stage table"
            }
            FaultStage::FirstStageAdUpdate => "first-stage A/D update",
            FaultStage::SecondStage => "second-stage walk",
            FaultStage::Output => "output address",
        }
    }
}

/// What happened to a fault in the fault-recording registers (§7.2, §7.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultRecording {
    /// Written into FRCD\[index\].
    Recorded {
        /// The fault-recording register used.
        index: u16,
    },
    /// Not recorded: FPD was set on an entry read for this request and the fault is
    /// qualified.
    SuppressedByFpd,
    /// Not recorded: a pending record already holds a fault of the same source id.
    Collapsed,
    /// Not recorded: the next record was still pending or PFO was set; PFO is now set.
    Overflow,
    /// Not recorded: ATS translation requests get a completion without access instead.
    NotRecordedAts,
    /// Not recorded: the caller asked for a dry run (explain, tracing).
    DryRun,
    /// Not recorded: RTADDR.TTM is abort-DMA mode (ECAP.ADMS), which blocks every request
    /// silently (a model choice; the reference does not say whether such aborts are logged).
    AbortDmaMode,
}

/// A DMA-remapping fault: why, where, and for which request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Fault {
    /// The fault reason (FRCD.FR).
    pub reason: FaultReason,
    /// Where the fault was detected.
    pub stage: FaultStage,
    /// First-stage level involved (5 = PML5E … 1 = PTE), if any.
    pub fs_level: Option<u8>,
    /// Second-stage level involved, if any.
    pub ss_level: Option<u8>,
    /// Guest-physical (second-stage input) address involved, if any.
    pub gpa: Option<u64>,
    /// Physical address of the entry that decided, if an entry decided.
    pub entry_addr: Option<u64>,
    /// Value of the entry that decided (low 64 bits for wide entries), if read.
    pub entry_value: Option<u64>,
    /// The request's input address.
    pub addr: u64,
    /// The request's source id.
    pub sid: u16,
    /// The PASID the request carried (not the RID_PASID substituted for it).
    pub pasid: Option<u32>,
    /// The request's access.
    pub access: Access,
    /// The request was privileged.
    pub privileged: bool,
    /// The request asked for execute.
    pub execute: bool,
    /// The request's address type.
    pub address_type: AddressType,
    /// What the fault-recording logic did with the fault.
    pub recording: FaultRecording,
}

impl Fault {
    /// A fault of `reason` detected at `stage` for `req`, not yet recorded.
    pub(crate) fn new(reason: FaultReason, stage: FaultStage, req: &Request) -> Self {
        Self {
            reason,
            stage,
            fs_level: None,
            ss_level: None,
            gpa: None,
            entry_addr: None,
            entry_value: None,
            addr: req.addr,
            sid: req.sid,
            pasid: req.pasid,
            access: req.access,
            privileged: req.privileged,
            execute: req.execute,
            address_type: req.address_type,
            recording: FaultRecording::DryRun,
        }
    }

    pub(crate) fn fs_level(mut self, level: u8) -> Self {
        self.fs_level = Some(level);
        self
    }

    pub(crate) fn ss_level(mut self, level: u8) -> Self {
        self.ss_level = Some(level);
        self
    }

    pub(crate) fn gpa(mut self, gpa: u64) -> Self {
        self.gpa = Some(gpa);
        self
    }

    pub(crate) fn entry(mut self, addr: u64, value: u64) -> Self {
        self.entry_addr = Some(addr);
        self.entry_value = Some(value);
        self
    }

    pub(crate) fn entry_addr(mut self, addr: u64) -> Self {
        self.entry_addr = Some(addr);
        self
    }

    /// The fault reason code.
    pub const fn code(&self) -> u8 {
        self.reason.code()
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} fault {} ({:#04x}) at {:#x} from {:02x}:{:02x}.{}",
            self.access.name(),
            self.reason.name(),
            self.reason.code(),
            self.addr,
            self.sid >> 8,
            (self.sid >> 3) & 0x1F,
            self.sid & 7
        )?;
        if let Some(pasid) = self.pasid {
            write!(f, " pasid {pasid:#x}")?;
        }
        write!(
            f,
            " in {}: {}",
            self.stage.describe(),
            self.reason.meaning()
        )
    }
}

impl std::error::Error for Fault {}
