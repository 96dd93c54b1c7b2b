//! The root table, scalable-mode context entries and PASID tables of one unit, in kernel
//! memory (Linux iommu.c context handling and pasid.c table management).

use std::collections::HashMap;

use vtd_model::mem::PhysMem;
use vtd_spec::context::{SM_CONTEXT_ENTRY_BYTES, SmContextEntry, SmContextEntryLo};
use vtd_spec::pasid::{PASID_DIR_ENTRY_BYTES, PASID_ENTRY_BYTES, PasidDirEntry, PasidEntry};
use vtd_spec::root::{ROOT_ENTRY_BYTES, SmRootEntry};

use crate::hostmem::HostMem;

/// A device's PASID directory and the PASID tables under it.
pub(crate) struct PasidDirectory {
    /// HPA of the directory.
    pub(crate) dir: u64,
    /// PDTS of the context entry: the directory has 2^(PDTS+7) entries.
    pub(crate) pdts: u8,
    /// PASID-table pages by directory index.
    tables: HashMap<u32, u64>,
}

/// Root, context and PASID tables of one unit.
pub(crate) struct Tables {
    pub(crate) root: u64,
    context_tables: HashMap<(u8, bool), u64>,
    pub(crate) dirs: HashMap<u16, PasidDirectory>,
}

impl Tables {
    pub(crate) fn new(mem: &HostMem) -> Self {
        Self {
            root: mem.alloc_page(),
            context_tables: HashMap::new(),
            dirs: HashMap::new(),
        }
    }

    /// HPA of the scalable-mode context entry of `sid`, creating its context table.
    fn context_entry_addr(&mut self, mem: &HostMem, sid: u16) -> u64 {
        let (bus, devfn) = ((sid >> 8) as u8, sid as u8);
        let upper = devfn >= 128;
        let table = *self.context_tables.entry((bus, upper)).or_insert_with(|| {
            let table = mem.alloc_page();
            let root_addr = self.root + bus as u64 * ROOT_ENTRY_BYTES;
            let root = SmRootEntry::from_bits(mem.read_u128(root_addr).unwrap_or(0));
            let root = if upper {
                root.with_up(true).with_uctp(table >> 12)
            } else {
                root.with_lp(true).with_lctp(table >> 12)
            };
            let _ = mem.write_u128(root_addr, root.into_bits());
            table
        });
        table + (devfn & 0x7F) as u64 * SM_CONTEXT_ENTRY_BYTES
    }

    /// Give `sid` a PASID directory for PASIDs below 2^`pasid_bits` (at least one table's
    /// worth) and a present context entry pointing at it.
    pub(crate) fn setup_context(
        &mut self,
        mem: &HostMem,
        sid: u16,
        pasid_bits: u32,
        paside: bool,
        dte: bool,
    ) {
        let entries = ((1u64 << pasid_bits.min(20)) / 64)
            .max(128)
            .next_power_of_two();
        let pdts = (entries.trailing_zeros() - 7) as u8;
        let pages = (entries * PASID_DIR_ENTRY_BYTES).div_ceil(4096) as usize;
        let dir = mem.alloc_pages(pages);
        self.dirs.insert(
            sid,
            PasidDirectory {
                dir,
                pdts,
                tables: HashMap::new(),
            },
        );
        let lo = SmContextEntryLo::new()
            .with_p(true)
            .with_pdts(pdts)
            .with_pasiddirptr(dir >> 12)
            .with_paside(paside)
            .with_dte(dte);
        let addr = self.context_entry_addr(mem, sid);
        let entry = SmContextEntry { lo, hi: 0 };
        let _ = mem.write_u128(addr + 16, entry.hi);
        let _ = mem.write_u128(addr, entry.lo.into_bits());
    }

    /// HPA of the PASID-table entry of (`sid`, `pasid`), creating the PASID table.
    /// `None` when the device has no directory or the PASID is beyond it.
    pub(crate) fn pasid_entry_addr(&mut self, mem: &HostMem, sid: u16, pasid: u32) -> Option<u64> {
        let dir = self.dirs.get_mut(&sid)?;
        let index = vtd_spec::pasid::dir_index(pasid);
        if index >= 1 << (dir.pdts as u32 + 7) {
            return None;
        }
        let dir_addr = dir.dir;
        let table = match dir.tables.get(&index) {
            Some(&table) => table,
            None => {
                // A failed allocation leaves no entry: the caller reports ENODEV.
                let table = mem.try_alloc_page().ok()?;
                let pde = PasidDirEntry::new()
                    .with_p(true)
                    .with_smptblptr(table >> 12);
                let _ = mem.write_u64(
                    dir_addr + index as u64 * PASID_DIR_ENTRY_BYTES,
                    pde.into_bits(),
                );
                dir.tables.insert(index, table);
                table
            }
        };
        Some(table + vtd_spec::pasid::table_index(pasid) as u64 * PASID_ENTRY_BYTES)
    }

    /// Read a PASID entry.
    pub(crate) fn read_pasid_entry(mem: &HostMem, addr: u64) -> PasidEntry {
        let mut words = [0u64; 8];
        for (i, w) in words.iter_mut().enumerate() {
            *w = mem.read_u64(addr + 8 * i as u64).unwrap_or(0);
        }
        PasidEntry::from_words(words)
    }

    /// Write a PASID entry with the first qword (P) last, as the driver must.
    pub(crate) fn write_pasid_entry(mem: &HostMem, addr: u64, entry: &PasidEntry) {
        let words = entry.to_words();
        for (i, w) in words.iter().enumerate().skip(1) {
            let _ = mem.write_u64(addr + 8 * i as u64, *w);
        }
        let _ = mem.write_u64(addr, words[0]);
    }

    /// Set or clear only the present bit of a PASID entry.
    pub(crate) fn set_pasid_present(mem: &HostMem, addr: u64, present: bool) {
        let w0 = mem.read_u64(addr).unwrap_or(0);
        let _ = mem.write_u64(addr, if present { w0 | 1 } else { w0 & !1 });
    }
}
