//! Helpers of the uAPI property tests (`tests/prop_uapi.rs`): user memory whose overruns
//! fault, and a little-endian byte builder for ioctl arguments.
//!
//! The simulated kernel really reads and writes the pointers it is given (through
//! process_vm_readv/writev). A property test that hands it arbitrary lengths must make
//! sure those lengths can never reach live memory of the test process, so every pointer
//! that is valid at all points into a [`Guarded`] mapping: the bytes a call is about sit
//! against a PROT_NONE page, and anything past them is EFAULT, not a write over the heap.
#![allow(dead_code)]

/// The CPU page size the mappings are made of.
pub const PAGE: usize = 4096;

/// `pages` pages of test-owned, zeroed memory followed by one inaccessible guard page.
pub struct Guarded {
    base: *mut u8,
    len: usize,
}

impl Guarded {
    pub fn new(pages: usize) -> Self {
        let len = pages * PAGE;
        // SAFETY: a fresh anonymous private mapping; no existing memory is affected.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len + PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(base, libc::MAP_FAILED, "mmap of a guarded buffer failed");
        let base = base.cast::<u8>();
        // SAFETY: the guard is the last page of the mapping just made, which nothing
        // else refers to.
        let rc = unsafe { libc::mprotect(base.add(len).cast(), PAGE, libc::PROT_NONE) };
        assert_eq!(rc, 0, "mprotect of the guard page failed");
        Self { base, len }
    }

    /// Usable bytes (the guard page not counted).
    pub fn len(&self) -> usize {
        self.len
    }

    /// The user address of byte `off` (`off == len()` is the guard page).
    pub fn addr(&self, off: usize) -> u64 {
        self.base as u64 + off as u64
    }

    /// The offset of user address `addr` if it is inside the usable bytes.
    pub fn offset_of(&self, addr: u64) -> Option<usize> {
        let off = addr.checked_sub(self.base as u64)?;
        (off < self.len as u64).then_some(off as usize)
    }

    /// Write `data` at `off`. The memory must be writable (see [`Guarded::set_readonly`]).
    pub fn write(&self, off: usize, data: &[u8]) {
        assert!(off + data.len() <= self.len, "write inside the buffer");
        // SAFETY: in bounds (checked) of a mapping this value owns; no Rust reference to
        // it exists, and the simulated kernel only touches it during our own calls.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.base.add(off), data.len()) }
    }

    /// Read `len` bytes at `off`.
    pub fn read(&self, off: usize, len: usize) -> Vec<u8> {
        assert!(off + len <= self.len, "read inside the buffer");
        let mut out = vec![0; len];
        // SAFETY: as in `write`, reading instead.
        unsafe { std::ptr::copy_nonoverlapping(self.base.add(off), out.as_mut_ptr(), len) }
        out
    }

    /// The first offset where the usable bytes differ from `expected` (as long), compared
    /// in place.
    pub fn first_difference(&self, expected: &[u8]) -> Option<usize> {
        assert_eq!(expected.len(), self.len, "compare the whole buffer");
        // SAFETY: a shared view of this value's own readable bytes, dropped before this
        // returns; nothing writes them meanwhile (the simulated kernel and devices only
        // touch them during calls this thread makes).
        let now = unsafe { std::slice::from_raw_parts(self.base, self.len) };
        if now == expected {
            return None;
        }
        now.iter().zip(expected).position(|(a, b)| a != b)
    }

    /// Place `data` against the guard page and return its address: reading or writing
    /// even one byte more faults.
    pub fn put_at_end(&self, data: &[u8]) -> u64 {
        let off = self.len - data.len();
        self.write(off, data);
        self.addr(off)
    }

    /// Make the usable bytes read-only (or writable again).
    pub fn set_readonly(&self, readonly: bool) {
        let prot = if readonly {
            libc::PROT_READ
        } else {
            libc::PROT_READ | libc::PROT_WRITE
        };
        // SAFETY: changes the protection of this value's own mapping only.
        let rc = unsafe { libc::mprotect(self.base.cast(), self.len, prot) };
        assert_eq!(rc, 0, "mprotect failed");
    }

    /// Like [`Guarded::put_at_end`] for a read-only buffer: the bytes are written while
    /// it is briefly writable, then it is read-only again.
    pub fn put_readonly(&self, data: &[u8]) -> u64 {
        self.set_readonly(false);
        let addr = self.put_at_end(data);
        self.set_readonly(true);
        addr
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        // SAFETY: unmapping the mapping made in `new`; the owners of these buffers drop
        // the iommufd (and with it every pin) first.
        unsafe { libc::munmap(self.base.cast(), self.len + PAGE) };
    }
}

/// A little-endian argument struct under construction, addressed by byte offset.
#[derive(Clone, Debug)]
pub struct Bytes(pub Vec<u8>);

impl Bytes {
    pub fn zeroed(len: usize) -> Self {
        Self(vec![0; len])
    }

    pub fn u8(&mut self, off: usize, v: u8) -> &mut Self {
        self.0[off] = v;
        self
    }

    pub fn u16(&mut self, off: usize, v: u16) -> &mut Self {
        self.0[off..off + 2].copy_from_slice(&v.to_le_bytes());
        self
    }

    pub fn u32(&mut self, off: usize, v: u32) -> &mut Self {
        self.0[off..off + 4].copy_from_slice(&v.to_le_bytes());
        self
    }

    pub fn u64(&mut self, off: usize, v: u64) -> &mut Self {
        self.0[off..off + 8].copy_from_slice(&v.to_le_bytes());
        self
    }

    pub fn get_u32(&self, off: usize) -> u32 {
        u32::from_le_bytes(self.0[off..off + 4].try_into().expect("4 bytes"))
    }

    pub fn get_u64(&self, off: usize) -> u64 {
        u64::from_le_bytes(self.0[off..off + 8].try_into().expect("8 bytes"))
    }
}
