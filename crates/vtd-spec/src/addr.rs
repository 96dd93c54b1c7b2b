//! Page sizes, paging levels and address widths (§4.1, §5.1).

/// Base page shift: VT-d tables and pages are 4 KiB granular.
pub const PAGE_SHIFT: u32 = 12;
/// Base page size (4 KiB).
pub const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;
/// Entries per paging-structure table (512 × 8 bytes = one 4 KiB page).
pub const ENTRIES_PER_TABLE: u64 = 512;
/// Bits of input address consumed per paging level.
pub const BITS_PER_LEVEL: u32 = 9;

/// Base of the interrupt address range (`0xFEE0_0000`), §3.4 and §9.2 step 7.
pub const INTERRUPT_RANGE_BASE: u64 = 0xFEE0_0000;
/// Last byte of the interrupt address range (`0xFEEF_FFFF`).
pub const INTERRUPT_RANGE_LAST: u64 = 0xFEEF_FFFF;

/// True when `addr` lies in the interrupt address range `0xFEE0_0000..=0xFEEF_FFFF`.
pub const fn in_interrupt_range(addr: u64) -> bool {
    addr >= INTERRUPT_RANGE_BASE && addr <= INTERRUPT_RANGE_LAST
}

/// A translation page size: the size mapped by a leaf entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PageSize {
    /// 4 KiB, mapped by a level-1 entry (PTE).
    Size4K,
    /// 2 MiB, mapped by a level-2 entry (PDE with PS=1).
    Size2M,
    /// 1 GiB, mapped by a level-3 entry (PDPTE with PS=1).
    Size1G,
}

impl PageSize {
    /// Every page size, smallest first.
    pub const ALL: [PageSize; 3] = [PageSize::Size4K, PageSize::Size2M, PageSize::Size1G];

    /// log2 of the size in bytes (12, 21 or 30).
    pub const fn shift(self) -> u32 {
        match self {
            PageSize::Size4K => 12,
            PageSize::Size2M => 21,
            PageSize::Size1G => 30,
        }
    }

    /// Size in bytes.
    pub const fn bytes(self) -> u64 {
        1 << self.shift()
    }

    /// Mask of the offset bits within a page of this size.
    pub const fn offset_mask(self) -> u64 {
        self.bytes() - 1
    }

    /// Page-frame base of `addr` at this size.
    pub const fn align_down(self, addr: u64) -> u64 {
        addr & !self.offset_mask()
    }

    /// Paging level whose leaf maps this size (1, 2 or 3).
    pub const fn level(self) -> u8 {
        match self {
            PageSize::Size4K => 1,
            PageSize::Size2M => 2,
            PageSize::Size1G => 3,
        }
    }

    /// The page size mapped by a leaf at `level`, if that level can hold a leaf.
    pub const fn from_level(level: u8) -> Option<PageSize> {
        match level {
            1 => Some(PageSize::Size4K),
            2 => Some(PageSize::Size2M),
            3 => Some(PageSize::Size1G),
            _ => None,
        }
    }

    /// Human-readable name ("4K", "2M", "1G").
    pub const fn name(self) -> &'static str {
        match self {
            PageSize::Size4K => "4K",
            PageSize::Size2M => "2M",
            PageSize::Size1G => "1G",
        }
    }
}

/// Index into the table at `level` (1 = PTE … 5 = PML5E) for input address `addr`.
pub const fn table_index(addr: u64, level: u8) -> u64 {
    (addr >> (PAGE_SHIFT + BITS_PER_LEVEL * (level as u32 - 1))) & (ENTRIES_PER_TABLE - 1)
}

/// Adjusted guest address width for a second-stage AW encoding (§5.1): `30 + 9·aw`.
///
/// AW 1 → 39 bits (3 levels), 2 → 48 bits (4 levels), 3 → 57 bits (5 levels).
pub const fn agaw_width(aw: u8) -> u32 {
    30 + 9 * aw as u32
}

/// Number of second-stage levels for an AW encoding (§5.1): `aw + 2`.
pub const fn ss_levels(aw: u8) -> u8 {
    aw + 2
}

/// The SAGAW bit (CAP bits 12:8, relative) that advertises an AW encoding.
pub const fn sagaw_bit(aw: u8) -> u8 {
    1 << aw
}

/// True when `addr` is canonical for a first-stage walk of `levels` levels (§4.1):
/// bits 63:47 (4-level) or 63:56 (5-level) all equal.
pub const fn is_canonical(addr: u64, levels: u8) -> bool {
    let width = 12 + 9 * levels as u32; // 48 or 57
    let shift = 64 - width;
    (((addr << shift) as i64) >> shift) as u64 == addr
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_sizes_have_spec_shifts_and_levels() {
        assert_eq!(PageSize::Size4K.bytes(), 4096);
        assert_eq!(PageSize::Size2M.bytes(), 2 << 20);
        assert_eq!(PageSize::Size1G.bytes(), 1 << 30);
        for size in PageSize::ALL {
            assert_eq!(PageSize::from_level(size.level()), Some(size));
        }
        assert_eq!(PageSize::from_level(4), None);
    }

    #[test]
    fn table_index_uses_nine_bits_per_level() {
        let addr = (0x1A5 << 39) | (0x0F3 << 30) | (0x101 << 21) | (0x1FF << 12) | 0xABC;
        assert_eq!(table_index(addr, 4), 0x1A5);
        assert_eq!(table_index(addr, 3), 0x0F3);
        assert_eq!(table_index(addr, 2), 0x101);
        assert_eq!(table_index(addr, 1), 0x1FF);
        assert_eq!(table_index(0x3F << 48, 5), 0x3F);
    }

    #[test]
    fn agaw_matches_aw_encoding() {
        assert_eq!((agaw_width(1), ss_levels(1)), (39, 3));
        assert_eq!((agaw_width(2), ss_levels(2)), (48, 4));
        assert_eq!((agaw_width(3), ss_levels(3)), (57, 5));
    }

    #[test]
    fn canonical_check_follows_sign_extension() {
        assert!(is_canonical(0x0000_7FFF_FFFF_F000, 4));
        assert!(is_canonical(0xFFFF_8000_0000_0000, 4));
        assert!(!is_canonical(0x0000_8000_0000_0000, 4));
        assert!(is_canonical(0x0000_8000_0000_0000, 5));
        assert!(!is_canonical(0x0100_0000_0000_0000, 5));
        assert!(is_canonical(0xFF00_0000_0000_0000, 5));
    }

    #[test]
    fn interrupt_range_is_one_mebibyte_at_fee() {
        assert!(in_interrupt_range(0xFEE0_0000));
        assert!(in_interrupt_range(0xFEEF_FFFF));
        assert!(!in_interrupt_range(0xFEDF_FFFF));
        assert!(!in_interrupt_range(0xFEF0_0000));
    }
}
