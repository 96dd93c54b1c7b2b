//! The iommufd selftest interface (`IOMMU_TEST_CMD`, kernels built with
//! `CONFIG_IOMMUFD_TEST`): mock devices and domains of the kernel's mock IOMMU driver, the
//! mock nested data and invalidation entries, and checks of the mock domains' state.
//!
//! The layouts follow `docs/iommufd-core-semantics.md` §6 (Linux 6.12,
//! `drivers/iommu/iommufd/iommufd_test.h`). The same calls work on a real kernel and on
//! `vtd-kernel` with its selftest option, which is what lets one test source run on both.

use crate::error::{Call, Error, Result};
use crate::fd::IoctlFd;
use crate::ioctl;
use crate::iommufd::{Iommufd, raw_call};
use crate::uapi::{iommu_hw_info, iommu_hwpt_alloc, iommu_hwpt_invalidate, size_of};
use crate::vtd::HwInfo;

/// `IOMMU_TEST_OP_ADD_RESERVED`.
pub const OP_ADD_RESERVED: u32 = 1;
/// `IOMMU_TEST_OP_MOCK_DOMAIN`.
pub const OP_MOCK_DOMAIN: u32 = 2;
/// `IOMMU_TEST_OP_MD_CHECK_MAP`.
pub const OP_MD_CHECK_MAP: u32 = 3;
/// `IOMMU_TEST_OP_MD_CHECK_REFS`.
pub const OP_MD_CHECK_REFS: u32 = 4;
/// `IOMMU_TEST_OP_CREATE_ACCESS`.
pub const OP_CREATE_ACCESS: u32 = 5;
/// `IOMMU_TEST_OP_DESTROY_ACCESS_PAGES`.
pub const OP_DESTROY_ACCESS_PAGES: u32 = 6;
/// `IOMMU_TEST_OP_ACCESS_PAGES`.
pub const OP_ACCESS_PAGES: u32 = 7;
/// `IOMMU_TEST_OP_ACCESS_RW`.
pub const OP_ACCESS_RW: u32 = 8;
/// `IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT`.
pub const OP_SET_TEMP_MEMORY_LIMIT: u32 = 9;
/// `IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE`.
pub const OP_MOCK_DOMAIN_REPLACE: u32 = 10;
/// `IOMMU_TEST_OP_ACCESS_REPLACE_IOAS`.
pub const OP_ACCESS_REPLACE_IOAS: u32 = 11;
/// `IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS`.
pub const OP_MOCK_DOMAIN_FLAGS: u32 = 12;
/// `IOMMU_TEST_OP_DIRTY`.
pub const OP_DIRTY: u32 = 13;
/// `IOMMU_TEST_OP_MD_CHECK_IOTLB`.
pub const OP_MD_CHECK_IOTLB: u32 = 14;
/// `IOMMU_TEST_OP_TRIGGER_IOPF`.
pub const OP_TRIGGER_IOPF: u32 = 15;

/// First IOVA a mock domain translates.
pub const MOCK_APERTURE_START: u64 = 1 << 24;
/// Last IOVA a mock domain translates.
pub const MOCK_APERTURE_LAST: u64 = (1 << 31) - 1;
/// The mock domain's page size (half a CPU page).
pub const MOCK_IO_PAGE_SIZE: u64 = 2048;
/// The mock domain's huge page size (with [`MOCK_FLAGS_DEVICE_HUGE_IOVA`]).
pub const MOCK_HUGE_PAGE_SIZE: u64 = 512 * MOCK_IO_PAGE_SIZE;
/// Mock device flag: its IOMMU cannot track dirty pages.
pub const MOCK_FLAGS_DEVICE_NO_DIRTY: u32 = 1 << 0;
/// Mock device flag: its domains also map 1 MiB pages.
pub const MOCK_FLAGS_DEVICE_HUGE_IOVA: u32 = 1 << 1;
/// Highest mock IOTLB slot id.
pub const MOCK_NESTED_DOMAIN_IOTLB_ID_MAX: u32 = 3;
/// Number of mock IOTLB slots of a mock nested domain.
pub const MOCK_NESTED_DOMAIN_IOTLB_NUM: u32 = 4;
/// `IOMMU_HW_INFO_TYPE_SELFTEST`.
pub const IOMMU_HW_INFO_TYPE_SELFTEST: u32 = 0xfeed_beef;
/// `test_reg` of the mock driver's hw_info.
pub const IOMMU_HW_INFO_SELFTEST_REGVAL: u32 = 0xdead_beef;
/// `IOMMU_HWPT_DATA_SELFTEST`: nested data of the mock driver.
pub const IOMMU_HWPT_DATA_SELFTEST: u32 = 0xdead;
/// The value user space conventionally gives the mock IOTLB slots.
pub const IOMMU_TEST_IOTLB_DEFAULT: u32 = 0x0bad_beef;
/// `IOMMU_HWPT_INVALIDATE_DATA_SELFTEST`.
pub const IOMMU_HWPT_INVALIDATE_DATA_SELFTEST: u32 = 0xdead_beef;
/// `IOMMU_HWPT_INVALIDATE_DATA_SELFTEST_INVALID`: a type no driver accepts.
pub const IOMMU_HWPT_INVALIDATE_DATA_SELFTEST_INVALID: u32 = 0x0dad_beef;
/// `IOMMU_TEST_INVALIDATE_FLAG_ALL`: clear every mock IOTLB slot.
pub const IOMMU_TEST_INVALIDATE_FLAG_ALL: u32 = 1 << 0;
/// Bytes of `struct iommu_test_cmd` up to the end of `last`: the minimum size.
pub const TEST_CMD_MIN_SIZE: u32 = 68;

/// `struct iommu_test_cmd` (72 bytes): the op-specific union is kept as six 64-bit words
/// (48 bytes at offset 16); the accessors below name the fields of each op.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct iommu_test_cmd {
    /// Bytes user space passes.
    pub size: u32,
    /// `IOMMU_TEST_OP_*`.
    pub op: u32,
    /// The object the op works on (its meaning depends on the op).
    pub id: u32,
    /// Not checked by the kernel.
    pub __reserved: u32,
    /// The op's arguments and results.
    pub payload: [u64; 6],
    /// The struct's last original member; marks the minimum size.
    pub last: u32,
    /// Tail padding to the struct's 8-byte alignment.
    pub __pad: u32,
}

impl iommu_test_cmd {
    /// A command for `op` on `id` with a zero payload.
    pub fn new(op: u32, id: u32) -> Self {
        Self {
            size: size_of::<Self>(),
            op,
            id,
            ..Default::default()
        }
    }

    /// The 32-bit field at byte `offset` of the struct (16..64).
    pub fn u32_at(&self, offset: usize) -> u32 {
        let word = self.payload[(offset - 16) / 8];
        if offset.is_multiple_of(8) {
            word as u32
        } else {
            (word >> 32) as u32
        }
    }

    /// Set the 32-bit field at byte `offset` of the struct (16..64).
    pub fn set_u32_at(&mut self, offset: usize, value: u32) {
        let word = &mut self.payload[(offset - 16) / 8];
        *word = if offset.is_multiple_of(8) {
            (*word & !0xFFFF_FFFF) | value as u64
        } else {
            (*word & 0xFFFF_FFFF) | (value as u64) << 32
        };
    }

    /// The 64-bit field at byte `offset` of the struct (16..64, 8-aligned).
    pub fn u64_at(&self, offset: usize) -> u64 {
        self.payload[(offset - 16) / 8]
    }

    /// Set the 64-bit field at byte `offset` of the struct (16..64, 8-aligned).
    pub fn set_u64_at(&mut self, offset: usize, value: u64) {
        self.payload[(offset - 16) / 8] = value;
    }
}

/// What `IOMMU_TEST_OP_MOCK_DOMAIN` created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MockDomain {
    /// The SELFTEST object: destroying it detaches, unbinds and deletes the device.
    pub stdev_id: u32,
    /// The HWPT the device was attached to.
    pub hwpt_id: u32,
    /// The DEVICE object (as a VFIO bind would return).
    pub idev_id: u32,
}

/// One mock invalidation entry (`struct iommu_hwpt_invalidate_selftest`, 8 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct iommu_hwpt_invalidate_selftest {
    /// [`IOMMU_TEST_INVALIDATE_FLAG_ALL`] or 0.
    pub flags: u32,
    /// The slot to clear, 0..=3.
    pub iotlb_id: u32,
}

/// Mock nested data (`struct iommu_hwpt_selftest`, 4 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct iommu_hwpt_selftest {
    /// The initial value of every mock IOTLB slot.
    pub iotlb: u32,
}

impl<F: IoctlFd> Iommufd<F> {
    /// `IOMMU_TEST_CMD` with a caller-built command; the kernel's answer is written back
    /// into `cmd`.
    ///
    /// # Safety
    ///
    /// Every user pointer in the payload (`check_map.uptr`, `dirty.uptr`, …) must be
    /// valid for the accesses the op makes.
    pub unsafe fn test_cmd_raw(&self, cmd: &mut iommu_test_cmd) -> Result<()> {
        // SAFETY: iommu_test_cmd is the argument of IOMMU_TEST_CMD; the caller vouches for
        // the pointers in it.
        unsafe { raw_call(self.fd(), Call::TestCmd, ioctl::IOMMU_TEST_CMD, cmd) }?;
        Ok(())
    }

    fn test_cmd(&self, cmd: &mut iommu_test_cmd) -> Result<()> {
        // SAFETY: used only for ops whose payload holds no user pointer.
        unsafe { self.test_cmd_raw(cmd) }
    }

    /// `IOMMU_TEST_OP_MOCK_DOMAIN`: a mock device bound to this iommufd and attached to
    /// `pt_id` (an IOAS, which gets an automatic mock HWPT, or a HWPT).
    pub fn test_mock_domain(&self, pt_id: u32) -> Result<MockDomain> {
        let mut cmd = iommu_test_cmd::new(OP_MOCK_DOMAIN, pt_id);
        self.test_cmd(&mut cmd)?;
        Ok(MockDomain {
            stdev_id: cmd.u32_at(16),
            hwpt_id: cmd.u32_at(20),
            idev_id: cmd.u32_at(24),
        })
    }

    /// `IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS`: as [`Iommufd::test_mock_domain`], with mock
    /// device flags (`MOCK_FLAGS_DEVICE_*`).
    pub fn test_mock_domain_flags(&self, pt_id: u32, dev_flags: u32) -> Result<MockDomain> {
        let mut cmd = iommu_test_cmd::new(OP_MOCK_DOMAIN_FLAGS, pt_id);
        cmd.set_u32_at(28, dev_flags);
        self.test_cmd(&mut cmd)?;
        Ok(MockDomain {
            stdev_id: cmd.u32_at(16),
            hwpt_id: cmd.u32_at(20),
            idev_id: cmd.u32_at(24),
        })
    }

    /// `IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE`: move the mock device of `stdev_id` to
    /// `pt_id`; returns the HWPT it ended up on.
    pub fn test_mock_domain_replace(&self, stdev_id: u32, pt_id: u32) -> Result<u32> {
        let mut cmd = iommu_test_cmd::new(OP_MOCK_DOMAIN_REPLACE, stdev_id);
        cmd.set_u32_at(16, pt_id);
        self.test_cmd(&mut cmd)?;
        Ok(cmd.u32_at(16))
    }

    /// `IOMMU_TEST_OP_ADD_RESERVED`: reserve `[start, start + length)` in `ioas`.
    pub fn test_add_reserved(&self, ioas: u32, start: u64, length: u64) -> Result<()> {
        let mut cmd = iommu_test_cmd::new(OP_ADD_RESERVED, ioas);
        cmd.set_u64_at(16, start);
        cmd.set_u64_at(24, length);
        self.test_cmd(&mut cmd)
    }

    /// `IOMMU_TEST_OP_MD_CHECK_MAP`: the mock paging HWPT `hwpt` maps
    /// `[iova, iova + length)` to the pages of this process at `uptr`.
    pub fn test_md_check_map(
        &self,
        hwpt: u32,
        iova: u64,
        length: u64,
        uptr: *const u8,
    ) -> Result<()> {
        let mut cmd = iommu_test_cmd::new(OP_MD_CHECK_MAP, hwpt);
        cmd.set_u64_at(16, iova);
        cmd.set_u64_at(24, length);
        cmd.set_u64_at(32, uptr as u64);
        // SAFETY: the kernel only looks the pages at `uptr` up (EFAULT when unmapped);
        // it neither reads nor writes their contents.
        unsafe { self.test_cmd_raw(&mut cmd) }
    }

    /// `IOMMU_TEST_OP_MD_CHECK_IOTLB`: slot `iotlb_id` of the mock nested HWPT `hwpt`
    /// holds `value`.
    pub fn test_md_check_iotlb(&self, hwpt: u32, iotlb_id: u32, value: u32) -> Result<()> {
        let mut cmd = iommu_test_cmd::new(OP_MD_CHECK_IOTLB, hwpt);
        cmd.set_u32_at(16, iotlb_id);
        cmd.set_u32_at(20, value);
        self.test_cmd(&mut cmd)
    }

    /// `IOMMU_TEST_OP_TRIGGER_IOPF`: mock device `dev_id` reports a page request (the
    /// last of group `grpid`; with a PASID unless `pasid` is 0) for `addr` with `perm`
    /// (`IOMMU_PGFAULT_PERM_*`).
    pub fn test_trigger_iopf(
        &self,
        dev_id: u32,
        pasid: u32,
        grpid: u32,
        perm: u32,
        addr: u64,
    ) -> Result<()> {
        let mut cmd = iommu_test_cmd::new(OP_TRIGGER_IOPF, 0);
        cmd.set_u32_at(16, dev_id);
        cmd.set_u32_at(20, pasid);
        cmd.set_u32_at(24, grpid);
        cmd.set_u32_at(28, perm);
        cmd.set_u64_at(32, addr);
        self.test_cmd(&mut cmd)
    }

    /// `IOMMU_TEST_OP_DIRTY`: mark dirty the mock PTEs of `[iova, iova + length)` whose
    /// bit is set in `bitmap` (one bit per `page_size`); returns how many were marked.
    pub fn test_dirty(
        &self,
        hwpt: u32,
        iova: u64,
        length: u64,
        page_size: u64,
        bitmap: &[u64],
    ) -> Result<u64> {
        let mut cmd = iommu_test_cmd::new(OP_DIRTY, hwpt);
        cmd.set_u64_at(24, iova);
        cmd.set_u64_at(32, length);
        cmd.set_u64_at(40, page_size);
        cmd.set_u64_at(48, bitmap.as_ptr() as u64);
        let bits = length.checked_div(page_size).unwrap_or(0);
        if bitmap.len() as u64 * 64 < bits {
            return Err(Error::TooMany(Call::TestCmd));
        }
        // SAFETY: the kernel reads ceil(bits / 8) bytes of the bitmap, which `bitmap`
        // covers (checked above) and which lives across the call.
        unsafe { self.test_cmd_raw(&mut cmd) }?;
        Ok(cmd.u64_at(56))
    }

    /// `IOMMU_HWPT_ALLOC` of a mock nested HWPT on the mock paging HWPT `parent`, every
    /// mock IOTLB slot starting at `iotlb`.
    pub fn hwpt_alloc_selftest_nested(&self, dev_id: u32, parent: u32, iotlb: u32) -> Result<u32> {
        let mut data = iommu_hwpt_selftest { iotlb };
        let mut cmd = iommu_hwpt_alloc {
            size: size_of::<iommu_hwpt_alloc>(),
            dev_id,
            pt_id: parent,
            data_type: IOMMU_HWPT_DATA_SELFTEST,
            data_len: size_of::<iommu_hwpt_selftest>(),
            data_uptr: &mut data as *mut iommu_hwpt_selftest as u64,
            ..Default::default()
        };
        self.hwpt_alloc_raw(&mut cmd)
    }

    /// `IOMMU_HWPT_INVALIDATE` of mock entries on `hwpt`. Returns the number processed;
    /// on failure the error carries the kernel's `entry_num` write-back.
    pub fn hwpt_invalidate_selftest(
        &self,
        hwpt: u32,
        entries: &[iommu_hwpt_invalidate_selftest],
    ) -> Result<u32> {
        let requested =
            u32::try_from(entries.len()).map_err(|_| Error::TooMany(Call::HwptInvalidate))?;
        let mut cmd = iommu_hwpt_invalidate {
            size: size_of::<iommu_hwpt_invalidate>(),
            hwpt_id: hwpt,
            data_uptr: entries.as_ptr() as u64,
            data_type: IOMMU_HWPT_INVALIDATE_DATA_SELFTEST,
            entry_len: size_of::<iommu_hwpt_invalidate_selftest>(),
            entry_num: requested,
            __reserved: 0,
        };
        match self.hwpt_invalidate_raw(&mut cmd) {
            Ok(()) => Ok(cmd.entry_num),
            Err(Error::Ioctl { errno, .. }) => Err(Error::Invalidate {
                errno,
                processed: cmd.entry_num,
                requested,
            }),
            Err(e) => Err(e),
        }
    }

    /// `IOMMU_GET_HW_INFO` for `dev_id` with a data buffer of `buf.len()` bytes: the
    /// kernel copies what fits, zero-fills the rest and reports its own length in
    /// `data_len`. Works for any IOMMU type.
    pub fn get_hw_info_into(&self, dev_id: u32, buf: &mut [u8]) -> Result<HwInfo> {
        // SAFETY: an all-zero iommu_hw_info is a valid value (plain integers and a union
        // of two u32).
        let mut cmd: iommu_hw_info = unsafe { std::mem::zeroed() };
        cmd.size = size_of::<iommu_hw_info>();
        cmd.dev_id = dev_id;
        cmd.data_len = u32::try_from(buf.len()).map_err(|_| Error::TooMany(Call::GetHwInfo))?;
        cmd.data_uptr = if buf.is_empty() {
            0
        } else {
            buf.as_mut_ptr() as u64
        };
        // SAFETY: iommu_hw_info is the argument of IOMMU_GET_HW_INFO; data_uptr points at
        // data_len writable bytes that live across the call.
        unsafe {
            raw_call(
                self.fd(),
                Call::GetHwInfo,
                ioctl::IOMMU_GET_HW_INFO,
                &mut cmd,
            )
        }?;
        // SAFETY: both union members are u32; reading either is reading the same bytes.
        let data_type = unsafe { cmd.__bindgen_anon_1.out_data_type };
        Ok(HwInfo {
            data_type,
            data_len: cmd.data_len,
            capabilities: crate::uapi::HwCaps::from_bits_retain(cmd.out_capabilities),
            max_pasid_log2: cmd.out_max_pasid_log2,
            vtd: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_cmd_has_the_kernel_layout() {
        assert_eq!(std::mem::size_of::<iommu_test_cmd>(), 72);
        assert_eq!(std::mem::offset_of!(iommu_test_cmd, payload), 16);
        assert_eq!(std::mem::offset_of!(iommu_test_cmd, last), 64);
        assert_eq!(std::mem::size_of::<iommu_hwpt_invalidate_selftest>(), 8);
    }

    #[test]
    fn payload_fields_land_at_their_byte_offsets() {
        let mut cmd = iommu_test_cmd::new(OP_MOCK_DOMAIN_FLAGS, 1);
        cmd.set_u32_at(28, 0x1122_3344);
        cmd.set_u32_at(24, 7);
        assert_eq!(cmd.payload[1], 0x1122_3344_0000_0007);
        assert_eq!((cmd.u32_at(24), cmd.u32_at(28)), (7, 0x1122_3344));
    }
}
