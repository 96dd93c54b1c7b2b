//! Linux error numbers as the ioctls return them.

use std::fmt;

/// A Linux errno value returned by a failed ioctl.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Errno(pub i32);

macro_rules! errnos {
    ($($name:ident = $value:expr;)*) => {
        impl Errno {
            $(
                #[doc = concat!("`", stringify!($name), "`.")]
                pub const $name: Errno = Errno($value);
            )*

            /// The symbolic name (`"EINVAL"`), or `None` for numbers not listed here.
            pub const fn name(self) -> Option<&'static str> {
                match self.0 {
                    $( v if v == $value => Some(stringify!($name)), )*
                    _ => None,
                }
            }

            /// Look up an errno by symbolic name.
            pub fn from_name(name: &str) -> Option<Errno> {
                match name {
                    $( stringify!($name) => Some(Errno($value)), )*
                    _ => None,
                }
            }
        }
    };
}

errnos! {
    EPERM = libc::EPERM;
    ENOENT = libc::ENOENT;
    EINTR = libc::EINTR;
    EIO = libc::EIO;
    EBADF = libc::EBADF;
    EBADFD = libc::EBADFD;
    EBADE = libc::EBADE;
    EDEADLOCK = libc::EDEADLOCK;
    EAGAIN = libc::EAGAIN;
    ENOMEM = libc::ENOMEM;
    EFAULT = libc::EFAULT;
    EBUSY = libc::EBUSY;
    EEXIST = libc::EEXIST;
    ENODEV = libc::ENODEV;
    EINVAL = libc::EINVAL;
    ENOTTY = libc::ENOTTY;
    ENOSPC = libc::ENOSPC;
    ESPIPE = libc::ESPIPE;
    ERANGE = libc::ERANGE;
    E2BIG = libc::E2BIG;
    EMSGSIZE = libc::EMSGSIZE;
    EOPNOTSUPP = libc::EOPNOTSUPP;
    EADDRINUSE = libc::EADDRINUSE;
    EOVERFLOW = libc::EOVERFLOW;
    ENXIO = libc::ENXIO;
}

impl Errno {
    /// The errno of the last failed libc call on this thread.
    pub fn last() -> Errno {
        Errno(
            std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO),
        )
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "Errno({})", self.0),
        }
    }
}

impl Errno {
    /// The symbolic name, or the number for an errno not listed here: the short form for
    /// logs and machine-readable records (`Display` adds the system's text).
    pub fn symbol(self) -> String {
        self.name()
            .map_or_else(|| self.0.to_string(), str::to_string)
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = std::io::Error::from_raw_os_error(self.0);
        match self.name() {
            Some(name) => write!(f, "{name} ({text})"),
            None => write!(f, "errno {} ({text})", self.0),
        }
    }
}

impl std::error::Error for Errno {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(Errno::EOPNOTSUPP.name(), Some("EOPNOTSUPP"));
        assert_eq!(Errno::from_name("EBUSY"), Some(Errno::EBUSY));
        assert_eq!(Errno(9999).name(), None);
    }

    #[test]
    fn symbol_is_the_name_or_the_number() {
        assert_eq!(Errno::ENOMEM.symbol(), "ENOMEM");
        assert_eq!(Errno(9999).symbol(), "9999");
    }

    #[test]
    fn display_includes_the_text() {
        assert!(Errno::EINVAL.to_string().starts_with("EINVAL ("));
    }
}
