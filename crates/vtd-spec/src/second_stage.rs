//! Second-stage paging entries (VT-d format, §5.2).
//!
//! Second-stage entries have no present bit: an entry is present when R, W (or X with
//! SSEE) is set. A leaf is a level-1 entry, or a level-2/3 entry with PS=1.

use bitfield_struct::bitfield;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::addr::PageSize;
use crate::mask64;

/// A second-stage paging-structure entry (§5.2).
#[bitfield(u64)]
#[derive(PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct SsEntry {
    /// R: read allowed.
    pub r: bool,
    /// W: write allowed.
    pub w: bool,
    /// X: execute allowed (honoured only with SSEE; obsolete with execute requests).
    pub x: bool,
    /// EMT: extended memory type (leaf; ECAP.MTS and EMTE). Position follows the
    /// EPT-like layout, an UNSURE point of the reference (§5.2).
    #[bits(3)]
    pub emt: u8,
    /// IPAT: ignore PAT (leaf; UNSURE position, §5.2).
    pub ipat: bool,
    /// PS: page size in SS-PDE/SS-PDPTE; reserved in SS-PML5E/PML4E; ignored in PTEs.
    pub ps: bool,
    /// A: accessed (set by hardware only with PASID-entry SSADE=1).
    pub a: bool,
    /// D: dirty (leaf; set by hardware on write only with SSADE=1).
    pub d: bool,
    /// Ignored.
    pub ign10: bool,
    /// SNP: snoop behaviour of the page access (leaf; needs ECAP.SC; reserved in non-leaf).
    pub snp: bool,
    /// Address bits 51:12: next table or page frame.
    #[bits(40)]
    pub addr: u64,
    /// Ignored bits 61:52.
    #[bits(10)]
    pub ign52: u16,
    /// TM: transient mapping (reserved since spec 3.2).
    pub tm: bool,
    /// Ignored.
    pub ign63: bool,
}

impl SsEntry {
    /// The A bit as a mask.
    pub const A: u64 = 1 << 8;
    /// The D bit as a mask.
    pub const D: u64 = 1 << 9;
    /// The SNP bit as a mask.
    pub const SNP: u64 = 1 << 11;
    /// The TM bit as a mask.
    pub const TM: u64 = 1 << 62;
    /// Address field mask (bits 51:12).
    pub const ADDR_MASK: u64 = mask64(12, 40);

    /// Present: R or W set (X only counts with SSEE, see [`SsEntry::present_with_x`]).
    pub const fn present(&self) -> bool {
        self.r() || self.w()
    }

    /// Present when execute permission is honoured (SSEE=1): R, W or X set.
    pub const fn present_with_x(&self) -> bool {
        self.r() || self.w() || self.x()
    }

    /// Next-table physical address of a non-leaf entry.
    pub const fn table_addr(&self) -> u64 {
        self.into_bits() & Self::ADDR_MASK
    }

    /// Page frame of a leaf mapping `size`.
    pub const fn frame_addr(&self, size: PageSize) -> u64 {
        self.into_bits() & Self::ADDR_MASK & !size.offset_mask()
    }

    /// Reserved bits of a large-page leaf beyond the frame: 20:12 for 2 MiB, 29:12 for 1 GiB.
    pub const fn large_leaf_reserved(size: PageSize) -> u64 {
        match size {
            PageSize::Size4K => 0,
            PageSize::Size2M => mask64(12, 9),
            PageSize::Size1G => mask64(12, 18),
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

    /// A non-leaf entry pointing at `table` with the given rights.
    pub const fn table(table: u64, r: bool, w: bool) -> Self {
        Self::from_bits(table & Self::ADDR_MASK).with_r(r).with_w(w)
    }

    /// A leaf entry mapping `frame` of `size` with the given rights.
    pub const fn leaf(frame: u64, size: PageSize, r: bool, w: bool) -> Self {
        let e = Self::from_bits(frame & Self::ADDR_MASK & !size.offset_mask())
            .with_r(r)
            .with_w(w);
        match size {
            PageSize::Size4K => e,
            _ => e.with_ps(true),
        }
    }
}
