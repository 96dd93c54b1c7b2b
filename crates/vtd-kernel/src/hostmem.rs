//! Host "physical" memory of the simulation: an HPA is a host virtual address of this
//! process (ARCHITECTURE §4).
//!
//! The hardware model may touch only two kinds of memory:
//! - pages the simulated kernel allocated (root, context and PASID tables, page tables,
//!   the invalidation queue), owned here as page-aligned atomics;
//! - user memory pinned by `IOMMU_IOAS_MAP`, registered for as long as it is mapped.
//!
//! Every other address is unbacked and gives the hardware a fault, never an access. Table
//! entries are read and updated atomically; DMA data moves with volatile byte accesses,
//! so user space sharing the memory (a VMM's guest RAM) sees what a device would.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use vtd_iommufd::Errno;

use vtd_model::mem::{MemError, PhysMem};

const PAGE: u64 = 4096;

/// One 4 KiB page of kernel memory; its address is its HPA.
#[repr(C, align(4096))]
struct Page([AtomicU64; 512]);

impl Page {
    fn zeroed_run(count: usize) -> Box<[Page]> {
        (0..count)
            .map(|_| Page(std::array::from_fn(|_| AtomicU64::new(0))))
            .collect()
    }

    fn word(&self, addr: u64) -> &AtomicU64 {
        &self.0[((addr % PAGE) / 8) as usize]
    }
}

#[derive(Default)]
struct State {
    /// Pinned user memory as disjoint segments: start → (end, pin count).
    pinned: BTreeMap<u64, (u64, u32)>,
    /// Kernel allocations (runs of contiguous pages) by base address.
    chunks: HashMap<u64, Box<[Page]>>,
    /// Every kernel page's address → the base of its allocation.
    kernel: HashMap<u64, u64>,
}

impl State {
    /// The kernel page at page address `page`, if allocated.
    fn kernel_page(&self, page: u64) -> Option<&Page> {
        let base = *self.kernel.get(&page)?;
        self.chunks.get(&base)?.get(((page - base) / PAGE) as usize)
    }

    /// The pinned segment covering all of `[addr, addr + len)`, if one does.
    fn pinned_covers(&self, addr: u64, len: u64) -> bool {
        let Some(end) = addr.checked_add(len) else {
            return false;
        };
        self.pinned
            .range(..=addr)
            .next_back()
            .is_some_and(|(_, &(seg_end, _))| end <= seg_end)
    }

    /// Split segments so that `at` is a segment boundary.
    fn split_at(&mut self, at: u64) {
        if let Some((&start, &(end, count))) = self.pinned.range(..at).next_back()
            && at < end
        {
            self.pinned.insert(start, (at, count));
            self.pinned.insert(at, (end, count));
        }
    }

    fn pin(&mut self, start: u64, end: u64) {
        self.split_at(start);
        self.split_at(end);
        // Raise the count of every existing segment inside, and fill the gaps with new ones.
        let mut at = start;
        let inside: Vec<(u64, u64)> = self
            .pinned
            .range(start..end)
            .map(|(&s, &(e, _))| (s, e))
            .collect();
        for (s, e) in inside {
            if at < s {
                self.pinned.insert(at, (s, 1));
            }
            if let Some(seg) = self.pinned.get_mut(&s) {
                seg.1 += 1;
            }
            at = e;
        }
        if at < end {
            self.pinned.insert(at, (end, 1));
        }
        self.merge_around(start, end);
    }

    fn unpin(&mut self, start: u64, end: u64) {
        self.split_at(start);
        self.split_at(end);
        let inside: Vec<u64> = self.pinned.range(start..end).map(|(&s, _)| s).collect();
        for s in inside {
            if let Some(seg) = self.pinned.get_mut(&s) {
                seg.1 = seg.1.saturating_sub(1);
                if seg.1 == 0 {
                    self.pinned.remove(&s);
                }
            }
        }
        self.merge_around(start, end);
    }

    /// Merge neighbouring segments with equal counts, keeping the map small.
    fn merge_around(&mut self, start: u64, end: u64) {
        let from = self
            .pinned
            .range(..start)
            .next_back()
            .map_or(start, |(&s, _)| s);
        let keys: Vec<u64> = self.pinned.range(from..=end).map(|(&s, _)| s).collect();
        for pair in keys.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            let (Some(&(a_end, a_count)), Some(&(b_end, b_count))) =
                (self.pinned.get(&a), self.pinned.get(&b))
            else {
                continue;
            };
            if a_end == b && a_count == b_count {
                self.pinned.remove(&b);
                self.pinned.insert(a, (b_end, a_count));
            }
        }
    }
}

/// Host memory as the simulated hardware sees it.
#[derive(Default)]
pub struct HostMem {
    state: RwLock<State>,
    fail: Mutex<FailNth>,
}

/// Fault injection, the simulation's analogue of Linux's per-task `fail-nth`: the n-th
/// kernel allocation point from arming on fails with ENOMEM, once.
#[derive(Default)]
struct FailNth {
    /// Allocation points left until the failing one (0: disarmed).
    remaining: u32,
    /// The armed failure happened.
    fired: bool,
}

impl HostMem {
    /// No memory at all until the kernel allocates pages or user space pins some.
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Arm fault injection: the `n`-th allocation point reached from now on fails with
    /// ENOMEM (`n` = 1: the next one); `0` disarms. Allocation points are the places where
    /// Linux allocates memory in these paths: iommufd objects, driver domains, page-table
    /// and PASID-table pages, IOVA areas and pages objects, domain slots of an IOAS.
    pub fn fail_nth(&self, n: u32) {
        let mut f = self.fail.lock().unwrap_or_else(|e| e.into_inner());
        *f = FailNth {
            remaining: n,
            fired: false,
        };
    }

    /// The failure armed by [`HostMem::fail_nth`] has happened.
    pub fn fail_nth_fired(&self) -> bool {
        self.fail.lock().unwrap_or_else(|e| e.into_inner()).fired
    }

    /// An allocation point: ENOMEM if this is the armed one.
    pub(crate) fn fail_point(&self) -> Result<(), Errno> {
        let mut f = self.fail.lock().unwrap_or_else(|e| e.into_inner());
        match f.remaining {
            0 => Ok(()),
            1 => {
                f.remaining = 0;
                f.fired = true;
                Err(Errno::ENOMEM)
            }
            _ => {
                f.remaining -= 1;
                Ok(())
            }
        }
    }

    /// A kernel page from an allocation that can fail (see [`HostMem::fail_nth`]).
    pub(crate) fn try_alloc_page(&self) -> Result<u64, Errno> {
        self.fail_point()?;
        Ok(self.alloc_page())
    }

    /// A zeroed, page-aligned kernel page; returns its HPA.
    pub fn alloc_page(&self) -> u64 {
        self.alloc_pages(1)
    }

    /// `count` zeroed, physically contiguous kernel pages; returns the HPA of the first.
    pub fn alloc_pages(&self, count: usize) -> u64 {
        let run = Page::zeroed_run(count.max(1));
        let base = run.as_ptr() as u64;
        let mut state = self.write();
        for i in 0..run.len() as u64 {
            state.kernel.insert(base + i * PAGE, base);
        }
        state.chunks.insert(base, run);
        base
    }

    /// Give back the allocation that starts at `base`. The hardware sees it unbacked from
    /// now on.
    pub fn free_pages(&self, base: u64) {
        let mut state = self.write();
        if let Some(run) = state.chunks.remove(&base) {
            for i in 0..run.len() as u64 {
                state.kernel.remove(&(base + i * PAGE));
            }
        }
    }

    /// Give back a page from [`HostMem::alloc_page`].
    pub fn free_page(&self, addr: u64) {
        self.free_pages(addr);
    }

    /// Number of kernel pages allocated.
    pub fn kernel_pages(&self) -> usize {
        self.read().kernel.len()
    }

    /// Register `[start, start + len)` of user memory as pinned (pins nest).
    pub fn pin(&self, start: u64, len: u64) {
        if let Some(end) = start.checked_add(len).filter(|_| len > 0) {
            self.write().pin(start, end);
        }
    }

    /// Drop one pin of `[start, start + len)`.
    pub fn unpin(&self, start: u64, len: u64) {
        if let Some(end) = start.checked_add(len).filter(|_| len > 0) {
            self.write().unpin(start, end);
        }
    }

    /// True when some page of `[start, start + len)` is kernel memory.
    pub fn overlaps_kernel(&self, start: u64, len: u64) -> bool {
        let state = self.read();
        let first = start & !(PAGE - 1);
        let end = start.saturating_add(len);
        // Fewer lookups when the range is large: check the allocations instead.
        if (end - first) / PAGE > state.kernel.len() as u64 {
            return state.kernel.keys().any(|&p| p < end && p + PAGE > start);
        }
        (first..end)
            .step_by(PAGE as usize)
            .any(|p| state.kernel.contains_key(&p))
    }

    /// True when every byte of `[addr, addr + len)` is pinned user memory.
    pub fn is_pinned(&self, addr: u64, len: u64) -> bool {
        self.read().pinned_covers(addr, len)
    }

    /// Run `f` on the atomic word at the 8-aligned `addr`, which must be kernel memory or
    /// pinned user memory.
    fn with_word<R>(&self, addr: u64, f: impl FnOnce(&AtomicU64) -> R) -> Result<R, MemError> {
        if !addr.is_multiple_of(8) {
            return Err(MemError::Misaligned { addr, size: 8 });
        }
        let state = self.read();
        if let Some(page) = state.kernel_page(addr & !(PAGE - 1)) {
            return Ok(f(page.word(addr)));
        }
        if state.pinned_covers(addr, 8) {
            // SAFETY: `addr` is 8-aligned and inside memory user space pinned with
            // IOMMU_IOAS_MAP, which it promised (the map call is unsafe) to keep mapped
            // until unmapped; unmapping unregisters it under the write lock, which cannot
            // happen while we hold the read lock. An AtomicU64 has the layout of a u64.
            let word = unsafe { &*(addr as *const AtomicU64) };
            return Ok(f(word));
        }
        Err(MemError::Unbacked { addr })
    }

    /// Copy between `[addr, addr + len)` of host memory and a buffer, page by page.
    fn copy(
        &self,
        addr: u64,
        len: usize,
        mut step: impl FnMut(*mut u8, usize, usize),
    ) -> Result<(), MemError> {
        let end = addr
            .checked_add(len as u64)
            .ok_or(MemError::Unbacked { addr })?;
        let state = self.read();
        // Check the whole range first, so a failing copy moves nothing.
        let mut at = addr;
        while at < end {
            let page_end = (at | (PAGE - 1)).saturating_add(1).min(end);
            let kernel = state.kernel.contains_key(&(at & !(PAGE - 1)));
            if !kernel && !state.pinned_covers(at, page_end - at) {
                return Err(MemError::Unbacked { addr: at });
            }
            at = page_end;
        }
        let mut done = 0usize;
        while done < len {
            let at = addr + done as u64;
            let chunk = ((PAGE - at % PAGE) as usize).min(len - done);
            step(at as *mut u8, done, chunk);
            done += chunk;
        }
        drop(state);
        Ok(())
    }
}

impl PhysMem for HostMem {
    fn read_u64(&self, addr: u64) -> Result<u64, MemError> {
        self.with_word(addr, |w| w.load(Ordering::Acquire))
    }

    fn write_u64(&self, addr: u64, value: u64) -> Result<(), MemError> {
        self.with_word(addr, |w| w.store(value, Ordering::Release))
    }

    fn compare_exchange_u64(
        &self,
        addr: u64,
        current: u64,
        new: u64,
    ) -> Result<Result<u64, u64>, MemError> {
        self.with_word(addr, |w| {
            w.compare_exchange(current, new, Ordering::AcqRel, Ordering::Acquire)
        })
    }

    fn write_u32(&self, addr: u64, value: u32) -> Result<(), MemError> {
        if !addr.is_multiple_of(4) {
            return Err(MemError::Misaligned { addr, size: 4 });
        }
        let shift = (addr % 8) * 8;
        let mask = 0xFFFF_FFFFu64 << shift;
        self.with_word(addr & !7, |w| {
            let _ = w.fetch_update(Ordering::AcqRel, Ordering::Acquire, |old| {
                Some((old & !mask) | (value as u64) << shift)
            });
        })
    }

    fn read_bytes(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let len = buf.len();
        self.copy(addr, len, |src, at, n| {
            for i in 0..n {
                // SAFETY: `copy` checked that every byte of the range is kernel memory or
                // pinned user memory and holds the read lock, so the memory stays valid;
                // volatile reads because user space may write it concurrently, as a
                // device and a CPU share memory.
                buf[at + i] = unsafe { std::ptr::read_volatile(src.add(i)) };
            }
        })
    }

    fn write_bytes(&self, addr: u64, data: &[u8]) -> Result<(), MemError> {
        self.copy(addr, data.len(), |dst, at, n| {
            for i in 0..n {
                // SAFETY: as in `read_bytes`; volatile writes because user space may read
                // the memory concurrently.
                unsafe { std::ptr::write_volatile(dst.add(i), data[at + i]) };
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_page_is_aligned_zeroed_and_backed() {
        let mem = HostMem::new();
        let page = mem.alloc_page();
        assert_eq!(page % 4096, 0);
        assert_eq!(mem.read_u64(page + 8), Ok(0));
        mem.write_u64(page + 8, 7).unwrap();
        assert_eq!(mem.read_u64(page + 8), Ok(7));
        mem.free_page(page);
        assert_eq!(
            mem.read_u64(page + 8),
            Err(MemError::Unbacked { addr: page + 8 })
        );
    }

    #[test]
    fn contiguous_kernel_pages_are_one_backed_range() {
        let mem = HostMem::new();
        let base = mem.alloc_pages(3);
        mem.write_u64(base + 2 * 4096 + 8, 9).unwrap();
        assert_eq!(mem.read_u64(base + 2 * 4096 + 8), Ok(9));
        assert_eq!(mem.kernel_pages(), 3);
        mem.free_pages(base);
        assert_eq!(mem.kernel_pages(), 0);
        assert!(mem.read_u64(base + 4096).is_err());
    }

    #[test]
    fn pinned_user_memory_is_visible_until_unpinned() {
        let mem = HostMem::new();
        let buf = vec![0u64; 1024];
        let addr = buf.as_ptr() as u64;
        assert!(mem.read_u64(addr).is_err());
        mem.pin(addr, 8192);
        mem.write_u64(addr + 16, 0xABCD).unwrap();
        assert_eq!(buf[2], 0xABCD);
        mem.unpin(addr, 8192);
        assert!(mem.read_u64(addr).is_err());
    }

    #[test]
    fn nested_pins_need_every_unpin() {
        let mem = HostMem::new();
        let buf = vec![0u8; 4 * 4096];
        let a = buf.as_ptr() as u64;
        mem.pin(a, 3 * 4096);
        mem.pin(a + 4096, 3 * 4096);
        mem.unpin(a, 3 * 4096);
        assert!(!mem.is_pinned(a, 1));
        assert!(mem.is_pinned(a + 4096, 3 * 4096));
        mem.unpin(a + 4096, 3 * 4096);
        assert!(!mem.is_pinned(a + 4096, 1));
    }

    #[test]
    fn byte_copy_stops_at_unpinned_memory_without_writing() {
        let mem = HostMem::new();
        let buf = vec![0u8; 2 * 4096];
        let a = buf.as_ptr() as u64;
        mem.pin(a, 4096);
        assert!(mem.write_bytes(a + 4000, &[1; 200]).is_err());
        assert_eq!(buf[4000], 0);
        mem.write_bytes(a + 10, &[5; 4]).unwrap();
        assert_eq!(&buf[10..14], &[5; 4]);
    }
}
