use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

use super::words::{check_aligned, for_each_word_chunk, load_bytes, store_bytes};
use super::{MemError, PhysMem};

const PAGE: u64 = 4096;
const WORDS_PER_PAGE: usize = (PAGE / 8) as usize;

type Page = Box<[AtomicU64]>;

/// Deterministic sparse physical memory for tests: 4 KiB pages exist only where they were
/// backed with [`SparseMem::back`] or handed out by [`SparseMem::alloc_page`].
///
/// Everything else is unbacked, so a table pointer into nowhere gives a fault, as a
/// master abort would on hardware. Page allocation is a bump allocator, so the same test
/// builds the same physical layout on every run.
pub struct SparseMem {
    pages: RwLock<HashMap<u64, Page>>,
    next_alloc: AtomicU64,
}

impl Default for SparseMem {
    fn default() -> Self {
        Self::new()
    }
}

impl SparseMem {
    /// Empty memory; [`SparseMem::alloc_page`] starts handing out pages at 1 MiB.
    pub fn new() -> Self {
        Self::with_alloc_base(0x10_0000)
    }

    /// Empty memory whose page allocator starts at `base` (rounded up to 4 KiB).
    pub fn with_alloc_base(base: u64) -> Self {
        Self {
            pages: RwLock::new(HashMap::new()),
            next_alloc: AtomicU64::new(base.next_multiple_of(PAGE)),
        }
    }

    /// Back every 4 KiB page overlapping `[addr, addr + len)` with zeroed memory (pages that
    /// are already backed keep their contents).
    pub fn back(&self, addr: u64, len: u64) {
        if len == 0 {
            return;
        }
        let first = addr / PAGE;
        let last = addr.saturating_add(len - 1) / PAGE;
        let mut pages = self.pages.write().unwrap_or_else(|e| e.into_inner());
        for page in first..=last {
            pages.entry(page).or_insert_with(new_page);
        }
    }

    /// Remove the backing of every page overlapping `[addr, addr + len)`.
    pub fn unback(&self, addr: u64, len: u64) {
        if len == 0 {
            return;
        }
        let first = addr / PAGE;
        let last = addr.saturating_add(len - 1) / PAGE;
        let mut pages = self.pages.write().unwrap_or_else(|e| e.into_inner());
        pages.retain(|page, _| *page < first || *page > last);
    }

    /// Back and return the next free, zeroed 4 KiB page.
    pub fn alloc_page(&self) -> u64 {
        loop {
            let addr = self.next_alloc.fetch_add(PAGE, Ordering::Relaxed);
            if !self.is_backed(addr) {
                self.back(addr, PAGE);
                return addr;
            }
        }
    }

    /// True when the byte at `addr` is backed.
    pub fn is_backed(&self, addr: u64) -> bool {
        self.pages
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&(addr / PAGE))
    }

    /// Number of backed pages.
    pub fn backed_pages(&self) -> usize {
        self.pages.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    fn with_word<R>(&self, addr: u64, f: impl FnOnce(&AtomicU64) -> R) -> Result<R, MemError> {
        let pages = self.pages.read().unwrap_or_else(|e| e.into_inner());
        let page = pages
            .get(&(addr / PAGE))
            .ok_or(MemError::Unbacked { addr })?;
        Ok(f(&page[((addr % PAGE) / 8) as usize]))
    }
}

fn new_page() -> Page {
    (0..WORDS_PER_PAGE).map(|_| AtomicU64::new(0)).collect()
}

impl PhysMem for SparseMem {
    fn read_u64(&self, addr: u64) -> Result<u64, MemError> {
        check_aligned(addr, 8)?;
        self.with_word(addr, |w| w.load(Ordering::Acquire))
    }

    fn write_u64(&self, addr: u64, value: u64) -> Result<(), MemError> {
        check_aligned(addr, 8)?;
        self.with_word(addr, |w| w.store(value, Ordering::Release))
    }

    fn compare_exchange_u64(
        &self,
        addr: u64,
        current: u64,
        new: u64,
    ) -> Result<Result<u64, u64>, MemError> {
        check_aligned(addr, 8)?;
        self.with_word(addr, |w| {
            w.compare_exchange(current, new, Ordering::AcqRel, Ordering::Acquire)
        })
    }

    fn write_u32(&self, addr: u64, value: u32) -> Result<(), MemError> {
        check_aligned(addr, 4)?;
        self.with_word(addr & !7, |w| {
            store_bytes(w, (addr & 7) as usize, &value.to_le_bytes())
        })
    }

    fn read_bytes(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemError> {
        for_each_word_chunk(addr, buf.len(), |word, byte, range| {
            self.with_word(word, |w| load_bytes(w, byte, &mut buf[range]))
        })
    }

    fn write_bytes(&self, addr: u64, data: &[u8]) -> Result<(), MemError> {
        // Check the whole range first so a failing copy writes nothing.
        for_each_word_chunk(addr, data.len(), |word, _, _| self.with_word(word, |_| ()))?;
        for_each_word_chunk(addr, data.len(), |word, byte, range| {
            self.with_word(word, |w| store_bytes(w, byte, &data[range]))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unbacked_page_reads_fail() {
        let mem = SparseMem::new();
        assert_eq!(
            mem.read_u64(0x5000),
            Err(MemError::Unbacked { addr: 0x5000 })
        );
    }

    #[test]
    fn backed_pages_start_zeroed_and_keep_writes() {
        let mem = SparseMem::new();
        mem.back(0x5000, 0x2000);
        assert_eq!(mem.read_u64(0x6FF8).unwrap(), 0);
        mem.write_u64(0x5008, 0xDEAD).unwrap();
        mem.back(0x5000, 1);
        assert_eq!(mem.read_u64(0x5008).unwrap(), 0xDEAD);
    }

    #[test]
    fn allocator_is_deterministic_and_skips_backed_pages() {
        let a = SparseMem::with_alloc_base(0x2000);
        a.back(0x3000, 1);
        assert_eq!(a.alloc_page(), 0x2000);
        assert_eq!(a.alloc_page(), 0x4000);
    }

    #[test]
    fn status_write_touches_only_four_bytes() {
        let mem = SparseMem::new();
        mem.back(0, 4096);
        mem.write_u64(0, u64::MAX).unwrap();
        mem.write_u32(4, 0x1234_5678).unwrap();
        assert_eq!(mem.read_u64(0).unwrap(), 0x1234_5678_FFFF_FFFF);
    }

    #[test]
    fn unback_removes_pages() {
        let mem = SparseMem::new();
        mem.back(0, 0x3000);
        mem.unback(0x1000, 0x1000);
        assert!(mem.is_backed(0));
        assert!(!mem.is_backed(0x1000));
        assert!(mem.is_backed(0x2000));
    }
}
