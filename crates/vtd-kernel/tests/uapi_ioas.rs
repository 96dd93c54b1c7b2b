//! uAPI conformance: IOMMU_IOAS_MAP and IOMMU_IOAS_UNMAP with their errno order and
//! write-backs (core semantics §2.4, §2.6, §3.8), lazy pinning (§3.7, §7 item 1),
//! automatic IOVA allocation (§3.4) and large pages (§3.14). COPY, IOVA_RANGES,
//! ALLOW_IOVAS, the MSI window and alignment are in `uapi_ioas_copy_ranges.rs`.

mod common;
mod uapi_support;

use uapi_support::layout::{map, unmap};
use uapi_support::{Buf, Env, RAM, nr, raw_ptr};
use vtd_iommufd::Errno;
use vtd_iommufd::uapi::{HwptAllocFlags, MapFlags};

const RW: MapFlags = MapFlags::READABLE.union(MapFlags::WRITEABLE);
const R: MapFlags = MapFlags::READABLE;
const MSI: (u64, u64) = (0xFEE0_0000, 0xFEEF_FFFF);

fn map_cmd(ioas: u32, flags: u32, user_va: u64, length: u64, iova: u64) -> Buf {
    let mut b = Buf::sized(map::SIZE, map::SIZE as u32);
    b.set_u32(map::FLAGS, flags)
        .set_u32(map::IOAS_ID, ioas)
        .set_u64(map::USER_VA, user_va)
        .set_u64(map::LENGTH, length)
        .set_u64(map::IOVA, iova);
    b
}

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
// IOMMU_IOAS_MAP (§2.4): checks in order.

#[test]
fn map_with_an_unknown_flag_is_eopnotsupp() {
    let env = Env::spr();
    let ioas = env.ioas();
    let mut b = map_cmd(ioas, 0b1110, env.ram.hva(0), 0x1000, 0);
    assert_eq!(env.raw(nr::IOMMU_IOAS_MAP, &mut b), Err(Errno::EOPNOTSUPP));
}

#[test]
fn map_with_reserved_set_is_eopnotsupp() {
    let env = Env::spr();
    let ioas = env.ioas();
    let mut b = map_cmd(ioas, 0b110, env.ram.hva(0), 0x1000, 0);
    b.set_u32(map::RESERVED, 1);
    assert_eq!(env.raw(nr::IOMMU_IOAS_MAP, &mut b), Err(Errno::EOPNOTSUPP));
}

#[test]
fn map_of_length_u64_max_is_eoverflow_before_the_flag_check() {
    let env = Env::spr();
    let mut b = map_cmd(0, 0, env.ram.hva(0), u64::MAX, 0);
    assert_eq!(env.raw(nr::IOMMU_IOAS_MAP, &mut b), Err(Errno::EOVERFLOW));
    let mut b = map_cmd(0, 0, env.ram.hva(0), 0x1000, u64::MAX);
    assert_eq!(env.raw(nr::IOMMU_IOAS_MAP, &mut b), Err(Errno::EOVERFLOW));
}

#[test]
fn map_without_read_or_write_is_einval_before_the_ioas_lookup() {
    let env = Env::spr();
    let mut b = map_cmd(0, MapFlags::FIXED_IOVA.bits(), env.ram.hva(0), 0x1000, 0);
    assert_eq!(env.raw(nr::IOMMU_IOAS_MAP, &mut b), Err(Errno::EINVAL));
}

#[test]
fn map_into_a_missing_ioas_is_enoent() {
    let env = Env::spr();
    let (_dev, dev_id) = env.bind(0);
    assert_eq!(env.map(dev_id, 0, 0x1000, None, RW), Err(Errno::ENOENT));
}

#[test]
fn map_of_length_0_is_einval() {
    let env = Env::spr();
    let ioas = env.ioas();
    assert_eq!(env.map(ioas, 0, 0, Some(0x1000), RW), Err(Errno::EINVAL));
}

#[test]
fn map_of_user_memory_wrapping_past_2_pow_64_is_eoverflow() {
    let env = Env::spr();
    let ioas = env.ioas();
    let r = env.map_va(ioas, u64::MAX - 0xFFF, 0x1000, Some(0x1000), RW);
    assert_eq!(r, Err(Errno::EOVERFLOW));
}

#[test]
fn map_whose_length_is_not_a_multiple_of_the_alignment_is_einval() {
    let env = Env::spr();
    let (_dev, ioas, _) = with_domain(&env);
    assert_eq!(
        env.map(ioas, 0, 0x800, Some(0x1000), RW),
        Err(Errno::EINVAL)
    );
}

#[test]
fn fixed_map_at_a_misaligned_iova_is_einval() {
    let env = Env::spr();
    let (_dev, ioas, _) = with_domain(&env);
    assert_eq!(
        env.map(ioas, 0, 0x1000, Some(0x1800), RW),
        Err(Errno::EINVAL)
    );
}

#[test]
fn fixed_map_of_a_user_address_with_a_misaligned_page_offset_is_einval() {
    let env = Env::spr();
    let (_dev, ioas, _) = with_domain(&env);
    let r = env.map_va(ioas, env.ram.hva(0x10), 0x1000, Some(0x1000), RW);
    assert_eq!(r, Err(Errno::EINVAL));
}

#[test]
fn fixed_map_overlapping_an_area_is_eexist() {
    let env = Env::spr();
    let ioas = env.ioas();
    env.map(ioas, 0, 0x2000, Some(0x10000), RW)
        .expect("IOMMU_IOAS_MAP");
    assert_eq!(
        env.map(ioas, 0, 0x1000, Some(0x11000), RW),
        Err(Errno::EEXIST)
    );
    assert_eq!(env.map(ioas, 0, 0x1000, Some(0x12000), RW), Ok(0x12000));
}

#[test]
fn fixed_map_above_the_domain_aperture_is_einval() {
    let env = Env::spr();
    let (_dev, ioas, _) = with_domain(&env);
    // The Sapphire Rapids unit has a 57-bit second stage.
    assert_eq!(
        env.map(ioas, 0, 0x1000, Some(1 << 57), RW),
        Err(Errno::EINVAL)
    );
}

#[test]
fn map_writes_back_the_iova_it_chose() {
    let env = Env::spr();
    let ioas = env.ioas();
    let mut b = map_cmd(ioas, RW.bits(), env.ram.hva(0), 0x4000, 0xdead_0000);
    env.raw(nr::IOMMU_IOAS_MAP, &mut b).expect("IOMMU_IOAS_MAP");
    assert_eq!(b.u64(map::IOVA), 0x4000);
    let mut b = map_cmd(
        ioas,
        (RW | MapFlags::FIXED_IOVA).bits(),
        env.ram.hva(0),
        0x1000,
        0x80_0000,
    );
    env.raw(nr::IOMMU_IOAS_MAP, &mut b).expect("IOMMU_IOAS_MAP");
    assert_eq!(b.u64(map::IOVA), 0x80_0000);
}

#[test]
fn map_whose_reply_cannot_be_written_keeps_the_mapping() {
    let env = Env::spr();
    let ioas = env.ioas();
    // The command lives in a read-only page of guest RAM; it maps a different page.
    let cmd = map_cmd(
        ioas,
        (RW | MapFlags::FIXED_IOVA).bits(),
        env.ram.hva(0x10000),
        0x1000,
        0x20000,
    );
    let mut bytes = vec![0u8; map::SIZE];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = cmd.u8(i);
    }
    vtd_model::PhysMem::write_bytes(&env.ram, 0x3000, &bytes).expect("write guest RAM");
    env.ram.protect(0x3000, 0x1000, libc::PROT_READ);
    let r = raw_ptr(env.fd.fd(), nr::IOMMU_IOAS_MAP, env.ram.hva(0x3000));
    env.ram
        .protect(0x3000, 0x1000, libc::PROT_READ | libc::PROT_WRITE);
    assert_eq!(r, Err(Errno::EFAULT));
    assert_eq!(env.unmap(ioas, 0x20000, 0x1000), Ok(0x1000));
}

// ---------------------------------------------------------------------------------------
// Lazy pinning (§3.7, §7 item 1).

#[test]
fn map_of_inaccessible_memory_succeeds_while_the_ioas_has_no_domain() {
    let env = Env::spr();
    let ioas = env.ioas();
    env.ram.protect(0x40000, 0x1000, libc::PROT_NONE);
    assert_eq!(env.map(ioas, 0x40000, 0x1000, Some(0x1000), RW), Ok(0x1000));
}

#[test]
fn hwpt_alloc_on_an_ioas_with_inaccessible_memory_is_efault_and_leaves_nothing() {
    let env = Env::spr();
    let (_dev, dev_id) = env.bind(0);
    let ioas = env.ioas();
    env.map(ioas, 0, 0x1000, Some(0x1000), RW)
        .expect("IOMMU_IOAS_MAP");
    env.ram.protect(0x40000, 0x1000, libc::PROT_NONE);
    env.map(ioas, 0x40000, 0x1000, Some(0x2000), RW)
        .expect("IOMMU_IOAS_MAP");
    let r = env.paging(dev_id, ioas, HwptAllocFlags::empty());
    assert_eq!(r, Err(Errno::EFAULT));
    assert!(!env.platform.host_mem().is_pinned(env.ram.hva(0), 1));
    assert_eq!(env.next_id(), 3);
    assert_eq!(
        env.fd
            .ioas_iova_ranges(ioas)
            .expect("IOMMU_IOAS_IOVA_RANGES")
            .alignment,
        1
    );
}

#[test]
fn attach_to_an_ioas_with_inaccessible_memory_is_efault_and_detaches() {
    let env = Env::spr();
    let (dev, _) = env.bind(0);
    let ioas = env.ioas();
    env.ram.protect(0x40000, 0x1000, libc::PROT_NONE);
    env.map(ioas, 0x40000, 0x1000, Some(0x1000), RW)
        .expect("IOMMU_IOAS_MAP");
    assert_eq!(
        dev.attach_pt(ioas).map_err(uapi_support::err),
        Err(Errno::EFAULT)
    );
    assert_eq!(env.next_id(), 3, "the auto HWPT went away");
    // Not attached: DETACH is a no-op and the MSI window is free again.
    dev.detach_pt().expect("VFIO_DEVICE_DETACH_IOMMUFD_PT");
    assert_eq!(
        env.fd
            .ioas_iova_ranges(ioas)
            .expect("IOMMU_IOAS_IOVA_RANGES")
            .ranges,
        [(0, u64::MAX)]
    );
}

#[test]
fn map_of_inaccessible_memory_into_an_ioas_with_a_domain_is_efault() {
    let env = Env::spr();
    let (_dev, ioas, _) = with_domain(&env);
    env.ram.protect(0x40000, 0x1000, libc::PROT_NONE);
    assert_eq!(
        env.map(ioas, 0x40000, 0x1000, Some(0x1000), RW),
        Err(Errno::EFAULT)
    );
    assert_eq!(env.unmap(ioas, 0x1000, 0x1000), Err(Errno::ENOENT));
}

#[test]
fn writeable_map_of_read_only_memory_into_an_ioas_with_a_domain_is_efault() {
    let env = Env::spr();
    let (_dev, ioas, _) = with_domain(&env);
    env.ram.protect(0x40000, 0x1000, libc::PROT_READ);
    assert_eq!(
        env.map(ioas, 0x40000, 0x1000, Some(0x1000), RW),
        Err(Errno::EFAULT)
    );
    assert_eq!(env.map(ioas, 0x40000, 0x1000, Some(0x1000), R), Ok(0x1000));
}

// ---------------------------------------------------------------------------------------
// Automatic IOVA allocation (§3.4).

#[test]
fn auto_iova_is_the_lowest_aligned_address_above_page_0() {
    let env = Env::spr();
    let ioas = env.ioas();
    assert_eq!(env.map(ioas, 0, 0x4000, None, RW), Ok(0x4000));
    assert_eq!(env.map(ioas, 0, 0x1000, None, RW), Ok(0x1000));
    assert_eq!(env.map(ioas, 0, 0x1000, None, RW), Ok(0x2000));
    assert_eq!(env.map(ioas, 0, 0x4000, None, RW), Ok(0x8000));
}

#[test]
fn auto_iova_keeps_the_page_offset_of_the_user_address() {
    let env = Env::spr();
    let ioas = env.ioas();
    let r = env.map_va(ioas, env.ram.hva(0x10), 0x10, None, RW);
    assert_eq!(r, Ok(0x1010));
}

#[test]
fn auto_iova_alignment_is_capped_at_2_mib() {
    let env = Env::spr();
    let ioas = env.ioas();
    assert_eq!(env.map(ioas, 0, 4 << 20, None, RW), Ok(2 << 20));
}

#[test]
fn auto_iova_of_a_misaligned_user_address_is_einval_once_a_domain_needs_4096() {
    let env = Env::spr();
    let (_dev, ioas, _) = with_domain(&env);
    let r = env.map_va(ioas, env.ram.hva(0x800), 0x1000, None, RW);
    assert_eq!(r, Err(Errno::EINVAL));
}

#[test]
fn auto_iova_skips_the_reserved_msi_window() {
    let env = Env::spr();
    let (dev, _) = env.bind(0);
    let ioas = env.ioas();
    env.fd
        .ioas_allow_iovas(ioas, &[(0xFED0_0000, 0xFFFF_FFFF)])
        .ok();
    // The allowed range overlaps the MSI window, so attach must fail...
    assert_eq!(
        dev.attach_pt(ioas).map_err(uapi_support::err),
        Err(Errno::EADDRINUSE)
    );
    env.fd
        .ioas_allow_iovas(ioas, &[])
        .expect("IOMMU_IOAS_ALLOW_IOVAS");
    dev.attach_pt(ioas).expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
    // ...and once attached, auto allocation steps over the reserved window. Fill
    // everything below it with fixed maps of guest RAM.
    let mut at = 0;
    while at < MSI.0 {
        let len = (MSI.0 - at).min(RAM);
        env.map(ioas, 0, len, Some(at), RW)
            .expect("fill below the window");
        at += len;
    }
    assert_eq!(env.map(ioas, 0, 0x1000, None, RW), Ok(MSI.1 + 1));
}

#[test]
fn auto_iova_uses_only_the_allowed_ranges() {
    let env = Env::spr();
    let ioas = env.ioas();
    env.fd
        .ioas_allow_iovas(ioas, &[(0x10_0000, 0x10_FFFF), (0x40_0000, 0x7F_FFFF)])
        .expect("IOMMU_IOAS_ALLOW_IOVAS");
    assert_eq!(env.map(ioas, 0, 0x1000, None, RW), Ok(0x10_0000));
    assert_eq!(env.map(ioas, 0, 0x10_0000, None, RW), Ok(0x40_0000));
}

#[test]
fn auto_iova_without_room_in_the_allowed_ranges_is_enospc() {
    let env = Env::spr();
    let ioas = env.ioas();
    env.fd
        .ioas_allow_iovas(ioas, &[(0x10_0000, 0x10_FFFF)])
        .expect("IOMMU_IOAS_ALLOW_IOVAS");
    assert_eq!(env.map(ioas, 0, 0x2_0000, None, RW), Err(Errno::ENOSPC));
}

#[test]
fn allowed_ranges_do_not_limit_fixed_maps() {
    let env = Env::spr();
    let ioas = env.ioas();
    env.fd
        .ioas_allow_iovas(ioas, &[(0x10_0000, 0x10_FFFF)])
        .expect("IOMMU_IOAS_ALLOW_IOVAS");
    assert_eq!(env.map(ioas, 0, 0x1000, Some(0x5000), RW), Ok(0x5000));
    assert_eq!(
        env.map(ioas, 0, 0x1000, Some(0), RW),
        Ok(0),
        "page 0 is fine when fixed"
    );
}

// ---------------------------------------------------------------------------------------
// IOMMU_IOAS_UNMAP (§2.6, §3.8).

#[test]
fn unmap_all_of_an_empty_ioas_succeeds_with_length_0() {
    let env = Env::spr();
    let ioas = env.ioas();
    let mut b = Buf::sized(unmap::SIZE, unmap::SIZE as u32);
    b.set_u32(unmap::IOAS_ID, ioas)
        .set_u64(unmap::IOVA, 0)
        .set_u64(unmap::LENGTH, u64::MAX);
    assert_eq!(env.raw(nr::IOMMU_IOAS_UNMAP, &mut b), Ok(()));
    assert_eq!(b.u64(unmap::LENGTH), 0);
}

#[test]
fn unmap_of_a_missing_ioas_is_enoent_before_the_range_checks() {
    let env = Env::spr();
    assert_eq!(env.unmap(7, u64::MAX, 1), Err(Errno::ENOENT));
}

#[test]
fn unmap_of_length_u64_max_from_a_nonzero_iova_is_eoverflow() {
    let env = Env::spr();
    let ioas = env.ioas();
    env.map(ioas, 0, 0x1000, Some(0x1000), RW)
        .expect("IOMMU_IOAS_MAP");
    assert_eq!(env.unmap(ioas, 0x1000, u64::MAX), Err(Errno::EOVERFLOW));
}

#[test]
fn unmap_of_length_0_is_einval() {
    let env = Env::spr();
    let ioas = env.ioas();
    assert_eq!(env.unmap(ioas, 0x1000, 0), Err(Errno::EINVAL));
}

#[test]
fn unmap_whose_end_overflows_is_eoverflow() {
    let env = Env::spr();
    let ioas = env.ioas();
    assert_eq!(
        env.unmap(ioas, u64::MAX - 1, 2 << 12),
        Err(Errno::EOVERFLOW)
    );
}

#[test]
fn unmap_of_a_range_without_areas_is_enoent() {
    let env = Env::spr();
    let ioas = env.ioas();
    env.map(ioas, 0, 0x1000, Some(0x1000), RW)
        .expect("IOMMU_IOAS_MAP");
    assert_eq!(env.unmap(ioas, 0x2000, 0x1000), Err(Errno::ENOENT));
}

#[test]
fn unmap_of_several_areas_with_holes_returns_the_bytes_removed() {
    let env = Env::spr();
    let ioas = env.ioas();
    env.map(ioas, 0, 0x1000, Some(0x1000), RW)
        .expect("IOMMU_IOAS_MAP");
    env.map(ioas, 0, 0x2000, Some(0x8000), RW)
        .expect("IOMMU_IOAS_MAP");
    assert_eq!(env.unmap(ioas, 0, 0x10000), Ok(0x3000));
    assert_eq!(env.unmap_all(ioas), Ok(0));
}

#[test]
fn unmap_cutting_an_area_is_enoent_after_removing_the_areas_below_it() {
    let env = Env::spr();
    let ioas = env.ioas();
    env.map(ioas, 0, 0x1000, Some(0x1000), RW)
        .expect("IOMMU_IOAS_MAP");
    env.map(ioas, 0, 0x2000, Some(0x4000), RW)
        .expect("IOMMU_IOAS_MAP");
    assert_eq!(env.unmap(ioas, 0x1000, 0x4000), Err(Errno::ENOENT));
    assert_eq!(
        env.unmap(ioas, 0x1000, 0x1000),
        Err(Errno::ENOENT),
        "the first area was removed anyway"
    );
    assert_eq!(
        env.unmap(ioas, 0x4000, 0x2000),
        Ok(0x2000),
        "the cut area stays"
    );
}

#[test]
fn unmap_of_part_of_an_area_is_enoent_and_keeps_it() {
    let env = Env::spr();
    let ioas = env.ioas();
    env.map(ioas, 0, 0x4000, Some(0x4000), RW)
        .expect("IOMMU_IOAS_MAP");
    assert_eq!(env.unmap(ioas, 0x5000, 0x1000), Err(Errno::ENOENT));
    assert_eq!(env.unmap(ioas, 0x4000, 0x4000), Ok(0x4000));
}

#[test]
fn aligned_memory_is_mapped_with_2mib_pages_unless_huge_pages_are_off() {
    use vtd_model::request::Access;
    use vtd_spec::addr::PageSize;
    for (huge, size) in [(true, PageSize::Size2M), (false, PageSize::Size4K)] {
        let env = Env::spr();
        let (dev, _) = env.bind(0);
        let ioas = env.ioas();
        let mut b = Buf::sized(24, 24);
        b.set_u32(4, 1)
            .set_u16(8, 0)
            .set_u32(12, ioas)
            .set_u64(16, huge as u64);
        env.raw(nr::IOMMU_OPTION, &mut b).expect("IOMMU_OPTION");
        env.map(ioas, 2 << 20, 4 << 20, Some(4 << 20), RW)
            .expect("IOMMU_IOAS_MAP");
        dev.attach_pt(ioas).expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
        let t = env
            .platform
            .translate(0, None, (4 << 20) + 0x1234, 4, Access::Read)
            .expect("translation");
        assert_eq!(t.hpa, env.ram.hva((2 << 20) + 0x1234));
        assert_eq!(t.page_size, size, "huge pages {huge}");
    }
}
