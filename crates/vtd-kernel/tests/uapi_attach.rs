//! uAPI conformance: VFIO bind/attach/detach (core semantics §4.1–4.2), attach, replace
//! and automatic domains (§4.3–4.7), nested attach on VT-d (KS §5.1–5.2), and the attach
//! rows of selftests T3 (33–37), T4, T7 and T11.

mod common;
mod uapi_support;

use uapi_support::{
    Buf, EXT0, Env, NIC0, NIC1, err, nr, raw, raw_ptr, spr_unit_with, two_units, unit_39bit,
    unit_without_sc, unit_without_ssads,
};
use vtd_iommufd::uapi::{HwptAllocFlags, MapFlags};
use vtd_iommufd::{Errno, IoctlFd, VtdS1};
use vtd_kernel::{DeviceDesc, PlatformDesc};
use vtd_model::UnitConfig;
use vtd_model::request::Access::Read;

const RW: MapFlags = MapFlags::READABLE.union(MapFlags::WRITEABLE);

fn bind_cmd(argsz: u32, flags: u32, iommufd: i32) -> Buf {
    let mut b = Buf::sized(32, argsz);
    b.set_u32(4, flags).set_u32(8, iommufd as u32);
    b
}

fn attach_cmd(argsz: u32, flags: u32, pt_id: u32) -> Buf {
    let mut b = Buf::sized(16, argsz);
    b.set_u32(4, flags).set_u32(8, pt_id);
    b
}

/// A stage-1 blob with a root the guest never filled: attach works, DMA faults.
fn s1() -> VtdS1 {
    VtdS1::new(0x10_0000)
}

// ---------------------------------------------------------------------------------------
// VFIO_DEVICE_BIND_IOMMUFD (§4.1).

#[test]
fn bind_with_argsz_below_16_is_einval() {
    let env = Env::spr();
    let dev = env.open(0);
    let mut b = bind_cmd(15, 0, env.fd.fd().fd_number());
    assert_eq!(
        raw(dev.fd(), nr::VFIO_DEVICE_BIND_IOMMUFD, &mut b),
        Err(Errno::EINVAL)
    );
}

#[test]
fn bind_with_flags_is_einval() {
    let env = Env::spr();
    let dev = env.open(0);
    let mut b = bind_cmd(16, 1, env.fd.fd().fd_number());
    assert_eq!(
        raw(dev.fd(), nr::VFIO_DEVICE_BIND_IOMMUFD, &mut b),
        Err(Errno::EINVAL)
    );
}

#[test]
fn bind_with_a_negative_descriptor_is_einval() {
    let env = Env::spr();
    let dev = env.open(0);
    let mut b = bind_cmd(16, 0, -1);
    assert_eq!(
        raw(dev.fd(), nr::VFIO_DEVICE_BIND_IOMMUFD, &mut b),
        Err(Errno::EINVAL)
    );
}

#[test]
fn bind_ignores_bytes_past_16() {
    let env = Env::spr();
    let dev = env.open(0);
    let mut b = bind_cmd(32, 0, env.fd.fd().fd_number());
    b.poison(16, 32, 0xEE);
    assert_eq!(raw(dev.fd(), nr::VFIO_DEVICE_BIND_IOMMUFD, &mut b), Ok(()));
    assert_eq!(b.u32(12), 1, "out_devid");
}

#[test]
fn bind_to_a_descriptor_that_is_not_open_is_ebadf() {
    let env = Env::spr();
    let dev = env.open(0);
    assert_eq!(dev.bind_iommufd(999).map_err(err), Err(Errno::EBADF));
}

#[test]
fn bind_to_a_descriptor_that_is_not_an_iommufd_is_ebadfd() {
    let env = Env::spr();
    let dev = env.open(0);
    let other = env.open(1);
    assert_eq!(
        dev.bind_iommufd(other.fd().fd_number()).map_err(err),
        Err(Errno::EBADFD)
    );
}

#[test]
fn bind_twice_on_one_file_is_einval() {
    let env = Env::spr();
    let (dev, _) = env.bind(0);
    assert_eq!(
        dev.bind_iommufd(env.fd.fd().fd_number()).map_err(err),
        Err(Errno::EINVAL)
    );
}

#[test]
fn bind_of_a_device_bound_through_another_file_is_einval() {
    let env = Env::spr();
    let (_first, _) = env.bind(0);
    let second = env.open(0);
    assert_eq!(
        second.bind_iommufd(env.fd.fd().fd_number()).map_err(err),
        Err(Errno::EINVAL)
    );
}

#[test]
fn bind_whose_reply_cannot_be_written_is_efault_and_unbinds() {
    let env = Env::spr();
    let dev = env.open(0);
    let b = bind_cmd(16, 0, env.fd.fd().fd_number());
    let bytes: Vec<u8> = (0..16).map(|i| b.u8(i)).collect();
    vtd_model::PhysMem::write_bytes(&env.ram, 0x1000, &bytes).expect("write guest RAM");
    env.ram.protect(0x1000, 0x1000, libc::PROT_READ);
    let r = raw_ptr(dev.fd(), nr::VFIO_DEVICE_BIND_IOMMUFD, env.ram.hva(0x1000));
    env.ram
        .protect(0x1000, 0x1000, libc::PROT_READ | libc::PROT_WRITE);
    assert_eq!(r, Err(Errno::EFAULT));
    assert_eq!(env.next_id(), 1, "the DEVICE id is free again");
    assert_eq!(
        dev.bind_iommufd(env.fd.fd().fd_number()).map_err(err),
        Ok(1)
    );
}

#[test]
fn bind_without_interrupt_remapping_is_eperm_unless_unsafe_interrupts_are_allowed() {
    let unit = spr_unit_with(|mut c| {
        c.ecap = c.ecap.with_ir(false);
        c
    });
    let desc = PlatformDesc {
        units: vec![unit],
        devices: vec![DeviceDesc::new("nic0", 0, 3, 0)],
        allow_unsafe_interrupts: false,
        iommufd_test: false,
    };
    let env = Env::new(desc.clone());
    let dev = env.open(0);
    assert_eq!(
        dev.bind_iommufd(env.fd.fd().fd_number()).map_err(err),
        Err(Errno::EPERM)
    );
    let env = Env::new(PlatformDesc {
        allow_unsafe_interrupts: true,
        iommufd_test: false,
        ..desc
    });
    let dev = env.open(0);
    assert_eq!(
        dev.bind_iommufd(env.fd.fd().fd_number()).map_err(err),
        Ok(1)
    );
}

#[test]
fn closing_a_bound_device_frees_its_id_for_the_next_bind() {
    let env = Env::spr();
    let (dev, id) = env.bind(0);
    assert_eq!(id, 1);
    drop(dev);
    assert_eq!(env.bind(0).1, 1);
}

#[test]
fn attach_and_detach_on_an_unbound_file_are_einval() {
    let env = Env::spr();
    let ioas = env.ioas();
    let dev = env.open(0);
    assert_eq!(dev.attach_pt(ioas).map_err(err), Err(Errno::EINVAL));
    assert_eq!(dev.detach_pt().map_err(err), Err(Errno::EINVAL));
}

// ---------------------------------------------------------------------------------------
// VFIO_DEVICE_ATTACH_IOMMUFD_PT / DETACH_IOMMUFD_PT (§4.2, §4.3).

#[test]
fn attach_with_argsz_below_12_or_flags_is_einval() {
    let env = Env::spr();
    let (dev, _) = env.bind(0);
    let ioas = env.ioas();
    let mut b = attach_cmd(11, 0, ioas);
    assert_eq!(
        raw(dev.fd(), nr::VFIO_DEVICE_ATTACH_IOMMUFD_PT, &mut b),
        Err(Errno::EINVAL)
    );
    let mut b = attach_cmd(12, 1, ioas);
    assert_eq!(
        raw(dev.fd(), nr::VFIO_DEVICE_ATTACH_IOMMUFD_PT, &mut b),
        Err(Errno::EINVAL)
    );
}

#[test]
fn attach_to_a_missing_id_is_enoent() {
    let env = Env::spr();
    let (dev, _) = env.bind(0);
    assert_eq!(dev.attach_pt(0).map_err(err), Err(Errno::ENOENT));
    assert_eq!(dev.attach_pt(42).map_err(err), Err(Errno::ENOENT));
}

#[test]
fn attach_to_a_device_or_fault_id_is_einval() {
    let env = Env::spr();
    let (dev, dev_id) = env.bind(0);
    let (fault, _) = env.fault_alloc().expect("IOMMU_FAULT_QUEUE_ALLOC");
    assert_eq!(dev.attach_pt(dev_id).map_err(err), Err(Errno::EINVAL));
    assert_eq!(dev.attach_pt(fault).map_err(err), Err(Errno::EINVAL));
}

#[test]
fn attach_whose_reply_cannot_be_written_detaches_completely_even_on_replace() {
    let env = Env::spr();
    let (dev, dev_id) = env.bind(0);
    let ioas = env.ioas();
    env.map(ioas, 0, 0x1000, Some(0x1000), RW)
        .expect("IOMMU_IOAS_MAP");
    let a = env
        .paging(dev_id, ioas, HwptAllocFlags::empty())
        .expect("IOMMU_HWPT_ALLOC");
    let b = env
        .paging(dev_id, ioas, HwptAllocFlags::empty())
        .expect("IOMMU_HWPT_ALLOC");
    dev.attach_pt(a).expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
    let cmd = attach_cmd(12, 0, b);
    let bytes: Vec<u8> = (0..12).map(|i| cmd.u8(i)).collect();
    vtd_model::PhysMem::write_bytes(&env.ram, 0x4000, &bytes).expect("write guest RAM");
    env.ram.protect(0x4000, 0x1000, libc::PROT_READ);
    let r = raw_ptr(
        dev.fd(),
        nr::VFIO_DEVICE_ATTACH_IOMMUFD_PT,
        env.ram.hva(0x4000),
    );
    env.ram
        .protect(0x4000, 0x1000, libc::PROT_READ | libc::PROT_WRITE);
    assert_eq!(r, Err(Errno::EFAULT));
    assert!(env.faults(0, 0x1000, Read), "not back on A");
    assert_eq!(env.destroy(a), Ok(()));
    assert_eq!(env.destroy(b), Ok(()));
}

#[test]
fn detach_when_not_attached_succeeds() {
    let env = Env::spr();
    let (dev, _) = env.bind(0);
    assert_eq!(dev.detach_pt().map_err(err), Ok(()));
}

#[test]
fn detach_with_argsz_below_8_or_flags_is_einval() {
    let env = Env::spr();
    let (dev, _) = env.bind(0);
    let mut b = Buf::sized(8, 7);
    assert_eq!(
        raw(dev.fd(), nr::VFIO_DEVICE_DETACH_IOMMUFD_PT, &mut b),
        Err(Errno::EINVAL)
    );
    let mut b = Buf::sized(8, 8);
    b.set_u32(4, 1);
    assert_eq!(
        raw(dev.fd(), nr::VFIO_DEVICE_DETACH_IOMMUFD_PT, &mut b),
        Err(Errno::EINVAL)
    );
}

#[test]
fn detach_blocks_dma_and_releases_the_hwpt() {
    let env = Env::spr();
    let (dev, dev_id) = env.bind(0);
    let (_, parent) = env.parent_with_ram(dev_id);
    dev.attach_pt(parent)
        .expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
    env.dma_read(0, 0x1000, 4).expect("DMA read");
    dev.detach_pt().expect("VFIO_DEVICE_DETACH_IOMMUFD_PT");
    assert!(env.faults(0, 0x1000, Read));
    assert_eq!(env.destroy(parent), Ok(()));
}

// ---------------------------------------------------------------------------------------
// Automatic domains (§4.5) and T4.

#[test]
fn devices_of_one_unit_share_the_auto_hwpt() {
    let env = Env::spr();
    let (nic, _) = env.bind(0);
    let (ssd, _) = env.bind(1);
    let ioas = env.ioas();
    let a = nic.attach_pt(ioas).expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
    assert_eq!(
        ssd.attach_pt(ioas).expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT"),
        a
    );
}

#[test]
fn a_device_attached_directly_to_the_auto_hwpt_shares_it() {
    let env = Env::spr();
    let (nic, _) = env.bind(0);
    let (ssd, _) = env.bind(1);
    let ioas = env.ioas();
    let auto = nic.attach_pt(ioas).expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
    assert_eq!(
        ssd.attach_pt(auto).expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT"),
        auto
    );
    nic.detach_pt().expect("VFIO_DEVICE_DETACH_IOMMUFD_PT");
    assert_eq!(env.destroy(auto), Err(Errno::EBUSY), "still held by ssd0");
}

#[test]
fn a_unit_without_snoop_control_gets_its_own_auto_hwpt() {
    let env = Env::new(two_units(unit_without_sc()));
    let (nic, _) = env.bind(NIC0);
    let (ext, _) = env.bind(EXT0);
    let ioas = env.ioas();
    let a = nic.attach_pt(ioas).expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
    let b = ext.attach_pt(ioas).expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
    assert_ne!(a, b);
}

#[test]
fn a_narrower_unit_gets_its_own_auto_hwpt() {
    let env = Env::new(two_units(unit_39bit()));
    let (nic, _) = env.bind(NIC0);
    let (ext, _) = env.bind(EXT0);
    let (nic1, _) = env.bind(NIC1);
    let ioas = env.ioas();
    let wide = nic.attach_pt(ioas).expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
    let narrow = ext.attach_pt(ioas).expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
    assert_ne!(wide, narrow);
    assert_eq!(
        nic1.attach_pt(ioas).expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT"),
        wide,
        "first compatible in creation order"
    );
    let r = env
        .fd
        .ioas_iova_ranges(ioas)
        .expect("IOMMU_IOAS_IOVA_RANGES");
    assert_eq!(r.ranges.last().map(|r| r.1), Some((1 << 39) - 1));
}

#[test]
fn detaching_the_last_device_destroys_the_auto_hwpt() {
    let env = Env::spr();
    let (nic, _) = env.bind(0);
    let ioas = env.ioas();
    let auto = nic.attach_pt(ioas).expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
    nic.detach_pt().expect("VFIO_DEVICE_DETACH_IOMMUFD_PT");
    assert_eq!(env.destroy(auto), Err(Errno::ENOENT));
    assert_eq!(env.destroy(ioas), Ok(()));
}

// ---------------------------------------------------------------------------------------
// Replace (§4.6) and T7.

#[test]
fn replace_to_the_attached_hwpt_is_a_no_op() {
    let env = Env::spr();
    let (nic, nic_id) = env.bind(0);
    let (_, parent) = env.parent_with_ram(nic_id);
    nic.attach_pt(parent)
        .expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
    assert_eq!(
        nic.attach_pt(parent)
            .expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT"),
        parent
    );
    env.dma_read(0, 0x2000, 4).expect("DMA read");
}

#[test]
fn replace_to_a_new_ioas_creates_an_auto_hwpt_and_destroys_the_old_one() {
    let env = Env::spr();
    let (nic, _) = env.bind(0);
    let ioas1 = env.ioas();
    let ioas2 = env.ioas();
    let auto1 = nic.attach_pt(ioas1).expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
    let auto2 = nic.attach_pt(ioas2).expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
    assert_ne!(auto1, auto2);
    assert_eq!(env.destroy(auto1), Err(Errno::ENOENT));
    assert_eq!(
        env.fd
            .ioas_iova_ranges(ioas1)
            .expect("IOMMU_IOAS_IOVA_RANGES")
            .ranges,
        [(0, u64::MAX)],
        "the old IOAS lost the device's reservations"
    );
    assert_eq!(nic.attach_pt(auto1).map_err(err), Err(Errno::ENOENT));
    let back = nic.attach_pt(ioas1).expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
    assert_eq!(env.destroy(auto2), Err(Errno::ENOENT));
    assert_eq!(back, auto1, "the lowest free id");
}

#[test]
fn replace_rotates_among_hwpts_of_one_ioas() {
    let env = Env::spr();
    let (nic, nic_id) = env.bind(0);
    let (ioas, parent) = env.parent_with_ram(nic_id);
    let plain = env
        .paging(nic_id, ioas, HwptAllocFlags::empty())
        .expect("IOMMU_HWPT_ALLOC");
    for hwpt in [plain, parent, plain, parent] {
        assert_eq!(
            nic.attach_pt(hwpt).expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT"),
            hwpt
        );
        env.ram.fill(0x3000, hwpt as u8, 2);
        assert_eq!(
            env.dma_read(0, 0x3000, 2).expect("DMA read"),
            [hwpt as u8; 2]
        );
    }
}

#[test]
fn a_failed_replace_leaves_the_device_on_its_old_hwpt() {
    let env = Env::spr();
    let (nic, nic_id) = env.bind(0);
    let (_, parent) = env.parent_with_ram(nic_id);
    let mut s1 = common::guest_s1_table(&env.ram);
    common::s1_map(&mut s1, 0x4000_0000, 0x5000);
    let good = env
        .nested(nic_id, parent, &VtdS1::new(s1.root()))
        .expect("IOMMU_HWPT_ALLOC (nested)");
    let mut bad = VtdS1::new(s1.root());
    bad.addr_width = 39;
    let bad = env
        .nested(nic_id, parent, &bad)
        .expect("IOMMU_HWPT_ALLOC (nested)");
    nic.attach_pt(good).expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
    assert_eq!(nic.attach_pt(bad).map_err(err), Err(Errno::EINVAL));
    env.ram.fill(0x5000, 0x99, 4);
    assert_eq!(
        env.dma_read(0, 0x4000_0000, 4).expect("DMA read"),
        [0x99; 4]
    );
    assert_eq!(env.destroy(good), Err(Errno::EBUSY));
    assert_eq!(env.destroy(bad), Ok(()));
}

#[test]
fn a_failed_first_attach_leaves_the_device_blocked_and_unattached() {
    let env = Env::spr();
    let (nic, nic_id) = env.bind(0);
    let (_, parent) = env.parent_with_ram(nic_id);
    let mut bad = s1();
    bad.addr_width = 64;
    let bad = env
        .nested(nic_id, parent, &bad)
        .expect("IOMMU_HWPT_ALLOC (nested)");
    assert_eq!(nic.attach_pt(bad).map_err(err), Err(Errno::EINVAL));
    assert!(env.faults(0, 0x1000, Read));
    assert_eq!(env.destroy(bad), Ok(()));
    assert_eq!(env.destroy(parent), Ok(()));
}

// ---------------------------------------------------------------------------------------
// T3 rows 33–37: replace among nested HWPTs, the IOPF HWPT, the parent and the IOAS.

#[test]
fn nested_hwpts_are_held_while_attached_and_freed_by_replace() {
    let env = Env::spr();
    let (nic, nic_id) = env.bind(0);
    let (ioas, parent) = env.parent_with_ram(nic_id);
    let not_parent = env
        .paging(nic_id, ioas, HwptAllocFlags::empty())
        .expect("IOMMU_HWPT_ALLOC");
    let n0 = env
        .nested(nic_id, parent, &s1())
        .expect("IOMMU_HWPT_ALLOC (nested)");
    let n1 = env
        .nested(nic_id, parent, &s1())
        .expect("IOMMU_HWPT_ALLOC (nested)");
    nic.attach_pt(parent)
        .expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
    assert_eq!(
        nic.attach_pt(n0).expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT"),
        n0
    );
    assert_eq!(env.destroy(n0), Err(Errno::EBUSY));
    assert_eq!(
        nic.attach_pt(n1).expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT"),
        n1
    );
    assert_eq!(env.destroy(n1), Err(Errno::EBUSY));
    assert_eq!(env.destroy(n0), Ok(()));
    nic.attach_pt(parent)
        .expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
    assert_eq!(env.destroy(n1), Ok(()));
    let auto = nic.attach_pt(ioas).expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
    assert!(auto != parent && auto != not_parent);
    assert_eq!(env.destroy(parent), Ok(()));
    assert_eq!(env.destroy(not_parent), Ok(()));
}

#[test]
fn attaching_a_nested_hwpt_with_a_fault_is_enodev_without_pri() {
    // VT-d IOPF needs ATS and PRI (intel_iommu_enable_iopf); no simulated device has PRI,
    // so T3 row 35 ends at the attach: ENODEV, and the device stays where it was.
    let env = Env::spr();
    let (nic, nic_id) = env.bind(0);
    let (_, parent) = env.parent_with_ram(nic_id);
    let (fault, fd) = env.fault_alloc().expect("IOMMU_FAULT_QUEUE_ALLOC");
    let iopf = env
        .fd
        .hwpt_alloc_nested(nic_id, parent, &s1(), Some(fault))
        .map_err(err)
        .expect("IOMMU_HWPT_ALLOC (nested)");
    assert_eq!(
        nic.attach_pt(iopf).map_err(err),
        Err(Errno::ENODEV),
        "first attach"
    );
    nic.attach_pt(parent)
        .expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
    assert_eq!(
        nic.attach_pt(iopf).map_err(err),
        Err(Errno::ENODEV),
        "replace"
    );
    env.dma_read(0, 0x1000, 4).expect("still on the parent");
    assert_eq!(env.destroy(iopf), Ok(()));
    env.platform.close_fd(fd).expect("close the fault queue");
    assert_eq!(env.destroy(fault), Ok(()));
}

// ---------------------------------------------------------------------------------------
// T11 and the object references attach takes.

#[test]
fn destroy_of_an_ioas_with_an_attached_device_is_ebusy() {
    let env = Env::spr();
    let (nic, _) = env.bind(0);
    let ioas = env.ioas();
    env.map(ioas, 0, 0x1000, Some(0x1000), RW)
        .expect("IOMMU_IOAS_MAP");
    nic.attach_pt(ioas).expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
    assert_eq!(env.destroy(ioas), Err(Errno::EBUSY));
}

#[test]
fn closing_an_attached_device_detaches_it_and_releases_everything() {
    let env = Env::spr();
    let (nic, nic_id) = env.bind(0);
    let (ioas, parent) = env.parent_with_ram(nic_id);
    let nested = env
        .nested(nic_id, parent, &s1())
        .expect("IOMMU_HWPT_ALLOC (nested)");
    nic.attach_pt(nested)
        .expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
    drop(nic);
    assert_eq!(env.destroy(nested), Ok(()));
    assert_eq!(env.destroy(parent), Ok(()));
    assert_eq!(env.destroy(ioas), Ok(()));
    assert_eq!(env.next_id(), 1);
}

// ---------------------------------------------------------------------------------------
// Nested attach on VT-d (KS §5.1–5.2).

#[test]
fn nested_attach_reserves_the_msi_window_in_the_parents_ioas() {
    let env = Env::spr();
    let (nic, nic_id) = env.bind(0);
    let ioas = env.ioas();
    let parent = env.parent(nic_id, ioas);
    let nested = env
        .nested(nic_id, parent, &s1())
        .expect("IOMMU_HWPT_ALLOC (nested)");
    nic.attach_pt(nested)
        .expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
    assert_eq!(
        env.map(ioas, 0, 0x1000, Some(0xFEE0_0000), RW),
        Err(Errno::EINVAL)
    );
}

#[test]
fn nested_attach_to_a_parent_mapping_the_msi_window_is_eaddrinuse() {
    let env = Env::spr();
    let (nic, nic_id) = env.bind(0);
    let ioas = env.ioas();
    let parent = env.parent(nic_id, ioas);
    env.map(ioas, 0, 0x1000, Some(0xFEE0_0000), RW)
        .expect("IOMMU_IOAS_MAP");
    let nested = env
        .nested(nic_id, parent, &s1())
        .expect("IOMMU_HWPT_ALLOC (nested)");
    assert_eq!(nic.attach_pt(nested).map_err(err), Err(Errno::EADDRINUSE));
    assert_eq!(env.destroy(nested), Ok(()));
}

#[test]
fn nested_attach_on_a_unit_with_a_smaller_agaw_than_the_parent_is_enodev() {
    // Unit 1 nests but has no 5-level first stage, so its AGAW is 48 bits; the parent was
    // made on the 57-bit unit 0.
    let narrow = spr_unit_with(|mut c| {
        c.cap = c.cap.with_fs5lp(false);
        c
    });
    let env = Env::new(two_units(narrow));
    let (_nic, nic_id) = env.bind(NIC0);
    let (ext, ext_id) = env.bind(EXT0);
    let (_, parent) = env.parent_with_ram(nic_id);
    let nested = env
        .nested(ext_id, parent, &s1())
        .expect("IOMMU_HWPT_ALLOC (nested)");
    assert_eq!(ext.attach_pt(nested).map_err(err), Err(Errno::ENODEV));
}

#[test]
fn nested_attach_of_a_snooping_parent_on_a_unit_without_snoop_control_is_einval() {
    let env = Env::new(two_units(unit_without_sc()));
    let (_nic, nic_id) = env.bind(NIC0);
    let (ext, ext_id) = env.bind(EXT0);
    let (_, parent) = env.parent_with_ram(nic_id);
    let nested = env
        .nested(ext_id, parent, &s1())
        .expect("IOMMU_HWPT_ALLOC (nested)");
    assert_eq!(ext.attach_pt(nested).map_err(err), Err(Errno::EINVAL));
    assert_eq!(ext.attach_pt(parent).map_err(err), Err(Errno::EINVAL));
}

#[test]
fn nested_attach_of_a_dirty_tracking_parent_on_a_unit_without_ssads_is_einval() {
    let env = Env::new(two_units(unit_without_ssads()));
    let (_nic, nic_id) = env.bind(NIC0);
    let (ext, ext_id) = env.bind(EXT0);
    let ioas = env.ioas();
    let parent = env
        .paging(
            nic_id,
            ioas,
            HwptAllocFlags::NEST_PARENT | HwptAllocFlags::DIRTY_TRACKING,
        )
        .expect("IOMMU_HWPT_ALLOC");
    let nested = env
        .nested(ext_id, parent, &s1())
        .expect("IOMMU_HWPT_ALLOC (nested)");
    assert_eq!(ext.attach_pt(nested).map_err(err), Err(Errno::EINVAL));
}

#[test]
fn a_nested_hwpt_serves_devices_of_two_units() {
    let env = Env::new(two_units(UnitConfig::sapphire_rapids()));
    let (nic, nic_id) = env.bind(NIC0);
    let (ext, ext_id) = env.bind(EXT0);
    let (_, parent) = env.parent_with_ram(nic_id);
    let mut s1 = common::guest_s1_table(&env.ram);
    common::s1_map(&mut s1, 0x7000_0000, 0x6000);
    let nested = env
        .nested(ext_id, parent, &VtdS1::new(s1.root()))
        .expect("IOMMU_HWPT_ALLOC (nested)");
    nic.attach_pt(nested)
        .expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
    ext.attach_pt(nested)
        .expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
    env.ram.fill(0x6000, 0x5A, 4);
    assert_eq!(
        env.dma_read(NIC0, 0x7000_0000, 4).expect("DMA read"),
        [0x5A; 4]
    );
    assert_eq!(
        env.dma_read(EXT0, 0x7000_0000, 4).expect("DMA read"),
        [0x5A; 4]
    );
}

#[test]
fn bind_to_a_closed_iommufd_is_ebadf() {
    let env = Env::spr();
    let dev = env.open(0);
    let other = env.platform.open_iommufd();
    let number = other.fd_number();
    drop(other);
    assert_eq!(dev.bind_iommufd(number).map_err(err), Err(Errno::EBADF));
}

#[test]
fn a_nested_hwpt_translates_under_its_own_did() {
    use vtd_model::request::Access;
    let env = Env::spr();
    let (nic, nic_id) = env.bind(NIC0);
    let (ssd, _) = env.bind(1);
    let (_, parent) = env.parent_with_ram(nic_id);
    let root = {
        let mut s1 = common::guest_s1_table(&env.ram);
        common::s1_map(&mut s1, 0x7000_0000, 0x6000);
        s1.root()
    };
    let nested = env
        .nested(nic_id, parent, &VtdS1::new(root))
        .expect("IOMMU_HWPT_ALLOC (nested)");
    ssd.attach_pt(parent)
        .expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
    nic.attach_pt(nested)
        .expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
    let via_parent = env
        .platform
        .translate(1, None, 0x6000, 4, Access::Read)
        .expect("translation");
    let via_nested = env
        .platform
        .translate(NIC0, None, 0x7000_0000, 4, Access::Read)
        .expect("translation");
    assert_eq!(via_nested.hpa, via_parent.hpa);
    assert_eq!((via_parent.did, via_nested.did), (Some(2), Some(3)));
    assert_eq!(via_nested.gpa, Some(0x6000));
}
