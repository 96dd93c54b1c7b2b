//! Access to "user" memory: the calling process's own address space.
//!
//! A real kernel copies from user pointers with fault handling and returns EFAULT for a
//! bad pointer. The simulation does the same with `process_vm_readv`/`process_vm_writev`
//! on its own pid: the kernel walks the page tables and reports EFAULT instead of this
//! process taking a segfault, whatever pointer user space passed.

use vtd_iommufd::Errno;

/// Copy `buf.len()` bytes from user address `addr`; EFAULT if any byte is not readable.
pub(crate) fn copy_from_user(addr: u64, buf: &mut [u8]) -> Result<(), Errno> {
    if buf.is_empty() {
        return Ok(());
    }
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: `local` describes `buf`, which we own mutably for the call; the kernel
    // validates `remote` and fails with EFAULT instead of touching an invalid address.
    let n = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
    if n == buf.len() as isize {
        Ok(())
    } else {
        Err(Errno::EFAULT)
    }
}

/// Copy `data` to user address `addr`; EFAULT if any byte is not writable.
pub(crate) fn copy_to_user(addr: u64, data: &[u8]) -> Result<(), Errno> {
    if data.is_empty() {
        return Ok(());
    }
    let local = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: `local` describes `data`, which the kernel only reads; it validates `remote`
    // (including write permission) and fails with EFAULT instead of faulting.
    let n = unsafe { libc::process_vm_writev(libc::getpid(), &local, 1, &remote, 1, 0) };
    if n == data.len() as isize {
        Ok(())
    } else {
        Err(Errno::EFAULT)
    }
}

/// How much user memory [`check_zeroed_user`] and [`clear_user`] handle per step: a
/// page, so a length user space chooses costs the kernel no memory, and a step either
/// faults as a whole or not at all (faults come at page boundaries).
const STEP: u64 = 4096;

/// `[addr, addr + len)` of user memory as `(address, bytes)` steps that never cross a
/// page; EFAULT when the range wraps.
pub(crate) fn user_steps(addr: u64, len: u64) -> Result<impl Iterator<Item = (u64, usize)>, Errno> {
    let end = addr.checked_add(len).ok_or(Errno::EFAULT)?;
    let mut at = addr;
    Ok(std::iter::from_fn(move || {
        (at < end).then(|| {
            let n = (STEP - at % STEP).min(end - at);
            let step = (at, n as usize);
            at += n;
            step
        })
    }))
}

/// Whether `[addr, addr + len)` of user memory is all zero (check_zeroed_user): false at
/// the first non-zero byte, EFAULT at the first unreadable page before one.
pub(crate) fn check_zeroed_user(addr: u64, len: u64) -> Result<bool, Errno> {
    let mut buf = [0u8; STEP as usize];
    for (at, n) in user_steps(addr, len)? {
        let chunk = &mut buf[..n];
        copy_from_user(at, chunk)?;
        if chunk.iter().any(|&b| b != 0) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Zero `[addr, addr + len)` of user memory (clear_user): EFAULT at the first page that
/// cannot be written, the bytes before it zeroed.
pub(crate) fn clear_user(addr: u64, len: u64) -> Result<(), Errno> {
    const ZEROS: [u8; STEP as usize] = [0; STEP as usize];
    for (at, n) in user_steps(addr, len)? {
        copy_to_user(at, &ZEROS[..n])?;
    }
    Ok(())
}

/// Read a plain-old-data value of type `T` from user memory.
///
/// `T` must be a `#[repr(C)]` uAPI struct made only of integers (every bit pattern valid).
pub(crate) fn read_user<T: Copy + Default>(addr: u64) -> Result<T, Errno> {
    let mut value = T::default();
    let size = std::mem::size_of::<T>();
    // SAFETY: `value` is a live T; viewing its bytes as a mutable slice of its exact size
    // is valid, and every bit pattern is a valid T for the uAPI structs this is used on.
    let bytes =
        unsafe { std::slice::from_raw_parts_mut((&mut value as *mut T).cast::<u8>(), size) };
    copy_from_user(addr, bytes)?;
    Ok(value)
}

/// View a plain-old-data value as bytes.
pub(crate) fn as_bytes<T: Copy>(value: &T) -> &[u8] {
    // SAFETY: a shared view of the bytes of a live `T` of its exact size; the uAPI
    // structs this is used on have no padding with uninitialised bytes that matter to
    // the reader (they are zero-initialised before being filled).
    unsafe {
        std::slice::from_raw_parts((value as *const T).cast::<u8>(), std::mem::size_of::<T>())
    }
}

/// The permissions of the process mapping that covers `addr`, from `/proc/self/maps`:
/// `Some((readable, writable, end))` or `None` if unmapped.
fn mapping_at(maps: &str, addr: u64) -> Option<(bool, bool, u64)> {
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let range = fields.next()?;
        let perms = fields.next().unwrap_or("");
        let (start, end) = range.split_once('-')?;
        let start = u64::from_str_radix(start, 16).ok()?;
        let end = u64::from_str_radix(end, 16).ok()?;
        if (start..end).contains(&addr) {
            let bytes = perms.as_bytes();
            return Some((
                bytes.first() == Some(&b'r'),
                bytes.get(1) == Some(&b'w'),
                end,
            ));
        }
    }
    None
}

/// Check `[addr, addr + len)` is mapped readable (and writable when `write`) in this
/// process, as pinning user pages requires; EFAULT otherwise.
pub(crate) fn check_user_range(addr: u64, len: u64, write: bool) -> Result<(), Errno> {
    let end = addr.checked_add(len).ok_or(Errno::EFAULT)?;
    let maps = std::fs::read_to_string("/proc/self/maps").map_err(|_| Errno::EFAULT)?;
    let mut at = addr;
    while at < end {
        let (readable, writable, next) = mapping_at(&maps, at).ok_or(Errno::EFAULT)?;
        if !readable || (write && !writable) {
            return Err(Errno::EFAULT);
        }
        at = next;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_from_a_bad_pointer_is_efault() {
        let mut buf = [0u8; 8];
        assert_eq!(copy_from_user(0, &mut buf), Err(Errno::EFAULT));
        assert_eq!(
            copy_from_user(0x0dea_dbee_f000, &mut buf),
            Err(Errno::EFAULT)
        );
    }

    #[test]
    fn copy_round_trips_through_user_memory() {
        let src = 0x1122_3344_5566_7788u64;
        let mut dst = 0u64;
        copy_to_user(&mut dst as *mut u64 as u64, &src.to_le_bytes()).unwrap();
        assert_eq!(dst, src);
        assert_eq!(read_user::<u64>(&dst as *const u64 as u64), Ok(src));
    }

    #[test]
    fn heap_memory_is_a_writable_user_range() {
        let v = vec![0u8; 3 * 4096];
        assert_eq!(
            check_user_range(v.as_ptr() as u64, v.len() as u64, true),
            Ok(())
        );
        assert_eq!(check_user_range(0x1000, 4096, false), Err(Errno::EFAULT));
    }
}
