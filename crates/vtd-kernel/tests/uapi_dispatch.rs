//! uAPI conformance: the ioctl dispatcher and its size rules (KS §1.2, selftest T1/T2),
//! the object table and IOMMU_DESTROY (core semantics §1.4–1.5), closing /dev/iommu
//! (§1.6), IOMMU_OPTION (§1.7), IOMMU_VFIO_IOAS and IOMMU_FAULT_QUEUE_ALLOC.

mod common;
mod uapi_support;

use uapi_support::layout::{self, IOCTLS};
use uapi_support::{Buf, Env, nr, raw, raw_ptr};
use vtd_iommufd::uapi::{HwptAllocFlags, MapFlags};
use vtd_iommufd::{Errno, Iommufd, VfioDevice};
use vtd_kernel::{Platform, PlatformDesc};

const RW: MapFlags = MapFlags::READABLE.union(MapFlags::WRITEABLE);

/// What each ioctl answers with an all-zero struct (only `size` set) on a fresh iommufd.
fn zero_struct_outcome(request: u64) -> Result<(), Errno> {
    match request {
        nr::IOMMU_IOAS_ALLOC | nr::IOMMU_OPTION | nr::IOMMU_FAULT_QUEUE_ALLOC => Ok(()),
        // Neither READABLE nor WRITEABLE.
        nr::IOMMU_IOAS_COPY | nr::IOMMU_IOAS_MAP => Err(Errno::EINVAL),
        // GET without a compat IOAS.
        nr::IOMMU_VFIO_IOAS => Err(Errno::ENODEV),
        // Object id 0 never exists.
        _ => Err(Errno::ENOENT),
    }
}

// ---------------------------------------------------------------------------------------
// T1: size rules of every ioctl.

#[test]
fn every_ioctl_one_byte_below_its_minimum_size_is_einval() {
    for (name, request, min, kernel) in IOCTLS {
        let env = Env::spr();
        let mut b = Buf::sized(kernel + 8, (min - 1) as u32);
        b.set_u8(kernel, 0xFF);
        assert_eq!(env.raw(request, &mut b), Err(Errno::EINVAL), "{name}");
    }
}

#[test]
fn every_ioctl_with_a_nonzero_byte_past_the_kernel_struct_is_e2big() {
    for (name, request, _, kernel) in IOCTLS {
        let env = Env::spr();
        let mut b = Buf::sized(kernel + 8, (kernel + 1) as u32);
        b.set_u8(kernel, 0xFF);
        assert_eq!(env.raw(request, &mut b), Err(Errno::E2BIG), "{name}");
    }
}

#[test]
fn every_ioctl_with_a_zero_byte_past_the_kernel_struct_behaves_like_the_exact_size() {
    for (name, request, _, kernel) in IOCTLS {
        let expected = zero_struct_outcome(request);
        let exact = Env::spr();
        let mut b = Buf::sized(kernel + 8, kernel as u32);
        assert_eq!(exact.raw(request, &mut b), expected, "{name}, exact size");
        let longer = Env::spr();
        let mut b = Buf::sized(kernel + 8, (kernel + 1) as u32);
        assert_eq!(longer.raw(request, &mut b), expected, "{name}, size + 1");
    }
}

#[test]
fn hwpt_alloc_of_24_bytes_zero_fills_the_fields_past_the_size() {
    let env = Env::spr();
    let (_dev, dev_id) = env.bind(0);
    let ioas = env.ioas();
    use layout::hwpt_alloc::*;
    let mut b = Buf::sized(SIZE, 24);
    b.set_u32(DEV_ID, dev_id).set_u32(PT_ID, ioas);
    // A VT-d data type and length past the size: ignored, so this is a plain paging alloc.
    b.set_u32(DATA_TYPE, 1)
        .set_u32(DATA_LEN, 24)
        .set_u32(FAULT_ID, 77);
    assert_eq!(env.raw(nr::IOMMU_HWPT_ALLOC, &mut b), Ok(()));
    assert_eq!(b.u32(OUT_HWPT_ID), 3);
    // Bytes past the user's size are never written back.
    assert_eq!((b.u32(DATA_TYPE), b.u32(DATA_LEN)), (1, 24));
}

#[test]
fn hw_info_of_32_bytes_writes_back_nothing_past_byte_32() {
    let env = Env::spr();
    let (_dev, dev_id) = env.bind(0);
    use layout::hw_info::*;
    let mut b = Buf::sized(SIZE, 32);
    b.set_u32(DEV_ID, dev_id);
    b.set_u64(OUT_CAPABILITIES, 0xDEAD_BEEF_DEAD_BEEF);
    assert_eq!(env.raw(nr::IOMMU_GET_HW_INFO, &mut b), Ok(()));
    assert_eq!(
        b.u32(OUT_DATA_TYPE),
        1,
        "the part inside the size is written"
    );
    assert_eq!(b.u64(OUT_CAPABILITIES), 0xDEAD_BEEF_DEAD_BEEF);
}

#[test]
fn size_reaching_unmapped_memory_is_efault() {
    let env = Env::spr();
    // The struct ends where an inaccessible page begins; the size claims 64 more bytes.
    let at = 0x1000 - 8;
    env.ram.fill(at, 0, 8);
    env.ram.protect(0x1000, 0x1000, libc::PROT_NONE);
    let size: u32 = 8 + 64;
    vtd_model::PhysMem::write_bytes(&env.ram, at, &size.to_le_bytes()).expect("in RAM");
    let r = raw_ptr(env.fd.fd(), nr::IOMMU_DESTROY, env.ram.hva(at));
    env.ram
        .protect(0x1000, 0x1000, libc::PROT_READ | libc::PROT_WRITE);
    assert_eq!(r, Err(Errno::EFAULT));
}

// ---------------------------------------------------------------------------------------
// T2: extended structs and unknown commands.

fn destroy_ex(size: u32, future: u64) -> Buf {
    let mut b = Buf::sized(16, size);
    b.set_u32(4, 0).set_u64(8, future);
    b
}

#[test]
fn destroy_of_id_0_with_a_longer_zero_struct_is_enoent() {
    let env = Env::spr();
    assert_eq!(
        env.raw(nr::IOMMU_DESTROY, &mut destroy_ex(16, 0)),
        Err(Errno::ENOENT)
    );
}

#[test]
fn destroy_with_a_nonzero_future_field_is_e2big() {
    let env = Env::spr();
    assert_eq!(
        env.raw(nr::IOMMU_DESTROY, &mut destroy_ex(16, 1)),
        Err(Errno::E2BIG)
    );
}

#[test]
fn destroy_of_the_original_size_ignores_the_future_field() {
    let env = Env::spr();
    assert_eq!(
        env.raw(nr::IOMMU_DESTROY, &mut destroy_ex(8, 1)),
        Err(Errno::ENOENT)
    );
}

#[test]
fn destroy_of_7_bytes_is_einval() {
    let env = Env::spr();
    assert_eq!(
        env.raw(nr::IOMMU_DESTROY, &mut destroy_ex(7, 0)),
        Err(Errno::EINVAL)
    );
}

#[test]
fn a_null_argument_is_efault() {
    let env = Env::spr();
    assert_eq!(
        raw_ptr(env.fd.fd(), nr::IOMMU_DESTROY, 0),
        Err(Errno::EFAULT)
    );
}

#[test]
fn nr_below_the_iommufd_range_is_enotty() {
    let env = Env::spr();
    let mut b = destroy_ex(8, 0);
    assert_eq!(env.raw(nr::io(0x7f), &mut b), Err(Errno::ENOTTY));
}

#[test]
fn nr_past_the_table_is_enotty_even_with_a_null_argument() {
    // 6.12 without CONFIG_IOMMUFD_TEST has 15 slots (0x80..=0x8e); 0x8f and up go to the
    // VFIO compatibility layer, which never reads the argument.
    let env = Env::spr();
    for n in [0x8f, 0x90, 0xa0] {
        assert_eq!(
            raw_ptr(env.fd.fd(), nr::io(n), 0),
            Err(Errno::ENOTTY),
            "{n:#x}"
        );
    }
}

#[test]
fn a_known_nr_with_size_bits_in_the_command_is_enotty() {
    let env = Env::spr();
    // _IOW(';', 0x80, struct iommu_destroy)
    let request = 1 << 30 | 8 << 16 | nr::IOMMU_DESTROY;
    assert_eq!(env.raw(request, &mut destroy_ex(8, 0)), Err(Errno::ENOTTY));
}

#[test]
fn a_known_nr_with_another_ioctl_type_is_enotty() {
    let env = Env::spr();
    let request = (b'x' as u64) << 8 | 0x80;
    assert_eq!(env.raw(request, &mut destroy_ex(8, 0)), Err(Errno::ENOTTY));
}

// ---------------------------------------------------------------------------------------
// Object ids and IOMMU_DESTROY (core semantics §1.4, §1.5).

#[test]
fn ids_start_at_1_and_the_lowest_free_id_is_reused() {
    let env = Env::spr();
    let ids: Vec<u32> = (0..4).map(|_| env.ioas()).collect();
    assert_eq!(ids, [1, 2, 3, 4]);
    env.destroy(2).expect("IOMMU_DESTROY");
    env.destroy(3).expect("IOMMU_DESTROY");
    assert_eq!(env.ioas(), 2);
    assert_eq!(env.ioas(), 3);
    assert_eq!(env.ioas(), 5);
}

#[test]
fn destroy_of_an_unknown_id_is_enoent() {
    let env = Env::spr();
    env.ioas();
    assert_eq!(env.destroy(2), Err(Errno::ENOENT));
    assert_eq!(env.destroy(0), Err(Errno::ENOENT));
}

#[test]
fn destroy_twice_is_enoent_the_second_time() {
    let env = Env::spr();
    let ioas = env.ioas();
    env.destroy(ioas).expect("IOMMU_DESTROY");
    assert_eq!(env.destroy(ioas), Err(Errno::ENOENT));
}

#[test]
fn destroy_of_a_bound_device_is_always_ebusy() {
    let env = Env::spr();
    let (_dev, dev_id) = env.bind(0);
    assert_eq!(env.destroy(dev_id), Err(Errno::EBUSY));
}

#[test]
fn destroy_of_an_ioas_holding_a_paging_hwpt_is_ebusy() {
    let env = Env::spr();
    let (_dev, dev_id) = env.bind(0);
    let ioas = env.ioas();
    let hwpt = env
        .paging(dev_id, ioas, HwptAllocFlags::empty())
        .expect("IOMMU_HWPT_ALLOC");
    assert_eq!(env.destroy(ioas), Err(Errno::EBUSY));
    env.destroy(hwpt).expect("IOMMU_DESTROY");
    assert_eq!(env.destroy(ioas), Ok(()));
}

#[test]
fn destroy_of_an_ioas_with_mappings_unmaps_and_unpins_them() {
    let env = Env::spr();
    let (_dev, dev_id) = env.bind(0);
    let ioas = env.ioas();
    env.map(ioas, 0, 0x4000, Some(0x10000), RW)
        .expect("IOMMU_IOAS_MAP");
    let hwpt = env
        .paging(dev_id, ioas, HwptAllocFlags::empty())
        .expect("IOMMU_HWPT_ALLOC");
    let hva = env.ram.hva(0);
    assert!(env.platform.host_mem().is_pinned(hva, 0x4000));
    env.destroy(hwpt).expect("IOMMU_DESTROY");
    env.destroy(ioas).expect("IOMMU_DESTROY");
    assert!(!env.platform.host_mem().is_pinned(hva, 1));
}

// ---------------------------------------------------------------------------------------
// Closing /dev/iommu (§1.6) and the id sequence of one device (§4.9).

#[test]
fn closing_dev_iommu_with_a_bound_device_keeps_every_object() {
    let platform = Platform::new(PlatformDesc::sapphire_rapids()).expect("platform builds");
    let ram = common::GuestRam::new(1 << 20);
    let fd = Iommufd::new(platform.open_iommufd());
    let dev = VfioDevice::new(platform.open_vfio(0).expect("open the VFIO cdev"));
    dev.bind_iommufd(vtd_iommufd::IoctlFd::fd_number(fd.fd()))
        .expect("VFIO_DEVICE_BIND_IOMMUFD");
    let ioas = fd.ioas_alloc().expect("IOMMU_IOAS_ALLOC");
    // SAFETY: `ram` outlives the device file, whose close tears the IOAS down.
    unsafe { fd.ioas_map(ioas, ram.ptr(0), 0x1000, Some(0x5000), RW) }.expect("IOMMU_IOAS_MAP");
    let hwpt = dev.attach_pt(ioas).expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
    drop(fd);
    ram.fill(0, 0x3C, 16);
    let mut buf = [0u8; 16];
    platform
        .dma_read(0, None, 0x5000, &mut buf)
        .expect("DMA read");
    assert_eq!(buf, [0x3C; 16], "the mapping survives the close");
    // VFIO attach keeps working with the ids of the closed iommufd.
    assert_eq!(
        dev.attach_pt(ioas).expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT"),
        hwpt
    );
    dev.detach_pt().expect("VFIO_DEVICE_DETACH_IOMMUFD_PT");
    assert!(matches!(
        platform.translate(0, None, 0x5000, 4, vtd_model::request::Access::Read),
        Err(vtd_kernel::DmaError::Fault(_))
    ));
}

#[test]
fn closing_the_last_file_frees_every_kernel_page_the_objects_used() {
    let platform = Platform::new(PlatformDesc::sapphire_rapids()).expect("platform builds");
    let ram = common::GuestRam::new(4 << 20);
    let run = || {
        let fd = Iommufd::new(platform.open_iommufd());
        let dev = VfioDevice::new(platform.open_vfio(0).expect("open the VFIO cdev"));
        let dev_id = dev
            .bind_iommufd(vtd_iommufd::IoctlFd::fd_number(fd.fd()))
            .expect("VFIO_DEVICE_BIND_IOMMUFD");
        let ioas = fd.ioas_alloc().expect("IOMMU_IOAS_ALLOC");
        // SAFETY: `ram` outlives both files.
        unsafe { fd.ioas_map(ioas, ram.ptr(0), 4 << 20, Some(0), RW) }.expect("IOMMU_IOAS_MAP");
        let parent = fd
            .hwpt_alloc_paging(dev_id, ioas, HwptAllocFlags::NEST_PARENT)
            .expect("IOMMU_HWPT_ALLOC");
        dev.attach_pt(parent)
            .expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
        drop(fd);
        drop(dev);
    };
    // The first attach creates the device's PASID table, which the driver keeps.
    run();
    let baseline = platform.host_mem().kernel_pages();
    run();
    assert_eq!(platform.host_mem().kernel_pages(), baseline);
    assert!(!platform.host_mem().is_pinned(ram.hva(0), 1));
}

#[test]
fn one_device_gets_the_id_sequence_of_linux() {
    let env = Env::spr();
    assert_eq!(env.ioas(), 1);
    let (dev, dev_id) = env.bind(0);
    assert_eq!(dev_id, 2);
    env.map(1, 0, 0x2000, Some(0x10000), RW)
        .expect("IOMMU_IOAS_MAP");
    assert_eq!(
        dev.attach_pt(1).expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT"),
        3,
        "auto HWPT"
    );
    assert_eq!(env.destroy(3), Err(Errno::EBUSY));
    assert_eq!(env.destroy(1), Err(Errno::EBUSY));
    let r = env.fd.ioas_iova_ranges(1).expect("IOMMU_IOAS_IOVA_RANGES");
    assert_eq!(r.alignment, 4096);
    dev.detach_pt().expect("VFIO_DEVICE_DETACH_IOMMUFD_PT");
    assert_eq!(env.destroy(3), Err(Errno::ENOENT), "auto HWPT gone");
    let r = env.fd.ioas_iova_ranges(1).expect("IOMMU_IOAS_IOVA_RANGES");
    assert_eq!((r.ranges, r.alignment), (vec![(0, u64::MAX)], 1));
    assert_eq!(env.destroy(1), Ok(()));
}

// ---------------------------------------------------------------------------------------
// IOMMU_OPTION (§1.7).

fn option(id: u32, op: u16, object: u32, val: u64) -> Buf {
    use layout::option::*;
    let mut b = Buf::sized(SIZE, SIZE as u32);
    b.set_u32(OPTION_ID, id)
        .set_u16(OP, op)
        .set_u32(OBJECT_ID, object)
        .set_u64(VAL64, val);
    b
}

use layout::option::{GET, HUGE_PAGES, RLIMIT_MODE, SET, VAL64};

#[test]
fn option_with_reserved_bits_is_eopnotsupp() {
    let env = Env::spr();
    let mut b = option(RLIMIT_MODE, GET, 0, 0);
    b.set_u16(layout::option::RESERVED, 1);
    assert_eq!(env.raw(nr::IOMMU_OPTION, &mut b), Err(Errno::EOPNOTSUPP));
}

#[test]
fn option_with_an_unknown_id_is_eopnotsupp() {
    let env = Env::spr();
    assert_eq!(
        env.raw(nr::IOMMU_OPTION, &mut option(2, GET, 0, 0)),
        Err(Errno::EOPNOTSUPP)
    );
}

#[test]
fn rlimit_mode_of_dev_iommu_reads_0() {
    let env = Env::spr();
    let mut b = option(RLIMIT_MODE, GET, 0, 7);
    assert_eq!(env.raw(nr::IOMMU_OPTION, &mut b), Ok(()));
    assert_eq!(b.u64(VAL64), 0);
}

#[test]
fn rlimit_mode_set_to_1_reads_back_1() {
    let env = Env::spr();
    assert_eq!(
        env.raw(nr::IOMMU_OPTION, &mut option(RLIMIT_MODE, SET, 0, 1)),
        Ok(())
    );
    let mut b = option(RLIMIT_MODE, GET, 0, 7);
    env.raw(nr::IOMMU_OPTION, &mut b).expect("IOMMU_OPTION");
    assert_eq!(b.u64(VAL64), 1);
    env.raw(nr::IOMMU_OPTION, &mut option(RLIMIT_MODE, SET, 0, 0))
        .expect("IOMMU_OPTION");
    env.raw(nr::IOMMU_OPTION, &mut b).expect("IOMMU_OPTION");
    assert_eq!(b.u64(VAL64), 0);
}

#[test]
fn rlimit_mode_set_to_2_is_einval() {
    let env = Env::spr();
    assert_eq!(
        env.raw(nr::IOMMU_OPTION, &mut option(RLIMIT_MODE, SET, 0, 2)),
        Err(Errno::EINVAL)
    );
}

#[test]
fn rlimit_mode_set_once_an_object_exists_is_ebusy() {
    let env = Env::spr();
    env.ioas();
    assert_eq!(
        env.raw(nr::IOMMU_OPTION, &mut option(RLIMIT_MODE, SET, 0, 1)),
        Err(Errno::EBUSY)
    );
}

#[test]
fn rlimit_mode_with_an_object_id_is_eopnotsupp() {
    let env = Env::spr();
    let ioas = env.ioas();
    assert_eq!(
        env.raw(nr::IOMMU_OPTION, &mut option(RLIMIT_MODE, GET, ioas, 0)),
        Err(Errno::EOPNOTSUPP)
    );
}

#[test]
fn option_with_an_unknown_op_is_eopnotsupp() {
    let env = Env::spr();
    let ioas = env.ioas();
    assert_eq!(
        env.raw(nr::IOMMU_OPTION, &mut option(RLIMIT_MODE, 2, 0, 0)),
        Err(Errno::EOPNOTSUPP)
    );
    assert_eq!(
        env.raw(nr::IOMMU_OPTION, &mut option(HUGE_PAGES, 2, ioas, 0)),
        Err(Errno::EOPNOTSUPP)
    );
}

#[test]
fn huge_pages_of_a_missing_ioas_is_enoent() {
    let env = Env::spr();
    let (_dev, dev_id) = env.bind(0);
    assert_eq!(
        env.raw(nr::IOMMU_OPTION, &mut option(HUGE_PAGES, GET, 0, 0)),
        Err(Errno::ENOENT)
    );
    assert_eq!(
        env.raw(nr::IOMMU_OPTION, &mut option(HUGE_PAGES, SET, dev_id, 1)),
        Err(Errno::ENOENT),
        "a DEVICE id is not an IOAS"
    );
}

#[test]
fn huge_pages_default_to_on_and_read_back_what_was_set() {
    let env = Env::spr();
    let ioas = env.ioas();
    let mut get = option(HUGE_PAGES, GET, ioas, 3);
    env.raw(nr::IOMMU_OPTION, &mut get).expect("IOMMU_OPTION");
    assert_eq!(get.u64(VAL64), 1);
    env.raw(nr::IOMMU_OPTION, &mut option(HUGE_PAGES, SET, ioas, 0))
        .expect("IOMMU_OPTION");
    env.raw(nr::IOMMU_OPTION, &mut get).expect("IOMMU_OPTION");
    assert_eq!(get.u64(VAL64), 0);
}

#[test]
fn huge_pages_set_to_2_is_einval() {
    let env = Env::spr();
    let ioas = env.ioas();
    assert_eq!(
        env.raw(nr::IOMMU_OPTION, &mut option(HUGE_PAGES, SET, ioas, 2)),
        Err(Errno::EINVAL)
    );
}

#[test]
fn huge_pages_off_raises_the_alignment_to_4096_and_back_on_lowers_it() {
    let env = Env::spr();
    let ioas = env.ioas();
    env.raw(nr::IOMMU_OPTION, &mut option(HUGE_PAGES, SET, ioas, 0))
        .expect("IOMMU_OPTION");
    assert_eq!(
        env.fd
            .ioas_iova_ranges(ioas)
            .expect("IOMMU_IOAS_IOVA_RANGES")
            .alignment,
        4096
    );
    env.raw(nr::IOMMU_OPTION, &mut option(HUGE_PAGES, SET, ioas, 1))
        .expect("IOMMU_OPTION");
    assert_eq!(
        env.fd
            .ioas_iova_ranges(ioas)
            .expect("IOMMU_IOAS_IOVA_RANGES")
            .alignment,
        1
    );
}

#[test]
fn huge_pages_off_with_a_domain_and_an_area_is_einval() {
    let env = Env::spr();
    let (_dev, dev_id) = env.bind(0);
    let ioas = env.ioas();
    env.map(ioas, 0, 0x1000, Some(0x1000), RW)
        .expect("IOMMU_IOAS_MAP");
    env.paging(dev_id, ioas, HwptAllocFlags::empty())
        .expect("IOMMU_HWPT_ALLOC");
    assert_eq!(
        env.raw(nr::IOMMU_OPTION, &mut option(HUGE_PAGES, SET, ioas, 0)),
        Err(Errno::EINVAL)
    );
}

#[test]
fn huge_pages_off_with_a_byte_granular_area_is_eaddrinuse_and_stays_on() {
    let env = Env::spr();
    let ioas = env.ioas();
    env.map(ioas, 0x10, 0x10, Some(0x1001), RW)
        .expect("IOMMU_IOAS_MAP");
    assert_eq!(
        env.raw(nr::IOMMU_OPTION, &mut option(HUGE_PAGES, SET, ioas, 0)),
        Err(Errno::EADDRINUSE)
    );
    let mut get = option(HUGE_PAGES, GET, ioas, 3);
    env.raw(nr::IOMMU_OPTION, &mut get).expect("IOMMU_OPTION");
    assert_eq!(get.u64(VAL64), 1);
}

// ---------------------------------------------------------------------------------------
// IOMMU_VFIO_IOAS.

fn vfio_ioas(op: u16, id: u32) -> Buf {
    use layout::vfio_ioas::*;
    let mut b = Buf::sized(SIZE, SIZE as u32);
    b.set_u16(OP, op).set_u32(IOAS_ID, id);
    b
}

#[test]
fn vfio_ioas_set_then_get_returns_the_ioas() {
    use layout::vfio_ioas::*;
    let env = Env::spr();
    env.ioas();
    let ioas = env.ioas();
    env.raw(nr::IOMMU_VFIO_IOAS, &mut vfio_ioas(SET, ioas))
        .expect("IOMMU_VFIO_IOAS");
    let mut get = vfio_ioas(GET, 0);
    assert_eq!(env.raw(nr::IOMMU_VFIO_IOAS, &mut get), Ok(()));
    assert_eq!(get.u32(IOAS_ID), ioas);
}

#[test]
fn vfio_ioas_set_of_a_non_ioas_is_enoent() {
    use layout::vfio_ioas::*;
    let env = Env::spr();
    let (_dev, dev_id) = env.bind(0);
    assert_eq!(
        env.raw(nr::IOMMU_VFIO_IOAS, &mut vfio_ioas(SET, dev_id)),
        Err(Errno::ENOENT)
    );
}

#[test]
fn vfio_ioas_clear_and_destroy_both_forget_the_compat_ioas() {
    use layout::vfio_ioas::*;
    let env = Env::spr();
    let ioas = env.ioas();
    env.raw(nr::IOMMU_VFIO_IOAS, &mut vfio_ioas(SET, ioas))
        .expect("IOMMU_VFIO_IOAS");
    env.raw(nr::IOMMU_VFIO_IOAS, &mut vfio_ioas(CLEAR, 0))
        .expect("IOMMU_VFIO_IOAS");
    assert_eq!(
        env.raw(nr::IOMMU_VFIO_IOAS, &mut vfio_ioas(GET, 0)),
        Err(Errno::ENODEV)
    );
    env.raw(nr::IOMMU_VFIO_IOAS, &mut vfio_ioas(SET, ioas))
        .expect("IOMMU_VFIO_IOAS");
    env.destroy(ioas).expect("IOMMU_DESTROY");
    assert_eq!(
        env.raw(nr::IOMMU_VFIO_IOAS, &mut vfio_ioas(GET, 0)),
        Err(Errno::ENODEV)
    );
}

#[test]
fn vfio_ioas_with_reserved_bits_or_an_unknown_op_is_eopnotsupp() {
    use layout::vfio_ioas::*;
    let env = Env::spr();
    let mut b = vfio_ioas(GET, 0);
    b.set_u16(RESERVED, 1);
    assert_eq!(env.raw(nr::IOMMU_VFIO_IOAS, &mut b), Err(Errno::EOPNOTSUPP));
    assert_eq!(
        env.raw(nr::IOMMU_VFIO_IOAS, &mut vfio_ioas(3, 0)),
        Err(Errno::EOPNOTSUPP)
    );
}

// ---------------------------------------------------------------------------------------
// IOMMU_FAULT_QUEUE_ALLOC and the FAULT object's references.

#[test]
fn fault_queue_alloc_with_flags_is_eopnotsupp() {
    use layout::fault_alloc::*;
    let env = Env::spr();
    let mut b = Buf::sized(SIZE, SIZE as u32);
    b.set_u32(FLAGS, 1);
    assert_eq!(
        env.raw(nr::IOMMU_FAULT_QUEUE_ALLOC, &mut b),
        Err(Errno::EOPNOTSUPP)
    );
    assert_eq!(env.next_id(), 1, "nothing was allocated");
}

#[test]
fn fault_queue_alloc_returns_an_object_id_and_a_descriptor() {
    let env = Env::spr();
    env.ioas();
    let (id, fd) = env.fault_alloc().expect("IOMMU_FAULT_QUEUE_ALLOC");
    assert_eq!(id, 2);
    assert!(fd >= 0);
}

#[test]
fn destroy_of_a_fault_whose_descriptor_is_open_is_ebusy() {
    let env = Env::spr();
    let (id, _fd) = env.fault_alloc().expect("IOMMU_FAULT_QUEUE_ALLOC");
    assert_eq!(env.destroy(id), Err(Errno::EBUSY));
}

#[test]
fn destroy_of_a_fault_succeeds_once_its_descriptor_is_closed() {
    let env = Env::spr();
    let (id, fd) = env.fault_alloc().expect("IOMMU_FAULT_QUEUE_ALLOC");
    assert_eq!(env.platform.close_fd(fd), Ok(()));
    assert_eq!(env.destroy(id), Ok(()));
    assert_eq!(
        env.platform.close_fd(fd),
        Err(Errno::EBADF),
        "closed already"
    );
}

#[test]
fn fault_queue_alloc_with_an_unwritable_reply_allocates_nothing() {
    let env = Env::spr();
    // The struct is readable but not writable: the reply fails, the object goes again.
    let at = 0x2000;
    env.ram.fill(at, 0, 16);
    vtd_model::PhysMem::write_bytes(&env.ram, at, &16u32.to_le_bytes()).expect("write guest RAM");
    env.ram.protect(at, 0x1000, libc::PROT_READ);
    let r = raw_ptr(env.fd.fd(), nr::IOMMU_FAULT_QUEUE_ALLOC, env.ram.hva(at));
    env.ram
        .protect(at, 0x1000, libc::PROT_READ | libc::PROT_WRITE);
    assert_eq!(r, Err(Errno::EFAULT));
    assert_eq!(env.next_id(), 1);
}

#[test]
fn ioas_alloc_with_flags_is_eopnotsupp_and_with_an_unwritable_reply_is_efault() {
    let env = Env::spr();
    let mut b = Buf::sized(12, 12);
    b.set_u32(4, 1);
    assert_eq!(
        env.raw(nr::IOMMU_IOAS_ALLOC, &mut b),
        Err(Errno::EOPNOTSUPP)
    );
    let at = 0x3000;
    env.ram.fill(at, 0, 12);
    vtd_model::PhysMem::write_bytes(&env.ram, at, &12u32.to_le_bytes()).expect("write guest RAM");
    env.ram.protect(at, 0x1000, libc::PROT_READ);
    let r = raw_ptr(env.fd.fd(), nr::IOMMU_IOAS_ALLOC, env.ram.hva(at));
    env.ram
        .protect(at, 0x1000, libc::PROT_READ | libc::PROT_WRITE);
    assert_eq!(r, Err(Errno::EFAULT));
    assert_eq!(env.next_id(), 1, "the IOAS was destroyed again");
}

#[test]
fn raw_helper_passes_the_buffer_unchanged_for_a_failing_call() {
    // Guard for the helpers: a failing DESTROY writes nothing back.
    let env = Env::spr();
    let mut b = destroy_ex(8, 0);
    b.set_u32(4, 9);
    assert_eq!(
        raw(env.fd.fd(), nr::IOMMU_DESTROY, &mut b),
        Err(Errno::ENOENT)
    );
    assert_eq!((b.u32(0), b.u32(4)), (8, 9));
}

#[test]
fn an_open_fault_queue_keeps_the_context_until_it_is_closed() {
    let platform = Platform::new(PlatformDesc::sapphire_rapids()).expect("platform builds");
    let ram = common::GuestRam::new(1 << 20);
    let fd = Iommufd::new(platform.open_iommufd());
    let dev = VfioDevice::new(platform.open_vfio(0).expect("open the VFIO cdev"));
    let dev_id = dev
        .bind_iommufd(vtd_iommufd::IoctlFd::fd_number(fd.fd()))
        .expect("VFIO_DEVICE_BIND_IOMMUFD");
    let ioas = fd.ioas_alloc().expect("IOMMU_IOAS_ALLOC");
    // SAFETY: `ram` outlives the context, which the last close below tears down.
    unsafe { fd.ioas_map(ioas, ram.ptr(0), 0x1000, Some(0x1000), RW) }.expect("IOMMU_IOAS_MAP");
    // An explicit HWPT: it keeps the pages pinned after the device goes.
    let hwpt = fd
        .hwpt_alloc_paging(dev_id, ioas, HwptAllocFlags::empty())
        .expect("IOMMU_HWPT_ALLOC");
    dev.attach_pt(hwpt).expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
    let mut b = Buf::sized(16, 16);
    raw(fd.fd(), nr::IOMMU_FAULT_QUEUE_ALLOC, &mut b).expect("IOMMU_FAULT_QUEUE_ALLOC");
    let fault_fd = b.u32(layout::fault_alloc::OUT_FAULT_FD) as i32;
    drop(fd);
    drop(dev);
    assert!(
        platform.host_mem().is_pinned(ram.hva(0), 0x1000),
        "the IOAS lives on"
    );
    platform.close_fd(fault_fd).expect("close the fault queue");
    assert!(!platform.host_mem().is_pinned(ram.hva(0), 1));
}
