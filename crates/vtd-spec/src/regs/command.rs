use bitfield_struct::bitfield;
use bitflags::bitflags;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

bitflags! {
    /// GCMD_REG (offset 0x018): global commands, written one change at a time (§1.4).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct GlobalCommand: u32 {
        /// TE: translation enable.
        const TE = 1 << 31;
        /// SRTP: set root table pointer (latch RTADDR).
        const SRTP = 1 << 30;
        /// SFL: set fault log (latch AFLOG).
        const SFL = 1 << 29;
        /// EAFL: enable advanced fault logging.
        const EAFL = 1 << 28;
        /// WBF: write-buffer flush.
        const WBF = 1 << 27;
        /// QIE: queued invalidation enable.
        const QIE = 1 << 26;
        /// IRE: interrupt remapping enable.
        const IRE = 1 << 25;
        /// SIRTP: set interrupt remap table pointer.
        const SIRTP = 1 << 24;
        /// CFI: compatibility format interrupts.
        const CFI = 1 << 23;
    }
}

bitflags! {
    /// GSTS_REG (offset 0x01C): global status, mirrors GCMD bit positions (§1.4).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct GlobalStatus: u32 {
        /// TES: translation enabled.
        const TES = 1 << 31;
        /// RTPS: root table pointer latched.
        const RTPS = 1 << 30;
        /// FLS: fault log pointer latched.
        const FLS = 1 << 29;
        /// AFLS: advanced fault logging enabled.
        const AFLS = 1 << 28;
        /// WBFS: write-buffer flush in progress.
        const WBFS = 1 << 27;
        /// QIES: queued invalidation enabled.
        const QIES = 1 << 26;
        /// IRES: interrupt remapping enabled.
        const IRES = 1 << 25;
        /// IRTPS: interrupt remap table pointer latched.
        const IRTPS = 1 << 24;
        /// CFIS: compatibility format interrupts enabled.
        const CFIS = 1 << 23;
    }
}

impl GlobalStatus {
    /// Status bits that stay set while the corresponding feature is on ("persistent").
    /// GCMD writes must repeat these bits to keep them, as Linux does.
    pub const PERSISTENT: GlobalStatus = GlobalStatus::TES
        .union(GlobalStatus::AFLS)
        .union(GlobalStatus::QIES)
        .union(GlobalStatus::IRES)
        .union(GlobalStatus::CFIS);
}

/// Translation-table mode of RTADDR_REG bits 11:10 (§1.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ttm {
    /// 00b: legacy root and context tables.
    Legacy,
    /// 01b: scalable-mode root and context tables.
    Scalable,
    /// 10b: reserved.
    Reserved,
    /// 11b: abort-DMA mode (needs ECAP.ADMS).
    AbortDma,
}

impl Ttm {
    /// Decode from the two-bit field.
    pub const fn from_bits(bits: u8) -> Self {
        match bits & 3 {
            0 => Ttm::Legacy,
            1 => Ttm::Scalable,
            2 => Ttm::Reserved,
            _ => Ttm::AbortDma,
        }
    }

    /// Encode to the two-bit field.
    pub const fn into_bits(self) -> u8 {
        match self {
            Ttm::Legacy => 0,
            Ttm::Scalable => 1,
            Ttm::Reserved => 2,
            Ttm::AbortDma => 3,
        }
    }
}

/// RTADDR_REG (offset 0x020): root table address and translation-table mode (§1.5).
#[bitfield(u64)]
#[derive(PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct RtAddr {
    #[bits(10)]
    __: u16,
    /// TTM: translation-table mode.
    #[bits(2)]
    pub ttm: Ttm,
    /// RTA: root table address bits 63:12 (4 KiB aligned).
    #[bits(52)]
    pub rta: u64,
}

impl RtAddr {
    /// The root table's physical address.
    pub const fn root_table(&self) -> u64 {
        self.rta() << 12
    }

    /// Build from a root-table physical address (low 12 bits dropped) and a mode.
    pub const fn from_table(addr: u64, ttm: Ttm) -> Self {
        Self::new().with_rta(addr >> 12).with_ttm(ttm)
    }
}
