//! Physical memory as the remapping hardware sees it (ARCHITECTURE §3).
//!
//! The hardware reads root, context, PASID and paging-structure entries as aligned 64-bit
//! loads, updates accessed/dirty flags with compare-exchange, writes invalidation-wait
//! status as a 32-bit store, and a device's DMA data moves as byte copies. Every access is
//! checked: an address that is not backed is an error the model turns into a fault, never
//! undefined behaviour and never a panic.

mod flat;
mod sparse;
mod words;

pub use flat::FlatMem;
pub use sparse::SparseMem;

/// Why a physical-memory access failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MemError {
    /// Some byte of the access is not backed by memory.
    #[error("physical address {addr:#x} is not backed by memory")]
    Unbacked {
        /// The first byte of the access that is not backed.
        addr: u64,
    },
    /// The access is not naturally aligned.
    #[error("physical address {addr:#x} is not aligned for a {size}-byte access")]
    Misaligned {
        /// The address of the access.
        addr: u64,
        /// The access size in bytes.
        size: u8,
    },
}

/// Physical memory behind a remapping unit.
///
/// Loads and stores of 32 and 64 bits must be naturally aligned; implementations return
/// [`MemError::Misaligned`] otherwise. All accesses are atomic per 64-bit word, so tables
/// may change under a concurrent walk exactly as they can on hardware.
pub trait PhysMem: Send + Sync {
    /// Load the aligned 64-bit word at `addr`.
    fn read_u64(&self, addr: u64) -> Result<u64, MemError>;

    /// Store the aligned 64-bit word at `addr`.
    fn write_u64(&self, addr: u64, value: u64) -> Result<(), MemError>;

    /// Atomically replace the aligned word at `addr` with `new` if it holds `current`.
    /// The inner result is `Ok(previous)` on success and `Err(actual)` on a mismatch.
    fn compare_exchange_u64(
        &self,
        addr: u64,
        current: u64,
        new: u64,
    ) -> Result<Result<u64, u64>, MemError>;

    /// Store the aligned 32-bit value at `addr` (invalidation-wait status writes).
    fn write_u32(&self, addr: u64, value: u32) -> Result<(), MemError>;

    /// Copy `buf.len()` bytes starting at `addr` into `buf`.
    fn read_bytes(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemError>;

    /// Copy `data` into memory starting at `addr`.
    fn write_bytes(&self, addr: u64, data: &[u8]) -> Result<(), MemError>;

    /// Load the 128-bit little-endian value at the 16-byte aligned `addr` as two loads.
    fn read_u128(&self, addr: u64) -> Result<u128, MemError> {
        if !addr.is_multiple_of(16) {
            return Err(MemError::Misaligned { addr, size: 16 });
        }
        let lo = self.read_u64(addr)?;
        let hi = self.read_u64(addr + 8)?;
        Ok(lo as u128 | (hi as u128) << 64)
    }

    /// Store the 128-bit little-endian value at the 16-byte aligned `addr` as two stores.
    fn write_u128(&self, addr: u64, value: u128) -> Result<(), MemError> {
        if !addr.is_multiple_of(16) {
            return Err(MemError::Misaligned { addr, size: 16 });
        }
        self.write_u64(addr, value as u64)?;
        self.write_u64(addr + 8, (value >> 64) as u64)
    }
}

macro_rules! forward_phys_mem {
    ($($ty:ty),*) => {$(
        impl<T: PhysMem + ?Sized> PhysMem for $ty {
            fn read_u64(&self, addr: u64) -> Result<u64, MemError> {
                (**self).read_u64(addr)
            }
            fn write_u64(&self, addr: u64, value: u64) -> Result<(), MemError> {
                (**self).write_u64(addr, value)
            }
            fn compare_exchange_u64(
                &self,
                addr: u64,
                current: u64,
                new: u64,
            ) -> Result<Result<u64, u64>, MemError> {
                (**self).compare_exchange_u64(addr, current, new)
            }
            fn write_u32(&self, addr: u64, value: u32) -> Result<(), MemError> {
                (**self).write_u32(addr, value)
            }
            fn read_bytes(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemError> {
                (**self).read_bytes(addr, buf)
            }
            fn write_bytes(&self, addr: u64, data: &[u8]) -> Result<(), MemError> {
                (**self).write_bytes(addr, data)
            }
        }
    )*};
}

forward_phys_mem!(&T, std::sync::Arc<T>, Box<T>);
