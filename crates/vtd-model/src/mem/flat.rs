use std::sync::atomic::{AtomicU64, Ordering};

use super::words::{check_aligned, for_each_word_chunk, load_bytes, store_bytes};
use super::{MemError, PhysMem};

/// One contiguous backed range `[base, base + size)` of physical memory.
///
/// Lookups are a bounds check and an index, so it suits benchmarks and large tests;
/// every address outside the range is unbacked.
pub struct FlatMem {
    base: u64,
    words: Box<[AtomicU64]>,
    next_alloc: AtomicU64,
}

impl FlatMem {
    /// Back `size` bytes (rounded up to 8) at `base` (rounded down to 8), zero-filled.
    pub fn new(base: u64, size: u64) -> Self {
        let base = base & !7;
        let words = size.div_ceil(8) as usize;
        Self {
            base,
            words: (0..words).map(|_| AtomicU64::new(0)).collect(),
            next_alloc: AtomicU64::new(base.next_multiple_of(4096)),
        }
    }

    /// Hand out the next 4 KiB page of the range (never reused), bottom up. Past the end
    /// of the range the page is unbacked and every access to it fails.
    pub fn alloc_page(&self) -> u64 {
        self.next_alloc.fetch_add(4096, Ordering::Relaxed)
    }

    /// First backed address.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// Number of backed bytes.
    pub fn size(&self) -> u64 {
        self.words.len() as u64 * 8
    }

    #[inline]
    fn word(&self, addr: u64) -> Result<&AtomicU64, MemError> {
        let index = addr.checked_sub(self.base).map(|off| off / 8);
        index
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| self.words.get(i))
            .ok_or(MemError::Unbacked { addr })
    }
}

// The hot accessors are `#[inline]` so that a walker compiled in another crate (the
// walker is generic over its memory) can inline them.
impl PhysMem for FlatMem {
    #[inline]
    fn read_u64(&self, addr: u64) -> Result<u64, MemError> {
        check_aligned(addr, 8)?;
        Ok(self.word(addr)?.load(Ordering::Acquire))
    }

    fn write_u64(&self, addr: u64, value: u64) -> Result<(), MemError> {
        check_aligned(addr, 8)?;
        self.word(addr)?.store(value, Ordering::Release);
        Ok(())
    }

    #[inline]
    fn compare_exchange_u64(
        &self,
        addr: u64,
        current: u64,
        new: u64,
    ) -> Result<Result<u64, u64>, MemError> {
        check_aligned(addr, 8)?;
        Ok(self
            .word(addr)?
            .compare_exchange(current, new, Ordering::AcqRel, Ordering::Acquire))
    }

    fn write_u32(&self, addr: u64, value: u32) -> Result<(), MemError> {
        check_aligned(addr, 4)?;
        store_bytes(self.word(addr)?, (addr & 7) as usize, &value.to_le_bytes());
        Ok(())
    }

    fn read_bytes(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemError> {
        for_each_word_chunk(addr, buf.len(), |word, byte, range| {
            load_bytes(self.word(word)?, byte, &mut buf[range]);
            Ok(())
        })
    }

    fn write_bytes(&self, addr: u64, data: &[u8]) -> Result<(), MemError> {
        // Check the whole range first so a failing copy writes nothing.
        for_each_word_chunk(addr, data.len(), |word, _, _| self.word(word).map(|_| ()))?;
        for_each_word_chunk(addr, data.len(), |word, byte, range| {
            store_bytes(self.word(word)?, byte, &data[range]);
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_outside_range_is_unbacked() {
        let mem = FlatMem::new(0x1000, 0x1000);
        assert_eq!(
            mem.read_u64(0x2000),
            Err(MemError::Unbacked { addr: 0x2000 })
        );
        assert_eq!(
            mem.read_u64(0x0FF8),
            Err(MemError::Unbacked { addr: 0x0FF8 })
        );
        assert!(mem.read_u64(0x1FF8).is_ok());
    }

    #[test]
    fn misaligned_load_is_rejected() {
        let mem = FlatMem::new(0, 0x1000);
        assert_eq!(
            mem.read_u64(4),
            Err(MemError::Misaligned { addr: 4, size: 8 })
        );
        assert_eq!(
            mem.write_u32(2, 1),
            Err(MemError::Misaligned { addr: 2, size: 4 })
        );
    }

    #[test]
    fn byte_copies_cross_word_boundaries() {
        let mem = FlatMem::new(0, 64);
        mem.write_bytes(5, &[1, 2, 3, 4, 5, 6, 7]).unwrap();
        let mut out = [0u8; 9];
        mem.read_bytes(4, &mut out).unwrap();
        assert_eq!(out, [0, 1, 2, 3, 4, 5, 6, 7, 0]);
    }

    #[test]
    fn byte_copy_running_off_the_end_writes_nothing() {
        let mem = FlatMem::new(0, 16);
        assert_eq!(
            mem.write_bytes(12, &[0xAA; 8]),
            Err(MemError::Unbacked { addr: 16 })
        );
        assert_eq!(mem.read_u64(8).unwrap(), 0);
    }

    #[test]
    fn byte_copy_near_the_top_of_the_address_space_does_not_panic() {
        let mem = FlatMem::new(0, 16);
        let mut buf = [0u8; 16];
        assert!(mem.read_bytes(u64::MAX - 3, &mut buf).is_err());
    }

    #[test]
    fn compare_exchange_reports_actual_value_on_mismatch() {
        let mem = FlatMem::new(0, 8);
        mem.write_u64(0, 7).unwrap();
        assert_eq!(mem.compare_exchange_u64(0, 1, 2).unwrap(), Err(7));
        assert_eq!(mem.compare_exchange_u64(0, 7, 9).unwrap(), Ok(7));
        assert_eq!(mem.read_u64(0).unwrap(), 9);
    }
}
