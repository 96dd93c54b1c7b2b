use bitfield_struct::bitfield;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// AFLOG_REG (offset 0x058): advanced fault log pointer (§1.1).
#[bitfield(u64)]
#[derive(PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct Aflog {
    #[bits(9)]
    __: u16,
    /// FLS: fault log size, 2^FLS 4 KiB pages.
    #[bits(3)]
    pub fls: u8,
    /// FLA: fault log address bits 63:12.
    #[bits(52)]
    pub fla: u64,
}

/// PMEN_REG (offset 0x064): protected memory enable (§1.1).
#[bitfield(u32)]
#[derive(PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct Pmen {
    /// PRS: protected region status.
    pub prs: bool,
    #[bits(30)]
    __: u32,
    /// EPM: enable protected memory.
    pub epm: bool,
}
