//! Root-table entries (§2.2, §2.3). The root table is one 4 KiB page of 256 entries of
//! 16 bytes, indexed by the bus number of the request's source id.

use bitfield_struct::bitfield;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::mask128;

/// Size of one root entry in bytes.
pub const ROOT_ENTRY_BYTES: u64 = 16;

/// Scalable-mode root entry (128 bits, §2.3): one context-table pointer for device
/// functions 0–127 (lower) and one for 128–255 (upper).
#[bitfield(u128)]
#[derive(PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct SmRootEntry {
    /// LP: lower context table present.
    pub lp: bool,
    #[bits(11)]
    __: u16,
    /// LCTP: lower context table pointer bits 63:12.
    #[bits(52)]
    pub lctp: u64,
    /// UP: upper context table present.
    pub up: bool,
    #[bits(11)]
    __: u16,
    /// UCTP: upper context table pointer bits 63:12.
    #[bits(52)]
    pub uctp: u64,
}

impl SmRootEntry {
    /// Bits that must be zero whatever the host address width (11:1 and 75:65).
    pub const RESERVED: u128 = mask128(1, 11) | mask128(65, 11);

    /// Presence and table address for device function `devfn`.
    pub const fn context_table(&self, devfn: u8) -> (bool, u64) {
        if devfn < 128 {
            (self.lp(), self.lctp() << 12)
        } else {
            (self.up(), self.uctp() << 12)
        }
    }
}

/// Legacy root entry (128 bits, §2.2).
#[bitfield(u128)]
#[derive(PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct LegacyRootEntry {
    /// P: context table present.
    pub p: bool,
    #[bits(11)]
    __: u16,
    /// CTP: context table pointer bits 63:12.
    #[bits(52)]
    pub ctp: u64,
    #[bits(64)]
    __: u64,
}

impl LegacyRootEntry {
    /// Bits that must be zero whatever the host address width (11:1 and 127:64).
    pub const RESERVED: u128 = mask128(1, 11) | mask128(64, 64);

    /// Context table physical address.
    pub const fn context_table(&self) -> u64 {
        self.ctp() << 12
    }
}
