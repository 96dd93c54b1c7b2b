//! PASID directory and PASID table entries (§3).
//!
//! PASID bits 19:6 index the directory (8-byte entries); bits 5:0 index a 64-entry PASID
//! table (64-byte entries, one 4 KiB page). Both tables are addressed by host physical
//! address, even under nested translation (§2.4).

use bitfield_struct::bitfield;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::{mask64, mask128};

/// Size of a PASID directory entry in bytes.
pub const PASID_DIR_ENTRY_BYTES: u64 = 8;
/// Size of a PASID table entry in bytes.
pub const PASID_ENTRY_BYTES: u64 = 64;
/// PASID bits below this shift index the PASID table; the bits above index the directory.
pub const PASID_PDE_SHIFT: u32 = 6;
/// Entries in one PASID table.
pub const PASID_TABLE_ENTRIES: u32 = 1 << PASID_PDE_SHIFT;
/// Largest PASID value (20-bit PASIDs).
pub const PASID_MAX: u32 = (1 << 20) - 1;

/// Directory index of a PASID (bits 19:6).
pub const fn dir_index(pasid: u32) -> u32 {
    pasid >> PASID_PDE_SHIFT
}

/// Table index of a PASID (bits 5:0).
pub const fn table_index(pasid: u32) -> u32 {
    pasid & (PASID_TABLE_ENTRIES - 1)
}

/// Scalable-mode PASID directory entry (64 bits, §3.2).
#[bitfield(u64)]
#[derive(PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct PasidDirEntry {
    /// P: present.
    pub p: bool,
    /// FPD: fault processing disable (honoured even when P=0).
    pub fpd: bool,
    #[bits(10)]
    __: u16,
    /// SMPTBLPTR: PASID table pointer bits 63:12 (host physical).
    #[bits(52)]
    pub smptblptr: u64,
}

impl PasidDirEntry {
    /// Bits that must be zero whatever the host address width (11:2).
    pub const RESERVED: u64 = mask64(2, 10);

    /// PASID table physical address.
    pub const fn pasid_table(&self) -> u64 {
        self.smptblptr() << 12
    }
}

/// PASID granular translation type (PGTT, PASID-entry bits 8:6, §3.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Pgtt {
    /// 000b: reserved.
    Reserved0,
    /// 001b: first-stage translation only.
    FirstStage,
    /// 010b: second-stage translation only.
    SecondStage,
    /// 011b: nested translation (first stage over second stage).
    Nested,
    /// 100b: pass-through.
    PassThrough,
    /// 101b: reserved.
    Reserved5,
    /// 110b: reserved.
    Reserved6,
    /// 111b: reserved.
    Reserved7,
}

impl Pgtt {
    /// Decode from the three-bit field.
    pub const fn from_bits(bits: u8) -> Self {
        match bits & 7 {
            0 => Self::Reserved0,
            1 => Self::FirstStage,
            2 => Self::SecondStage,
            3 => Self::Nested,
            4 => Self::PassThrough,
            5 => Self::Reserved5,
            6 => Self::Reserved6,
            _ => Self::Reserved7,
        }
    }

    /// Encode to the three-bit field.
    pub const fn into_bits(self) -> u8 {
        self as u8
    }

    /// True for the four defined translation types.
    pub const fn is_defined(self) -> bool {
        matches!(
            self,
            Self::FirstStage | Self::SecondStage | Self::Nested | Self::PassThrough
        )
    }

    /// True when the translation walks the first stage (PGTT 001 or 011).
    pub const fn uses_first_stage(self) -> bool {
        matches!(self, Self::FirstStage | Self::Nested)
    }

    /// True when the translation walks the second stage (PGTT 010 or 011).
    pub const fn uses_second_stage(self) -> bool {
        matches!(self, Self::SecondStage | Self::Nested)
    }
}

/// First-stage paging mode (FSPM, PASID-entry bits 131:130, §3.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fspm {
    /// 00b: 4-level paging (48-bit input).
    Level4,
    /// 01b: 5-level paging (57-bit input, needs CAP.FS5LP).
    Level5,
    /// 10b: reserved.
    Reserved2,
    /// 11b: reserved.
    Reserved3,
}

impl Fspm {
    /// Decode from the two-bit field.
    pub const fn from_bits(bits: u8) -> Self {
        match bits & 3 {
            0 => Self::Level4,
            1 => Self::Level5,
            2 => Self::Reserved2,
            _ => Self::Reserved3,
        }
    }

    /// Encode to the two-bit field.
    pub const fn into_bits(self) -> u8 {
        self as u8
    }

    /// Number of first-stage levels, if the mode is defined.
    pub const fn levels(self) -> Option<u8> {
        match self {
            Self::Level4 => Some(4),
            Self::Level5 => Some(5),
            _ => None,
        }
    }
}

/// PASID table entry bits 127:0 (qwords 0–1, §3.3): second-stage and cache fields.
#[bitfield(u128)]
#[derive(PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct PasidEntryLo {
    /// P: present.
    pub p: bool,
    /// FPD: fault processing disable (meaningful even when P=0).
    pub fpd: bool,
    /// AW: second-stage address width (1 = 39-bit, 2 = 48-bit, 3 = 57-bit).
    #[bits(3)]
    pub aw: u8,
    /// SLEE/SSEE: second-stage execute enable.
    pub ssee: bool,
    /// PGTT: PASID granular translation type.
    #[bits(3)]
    pub pgtt: Pgtt,
    /// SLADE/SSADE: second-stage accessed/dirty enable.
    pub ssade: bool,
    #[bits(2)]
    __: u8,
    /// SLPTPTR/SSPTPTR: second-stage page-table pointer bits 63:12 (host physical).
    #[bits(52)]
    pub ssptptr: u64,
    /// DID: domain id tagging every cache entry filled through this PASID entry.
    pub did: u16,
    #[bits(7)]
    __: u8,
    /// PWSNP: page-walk snoop for paging structures reached through this entry.
    pub pwsnp: bool,
    /// PGSNP: page snoop, every page access through this entry is snooped.
    pub pgsnp: bool,
    /// CD: cache disable (memory typing, ECAP.MTS).
    pub cd: bool,
    /// EMTE: extended memory type enable (ECAP.MTS).
    pub emte: bool,
    /// EMT: extended memory type (ECAP.MTS).
    #[bits(3)]
    pub emt: u8,
    /// PWT: page-level write-through for the first-stage root table access (ECAP.MTS).
    pub pwt: bool,
    /// PCD: page-level cache disable for the first-stage root table access (ECAP.MTS).
    pub pcd: bool,
    /// PAT: eight 4-bit page attribute table entries (ECAP.MTS).
    pub pat: u32,
}

/// PASID table entry bits 255:128 (qwords 2–3, §3.3): first-stage fields.
#[bitfield(u128)]
#[derive(PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct PasidEntryHi {
    /// SRE: supervisor requests enable (bit 128).
    pub sre: bool,
    /// ERE: execute requests enable (bit 129).
    pub ere: bool,
    /// FLPM/FSPM: first-stage paging mode (bits 131:130).
    #[bits(2)]
    pub fspm: Fspm,
    /// WPE: write-protect enable for supervisor requests (bit 132).
    pub wpe: bool,
    /// NXE: no-execute enable (bit 133, deprecated).
    pub nxe: bool,
    /// SMEP: supervisor-mode execute protection (bit 134, deprecated).
    pub smep: bool,
    /// EAFE: extended-accessed flag enable (bit 135).
    pub eafe: bool,
    #[bits(4)]
    __: u8,
    /// FLPTPTR/FSPTPTR: first-stage page-table pointer bits 191:140 (HPA for PGTT=001,
    /// GPA for PGTT=011).
    #[bits(52)]
    pub fsptptr: u64,
    #[bits(64)]
    __: u64,
}

/// Scalable-mode PASID table entry (512 bits, §3.3). Bits 511:256 are reserved.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct PasidEntry {
    /// Bits 127:0.
    pub lo: PasidEntryLo,
    /// Bits 255:128.
    pub hi: PasidEntryHi,
    /// Bits 511:256 (reserved, must be zero).
    pub rsvd: [u128; 2],
}

impl PasidEntry {
    /// Reserved bits of the low half whatever the capabilities (11:10, 86:80).
    pub const RESERVED_LO: u128 = mask128(10, 2) | mask128(80, 7);
    /// Reserved bits of the high half whatever the capabilities (139:136, 255:192).
    pub const RESERVED_HI: u128 = mask128(8, 4) | mask128(64, 64);

    /// The entry as eight 64-bit words (`val[0..7]` in Linux's numbering).
    pub fn to_words(&self) -> [u64; 8] {
        let mut words = [0u64; 8];
        let halves = [
            self.lo.into_bits(),
            self.hi.into_bits(),
            self.rsvd[0],
            self.rsvd[1],
        ];
        for (i, half) in halves.iter().enumerate() {
            words[2 * i] = *half as u64;
            words[2 * i + 1] = (*half >> 64) as u64;
        }
        words
    }

    /// Build from eight 64-bit words.
    pub fn from_words(words: [u64; 8]) -> Self {
        let half = |i: usize| (words[2 * i] as u128) | ((words[2 * i + 1] as u128) << 64);
        Self {
            lo: PasidEntryLo::from_bits(half(0)),
            hi: PasidEntryHi::from_bits(half(1)),
            rsvd: [half(2), half(3)],
        }
    }

    /// Second-stage root table physical address.
    pub const fn ss_table(&self) -> u64 {
        self.lo.ssptptr() << 12
    }

    /// First-stage root table address (HPA for PGTT=001, GPA for PGTT=011).
    pub const fn fs_table(&self) -> u64 {
        self.hi.fsptptr() << 12
    }
}
