use bitfield_struct::bitfield;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// FSTS_REG (offset 0x034): fault status (§1.8).
#[bitfield(u32)]
#[derive(PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct Fsts {
    /// PFO: primary fault overflow (write 1 to clear).
    pub pfo: bool,
    /// PPF: primary pending fault, the OR of every FRCD.F (read-only).
    pub ppf: bool,
    /// AFO: advanced fault overflow (write 1 to clear).
    pub afo: bool,
    /// APF: advanced pending fault (write 1 to clear).
    pub apf: bool,
    /// IQE: invalidation queue error (write 1 to clear).
    pub iqe: bool,
    /// ICE: invalidation completion error (write 1 to clear).
    pub ice: bool,
    /// ITE: invalidation time-out error (write 1 to clear).
    pub ite: bool,
    /// Deprecated PRO position (page-request overflow now lives in PRS_REG).
    pub pro: bool,
    /// FRI: index of the first pending fault record (valid when PPF=1).
    #[bits(8)]
    pub fri: u8,
    #[bits(16)]
    __: u16,
}

impl Fsts {
    /// Bits that software clears by writing 1 (PFO, AFO, APF, IQE, ICE, ITE).
    pub const RW1C_MASK: u32 = 0b0111_1101;
}

/// Event control registers FECTL/IECTL/PECTL: interrupt mask and pending bits (§1.1).
#[bitfield(u32)]
#[derive(PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct EventControl {
    #[bits(30)]
    __: u32,
    /// IP: interrupt pending (read-only; set when an event was held back by IM).
    pub ip: bool,
    /// IM: interrupt mask.
    pub im: bool,
}

/// One 128-bit fault-recording register FRCD_REG\[i\] (§1.9).
#[bitfield(u128)]
#[derive(PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct FaultRecord {
    #[bits(12)]
    __: u16,
    /// FI: faulting page address bits 63:12.
    #[bits(52)]
    pub fi: u64,
    /// SID: requester id (bus:dev.fn) of the faulting request.
    pub sid: u16,
    #[bits(12)]
    __: u16,
    /// T2: request type bit 2.
    pub t2: bool,
    /// PRIV: privilege-mode-requested of the request.
    pub priv_mode: bool,
    /// EXE: execute-requested of the request.
    pub exe: bool,
    /// PP: PASID present.
    pub pp: bool,
    /// FR: fault reason code (§7.1).
    pub fr: u8,
    /// PV: PASID value (valid when PP=1).
    #[bits(20)]
    pub pv: u32,
    /// AT: address type of the request.
    #[bits(2)]
    pub at: u8,
    /// T1: request type bit 1 (legacy meaning: 0 = write, 1 = read).
    pub t1: bool,
    /// F: fault valid (write 1 to clear).
    pub f: bool,
}

impl FaultRecord {
    /// The faulting page address (FI shifted back into place).
    pub const fn fault_addr(&self) -> u64 {
        self.fi() << 12
    }
}
