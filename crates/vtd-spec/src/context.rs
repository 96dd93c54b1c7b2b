//! Context entries (§2.2, §2.4).
//!
//! A legacy context table holds 256 entries of 16 bytes indexed by devfn. A scalable-mode
//! context table is split in two halves of 128 entries of 32 bytes each, indexed by
//! `devfn & 0x7F`; the root entry says which half is which.

use bitfield_struct::bitfield;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::mask128;

/// Size of a legacy context entry in bytes.
pub const LEGACY_CONTEXT_ENTRY_BYTES: u64 = 16;
/// Size of a scalable-mode context entry in bytes.
pub const SM_CONTEXT_ENTRY_BYTES: u64 = 32;

/// Legacy context-entry translation type (TT, bits 3:2, §2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LegacyTt {
    /// 00b: untranslated requests through second stage; ATS blocked.
    SecondStage,
    /// 01b: as 00b, and device-TLB (ATS) requests allowed.
    SecondStageWithDevTlb,
    /// 10b: pass-through.
    PassThrough,
    /// 11b: reserved.
    Reserved,
}

impl LegacyTt {
    /// Decode from the two-bit field.
    pub const fn from_bits(bits: u8) -> Self {
        match bits & 3 {
            0 => Self::SecondStage,
            1 => Self::SecondStageWithDevTlb,
            2 => Self::PassThrough,
            _ => Self::Reserved,
        }
    }

    /// Encode to the two-bit field.
    pub const fn into_bits(self) -> u8 {
        self as u8
    }
}

/// Legacy context entry (128 bits, §2.2).
#[bitfield(u128)]
#[derive(PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct LegacyContextEntry {
    /// P: present.
    pub p: bool,
    /// FPD: fault processing disable.
    pub fpd: bool,
    /// TT: translation type.
    #[bits(2)]
    pub tt: LegacyTt,
    #[bits(8)]
    __: u8,
    /// SLPTPTR: second-stage page-table pointer bits 63:12.
    #[bits(52)]
    pub slptptr: u64,
    /// AW: address width (1 = 39-bit, 2 = 48-bit, 3 = 57-bit).
    #[bits(3)]
    pub aw: u8,
    /// Available to software, ignored by hardware.
    #[bits(4)]
    pub avail: u8,
    #[bits(1)]
    __: u8,
    /// DID: domain id.
    pub did: u16,
    #[bits(40)]
    __: u64,
}

impl LegacyContextEntry {
    /// Bits that must be zero whatever the host address width (11:4, 71, 127:88).
    pub const RESERVED: u128 = mask128(4, 8) | mask128(71, 1) | mask128(88, 40);

    /// Second-stage root table physical address.
    pub const fn ss_table(&self) -> u64 {
        self.slptptr() << 12
    }
}

/// Low 128 bits of a scalable-mode context entry (§2.4).
#[bitfield(u128)]
#[derive(PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct SmContextEntryLo {
    /// P: present.
    pub p: bool,
    /// FPD: fault processing disable for qualified faults.
    pub fpd: bool,
    /// DTE: device-TLB enable (ATS translation and translated requests allowed).
    pub dte: bool,
    /// PASIDE: requests-with-PASID allowed.
    pub paside: bool,
    /// PRE: page requests allowed.
    pub pre: bool,
    #[bits(4)]
    __: u8,
    /// PDTS: the PASID directory has 2^(PDTS+7) entries.
    #[bits(3)]
    pub pdts: u8,
    /// PASIDDIRPTR: PASID directory pointer bits 63:12 (host physical).
    #[bits(52)]
    pub pasiddirptr: u64,
    /// RID_PASID: PASID used for requests-without-PASID (honoured with ECAP.RPS).
    #[bits(20)]
    pub rid_pasid: u32,
    /// RID_PRIV: privilege assumed for requests-without-PASID (honoured with ECAP.RPRIVS).
    pub rid_priv: bool,
    #[bits(43)]
    __: u64,
}

/// Scalable-mode context entry (256 bits, §2.4). Bits 255:128 are reserved.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct SmContextEntry {
    /// Bits 127:0.
    pub lo: SmContextEntryLo,
    /// Bits 255:128 (reserved, must be zero).
    pub hi: u128,
}

impl SmContextEntry {
    /// Reserved bits of the low half whatever the host address width (8:5, 127:85).
    pub const RESERVED_LO: u128 = mask128(5, 4) | mask128(85, 43);

    /// PASID directory physical address.
    pub const fn pasid_dir(&self) -> u64 {
        self.lo.pasiddirptr() << 12
    }

    /// Number of PASID-directory entries, 2^(PDTS+7).
    pub const fn pasid_dir_entries(&self) -> u32 {
        1 << (self.lo.pdts() as u32 + 7)
    }
}
