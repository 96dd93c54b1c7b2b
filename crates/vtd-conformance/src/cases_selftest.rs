//! The generic iommufd contract, exercised with the selftest's mock devices.

use vtd_iommufd::Errno;
use vtd_iommufd::ioctl::{
    IOMMU_DESTROY, IOMMU_GET_HW_INFO, IOMMU_HWPT_ALLOC, IOMMU_HWPT_INVALIDATE, IOMMU_IOAS_ALLOC,
    IOMMU_IOAS_IOVA_RANGES, IOMMU_IOAS_MAP, IOMMU_TEST_CMD, io,
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
    iommu_hwpt_invalidate, size_of,
};
use vtd_iommufd::{Error, Iommufd};

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
];

const MIB: u64 = 1 << 20;

/// Issue `request` with the struct in `buf` (its first u32 is the size the kernel reads).
fn raw(ictx: &Iommufd<Fd>, request: u64, buf: &mut [u64]) -> vtd_iommufd::Result<i32> {
    let size = buf.first().map_or(0, |w| *w as u32) as usize;
    assert!(
        size <= buf.len() * 8,
        "size {size} beyond a {}-byte buffer",
        buf.len() * 8
    );
    // SAFETY: the kernel reads `size` bytes of `buf` (checked to fit) and writes back at
    // most as many; the structs used here carry no user pointers, or zero ones.
    unsafe { ictx.fd().ioctl(request, buf.as_mut_ptr().cast()) }.map_err(|errno| Error::Ioctl {
        call: vtd_iommufd::Call::Destroy,
        errno,
    })
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
    log.ok("enable", ictx.hwpt_set_dirty_tracking(hwpt, true))?;
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
