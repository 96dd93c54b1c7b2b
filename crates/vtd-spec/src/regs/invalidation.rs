use bitfield_struct::bitfield;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Context-cache invalidation granularity of CCMD.CIRG/CAIG (§1.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CcmdGranularity {
    /// 00b: reserved (as an actual granularity: the request failed).
    Reserved,
    /// 01b: global.
    Global,
    /// 10b: domain-selective.
    Domain,
    /// 11b: device-selective.
    Device,
}

impl CcmdGranularity {
    /// Decode from the two-bit field.
    pub const fn from_bits(bits: u8) -> Self {
        match bits & 3 {
            0 => Self::Reserved,
            1 => Self::Global,
            2 => Self::Domain,
            _ => Self::Device,
        }
    }

    /// Encode to the two-bit field.
    pub const fn into_bits(self) -> u8 {
        self as u8
    }
}

/// CCMD_REG (offset 0x028): register-based context-cache invalidation (§1.6).
#[bitfield(u64)]
#[derive(PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct Ccmd {
    /// DID: domain id (domain-selective granularity).
    pub did: u16,
    /// SID: source id (device-selective granularity).
    pub sid: u16,
    /// FM: function mask applied to SID (0 none, 1 bit 2, 2 bits 2:1, 3 bits 2:0).
    #[bits(2)]
    pub fm: u8,
    #[bits(25)]
    __: u32,
    /// CAIG: actual granularity performed (written by hardware).
    #[bits(2)]
    pub caig: CcmdGranularity,
    /// CIRG: requested granularity.
    #[bits(2)]
    pub cirg: CcmdGranularity,
    /// ICC: invalidate context cache; set by software, cleared by hardware when done.
    pub icc: bool,
}

/// IOTLB invalidation granularity of IOTLB_REG.IIRG/IAIG (§1.7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IotlbGranularity {
    /// 00b: reserved (as an actual granularity: the request failed).
    Reserved,
    /// 01b: global.
    Global,
    /// 10b: domain-selective.
    Domain,
    /// 11b: page-selective within a domain.
    Page,
}

impl IotlbGranularity {
    /// Decode from the two-bit field.
    pub const fn from_bits(bits: u8) -> Self {
        match bits & 3 {
            0 => Self::Reserved,
            1 => Self::Global,
            2 => Self::Domain,
            _ => Self::Page,
        }
    }

    /// Encode to the two-bit field.
    pub const fn into_bits(self) -> u8 {
        self as u8
    }
}

/// IVA_REG (IRO·16): address for page-selective register-based IOTLB invalidation (§1.7).
#[bitfield(u64)]
#[derive(PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct IvaReg {
    /// AM: address mask, invalidates 2^AM 4 KiB pages.
    #[bits(6)]
    pub am: u8,
    /// IH: invalidation hint (only leaf entries changed).
    pub ih: bool,
    #[bits(5)]
    __: u8,
    /// ADDR: page address bits 63:12.
    #[bits(52)]
    pub addr: u64,
}

/// IOTLB_REG (IRO·16 + 8): register-based IOTLB invalidation command (§1.7).
#[bitfield(u64)]
#[derive(PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct IotlbReg {
    #[bits(32)]
    __: u32,
    /// DID: domain id for domain- and page-selective invalidation.
    pub did: u16,
    /// DW: drain writes.
    pub dw: bool,
    /// DR: drain reads.
    pub dr: bool,
    #[bits(7)]
    __: u8,
    /// IAIG: actual granularity performed (written by hardware).
    #[bits(2)]
    pub iaig: IotlbGranularity,
    #[bits(1)]
    __: u8,
    /// IIRG: requested granularity.
    #[bits(2)]
    pub iirg: IotlbGranularity,
    #[bits(1)]
    __: u8,
    /// IVT: invalidate IOTLB; set by software, cleared by hardware when done.
    pub ivt: bool,
}

/// IQA_REG (offset 0x090): invalidation queue base, size and descriptor width (§1.10).
#[bitfield(u64)]
#[derive(PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct Iqa {
    /// QS: queue size, 2^QS 4 KiB pages.
    #[bits(3)]
    pub qs: u8,
    #[bits(8)]
    __: u8,
    /// DW: descriptor width, 0 = 128-bit, 1 = 256-bit (needs ECAP.SMTS).
    pub dw: bool,
    /// IQA: queue base address bits 63:12.
    #[bits(52)]
    pub iqa: u64,
}

impl Iqa {
    /// Queue base physical address.
    pub const fn base(&self) -> u64 {
        self.iqa() << 12
    }

    /// Descriptor size in bytes (16 or 32).
    pub const fn descriptor_bytes(&self) -> u64 {
        if self.dw() { 32 } else { 16 }
    }

    /// Number of descriptor slots: 2^(QS+8) for 128-bit, 2^(QS+7) for 256-bit descriptors.
    pub const fn slots(&self) -> u64 {
        (4096u64 << self.qs()) / self.descriptor_bytes()
    }
}

/// IQH_REG / IQT_REG: queue head or tail as a byte offset into the queue (§1.10).
///
/// The offset sits in bits 18:4; for 256-bit descriptors bit 4 must be zero.
#[bitfield(u64)]
#[derive(PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct QueueIndex {
    #[bits(4)]
    __: u8,
    /// QH/QT: offset bits 18:4, in 16-byte units.
    #[bits(15)]
    pub qh: u16,
    #[bits(45)]
    __: u64,
}

impl QueueIndex {
    /// The offset in bytes from the queue base.
    pub const fn byte_offset(&self) -> u64 {
        (self.qh() as u64) << 4
    }

    /// Build from a byte offset (bits outside 18:4 dropped).
    pub const fn from_byte_offset(offset: u64) -> Self {
        Self::new().with_qh(((offset >> 4) & 0x7FFF) as u16)
    }
}

/// ICS_REG (offset 0x09C): invalidation completion status (§1.10).
#[bitfield(u32)]
#[derive(PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct Ics {
    /// IWC: invalidation wait descriptor complete (write 1 to clear).
    pub iwc: bool,
    #[bits(31)]
    __: u32,
}

/// Invalidation queue error information codes of IQERCD.IQEI (§1.10).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Iqei {
    /// 0: no information.
    NoInfo,
    /// 1: tail pointer beyond the queue.
    InvalidTail,
    /// 2: error fetching a descriptor.
    FetchError,
    /// 3: invalid descriptor type.
    InvalidType,
    /// 4: reserved field set in a descriptor.
    ReservedField,
    /// 5: descriptor too wide for the queue (256-bit type in a 128-bit queue).
    InvalidWidth,
    /// 6: tail misaligned for 256-bit descriptors.
    TailMisaligned,
    /// 7: descriptor not allowed in the current translation-table mode.
    InvalidTtm,
    /// 8–15: reserved.
    Reserved(u8),
}

impl Iqei {
    /// Decode from the four-bit field.
    pub const fn from_bits(bits: u8) -> Self {
        match bits & 0xF {
            0 => Self::NoInfo,
            1 => Self::InvalidTail,
            2 => Self::FetchError,
            3 => Self::InvalidType,
            4 => Self::ReservedField,
            5 => Self::InvalidWidth,
            6 => Self::TailMisaligned,
            7 => Self::InvalidTtm,
            other => Self::Reserved(other),
        }
    }

    /// Encode to the four-bit field.
    pub const fn into_bits(self) -> u8 {
        match self {
            Self::NoInfo => 0,
            Self::InvalidTail => 1,
            Self::FetchError => 2,
            Self::InvalidType => 3,
            Self::ReservedField => 4,
            Self::InvalidWidth => 5,
            Self::TailMisaligned => 6,
            Self::InvalidTtm => 7,
            Self::Reserved(other) => other & 0xF,
        }
    }
}

/// IQERCD_REG (offset 0x0B0): invalidation queue error record (§1.10).
#[bitfield(u64)]
#[derive(PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct Iqercd {
    /// IQEI: why the queue stopped with IQE.
    #[bits(4)]
    pub iqei: Iqei,
    #[bits(28)]
    __: u32,
    /// ITESID: source id of the device whose device-TLB invalidation timed out.
    pub itesid: u16,
    /// ICESID: source id of the device that returned an invalidation completion error.
    pub icesid: u16,
}
