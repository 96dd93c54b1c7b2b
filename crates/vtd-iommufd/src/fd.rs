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
        }
    )*};
}

forward_ioctl_fd!(&T, std::sync::Arc<T>, Box<T>);
