//! Page-aligned anonymous memory for `IOMMU_IOAS_MAP`: its own mapping, so a device (the
//! real one or the simulation's) may read and write it while it is mapped.

use vtd_iommufd::Errno;

/// An anonymous, private, read-write mapping of whole pages, unmapped on drop.
#[derive(Debug)]
pub struct Buffer {
    ptr: *mut u8,
    len: usize,
}

impl Buffer {
    /// Map `len` bytes (rounded up to pages), zero-filled.
    pub fn new(len: usize) -> Result<Buffer, Errno> {
        let len = len.max(1).next_multiple_of(4096);
        // SAFETY: a fresh anonymous mapping; no existing memory is touched.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(Errno::last());
        }
        Ok(Buffer {
            ptr: ptr.cast(),
            len,
        })
    }

    /// The first byte.
    pub fn as_ptr(&self) -> *const u8 {
        self.ptr
    }

    /// The length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a buffer has at least one page.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Byte `i` (volatile: a device may have written it).
    pub fn get(&self, i: usize) -> u8 {
        assert!(i < self.len, "index {i} out of a {}-byte buffer", self.len);
        // SAFETY: `i` is inside the mapping, which lives as long as `self`.
        unsafe { self.ptr.add(i).read_volatile() }
    }

    /// Set byte `i` (volatile: a device may read it).
    pub fn set(&self, i: usize, value: u8) {
        assert!(i < self.len, "index {i} out of a {}-byte buffer", self.len);
        // SAFETY: `i` is inside the mapping, which lives as long as `self`; the mapping
        // is writable and never referenced as a Rust slice.
        unsafe { self.ptr.add(i).write_volatile(value) }
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        // SAFETY: exactly the mapping `new` made; nothing refers to it after the drop.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}
