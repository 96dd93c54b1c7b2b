//! The generic iommufd contract, exercised with the selftest's mock devices.

use vtd_iommufd::Errno;
use vtd_iommufd::ioctl::{
    IOMMU_DESTROY, IOMMU_FAULT_QUEUE_ALLOC, IOMMU_GET_HW_INFO, IOMMU_HWPT_ALLOC,
    IOMMU_HWPT_GET_DIRTY_BITMAP, IOMMU_HWPT_INVALIDATE, IOMMU_HWPT_SET_DIRTY_TRACKING,
    IOMMU_IOAS_ALLOC, IOMMU_IOAS_ALLOW_IOVAS, IOMMU_IOAS_COPY, IOMMU_IOAS_IOVA_RANGES,
    IOMMU_IOAS_MAP, IOMMU_OPTION, IOMMU_TEST_CMD, IOMMU_VFIO_IOAS, io,
};
use vtd_iommufd::selftest::{
    IOMMU_HW_INFO_SELFTEST_REGVAL, IOMMU_HW_INFO_TYPE_SELFTEST, IOMMU_HWPT_DATA_SELFTEST,
    IOMMU_HWPT_INVALIDATE_DATA_SELFTEST, IOMMU_HWPT_INVALIDATE_DATA_SELFTEST_INVALID,
    IOMMU_TEST_INVALIDATE_FLAG_ALL, IOMMU_TEST_IOTLB_DEFAULT, MOCK_APERTURE_LAST,
    MOCK_APERTURE_START, MOCK_FLAGS_DEVICE_NO_DIRTY, MockDomain, OP_DIRTY,
    iommu_hwpt_invalidate_selftest, iommu_test_cmd,
};
use vtd_iommufd::uapi::{
    HwCaps, HwptAllocFlags, IOMMU_HWPT_DATA_NONE, MapFlags, iommu_hwpt_alloc,
    iommu_hwpt_invalidate, iommu_hwpt_pgfault, size_of,
};
use vtd_iommufd::{Call, Error, Iommufd};

use crate::target::{Fd, Target};
use crate::{Buffer, Case, Failure, Log, Outcome};

/// Every case of the suite, in run order.
pub(crate) static CASES: &[Case] = &[
    Case {
        name: "size.below_minimum_is_einval",
        run: size_below_minimum_is_einval,
    },
    Case {
        name: "size.zero_tail_is_accepted",
        run: size_zero_tail_is_accepted,
    },
    Case {
        name: "size.nonzero_tail_is_e2big",
        run: size_nonzero_tail_is_e2big,
    },
    Case {
        name: "size.short_struct_is_extended_and_answered_short",
        run: size_short_struct,
    },
    Case {
        name: "dispatch.unknown_command_is_enotty",
        run: dispatch_unknown_command_is_enotty,
    },
    Case {
        name: "objects.ids_are_lowest_free_and_reused",
        run: objects_ids_lowest_free,
    },
    Case {
        name: "objects.unknown_id_is_enoent",
        run: objects_unknown_id_is_enoent,
    },
    Case {
        name: "objects.wrong_type_is_enoent",
        run: objects_wrong_type_is_enoent,
    },
    Case {
        name: "objects.referenced_objects_are_ebusy",
        run: objects_referenced_are_ebusy,
    },
    Case {
        name: "ioas.map_reaches_the_mock_domain",
        run: ioas_map_reaches_the_mock_domain,
    },
    Case {
        name: "ioas.iova_ranges_follow_the_aperture",
        run: ioas_iova_ranges_follow_aperture,
    },
    Case {
        name: "ioas.unmap_removes_whole_areas_only",
        run: ioas_unmap_whole_areas_only,
    },
    Case {
        name: "ioas.copy_maps_the_same_pages",
        run: ioas_copy_maps_the_same_pages,
    },
    Case {
        name: "ioas.reserved_and_allowed_ranges",
        run: ioas_reserved_and_allowed,
    },
    Case {
        name: "hwpt.paging_alloc_rules",
        run: hwpt_paging_alloc_rules,
    },
    Case {
        name: "hwpt.nested_alloc_rules",
        run: hwpt_nested_alloc_rules,
    },
    Case {
        name: "invalidate.entry_num_is_written_back",
        run: invalidate_entry_num_written_back,
    },
    Case {
        name: "invalidate.bad_requests_process_nothing",
        run: invalidate_bad_requests,
    },
    Case {
        name: "replace.moves_the_device_between_hwpts",
        run: replace_moves_the_device,
    },
    Case {
        name: "destroy.goes_in_dependency_order",
        run: destroy_dependency_order,
    },
    Case {
        name: "hw_info.mock_device",
        run: hw_info_mock_device,
    },
    Case {
        name: "dirty.marked_pages_are_reported_once",
        run: dirty_marked_pages_reported_once,
    },
    Case {
        name: "dirty.no_dirty_device_is_refused",
        run: dirty_no_dirty_device_refused,
    },
    Case {
        name: "dirty.test_bitmap_sizes_user_space_chooses",
        run: dirty_test_bitmap_sizes,
    },
    Case {
        name: "test_cmd.bad_ops_are_refused_and_undone",
        run: test_cmd_bad_ops,
    },
    Case {
        name: "option.rlimit_mode_set_only_when_empty",
        run: option_rlimit_mode_set_only_when_empty,
    },
    Case {
        name: "option.bad_arguments_are_refused",
        run: option_bad_arguments_are_refused,
    },
    Case {
        name: "option.huge_pages_is_per_ioas",
        run: option_huge_pages_is_per_ioas,
    },
    Case {
        name: "option.huge_pages_off_refused_while_mapped",
        run: option_huge_pages_off_refused_while_mapped,
    },
    Case {
        name: "ioas.map_checks_come_before_the_lookup",
        run: ioas_map_checks_come_before_the_lookup,
    },
    Case {
        name: "ioas.map_length_and_address_rules",
        run: ioas_map_length_and_address_rules,
    },
    Case {
        name: "ioas.unmap_range_rules",
        run: ioas_unmap_range_rules,
    },
    Case {
        name: "ioas.unmap_split_area_fails_after_leading_areas",
        run: ioas_unmap_split_area_fails_after_leading_areas,
    },
    Case {
        name: "dirty.get_bitmap_argument_checks",
        run: dirty_get_bitmap_argument_checks,
    },
    Case {
        name: "dirty.bitmap_granule_follows_page_size",
        run: dirty_bitmap_granule_follows_page_size,
    },
    Case {
        name: "dirty.set_tracking_argument_checks",
        run: dirty_set_tracking_argument_checks,
    },
    Case {
        name: "hwpt.alloc_fault_id_and_data_rules",
        run: hwpt_alloc_fault_id_and_data_rules,
    },
    Case {
        name: "vfio_ioas.get_set_clear",
        run: vfio_ioas_get_set_clear,
    },
    Case {
        name: "ioas.iova_ranges_list_holes",
        run: ioas_iova_ranges_list_holes,
    },
    Case {
        name: "ioas.allow_iovas_rules",
        run: ioas_allow_iovas_rules,
    },
    Case {
        name: "ioas.copy_argument_checks",
        run: ioas_copy_argument_checks,
    },
    Case {
        name: "fault.queue_alloc_flags_are_refused",
        run: fault_queue_alloc_flags_are_refused,
    },
    Case {
        name: "ioas.map_without_domain_pins_at_attach",
        run: ioas_map_without_domain_pins_at_attach,
    },
    Case {
        name: "ioas.map_writeable_needs_writable_memory",
        run: ioas_map_writeable_needs_writable_memory,
    },
    Case {
        name: "dirty.walk_failures_are_not_reported",
        run: dirty_walk_failures_are_not_reported,
    },
    Case {
        name: "dirty.enable_clears_stale_bits",
        run: dirty_enable_clears_stale_bits,
    },
    Case {
        name: "hw_info.bad_arguments_are_refused",
        run: hw_info_bad_arguments_are_refused,
    },
    Case {
        name: "ioas.auto_iova_limits",
        run: ioas_auto_iova_limits,
    },
    Case {
        name: "hwpt.alloc_flag_combinations",
        run: hwpt_alloc_flag_combinations,
    },
    Case {
        name: "ioas.copy_outlives_its_source",
        run: ioas_copy_outlives_its_source,
    },
    Case {
        name: "ioas.alignment_rises_only_over_aligned_areas",
        run: ioas_alignment_rises_only_over_aligned_areas,
    },
    Case {
        name: "ioas.copy_of_two_areas_makes_two_areas",
        run: ioas_copy_of_two_areas_makes_two_areas,
    },
    Case {
        name: "ioas.range_arrays_faulting_midway",
        run: ioas_range_arrays_faulting_midway,
    },
    Case {
        name: "fault.iopf_is_read_once_and_answered_by_cookie",
        run: fault_iopf_is_read_once_and_answered_by_cookie,
    },
    Case {
        name: "fault.iopf_without_a_fault_hwpt_is_dropped",
        run: fault_iopf_without_a_fault_hwpt_is_dropped,
    },
    Case {
        name: "fault.leaving_the_attachment_answers_its_faults",
        run: fault_leaving_the_attachment_answers_its_faults,
    },
];

const MIB: u64 = 1 << 20;

/// Issue `request` with the struct in `buf` (its first u32 is the size the kernel reads);
/// a failure is reported as `call`.
///
/// # Safety
///
/// Every user pointer in the struct must be null or valid for what `request` reads and
/// writes through it, for the whole call.
unsafe fn ioctl_as(
    ictx: &Iommufd<Fd>,
    request: u64,
    call: vtd_iommufd::Call,
    buf: &mut [u64],
) -> vtd_iommufd::Result<i32> {
    let size = buf.first().map_or(0, |w| *w as u32) as usize;
    assert!(
        size <= buf.len() * 8,
        "size {size} beyond a {}-byte buffer",
        buf.len() * 8
    );
    // SAFETY: the kernel reads `size` bytes of `buf` (checked to fit) and writes back at
    // most as many; the pointers inside are the caller's promise.
    unsafe { ictx.fd().ioctl(request, buf.as_mut_ptr().cast()) }
        .map_err(|errno| Error::Ioctl { call, errno })
}

/// [`ioctl_as`] for structs without user pointers (or with zero ones); only the errno of
/// a failure is looked at.
fn raw(ictx: &Iommufd<Fd>, request: u64, buf: &mut [u64]) -> vtd_iommufd::Result<i32> {
    // SAFETY: the structs passed here carry no user pointers, or zero ones.
    unsafe { ioctl_as(ictx, request, vtd_iommufd::Call::Destroy, buf) }
}

/// A fresh iommufd with an IOAS and a mock device attached to it.
fn with_mock(t: &dyn Target, log: &mut Log) -> Result<(Iommufd<Fd>, u32, MockDomain), Failure> {
    let ictx = t.iommufd()?;
    let ioas = log.ok("ioas", ictx.ioas_alloc())?;
    let mock = log.ok("mock_domain", ictx.test_mock_domain(ioas))?;
    log.note(
        "ids",
        format!("{ioas},{},{},{}", mock.stdev_id, mock.idev_id, mock.hwpt_id),
    );
    Ok((ictx, ioas, mock))
}

fn map_fixed(ictx: &Iommufd<Fd>, ioas: u32, buf: &Buffer, iova: u64) -> vtd_iommufd::Result<u64> {
    // SAFETY: `buf` outlives the iommufd in every case (declared before it), so the range
    // stays mapped while it is in the IOAS.
    unsafe {
        ictx.ioas_map(
            ioas,
            buf.as_ptr(),
            buf.len() as u64,
            Some(iova),
            MapFlags::READABLE | MapFlags::WRITEABLE,
        )
    }
}

fn map_auto(ictx: &Iommufd<Fd>, ioas: u32, buf: &Buffer) -> vtd_iommufd::Result<u64> {
    // SAFETY: as for map_fixed.
    unsafe {
        ictx.ioas_map(
            ioas,
            buf.as_ptr(),
            buf.len() as u64,
            None,
            MapFlags::READABLE | MapFlags::WRITEABLE,
        )
    }
}

fn buffer(len: u64) -> Result<Buffer, Failure> {
    Buffer::new(len as usize).map_err(|e| Failure(format!("mmap: {e}")))
}

fn size_below_minimum_is_einval(t: &dyn Target, log: &mut Log) -> Outcome {
    let ictx = t.iommufd()?;
    for (name, request, min) in [
        ("destroy", IOMMU_DESTROY, 8u64),
        ("ioas_alloc", IOMMU_IOAS_ALLOC, 12),
        ("ioas_map", IOMMU_IOAS_MAP, 40),
        ("hwpt_alloc", IOMMU_HWPT_ALLOC, 24),
        ("get_hw_info", IOMMU_GET_HW_INFO, 32),
        ("hwpt_invalidate", IOMMU_HWPT_INVALIDATE, 32),
        ("test_cmd", IOMMU_TEST_CMD, 68),
    ] {
        let mut buf = [0u64; 10];
        buf[0] = min - 1;
        log.errno(name, raw(&ictx, request, &mut buf), Errno::EINVAL)?;
    }
    Ok(())
}

fn size_zero_tail_is_accepted(t: &dyn Target, log: &mut Log) -> Outcome {
    let ictx = t.iommufd()?;
    // struct iommu_ioas_alloc is 12 bytes; 8 more zero bytes are a newer user's struct.
    let mut buf = [20u64, 0, 0];
    log.ok("ioas_alloc_20", raw(&ictx, IOMMU_IOAS_ALLOC, &mut buf))?;
    log.eq("out_ioas_id", buf[1] as u32, 1)?;
    log.eq("tail_untouched", buf[2], 0)
}

fn size_nonzero_tail_is_e2big(t: &dyn Target, log: &mut Log) -> Outcome {
    let ictx = t.iommufd()?;
    let mut buf = [20u64, 0, 1];
    log.errno(
        "ioas_alloc_tail",
        raw(&ictx, IOMMU_IOAS_ALLOC, &mut buf),
        Errno::E2BIG,
    )?;
    let mut buf = [16u64, 1 << 8];
    log.errno(
        "destroy_tail",
        raw(&ictx, IOMMU_DESTROY, &mut buf),
        Errno::E2BIG,
    )?;
    let mut buf = [16u64, 0];
    log.errno(
        "destroy_zero_tail_id0",
        raw(&ictx, IOMMU_DESTROY, &mut buf),
        Errno::ENOENT,
    )
}

fn size_short_struct(t: &dyn Target, log: &mut Log) -> Outcome {
    let (ictx, ioas, mock) = with_mock(t, log)?;
    // HWPT_ALLOC up to __reserved (24 bytes): data_type and the rest read as zero.
    let mut buf = [0u64; 6];
    buf[0] = 24; // size 24, flags 0
    buf[1] = mock.idev_id as u64 | (ioas as u64) << 32;
    buf[3] = 0xDEAD_BEEF_DEAD_BEEF; // data_type and data_len: past the short struct
    log.ok("hwpt_alloc_24", raw(&ictx, IOMMU_HWPT_ALLOC, &mut buf))?;
    log.note("out_hwpt_id", buf[2] as u32);
    log.eq("beyond_size_untouched", buf[3], 0xDEAD_BEEF_DEAD_BEEF)?;
    // GET_HW_INFO up to __reserved (32 bytes): out_capabilities is not written back.
    let mut buf = [0u64; 6];
    buf[0] = 32; // size 32, flags 0
    buf[1] = mock.idev_id as u64; // dev_id, data_len 0
    buf[4] = 0x1234_5678;
    log.ok("get_hw_info_32", raw(&ictx, IOMMU_GET_HW_INFO, &mut buf))?;
    log.eq(
        "out_data_type",
        format!("{:#x}", buf[3] as u32),
        format!("{IOMMU_HW_INFO_TYPE_SELFTEST:#x}"),
    )?;
    log.eq("capabilities_untouched", buf[4], 0x1234_5678)
}

fn dispatch_unknown_command_is_enotty(t: &dyn Target, log: &mut Log) -> Outcome {
    let ictx = t.iommufd()?;
    for (name, nr) in [
        ("nr_0x7f", 0x7f),
        ("nr_0x8f", 0x8f),
        ("nr_0x9f", 0x9f),
        ("nr_0xa1", 0xa1),
    ] {
        let mut buf = [16u64, 0];
        log.errno(name, raw(&ictx, io(nr), &mut buf), Errno::ENOTTY)?;
    }
    // The size is read before the table is looked at: a NULL argument faults first.
    // SAFETY: a NULL argument; the kernel reports EFAULT instead of touching it.
    let r = unsafe { ictx.fd().ioctl(IOMMU_DESTROY, std::ptr::null_mut()) };
    log.errno(
        "destroy_null",
        r.map_err(|errno| Error::Ioctl {
            call: vtd_iommufd::Call::Destroy,
            errno,
        }),
        Errno::EFAULT,
    )
}

fn objects_ids_lowest_free(t: &dyn Target, log: &mut Log) -> Outcome {
    let ictx = t.iommufd()?;
    let ids: Vec<u32> = (0..3)
        .map(|_| ictx.ioas_alloc())
        .collect::<Result<_, _>>()?;
    log.eq("first_three", format!("{ids:?}"), "[1, 2, 3]".to_string())?;
    log.ok("destroy_2", ictx.destroy(2))?;
    log.eq("reused", ictx.ioas_alloc()?, 2)?;
    log.eq("next", ictx.ioas_alloc()?, 4)
}

fn objects_unknown_id_is_enoent(t: &dyn Target, log: &mut Log) -> Outcome {
    let ictx = t.iommufd()?;
    log.errno("destroy_0", ictx.destroy(0), Errno::ENOENT)?;
    log.errno("destroy_99", ictx.destroy(99), Errno::ENOENT)?;
    let ioas = ictx.ioas_alloc()?;
    log.ok("destroy", ictx.destroy(ioas))?;
    log.errno("destroy_twice", ictx.destroy(ioas), Errno::ENOENT)?;
    log.errno("unmap_gone", ictx.ioas_unmap_all(ioas), Errno::ENOENT)
}

fn objects_wrong_type_is_enoent(t: &dyn Target, log: &mut Log) -> Outcome {
    let buf = buffer(0x4000)?;
    let (ictx, _ioas, mock) = with_mock(t, log)?;
    log.errno(
        "map_into_hwpt",
        map_fixed(&ictx, mock.hwpt_id, &buf, MOCK_APERTURE_START),
        Errno::ENOENT,
    )?;
    log.errno(
        "ranges_of_device",
        ictx.ioas_iova_ranges(mock.idev_id),
        Errno::ENOENT,
    )?;
    log.errno(
        "hw_info_of_ioas",
        ictx.get_hw_info_into(1, &mut [0u8; 8]),
        Errno::ENOENT,
    )?;
    log.errno(
        "check_iotlb_of_paging",
        ictx.test_md_check_iotlb(mock.hwpt_id, 0, 0),
        Errno::ENOENT,
    )
}

fn objects_referenced_are_ebusy(t: &dyn Target, log: &mut Log) -> Outcome {
    let (ictx, ioas, mock) = with_mock(t, log)?;
    log.errno("destroy_ioas", ictx.destroy(ioas), Errno::EBUSY)?;
    log.errno(
        "destroy_auto_hwpt",
        ictx.destroy(mock.hwpt_id),
        Errno::EBUSY,
    )?;
    log.errno("destroy_device", ictx.destroy(mock.idev_id), Errno::EBUSY)?;
    log.ok("destroy_stdev", ictx.destroy(mock.stdev_id))?;
    // The automatic HWPT went with its last device, the DEVICE with its mock device.
    log.errno("auto_hwpt_gone", ictx.destroy(mock.hwpt_id), Errno::ENOENT)?;
    log.errno("device_gone", ictx.destroy(mock.idev_id), Errno::ENOENT)?;
    log.ok("destroy_ioas_after", ictx.destroy(ioas))
}

fn ioas_map_reaches_the_mock_domain(t: &dyn Target, log: &mut Log) -> Outcome {
    let a = buffer(0x4000)?;
    let b = buffer(0x4000)?;
    let (ictx, ioas, mock) = with_mock(t, log)?;
    let fixed = MOCK_APERTURE_START;
    log.ok("map_fixed", map_fixed(&ictx, ioas, &a, fixed))?;
    log.ok(
        "check_fixed",
        ictx.test_md_check_map(mock.hwpt_id, fixed, 0x4000, a.as_ptr()),
    )?;
    let auto = log.ok("map_auto", map_auto(&ictx, ioas, &b))?;
    log.note("auto_iova", format!("{auto:#x}"));
    log.check(
        "auto_in_aperture",
        (MOCK_APERTURE_START..=MOCK_APERTURE_LAST).contains(&auto),
    )?;
    log.ok(
        "check_auto",
        ictx.test_md_check_map(mock.hwpt_id, auto, 0x4000, b.as_ptr()),
    )?;
    log.errno(
        "check_wrong_pages",
        ictx.test_md_check_map(mock.hwpt_id, fixed, 0x4000, b.as_ptr()),
        Errno::EINVAL,
    )?;
    log.errno(
        "check_misaligned",
        ictx.test_md_check_map(mock.hwpt_id, fixed + 1, 0x800, a.as_ptr()),
        Errno::EINVAL,
    )?;
    log.errno(
        "map_below_aperture",
        map_fixed(&ictx, ioas, &a, 0x10_0000),
        Errno::EINVAL,
    )?;
    log.errno(
        "map_over_area",
        map_fixed(&ictx, ioas, &a, fixed + 0x2000),
        Errno::EEXIST,
    )?;
    log.errno(
        "map_unaligned",
        map_fixed(&ictx, ioas, &a, fixed + 0x10_0400),
        Errno::EINVAL,
    )
}

fn ioas_iova_ranges_follow_aperture(t: &dyn Target, log: &mut Log) -> Outcome {
    let ictx = t.iommufd()?;
    let ioas = ictx.ioas_alloc()?;
    let r = log.ok("ranges_empty", ictx.ioas_iova_ranges(ioas))?;
    log.eq(
        "empty",
        format!("{:x?}/{}", r.ranges, r.alignment),
        format!("{:x?}/1", [(0u64, u64::MAX)]),
    )?;
    // Too small an array: EMSGSIZE, and the count needed is written back.
    let mut buf = [0u64; 4];
    buf[0] = 32 | (ioas as u64) << 32;
    log.errno(
        "ranges_no_room",
        raw(&ictx, IOMMU_IOAS_IOVA_RANGES, &mut buf),
        Errno::EMSGSIZE,
    )?;
    log.eq("num_iovas_needed", buf[1] as u32, 1)?;
    let _mock = log.ok("mock_domain", ictx.test_mock_domain(ioas))?;
    let r = log.ok("ranges_mock", ictx.ioas_iova_ranges(ioas))?;
    log.eq(
        "mock",
        format!("{:x?}/{}", r.ranges, r.alignment),
        format!("{:x?}/2048", [(MOCK_APERTURE_START, MOCK_APERTURE_LAST)]),
    )
}

fn ioas_unmap_whole_areas_only(t: &dyn Target, log: &mut Log) -> Outcome {
    let a = buffer(0x4000)?;
    let b = buffer(0x4000)?;
    let (ictx, ioas, _mock) = with_mock(t, log)?;
    let base = MOCK_APERTURE_START + 16 * MIB;
    log.ok("map_a", map_fixed(&ictx, ioas, &a, base))?;
    log.ok("map_b", map_fixed(&ictx, ioas, &b, base + 0x4000))?;
    log.errno(
        "unmap_half",
        ictx.ioas_unmap(ioas, base, 0x2000),
        Errno::ENOENT,
    )?;
    log.errno(
        "unmap_hole",
        ictx.ioas_unmap(ioas, base + MIB, 0x1000),
        Errno::ENOENT,
    )?;
    log.errno("unmap_len0", ictx.ioas_unmap(ioas, base, 0), Errno::EINVAL)?;
    log.eq("unmap_a", ictx.ioas_unmap(ioas, base, 0x4000)?, 0x4000)?;
    log.eq("unmap_all", ictx.ioas_unmap_all(ioas)?, 0x4000)?;
    log.eq("unmap_all_empty", ictx.ioas_unmap_all(ioas)?, 0)
}

fn ioas_copy_maps_the_same_pages(t: &dyn Target, log: &mut Log) -> Outcome {
    let a = buffer(0x8000)?;
    let (ictx, dst, mock) = with_mock(t, log)?;
    let src = log.ok("src_ioas", ictx.ioas_alloc())?;
    log.ok("map_src", map_fixed(&ictx, src, &a, 0x10_0000))?;
    let rw = MapFlags::READABLE | MapFlags::WRITEABLE;
    let at = MOCK_APERTURE_START + 0x40_0000;
    log.ok(
        "copy",
        ictx.ioas_copy(dst, src, 0x10_0000, 0x8000, Some(at), rw),
    )?;
    log.ok(
        "check_copy",
        ictx.test_md_check_map(mock.hwpt_id, at, 0x8000, a.as_ptr()),
    )?;
    // A sub-range of a source area is fine too.
    let part = log.ok(
        "copy_part_auto",
        ictx.ioas_copy(dst, src, 0x10_2000, 0x2000, None, rw),
    )?;
    log.note("copy_part_iova", format!("{part:#x}"));
    // SAFETY: pointer arithmetic inside the buffer.
    let mid = unsafe { a.as_ptr().add(0x2000) };
    log.ok(
        "check_part",
        ictx.test_md_check_map(mock.hwpt_id, part, 0x2000, mid),
    )?;
    log.errno(
        "copy_no_source",
        ictx.ioas_copy(dst, src, 0x20_0000, 0x1000, None, rw),
        Errno::ENOENT,
    )?;
    log.errno(
        "copy_bad_dst",
        ictx.ioas_copy(99, src, 0x10_0000, 0x1000, None, rw),
        Errno::ENOENT,
    )?;
    log.errno(
        "copy_over_area",
        ictx.ioas_copy(dst, src, 0x10_0000, 0x1000, Some(at), rw),
        Errno::EEXIST,
    )
}

fn ioas_reserved_and_allowed(t: &dyn Target, log: &mut Log) -> Outcome {
    let a = buffer(0x4000)?;
    let (ictx, ioas, _mock) = with_mock(t, log)?;
    let resv = MOCK_APERTURE_START + 32 * MIB;
    log.ok("add_reserved", ictx.test_add_reserved(ioas, resv, MIB))?;
    log.errno(
        "map_into_reserved",
        map_fixed(&ictx, ioas, &a, resv),
        Errno::EINVAL,
    )?;
    log.errno(
        "add_reserved_len0",
        ictx.test_add_reserved(ioas, resv, 0),
        Errno::EINVAL,
    )?;
    log.errno(
        "add_reserved_overflow",
        ictx.test_add_reserved(ioas, u64::MAX, 2),
        Errno::EOVERFLOW,
    )?;
    let allowed = (1u64 << 30, (1u64 << 30) + 16 * MIB - 1);
    log.ok("allow", ictx.ioas_allow_iovas(ioas, &[allowed]))?;
    let auto = log.ok("map_auto", map_auto(&ictx, ioas, &a))?;
    log.note("auto_iova", format!("{auto:#x}"));
    log.check("auto_in_allowed", (allowed.0..=allowed.1).contains(&auto))?;
    log.errno(
        "allow_reserved",
        ictx.ioas_allow_iovas(ioas, &[(resv, resv + 0xFFFF)]),
        Errno::EADDRINUSE,
    )?;
    log.errno(
        "reserve_over_allowed",
        ictx.test_add_reserved(ioas, allowed.0, MIB),
        Errno::EADDRINUSE,
    )?;
    log.errno(
        "reserve_over_area",
        ictx.test_add_reserved(ioas, auto, 0x1000),
        Errno::EADDRINUSE,
    )
}

fn hwpt_alloc(ictx: &Iommufd<Fd>, flags: u32, dev: u32, pt: u32) -> vtd_iommufd::Result<u32> {
    ictx.hwpt_alloc_raw(&mut iommu_hwpt_alloc {
        size: size_of::<iommu_hwpt_alloc>(),
        flags,
        dev_id: dev,
        pt_id: pt,
        ..Default::default()
    })
}

fn hwpt_paging_alloc_rules(t: &dyn Target, log: &mut Log) -> Outcome {
    let (ictx, ioas, mock) = with_mock(t, log)?;
    let dev = mock.idev_id;
    let np = HwptAllocFlags::NEST_PARENT.bits();
    log.errno(
        "flags_unknown",
        hwpt_alloc(&ictx, !np, dev, ioas),
        Errno::EOPNOTSUPP,
    )?;
    log.eq("plain", hwpt_alloc(&ictx, 0, dev, ioas)?, 5)?;
    log.eq("nest_parent", hwpt_alloc(&ictx, np, dev, ioas)?, 6)?;
    log.eq(
        "dirty",
        hwpt_alloc(&ictx, HwptAllocFlags::DIRTY_TRACKING.bits(), dev, ioas)?,
        7,
    )?;
    let mut cmd = iommu_hwpt_alloc {
        size: size_of::<iommu_hwpt_alloc>(),
        dev_id: dev,
        pt_id: ioas,
        __reserved: 1,
        ..Default::default()
    };
    log.errno(
        "reserved_set",
        ictx.hwpt_alloc_raw(&mut cmd),
        Errno::EOPNOTSUPP,
    )?;
    log.errno(
        "dev_is_ioas",
        hwpt_alloc(&ictx, 0, ioas, ioas),
        Errno::ENOENT,
    )?;
    log.errno(
        "pt_is_device",
        hwpt_alloc(&ictx, 0, dev, dev),
        Errno::EINVAL,
    )?;
    log.errno("pt_missing", hwpt_alloc(&ictx, 0, dev, 99), Errno::EINVAL)?;
    let mut cmd = iommu_hwpt_alloc {
        size: size_of::<iommu_hwpt_alloc>(),
        dev_id: dev,
        pt_id: ioas,
        data_type: IOMMU_HWPT_DATA_NONE,
        data_len: 4,
        ..Default::default()
    };
    log.errno(
        "none_with_len",
        ictx.hwpt_alloc_raw(&mut cmd),
        Errno::EINVAL,
    )?;
    let mut s = 0u32;
    let mut cmd = iommu_hwpt_alloc {
        size: size_of::<iommu_hwpt_alloc>(),
        dev_id: dev,
        pt_id: ioas,
        data_type: IOMMU_HWPT_DATA_SELFTEST,
        data_len: 4,
        data_uptr: &mut s as *mut u32 as u64,
        ..Default::default()
    };
    log.errno(
        "paging_with_data",
        ictx.hwpt_alloc_raw(&mut cmd),
        Errno::EOPNOTSUPP,
    )
}

fn nested_raw(
    ictx: &Iommufd<Fd>,
    flags: u32,
    dev: u32,
    parent: u32,
    data_type: u32,
    len: u32,
    uptr: u64,
) -> vtd_iommufd::Result<u32> {
    ictx.hwpt_alloc_raw(&mut iommu_hwpt_alloc {
        size: size_of::<iommu_hwpt_alloc>(),
        flags,
        dev_id: dev,
        pt_id: parent,
        data_type,
        data_len: len,
        data_uptr: uptr,
        ..Default::default()
    })
}

fn hwpt_nested_alloc_rules(t: &dyn Target, log: &mut Log) -> Outcome {
    let (ictx, ioas, mock) = with_mock(t, log)?;
    let dev = mock.idev_id;
    let parent = log.ok(
        "parent",
        ictx.hwpt_alloc_paging(dev, ioas, HwptAllocFlags::NEST_PARENT),
    )?;
    let not_parent = log.ok(
        "not_parent",
        ictx.hwpt_alloc_paging(dev, ioas, HwptAllocFlags::empty()),
    )?;
    let mut data = IOMMU_TEST_IOTLB_DEFAULT;
    let ptr = &mut data as *mut u32 as u64;
    log.errno(
        "type_none",
        nested_raw(&ictx, 0, dev, parent, IOMMU_HWPT_DATA_NONE, 0, 0),
        Errno::EOPNOTSUPP,
    )?;
    log.errno(
        "type_unknown",
        nested_raw(&ictx, 0, dev, parent, IOMMU_HWPT_DATA_SELFTEST + 1, 4, ptr),
        Errno::EOPNOTSUPP,
    )?;
    log.errno(
        "len_short",
        nested_raw(&ictx, 0, dev, parent, IOMMU_HWPT_DATA_SELFTEST, 3, ptr),
        Errno::EINVAL,
    )?;
    log.errno(
        "len_long",
        nested_raw(&ictx, 0, dev, parent, IOMMU_HWPT_DATA_SELFTEST, 8, ptr),
        Errno::EINVAL,
    )?;
    log.errno(
        "uptr_null",
        nested_raw(&ictx, 0, dev, parent, IOMMU_HWPT_DATA_SELFTEST, 4, 0),
        Errno::EFAULT,
    )?;
    let np = HwptAllocFlags::NEST_PARENT.bits();
    log.errno(
        "flag_nest_parent",
        nested_raw(&ictx, np, dev, parent, IOMMU_HWPT_DATA_SELFTEST, 4, ptr),
        Errno::EOPNOTSUPP,
    )?;
    log.errno(
        "on_not_parent",
        nested_raw(&ictx, 0, dev, not_parent, IOMMU_HWPT_DATA_SELFTEST, 4, ptr),
        Errno::EINVAL,
    )?;
    log.errno(
        "on_auto_hwpt",
        nested_raw(
            &ictx,
            0,
            dev,
            mock.hwpt_id,
            IOMMU_HWPT_DATA_SELFTEST,
            4,
            ptr,
        ),
        Errno::EINVAL,
    )?;
    let nested = log.ok(
        "nested",
        ictx.hwpt_alloc_selftest_nested(dev, parent, IOMMU_TEST_IOTLB_DEFAULT),
    )?;
    log.note("nested_id", nested);
    for i in 0..4 {
        log.ok(
            &format!("iotlb{i}_default"),
            ictx.test_md_check_iotlb(nested, i, IOMMU_TEST_IOTLB_DEFAULT),
        )?;
    }
    log.errno(
        "iotlb4",
        ictx.test_md_check_iotlb(nested, 4, IOMMU_TEST_IOTLB_DEFAULT),
        Errno::EINVAL,
    )?;
    log.errno(
        "on_nested",
        nested_raw(&ictx, 0, dev, nested, IOMMU_HWPT_DATA_SELFTEST, 4, ptr),
        Errno::EINVAL,
    )?;
    log.errno("destroy_parent", ictx.destroy(parent), Errno::EBUSY)
}

/// A fresh iommufd with a mock device attached to a nested HWPT on a nest parent.
fn with_nested(
    t: &dyn Target,
    log: &mut Log,
) -> Result<(Iommufd<Fd>, u32, MockDomain, u32, u32), Failure> {
    let (ictx, ioas, mock) = with_mock(t, log)?;
    let parent = log.ok(
        "parent",
        ictx.hwpt_alloc_paging(mock.idev_id, ioas, HwptAllocFlags::NEST_PARENT),
    )?;
    let nested = log.ok(
        "nested",
        ictx.hwpt_alloc_selftest_nested(mock.idev_id, parent, IOMMU_TEST_IOTLB_DEFAULT),
    )?;
    log.ok(
        "replace_nested",
        ictx.test_mock_domain_replace(mock.stdev_id, nested),
    )?;
    Ok((ictx, ioas, mock, parent, nested))
}

fn iotlb_state(ictx: &Iommufd<Fd>, nested: u32) -> String {
    (0..4)
        .map(|i| match ictx.test_md_check_iotlb(nested, i, 0) {
            Ok(()) => '0',
            Err(_) => match ictx.test_md_check_iotlb(nested, i, IOMMU_TEST_IOTLB_DEFAULT) {
                Ok(()) => 'd',
                Err(_) => '?',
            },
        })
        .collect()
}

fn inv(flags: u32, iotlb_id: u32) -> iommu_hwpt_invalidate_selftest {
    iommu_hwpt_invalidate_selftest { flags, iotlb_id }
}

fn invalidate_entry_num_written_back(t: &dyn Target, log: &mut Log) -> Outcome {
    let (ictx, _ioas, _mock, _parent, nested) = with_nested(t, log)?;
    log.invalidate("none", ictx.hwpt_invalidate_selftest(nested, &[]), Ok(0))?;
    log.invalidate(
        "bad_flags_second",
        ictx.hwpt_invalidate_selftest(nested, &[inv(0, 0), inv(0xffff_ffff, 0)]),
        Err((Errno::EOPNOTSUPP, 1)),
    )?;
    log.eq(
        "slots_after_first",
        iotlb_state(&ictx, nested),
        "0ddd".into(),
    )?;
    log.invalidate(
        "bad_id_second",
        ictx.hwpt_invalidate_selftest(nested, &[inv(0, 0), inv(0, 4)]),
        Err((Errno::EINVAL, 1)),
    )?;
    log.invalidate(
        "one",
        ictx.hwpt_invalidate_selftest(nested, &[inv(0, 1)]),
        Ok(1),
    )?;
    log.eq("slots_after_one", iotlb_state(&ictx, nested), "00dd".into())?;
    log.invalidate(
        "two",
        ictx.hwpt_invalidate_selftest(nested, &[inv(0, 2), inv(0, 3)]),
        Ok(2),
    )?;
    log.eq("slots_after_two", iotlb_state(&ictx, nested), "0000".into())?;
    let (ictx2, _i, _m, _p, nested2) = with_nested(t, log)?;
    log.invalidate(
        "all",
        ictx2.hwpt_invalidate_selftest(nested2, &[inv(IOMMU_TEST_INVALIDATE_FLAG_ALL, 0)]),
        Ok(1),
    )?;
    log.eq(
        "slots_after_all",
        iotlb_state(&ictx2, nested2),
        "0000".into(),
    )
}

fn invalidate_raw(
    ictx: &Iommufd<Fd>,
    hwpt: u32,
    data_type: u32,
    entry_len: u32,
    num: u32,
    uptr: u64,
    reserved: u32,
) -> (vtd_iommufd::Result<()>, u32) {
    let mut cmd = iommu_hwpt_invalidate {
        size: size_of::<iommu_hwpt_invalidate>(),
        hwpt_id: hwpt,
        data_uptr: uptr,
        data_type,
        entry_len,
        entry_num: num,
        __reserved: reserved,
    };
    let r = ictx.hwpt_invalidate_raw(&mut cmd);
    (r, cmd.entry_num)
}

fn invalidate_bad_requests(t: &dyn Target, log: &mut Log) -> Outcome {
    let (ictx, _ioas, _mock, parent, nested) = with_nested(t, log)?;
    let entries = [inv(0, 0), inv(0, 1)];
    let ptr = entries.as_ptr() as u64;
    let ty = IOMMU_HWPT_INVALIDATE_DATA_SELFTEST;
    for (label, hwpt, data_type, len, num, uptr, reserved, want) in [
        (
            "wrong_type",
            nested,
            IOMMU_HWPT_INVALIDATE_DATA_SELFTEST_INVALID,
            8,
            1,
            ptr,
            0,
            Errno::EINVAL,
        ),
        ("entry_len_long", nested, ty, 9, 1, ptr, 0, Errno::EINVAL),
        ("entry_len_1", nested, ty, 1, 1, ptr, 0, Errno::EINVAL),
        ("entry_len_0", nested, ty, 0, 1, ptr, 0, Errno::EINVAL),
        ("uptr_null", nested, ty, 8, 1, 0, 0, Errno::EINVAL),
        ("reserved", nested, ty, 8, 1, ptr, 1, Errno::EOPNOTSUPP),
        ("on_parent", parent, ty, 8, 1, ptr, 0, Errno::ENOENT),
        ("on_missing", 99, ty, 8, 1, ptr, 0, Errno::ENOENT),
    ] {
        let (r, n) = invalidate_raw(&ictx, hwpt, data_type, len, num, uptr, reserved);
        log.errno(label, r, want)?;
        log.eq(&format!("{label}_num"), n, 0)?;
    }
    log.eq("slots_untouched", iotlb_state(&ictx, nested), "dddd".into())
}

fn replace_moves_the_device(t: &dyn Target, log: &mut Log) -> Outcome {
    let (ictx, ioas, mock) = with_mock(t, log)?;
    let dev = mock.idev_id;
    let parent = log.ok(
        "parent",
        ictx.hwpt_alloc_paging(dev, ioas, HwptAllocFlags::NEST_PARENT),
    )?;
    let nested = log.ok("nested", ictx.hwpt_alloc_selftest_nested(dev, parent, 0))?;
    log.eq(
        "to_nested",
        ictx.test_mock_domain_replace(mock.stdev_id, nested)?,
        nested,
    )?;
    // The automatic HWPT lost its only device and went away.
    log.errno("auto_gone", ictx.destroy(mock.hwpt_id), Errno::ENOENT)?;
    log.eq(
        "same_again",
        ictx.test_mock_domain_replace(mock.stdev_id, nested)?,
        nested,
    )?;
    log.errno(
        "destroy_nested_attached",
        ictx.destroy(nested),
        Errno::EBUSY,
    )?;
    log.eq(
        "to_parent",
        ictx.test_mock_domain_replace(mock.stdev_id, parent)?,
        parent,
    )?;
    log.ok("destroy_nested_detached", ictx.destroy(nested))?;
    let auto = log.ok(
        "to_ioas",
        ictx.test_mock_domain_replace(mock.stdev_id, ioas),
    )?;
    log.note("new_auto_hwpt", auto);
    log.ok("destroy_parent_detached", ictx.destroy(parent))?;
    log.errno(
        "to_missing",
        ictx.test_mock_domain_replace(mock.stdev_id, 99),
        Errno::ENOENT,
    )?;
    log.errno(
        "to_device",
        ictx.test_mock_domain_replace(mock.stdev_id, dev),
        Errno::EINVAL,
    )?;
    log.errno(
        "missing_stdev",
        ictx.test_mock_domain_replace(99, ioas),
        Errno::ENOENT,
    )
}

fn destroy_dependency_order(t: &dyn Target, log: &mut Log) -> Outcome {
    let (ictx, ioas, mock, parent, nested) = with_nested(t, log)?;
    log.errno("ioas_first", ictx.destroy(ioas), Errno::EBUSY)?;
    log.errno("parent_first", ictx.destroy(parent), Errno::EBUSY)?;
    log.errno("nested_attached", ictx.destroy(nested), Errno::EBUSY)?;
    log.ok("stdev", ictx.destroy(mock.stdev_id))?;
    log.errno("parent_with_child", ictx.destroy(parent), Errno::EBUSY)?;
    log.ok("nested", ictx.destroy(nested))?;
    log.errno("ioas_with_parent", ictx.destroy(ioas), Errno::EBUSY)?;
    log.ok("parent", ictx.destroy(parent))?;
    log.ok("ioas", ictx.destroy(ioas))?;
    log.eq("next_id", ictx.ioas_alloc()?, 1)
}

fn hw_info_mock_device(t: &dyn Target, log: &mut Log) -> Outcome {
    let (ictx, ioas, mock) = with_mock(t, log)?;
    let mut data = [0xAAu8; 16];
    let info = log.ok("hw_info_16", ictx.get_hw_info_into(mock.idev_id, &mut data))?;
    log.eq(
        "type",
        format!("{:#x}", info.data_type),
        format!("{IOMMU_HW_INFO_TYPE_SELFTEST:#x}"),
    )?;
    log.eq("data_len", info.data_len, 8)?;
    log.eq(
        "caps",
        info.capabilities.bits(),
        HwCaps::DIRTY_TRACKING.bits(),
    )?;
    log.eq(
        "flags",
        u32::from_le_bytes(data[0..4].try_into().unwrap_or_default()),
        0,
    )?;
    log.eq(
        "test_reg",
        format!(
            "{:#x}",
            u32::from_le_bytes(data[4..8].try_into().unwrap_or_default())
        ),
        format!("{IOMMU_HW_INFO_SELFTEST_REGVAL:#x}"),
    )?;
    log.eq(
        "tail_zeroed",
        format!("{:?}", &data[8..]),
        format!("{:?}", [0u8; 8]),
    )?;
    let mut data = [0xAAu8; 8];
    let info = log.ok(
        "hw_info_4",
        ictx.get_hw_info_into(mock.idev_id, &mut data[..4]),
    )?;
    log.eq("data_len_4", info.data_len, 8)?;
    log.eq(
        "past_4_untouched",
        format!("{:?}", &data[4..]),
        format!("{:?}", [0xAAu8; 4]),
    )?;
    let info = log.ok("hw_info_0", ictx.get_hw_info_into(mock.idev_id, &mut []))?;
    log.eq("data_len_0", info.data_len, 8)?;
    log.errno(
        "hw_info_bad_dev",
        ictx.get_hw_info_into(99, &mut data),
        Errno::ENOENT,
    )?;
    let nd = log.ok(
        "no_dirty_dev",
        ictx.test_mock_domain_flags(ioas, MOCK_FLAGS_DEVICE_NO_DIRTY),
    )?;
    let info = log.ok(
        "hw_info_no_dirty",
        ictx.get_hw_info_into(nd.idev_id, &mut data),
    )?;
    log.eq("caps_no_dirty", info.capabilities.bits(), 0)
}

fn dirty_marked_pages_reported_once(t: &dyn Target, log: &mut Log) -> Outcome {
    let a = buffer(0x4000)?;
    let (ictx, ioas, mock) = with_mock(t, log)?;
    let hwpt = log.ok(
        "dirty_hwpt",
        ictx.hwpt_alloc_paging(mock.idev_id, ioas, HwptAllocFlags::DIRTY_TRACKING),
    )?;
    log.ok(
        "replace",
        ictx.test_mock_domain_replace(mock.stdev_id, hwpt),
    )?;
    let iova = MOCK_APERTURE_START;
    log.ok("map", map_fixed(&ictx, ioas, &a, iova))?;
    log.errno(
        "mark_not_tracking",
        ictx.test_dirty(hwpt, iova, 0x4000, 2048, &[0xff]),
        Errno::EINVAL,
    )?;
    log.ok("enable", ictx.hwpt_set_dirty_tracking(hwpt, true))?;
    log.eq(
        "marked",
        ictx.test_dirty(hwpt, iova, 0x4000, 2048, &[0b1000_0101])?,
        3,
    )?;
    let bits = log.ok(
        "read",
        ictx.hwpt_get_dirty_bitmap(hwpt, iova, 0x4000, 2048, false),
    )?;
    log.eq("bitmap", format!("{:#b}", bits[0]), "0b10000101".into())?;
    let bits = log.ok(
        "read_again",
        ictx.hwpt_get_dirty_bitmap(hwpt, iova, 0x4000, 2048, false),
    )?;
    log.eq("bitmap_again", bits[0], 0)?;
    log.eq(
        "marked_keep",
        ictx.test_dirty(hwpt, iova, 0x4000, 2048, &[0b10])?,
        1,
    )?;
    let bits = log.ok(
        "read_no_clear",
        ictx.hwpt_get_dirty_bitmap(hwpt, iova, 0x4000, 2048, true),
    )?;
    log.eq("bitmap_no_clear", bits[0], 0b10)?;
    let bits = log.ok(
        "read_after_no_clear",
        ictx.hwpt_get_dirty_bitmap(hwpt, iova, 0x4000, 4096, false),
    )?;
    log.eq("bitmap_4k", bits[0], 0b1)?;
    log.errno(
        "mark_zero_page_size",
        ictx.test_dirty(hwpt, iova, 0x4000, 0, &[1]),
        Errno::EINVAL,
    )?;
    log.ok("disable", ictx.hwpt_set_dirty_tracking(hwpt, false))
}

/// The mock driver's DIRTY op with bitmaps whose size user space chose: one past INT_MAX
/// bytes is ENOMEM before a byte is read (kvzalloc's limit), and one spanning two pages
/// is read whole, its bits counting wherever a mock PTE exists.
fn dirty_test_bitmap_sizes(t: &dyn Target, log: &mut Log) -> Outcome {
    let a = buffer(0x4000)?;
    let (ictx, _ioas, _mock, hwpt) = with_dirty(t, log, &a)?;
    let iova = MOCK_APERTURE_START;
    // Two pages of bitmap: bits 0 and 3 (mapped 2 KiB pages) in the first, and one far
    // past the mapping in the second.
    let bitmap = buffer(0x2000)?;
    bitmap.set(0, 0b1001);
    bitmap.set(0x1800, 0xff);
    let dirty = |length: u64| {
        let mut cmd = iommu_test_cmd::new(OP_DIRTY, hwpt);
        cmd.set_u64_at(24, iova);
        cmd.set_u64_at(32, length);
        cmd.set_u64_at(40, 2048);
        cmd.set_u64_at(48, bitmap.as_ptr() as u64);
        // SAFETY: the kernel reads at most the bitmap's 0x2000 bytes (length / 2048 / 8)
        // for the lengths below, or nothing when it refuses first; `bitmap` lives across
        // the call.
        unsafe { ictx.test_cmd_raw(&mut cmd) }.map(|()| cmd.u64_at(56))
    };
    log.errno("past_int_max", dirty(2048 * 8 * (1 << 31)), Errno::ENOMEM)?;
    log.eq("two_pages", dirty(2048 * 8 * 0x2000)?, 2)?;
    let bits = log.ok(
        "read",
        ictx.hwpt_get_dirty_bitmap(hwpt, iova, 0x4000, 2048, false),
    )?;
    log.eq("bitmap", format!("{:#b}", bits[0]), "0b1001".into())?;
    log.ok("disable", ictx.hwpt_set_dirty_tracking(hwpt, false))
}

fn dirty_no_dirty_device_refused(t: &dyn Target, log: &mut Log) -> Outcome {
    let (ictx, ioas, mock) = with_mock(t, log)?;
    let hwpt = log.ok(
        "dirty_hwpt",
        ictx.hwpt_alloc_paging(mock.idev_id, ioas, HwptAllocFlags::DIRTY_TRACKING),
    )?;
    let nd = log.ok(
        "no_dirty_dev",
        ictx.test_mock_domain_flags(ioas, MOCK_FLAGS_DEVICE_NO_DIRTY),
    )?;
    log.note(
        "no_dirty_ids",
        format!("{},{},{}", nd.stdev_id, nd.idev_id, nd.hwpt_id),
    );
    log.errno(
        "attach_dirty_hwpt",
        ictx.test_mock_domain_replace(nd.stdev_id, hwpt),
        Errno::EINVAL,
    )?;
    log.errno(
        "alloc_dirty",
        ictx.hwpt_alloc_paging(nd.idev_id, ioas, HwptAllocFlags::DIRTY_TRACKING),
        Errno::EOPNOTSUPP,
    )?;
    log.errno(
        "set_tracking_plain",
        ictx.hwpt_set_dirty_tracking(mock.hwpt_id, true),
        Errno::EOPNOTSUPP,
    )
}

fn test_cmd_bad_ops(t: &dyn Target, log: &mut Log) -> Outcome {
    let ictx = t.iommufd()?;
    let ioas = ictx.ioas_alloc()?;
    for (label, op) in [("op_0", 0u32), ("op_99", 99)] {
        let mut cmd = iommu_test_cmd::new(op, ioas);
        // SAFETY: no user pointers in the payload.
        let r = unsafe { ictx.test_cmd_raw(&mut cmd) };
        log.errno(label, r, Errno::EOPNOTSUPP)?;
    }
    log.errno(
        "mock_flags_unknown",
        ictx.test_mock_domain_flags(ioas, 1 << 7),
        Errno::EINVAL,
    )?;
    log.errno(
        "mock_on_missing_pt",
        ictx.test_mock_domain(99),
        Errno::ENOENT,
    )?;
    // The failed creations released their ids.
    log.eq("next_id", ictx.ioas_alloc()?, 2)?;
    log.errno(
        "check_map_missing",
        ictx.test_md_check_map(99, MOCK_APERTURE_START, 2048, std::ptr::null()),
        Errno::ENOENT,
    )
}

/// `IOMMU_OPTION` values.
const OPTION_RLIMIT_MODE: u32 = 0;
const OPTION_HUGE_PAGES: u32 = 1;
const OPTION_OP_SET: u16 = 0;
const OPTION_OP_GET: u16 = 1;

/// One `IOMMU_OPTION` call: the result and `val64` as the kernel left it.
fn option(
    ictx: &Iommufd<Fd>,
    option_id: u32,
    op: u16,
    object_id: u32,
    val: u64,
    reserved: u16,
) -> (vtd_iommufd::Result<i32>, u64) {
    // struct iommu_option: size, option_id, op, __reserved, object_id, val64.
    let mut buf = [
        24 | (option_id as u64) << 32,
        op as u64 | (reserved as u64) << 16 | (object_id as u64) << 32,
        val,
    ];
    let r = raw(ictx, IOMMU_OPTION, &mut buf);
    (r, buf[2])
}

fn option_get(ictx: &Iommufd<Fd>, option_id: u32, object_id: u32) -> vtd_iommufd::Result<u64> {
    let (r, val) = option(ictx, option_id, OPTION_OP_GET, object_id, 0xAA, 0);
    r.map(|_| val)
}

fn option_set(
    ictx: &Iommufd<Fd>,
    option_id: u32,
    object_id: u32,
    val: u64,
) -> vtd_iommufd::Result<()> {
    option(ictx, option_id, OPTION_OP_SET, object_id, val, 0)
        .0
        .map(|_| ())
}

/// RLIMIT_MODE reads 0 (per-user accounting) on a fresh iommufd and can be set only while
/// the iommufd holds no object: once an IOAS exists a SET is EBUSY and the mode stays.
fn option_rlimit_mode_set_only_when_empty(t: &dyn Target, log: &mut Log) -> Outcome {
    let ictx = t.iommufd()?;
    log.eq("get_default", option_get(&ictx, OPTION_RLIMIT_MODE, 0)?, 0)?;
    log.ok("set_mm", option_set(&ictx, OPTION_RLIMIT_MODE, 0, 1))?;
    log.eq("get_mm", option_get(&ictx, OPTION_RLIMIT_MODE, 0)?, 1)?;
    let ioas = log.ok("ioas", ictx.ioas_alloc())?;
    log.errno(
        "set_with_object",
        option_set(&ictx, OPTION_RLIMIT_MODE, 0, 0),
        Errno::EBUSY,
    )?;
    log.errno(
        "set_bad_val_with_object",
        option_set(&ictx, OPTION_RLIMIT_MODE, 0, 2),
        Errno::EBUSY,
    )?;
    log.eq("get_kept", option_get(&ictx, OPTION_RLIMIT_MODE, 0)?, 1)?;
    log.ok("destroy_ioas", ictx.destroy(ioas))?;
    log.ok(
        "set_user_again",
        option_set(&ictx, OPTION_RLIMIT_MODE, 0, 0),
    )?;
    log.eq("get_user", option_get(&ictx, OPTION_RLIMIT_MODE, 0)?, 0)
}

/// Bad IOMMU_OPTION arguments: an unknown option id or a nonzero `__reserved` is
/// EOPNOTSUPP before any object is looked up; RLIMIT_MODE with an object id or an unknown
/// op is EOPNOTSUPP, with a value past 1 EINVAL; HUGE_PAGES looks its IOAS up first
/// (ENOENT for none, for 0 and for a HWPT), then EOPNOTSUPP for an unknown op and EINVAL
/// for a value past 1.
fn option_bad_arguments_are_refused(t: &dyn Target, log: &mut Log) -> Outcome {
    let (ictx, ioas, mock) = with_mock(t, log)?;
    let get = OPTION_OP_GET;
    for (label, id, op, obj, val, reserved, want) in [
        ("option_2", 2, get, ioas, 0, 0, Errno::EOPNOTSUPP),
        ("option_2_no_object", 2, get, 99, 0, 0, Errno::EOPNOTSUPP),
        ("option_max", u32::MAX, get, 0, 0, 0, Errno::EOPNOTSUPP),
        (
            "reserved",
            OPTION_HUGE_PAGES,
            get,
            99,
            0,
            1,
            Errno::EOPNOTSUPP,
        ),
        (
            "rlimit_object",
            OPTION_RLIMIT_MODE,
            get,
            ioas,
            0,
            0,
            Errno::EOPNOTSUPP,
        ),
        (
            "rlimit_op_2",
            OPTION_RLIMIT_MODE,
            2,
            0,
            0,
            0,
            Errno::EOPNOTSUPP,
        ),
        (
            "huge_no_ioas",
            OPTION_HUGE_PAGES,
            get,
            99,
            0,
            0,
            Errno::ENOENT,
        ),
        (
            "huge_object_0",
            OPTION_HUGE_PAGES,
            get,
            0,
            0,
            0,
            Errno::ENOENT,
        ),
        (
            "huge_on_hwpt",
            OPTION_HUGE_PAGES,
            get,
            mock.hwpt_id,
            0,
            0,
            Errno::ENOENT,
        ),
        (
            "huge_bad_op_no_ioas",
            OPTION_HUGE_PAGES,
            2,
            99,
            0,
            0,
            Errno::ENOENT,
        ),
        (
            "huge_op_2",
            OPTION_HUGE_PAGES,
            2,
            ioas,
            0,
            0,
            Errno::EOPNOTSUPP,
        ),
        (
            "huge_set_2",
            OPTION_HUGE_PAGES,
            OPTION_OP_SET,
            ioas,
            2,
            0,
            Errno::EINVAL,
        ),
    ] {
        let (r, val_after) = option(&ictx, id, op, obj, val, reserved);
        log.errno(label, r, want)?;
        log.eq(&format!("{label}_val"), val_after, val)?;
    }
    // RLIMIT_MODE's value check comes after its emptiness check: on an empty iommufd.
    let empty = t.iommufd()?;
    log.errno(
        "rlimit_set_2_empty",
        option_set(&empty, OPTION_RLIMIT_MODE, 0, 2),
        Errno::EINVAL,
    )?;
    log.eq(
        "huge_still_on",
        option_get(&ictx, OPTION_HUGE_PAGES, ioas)?,
        1,
    )
}

/// HUGE_PAGES is per IOAS, on by default: turning it off on an empty IOAS raises the IOVA
/// alignment IOAS_IOVA_RANGES reports to PAGE_SIZE and leaves other IOASes alone; turning
/// it on again brings the alignment back to 1.
fn option_huge_pages_is_per_ioas(t: &dyn Target, log: &mut Log) -> Outcome {
    let ictx = t.iommufd()?;
    let a = log.ok("ioas_a", ictx.ioas_alloc())?;
    let b = log.ok("ioas_b", ictx.ioas_alloc())?;
    log.eq("get_default", option_get(&ictx, OPTION_HUGE_PAGES, a)?, 1)?;
    log.ok("set_off", option_set(&ictx, OPTION_HUGE_PAGES, a, 0))?;
    log.eq("get_off", option_get(&ictx, OPTION_HUGE_PAGES, a)?, 0)?;
    log.eq("other_on", option_get(&ictx, OPTION_HUGE_PAGES, b)?, 1)?;
    log.eq("align_off", ictx.ioas_iova_ranges(a)?.alignment, 4096)?;
    log.eq("align_other", ictx.ioas_iova_ranges(b)?.alignment, 1)?;
    log.ok("set_off_twice", option_set(&ictx, OPTION_HUGE_PAGES, a, 0))?;
    log.ok("set_on", option_set(&ictx, OPTION_HUGE_PAGES, a, 1))?;
    log.eq("get_on", option_get(&ictx, OPTION_HUGE_PAGES, a)?, 1)?;
    log.eq("align_on", ictx.ioas_iova_ranges(a)?.alignment, 1)
}

/// HUGE_PAGES cannot be turned off while an attached domain has pages mapped (EINVAL);
/// once the IOAS is empty it can, and the alignment becomes the larger of PAGE_SIZE and
/// the mock domain's 2 KiB page.
fn option_huge_pages_off_refused_while_mapped(t: &dyn Target, log: &mut Log) -> Outcome {
    let a = buffer(0x4000)?;
    let (ictx, ioas, _mock) = with_mock(t, log)?;
    log.ok("map", map_fixed(&ictx, ioas, &a, MOCK_APERTURE_START))?;
    log.errno(
        "set_off_mapped",
        option_set(&ictx, OPTION_HUGE_PAGES, ioas, 0),
        Errno::EINVAL,
    )?;
    log.eq("still_on", option_get(&ictx, OPTION_HUGE_PAGES, ioas)?, 1)?;
    log.eq("align_on", ictx.ioas_iova_ranges(ioas)?.alignment, 2048)?;
    log.eq("unmap_all", ictx.ioas_unmap_all(ioas)?, 0x4000)?;
    log.ok(
        "set_off_empty",
        option_set(&ictx, OPTION_HUGE_PAGES, ioas, 0),
    )?;
    log.eq("align_off", ictx.ioas_iova_ranges(ioas)?.alignment, 4096)?;
    log.errno(
        "map_2k_iova",
        map_fixed(&ictx, ioas, &a, MOCK_APERTURE_START + 0x800),
        Errno::EINVAL,
    )?;
    log.ok(
        "map_4k_iova",
        map_fixed(&ictx, ioas, &a, MOCK_APERTURE_START + 0x1000),
    )?;
    Ok(())
}

/// One `IOMMU_IOAS_MAP` with every field chosen; the IOVA written back on success.
fn map_raw(
    ictx: &Iommufd<Fd>,
    flags: u32,
    ioas: u32,
    reserved: u32,
    user_va: u64,
    length: u64,
    iova: u64,
) -> vtd_iommufd::Result<u64> {
    // struct iommu_ioas_map: size, flags, ioas_id, __reserved, user_va, length, iova.
    let mut buf = [
        40 | (flags as u64) << 32,
        ioas as u64 | (reserved as u64) << 32,
        user_va,
        length,
        iova,
    ];
    // SAFETY: the kernel reads the 40-byte struct in `buf` and writes back at most as
    // much. `user_va` is either an address the call refuses before pinning anything or a
    // range of a Buffer that outlives the iommufd (the callers declare it first).
    let r = unsafe { ioctl_as(ictx, IOMMU_IOAS_MAP, vtd_iommufd::Call::IoasMap, &mut buf) };
    r.map(|_| buf[4])
}

/// IOAS_MAP refuses bad flags, `__reserved`, and an IOVA or length of u64::MAX before it
/// looks the IOAS up (so a missing IOAS is not what is reported), then ENOENT for the
/// missing IOAS even with a zero length, whose EINVAL comes after the lookup.
fn ioas_map_checks_come_before_the_lookup(t: &dyn Target, log: &mut Log) -> Outcome {
    let a = buffer(0x4000)?;
    let ictx = t.iommufd()?;
    let ioas = log.ok("ioas", ictx.ioas_alloc())?;
    let va = a.as_ptr() as u64;
    let rw = (MapFlags::READABLE | MapFlags::WRITEABLE).bits();
    let fixed = MapFlags::FIXED_IOVA.bits() | rw;
    for (label, flags, id, reserved, length, iova, want) in [
        (
            "flag_bit3",
            rw | 1 << 3,
            99,
            0,
            0x1000,
            0,
            Errno::EOPNOTSUPP,
        ),
        (
            "flags_high",
            rw | 1 << 31,
            ioas,
            0,
            0x1000,
            0,
            Errno::EOPNOTSUPP,
        ),
        ("reserved", rw, 99, 1, 0x1000, 0, Errno::EOPNOTSUPP),
        ("iova_max", rw, 99, 0, 0x1000, u64::MAX, Errno::EOVERFLOW),
        ("length_max", fixed, 99, 0, u64::MAX, 0, Errno::EOVERFLOW),
        (
            "no_prot",
            MapFlags::FIXED_IOVA.bits(),
            99,
            0,
            0x1000,
            0,
            Errno::EINVAL,
        ),
        ("no_ioas", fixed, 99, 0, 0x1000, 0, Errno::ENOENT),
        ("no_ioas_len0", fixed, 99, 0, 0, 0, Errno::ENOENT),
        ("len0", fixed, ioas, 0, 0, 0, Errno::EINVAL),
    ] {
        log.errno(
            label,
            map_raw(&ictx, flags, id, reserved, va, length, iova),
            want,
        )?;
    }
    log.eq("nothing_mapped", ictx.ioas_unmap_all(ioas)?, 0)
}

/// IOAS_MAP's length and address rules with a mock domain (2 KiB IOVA alignment): a
/// length past SIZE_MAX - PAGE_SIZE or not a multiple of the alignment is EINVAL,
/// user_va + length wrapping is EOVERFLOW, a fixed IOVA whose range wraps is EOVERFLOW,
/// and a user_va whose page offset breaks the alignment is EINVAL, fixed or not; a 2 KiB
/// page offset is fine. Nothing is left mapped by the refusals.
fn ioas_map_length_and_address_rules(t: &dyn Target, log: &mut Log) -> Outcome {
    let a = buffer(0x4000)?;
    let (ictx, ioas, mock) = with_mock(t, log)?;
    let va = a.as_ptr() as u64;
    let rw = (MapFlags::READABLE | MapFlags::WRITEABLE).bits();
    let fixed = MapFlags::FIXED_IOVA.bits() | rw;
    let at = MOCK_APERTURE_START;
    for (label, flags, user_va, length, iova, want) in [
        ("length_huge", rw, va, u64::MAX - 0x800, 0, Errno::EINVAL),
        ("length_1k", fixed, va, 0x400, at, Errno::EINVAL),
        ("length_3k", rw, va, 0xc00, 0, Errno::EINVAL),
        (
            "va_wraps",
            rw,
            u64::MAX - 0xfff,
            0x2000,
            0,
            Errno::EOVERFLOW,
        ),
        (
            "iova_wraps",
            fixed,
            va,
            0x2000,
            u64::MAX - 0x7ff,
            Errno::EOVERFLOW,
        ),
        ("iova_1k", fixed, va, 0x800, at + 0x400, Errno::EINVAL),
        ("va_offset_1k_auto", rw, va + 0x400, 0x800, 0, Errno::EINVAL),
        (
            "va_offset_1k_fixed",
            fixed,
            va + 0x400,
            0x800,
            at,
            Errno::EINVAL,
        ),
    ] {
        log.errno(
            label,
            map_raw(&ictx, flags, ioas, 0, user_va, length, iova),
            want,
        )?;
    }
    log.eq("nothing_mapped", ictx.ioas_unmap_all(ioas)?, 0)?;
    log.eq(
        "va_offset_2k",
        format!(
            "{:#x}",
            map_raw(&ictx, fixed, ioas, 0, va + 0x800, 0x800, at)?
        ),
        format!("{at:#x}"),
    )?;
    // SAFETY: pointer arithmetic inside the buffer.
    let mid = unsafe { a.as_ptr().add(0x800) };
    log.ok(
        "check_2k",
        ictx.test_md_check_map(mock.hwpt_id, at, 0x800, mid),
    )
}

/// IOAS_UNMAP's range rules: a length of u64::MAX with a nonzero IOVA, or an IOVA of
/// u64::MAX, is EOVERFLOW; a range that wraps is EOVERFLOW; a missing IOAS is ENOENT
/// before any of that; an empty range elsewhere is ENOENT; only iova 0 with length
/// u64::MAX is "unmap all", which succeeds even on an empty IOAS.
fn ioas_unmap_range_rules(t: &dyn Target, log: &mut Log) -> Outcome {
    let a = buffer(0x4000)?;
    let (ictx, ioas, _mock) = with_mock(t, log)?;
    log.ok("map", map_fixed(&ictx, ioas, &a, MOCK_APERTURE_START))?;
    log.errno(
        "iova1_len_max",
        ictx.ioas_unmap(ioas, 1, u64::MAX),
        Errno::EOVERFLOW,
    )?;
    log.errno(
        "iova_max",
        ictx.ioas_unmap(ioas, u64::MAX, 1),
        Errno::EOVERFLOW,
    )?;
    log.errno(
        "wraps",
        ictx.ioas_unmap(ioas, u64::MAX - 0xfff, 0x2000),
        Errno::EOVERFLOW,
    )?;
    log.errno(
        "no_ioas_overflow",
        ictx.ioas_unmap(99, 1, u64::MAX),
        Errno::ENOENT,
    )?;
    log.errno(
        "no_ioas_all",
        ictx.ioas_unmap(99, 0, u64::MAX),
        Errno::ENOENT,
    )?;
    log.errno(
        "nothing_there",
        ictx.ioas_unmap(ioas, MOCK_APERTURE_START + MIB, 0x4000),
        Errno::ENOENT,
    )?;
    // Everything but the last byte of the address space: a plain range, still whole areas.
    log.eq(
        "len_max_minus_1",
        ictx.ioas_unmap(ioas, 0, u64::MAX - 1)?,
        0x4000,
    )?;
    log.eq("all_empty", ictx.ioas_unmap(ioas, 0, u64::MAX)?, 0)
}

/// An unmap range that holds whole areas and ends inside another one removes the whole
/// areas it meets first, then fails ENOENT at the split one, which stays mapped: the
/// failure does not undo what was already removed.
fn ioas_unmap_split_area_fails_after_leading_areas(t: &dyn Target, log: &mut Log) -> Outcome {
    let a = buffer(0x4000)?;
    let b = buffer(0x4000)?;
    let c = buffer(0x4000)?;
    let (ictx, ioas, mock) = with_mock(t, log)?;
    let base = MOCK_APERTURE_START + 16 * MIB;
    log.ok("map_a", map_fixed(&ictx, ioas, &a, base))?;
    log.ok("map_b", map_fixed(&ictx, ioas, &b, base + 0x4000))?;
    log.ok("map_c", map_fixed(&ictx, ioas, &c, base + 0x8000))?;
    log.errno(
        "unmap_a_and_half_b",
        ictx.ioas_unmap(ioas, base, 0x6000),
        Errno::ENOENT,
    )?;
    log.errno(
        "a_gone",
        ictx.test_md_check_map(mock.hwpt_id, base, 0x4000, a.as_ptr()),
        Errno::EINVAL,
    )?;
    log.ok(
        "b_kept",
        ictx.test_md_check_map(mock.hwpt_id, base + 0x4000, 0x4000, b.as_ptr()),
    )?;
    // A range starting inside an area removes nothing.
    log.errno(
        "unmap_half_b_and_c",
        ictx.ioas_unmap(ioas, base + 0x6000, 0x6000),
        Errno::ENOENT,
    )?;
    log.ok(
        "c_kept",
        ictx.test_md_check_map(mock.hwpt_id, base + 0x8000, 0x4000, c.as_ptr()),
    )?;
    log.eq("unmap_b_c", ictx.ioas_unmap(ioas, base, 0xc000)?, 0x8000)?;
    log.eq("unmap_all", ictx.ioas_unmap_all(ioas)?, 0)
}

/// One `IOMMU_HWPT_GET_DIRTY_BITMAP` with every field chosen.
#[allow(clippy::too_many_arguments)]
fn dirty_bitmap_raw(
    ictx: &Iommufd<Fd>,
    hwpt: u32,
    flags: u32,
    reserved: u32,
    iova: u64,
    length: u64,
    page_size: u64,
    bitmap: &Buffer,
) -> vtd_iommufd::Result<()> {
    let mut buf = [
        48 | (hwpt as u64) << 32,
        flags as u64 | (reserved as u64) << 32,
        iova,
        length,
        page_size,
        bitmap.as_ptr() as u64,
    ];
    let call = vtd_iommufd::Call::HwptGetDirtyBitmap;
    // SAFETY: the kernel reads the 48-byte struct in `buf` and writes at most
    // length / 2^ffs(page_size) bits into `bitmap`, which the callers size for the ranges
    // they ask about and which lives across the call; refused calls write nothing.
    unsafe { ioctl_as(ictx, IOMMU_HWPT_GET_DIRTY_BITMAP, call, &mut buf) }.map(|_| ())
}

/// A mock device on a dirty-tracking HWPT with 0x4000 bytes mapped at the aperture start
/// and tracking on.
fn with_dirty(
    t: &dyn Target,
    log: &mut Log,
    a: &Buffer,
) -> Result<(Iommufd<Fd>, u32, MockDomain, u32), Failure> {
    let (ictx, ioas, mock) = with_mock(t, log)?;
    let hwpt = log.ok(
        "dirty_hwpt",
        ictx.hwpt_alloc_paging(mock.idev_id, ioas, HwptAllocFlags::DIRTY_TRACKING),
    )?;
    log.ok(
        "replace",
        ictx.test_mock_domain_replace(mock.stdev_id, hwpt),
    )?;
    log.ok("map", map_fixed(&ictx, ioas, a, MOCK_APERTURE_START))?;
    log.ok("enable", ictx.hwpt_set_dirty_tracking(hwpt, true))?;
    Ok((ictx, ioas, mock, hwpt))
}

/// GET_DIRTY_BITMAP's argument checks, in order: unknown flags or `__reserved` are
/// EOPNOTSUPP before the HWPT lookup; a missing HWPT, or an IOAS or DEVICE id, is ENOENT;
/// a wrapping range is EOVERFLOW; an IOVA or end not aligned to the IOAS (2 KiB) or to
/// page_size, or a zero page_size, is EINVAL; a paging HWPT without
/// dirty tracking passes those checks and is EOPNOTSUPP. Nothing is written to the bitmap.
fn dirty_get_bitmap_argument_checks(t: &dyn Target, log: &mut Log) -> Outcome {
    let a = buffer(0x4000)?;
    let bitmap = buffer(0x1000)?;
    let (ictx, ioas, mock, hwpt) = with_dirty(t, log, &a)?;
    let plain = log.ok(
        "plain_hwpt",
        ictx.hwpt_alloc_paging(mock.idev_id, ioas, HwptAllocFlags::empty()),
    )?;
    log.eq(
        "marked",
        ictx.test_dirty(hwpt, MOCK_APERTURE_START, 0x4000, 2048, &[0xff])?,
        8,
    )?;
    let at = MOCK_APERTURE_START;
    let pg = 2048;
    for (label, id, flags, reserved, iova, length, page_size, want) in [
        ("flag_bit1", 99, 2, 0, at, 0x4000, pg, Errno::EOPNOTSUPP),
        ("reserved", 99, 0, 1, at, 0x4000, pg, Errno::EOPNOTSUPP),
        ("no_hwpt", 99, 0, 0, at, 0x4000, pg, Errno::ENOENT),
        ("on_ioas", ioas, 0, 0, at, 0x4000, pg, Errno::ENOENT),
        (
            "on_device",
            mock.idev_id,
            0,
            0,
            at,
            0x4000,
            pg,
            Errno::ENOENT,
        ),
        (
            "wraps",
            hwpt,
            0,
            0,
            u64::MAX - 0x7ff,
            0x1000,
            pg,
            Errno::EOVERFLOW,
        ),
        ("iova_1k", hwpt, 0, 0, at + 0x400, 0x4000, pg, Errno::EINVAL),
        ("length_1k", hwpt, 0, 0, at, 0x3c00, pg, Errno::EINVAL),
        ("page_size_0", hwpt, 0, 0, at, 0x4000, 0, Errno::EINVAL),
        (
            "iova_not_page_aligned",
            hwpt,
            0,
            0,
            at + 0x800,
            0x2000,
            4096,
            Errno::EINVAL,
        ),
        (
            "end_not_page_aligned",
            hwpt,
            0,
            0,
            at,
            0x2800,
            4096,
            Errno::EINVAL,
        ),
        (
            "plain_misaligned",
            plain,
            0,
            0,
            at + 0x400,
            0x4000,
            pg,
            Errno::EINVAL,
        ),
        ("plain", plain, 0, 0, at, 0x4000, pg, Errno::EOPNOTSUPP),
    ] {
        let r = dirty_bitmap_raw(&ictx, id, flags, reserved, iova, length, page_size, &bitmap);
        log.errno(label, r, want)?;
    }
    log.eq("bitmap_untouched", bitmap.get(0), 0)?;
    let bits = log.ok(
        "read",
        ictx.hwpt_get_dirty_bitmap(hwpt, at, 0x4000, pg, false),
    )?;
    log.eq("bitmap", format!("{:#b}", bits[0]), "0b11111111".into())
}

/// GET_DIRTY_BITMAP's granule is 2^(lowest set bit of page_size): a page_size below the
/// mock domain's 2 KiB page reports each dirty page as several bits, and a page_size that
/// is not a power of two (0x3000) passes the mask checks and counts in 4 KiB granules.
fn dirty_bitmap_granule_follows_page_size(t: &dyn Target, log: &mut Log) -> Outcome {
    let a = buffer(0x4000)?;
    let bitmap = buffer(0x1000)?;
    let (ictx, _ioas, _mock, hwpt) = with_dirty(t, log, &a)?;
    let at = MOCK_APERTURE_START;
    log.eq(
        "marked_1k",
        ictx.test_dirty(hwpt, at, 0x4000, 2048, &[0b1000_0001])?,
        2,
    )?;
    let bits = log.ok(
        "read_1k",
        ictx.hwpt_get_dirty_bitmap(hwpt, at, 0x4000, 1024, false),
    )?;
    log.eq("bitmap_1k", format!("{:#x}", bits[0]), "0xc003".into())?;
    log.eq(
        "marked_3k",
        ictx.test_dirty(hwpt, at, 0x4000, 2048, &[0b0010_0001])?,
        2,
    )?;
    log.ok(
        "read_0x3000",
        dirty_bitmap_raw(&ictx, hwpt, 0, 0, at, 0x4000, 0x3000, &bitmap),
    )?;
    log.eq(
        "bitmap_0x3000",
        format!("{:#b}", bitmap.get(0)),
        "0b101".into(),
    )?;
    log.errno(
        "end_masked_0x3000",
        dirty_bitmap_raw(&ictx, hwpt, 0, 0, at, 0x6000, 0x3000, &bitmap),
        Errno::EINVAL,
    )?;
    let bits = log.ok(
        "read_after",
        ictx.hwpt_get_dirty_bitmap(hwpt, at, 0x4000, 2048, false),
    )?;
    log.eq("bitmap_after", bits[0], 0)
}

/// One `IOMMU_HWPT_SET_DIRTY_TRACKING` with every field chosen.
fn set_dirty_raw(
    ictx: &Iommufd<Fd>,
    flags: u32,
    hwpt: u32,
    reserved: u32,
) -> vtd_iommufd::Result<i32> {
    let mut buf = [
        16 | (flags as u64) << 32,
        hwpt as u64 | (reserved as u64) << 32,
    ];
    raw(ictx, IOMMU_HWPT_SET_DIRTY_TRACKING, &mut buf)
}

/// SET_DIRTY_TRACKING refuses unknown flags (EOPNOTSUPP) before the lookup and ids that
/// are not a paging HWPT (ENOENT), ignores `__reserved`, and may be repeated.
fn dirty_set_tracking_argument_checks(t: &dyn Target, log: &mut Log) -> Outcome {
    let (ictx, ioas, mock) = with_mock(t, log)?;
    let hwpt = log.ok(
        "dirty_hwpt",
        ictx.hwpt_alloc_paging(mock.idev_id, ioas, HwptAllocFlags::DIRTY_TRACKING),
    )?;
    log.errno(
        "flag_bit1",
        set_dirty_raw(&ictx, 2, 99, 0),
        Errno::EOPNOTSUPP,
    )?;
    log.errno("no_hwpt", set_dirty_raw(&ictx, 1, 99, 0), Errno::ENOENT)?;
    log.errno("on_ioas", set_dirty_raw(&ictx, 1, ioas, 0), Errno::ENOENT)?;
    log.errno(
        "on_device",
        set_dirty_raw(&ictx, 1, mock.idev_id, 0),
        Errno::ENOENT,
    )?;
    log.ok(
        "reserved_ignored",
        set_dirty_raw(&ictx, 1, hwpt, 0xffff_ffff),
    )?;
    log.ok("enable_twice", set_dirty_raw(&ictx, 1, hwpt, 0))?;
    log.ok("disable", set_dirty_raw(&ictx, 0, hwpt, 0))?;
    log.ok("disable_twice", set_dirty_raw(&ictx, 0, hwpt, 0))?;
    Ok(())
}

/// HWPT_ALLOC's flag and data checks: a data_type without data_len is EINVAL before the
/// device lookup; FAULT_ID_VALID on a paging HWPT is EOPNOTSUPP whatever the fault id; on
/// a nested HWPT a fault id that is no FAULT object (missing, or the IOAS) is ENOENT, and
/// the refused HWPT's id is released.
fn hwpt_alloc_fault_id_and_data_rules(t: &dyn Target, log: &mut Log) -> Outcome {
    let (ictx, ioas, mock) = with_mock(t, log)?;
    let dev = mock.idev_id;
    let fv = HwptAllocFlags::FAULT_ID_VALID.bits();
    let alloc = |flags: u32, pt: u32, fault: u32, data_type: u32, len: u32, uptr: u64| {
        ictx.hwpt_alloc_raw(&mut iommu_hwpt_alloc {
            size: size_of::<iommu_hwpt_alloc>(),
            flags,
            dev_id: dev,
            pt_id: pt,
            data_type,
            data_len: len,
            data_uptr: uptr,
            fault_id: fault,
            ..Default::default()
        })
    };
    let parent = log.ok(
        "parent",
        ictx.hwpt_alloc_paging(dev, ioas, HwptAllocFlags::NEST_PARENT),
    )?;
    let mut data = IOMMU_TEST_IOTLB_DEFAULT;
    let ptr = &mut data as *mut u32 as u64;
    let st = IOMMU_HWPT_DATA_SELFTEST;
    log.errno(
        "type_without_len",
        alloc(0, ioas, 0, st, 0, ptr),
        Errno::EINVAL,
    )?;
    let bad_dev = ictx.hwpt_alloc_raw(&mut iommu_hwpt_alloc {
        size: size_of::<iommu_hwpt_alloc>(),
        dev_id: 99,
        pt_id: ioas,
        data_type: st,
        ..Default::default()
    });
    log.errno("type_without_len_no_dev", bad_dev, Errno::EINVAL)?;
    log.errno(
        "paging_fault_0",
        alloc(fv, ioas, 0, 0, 0, 0),
        Errno::EOPNOTSUPP,
    )?;
    log.errno(
        "paging_fault_99",
        alloc(fv, ioas, 99, 0, 0, 0),
        Errno::EOPNOTSUPP,
    )?;
    log.errno(
        "nested_fault_missing",
        alloc(fv, parent, 99, st, 4, ptr),
        Errno::ENOENT,
    )?;
    log.errno(
        "nested_fault_is_ioas",
        alloc(fv, parent, ioas, st, 4, ptr),
        Errno::ENOENT,
    )?;
    log.eq("next_id", alloc(0, parent, 99, st, 4, ptr)?, parent + 1)
}

/// One `IOMMU_VFIO_IOAS`: the result and the `ioas_id` the kernel left.
fn vfio_ioas_raw(
    ictx: &Iommufd<Fd>,
    ioas: u32,
    op: u16,
    reserved: u16,
) -> (vtd_iommufd::Result<i32>, u32) {
    // struct iommu_vfio_ioas: size, ioas_id, op, __reserved.
    let mut buf = [
        12 | (ioas as u64) << 32,
        op as u64 | (reserved as u64) << 16,
    ];
    let r = raw(ictx, IOMMU_VFIO_IOAS, &mut buf);
    (r, (buf[0] >> 32) as u32)
}

/// IOMMU_VFIO_IOAS: GET is ENODEV until SET names an IOAS (ENOENT for a missing id, 0 or
/// a HWPT), then answers its id; CLEAR forgets it, as does destroying that IOAS, which the
/// setting does not hold; an unknown op or `__reserved` is EOPNOTSUPP.
fn vfio_ioas_get_set_clear(t: &dyn Target, log: &mut Log) -> Outcome {
    let (ictx, ioas, mock) = with_mock(t, log)?;
    let (get, set, clear) = (0u16, 1u16, 2u16);
    log.errno(
        "get_unset",
        vfio_ioas_raw(&ictx, 0, get, 0).0,
        Errno::ENODEV,
    )?;
    log.errno(
        "set_missing",
        vfio_ioas_raw(&ictx, 99, set, 0).0,
        Errno::ENOENT,
    )?;
    log.errno("set_0", vfio_ioas_raw(&ictx, 0, set, 0).0, Errno::ENOENT)?;
    log.errno(
        "set_hwpt",
        vfio_ioas_raw(&ictx, mock.hwpt_id, set, 0).0,
        Errno::ENOENT,
    )?;
    log.ok("set", vfio_ioas_raw(&ictx, ioas, set, 0).0)?;
    let (r, id) = vfio_ioas_raw(&ictx, 0, get, 0);
    log.ok("get", r)?;
    log.eq("get_id", id, ioas)?;
    log.errno(
        "op_3",
        vfio_ioas_raw(&ictx, ioas, 3, 0).0,
        Errno::EOPNOTSUPP,
    )?;
    log.errno(
        "reserved",
        vfio_ioas_raw(&ictx, 0, get, 1).0,
        Errno::EOPNOTSUPP,
    )?;
    log.ok("clear", vfio_ioas_raw(&ictx, 0, clear, 0).0)?;
    log.errno(
        "get_cleared",
        vfio_ioas_raw(&ictx, 0, get, 0).0,
        Errno::ENODEV,
    )?;
    log.ok("clear_twice", vfio_ioas_raw(&ictx, 0, clear, 0).0)?;
    let other = log.ok("other_ioas", ictx.ioas_alloc())?;
    log.ok("set_other", vfio_ioas_raw(&ictx, other, set, 0).0)?;
    log.ok("destroy_other", ictx.destroy(other))?;
    log.errno(
        "get_destroyed",
        vfio_ioas_raw(&ictx, 0, get, 0).0,
        Errno::ENODEV,
    )
}

/// One `IOMMU_IOAS_IOVA_RANGES` into `out` (or a null array with `null`): the result,
/// `num_iovas` and `out_iova_alignment` as the kernel left them.
fn iova_ranges_raw(
    ictx: &Iommufd<Fd>,
    ioas: u32,
    out: &mut [[u64; 2]],
    null: bool,
    reserved: u32,
) -> (vtd_iommufd::Result<i32>, u32, u64) {
    let ptr = if null { 0 } else { out.as_mut_ptr() as u64 };
    // struct iommu_ioas_iova_ranges: size, ioas_id, num_iovas, __reserved,
    // allowed_iovas, out_iova_alignment.
    let mut buf = [
        32 | (ioas as u64) << 32,
        out.len() as u64 | (reserved as u64) << 32,
        ptr,
        0,
    ];
    let call = vtd_iommufd::Call::IoasIovaRanges;
    // SAFETY: the kernel reads and writes back the 32-byte struct in `buf` and writes at
    // most `out.len()` ranges to `ptr`, which is `out` (live across the call) or null.
    let r = unsafe { ioctl_as(ictx, IOMMU_IOAS_IOVA_RANGES, call, &mut buf) };
    (r, buf[1] as u32, buf[3])
}

/// IOAS_IOVA_RANGES lists the holes between reserved ranges: with room it writes them
/// and the count; with too little room it writes what fits and answers EMSGSIZE with the
/// count needed; a null array with room claimed is EFAULT; `__reserved` is EOPNOTSUPP
/// and a missing IOAS ENOENT. Allowed ranges do not narrow the answer.
fn ioas_iova_ranges_list_holes(t: &dyn Target, log: &mut Log) -> Outcome {
    let ictx = t.iommufd()?;
    let ioas = log.ok("ioas", ictx.ioas_alloc())?;
    log.ok(
        "add_reserved",
        ictx.test_add_reserved(ioas, 0x10_0000, 0x10_0000),
    )?;
    let fill = [0xAAAA_AAAA_AAAA_AAAAu64; 2];
    let want = format!("{:x?}", [[0, 0xf_ffff], [0x20_0000, u64::MAX]]);
    let mut out = [fill; 3];
    let (r, num, align) = iova_ranges_raw(&ictx, ioas, &mut out, false, 0);
    log.ok("room_3", r)?;
    log.eq("num_3", num, 2)?;
    log.eq("align", align, 1)?;
    log.eq("ranges", format!("{:x?}", &out[..2]), want.clone())?;
    log.eq("third_untouched", out[2] == fill, true)?;
    let mut one = [fill; 1];
    let (r, num, _) = iova_ranges_raw(&ictx, ioas, &mut one, false, 0);
    log.errno("room_1", r, Errno::EMSGSIZE)?;
    log.eq("num_1", num, 2)?;
    log.eq(
        "first_written",
        format!("{:x?}", one[0]),
        format!("{:x?}", [0, 0xf_ffff]),
    )?;
    log.errno(
        "null_room_1",
        iova_ranges_raw(&ictx, ioas, &mut one, true, 0).0,
        Errno::EFAULT,
    )?;
    log.errno(
        "reserved",
        iova_ranges_raw(&ictx, ioas, &mut out, false, 1).0,
        Errno::EOPNOTSUPP,
    )?;
    log.errno(
        "missing",
        iova_ranges_raw(&ictx, 99, &mut out, false, 0).0,
        Errno::ENOENT,
    )?;
    log.ok(
        "allow",
        ictx.ioas_allow_iovas(ioas, &[(1 << 30, (1 << 31) - 1)]),
    )?;
    let mut out = [fill; 3];
    let (r, num, _) = iova_ranges_raw(&ictx, ioas, &mut out, false, 0);
    log.ok("after_allow", r)?;
    log.eq("num_after_allow", num, 2)?;
    log.eq("ranges_after_allow", format!("{:x?}", &out[..2]), want)
}

/// One `IOMMU_IOAS_ALLOW_IOVAS` of `ranges` (or a null array claiming `ranges.len()`).
fn allow_raw(
    ictx: &Iommufd<Fd>,
    ioas: u32,
    ranges: &[[u64; 2]],
    null: bool,
    reserved: u32,
) -> vtd_iommufd::Result<i32> {
    let ptr = if null { 0 } else { ranges.as_ptr() as u64 };
    let mut buf = [
        24 | (ioas as u64) << 32,
        ranges.len() as u64 | (reserved as u64) << 32,
        ptr,
    ];
    let call = vtd_iommufd::Call::IoasAllowIovas;
    // SAFETY: the kernel reads the 24-byte struct in `buf` and at most `ranges.len()`
    // ranges from `ptr`, which is `ranges` (live across the call) or null.
    unsafe { ioctl_as(ictx, IOMMU_IOAS_ALLOW_IOVAS, call, &mut buf) }
}

/// IOAS_ALLOW_IOVAS: `__reserved` is EOPNOTSUPP and a missing IOAS ENOENT before the
/// array is read; a null array is EFAULT; a range whose start is not below its last (one
/// byte, or reversed) or that overlaps another in the list is EINVAL, adjacent ones are
/// fine. Allowed ranges bind only automatic IOVAs (too small a range is ENOSPC), not a
/// FIXED_IOVA map outside them; an empty list lifts the restriction.
fn ioas_allow_iovas_rules(t: &dyn Target, log: &mut Log) -> Outcome {
    let a = buffer(0x4000)?;
    let ictx = t.iommufd()?;
    let ioas = log.ok("ioas", ictx.ioas_alloc())?;
    let g = 1u64 << 30;
    let ok = [[g, g + 0x1fff]];
    log.errno(
        "reserved",
        allow_raw(&ictx, 99, &ok, true, 1),
        Errno::EOPNOTSUPP,
    )?;
    log.errno("missing", allow_raw(&ictx, 99, &ok, true, 0), Errno::ENOENT)?;
    log.errno("null", allow_raw(&ictx, ioas, &ok, true, 0), Errno::EFAULT)?;
    log.errno(
        "one_byte",
        allow_raw(&ictx, ioas, &[[g, g]], false, 0),
        Errno::EINVAL,
    )?;
    log.errno(
        "reversed",
        allow_raw(&ictx, ioas, &[[g + 1, g]], false, 0),
        Errno::EINVAL,
    )?;
    log.errno(
        "overlapping",
        allow_raw(
            &ictx,
            ioas,
            &[[g, g + 0xfff], [g + 0xfff, g + 0x1fff]],
            false,
            0,
        ),
        Errno::EINVAL,
    )?;
    log.ok(
        "adjacent",
        allow_raw(
            &ictx,
            ioas,
            &[[g, g + 0xfff], [g + 0x1000, g + 0x1fff]],
            false,
            0,
        ),
    )?;
    log.errno("auto_too_big", map_auto(&ictx, ioas, &a), Errno::ENOSPC)?;
    log.eq(
        "fixed_outside",
        format!("{:#x}", map_fixed(&ictx, ioas, &a, 0x10_0000)?),
        "0x100000".into(),
    )?;
    log.ok("allow_none", allow_raw(&ictx, ioas, &[], false, 0))?;
    let auto = log.ok("auto_unrestricted", map_auto(&ictx, ioas, &a))?;
    log.check("auto_outside_old_range", !(g..g + 0x2000).contains(&auto))?;
    log.eq("unmap_all", ictx.ioas_unmap_all(ioas)?, 0x8000)
}

/// One `IOMMU_IOAS_COPY` with every field chosen.
fn copy_raw(
    ictx: &Iommufd<Fd>,
    flags: u32,
    dst: u32,
    src: u32,
    length: u64,
    dst_iova: u64,
    src_iova: u64,
) -> vtd_iommufd::Result<i32> {
    let mut buf = [
        40 | (flags as u64) << 32,
        dst as u64 | (src as u64) << 32,
        length,
        dst_iova,
        src_iova,
    ];
    raw(ictx, IOMMU_IOAS_COPY, &mut buf)
}

/// IOAS_COPY's checks, in order: unknown flags EOPNOTSUPP, a length or IOVA of u64::MAX
/// EOVERFLOW, no access flag EINVAL (all before any lookup); then the source IOAS
/// (ENOENT), its range (zero length EINVAL, wrapping EOVERFLOW, not wholly mapped
/// ENOENT), then the destination IOAS (ENOENT). A copy inside one IOAS works.
fn ioas_copy_argument_checks(t: &dyn Target, log: &mut Log) -> Outcome {
    let a = buffer(0x4000)?;
    let ictx = t.iommufd()?;
    let src = log.ok("src", ictx.ioas_alloc())?;
    log.ok("map_src", map_fixed(&ictx, src, &a, 0x10_0000))?;
    let rw = (MapFlags::READABLE | MapFlags::WRITEABLE).bits();
    let fixed = MapFlags::FIXED_IOVA.bits() | rw;
    let m = u64::MAX;
    for (label, flags, dst, from, length, dst_iova, src_iova, want) in [
        (
            "flag_bit3",
            rw | 1 << 3,
            99,
            99,
            0x1000,
            0,
            0,
            Errno::EOPNOTSUPP,
        ),
        ("length_max", rw, 99, 99, m, 0, 0, Errno::EOVERFLOW),
        ("src_iova_max", rw, 99, 99, 0x1000, 0, m, Errno::EOVERFLOW),
        ("dst_iova_max", rw, 99, 99, 0x1000, m, 0, Errno::EOVERFLOW),
        ("no_prot", 0, 99, 99, 0x1000, 0, 0, Errno::EINVAL),
        ("no_src_len0", rw, 99, 99, 0, 0, 0x10_0000, Errno::ENOENT),
        ("len0", rw, 99, src, 0, 0, 0x10_0000, Errno::EINVAL),
        (
            "src_wraps",
            rw,
            99,
            src,
            0x2000,
            0,
            m - 0xfff,
            Errno::EOVERFLOW,
        ),
        (
            "past_area",
            rw,
            99,
            src,
            0x4000,
            0,
            0x10_2000,
            Errno::ENOENT,
        ),
        ("no_dst", rw, 99, src, 0x4000, 0, 0x10_0000, Errno::ENOENT),
        (
            "dst_over_area",
            fixed,
            src,
            src,
            0x1000,
            0x10_3000,
            0x10_0000,
            Errno::EEXIST,
        ),
    ] {
        log.errno(
            label,
            copy_raw(&ictx, flags, dst, from, length, dst_iova, src_iova),
            want,
        )?;
    }
    log.ok(
        "same_ioas",
        copy_raw(&ictx, fixed, src, src, 0x2000, 0x20_0000, 0x10_1000),
    )?;
    log.eq(
        "unmap_copy",
        ictx.ioas_unmap(src, 0x20_0000, 0x2000)?,
        0x2000,
    )
}

/// IOMMU_FAULT_QUEUE_ALLOC with any flag set is EOPNOTSUPP and creates nothing.
fn fault_queue_alloc_flags_are_refused(t: &dyn Target, log: &mut Log) -> Outcome {
    let ictx = t.iommufd()?;
    for (label, flags) in [("flag_0", 1u64), ("flag_31", 1 << 31)] {
        // struct iommu_fault_alloc: size, flags, out_fault_id, out_fault_fd.
        let mut buf = [16 | flags << 32, u64::MAX];
        log.errno(
            label,
            raw(&ictx, IOMMU_FAULT_QUEUE_ALLOC, &mut buf),
            Errno::EOPNOTSUPP,
        )?;
        log.eq(&format!("{label}_out_untouched"), buf[1], u64::MAX)?;
    }
    log.eq("next_id", ictx.ioas_alloc()?, 1)
}

/// A user address no process maps: below mmap_min_addr.
const UNMAPPED_VA: u64 = 0x1000;

/// IOAS_MAP into an IOAS without a domain only records the range: an address nothing maps
/// is accepted. A mock domain's attach then refuses an area outside its aperture first
/// (EADDRINUSE); inside it, the pages are pinned as the domain arrives, so the attach is
/// EFAULT and undone (its ids are free again); once the range is unmapped it works.
fn ioas_map_without_domain_pins_at_attach(t: &dyn Target, log: &mut Log) -> Outcome {
    let ictx = t.iommufd()?;
    let ioas = log.ok("ioas", ictx.ioas_alloc())?;
    let rw = (MapFlags::READABLE | MapFlags::WRITEABLE | MapFlags::FIXED_IOVA).bits();
    let at = MOCK_APERTURE_START;
    log.ok(
        "map_below_aperture",
        map_raw(&ictx, rw, ioas, 0, UNMAPPED_VA, 0x1000, 0x10_0000),
    )?;
    log.errno(
        "mock_below_aperture",
        ictx.test_mock_domain(ioas),
        Errno::EADDRINUSE,
    )?;
    log.eq(
        "unmap_below",
        ictx.ioas_unmap(ioas, 0x10_0000, 0x1000)?,
        0x1000,
    )?;
    log.eq(
        "map_unmapped_va",
        format!(
            "{:#x}",
            map_raw(&ictx, rw, ioas, 0, UNMAPPED_VA, 0x1000, at)?
        ),
        format!("{at:#x}"),
    )?;
    log.errno("mock_domain", ictx.test_mock_domain(ioas), Errno::EFAULT)?;
    log.eq("next_id", ictx.ioas_alloc()?, 2)?;
    log.ok("destroy_2", ictx.destroy(2))?;
    log.eq("unmap", ictx.ioas_unmap(ioas, at, 0x1000)?, 0x1000)?;
    let mock = log.ok("mock_domain_empty", ictx.test_mock_domain(ioas))?;
    log.note(
        "ids",
        format!("{},{},{}", mock.stdev_id, mock.idev_id, mock.hwpt_id),
    );
    log.errno(
        "map_unmapped_va_with_domain",
        map_raw(&ictx, rw, ioas, 0, UNMAPPED_VA, 0x1000, at),
        Errno::EFAULT,
    )?;
    log.eq("nothing_mapped", ictx.ioas_unmap_all(ioas)?, 0)
}

/// WRITEABLE pins with write access: read-only memory maps READABLE-only into a domain,
/// is EFAULT with WRITEABLE when a domain is attached, and without a domain is accepted
/// and then fails the domain's attach (EFAULT).
fn ioas_map_writeable_needs_writable_memory(t: &dyn Target, log: &mut Log) -> Outcome {
    let ro = buffer(0x4000)?;
    for page in 0..4 {
        ro.set(page * 4096, 1);
    }
    // SAFETY: `ro` is this buffer's own mapping; making it read-only affects nothing else,
    // and it is only read (by the kernel) from here on, then unmapped on drop.
    let rc = unsafe { libc::mprotect(ro.as_ptr() as *mut libc::c_void, ro.len(), libc::PROT_READ) };
    if rc != 0 {
        return Err(Failure(format!("mprotect: {}", Errno::last())));
    }
    let (ictx, ioas, _mock) = with_mock(t, log)?;
    let va = ro.as_ptr() as u64;
    let fixed = MapFlags::FIXED_IOVA;
    let r = fixed | MapFlags::READABLE;
    let rw = r | MapFlags::WRITEABLE;
    let at = MOCK_APERTURE_START;
    log.errno(
        "map_rw",
        map_raw(&ictx, rw.bits(), ioas, 0, va, 0x4000, at),
        Errno::EFAULT,
    )?;
    log.ok("map_r", map_raw(&ictx, r.bits(), ioas, 0, va, 0x4000, at))?;
    let bare = log.ok("bare_ioas", ictx.ioas_alloc())?;
    log.ok(
        "map_rw_bare",
        map_raw(&ictx, rw.bits(), bare, 0, va, 0x4000, at),
    )?;
    log.errno("mock_on_bare", ictx.test_mock_domain(bare), Errno::EFAULT)?;
    log.eq("unmap_bare", ictx.ioas_unmap_all(bare)?, 0x4000)?;
    log.eq("unmap_r", ictx.ioas_unmap_all(ioas)?, 0x4000)
}

/// GET_DIRTY_BITMAP in 6.12 does not report failures inside its walk: a null bitmap
/// pointer succeeds and the dirty state it read and cleared is lost; a range running past
/// the mapped area succeeds with the mapped part's bits, one starting before it reads
/// (and clears) nothing; with tracking off it succeeds and reports nothing.
fn dirty_walk_failures_are_not_reported(t: &dyn Target, log: &mut Log) -> Outcome {
    let a = buffer(0x4000)?;
    let bitmap = buffer(0x1000)?;
    let (ictx, _ioas, _mock, hwpt) = with_dirty(t, log, &a)?;
    let at = MOCK_APERTURE_START;
    let read_iova = |iova: u64, length: u64, data: u64| {
        let mut buf = [48 | (hwpt as u64) << 32, 0, iova, length, 2048, data];
        let call = vtd_iommufd::Call::HwptGetDirtyBitmap;
        // SAFETY: the kernel reads the 48-byte struct in `buf` and writes at most
        // length / 2048 bits to `data`, which is null or `bitmap` (0x1000 bytes, live
        // across the call) for the lengths used here.
        unsafe { ioctl_as(&ictx, IOMMU_HWPT_GET_DIRTY_BITMAP, call, &mut buf) }.map(|_| ())
    };
    let read = |length: u64, data: u64| read_iova(at, length, data);
    let read_at = |iova: u64, length: u64| read_iova(iova, length, bitmap.as_ptr() as u64);
    log.eq(
        "marked",
        ictx.test_dirty(hwpt, at, 0x4000, 2048, &[0b1000_0001])?,
        2,
    )?;
    log.ok("read_null", read(0x4000, 0))?;
    log.ok("read_after_null", read(0x4000, bitmap.as_ptr() as u64))?;
    log.eq("bits_after_null", bitmap.get(0), 0)?;
    log.eq(
        "marked_again",
        ictx.test_dirty(hwpt, at, 0x4000, 2048, &[0b1000_0011])?,
        3,
    )?;
    log.ok("read_past_area", read(0x8000, bitmap.as_ptr() as u64))?;
    log.eq(
        "bits_past_area",
        format!("{:#b},{:#b}", bitmap.get(0), bitmap.get(1)),
        "0b10000011,0b0".into(),
    )?;
    bitmap.set(0, 0);
    log.eq(
        "marked_third",
        ictx.test_dirty(hwpt, at, 0x4000, 2048, &[0b100])?,
        1,
    )?;
    log.ok("read_leading_gap", read_at(at - 0x4000, 0x8000))?;
    log.eq(
        "bits_leading_gap",
        format!("{:#b},{:#b}", bitmap.get(0), bitmap.get(1)),
        "0b0,0b0".into(),
    )?;
    let bits = log.ok(
        "read_kept",
        ictx.hwpt_get_dirty_bitmap(hwpt, at, 0x4000, 2048, false),
    )?;
    log.eq("bits_kept", format!("{:#b}", bits[0]), "0b100".into())?;
    log.ok("disable", ictx.hwpt_set_dirty_tracking(hwpt, false))?;
    log.ok("read_not_tracking", read(0x4000, bitmap.as_ptr() as u64))?;
    log.eq("bits_not_tracking", bitmap.get(0), 0)
}

/// Turning dirty tracking on clears the dirty state left from before, so the first read
/// after it reports only what was written since.
fn dirty_enable_clears_stale_bits(t: &dyn Target, log: &mut Log) -> Outcome {
    let a = buffer(0x4000)?;
    let (ictx, _ioas, _mock, hwpt) = with_dirty(t, log, &a)?;
    let at = MOCK_APERTURE_START;
    log.eq(
        "marked",
        ictx.test_dirty(hwpt, at, 0x4000, 2048, &[0b1111])?,
        4,
    )?;
    log.ok("disable", ictx.hwpt_set_dirty_tracking(hwpt, false))?;
    log.ok("enable", ictx.hwpt_set_dirty_tracking(hwpt, true))?;
    let bits = log.ok(
        "read",
        ictx.hwpt_get_dirty_bitmap(hwpt, at, 0x4000, 2048, false),
    )?;
    log.eq("bitmap", bits[0], 0)?;
    log.eq(
        "marked_new",
        ictx.test_dirty(hwpt, at, 0x4000, 2048, &[0b1_0000])?,
        1,
    )?;
    log.ok("enable_again", ictx.hwpt_set_dirty_tracking(hwpt, true))?;
    let bits = log.ok(
        "read_new",
        ictx.hwpt_get_dirty_bitmap(hwpt, at, 0x4000, 2048, false),
    )?;
    log.eq("bitmap_new", bits[0], 0)
}

/// One `IOMMU_GET_HW_INFO` with every input field chosen: the result and `data_len` as the
/// kernel left it.
fn hw_info_raw(
    ictx: &Iommufd<Fd>,
    flags: u32,
    dev: u32,
    data_len: u32,
    data: u64,
    reserved: [u8; 3],
) -> (vtd_iommufd::Result<i32>, u32) {
    let reserved = u64::from_le_bytes([0, 0, 0, 0, 0, reserved[0], reserved[1], reserved[2]]);
    // struct iommu_hw_info: size, flags, dev_id, data_len, data_uptr, out_data_type,
    // out_max_pasid_log2, __reserved[3], out_capabilities.
    let mut buf = [
        40 | (flags as u64) << 32,
        dev as u64 | (data_len as u64) << 32,
        data,
        reserved,
        0,
    ];
    // SAFETY: the kernel reads and writes back the 40-byte struct in `buf` and writes at
    // most `data_len` bytes to `data`, which the callers pass as null or as a buffer of
    // at least `data_len` bytes that lives across the call.
    let r = unsafe {
        ioctl_as(
            ictx,
            IOMMU_GET_HW_INFO,
            vtd_iommufd::Call::GetHwInfo,
            &mut buf,
        )
    };
    (r, (buf[1] >> 32) as u32)
}

/// GET_HW_INFO refuses flags and each `__reserved` byte (EOPNOTSUPP) before the device
/// lookup (ENOENT); a null data pointer is EFAULT when data_len asks for bytes and fine
/// when it is 0, which still answers the length the driver has.
fn hw_info_bad_arguments_are_refused(t: &dyn Target, log: &mut Log) -> Outcome {
    let (ictx, _ioas, mock) = with_mock(t, log)?;
    let dev = mock.idev_id;
    let mut data = [0u8; 8];
    let ptr = data.as_mut_ptr() as u64;
    for (label, flags, id, len, uptr, reserved, want) in [
        ("flags", 1, 99, 8, ptr, [0, 0, 0], Errno::EOPNOTSUPP),
        (
            "flags_high",
            1 << 31,
            dev,
            8,
            ptr,
            [0, 0, 0],
            Errno::EOPNOTSUPP,
        ),
        ("reserved_0", 0, 99, 8, ptr, [1, 0, 0], Errno::EOPNOTSUPP),
        ("reserved_1", 0, dev, 8, ptr, [0, 1, 0], Errno::EOPNOTSUPP),
        (
            "reserved_2",
            0,
            dev,
            8,
            ptr,
            [0, 0, 0x80],
            Errno::EOPNOTSUPP,
        ),
        ("no_device", 0, 99, 8, ptr, [0, 0, 0], Errno::ENOENT),
        ("null_data", 0, dev, 8, 0, [0, 0, 0], Errno::EFAULT),
    ] {
        let (r, _) = hw_info_raw(&ictx, flags, id, len, uptr, reserved);
        log.errno(label, r, want)?;
    }
    let (r, len) = hw_info_raw(&ictx, 0, dev, 0, 0, [0, 0, 0]);
    log.ok("null_len0", r)?;
    log.eq("null_len0_data_len", len, 8)
}

/// Automatic IOVAs come from the mock domain's aperture (16 MiB .. 2 GiB): a length that
/// does not fit is ENOSPC and one of 2^63 or more EOVERFLOW, both before any page is
/// pinned; a FIXED_IOVA range crossing the aperture's end is EINVAL.
fn ioas_auto_iova_limits(t: &dyn Target, log: &mut Log) -> Outcome {
    let a = buffer(0x4000)?;
    let (ictx, ioas, _mock) = with_mock(t, log)?;
    let va = a.as_ptr() as u64;
    let rw = (MapFlags::READABLE | MapFlags::WRITEABLE).bits();
    let fixed = MapFlags::FIXED_IOVA.bits() | rw;
    let end = MOCK_APERTURE_LAST + 1;
    for (label, flags, length, iova, want) in [
        ("auto_4g", rw, 1 << 32, 0, Errno::ENOSPC),
        ("auto_2g", rw, 1 << 31, 0, Errno::ENOSPC),
        ("auto_2_63", rw, 1 << 63, 0, Errno::EOVERFLOW),
        (
            "fixed_across_end",
            fixed,
            0x4000,
            end - 0x2000,
            Errno::EINVAL,
        ),
        ("fixed_past_end", fixed, 0x4000, end, Errno::EINVAL),
    ] {
        log.errno(
            label,
            map_raw(&ictx, flags, ioas, 0, va, length, iova),
            want,
        )?;
    }
    log.eq(
        "fixed_at_end",
        format!(
            "{:#x}",
            map_raw(&ictx, fixed, ioas, 0, va, 0x4000, end - 0x4000)?
        ),
        format!("{:#x}", end - 0x4000),
    )?;
    log.eq("unmap_all", ictx.ioas_unmap_all(ioas)?, 0x4000)
}

/// HWPT_ALLOC flag combinations: NEST_PARENT and DIRTY_TRACKING together make a dirty
/// nest parent that can carry a nested HWPT and enable tracking; a nested HWPT takes no
/// flag but FAULT_ID_VALID (EOPNOTSUPP for DIRTY_TRACKING or NEST_PARENT), and a paging
/// one refuses FAULT_ID_VALID with NEST_PARENT too. Refusals release their ids.
fn hwpt_alloc_flag_combinations(t: &dyn Target, log: &mut Log) -> Outcome {
    let (ictx, ioas, mock) = with_mock(t, log)?;
    let dev = mock.idev_id;
    let np = HwptAllocFlags::NEST_PARENT;
    let dt = HwptAllocFlags::DIRTY_TRACKING;
    let fv = HwptAllocFlags::FAULT_ID_VALID;
    let parent = log.ok("dirty_parent", ictx.hwpt_alloc_paging(dev, ioas, np | dt))?;
    log.eq("dirty_parent_id", parent, 5)?;
    log.errno(
        "paging_np_fv",
        hwpt_alloc(&ictx, (np | fv).bits(), dev, ioas),
        Errno::EOPNOTSUPP,
    )?;
    let mut data = IOMMU_TEST_IOTLB_DEFAULT;
    let ptr = &mut data as *mut u32 as u64;
    let st = IOMMU_HWPT_DATA_SELFTEST;
    log.errno(
        "nested_dirty",
        nested_raw(&ictx, dt.bits(), dev, parent, st, 4, ptr),
        Errno::EOPNOTSUPP,
    )?;
    log.errno(
        "nested_np_fv",
        nested_raw(&ictx, (np | fv).bits(), dev, parent, st, 4, ptr),
        Errno::EOPNOTSUPP,
    )?;
    let nested = log.ok("nested", nested_raw(&ictx, 0, dev, parent, st, 4, ptr))?;
    log.eq("nested_id", nested, 6)?;
    log.ok("enable_parent", ictx.hwpt_set_dirty_tracking(parent, true))?;
    log.errno(
        "enable_nested",
        ictx.hwpt_set_dirty_tracking(nested, true),
        Errno::ENOENT,
    )?;
    log.ok(
        "disable_parent",
        ictx.hwpt_set_dirty_tracking(parent, false),
    )
}

/// An IOAS_COPY holds the pages itself: unmapping the source range leaves the copy mapped
/// in the destination's domain, and unmapping the copy leaves the source.
fn ioas_copy_outlives_its_source(t: &dyn Target, log: &mut Log) -> Outcome {
    let a = buffer(0x4000)?;
    let (ictx, dst, mock) = with_mock(t, log)?;
    let src = log.ok("src_ioas", ictx.ioas_alloc())?;
    let src_mock = log.ok("src_mock", ictx.test_mock_domain(src))?;
    log.ok("map_src", map_fixed(&ictx, src, &a, MOCK_APERTURE_START))?;
    let rw = MapFlags::READABLE | MapFlags::WRITEABLE;
    let at = MOCK_APERTURE_START + MIB;
    log.ok(
        "copy",
        ictx.ioas_copy(dst, src, MOCK_APERTURE_START, 0x4000, Some(at), rw),
    )?;
    log.eq("unmap_src", ictx.ioas_unmap_all(src)?, 0x4000)?;
    log.ok(
        "copy_still_mapped",
        ictx.test_md_check_map(mock.hwpt_id, at, 0x4000, a.as_ptr()),
    )?;
    log.errno(
        "src_gone",
        ictx.test_md_check_map(src_mock.hwpt_id, MOCK_APERTURE_START, 0x4000, a.as_ptr()),
        Errno::EINVAL,
    )?;
    log.ok(
        "map_src_again",
        map_fixed(&ictx, src, &a, MOCK_APERTURE_START),
    )?;
    log.eq("unmap_copy", ictx.ioas_unmap_all(dst)?, 0x4000)?;
    log.ok(
        "src_still_mapped",
        ictx.test_md_check_map(src_mock.hwpt_id, MOCK_APERTURE_START, 0x4000, a.as_ptr()),
    )
}

/// Without a domain the IOVA alignment is 1 and areas may sit at any byte; raising it
/// (HUGE_PAGES off, or a mock domain's 2 KiB pages) over an area it does not fit is
/// EADDRINUSE and leaves things as they were. Over 2 KiB-aligned areas the mock domain
/// attaches, and when it goes the alignment and the ranges return to the whole space.
fn ioas_alignment_rises_only_over_aligned_areas(t: &dyn Target, log: &mut Log) -> Outcome {
    let a = buffer(0x4000)?;
    let ictx = t.iommufd()?;
    let ioas = log.ok("ioas", ictx.ioas_alloc())?;
    let va = a.as_ptr() as u64;
    let fixed = (MapFlags::FIXED_IOVA | MapFlags::READABLE | MapFlags::WRITEABLE).bits();
    let at = MOCK_APERTURE_START;
    log.ok(
        "map_1k",
        map_raw(&ictx, fixed, ioas, 0, va + 0x400, 0x400, at + 0x400),
    )?;
    log.errno(
        "huge_off",
        option_set(&ictx, OPTION_HUGE_PAGES, ioas, 0),
        Errno::EADDRINUSE,
    )?;
    log.eq(
        "huge_still_on",
        option_get(&ictx, OPTION_HUGE_PAGES, ioas)?,
        1,
    )?;
    log.errno(
        "mock_over_1k",
        ictx.test_mock_domain(ioas),
        Errno::EADDRINUSE,
    )?;
    log.eq(
        "align_after_refusals",
        ictx.ioas_iova_ranges(ioas)?.alignment,
        1,
    )?;
    log.eq("unmap_1k", ictx.ioas_unmap(ioas, at + 0x400, 0x400)?, 0x400)?;
    log.ok(
        "map_2k",
        map_raw(&ictx, fixed, ioas, 0, va + 0x800, 0x800, at + 0x800),
    )?;
    let mock = log.ok("mock_over_2k", ictx.test_mock_domain(ioas))?;
    log.note(
        "ids",
        format!("{},{},{}", mock.stdev_id, mock.idev_id, mock.hwpt_id),
    );
    log.eq("align_mock", ictx.ioas_iova_ranges(ioas)?.alignment, 2048)?;
    log.ok("destroy_mock", ictx.destroy(mock.stdev_id))?;
    let r = ictx.ioas_iova_ranges(ioas)?;
    log.eq(
        "ranges_after",
        format!("{:x?}/{}", r.ranges, r.alignment),
        format!("{:x?}/1", [(0u64, u64::MAX)]),
    )?;
    log.eq("unmap_all", ictx.ioas_unmap_all(ioas)?, 0x800)
}

/// An IOAS_COPY of a range that spans two adjacent source areas makes one destination
/// area per source area: each half of the copy can then be unmapped on its own, while a
/// range splitting either half is ENOENT.
fn ioas_copy_of_two_areas_makes_two_areas(t: &dyn Target, log: &mut Log) -> Outcome {
    let a = buffer(0x4000)?;
    let b = buffer(0x4000)?;
    let (ictx, dst, mock) = with_mock(t, log)?;
    let src = log.ok("src_ioas", ictx.ioas_alloc())?;
    log.ok("map_a", map_fixed(&ictx, src, &a, 0x10_0000))?;
    log.ok("map_b", map_fixed(&ictx, src, &b, 0x10_4000))?;
    let rw = MapFlags::READABLE | MapFlags::WRITEABLE;
    let at = MOCK_APERTURE_START;
    log.ok(
        "copy_across",
        ictx.ioas_copy(dst, src, 0x10_2000, 0x4000, Some(at), rw),
    )?;
    // SAFETY: pointer arithmetic inside the buffer.
    let a_mid = unsafe { a.as_ptr().add(0x2000) };
    log.ok(
        "check_first",
        ictx.test_md_check_map(mock.hwpt_id, at, 0x2000, a_mid),
    )?;
    log.ok(
        "check_second",
        ictx.test_md_check_map(mock.hwpt_id, at + 0x2000, 0x2000, b.as_ptr()),
    )?;
    log.errno(
        "unmap_split",
        ictx.ioas_unmap(dst, at + 0x1000, 0x2000),
        Errno::ENOENT,
    )?;
    log.eq(
        "unmap_second",
        ictx.ioas_unmap(dst, at + 0x2000, 0x2000)?,
        0x2000,
    )?;
    log.eq("unmap_first", ictx.ioas_unmap(dst, at, 0x2000)?, 0x2000)?;
    log.eq("unmap_src", ictx.ioas_unmap_all(src)?, 0x8000)
}

/// IOVA_RANGES and ALLOW_IOVAS with an array whose second entry lies on an inaccessible
/// page: IOVA_RANGES writes the first range, then fails EFAULT without writing the count
/// back; ALLOW_IOVAS fails EFAULT and keeps the allowed ranges it had.
fn ioas_range_arrays_faulting_midway(t: &dyn Target, log: &mut Log) -> Outcome {
    let a = buffer(0x4000)?;
    let pages = buffer(0x2000)?;
    // SAFETY: the second page of `pages`' own mapping becomes inaccessible; nothing in
    // this process refers to it, and the whole mapping is unmapped on drop.
    let rc = unsafe {
        libc::mprotect(
            pages.as_ptr().add(0x1000) as *mut libc::c_void,
            0x1000,
            libc::PROT_NONE,
        )
    };
    if rc != 0 {
        return Err(Failure(format!("mprotect: {}", Errno::last())));
    }
    let edge = pages.as_ptr() as u64 + 0x1000 - 16;
    for i in 0..16 {
        pages.set(0x1000 - 16 + i, 0xAA);
    }
    let ictx = t.iommufd()?;
    let ioas = log.ok("ioas", ictx.ioas_alloc())?;
    log.ok(
        "add_reserved",
        ictx.test_add_reserved(ioas, 0x10_0000, 0x10_0000),
    )?;
    let mut buf = [32 | (ioas as u64) << 32, 2, edge, 0];
    let call = vtd_iommufd::Call::IoasIovaRanges;
    // SAFETY: the kernel writes the 32-byte struct in `buf` and at most two 16-byte
    // ranges from `edge`: the last 16 bytes of `pages`' first page, then its second page,
    // which faults.
    let r = unsafe { ioctl_as(&ictx, IOMMU_IOAS_IOVA_RANGES, call, &mut buf) };
    log.errno("ranges", r, Errno::EFAULT)?;
    log.eq("num_not_written", buf[1] as u32, 2)?;
    let word =
        |at: usize| u64::from_le_bytes(std::array::from_fn(|k| pages.get(0x1000 - 16 + at + k)));
    log.eq(
        "first_written",
        format!("{:x?}", [word(0), word(8)]),
        format!("{:x?}", [0u64, 0xf_ffff]),
    )?;
    let g = 1u64 << 30;
    log.ok("allow", ictx.ioas_allow_iovas(ioas, &[(g, g + 0xffff)]))?;
    for (i, word) in [2 * g, 2 * g + 0xffff].iter().enumerate() {
        for (j, byte) in word.to_le_bytes().iter().enumerate() {
            pages.set(0x1000 - 16 + i * 8 + j, *byte);
        }
    }
    let mut buf = [24 | (ioas as u64) << 32, 2, edge];
    let call = vtd_iommufd::Call::IoasAllowIovas;
    // SAFETY: the kernel reads the 24-byte struct in `buf` and at most two ranges from
    // `edge`: the first readable, the second on the inaccessible page.
    let r = unsafe { ioctl_as(&ictx, IOMMU_IOAS_ALLOW_IOVAS, call, &mut buf) };
    log.errno("allow_faulting", r, Errno::EFAULT)?;
    let auto = log.ok("map_auto", map_auto(&ictx, ioas, &a))?;
    log.check("auto_in_old_allowed", (g..=g + 0xffff).contains(&auto))?;
    log.eq("unmap_all", ictx.ioas_unmap_all(ioas)?, 0x4000)
}

/// A fault queue: (FAULT id, descriptor), from IOMMU_FAULT_QUEUE_ALLOC.
fn fault_queue(ictx: &Iommufd<Fd>) -> vtd_iommufd::Result<(u32, i32)> {
    // struct iommu_fault_alloc: size, flags, out_fault_id, out_fault_fd.
    let mut buf = [16u64, 0];
    raw(ictx, IOMMU_FAULT_QUEUE_ALLOC, &mut buf)?;
    Ok((buf[1] as u32, (buf[1] >> 32) as i32))
}

/// A selftest nested HWPT over `parent` delivering its page faults to `fault`.
fn nested_with_fault(
    ictx: &Iommufd<Fd>,
    dev: u32,
    parent: u32,
    fault: u32,
) -> vtd_iommufd::Result<u32> {
    let mut data = IOMMU_TEST_IOTLB_DEFAULT;
    ictx.hwpt_alloc_raw(&mut iommu_hwpt_alloc {
        size: size_of::<iommu_hwpt_alloc>(),
        flags: HwptAllocFlags::FAULT_ID_VALID.bits(),
        dev_id: dev,
        pt_id: parent,
        data_type: IOMMU_HWPT_DATA_SELFTEST,
        data_len: 4,
        data_uptr: &mut data as *mut u32 as u64,
        fault_id: fault,
        ..Default::default()
    })
}

/// read(2) of up to `len` bytes from a fault queue: the bytes read.
fn read_queue(t: &dyn Target, fd: i32, len: usize) -> vtd_iommufd::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let n = t.fault_read(fd, &mut buf).map_err(|errno| Error::Ioctl {
        call: Call::FaultRead,
        errno,
    })?;
    buf.truncate(n);
    Ok(buf)
}

/// read(2) of up to `records` fault records from a fault queue.
fn read_faults(t: &dyn Target, fd: i32, records: usize) -> vtd_iommufd::Result<Vec<u8>> {
    read_queue(t, fd, records * FAULT_RECORD)
}

/// write(2) of `bytes` to a fault queue: the bytes taken.
fn write_queue(t: &dyn Target, fd: i32, bytes: &[u8]) -> vtd_iommufd::Result<usize> {
    t.fault_write(fd, bytes).map_err(|errno| Error::Ioctl {
        call: Call::FaultWrite,
        errno,
    })
}

/// write(2) of `struct iommu_hwpt_page_response` {cookie, code} records.
fn respond(t: &dyn Target, fd: i32, answers: &[(u32, u32)]) -> vtd_iommufd::Result<usize> {
    let bytes: Vec<u8> = answers
        .iter()
        .flat_map(|(cookie, code)| [cookie.to_le_bytes(), code.to_le_bytes()].concat())
        .collect();
    write_queue(t, fd, &bytes)
}

/// Bytes of `struct iommu_hwpt_pgfault`.
const FAULT_RECORD: usize = std::mem::size_of::<iommu_hwpt_pgfault>();
/// IOMMU_PGFAULT_PERM_READ | IOMMU_PGFAULT_PERM_WRITE.
const PERM_RW: u32 = 3;

/// One fault record as `flags,dev_id,pasid,grpid,perm,reserved,addr,length,cookie`.
fn record_fields(r: &[u8]) -> String {
    let u32_at = |o: usize| u32::from_le_bytes(r[o..o + 4].try_into().unwrap_or_default());
    let addr = u64::from_le_bytes(r[24..32].try_into().unwrap_or_default());
    format!(
        "{},{},{},{},{},{},{addr:#x},{},{}",
        u32_at(0),
        u32_at(4),
        u32_at(8),
        u32_at(12),
        u32_at(16),
        u32_at(20),
        u32_at(32),
        u32_at(36)
    )
}

/// The cookie of the record at `at`.
fn cookie_of(records: &[u8], at: usize) -> u32 {
    let o = at * FAULT_RECORD + 36;
    records
        .get(o..o + 4)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u32::from_le_bytes)
}

/// A mock device on a nested HWPT with a FAULT: TRIGGER_IOPF queues one record, which
/// one read returns (flags PASID_VALID|LAST_PAGE, the DEVICE id, the request's fields,
/// length 0, cookie 1) and no later read returns again. Reads and writes must be whole
/// records (ESPIPE); a response needs a known cookie and code SUCCESS or INVALID
/// (EINVAL) and answers once; an answered cookie is given out again. While attached the
/// HWPT is EBUSY; once the device is back on its IOAS and the queue's descriptor is
/// closed, the FAULT is destroyed.
fn fault_iopf_is_read_once_and_answered_by_cookie(t: &dyn Target, log: &mut Log) -> Outcome {
    let (ictx, ioas, mock) = with_mock(t, log)?;
    let parent = log.ok(
        "parent",
        ictx.hwpt_alloc_paging(mock.idev_id, ioas, HwptAllocFlags::NEST_PARENT),
    )?;
    let (fault, fd) = log.ok("fault_queue", fault_queue(&ictx))?;
    let nested = log.ok(
        "nested",
        nested_with_fault(&ictx, mock.idev_id, parent, fault),
    )?;
    log.ok(
        "replace",
        ictx.test_mock_domain_replace(mock.stdev_id, nested),
    )?;
    log.errno("destroy_attached", ictx.destroy(nested), Errno::EBUSY)?;
    let trigger = |pasid: u32| ictx.test_trigger_iopf(mock.idev_id, pasid, 2, PERM_RW, 0xdead_beaf);
    log.ok("trigger", trigger(1))?;
    log.errno(
        "read_partial",
        read_queue(t, fd, FAULT_RECORD - 1),
        Errno::ESPIPE,
    )?;
    let first = log.ok("read", read_faults(t, fd, 2))?;
    log.eq("read_bytes", first.len(), FAULT_RECORD)?;
    log.note("record", record_fields(&first));
    let cookie = cookie_of(&first, 0);
    log.eq("read_again_bytes", log_len(read_faults(t, fd, 2))?, 0)?;
    log.errno(
        "respond_bad_code",
        respond(t, fd, &[(cookie, 2)]),
        Errno::EINVAL,
    )?;
    log.errno(
        "respond_unknown",
        respond(t, fd, &[(cookie + 1, 0)]),
        Errno::EINVAL,
    )?;
    log.errno(
        "respond_partial",
        write_queue(t, fd, &[0u8; 7]),
        Errno::ESPIPE,
    )?;
    log.eq("respond", respond(t, fd, &[(cookie, 0)])?, 8)?;
    log.errno(
        "respond_twice",
        respond(t, fd, &[(cookie, 0)]),
        Errno::EINVAL,
    )?;
    log.ok("trigger_no_pasid", trigger(0))?;
    let second = log.ok("read_no_pasid", read_faults(t, fd, 1))?;
    log.note("record_no_pasid", record_fields(&second));
    log.eq(
        "respond_invalid",
        respond(t, fd, &[(cookie_of(&second, 0), 1)])?,
        8,
    )?;
    log.ok(
        "replace_back",
        ictx.test_mock_domain_replace(mock.stdev_id, ioas),
    )?;
    log.ok("destroy_nested", ictx.destroy(nested))?;
    log.errno("destroy_fault_open", ictx.destroy(fault), Errno::EBUSY)?;
    log.eq("close", t.close_fd(fd).is_ok(), true)?;
    log.ok("destroy_fault", ictx.destroy(fault))
}

/// Bytes read, for a read that must succeed.
fn log_len(r: vtd_iommufd::Result<Vec<u8>>) -> Result<usize, Failure> {
    r.map(|v| v.len())
        .map_err(|e| Failure(format!("read: {e}")))
}

/// A page request reaches a queue only through a HWPT with a FAULT: from a device on its
/// paging mock domain or on a nested HWPT without one, TRIGGER_IOPF succeeds and nothing
/// is queued. A DEVICE id that does not exist is ENOENT.
fn fault_iopf_without_a_fault_hwpt_is_dropped(t: &dyn Target, log: &mut Log) -> Outcome {
    let (ictx, ioas, mock) = with_mock(t, log)?;
    let (_fault, fd) = log.ok("fault_queue", fault_queue(&ictx))?;
    let trigger = |dev: u32, pasid: u32| ictx.test_trigger_iopf(dev, pasid, 0, PERM_RW, 0x1000);
    log.ok("trigger_paging", trigger(mock.idev_id, 0))?;
    log.ok("trigger_paging_pasid", trigger(mock.idev_id, 1))?;
    let parent = log.ok(
        "parent",
        ictx.hwpt_alloc_paging(mock.idev_id, ioas, HwptAllocFlags::NEST_PARENT),
    )?;
    let nested = log.ok(
        "nested",
        ictx.hwpt_alloc_selftest_nested(mock.idev_id, parent, IOMMU_TEST_IOTLB_DEFAULT),
    )?;
    log.ok(
        "replace",
        ictx.test_mock_domain_replace(mock.stdev_id, nested),
    )?;
    log.ok("trigger_nested", trigger(mock.idev_id, 1))?;
    log.errno("trigger_no_device", trigger(99, 0), Errno::ENOENT)?;
    log.eq("read_bytes", log_len(read_faults(t, fd, 1))?, 0)?;
    log.eq("close", t.close_fd(fd).is_ok(), true)
}

/// Leaving an attachment answers the faults that came through it, read or not: a
/// replace to another HWPT sharing the FAULT, and the device's destruction, each leave
/// nothing to read and the cookies read before unknown (EINVAL).
fn fault_leaving_the_attachment_answers_its_faults(t: &dyn Target, log: &mut Log) -> Outcome {
    let (ictx, ioas, mock) = with_mock(t, log)?;
    let parent = log.ok(
        "parent",
        ictx.hwpt_alloc_paging(mock.idev_id, ioas, HwptAllocFlags::NEST_PARENT),
    )?;
    let (fault, fd) = log.ok("fault_queue", fault_queue(&ictx))?;
    let first = log.ok(
        "nested_1",
        nested_with_fault(&ictx, mock.idev_id, parent, fault),
    )?;
    let second = log.ok(
        "nested_2",
        nested_with_fault(&ictx, mock.idev_id, parent, fault),
    )?;
    let trigger = |grpid: u32| ictx.test_trigger_iopf(mock.idev_id, 1, grpid, PERM_RW, 0x2000);
    for (label, hwpt) in [("replace", first), ("destroy", second)] {
        log.ok(
            &format!("{label}_attach"),
            ictx.test_mock_domain_replace(mock.stdev_id, hwpt),
        )?;
        log.ok(&format!("{label}_trigger_1"), trigger(1))?;
        log.ok(&format!("{label}_trigger_2"), trigger(2))?;
        let read = log.ok(&format!("{label}_read"), read_faults(t, fd, 1))?;
        let cookie = cookie_of(&read, 0);
        log.note(&format!("{label}_cookie"), cookie);
        if label == "replace" {
            log.ok(
                "replace_leave",
                ictx.test_mock_domain_replace(mock.stdev_id, second),
            )?;
        } else {
            log.ok("destroy_leave", ictx.destroy(mock.stdev_id))?;
        }
        log.eq(
            &format!("{label}_read_after"),
            log_len(read_faults(t, fd, 2))?,
            0,
        )?;
        log.errno(
            &format!("{label}_respond_after"),
            respond(t, fd, &[(cookie, 0)]),
            Errno::EINVAL,
        )?;
    }
    log.eq("close", t.close_fd(fd).is_ok(), true)
}
