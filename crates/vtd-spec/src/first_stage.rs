//! First-stage paging entries (IA-32e format, §4.2).
//!
//! The same 64-bit layout serves every level: PML5E, PML4E, PDPTE, PDE and PTE. Whether
//! an entry is a leaf depends on its level and PS bit: a PTE is always a leaf, a PDE or
//! PDPTE with PS=1 maps a 2 MiB or 1 GiB page, and PS must be zero in PML5E/PML4E.

use bitfield_struct::bitfield;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::addr::PageSize;
use crate::mask64;

/// A first-stage paging-structure entry (§4.2).
#[bitfield(u64)]
#[derive(PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct FsEntry {
    /// P: present.
    pub p: bool,
    /// R/W: writes allowed (for user requests, and supervisor requests with WPE=1).
    pub rw: bool,
    /// U/S: user-mode (non-privileged) requests allowed.
    pub us: bool,
    /// PWT: page-level write-through.
    pub pwt: bool,
    /// PCD: page-level cache disable.
    pub pcd: bool,
    /// A: accessed, set by hardware.
    pub a: bool,
    /// D: dirty (leaf only; ignored in non-leaf entries), set by hardware on write.
    pub d: bool,
    /// PS: page size in PDE/PDPTE (must be 0 in PML5E/PML4E); PAT in a PTE.
    pub ps: bool,
    /// G: global (leaf only; ignored by VT-d).
    pub g: bool,
    /// Ignored.
    pub ign9: bool,
    /// EA: extended accessed (only with PASID-entry EAFE=1; ignored otherwise).
    pub ea: bool,
    /// Ignored.
    pub ign11: bool,
    /// Address bits 51:12: next table (non-leaf) or page frame (leaf; large pages use
    /// only the upper bits, and bit 12 is PAT).
    #[bits(40)]
    pub addr: u64,
    /// Ignored bits 62:52.
    #[bits(11)]
    pub ign52: u16,
    /// XD: execute disable (deprecated with the removal of execute requests).
    pub xd: bool,
}

impl FsEntry {
    /// The A bit as a mask.
    pub const A: u64 = 1 << 5;
    /// The D bit as a mask.
    pub const D: u64 = 1 << 6;
    /// The EA bit as a mask.
    pub const EA: u64 = 1 << 10;
    /// Address field mask (bits 51:12).
    pub const ADDR_MASK: u64 = mask64(12, 40);

    /// Next-table physical address of a non-leaf entry (bits 51:12).
    pub const fn table_addr(&self) -> u64 {
        self.into_bits() & Self::ADDR_MASK
    }

    /// Page frame of a leaf mapping `size` (bits 51:shift).
    pub const fn frame_addr(&self, size: PageSize) -> u64 {
        self.into_bits() & Self::ADDR_MASK & !size.offset_mask()
    }

    /// Reserved bits of a large-page leaf beyond the frame (PAT at bit 12 excepted):
    /// bits 20:13 for 2 MiB, 29:13 for 1 GiB (§4.3).
    pub const fn large_leaf_reserved(size: PageSize) -> u64 {
        match size {
            PageSize::Size4K => 0,
            PageSize::Size2M => mask64(13, 8),
            PageSize::Size1G => mask64(13, 17),
        }
    }

    /// Address bits at or above `width` up to bit 51: reserved beyond the address width.
    pub const fn addr_bits_above(width: u32) -> u64 {
        if width >= 52 {
            0
        } else {
            mask64(width as usize, 52 - width as usize)
        }
    }

    /// A non-leaf entry pointing at `table`, present with the given rights.
    pub const fn table(table: u64, rw: bool, us: bool) -> Self {
        Self::from_bits(table & Self::ADDR_MASK)
            .with_p(true)
            .with_rw(rw)
            .with_us(us)
    }

    /// A leaf entry mapping `frame` of `size`, present with the given rights.
    pub const fn leaf(frame: u64, size: PageSize, rw: bool, us: bool) -> Self {
        let e = Self::from_bits(frame & Self::ADDR_MASK & !size.offset_mask())
            .with_p(true)
            .with_rw(rw)
            .with_us(us);
        match size {
            PageSize::Size4K => e,
            _ => e.with_ps(true),
        }
    }
}
