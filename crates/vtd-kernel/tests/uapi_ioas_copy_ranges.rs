//! uAPI conformance: IOMMU_IOAS_COPY, IOMMU_IOAS_IOVA_RANGES and IOMMU_IOAS_ALLOW_IOVAS
//! (core semantics §2.2, §2.3, §2.5), the reserved MSI window of an attached VT-d device
//! (§3.10) and IOVA alignment (§3.12).

mod common;
mod uapi_support;

use uapi_support::layout::iova_ranges;
use uapi_support::{Buf, EXT0, Env, nr, two_units, unit_39bit};
use vtd_iommufd::Errno;
use vtd_iommufd::uapi::{HwptAllocFlags, MapFlags};

const RW: MapFlags = MapFlags::READABLE.union(MapFlags::WRITEABLE);
const R: MapFlags = MapFlags::READABLE;
const MSI: (u64, u64) = (0xFEE0_0000, 0xFEEF_FFFF);

/// An IOAS with a paging HWPT (alignment 4096) for a bound `nic0`: (device, IOAS, HWPT).
fn with_domain(env: &Env) -> (Dev, u32, u32) {
    let (dev, dev_id) = env.bind(0);
    let ioas = env.ioas();
    let hwpt = env
        .paging(dev_id, ioas, HwptAllocFlags::empty())
        .expect("IOMMU_HWPT_ALLOC");
    (dev, ioas, hwpt)
}

type Dev = vtd_iommufd::VfioDevice<vtd_kernel::VfioDeviceFile>;

// ---------------------------------------------------------------------------------------
// IOMMU_IOAS_COPY (§2.5).

fn copy(
    env: &Env,
    dst: u32,
    src: u32,
    src_iova: u64,
    len: u64,
    dst_iova: Option<u64>,
    flags: MapFlags,
) -> Result<u64, Errno> {
    env.fd
        .ioas_copy(dst, src, src_iova, len, dst_iova, flags)
        .map_err(uapi_support::err)
}

#[test]
fn copy_with_an_unknown_flag_is_eopnotsupp() {
    let env = Env::spr();
    let ioas = env.ioas();
    let mut b = Buf::sized(40, 40);
    b.set_u32(4, 1 << 16 | RW.bits())
        .set_u32(8, ioas)
        .set_u32(12, ioas)
        .set_u64(16, 0x1000);
    assert_eq!(env.raw(nr::IOMMU_IOAS_COPY, &mut b), Err(Errno::EOPNOTSUPP));
}

#[test]
fn copy_with_a_u64_max_field_is_eoverflow() {
    let env = Env::spr();
    let ioas = env.ioas();
    assert_eq!(
        copy(&env, ioas, ioas, u64::MAX, 0x1000, None, RW),
        Err(Errno::EOVERFLOW)
    );
    assert_eq!(
        copy(&env, ioas, ioas, 0, u64::MAX, None, RW),
        Err(Errno::EOVERFLOW)
    );
}

#[test]
fn copy_without_read_or_write_is_einval() {
    let env = Env::spr();
    let ioas = env.ioas();
    env.map(ioas, 0, 0x1000, Some(0x1000), RW)
        .expect("IOMMU_IOAS_MAP");
    assert_eq!(
        copy(&env, ioas, ioas, 0x1000, 0x1000, None, MapFlags::empty()),
        Err(Errno::EINVAL)
    );
}

#[test]
fn copy_from_a_missing_source_ioas_is_enoent() {
    let env = Env::spr();
    let ioas = env.ioas();
    assert_eq!(
        copy(&env, ioas, 9, 0x1000, 0x1000, None, RW),
        Err(Errno::ENOENT)
    );
}

#[test]
fn copy_of_length_0_is_einval_before_the_destination_lookup() {
    let env = Env::spr();
    let src = env.ioas();
    assert_eq!(copy(&env, 9, src, 0x1000, 0, None, RW), Err(Errno::EINVAL));
}

#[test]
fn copy_of_an_unmapped_source_range_is_enoent() {
    let env = Env::spr();
    let src = env.ioas();
    let dst = env.ioas();
    env.map(src, 0, 0x1000, Some(0x1000), RW)
        .expect("IOMMU_IOAS_MAP");
    env.map(src, 0, 0x1000, Some(0x3000), RW)
        .expect("IOMMU_IOAS_MAP");
    assert_eq!(
        copy(&env, dst, src, 0x1000, 0x3000, None, RW),
        Err(Errno::ENOENT),
        "a gap in the chain"
    );
}

#[test]
fn copy_of_a_sub_range_spanning_two_areas_makes_one_area_per_piece() {
    let env = Env::spr();
    let src = env.ioas();
    let dst = env.ioas();
    env.map(src, 0, 0x2000, Some(0x10000), RW)
        .expect("IOMMU_IOAS_MAP");
    env.map(src, 0x8000, 0x2000, Some(0x12000), RW)
        .expect("IOMMU_IOAS_MAP");
    let at = copy(&env, dst, src, 0x11000, 0x2000, Some(0x50000), RW);
    assert_eq!(at, Ok(0x50000));
    assert_eq!(env.unmap(dst, 0x50000, 0x800), Err(Errno::ENOENT));
    assert_eq!(env.unmap(dst, 0x50000, 0x1000), Ok(0x1000));
    assert_eq!(env.unmap(dst, 0x51000, 0x1000), Ok(0x1000));
}

#[test]
fn writeable_copy_of_a_read_only_source_is_eperm() {
    let env = Env::spr();
    let src = env.ioas();
    let dst = env.ioas();
    env.map(src, 0, 0x1000, Some(0x1000), R)
        .expect("IOMMU_IOAS_MAP");
    assert_eq!(
        copy(&env, dst, src, 0x1000, 0x1000, None, RW),
        Err(Errno::EPERM)
    );
    assert_eq!(copy(&env, dst, src, 0x1000, 0x1000, None, R), Ok(0x1000));
}

#[test]
fn copied_pages_are_the_source_pages() {
    let env = Env::spr();
    let (dev, _) = env.bind(0);
    let src = env.ioas();
    let dst = env.ioas();
    env.map(src, 0x7000, 0x1000, Some(0x1000), RW)
        .expect("IOMMU_IOAS_MAP");
    copy(&env, dst, src, 0x1000, 0x1000, Some(0x9000), RW).expect("IOMMU_IOAS_COPY");
    dev.attach_pt(dst).expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
    env.dma_write(0, 0x9010, b"copy").expect("DMA write");
    assert_eq!(env.ram.read(0x7010, 4), b"copy");
}

// ---------------------------------------------------------------------------------------
// IOMMU_IOAS_IOVA_RANGES (§2.2).

fn iova_ranges_cmd(ioas: u32, num: u32, ptr: u64) -> Buf {
    let mut b = Buf::sized(iova_ranges::SIZE, iova_ranges::SIZE as u32);
    b.set_u32(iova_ranges::IOAS_ID, ioas)
        .set_u32(iova_ranges::NUM_IOVAS, num)
        .set_u64(iova_ranges::ALLOWED_IOVAS, ptr);
    b
}

#[test]
fn a_fresh_ioas_has_one_range_and_alignment_1() {
    let env = Env::spr();
    let ioas = env.ioas();
    let r = env
        .fd
        .ioas_iova_ranges(ioas)
        .expect("IOMMU_IOAS_IOVA_RANGES");
    assert_eq!((r.ranges, r.alignment), (vec![(0, u64::MAX)], 1));
}

#[test]
fn an_attached_device_reserves_the_msi_window_and_everything_above_the_aperture() {
    let env = Env::spr();
    let (dev, _) = env.bind(0);
    let ioas = env.ioas();
    dev.attach_pt(ioas).expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
    let r = env
        .fd
        .ioas_iova_ranges(ioas)
        .expect("IOMMU_IOAS_IOVA_RANGES");
    assert_eq!(r.ranges, vec![(0, MSI.0 - 1), (MSI.1 + 1, (1 << 57) - 1)]);
    assert_eq!(r.alignment, 4096);
}

#[test]
fn iova_ranges_with_a_short_array_is_emsgsize_after_filling_it() {
    let env = Env::spr();
    let (dev, _) = env.bind(0);
    let ioas = env.ioas();
    dev.attach_pt(ioas).expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
    let mut out = Buf::new(32);
    out.poison(0, 32, 0xAA);
    let mut b = iova_ranges_cmd(ioas, 1, out.addr(0));
    assert_eq!(
        env.raw(nr::IOMMU_IOAS_IOVA_RANGES, &mut b),
        Err(Errno::EMSGSIZE)
    );
    assert_eq!(
        b.u32(iova_ranges::NUM_IOVAS),
        2,
        "the count is written back"
    );
    assert_eq!(b.u64(iova_ranges::OUT_IOVA_ALIGNMENT), 4096);
    assert_eq!((out.u64(0), out.u64(8)), (0, MSI.0 - 1));
    assert_eq!(
        out.u64(16),
        0xAAAA_AAAA_AAAA_AAAA,
        "only one element written"
    );
    let mut b = iova_ranges_cmd(ioas, 0, 0);
    assert_eq!(
        env.raw(nr::IOMMU_IOAS_IOVA_RANGES, &mut b),
        Err(Errno::EMSGSIZE)
    );
    assert_eq!(b.u32(iova_ranges::NUM_IOVAS), 2);
}

#[test]
fn iova_ranges_with_reserved_set_is_eopnotsupp() {
    let env = Env::spr();
    let ioas = env.ioas();
    let mut b = iova_ranges_cmd(ioas, 0, 0);
    b.set_u32(iova_ranges::RESERVED, 1);
    assert_eq!(
        env.raw(nr::IOMMU_IOAS_IOVA_RANGES, &mut b),
        Err(Errno::EOPNOTSUPP)
    );
}

#[test]
fn iova_ranges_of_a_missing_ioas_is_enoent() {
    let env = Env::spr();
    let mut b = iova_ranges_cmd(5, 0, 0);
    assert_eq!(
        env.raw(nr::IOMMU_IOAS_IOVA_RANGES, &mut b),
        Err(Errno::ENOENT)
    );
}

#[test]
fn iova_ranges_into_a_bad_pointer_is_efault() {
    let env = Env::spr();
    let ioas = env.ioas();
    let mut b = iova_ranges_cmd(ioas, 1, 0);
    assert_eq!(
        env.raw(nr::IOMMU_IOAS_IOVA_RANGES, &mut b),
        Err(Errno::EFAULT)
    );
}

// ---------------------------------------------------------------------------------------
// IOMMU_IOAS_ALLOW_IOVAS (§2.3).

fn allow(env: &Env, ioas: u32, ranges: &[(u64, u64)]) -> Result<(), Errno> {
    env.fd
        .ioas_allow_iovas(ioas, ranges)
        .map_err(uapi_support::err)
}

#[test]
fn allowing_a_single_byte_range_is_einval() {
    let env = Env::spr();
    let ioas = env.ioas();
    assert_eq!(allow(&env, ioas, &[(0x1000, 0x1000)]), Err(Errno::EINVAL));
    assert_eq!(allow(&env, ioas, &[(0x2000, 0x1000)]), Err(Errno::EINVAL));
}

#[test]
fn allowing_overlapping_ranges_is_einval_but_adjacent_ones_are_fine() {
    let env = Env::spr();
    let ioas = env.ioas();
    assert_eq!(
        allow(&env, ioas, &[(0x1000, 0x2fff), (0x2000, 0x3fff)]),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        allow(&env, ioas, &[(0x1000, 0x1fff), (0x2000, 0x2fff)]),
        Ok(())
    );
}

#[test]
fn allowing_a_reserved_range_is_eaddrinuse_and_keeps_the_old_set() {
    let env = Env::spr();
    let (dev, _) = env.bind(0);
    let ioas = env.ioas();
    dev.attach_pt(ioas).expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
    allow(&env, ioas, &[(0x10_0000, 0x10_FFFF)]).expect("IOMMU_IOAS_ALLOW_IOVAS");
    assert_eq!(
        allow(
            &env,
            ioas,
            &[(0x20_0000, 0x20_FFFF), (0xFEE0_0000, 0xFEE0_0FFF)]
        ),
        Err(Errno::EADDRINUSE)
    );
    assert_eq!(env.map(ioas, 0, 0x1000, None, RW), Ok(0x10_0000));
}

#[test]
fn allowed_ranges_may_overlap_areas() {
    let env = Env::spr();
    let ioas = env.ioas();
    env.map(ioas, 0, 0x1000, Some(0x10_0000), RW)
        .expect("IOMMU_IOAS_MAP");
    assert_eq!(allow(&env, ioas, &[(0x10_0000, 0x1F_FFFF)]), Ok(()));
    assert_eq!(env.map(ioas, 0, 0x1000, None, RW), Ok(0x10_1000));
}

#[test]
fn allowing_an_empty_set_lifts_the_restriction() {
    let env = Env::spr();
    let ioas = env.ioas();
    allow(&env, ioas, &[(0x10_0000, 0x10_FFFF)]).expect("IOMMU_IOAS_ALLOW_IOVAS");
    allow(&env, ioas, &[]).expect("IOMMU_IOAS_ALLOW_IOVAS");
    assert_eq!(env.map(ioas, 0, 0x1000, None, RW), Ok(0x1000));
}

#[test]
fn allow_iovas_with_reserved_set_a_missing_ioas_or_a_bad_pointer_fails_in_that_order() {
    let env = Env::spr();
    let ioas = env.ioas();
    let mut b = Buf::sized(24, 24);
    b.set_u32(4, 9).set_u32(8, 1).set_u32(12, 1);
    assert_eq!(
        env.raw(nr::IOMMU_IOAS_ALLOW_IOVAS, &mut b),
        Err(Errno::EOPNOTSUPP)
    );
    b.set_u32(12, 0);
    assert_eq!(
        env.raw(nr::IOMMU_IOAS_ALLOW_IOVAS, &mut b),
        Err(Errno::ENOENT)
    );
    b.set_u32(4, ioas);
    assert_eq!(
        env.raw(nr::IOMMU_IOAS_ALLOW_IOVAS, &mut b),
        Err(Errno::EFAULT)
    );
}

// ---------------------------------------------------------------------------------------
// The MSI window of a VT-d device (§3.10) and IOVA alignment (§3.12).

#[test]
fn attach_to_an_ioas_mapping_the_msi_window_is_eaddrinuse() {
    let env = Env::spr();
    let (dev, _) = env.bind(0);
    let ioas = env.ioas();
    env.map(ioas, 0, 0x1000, Some(0xFEEF_F000), RW)
        .expect("IOMMU_IOAS_MAP");
    assert_eq!(
        dev.attach_pt(ioas).map_err(uapi_support::err),
        Err(Errno::EADDRINUSE)
    );
    assert_eq!(env.next_id(), 3, "no auto HWPT left behind");
    assert_eq!(
        env.fd
            .ioas_iova_ranges(ioas)
            .expect("IOMMU_IOAS_IOVA_RANGES")
            .alignment,
        1
    );
}

#[test]
fn fixed_map_into_the_msi_window_after_attach_is_einval() {
    let env = Env::spr();
    let (dev, _) = env.bind(0);
    let ioas = env.ioas();
    dev.attach_pt(ioas).expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
    assert_eq!(
        env.map(ioas, 0, 0x1000, Some(0xFEE0_0000), RW),
        Err(Errno::EINVAL)
    );
    dev.detach_pt().expect("VFIO_DEVICE_DETACH_IOMMUFD_PT");
    assert_eq!(
        env.map(ioas, 0, 0x1000, Some(0xFEE0_0000), RW),
        Ok(0xFEE0_0000)
    );
}

#[test]
fn a_paging_hwpt_without_an_attached_device_does_not_reserve_the_msi_window() {
    let env = Env::spr();
    let (_dev, ioas, _) = with_domain(&env);
    assert_eq!(
        env.map(ioas, 0, 0x1000, Some(0xFEE0_0000), RW),
        Ok(0xFEE0_0000)
    );
}

#[test]
fn a_byte_granular_area_refuses_every_vtd_domain_until_it_is_gone() {
    let env = Env::spr();
    let (_dev, dev_id) = env.bind(0);
    let ioas = env.ioas();
    env.map(ioas, 0x10, 0x10, Some(0x1001), RW)
        .expect("IOMMU_IOAS_MAP");
    assert_eq!(
        env.paging(dev_id, ioas, HwptAllocFlags::empty()),
        Err(Errno::EADDRINUSE)
    );
    env.unmap(ioas, 0x1001, 0x10).expect("IOMMU_IOAS_UNMAP");
    assert!(env.paging(dev_id, ioas, HwptAllocFlags::empty()).is_ok());
}

#[test]
fn alignment_falls_back_to_1_when_the_last_domain_goes() {
    let env = Env::spr();
    let (_dev, ioas, hwpt) = with_domain(&env);
    assert_eq!(env.map(ioas, 0, 0x10, Some(0x1001), RW), Err(Errno::EINVAL));
    env.destroy(hwpt).expect("IOMMU_DESTROY");
    assert_eq!(env.map(ioas, 0, 0x10, Some(0x1001), RW), Ok(0x1001));
}

#[test]
fn a_domain_narrower_than_an_existing_area_is_eaddrinuse() {
    let env = Env::new(two_units(unit_39bit()));
    let (_ext, ext_id) = env.bind(EXT0);
    let ioas = env.ioas();
    env.map(ioas, 0, 0x1000, Some(1 << 39), RW)
        .expect("IOMMU_IOAS_MAP");
    assert_eq!(
        env.paging(ext_id, ioas, HwptAllocFlags::empty()),
        Err(Errno::EADDRINUSE)
    );
    env.unmap(ioas, 1 << 39, 0x1000).expect("IOMMU_IOAS_UNMAP");
    let hwpt = env
        .paging(ext_id, ioas, HwptAllocFlags::empty())
        .expect("IOMMU_HWPT_ALLOC");
    let r = env
        .fd
        .ioas_iova_ranges(ioas)
        .expect("IOMMU_IOAS_IOVA_RANGES");
    assert_eq!(r.ranges, vec![(0, (1 << 39) - 1)]);
    env.destroy(hwpt).expect("IOMMU_DESTROY");
}

#[test]
fn copy_of_unpinned_pages_into_an_ioas_with_a_domain_pins_them_and_can_fault() {
    let env = Env::spr();
    let (_dev, ioas_dst, _) = with_domain(&env);
    let src = env.ioas();
    env.ram.protect(0x40000, 0x1000, libc::PROT_NONE);
    env.map(src, 0x40000, 0x1000, Some(0x1000), RW)
        .expect("IOMMU_IOAS_MAP");
    let r = copy(&env, ioas_dst, src, 0x1000, 0x1000, Some(0x1000), RW);
    assert_eq!(r, Err(Errno::EFAULT));
    assert_eq!(env.unmap(ioas_dst, 0x1000, 0x1000), Err(Errno::ENOENT));
}

#[test]
fn iova_ranges_into_a_bad_pointer_does_not_write_the_count_back() {
    let env = Env::spr();
    let ioas = env.ioas();
    let mut b = iova_ranges_cmd(ioas, 1, 8);
    assert_eq!(
        env.raw(nr::IOMMU_IOAS_IOVA_RANGES, &mut b),
        Err(Errno::EFAULT)
    );
    assert_eq!(b.u32(iova_ranges::NUM_IOVAS), 1);
    assert_eq!(b.u64(iova_ranges::OUT_IOVA_ALIGNMENT), 0);
}
