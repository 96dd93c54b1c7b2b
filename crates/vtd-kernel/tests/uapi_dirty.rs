//! uAPI conformance: dirty tracking (KS §7, core semantics §3.15) and selftests T8
//! (`enforce_dirty`, with a unit without SSADS as the NO_DIRTY device) and T9 (bitmaps),
//! with real DMA writes setting stage-2 dirty bits instead of the mock's test op.

mod common;
mod uapi_support;

use common::{guest_s1_table, s1_map};
use uapi_support::layout::{dirty_bitmap, option, set_dirty};
use uapi_support::{
    Buf, EXT0, Env, NIC0, NIC1, err, nr, submissions, two_units, unit_without_ssads,
};
use vtd_iommufd::uapi::{HwptAllocFlags, MapFlags};
use vtd_iommufd::{Errno, VtdS1};
use vtd_spec::inv::DescType;
use vtd_spec::regs::IotlbGranularity;

const RW: MapFlags = MapFlags::READABLE.union(MapFlags::WRITEABLE);
const DIRTY: HwptAllocFlags = HwptAllocFlags::DIRTY_TRACKING;
const PAGE: u64 = 4096;
/// 64 pages of 4 KiB leaves: the user address is not 2 MiB aligned.
const BASE: u64 = 0x10_0000;
const PAGES: u64 = 64;

type Dev = vtd_iommufd::VfioDevice<vtd_kernel::VfioDeviceFile>;

/// `nic0` attached to a dirty-capable paging HWPT mapping [BASE, BASE + 64 pages) with
/// 4 KiB leaves, and [4 MiB, 8 MiB) with 2 MiB leaves.
struct Tracked {
    env: Env,
    dev: Dev,
    ioas: u32,
    hwpt: u32,
}

fn tracked() -> Tracked {
    let env = Env::spr();
    let (dev, dev_id) = env.bind(0);
    let ioas = env.ioas();
    env.map(ioas, PAGE, PAGES * PAGE, Some(BASE), RW)
        .expect("IOMMU_IOAS_MAP");
    env.map(ioas, 4 << 20, 4 << 20, Some(4 << 20), RW)
        .expect("IOMMU_IOAS_MAP");
    let hwpt = env.paging(dev_id, ioas, DIRTY).expect("IOMMU_HWPT_ALLOC");
    dev.attach_pt(hwpt).expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
    Tracked {
        env,
        dev,
        ioas,
        hwpt,
    }
}

fn set_tracking(env: &Env, hwpt: u32, on: bool) -> Result<(), Errno> {
    env.fd.hwpt_set_dirty_tracking(hwpt, on).map_err(err)
}

/// A GET_DIRTY_BITMAP command with the bitmap at `data`.
fn bitmap_cmd(hwpt: u32, iova: u64, length: u64, page_size: u64, flags: u32, data: u64) -> Buf {
    use dirty_bitmap::*;
    let mut b = Buf::sized(SIZE, SIZE as u32);
    b.set_u32(HWPT_ID, hwpt)
        .set_u32(FLAGS, flags)
        .set_u64(IOVA, iova)
        .set_u64(LENGTH, length)
        .set_u64(PAGE_SIZE, page_size)
        .set_u64(DATA, data);
    b
}

/// Read the bitmap of `[iova, iova + length)` into a zeroed buffer placed `skew` bytes
/// past an 8-byte boundary; returns its bits (one bool per page) and what followed it.
fn read_bits(
    env: &Env,
    hwpt: u32,
    iova: u64,
    length: u64,
    no_clear: bool,
    skew: usize,
) -> (Vec<bool>, u64) {
    let bits = (length / PAGE) as usize;
    let bytes = bits.div_ceil(64) * 8;
    let mut buf = Buf::new(skew + bytes + 8);
    buf.poison(skew + bytes, skew + bytes + 8, 0xAB);
    let mut b = bitmap_cmd(hwpt, iova, length, PAGE, no_clear as u32, buf.addr(skew));
    env.raw(nr::IOMMU_HWPT_GET_DIRTY_BITMAP, &mut b)
        .expect("GET_DIRTY_BITMAP");
    let out = (0..bits)
        .map(|k| buf.u8(skew + k / 8) >> (k % 8) & 1 == 1)
        .collect();
    (out, buf.u64(skew + bytes))
}

fn every_other_page_dirty(t: &Tracked) -> Vec<bool> {
    for p in (0..PAGES).step_by(2) {
        t.env
            .dma_write(0, BASE + p * PAGE + 8, &[p as u8])
            .expect("DMA write");
    }
    (0..PAGES).map(|p| p % 2 == 0).collect()
}

// ---------------------------------------------------------------------------------------
// T8 `enforce_dirty`.

#[test]
fn a_dirty_hwpt_takes_a_second_device_of_a_dirty_capable_unit() {
    let env = Env::new(two_units(unit_without_ssads()));
    let (nic, nic_id) = env.bind(NIC0);
    let (nic1, _) = env.bind(NIC1);
    let ioas = env.ioas();
    let hwpt = env.paging(nic_id, ioas, DIRTY).expect("IOMMU_HWPT_ALLOC");
    nic.attach_pt(hwpt).expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
    assert_eq!(
        nic1.attach_pt(hwpt).expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT"),
        hwpt
    );
}

#[test]
fn attaching_a_dirty_hwpt_to_a_device_without_ssads_is_einval() {
    let env = Env::new(two_units(unit_without_ssads()));
    let (_nic, nic_id) = env.bind(NIC0);
    let (ext, _) = env.bind(EXT0);
    let ioas = env.ioas();
    let hwpt = env.paging(nic_id, ioas, DIRTY).expect("IOMMU_HWPT_ALLOC");
    assert_eq!(ext.attach_pt(hwpt).map_err(err), Err(Errno::EINVAL));
}

#[test]
fn dirty_tracking_alloc_for_a_device_without_ssads_is_eopnotsupp() {
    let env = Env::new(two_units(unit_without_ssads()));
    let (_ext, ext_id) = env.bind(EXT0);
    let ioas = env.ioas();
    assert_eq!(env.paging(ext_id, ioas, DIRTY), Err(Errno::EOPNOTSUPP));
    assert_eq!(
        env.paging(ext_id, ioas, DIRTY | HwptAllocFlags::NEST_PARENT),
        Err(Errno::EOPNOTSUPP)
    );
    assert_eq!(env.next_id(), 3);
}

// ---------------------------------------------------------------------------------------
// IOMMU_HWPT_SET_DIRTY_TRACKING.

#[test]
fn dirty_tracking_enables_and_disables() {
    let t = tracked();
    assert_eq!(set_tracking(&t.env, t.hwpt, true), Ok(()));
    assert_eq!(set_tracking(&t.env, t.hwpt, true), Ok(()), "already on");
    assert_eq!(set_tracking(&t.env, t.hwpt, false), Ok(()));
}

#[test]
fn set_dirty_tracking_with_unknown_flags_is_eopnotsupp_and_ignores_reserved() {
    let t = tracked();
    let mut b = Buf::sized(set_dirty::SIZE, set_dirty::SIZE as u32);
    b.set_u32(set_dirty::HWPT_ID, t.hwpt)
        .set_u32(set_dirty::FLAGS, 2);
    assert_eq!(
        t.env.raw(nr::IOMMU_HWPT_SET_DIRTY_TRACKING, &mut b),
        Err(Errno::EOPNOTSUPP)
    );
    b.set_u32(set_dirty::FLAGS, 1)
        .set_u32(set_dirty::RESERVED, 7);
    assert_eq!(t.env.raw(nr::IOMMU_HWPT_SET_DIRTY_TRACKING, &mut b), Ok(()));
}

#[test]
fn set_dirty_tracking_on_a_nested_hwpt_is_enoent() {
    let env = Env::spr();
    let (_dev, dev_id) = env.bind(0);
    let ioas = env.ioas();
    let parent = env
        .paging(dev_id, ioas, DIRTY | HwptAllocFlags::NEST_PARENT)
        .expect("IOMMU_HWPT_ALLOC");
    let nested = env
        .nested(dev_id, parent, &VtdS1::new(0x1000))
        .expect("IOMMU_HWPT_ALLOC (nested)");
    assert_eq!(set_tracking(&env, nested, true), Err(Errno::ENOENT));
    let mut b = bitmap_cmd(nested, 0, PAGE, PAGE, 0, 0);
    assert_eq!(
        env.raw(nr::IOMMU_HWPT_GET_DIRTY_BITMAP, &mut b),
        Err(Errno::ENOENT)
    );
}

#[test]
fn set_dirty_tracking_on_a_hwpt_without_dirty_ops_is_eopnotsupp() {
    let env = Env::spr();
    let (_dev, dev_id) = env.bind(0);
    let ioas = env.ioas();
    let plain = env
        .paging(dev_id, ioas, HwptAllocFlags::empty())
        .expect("IOMMU_HWPT_ALLOC");
    assert_eq!(set_tracking(&env, plain, true), Err(Errno::EOPNOTSUPP));
}

#[test]
fn enabling_tracking_clears_stale_dirty_state_then_updates_each_entry() {
    let t = tracked();
    t.env.log(0);
    set_tracking(&t.env, t.hwpt, true).expect("IOMMU_HWPT_SET_DIRTY_TRACKING");
    let subs = submissions(&t.env.logged(0));
    let types: Vec<Vec<DescType>> = subs
        .iter()
        .map(|s| s.iter().map(|d| d.desc_type()).collect())
        .collect();
    assert_eq!(
        types,
        [
            vec![DescType::Iotlb],
            vec![DescType::PasidCache, DescType::Iotlb]
        ],
        "empty-gather flush, then the SSADE change"
    );
    for s in &subs {
        let d = vtd_spec::inv::IotlbInvDesc::from_bits(
            s.last().expect("a descriptor before the wait").lo,
        );
        assert_eq!((d.g(), d.did()), (IotlbGranularity::Domain, 2));
    }
}

// ---------------------------------------------------------------------------------------
// IOMMU_HWPT_GET_DIRTY_BITMAP: argument checks.

#[test]
fn get_dirty_bitmap_with_unknown_flags_or_reserved_is_eopnotsupp() {
    let t = tracked();
    let mut b = bitmap_cmd(t.hwpt, BASE, PAGE, PAGE, 2, 0);
    assert_eq!(
        t.env.raw(nr::IOMMU_HWPT_GET_DIRTY_BITMAP, &mut b),
        Err(Errno::EOPNOTSUPP)
    );
    let mut b = bitmap_cmd(t.hwpt, BASE, PAGE, PAGE, 0, 0);
    b.set_u32(dirty_bitmap::RESERVED, 1);
    assert_eq!(
        t.env.raw(nr::IOMMU_HWPT_GET_DIRTY_BITMAP, &mut b),
        Err(Errno::EOPNOTSUPP)
    );
}

#[test]
fn get_dirty_bitmap_of_an_overflowing_range_is_eoverflow() {
    let t = tracked();
    let mut b = bitmap_cmd(t.hwpt, u64::MAX - 0xFFF, 0x2000, PAGE, 0, 0);
    assert_eq!(
        t.env.raw(nr::IOMMU_HWPT_GET_DIRTY_BITMAP, &mut b),
        Err(Errno::EOVERFLOW)
    );
    let mut b = bitmap_cmd(t.hwpt, BASE, 0, PAGE, 0, 0);
    assert_eq!(
        t.env.raw(nr::IOMMU_HWPT_GET_DIRTY_BITMAP, &mut b),
        Err(Errno::EOVERFLOW),
        "length 0 wraps unless iova is 0"
    );
}

#[test]
fn get_dirty_bitmap_with_misaligned_iova_or_page_size_0_is_einval() {
    let t = tracked();
    for (iova, len, page_size) in [
        (BASE + 0x800, PAGE, PAGE),
        (BASE, PAGE + 0x800, PAGE),
        (BASE, PAGE, 0),
        (BASE + PAGE, 2 << 20, 2 << 20),
    ] {
        let mut b = bitmap_cmd(t.hwpt, iova, len, page_size, 0, 0);
        assert_eq!(
            t.env.raw(nr::IOMMU_HWPT_GET_DIRTY_BITMAP, &mut b),
            Err(Errno::EINVAL),
            "iova {iova:#x} length {len:#x} page size {page_size:#x}"
        );
    }
}

#[test]
fn get_dirty_bitmap_of_a_hwpt_without_dirty_ops_is_eopnotsupp() {
    let env = Env::spr();
    let (_dev, dev_id) = env.bind(0);
    let ioas = env.ioas();
    let plain = env
        .paging(dev_id, ioas, HwptAllocFlags::empty())
        .expect("IOMMU_HWPT_ALLOC");
    let mut b = bitmap_cmd(plain, 0, PAGE, PAGE, 0, 0);
    assert_eq!(
        env.raw(nr::IOMMU_HWPT_GET_DIRTY_BITMAP, &mut b),
        Err(Errno::EOPNOTSUPP)
    );
}

#[test]
fn get_dirty_bitmap_hides_internal_failures() {
    // 6.12 returns 0 whatever the walk met: tracking off, a hole, a bad bitmap pointer.
    let t = tracked();
    every_other_page_dirty(&t);
    let (bits, _) = read_bits(&t.env, t.hwpt, BASE, PAGES * PAGE, false, 0);
    assert!(bits.iter().all(|b| !b), "tracking is off: nothing reported");
    set_tracking(&t.env, t.hwpt, true).expect("IOMMU_HWPT_SET_DIRTY_TRACKING");
    let mut b = bitmap_cmd(t.hwpt, 0, PAGE, PAGE, 0, 0x10);
    assert_eq!(
        t.env.raw(nr::IOMMU_HWPT_GET_DIRTY_BITMAP, &mut b),
        Ok(()),
        "a hole"
    );
    t.env.dma_write(0, BASE, &[1]).expect("DMA write");
    let mut b = bitmap_cmd(t.hwpt, BASE, PAGE, PAGE, 0, 0x10);
    assert_eq!(
        t.env.raw(nr::IOMMU_HWPT_GET_DIRTY_BITMAP, &mut b),
        Ok(()),
        "bad bitmap"
    );
}

#[test]
fn get_dirty_bitmap_reads_and_clears_the_areas_before_a_gap() {
    // 6.12 walks the areas that follow each other from the start of the range and only
    // then finds the gap (unreported): their pages are reported and cleared. A range that
    // starts in a gap walks nothing.
    let t = tracked();
    set_tracking(&t.env, t.hwpt, true).expect("IOMMU_HWPT_SET_DIRTY_TRACKING");
    let expected = every_other_page_dirty(&t);
    let before = BASE - PAGES * PAGE;
    let (bits, _) = read_bits(&t.env, t.hwpt, before, 2 * PAGES * PAGE, false, 0);
    assert!(bits.iter().all(|b| !b), "a leading gap: nothing walked");
    let (bits, _) = read_bits(&t.env, t.hwpt, BASE, 2 * PAGES * PAGE, false, 0);
    assert_eq!(
        bits[..PAGES as usize],
        expected[..],
        "the area before the gap"
    );
    assert!(bits[PAGES as usize..].iter().all(|b| !b), "the gap");
    let (bits, _) = read_bits(&t.env, t.hwpt, BASE, PAGES * PAGE, false, 0);
    assert!(
        bits.iter().all(|b| !b),
        "the first read cleared what it reported"
    );
}

// ---------------------------------------------------------------------------------------
// T9: bitmaps from real DMA.

#[test]
fn dma_writes_show_up_as_exactly_the_pages_written() {
    let t = tracked();
    set_tracking(&t.env, t.hwpt, true).expect("IOMMU_HWPT_SET_DIRTY_TRACKING");
    let expected = every_other_page_dirty(&t);
    t.env.dma_read(0, BASE + PAGE, 8).expect("DMA read");
    let (bits, after) = read_bits(&t.env, t.hwpt, BASE, PAGES * PAGE, false, 0);
    assert_eq!(bits, expected, "reads do not dirty");
    assert_eq!(
        after, 0xABAB_ABAB_ABAB_ABAB,
        "nothing written past the bitmap"
    );
}

#[test]
fn a_second_read_after_clearing_is_empty() {
    let t = tracked();
    set_tracking(&t.env, t.hwpt, true).expect("IOMMU_HWPT_SET_DIRTY_TRACKING");
    every_other_page_dirty(&t);
    read_bits(&t.env, t.hwpt, BASE, PAGES * PAGE, false, 0);
    let (bits, _) = read_bits(&t.env, t.hwpt, BASE, PAGES * PAGE, false, 0);
    assert!(bits.iter().all(|b| !b));
}

#[test]
fn no_clear_reports_the_same_pages_again() {
    let t = tracked();
    set_tracking(&t.env, t.hwpt, true).expect("IOMMU_HWPT_SET_DIRTY_TRACKING");
    let expected = every_other_page_dirty(&t);
    let (first, _) = read_bits(&t.env, t.hwpt, BASE, PAGES * PAGE, true, 0);
    let (second, _) = read_bits(&t.env, t.hwpt, BASE, PAGES * PAGE, true, 0);
    assert_eq!((first, second), (expected.clone(), expected));
}

#[test]
fn a_page_written_again_after_clearing_is_dirty_again() {
    // Needs the flush after clearing: the IOTLB entry must not remember "already dirty".
    let t = tracked();
    set_tracking(&t.env, t.hwpt, true).expect("IOMMU_HWPT_SET_DIRTY_TRACKING");
    t.env
        .dma_write(0, BASE + 3 * PAGE, &[1])
        .expect("DMA write");
    read_bits(&t.env, t.hwpt, BASE, PAGES * PAGE, false, 0);
    t.env
        .dma_write(0, BASE + 3 * PAGE, &[2])
        .expect("DMA write");
    let (bits, _) = read_bits(&t.env, t.hwpt, BASE, PAGES * PAGE, false, 0);
    let set: Vec<usize> = (0..bits.len()).filter(|&k| bits[k]).collect();
    assert_eq!(set, [3]);
}

#[test]
fn an_unaligned_user_bitmap_gets_the_same_bits() {
    let t = tracked();
    set_tracking(&t.env, t.hwpt, true).expect("IOMMU_HWPT_SET_DIRTY_TRACKING");
    let expected = every_other_page_dirty(&t);
    let (bits, after) = read_bits(&t.env, t.hwpt, BASE, PAGES * PAGE, true, 0xff1 % 8);
    assert_eq!(bits, expected);
    assert_eq!(after, 0xABAB_ABAB_ABAB_ABAB);
    let (bits, _) = read_bits(&t.env, t.hwpt, BASE, PAGES * PAGE, true, 0xff1);
    assert_eq!(bits, expected);
}

#[test]
fn a_sub_range_reports_its_own_pages_from_bit_0() {
    let t = tracked();
    set_tracking(&t.env, t.hwpt, true).expect("IOMMU_HWPT_SET_DIRTY_TRACKING");
    every_other_page_dirty(&t);
    let (bits, _) = read_bits(&t.env, t.hwpt, BASE + 3 * PAGE, 8 * PAGE, false, 0);
    assert_eq!(bits, [false, true, false, true, false, true, false, true]);
    let (rest, _) = read_bits(&t.env, t.hwpt, BASE, PAGES * PAGE, false, 0);
    assert!(
        rest[0] && rest[2] && !rest[4],
        "only the range read was cleared"
    );
}

#[test]
fn a_write_into_a_2mib_page_reports_the_whole_page() {
    let t = tracked();
    set_tracking(&t.env, t.hwpt, true).expect("IOMMU_HWPT_SET_DIRTY_TRACKING");
    t.env
        .dma_write(0, (4 << 20) + 0x1234, &[9])
        .expect("DMA write");
    let (bits, _) = read_bits(&t.env, t.hwpt, 4 << 20, 4 << 20, false, 0);
    let set: Vec<usize> = (0..bits.len()).filter(|&k| bits[k]).collect();
    assert_eq!(set, (0..512).collect::<Vec<_>>());
}

#[test]
fn enabling_tracking_again_forgets_earlier_dirty_pages() {
    let t = tracked();
    set_tracking(&t.env, t.hwpt, true).expect("IOMMU_HWPT_SET_DIRTY_TRACKING");
    every_other_page_dirty(&t);
    set_tracking(&t.env, t.hwpt, false).expect("IOMMU_HWPT_SET_DIRTY_TRACKING");
    set_tracking(&t.env, t.hwpt, true).expect("IOMMU_HWPT_SET_DIRTY_TRACKING");
    let (bits, _) = read_bits(&t.env, t.hwpt, BASE, PAGES * PAGE, false, 0);
    assert!(bits.iter().all(|b| !b));
    let _ = (&t.dev, t.ioas);
}

#[test]
fn a_read_without_no_clear_flushes_even_when_nothing_was_dirty() {
    let t = tracked();
    set_tracking(&t.env, t.hwpt, true).expect("IOMMU_HWPT_SET_DIRTY_TRACKING");
    t.env.log(0);
    read_bits(&t.env, t.hwpt, BASE, PAGES * PAGE, true, 0);
    assert!(t.env.logged(0).is_empty(), "NO_CLEAR: no flush");
    read_bits(&t.env, t.hwpt, BASE, PAGES * PAGE, false, 0);
    let subs = submissions(&t.env.logged(0));
    assert_eq!(subs.len(), 1);
    let d = vtd_spec::inv::IotlbInvDesc::from_bits(subs[0][0].lo);
    assert_eq!(
        d.g(),
        IotlbGranularity::Domain,
        "empty gather: domain-selective"
    );
}

/// A dirty-capable nest parent over all guest RAM with 4 KiB leaves (huge pages off), a
/// nested HWPT mapping IOVA 0x4000_0000 to GPA 0x5000; returns (device, parent, nested,
/// stage-1 root).
fn nested_tracked(env: &Env) -> (Dev, u32, u32, u64) {
    let (dev, dev_id) = env.bind(0);
    let ioas = env.ioas();
    let mut b = Buf::sized(option::SIZE, option::SIZE as u32);
    b.set_u32(option::OPTION_ID, option::HUGE_PAGES)
        .set_u16(option::OP, option::SET)
        .set_u32(option::OBJECT_ID, ioas);
    env.raw(nr::IOMMU_OPTION, &mut b).expect("IOMMU_OPTION");
    env.map(ioas, 0, uapi_support::RAM, Some(0), RW)
        .expect("IOMMU_IOAS_MAP");
    let parent = env
        .paging(dev_id, ioas, DIRTY | HwptAllocFlags::NEST_PARENT)
        .expect("IOMMU_HWPT_ALLOC");
    let root = {
        let mut s1 = guest_s1_table(&env.ram);
        s1_map(&mut s1, 0x4000_0000, 0x5000);
        s1.root()
    };
    let nested = env
        .nested(dev_id, parent, &VtdS1::new(root))
        .expect("IOMMU_HWPT_ALLOC (nested)");
    (dev, parent, nested, root)
}

fn page(gpa: u64) -> usize {
    (gpa / PAGE) as usize
}

#[test]
fn a_nest_parent_tracks_writes_made_through_its_nested_hwpt() {
    let env = Env::spr();
    let (dev, parent, nested, root) = nested_tracked(&env);
    dev.attach_pt(nested)
        .expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
    set_tracking(&env, parent, true).expect("IOMMU_HWPT_SET_DIRTY_TRACKING");
    env.dma_write(0, 0x4000_0010, b"nested").expect("DMA write");
    assert_eq!(env.ram.read(0x5010, 6), b"nested");
    let (bits, _) = read_bits(&env, parent, 0, uapi_support::RAM, false, 0);
    assert!(bits[page(0x5000)], "the data page");
    assert!(
        bits[page(root)],
        "the first-stage root: the hardware set A there"
    );
    assert!(!bits[page(0x6000)]);
}

#[test]
fn a_nested_attach_after_enabling_tracking_inherits_it() {
    let env = Env::spr();
    let (dev, parent, nested, _) = nested_tracked(&env);
    set_tracking(&env, parent, true).expect("IOMMU_HWPT_SET_DIRTY_TRACKING");
    dev.attach_pt(nested)
        .expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
    env.dma_write(0, 0x4000_0000, &[1]).expect("DMA write");
    let (bits, _) = read_bits(&env, parent, 0, uapi_support::RAM, false, 0);
    assert!(bits[page(0x5000)]);
}

#[test]
fn a_nested_device_stops_dirtying_once_tracking_is_disabled() {
    let env = Env::spr();
    let (dev, parent, nested, _) = nested_tracked(&env);
    dev.attach_pt(nested)
        .expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
    set_tracking(&env, parent, true).expect("IOMMU_HWPT_SET_DIRTY_TRACKING");
    set_tracking(&env, parent, false).expect("IOMMU_HWPT_SET_DIRTY_TRACKING");
    env.dma_write(0, 0x4000_0000, &[1]).expect("DMA write");
    // Enabling again clears stale bits; but none may have been set while it was off,
    // which NO_CLEAR reads right after the enable would show just the same.
    let mut b = Buf::sized(set_dirty::SIZE, set_dirty::SIZE as u32);
    b.set_u32(set_dirty::HWPT_ID, parent)
        .set_u32(set_dirty::FLAGS, 1);
    env.raw(nr::IOMMU_HWPT_SET_DIRTY_TRACKING, &mut b)
        .expect("the ioctl");
    let (bits, _) = read_bits(&env, parent, 0, uapi_support::RAM, true, 0);
    assert!(!bits[page(0x5000)]);
}
