//! Typed iommufd calls over any [`IoctlFd`].

use std::ffi::c_void;

use crate::errno::Errno;
use crate::error::{Call, Error, Result};
use crate::fd::IoctlFd;
use crate::ioctl;
use crate::uapi::*;
use crate::vtd::{HwInfo, VtdHwInfo, VtdS1, VtdS1Invalidate};

/// An iommufd: `/dev/iommu` or a simulated one.
#[derive(Debug)]
pub struct Iommufd<F> {
    fd: F,
}

/// Issue `request` with `arg`.
///
/// # Safety
///
/// `arg` must be the argument struct `request` takes, with its size field set, and every
/// user pointer in it must be valid for the accesses the ioctl makes.
pub(crate) unsafe fn raw_call<F: IoctlFd, T>(
    fd: &F,
    call: Call,
    request: u64,
    arg: &mut T,
) -> Result<i32> {
    // SAFETY: `arg` is a live exclusive reference; the caller pairs it with `request` and
    // vouches for the pointers inside it.
    unsafe { fd.ioctl(request, arg as *mut T as *mut c_void) }
        .map_err(|errno| Error::Ioctl { call, errno })
}

/// The IOVA ranges an IOAS allows, and the IOVA alignment it needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IovaRanges {
    /// Inclusive `[start, last]` ranges.
    pub ranges: Vec<(u64, u64)>,
    /// `out_iova_alignment`.
    pub alignment: u64,
}

impl<F: IoctlFd> Iommufd<F> {
    /// Wrap an open iommufd.
    pub fn new(fd: F) -> Self {
        Self { fd }
    }

    /// The underlying file.
    pub fn fd(&self) -> &F {
        &self.fd
    }

    /// `IOMMU_DESTROY`: destroy object `id`.
    pub fn destroy(&self, id: u32) -> Result<()> {
        let mut cmd = iommu_destroy {
            size: size_of::<iommu_destroy>(),
            id,
        };
        // SAFETY: iommu_destroy is the argument of IOMMU_DESTROY and holds no pointers.
        unsafe { raw_call(&self.fd, Call::Destroy, ioctl::IOMMU_DESTROY, &mut cmd) }?;
        Ok(())
    }

    /// `IOMMU_IOAS_ALLOC`: a new, empty IOAS.
    pub fn ioas_alloc(&self) -> Result<u32> {
        let mut cmd = iommu_ioas_alloc {
            size: size_of::<iommu_ioas_alloc>(),
            ..Default::default()
        };
        // SAFETY: iommu_ioas_alloc is the argument of IOMMU_IOAS_ALLOC; no pointers.
        unsafe { raw_call(&self.fd, Call::IoasAlloc, ioctl::IOMMU_IOAS_ALLOC, &mut cmd) }?;
        Ok(cmd.out_ioas_id)
    }

    /// `IOMMU_IOAS_MAP`: map `length` bytes of this process's memory at `user_va` into
    /// `ioas`, at `iova` if given (FIXED_IOVA) or at an IOVA the kernel picks. Returns the
    /// IOVA. `flags` gives READABLE/WRITEABLE; FIXED_IOVA is set from `iova`.
    ///
    /// # Safety
    ///
    /// `[user_va, user_va + length)` must stay mapped in this process until it is
    /// unmapped from the IOAS: devices read and write it (a simulated kernel accesses it
    /// directly, the real one pins it).
    pub unsafe fn ioas_map(
        &self,
        ioas: u32,
        user_va: *const u8,
        length: u64,
        iova: Option<u64>,
        flags: MapFlags,
    ) -> Result<u64> {
        let mut flags = flags - MapFlags::FIXED_IOVA;
        if iova.is_some() {
            flags |= MapFlags::FIXED_IOVA;
        }
        let mut cmd = iommu_ioas_map {
            size: size_of::<iommu_ioas_map>(),
            flags: flags.bits(),
            ioas_id: ioas,
            __reserved: 0,
            user_va: user_va as u64,
            length,
            iova: iova.unwrap_or(0),
        };
        // SAFETY: iommu_ioas_map is the argument of IOMMU_IOAS_MAP; the caller vouches
        // for the user range.
        unsafe { raw_call(&self.fd, Call::IoasMap, ioctl::IOMMU_IOAS_MAP, &mut cmd) }?;
        Ok(cmd.iova)
    }

    /// `IOMMU_IOAS_UNMAP` of `[iova, iova + length)`; returns the bytes unmapped.
    pub fn ioas_unmap(&self, ioas: u32, iova: u64, length: u64) -> Result<u64> {
        let mut cmd = iommu_ioas_unmap {
            size: size_of::<iommu_ioas_unmap>(),
            ioas_id: ioas,
            iova,
            length,
        };
        // SAFETY: iommu_ioas_unmap is the argument of IOMMU_IOAS_UNMAP; no pointers.
        unsafe { raw_call(&self.fd, Call::IoasUnmap, ioctl::IOMMU_IOAS_UNMAP, &mut cmd) }?;
        Ok(cmd.length)
    }

    /// `IOMMU_IOAS_UNMAP` of everything (iova 0, length `u64::MAX`); returns the bytes
    /// unmapped.
    pub fn ioas_unmap_all(&self, ioas: u32) -> Result<u64> {
        self.ioas_unmap(ioas, 0, u64::MAX)
    }

    /// `IOMMU_IOAS_IOVA_RANGES`: the IOVA ranges `ioas` allows and its alignment.
    pub fn ioas_iova_ranges(&self, ioas: u32) -> Result<IovaRanges> {
        let mut ranges: Vec<iommu_iova_range> = Vec::new();
        loop {
            let mut cmd = iommu_ioas_iova_ranges {
                size: size_of::<iommu_ioas_iova_ranges>(),
                ioas_id: ioas,
                num_iovas: u32::try_from(ranges.len())
                    .map_err(|_| Error::TooMany(Call::IoasIovaRanges))?,
                __reserved: 0,
                allowed_iovas: ranges.as_mut_ptr() as u64,
                out_iova_alignment: 0,
            };
            // SAFETY: iommu_ioas_iova_ranges is the argument of IOMMU_IOAS_IOVA_RANGES;
            // allowed_iovas points at `num_iovas` writable elements.
            let result = unsafe {
                raw_call(
                    &self.fd,
                    Call::IoasIovaRanges,
                    ioctl::IOMMU_IOAS_IOVA_RANGES,
                    &mut cmd,
                )
            };
            match result {
                Ok(_) => {
                    ranges.truncate(cmd.num_iovas as usize);
                    let ranges = ranges.iter().map(|r| (r.start, r.last)).collect();
                    return Ok(IovaRanges {
                        ranges,
                        alignment: cmd.out_iova_alignment,
                    });
                }
                // The kernel reports how many it has; grow and ask again.
                Err(Error::Ioctl {
                    errno: Errno::EMSGSIZE,
                    ..
                }) if cmd.num_iovas as usize > ranges.len() => {
                    ranges.resize(cmd.num_iovas as usize, iommu_iova_range::default());
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// `IOMMU_IOAS_ALLOW_IOVAS`: restrict allocated IOVAs to `ranges` (inclusive).
    pub fn ioas_allow_iovas(&self, ioas: u32, ranges: &[(u64, u64)]) -> Result<()> {
        let mut elems: Vec<iommu_iova_range> = ranges
            .iter()
            .map(|&(start, last)| iommu_iova_range { start, last })
            .collect();
        let mut cmd = iommu_ioas_allow_iovas {
            size: size_of::<iommu_ioas_allow_iovas>(),
            ioas_id: ioas,
            num_iovas: u32::try_from(elems.len())
                .map_err(|_| Error::TooMany(Call::IoasAllowIovas))?,
            __reserved: 0,
            allowed_iovas: elems.as_mut_ptr() as u64,
        };
        // SAFETY: iommu_ioas_allow_iovas is the argument of IOMMU_IOAS_ALLOW_IOVAS;
        // allowed_iovas points at `num_iovas` elements that live across the call.
        unsafe {
            raw_call(
                &self.fd,
                Call::IoasAllowIovas,
                ioctl::IOMMU_IOAS_ALLOW_IOVAS,
                &mut cmd,
            )
        }?;
        Ok(())
    }

    /// `IOMMU_IOAS_COPY`: map into `dst_ioas` the pages `src_ioas` maps at
    /// `[src_iova, src_iova + length)`; returns the destination IOVA.
    pub fn ioas_copy(
        &self,
        dst_ioas: u32,
        src_ioas: u32,
        src_iova: u64,
        length: u64,
        dst_iova: Option<u64>,
        flags: MapFlags,
    ) -> Result<u64> {
        let mut flags = flags - MapFlags::FIXED_IOVA;
        if dst_iova.is_some() {
            flags |= MapFlags::FIXED_IOVA;
        }
        let mut cmd = iommu_ioas_copy {
            size: size_of::<iommu_ioas_copy>(),
            flags: flags.bits(),
            dst_ioas_id: dst_ioas,
            src_ioas_id: src_ioas,
            length,
            dst_iova: dst_iova.unwrap_or(0),
            src_iova,
        };
        // SAFETY: iommu_ioas_copy is the argument of IOMMU_IOAS_COPY; no pointers.
        unsafe { raw_call(&self.fd, Call::IoasCopy, ioctl::IOMMU_IOAS_COPY, &mut cmd) }?;
        Ok(cmd.dst_iova)
    }

    /// `IOMMU_HWPT_ALLOC` of a paging HWPT on `ioas` (NEST_PARENT and DIRTY_TRACKING in
    /// `flags` as wanted).
    pub fn hwpt_alloc_paging(&self, dev_id: u32, ioas: u32, flags: HwptAllocFlags) -> Result<u32> {
        let mut cmd = iommu_hwpt_alloc {
            size: size_of::<iommu_hwpt_alloc>(),
            flags: flags.bits(),
            dev_id,
            pt_id: ioas,
            data_type: IOMMU_HWPT_DATA_NONE,
            ..Default::default()
        };
        self.hwpt_alloc_raw(&mut cmd)
    }

    /// `IOMMU_HWPT_ALLOC` of a nested HWPT with VT-d stage-1 data on the nest parent
    /// `parent`, reporting faults to `fault_id` if given.
    pub fn hwpt_alloc_nested(
        &self,
        dev_id: u32,
        parent: u32,
        s1: &VtdS1,
        fault_id: Option<u32>,
    ) -> Result<u32> {
        let mut data = s1.to_raw();
        let mut cmd = iommu_hwpt_alloc {
            size: size_of::<iommu_hwpt_alloc>(),
            flags: if fault_id.is_some() {
                HwptAllocFlags::FAULT_ID_VALID.bits()
            } else {
                0
            },
            dev_id,
            pt_id: parent,
            data_type: IOMMU_HWPT_DATA_VTD_S1,
            data_len: VTD_S1_DATA_LEN,
            data_uptr: &mut data as *mut iommu_hwpt_vtd_s1 as u64,
            fault_id: fault_id.unwrap_or(0),
            ..Default::default()
        };
        self.hwpt_alloc_raw(&mut cmd)
    }

    /// `IOMMU_HWPT_ALLOC` with a caller-built struct (any flags and data); returns
    /// `out_hwpt_id`.
    pub fn hwpt_alloc_raw(&self, cmd: &mut iommu_hwpt_alloc) -> Result<u32> {
        // SAFETY: iommu_hwpt_alloc is the argument of IOMMU_HWPT_ALLOC. data_uptr is
        // either our own stack data (live across the call) or the caller's; the kernel
        // reads at most data_len bytes from it and fails with EFAULT on a bad pointer.
        unsafe { raw_call(&self.fd, Call::HwptAlloc, ioctl::IOMMU_HWPT_ALLOC, cmd) }?;
        Ok(cmd.out_hwpt_id)
    }

    /// `IOMMU_GET_HW_INFO` for `dev_id`, with the VT-d data decoded.
    pub fn get_hw_info(&self, dev_id: u32) -> Result<HwInfo> {
        let mut data = iommu_hw_info_vtd::default();
        // SAFETY: an all-zero iommu_hw_info is a valid value (plain integers and a union
        // of two u32).
        let mut cmd: iommu_hw_info = unsafe { std::mem::zeroed() };
        cmd.size = size_of::<iommu_hw_info>();
        cmd.dev_id = dev_id;
        cmd.data_len = size_of::<iommu_hw_info_vtd>();
        cmd.data_uptr = &mut data as *mut iommu_hw_info_vtd as u64;
        // SAFETY: iommu_hw_info is the argument of IOMMU_GET_HW_INFO; data_uptr points at
        // data_len writable bytes that live across the call.
        unsafe {
            raw_call(
                &self.fd,
                Call::GetHwInfo,
                ioctl::IOMMU_GET_HW_INFO,
                &mut cmd,
            )
        }?;
        // SAFETY: both union members are u32; reading either is reading the same bytes.
        let data_type = unsafe { cmd.__bindgen_anon_1.out_data_type };
        let vtd = (data_type == IOMMU_HW_INFO_TYPE_INTEL_VTD).then(|| VtdHwInfo::from_raw(&data));
        Ok(HwInfo {
            data_type,
            data_len: cmd.data_len,
            capabilities: HwCaps::from_bits_retain(cmd.out_capabilities),
            max_pasid_log2: cmd.out_max_pasid_log2,
            vtd,
        })
    }

    /// `IOMMU_GET_HW_INFO`, requiring an Intel VT-d IOMMU.
    pub fn get_vtd_hw_info(&self, dev_id: u32) -> Result<(HwInfo, VtdHwInfo)> {
        let info = self.get_hw_info(dev_id)?;
        match info.vtd {
            Some(vtd) => Ok((info, vtd)),
            None => Err(Error::NotVtd(info.data_type)),
        }
    }

    /// `IOMMU_HWPT_INVALIDATE` of `entries` on the nested HWPT `hwpt`. Returns the number
    /// processed; on failure the error says how many were processed before it.
    pub fn hwpt_invalidate(&self, hwpt: u32, entries: &[VtdS1Invalidate]) -> Result<u32> {
        let mut raw: Vec<iommu_hwpt_vtd_s1_invalidate> =
            entries.iter().map(VtdS1Invalidate::to_raw).collect();
        let requested =
            u32::try_from(raw.len()).map_err(|_| Error::TooMany(Call::HwptInvalidate))?;
        let mut cmd = iommu_hwpt_invalidate {
            size: size_of::<iommu_hwpt_invalidate>(),
            hwpt_id: hwpt,
            data_uptr: raw.as_mut_ptr() as u64,
            data_type: IOMMU_HWPT_INVALIDATE_DATA_VTD_S1,
            entry_len: VTD_S1_DATA_LEN,
            entry_num: requested,
            __reserved: 0,
        };
        // SAFETY: iommu_hwpt_invalidate is the argument of IOMMU_HWPT_INVALIDATE;
        // data_uptr points at entry_num entries of entry_len bytes that live across it.
        match unsafe {
            raw_call(
                &self.fd,
                Call::HwptInvalidate,
                ioctl::IOMMU_HWPT_INVALIDATE,
                &mut cmd,
            )
        } {
            Ok(_) => Ok(cmd.entry_num),
            Err(Error::Ioctl { errno, .. }) => Err(Error::Invalidate {
                errno,
                processed: cmd.entry_num,
                requested,
            }),
            Err(e) => Err(e),
        }
    }

    /// `IOMMU_HWPT_INVALIDATE` with a caller-built struct; `entry_num` is written back.
    pub fn hwpt_invalidate_raw(&self, cmd: &mut iommu_hwpt_invalidate) -> Result<()> {
        // SAFETY: iommu_hwpt_invalidate is the argument of IOMMU_HWPT_INVALIDATE; the
        // kernel reads entries through data_uptr and fails with EFAULT on a bad pointer.
        unsafe {
            raw_call(
                &self.fd,
                Call::HwptInvalidate,
                ioctl::IOMMU_HWPT_INVALIDATE,
                cmd,
            )
        }?;
        Ok(())
    }

    /// `IOMMU_HWPT_SET_DIRTY_TRACKING`.
    pub fn hwpt_set_dirty_tracking(&self, hwpt: u32, enable: bool) -> Result<()> {
        let mut cmd = iommu_hwpt_set_dirty_tracking {
            size: size_of::<iommu_hwpt_set_dirty_tracking>(),
            flags: if enable {
                IOMMU_HWPT_DIRTY_TRACKING_ENABLE
            } else {
                0
            },
            hwpt_id: hwpt,
            __reserved: 0,
        };
        // SAFETY: the argument of IOMMU_HWPT_SET_DIRTY_TRACKING; no pointers.
        unsafe {
            raw_call(
                &self.fd,
                Call::HwptSetDirtyTracking,
                ioctl::IOMMU_HWPT_SET_DIRTY_TRACKING,
                &mut cmd,
            )
        }?;
        Ok(())
    }

    /// `IOMMU_HWPT_GET_DIRTY_BITMAP` of `[iova, iova + length)` at `page_size`
    /// granularity: bit n of the result is the page at `iova + n * page_size`. With
    /// `no_clear` the dirty state is reported but kept.
    pub fn hwpt_get_dirty_bitmap(
        &self,
        hwpt: u32,
        iova: u64,
        length: u64,
        page_size: u64,
        no_clear: bool,
    ) -> Result<Vec<u64>> {
        let bits = if page_size == 0 {
            0
        } else {
            length.div_ceil(page_size)
        };
        let mut bitmap = vec![0u64; bits.div_ceil(64) as usize];
        let mut cmd = iommu_hwpt_get_dirty_bitmap {
            size: size_of::<iommu_hwpt_get_dirty_bitmap>(),
            hwpt_id: hwpt,
            flags: if no_clear {
                IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR
            } else {
                0
            },
            __reserved: 0,
            iova,
            length,
            page_size,
            data: bitmap.as_mut_ptr() as u64,
        };
        // SAFETY: the argument of IOMMU_HWPT_GET_DIRTY_BITMAP; data points at a bitmap
        // with one bit per page of the range, live across the call.
        unsafe {
            raw_call(
                &self.fd,
                Call::HwptGetDirtyBitmap,
                ioctl::IOMMU_HWPT_GET_DIRTY_BITMAP,
                &mut cmd,
            )
        }?;
        Ok(bitmap)
    }
}
