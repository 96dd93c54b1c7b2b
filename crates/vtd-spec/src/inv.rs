//! Queued-invalidation descriptors (§8.2, §8.3).
//!
//! A descriptor is 128 bits; in a 256-bit queue (IQA.DW=1) every descriptor occupies 256
//! bits and the upper 128 bits are reserved for the types defined here. The type code is
//! bits 3:0 with bits 11:9 as its high part. Types 6, 7 and 8 exist only in 256-bit queues.

use bitfield_struct::bitfield;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::mask128;
use crate::regs::{CcmdGranularity, IotlbGranularity};

/// The type code of a descriptor's low 128 bits: bits 3:0 | (bits 11:9 << 4).
pub const fn desc_type(lo: u128) -> u8 {
    ((lo & 0xF) as u8) | ((((lo >> 9) & 7) as u8) << 4)
}

/// Descriptor type codes (§8.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DescType {
    /// 0x1: context-cache invalidate.
    ContextCache,
    /// 0x2: IOTLB invalidate.
    Iotlb,
    /// 0x3: device-TLB invalidate.
    DevTlb,
    /// 0x4: interrupt-entry-cache invalidate.
    Iec,
    /// 0x5: invalidation wait.
    Wait,
    /// 0x6: PASID-based IOTLB invalidate (256-bit queues only).
    PasidIotlb,
    /// 0x7: PASID-cache invalidate (256-bit queues only).
    PasidCache,
    /// 0x8: PASID-based device-TLB invalidate (256-bit queues only).
    PasidDevTlb,
    /// 0x9: page group response (page requests; not an invalidation).
    PageGroupResponse,
    /// 0xA: page stream response (page requests; not an invalidation).
    PageStreamResponse,
    /// Any other code.
    Unknown(u8),
}

impl DescType {
    /// Decode a type code.
    pub const fn from_code(code: u8) -> Self {
        match code {
            1 => Self::ContextCache,
            2 => Self::Iotlb,
            3 => Self::DevTlb,
            4 => Self::Iec,
            5 => Self::Wait,
            6 => Self::PasidIotlb,
            7 => Self::PasidCache,
            8 => Self::PasidDevTlb,
            9 => Self::PageGroupResponse,
            0xA => Self::PageStreamResponse,
            other => Self::Unknown(other),
        }
    }

    /// The type code.
    pub const fn code(self) -> u8 {
        match self {
            Self::ContextCache => 1,
            Self::Iotlb => 2,
            Self::DevTlb => 3,
            Self::Iec => 4,
            Self::Wait => 5,
            Self::PasidIotlb => 6,
            Self::PasidCache => 7,
            Self::PasidDevTlb => 8,
            Self::PageGroupResponse => 9,
            Self::PageStreamResponse => 0xA,
            Self::Unknown(code) => code,
        }
    }

    /// True for the types that need a 256-bit queue (6, 7, 8).
    pub const fn needs_256bit(self) -> bool {
        matches!(
            self,
            Self::PasidIotlb | Self::PasidCache | Self::PasidDevTlb
        )
    }

    /// Name as the specification and Linux use it.
    pub const fn name(self) -> &'static str {
        match self {
            Self::ContextCache => "context-cache invalidate",
            Self::Iotlb => "IOTLB invalidate",
            Self::DevTlb => "device-TLB invalidate",
            Self::Iec => "interrupt-entry-cache invalidate",
            Self::Wait => "invalidation wait",
            Self::PasidIotlb => "PASID-based IOTLB invalidate",
            Self::PasidCache => "PASID-cache invalidate",
            Self::PasidDevTlb => "PASID-based device-TLB invalidate",
            Self::PageGroupResponse => "page group response",
            Self::PageStreamResponse => "page stream response",
            Self::Unknown(_) => "unknown descriptor",
        }
    }
}

/// Granularity of the PASID-based IOTLB descriptor (type 6, bits 5:4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PasidIotlbGranularity {
    /// 00b: reserved in the current specification.
    Reserved0,
    /// 01b: reserved in the current specification.
    Reserved1,
    /// 10b: PASID-selective, every mapping of the PASID within the domain.
    Pasid,
    /// 11b: page-selective within the PASID.
    Page,
}

impl PasidIotlbGranularity {
    /// Decode from the two-bit field.
    pub const fn from_bits(bits: u8) -> Self {
        match bits & 3 {
            0 => Self::Reserved0,
            1 => Self::Reserved1,
            2 => Self::Pasid,
            _ => Self::Page,
        }
    }

    /// Encode to the two-bit field.
    pub const fn into_bits(self) -> u8 {
        self as u8
    }
}

/// Granularity of the PASID-cache descriptor (type 7, bits 5:4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PasidCacheGranularity {
    /// 00b: domain-selective, every PASID entry cached with the DID.
    Domain,
    /// 01b: PASID-selective within the domain.
    Pasid,
    /// 10b: reserved.
    Reserved,
    /// 11b: global.
    Global,
}

impl PasidCacheGranularity {
    /// Decode from the two-bit field.
    pub const fn from_bits(bits: u8) -> Self {
        match bits & 3 {
            0 => Self::Domain,
            1 => Self::Pasid,
            2 => Self::Reserved,
            _ => Self::Global,
        }
    }

    /// Encode to the two-bit field.
    pub const fn into_bits(self) -> u8 {
        self as u8
    }
}

/// Type 0x1: context-cache invalidate (§8.3).
#[bitfield(u128)]
#[derive(PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct ContextCacheInvDesc {
    /// Type bits 3:0 (1).
    #[bits(4, default = 1)]
    pub type_lo: u8,
    /// G: granularity (01 global, 10 domain-selective, 11 device-selective).
    #[bits(2)]
    pub g: CcmdGranularity,
    #[bits(3)]
    __: u8,
    /// Type bits 6:4.
    #[bits(3)]
    pub type_hi: u8,
    #[bits(4)]
    __: u8,
    /// DID (ignored by hardware in scalable mode).
    pub did: u16,
    /// SID: source id for device-selective invalidation.
    pub sid: u16,
    /// FM: function mask applied to SID.
    #[bits(2)]
    pub fm: u8,
    #[bits(78)]
    __: u128,
}

impl ContextCacheInvDesc {
    /// Reserved bits (8:6, 15:12, 127:50).
    pub const RESERVED: u128 = mask128(6, 3) | mask128(12, 4) | mask128(50, 78);
}

/// Type 0x2: IOTLB invalidate (§8.3).
#[bitfield(u128)]
#[derive(PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct IotlbInvDesc {
    /// Type bits 3:0 (2).
    #[bits(4, default = 2)]
    pub type_lo: u8,
    /// G: granularity (01 global, 10 domain-selective, 11 page-selective within domain).
    #[bits(2)]
    pub g: IotlbGranularity,
    /// DW: drain writes.
    pub dw: bool,
    /// DR: drain reads.
    pub dr: bool,
    #[bits(1)]
    __: u8,
    /// Type bits 6:4.
    #[bits(3)]
    pub type_hi: u8,
    #[bits(4)]
    __: u8,
    /// DID: domain id.
    pub did: u16,
    #[bits(32)]
    __: u32,
    /// AM: address mask, 2^AM 4 KiB pages (at most CAP.MAMV).
    #[bits(6)]
    pub am: u8,
    /// IH: invalidation hint, only leaf entries changed.
    pub ih: bool,
    #[bits(5)]
    __: u8,
    /// ADDR: address bits 63:12.
    #[bits(52)]
    pub addr: u64,
}

impl IotlbInvDesc {
    /// Reserved bits (8, 15:12, 63:32, 75:71).
    pub const RESERVED: u128 = mask128(8, 1) | mask128(12, 4) | mask128(32, 32) | mask128(71, 5);

    /// The page address (ADDR shifted into place).
    pub const fn address(&self) -> u64 {
        self.addr() << 12
    }
}

/// Type 0x3: device-TLB invalidate (§8.3).
#[bitfield(u128)]
#[derive(PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct DevTlbInvDesc {
    /// Type bits 3:0 (3).
    #[bits(4, default = 3)]
    pub type_lo: u8,
    #[bits(5)]
    __: u8,
    /// Type bits 6:4.
    #[bits(3)]
    pub type_hi: u8,
    /// PFSID bits 3:0: physical-function source id of a VF.
    #[bits(4)]
    pub pfsid_lo: u8,
    /// MIP: maximum invalidations pending.
    #[bits(5)]
    pub mip: u8,
    #[bits(11)]
    __: u16,
    /// SID: source id of the endpoint.
    pub sid: u16,
    #[bits(4)]
    __: u8,
    /// PFSID bits 15:4.
    #[bits(12)]
    pub pfsid_hi: u16,
    /// S: size; 0 = one 4 KiB page, 1 = size encoded in ADDR's low one-bits.
    pub s: bool,
    #[bits(11)]
    __: u16,
    /// ADDR: address bits 63:12.
    #[bits(52)]
    pub addr: u64,
}

impl DevTlbInvDesc {
    /// Reserved bits (8:4, 31:21, 51:48, 75:65).
    pub const RESERVED: u128 = mask128(4, 5) | mask128(21, 11) | mask128(48, 4) | mask128(65, 11);
}

/// Type 0x4: interrupt-entry-cache invalidate (§8.3).
#[bitfield(u128)]
#[derive(PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct IecInvDesc {
    /// Type bits 3:0 (4).
    #[bits(4, default = 4)]
    pub type_lo: u8,
    /// G: 0 global, 1 index-selective.
    pub g: bool,
    #[bits(4)]
    __: u8,
    /// Type bits 6:4.
    #[bits(3)]
    pub type_hi: u8,
    #[bits(15)]
    __: u16,
    /// IM: index mask.
    #[bits(5)]
    pub im: u8,
    /// IIDX: interrupt index.
    pub iidx: u16,
    #[bits(80)]
    __: u128,
}

impl IecInvDesc {
    /// Reserved bits (8:5, 26:12, 127:48).
    pub const RESERVED: u128 = mask128(5, 4) | mask128(12, 15) | mask128(48, 80);
}

/// Type 0x5: invalidation wait (§8.3).
#[bitfield(u128)]
#[derive(PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct InvWaitDesc {
    /// Type bits 3:0 (5).
    #[bits(4, default = 5)]
    pub type_lo: u8,
    /// IF: interrupt flag, set ICS.IWC and raise the completion event.
    pub intr: bool,
    /// SW: status write of `status_data` to `status_addr`.
    pub sw: bool,
    /// FN: fence, later descriptors wait for all earlier ones.
    pub fence: bool,
    /// PD: page-request drain (needs ECAP.PDS).
    pub pd: bool,
    #[bits(1)]
    __: u8,
    /// Type bits 6:4.
    #[bits(3)]
    pub type_hi: u8,
    #[bits(20)]
    __: u32,
    /// Status data written when SW=1.
    pub status_data: u32,
    #[bits(2)]
    __: u8,
    /// Status address bits 63:2.
    #[bits(62)]
    pub status_addr: u64,
}

impl InvWaitDesc {
    /// Reserved bits (8, 31:12, 65:64).
    pub const RESERVED: u128 = mask128(8, 1) | mask128(12, 20) | mask128(64, 2);

    /// The status-write address (4-byte aligned).
    pub const fn status_address(&self) -> u64 {
        self.status_addr() << 2
    }
}

/// Type 0x6: PASID-based IOTLB invalidate (§8.3).
#[bitfield(u128)]
#[derive(PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct PasidIotlbInvDesc {
    /// Type bits 3:0 (6).
    #[bits(4, default = 6)]
    pub type_lo: u8,
    /// G: granularity (10 PASID-selective, 11 page-selective within PASID).
    #[bits(2)]
    pub g: PasidIotlbGranularity,
    #[bits(3)]
    __: u8,
    /// Type bits 6:4.
    #[bits(3)]
    pub type_hi: u8,
    #[bits(4)]
    __: u8,
    /// DID: domain id.
    pub did: u16,
    /// PASID.
    #[bits(20)]
    pub pasid: u32,
    #[bits(12)]
    __: u16,
    /// AM: address mask, 2^AM 4 KiB pages.
    #[bits(6)]
    pub am: u8,
    /// IH: invalidation hint, only leaf entries changed.
    pub ih: bool,
    #[bits(5)]
    __: u8,
    /// ADDR: first-stage input address bits 63:12.
    #[bits(52)]
    pub addr: u64,
}

impl PasidIotlbInvDesc {
    /// Reserved bits (8:6, 15:12, 63:52, 75:71).
    pub const RESERVED: u128 = mask128(6, 3) | mask128(12, 4) | mask128(52, 12) | mask128(71, 5);

    /// The page address (ADDR shifted into place).
    pub const fn address(&self) -> u64 {
        self.addr() << 12
    }
}

/// Type 0x7: PASID-cache invalidate (§8.3).
#[bitfield(u128)]
#[derive(PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct PasidCacheInvDesc {
    /// Type bits 3:0 (7).
    #[bits(4, default = 7)]
    pub type_lo: u8,
    /// G: granularity (00 domain, 01 PASID within domain, 11 global).
    #[bits(2)]
    pub g: PasidCacheGranularity,
    #[bits(3)]
    __: u8,
    /// Type bits 6:4.
    #[bits(3)]
    pub type_hi: u8,
    #[bits(4)]
    __: u8,
    /// DID: domain id.
    pub did: u16,
    /// PASID.
    #[bits(20)]
    pub pasid: u32,
    #[bits(76)]
    __: u128,
}

impl PasidCacheInvDesc {
    /// Reserved bits (8:6, 15:12, 127:52).
    pub const RESERVED: u128 = mask128(6, 3) | mask128(12, 4) | mask128(52, 76);
}

/// Type 0x8: PASID-based device-TLB invalidate (§8.3).
#[bitfield(u128)]
#[derive(PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct PasidDevTlbInvDesc {
    /// Type bits 3:0 (8).
    #[bits(4, default = 8)]
    pub type_lo: u8,
    /// MIP: maximum invalidations pending.
    #[bits(5)]
    pub mip: u8,
    /// Type bits 6:4.
    #[bits(3)]
    pub type_hi: u8,
    /// PFSID bits 3:0.
    #[bits(4)]
    pub pfsid_lo: u8,
    /// SID: source id of the endpoint.
    pub sid: u16,
    /// PASID.
    #[bits(20)]
    pub pasid: u32,
    /// PFSID bits 15:4.
    #[bits(12)]
    pub pfsid_hi: u16,
    /// G: global (all PASIDs of the SID, as QEMU reads it; meaning UNSURE since spec 3.0).
    pub g: bool,
    #[bits(10)]
    __: u16,
    /// S: size; 0 = one 4 KiB page, 1 = size encoded in ADDR's low one-bits.
    pub s: bool,
    /// ADDR: address bits 63:12.
    #[bits(52)]
    pub addr: u64,
}

impl PasidDevTlbInvDesc {
    /// Reserved bits (74:65).
    pub const RESERVED: u128 = mask128(65, 10);
}

/// The range a device-TLB descriptor covers (§8.3, type 3): returns (base, size in bytes),
/// with `size == 0` meaning "every address" (all address bits one with S=1).
///
/// With S=0 it is one 4 KiB page. With S=1 the number of trailing one-bits `t` of
/// ADDR\[63:12\] gives 2^(t+1) pages, aligned down to that size.
pub const fn devtlb_range(addr_field: u64, s: bool) -> (u64, u64) {
    if !s {
        return (addr_field << 12, 4096);
    }
    let ones = addr_field.trailing_ones();
    if ones >= 51 {
        return (0, 0);
    }
    let pages_shift = ones + 1;
    let base = (addr_field >> pages_shift) << (pages_shift + 12);
    (base, 1u64 << (pages_shift + 12))
}

/// One descriptor as it sits in a 256-bit queue slot (the low half alone in a 128-bit queue).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct RawDescriptor {
    /// Bits 127:0.
    pub lo: u128,
    /// Bits 255:128 (reserved for every type defined here; absent in 128-bit queues).
    pub hi: u128,
}

impl RawDescriptor {
    /// The descriptor's type.
    pub const fn desc_type(&self) -> DescType {
        DescType::from_code(desc_type(self.lo))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devtlb_size_follows_trailing_ones() {
        assert_eq!(devtlb_range(0x12345, false), (0x12345000, 4096));
        // bit 12 = 0 → 8 KiB
        assert_eq!(devtlb_range(0x12344, true), (0x12344000, 8192));
        // bits 13:12 = 01 → 16 KiB
        assert_eq!(devtlb_range(0x12345, true), (0x12344000, 16384));
        // all ones → everything
        assert_eq!(devtlb_range((1 << 52) - 1, true), (0, 0));
    }

    #[test]
    fn desc_type_joins_low_and_high_type_bits() {
        assert_eq!(desc_type(0x5), 5);
        assert_eq!(desc_type(0x3 | (1 << 9)), 0x13);
        assert_eq!(DescType::from_code(0x13), DescType::Unknown(0x13));
    }
}
