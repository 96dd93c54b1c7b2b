//! Bit layouts and constants of Intel VT-d DMA remapping (scalable mode and legacy mode).
//!
//! This crate only encodes and decodes; it never decides what hardware does with a value
//! (that is `vtd-model`'s job). Every type names the section of the project's hardware
//! reference (`shared/spec/vtd-hardware.md`, written after the VT-d specification) it
//! follows, so a field can be checked against its table:
//!
//! | module | what | reference |
//! |---|---|---|
//! | [`regs`] | MMIO register map, CAP/ECAP, GCMD/GSTS, RTADDR, CCMD, fault and QI registers | §1 |
//! | [`root`] | legacy and scalable-mode root entries | §2.2, §2.3 |
//! | [`context`] | legacy and scalable-mode context entries | §2.2, §2.4 |
//! | [`pasid`] | PASID directory entry, 512-bit PASID table entry, PGTT | §3 |
//! | [`first_stage`] | first-stage (IA-32e) paging entries | §4 |
//! | [`second_stage`] | second-stage paging entries | §5 |
//! | [`inv`] | queued-invalidation descriptors (128- and 256-bit forms) | §8.3 |
//! | [`fault`] | fault reason codes, legacy and scalable mode | §7.1 |
//! | [`addr`] | page sizes, levels, address widths | §4.1, §5.1 |
//!
//! Multi-qword entries are little-endian arrays of 64-bit words with absolute bit numbers
//! (bit 64 is bit 0 of the second qword), as in the specification's tables. All entry
//! types derive `zerocopy` traits so they can be written to and read from memory as bytes.
#![no_std]
#![forbid(unsafe_code)]

pub mod addr;
pub mod context;
pub mod fault;
pub mod first_stage;
pub mod inv;
pub mod pasid;
pub mod regs;
pub mod root;
pub mod second_stage;

/// Mask of `bits` one-bits starting at bit `offset` of a 128-bit value.
///
/// Used to build the reserved-bit masks of entries and descriptors from the field
/// constants that `bitfield-struct` generates.
pub const fn mask128(offset: usize, bits: usize) -> u128 {
    if bits == 0 {
        0
    } else if bits >= 128 {
        u128::MAX
    } else {
        ((1u128 << bits) - 1) << offset
    }
}

/// Mask of `bits` one-bits starting at bit `offset` of a 64-bit value.
pub const fn mask64(offset: usize, bits: usize) -> u64 {
    mask128(offset, bits) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask128_covers_requested_bits() {
        assert_eq!(mask128(0, 0), 0);
        assert_eq!(mask128(4, 2), 0b11_0000);
        assert_eq!(mask128(0, 128), u128::MAX);
        assert_eq!(mask128(76, 52), u128::MAX << 76);
        assert_eq!(mask64(12, 52), 0xFFFF_FFFF_FFFF_F000);
    }
}
