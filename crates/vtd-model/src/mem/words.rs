//! Byte-granular and atomic access to memory stored as 64-bit atomic words.
//!
//! Both test memories keep their contents as `AtomicU64` so that concurrent walks,
//! compare-exchange A/D updates and byte copies are race-free without `unsafe`.

use std::sync::atomic::{AtomicU64, Ordering};

use super::MemError;

/// Check natural alignment of an access of `size` bytes.
#[inline]
pub(crate) fn check_aligned(addr: u64, size: u8) -> Result<(), MemError> {
    if addr.is_multiple_of(size as u64) {
        Ok(())
    } else {
        Err(MemError::Misaligned { addr, size })
    }
}

/// Store bytes `[byte, byte + data.len())` of `word`, leaving its other bytes alone.
pub(crate) fn store_bytes(word: &AtomicU64, byte: usize, data: &[u8]) {
    debug_assert!(byte + data.len() <= 8);
    let mut mask = 0u64;
    let mut bits = 0u64;
    for (i, b) in data.iter().enumerate() {
        let shift = 8 * (byte + i);
        mask |= 0xFF << shift;
        bits |= (*b as u64) << shift;
    }
    if mask == u64::MAX {
        word.store(bits, Ordering::Release);
        return;
    }
    let _ = word.fetch_update(Ordering::AcqRel, Ordering::Acquire, |old| {
        Some((old & !mask) | bits)
    });
}

/// Load bytes `[byte, byte + out.len())` of `word` into `out`.
pub(crate) fn load_bytes(word: &AtomicU64, byte: usize, out: &mut [u8]) {
    let value = word.load(Ordering::Acquire).to_le_bytes();
    out.copy_from_slice(&value[byte..byte + out.len()]);
}

/// Visit the words covering `[addr, addr + len)` as (word address, byte offset in word,
/// range within the caller's buffer).
pub(crate) fn for_each_word_chunk(
    addr: u64,
    len: usize,
    mut f: impl FnMut(u64, usize, std::ops::Range<usize>) -> Result<(), MemError>,
) -> Result<(), MemError> {
    // A range that wraps past the top of the address space can never be backed.
    if addr.checked_add(len as u64).is_none() {
        return Err(MemError::Unbacked { addr: u64::MAX });
    }
    let mut done = 0usize;
    while done < len {
        let cur = addr + done as u64;
        let word_addr = cur & !7;
        let byte = (cur - word_addr) as usize;
        let take = (8 - byte).min(len - done);
        f(word_addr, byte, done..done + take)?;
        done += take;
    }
    Ok(())
}
