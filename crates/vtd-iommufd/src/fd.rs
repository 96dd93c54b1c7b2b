//! The ioctl seam: anything that answers ioctls like a Linux file descriptor.

use std::ffi::c_void;
use std::os::fd::AsRawFd;

use crate::errno::Errno;

/// A file that takes ioctls: a real `/dev/iommu` or VFIO cdev, or a simulated one.
///
/// Every typed call in this crate goes through this trait, so the same user-space code
/// runs against the real kernel and against `vtd-kernel`.
pub trait IoctlFd {
    /// Issue ioctl `request` with argument `arg`, returning the ioctl's non-negative
    /// result or the errno it failed with.
    ///
    /// # Safety
    ///
    /// `arg` must point to a live, aligned instance of the argument struct `request`
    /// expects, with its size field set, and every user pointer inside it must point to
    /// memory valid for the reads and writes the ioctl performs — exactly the contract of
    /// `ioctl(2)`.
    unsafe fn ioctl(&self, request: u64, arg: *mut c_void) -> Result<i32, Errno>;

    /// The file-descriptor number, which `VFIO_DEVICE_BIND_IOMMUFD` takes to name the
    /// iommufd.
    fn fd_number(&self) -> i32;

    /// `pread(2)`: read up to `buf.len()` bytes at file offset `offset`; a VFIO device
    /// file reads its regions (config space, BARs) this way. The default is a file
    /// without a read operation, which Linux answers with EINVAL.
    fn pread(&self, buf: &mut [u8], offset: u64) -> Result<usize, Errno> {
        let _ = (buf, offset);
        Err(Errno::EINVAL)
    }

    /// `pwrite(2)`: write `data` at file offset `offset`. The default is a file without
    /// a write operation (EINVAL).
    fn pwrite(&self, data: &[u8], offset: u64) -> Result<usize, Errno> {
        let _ = (data, offset);
        Err(Errno::EINVAL)
    }
}

impl IoctlFd for std::fs::File {
    unsafe fn ioctl(&self, request: u64, arg: *mut c_void) -> Result<i32, Errno> {
        // SAFETY: the caller upholds the ioctl contract for `arg`; the descriptor is owned
        // by `self` and open for the duration of the call.
        let rc = unsafe { libc::ioctl(self.as_raw_fd(), request as libc::Ioctl, arg) };
        if rc < 0 { Err(Errno::last()) } else { Ok(rc) }
    }

    fn fd_number(&self) -> i32 {
        self.as_raw_fd()
    }

    fn pread(&self, buf: &mut [u8], offset: u64) -> Result<usize, Errno> {
        let offset = libc::off_t::try_from(offset).map_err(|_| Errno::EINVAL)?;
        // SAFETY: `buf` is a live, exclusively borrowed buffer of `buf.len()` bytes; the
        // descriptor is owned by `self` and open for the call.
        let n =
            unsafe { libc::pread(self.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), offset) };
        usize::try_from(n).map_err(|_| Errno::last())
    }

    fn pwrite(&self, data: &[u8], offset: u64) -> Result<usize, Errno> {
        let offset = libc::off_t::try_from(offset).map_err(|_| Errno::EINVAL)?;
        // SAFETY: `data` is a live buffer of `data.len()` bytes the kernel only reads; the
        // descriptor is owned by `self` and open for the call.
        let n = unsafe { libc::pwrite(self.as_raw_fd(), data.as_ptr().cast(), data.len(), offset) };
        usize::try_from(n).map_err(|_| Errno::last())
    }
}

macro_rules! forward_ioctl_fd {
    ($($ty:ty),*) => {$(
        impl<T: IoctlFd + ?Sized> IoctlFd for $ty {
            unsafe fn ioctl(&self, request: u64, arg: *mut c_void) -> Result<i32, Errno> {
                // SAFETY: forwarded unchanged; the caller upholds the contract.
                unsafe { (**self).ioctl(request, arg) }
            }

            fn fd_number(&self) -> i32 {
                (**self).fd_number()
            }

            fn pread(&self, buf: &mut [u8], offset: u64) -> Result<usize, Errno> {
                (**self).pread(buf, offset)
            }

            fn pwrite(&self, data: &[u8], offset: u64) -> Result<usize, Errno> {
                (**self).pwrite(data, offset)
            }
        }
    )*};
}

forward_ioctl_fd!(&T, std::sync::Arc<T>, Box<T>);
