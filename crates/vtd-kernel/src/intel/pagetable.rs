//! Second-stage page tables the driver builds for a paging domain, in kernel memory.
//!
//! Mappings use the largest page the hardware supports where address, output and the
//! remaining length allow, as intel_iommu_map does; since host physical is host virtual in
//! the simulation, a virtually contiguous user buffer is physically contiguous too.

use vtd_iommufd::Errno;
use vtd_model::mem::PhysMem;
use vtd_spec::addr::{PageSize, table_index};
use vtd_spec::second_stage::SsEntry;

use crate::driver::Prot;
use crate::hostmem::HostMem;

/// A second-stage page table.
pub(crate) struct SsPageTable {
    pub(crate) root: u64,
    pub(crate) levels: u8,
}

/// A map call that failed part-way; what it had mapped is unmapped again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MapError {
    pub(crate) errno: Errno,
    /// Bytes that had been mapped (and were taken back).
    pub(crate) mapped: u64,
}

/// What every leaf of one map call carries.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LeafAttrs {
    /// Read and write rights.
    pub(crate) prot: Prot,
    /// Set SNP (the domain forces snooping).
    pub(crate) snoop: bool,
}

/// Level whose entries each cover `1 << shift(level)` bytes.
fn shift(level: u8) -> u32 {
    12 + 9 * (level as u32 - 1)
}

fn present(value: u64) -> bool {
    SsEntry::from_bits(value).present()
}

fn is_leaf(value: u64, level: u8) -> bool {
    level == 1 || (level <= 3 && SsEntry::from_bits(value).ps())
}

impl SsPageTable {
    pub(crate) fn new(mem: &HostMem, levels: u8) -> Result<Self, Errno> {
        Ok(Self {
            root: mem.try_alloc_page()?,
            levels,
        })
    }

    /// Map `[iova, iova + len)` to `paddr` with leaves like `attrs`, using pages from
    /// `sizes` (largest first where alignment allows).
    ///
    /// A superpage goes where a lower-level table was left behind by earlier unmaps (unmap
    /// frees only tables it covers whole, as Linux does): the table is freed and the
    /// superpage's range returned, for the caller to flush with IH clear
    /// (switch_to_super_page). iommufd never maps over present leaves.
    pub(crate) fn map(
        &self,
        mem: &HostMem,
        iova: u64,
        paddr: u64,
        len: u64,
        attrs: LeafAttrs,
        sizes: &[PageSize],
    ) -> Result<Vec<(u64, u64)>, MapError> {
        let mut replaced = Vec::new();
        let mut off = 0;
        match self.map_leaves(mem, iova, paddr, len, attrs, sizes, &mut replaced, &mut off) {
            Ok(()) => Ok(replaced),
            Err(errno) => {
                // Take back what this call mapped, as iommu_map does on failure.
                self.unmap(mem, iova, off);
                Err(MapError { errno, mapped: off })
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn map_leaves(
        &self,
        mem: &HostMem,
        iova: u64,
        paddr: u64,
        len: u64,
        attrs: LeafAttrs,
        sizes: &[PageSize],
        replaced: &mut Vec<(u64, u64)>,
        off: &mut u64,
    ) -> Result<(), Errno> {
        let LeafAttrs { prot, snoop } = attrs;
        while *off < len {
            let (va, pa) = (iova + *off, paddr + *off);
            let size = sizes
                .iter()
                .rev()
                .copied()
                .find(|s| {
                    va % s.bytes() == 0
                        && pa % s.bytes() == 0
                        && len - *off >= s.bytes()
                        && self.leaf_slot_free(mem, va, *s)
                })
                .unwrap_or(PageSize::Size4K);
            let slot = self.slot_for(mem, va, size.level())?;
            let old = mem.read_u64(slot).map_err(|_| Errno::ENOMEM)?;
            if present(old) && !is_leaf(old, size.level()) {
                let _ = mem.write_u64(slot, 0);
                free_tree(mem, old & SsEntry::ADDR_MASK, size.level() - 1);
                replaced.push((va, va + size.bytes() - 1));
            }
            let mut leaf = SsEntry::leaf(
                pa,
                size,
                prot.contains(Prot::READ),
                prot.contains(Prot::WRITE),
            )
            .into_bits();
            if snoop {
                leaf |= SsEntry::SNP;
            }
            mem.write_u64(slot, leaf).map_err(|_| Errno::ENOMEM)?;
            *off += size.bytes();
        }
        Ok(())
    }

    /// True when a leaf of `size` can go at `va`: no leaf there or above it. A table at
    /// the leaf's own level is fine (it is replaced).
    fn leaf_slot_free(&self, mem: &HostMem, va: u64, size: PageSize) -> bool {
        let mut table = self.root;
        for level in (size.level()..=self.levels).rev() {
            let slot = table + 8 * table_index(va, level);
            let value = mem.read_u64(slot).unwrap_or(0);
            if !present(value) {
                return true;
            }
            if is_leaf(value, level) {
                return false;
            }
            if level == size.level() {
                return true;
            }
            table = value & SsEntry::ADDR_MASK;
        }
        true
    }

    /// The entry slot at `level` for `va`, creating tables above it.
    fn slot_for(&self, mem: &HostMem, va: u64, level: u8) -> Result<u64, Errno> {
        let mut table = self.root;
        for l in (level + 1..=self.levels).rev() {
            let slot = table + 8 * table_index(va, l);
            let value = mem.read_u64(slot).map_err(|_| Errno::ENOMEM)?;
            table = if present(value) {
                value & SsEntry::ADDR_MASK
            } else {
                let next = mem.try_alloc_page()?;
                mem.write_u64(slot, SsEntry::table(next, true, true).into_bits())
                    .map_err(|_| Errno::ENOMEM)?;
                next
            };
        }
        Ok(table + 8 * table_index(va, level))
    }

    /// Visit the leaves mapping `[iova, iova + len)`: `f(leaf iova, slot, value, size)`.
    pub(crate) fn for_each_leaf(
        &self,
        mem: &HostMem,
        iova: u64,
        len: u64,
        mut f: impl FnMut(u64, u64, u64, PageSize),
    ) {
        let end = iova.saturating_add(len);
        let mut va = iova;
        while va < end {
            match self.leaf_at(mem, va) {
                Some((slot, value, size)) => {
                    let base = size.align_down(va);
                    f(base, slot, value, size);
                    va = base + size.bytes();
                }
                None => va = (va | 0xFFF) + 1,
            }
        }
    }

    /// The leaf mapping `va`: (slot, value, size).
    pub(crate) fn leaf_at(&self, mem: &HostMem, va: u64) -> Option<(u64, u64, PageSize)> {
        let mut table = self.root;
        for level in (1..=self.levels).rev() {
            let slot = table + 8 * table_index(va, level);
            let value = mem.read_u64(slot).ok()?;
            if !present(value) {
                return None;
            }
            if is_leaf(value, level) {
                return Some((slot, value, PageSize::from_level(level)?));
            }
            table = value & SsEntry::ADDR_MASK;
        }
        None
    }

    /// Clear the leaves mapping `[iova, iova + len)` and free the tables whose whole span
    /// lies inside the range (dma_pte_clear_level: a table only partly covered stays, even
    /// when it is left empty). Returns the bytes unmapped and whether any table page was
    /// freed (so paging-structure caches must be invalidated too: IH clear).
    pub(crate) fn unmap(&self, mem: &HostMem, iova: u64, len: u64) -> (u64, bool) {
        let mut unmapped = 0;
        let mut leaves = Vec::new();
        self.for_each_leaf(mem, iova, len, |_, slot, _, size| leaves.push((slot, size)));
        for (slot, size) in leaves {
            let _ = mem.write_u64(slot, 0);
            unmapped += size.bytes();
        }
        let end = iova as u128 + len as u128;
        let freed = self.free_covered(mem, self.root, self.levels, iova as u128, end);
        (unmapped, freed)
    }

    /// Free every table under `table` (at `level`) whose span lies inside `[start, end)`;
    /// recurse into tables only partly inside. Returns whether any was freed.
    fn free_covered(&self, mem: &HostMem, table: u64, level: u8, start: u128, end: u128) -> bool {
        if level == 1 {
            return false;
        }
        let mut freed = false;
        let span = 1u128 << shift(level);
        // The part of the address space this table translates.
        let mut va = start;
        while va < end {
            let base = va & !(span - 1);
            let slot = table + 8 * table_index(va as u64, level);
            let value = mem.read_u64(slot).unwrap_or(0);
            if present(value) && !is_leaf(value, level) {
                let child = value & SsEntry::ADDR_MASK;
                if base >= start && base + span <= end {
                    let _ = mem.write_u64(slot, 0);
                    free_tree(mem, child, level - 1);
                    freed = true;
                } else {
                    freed |= self.free_covered(mem, child, level - 1, va, end.min(base + span));
                }
            }
            va = base + span;
            if table_index(va as u64, level) == 0 {
                // Past the last entry of this table.
                break;
            }
        }
        freed
    }

    /// Free every table page.
    pub(crate) fn destroy(&self, mem: &HostMem) {
        free_tree(mem, self.root, self.levels);
    }
}

fn free_tree(mem: &HostMem, table: u64, level: u8) {
    if level > 1 {
        for i in 0..512 {
            let value = mem.read_u64(table + 8 * i).unwrap_or(0);
            if present(value) && !is_leaf(value, level) {
                free_tree(mem, value & SsEntry::ADDR_MASK, level - 1);
            }
        }
    }
    mem.free_page(table);
}

#[cfg(test)]
mod tests {
    use super::*;

    const RW: Prot = Prot::READ.union(Prot::WRITE);
    const ALL: [PageSize; 3] = [PageSize::Size4K, PageSize::Size2M, PageSize::Size1G];

    #[test]
    fn aligned_range_uses_large_pages() {
        let mem = HostMem::new();
        let pt = SsPageTable::new(&mem, 4).unwrap();
        pt.map(
            &mem,
            0x4020_0000,
            0x8020_0000,
            2 << 20,
            LeafAttrs {
                prot: RW,
                snoop: false,
            },
            &ALL,
        )
        .unwrap();
        let (_, value, size) = pt.leaf_at(&mem, 0x4020_1234).unwrap();
        assert_eq!(size, PageSize::Size2M);
        assert_eq!(SsEntry::from_bits(value).frame_addr(size), 0x8020_0000);
    }

    #[test]
    fn misaligned_output_falls_back_to_4k_pages() {
        let mem = HostMem::new();
        let pt = SsPageTable::new(&mem, 4).unwrap();
        pt.map(
            &mem,
            0x4020_0000,
            0x8020_1000,
            2 << 20,
            LeafAttrs {
                prot: RW,
                snoop: false,
            },
            &ALL,
        )
        .unwrap();
        assert_eq!(pt.leaf_at(&mem, 0x4020_0000).unwrap().2, PageSize::Size4K);
    }

    #[test]
    fn unmap_keeps_a_table_it_covers_only_in_part() {
        let mem = HostMem::new();
        let pt = SsPageTable::new(&mem, 4).unwrap();
        let attrs = LeafAttrs {
            prot: RW,
            snoop: false,
        };
        pt.map(&mem, 0x1000, 0x5000, 0x2000, attrs, &ALL).unwrap();
        let before = mem.kernel_pages();
        let (unmapped, freed) = pt.unmap(&mem, 0x1000, 0x2000);
        assert_eq!(unmapped, 0x2000);
        assert!(!freed);
        assert!(pt.leaf_at(&mem, 0x1000).is_none());
        assert_eq!(mem.kernel_pages(), before);
    }

    #[test]
    fn a_superpage_replaces_a_leftover_table() {
        let mem = HostMem::new();
        let pt = SsPageTable::new(&mem, 4).unwrap();
        let attrs = LeafAttrs {
            prot: RW,
            snoop: false,
        };
        pt.map(&mem, 0x20_0000, 0x40_0000, 0x1000, attrs, &ALL)
            .unwrap();
        pt.unmap(&mem, 0x20_0000, 0x1000);
        let before = mem.kernel_pages();
        let replaced = pt
            .map(&mem, 0x20_0000, 0x40_0000, 2 << 20, attrs, &ALL)
            .unwrap();
        assert_eq!(replaced, [(0x20_0000, 0x3F_FFFF)]);
        assert_eq!(pt.leaf_at(&mem, 0x20_0000).unwrap().2, PageSize::Size2M);
        assert_eq!(mem.kernel_pages(), before - 1);
    }

    #[test]
    fn unmap_frees_the_tables_it_covers_whole() {
        let mem = HostMem::new();
        let pt = SsPageTable::new(&mem, 4).unwrap();
        pt.map(
            &mem,
            0,
            0x5000,
            0x2000,
            LeafAttrs {
                prot: RW,
                snoop: false,
            },
            &ALL,
        )
        .unwrap();
        let before = mem.kernel_pages();
        let (unmapped, freed) = pt.unmap(&mem, 0, 2 << 20);
        assert_eq!(unmapped, 0x2000);
        assert!(freed);
        assert!(pt.leaf_at(&mem, 0x1000).is_none());
        assert_eq!(mem.kernel_pages(), before - 1);
    }
}
