//! uAPI conformance: IOMMU_HWPT_ALLOC on VT-d (KS §3, the outcome table §3.5), the
//! allocation rows of selftest T3 (`alloc_hwpt_nested`) and T6 (`alloc_hwpt`) in their
//! VT-d form, and the read-only rule of a nest parent (KS §4.1, ERRATA_772415_SPR17).

mod common;
mod uapi_support;

use uapi_support::layout::hwpt_alloc::*;
use uapi_support::{
    Buf, EXT0, Env, NIC0, RAM, err, nested_alloc_cmd, nr, raw_ptr, spr_unit_with, two_units,
    vtd_s1_bytes,
};
use vtd_iommufd::uapi::{HwptAllocFlags, MapFlags};
use vtd_iommufd::{Errno, VtdS1};
use vtd_kernel::PlatformDesc;
use vtd_model::request::Access::{Read, Write};

const RW: MapFlags = MapFlags::READABLE.union(MapFlags::WRITEABLE);
const NEST_PARENT: u32 = 1;
const DIRTY: u32 = 2;
const FAULT_ID_VALID: u32 = 4;

fn alloc_cmd(flags: u32, dev_id: u32, pt_id: u32) -> Buf {
    let mut b = Buf::sized(SIZE, SIZE as u32);
    b.set_u32(FLAGS, flags)
        .set_u32(DEV_ID, dev_id)
        .set_u32(PT_ID, pt_id);
    b
}

/// A valid 24-byte stage-1 blob.
fn s1() -> Buf {
    vtd_s1_bytes(0, 0x10_0000, 48, 0)
}

/// Nested HWPT alloc with `data` of `len` bytes and type `ty`.
fn nested_raw(
    env: &Env,
    dev_id: u32,
    parent: u32,
    ty: u32,
    data: &Buf,
    len: u32,
) -> Result<u32, Errno> {
    let mut b = nested_alloc_cmd(dev_id, parent, data, len);
    b.set_u32(DATA_TYPE, ty);
    env.raw(nr::IOMMU_HWPT_ALLOC, &mut b)?;
    Ok(b.u32(OUT_HWPT_ID))
}

/// A bound `nic0`, an IOAS, a nest parent and a plain paging HWPT on it.
struct Setup {
    env: Env,
    _dev: vtd_iommufd::VfioDevice<vtd_kernel::VfioDeviceFile>,
    dev_id: u32,
    ioas: u32,
    parent: u32,
    plain: u32,
}

fn setup() -> Setup {
    let env = Env::spr();
    let (dev, dev_id) = env.bind(0);
    let ioas = env.ioas();
    let parent = env.parent(dev_id, ioas);
    let plain = env
        .paging(dev_id, ioas, HwptAllocFlags::empty())
        .expect("IOMMU_HWPT_ALLOC");
    Setup {
        env,
        _dev: dev,
        dev_id,
        ioas,
        parent,
        plain,
    }
}

// ---------------------------------------------------------------------------------------
// Common front end (KS §3.1) and T3 rows 1–3.

#[test]
fn hwpt_alloc_with_reserved_set_is_eopnotsupp() {
    let s = setup();
    let mut b = alloc_cmd(0, s.dev_id, s.ioas);
    b.set_u32(RESERVED, 1);
    assert_eq!(
        s.env.raw(nr::IOMMU_HWPT_ALLOC, &mut b),
        Err(Errno::EOPNOTSUPP)
    );
}

#[test]
fn hwpt_alloc_ignores_reserved2() {
    let s = setup();
    let mut b = alloc_cmd(0, s.dev_id, s.ioas);
    b.set_u32(RESERVED2, 0xFFFF_FFFF);
    assert_eq!(s.env.raw(nr::IOMMU_HWPT_ALLOC, &mut b), Ok(()));
}

#[test]
fn hwpt_alloc_with_data_type_none_and_a_length_is_einval_before_the_device_lookup() {
    let s = setup();
    let mut b = alloc_cmd(0, 0, s.ioas);
    b.set_u32(DATA_TYPE, 0).set_u32(DATA_LEN, 4);
    assert_eq!(s.env.raw(nr::IOMMU_HWPT_ALLOC, &mut b), Err(Errno::EINVAL));
}

#[test]
fn hwpt_alloc_with_a_data_type_and_length_0_is_einval() {
    let s = setup();
    let mut b = alloc_cmd(0, s.dev_id, s.parent);
    b.set_u32(DATA_TYPE, 1).set_u32(DATA_LEN, 0);
    assert_eq!(s.env.raw(nr::IOMMU_HWPT_ALLOC, &mut b), Err(Errno::EINVAL));
}

#[test]
fn hwpt_alloc_with_an_ioas_id_as_dev_id_is_enoent() {
    let s = setup();
    let mut b = alloc_cmd(0, s.ioas, s.dev_id);
    assert_eq!(s.env.raw(nr::IOMMU_HWPT_ALLOC, &mut b), Err(Errno::ENOENT));
}

#[test]
fn hwpt_alloc_without_a_device_is_enoent() {
    let env = Env::spr();
    let ioas = env.ioas();
    assert_eq!(
        env.paging(0, ioas, HwptAllocFlags::empty()),
        Err(Errno::ENOENT)
    );
    assert_eq!(env.nested(0, ioas, &VtdS1::new(0x1000)), Err(Errno::ENOENT));
}

#[test]
fn hwpt_alloc_with_pt_id_of_a_device_is_einval() {
    let s = setup();
    let mut b = alloc_cmd(0, s.dev_id, s.dev_id);
    assert_eq!(s.env.raw(nr::IOMMU_HWPT_ALLOC, &mut b), Err(Errno::EINVAL));
}

#[test]
fn hwpt_alloc_with_a_pt_id_that_does_not_exist_is_einval() {
    let s = setup();
    let mut b = alloc_cmd(0, s.dev_id, 99);
    assert_eq!(s.env.raw(nr::IOMMU_HWPT_ALLOC, &mut b), Err(Errno::EINVAL));
}

#[test]
fn hwpt_alloc_with_pt_id_of_a_fault_is_einval() {
    let s = setup();
    let (fault, _) = s.env.fault_alloc().expect("IOMMU_FAULT_QUEUE_ALLOC");
    let mut b = alloc_cmd(0, s.dev_id, fault);
    assert_eq!(s.env.raw(nr::IOMMU_HWPT_ALLOC, &mut b), Err(Errno::EINVAL));
}

#[test]
fn paging_alloc_with_nest_parent_and_fault_id_valid_is_eopnotsupp() {
    let s = setup();
    let (fault, _) = s.env.fault_alloc().expect("IOMMU_FAULT_QUEUE_ALLOC");
    let mut b = alloc_cmd(NEST_PARENT | FAULT_ID_VALID, s.dev_id, s.ioas);
    b.set_u32(FAULT_ID, fault);
    assert_eq!(
        s.env.raw(nr::IOMMU_HWPT_ALLOC, &mut b),
        Err(Errno::EOPNOTSUPP)
    );
}

#[test]
fn paging_alloc_with_fault_id_valid_alone_is_eopnotsupp() {
    let s = setup();
    let (fault, _) = s.env.fault_alloc().expect("IOMMU_FAULT_QUEUE_ALLOC");
    let mut b = alloc_cmd(FAULT_ID_VALID, s.dev_id, s.ioas);
    b.set_u32(FAULT_ID, fault);
    assert_eq!(
        s.env.raw(nr::IOMMU_HWPT_ALLOC, &mut b),
        Err(Errno::EOPNOTSUPP)
    );
}

#[test]
fn paging_alloc_with_every_flag_but_nest_parent_is_eopnotsupp() {
    let s = setup();
    let mut b = alloc_cmd(!NEST_PARENT, s.dev_id, s.ioas);
    assert_eq!(
        s.env.raw(nr::IOMMU_HWPT_ALLOC, &mut b),
        Err(Errno::EOPNOTSUPP)
    );
}

#[test]
fn paging_alloc_with_an_unknown_flag_is_eopnotsupp() {
    let s = setup();
    let mut b = alloc_cmd(1 << 4, s.dev_id, s.ioas);
    assert_eq!(
        s.env.raw(nr::IOMMU_HWPT_ALLOC, &mut b),
        Err(Errno::EOPNOTSUPP)
    );
}

#[test]
fn paging_alloc_with_vtd_stage1_data_is_eopnotsupp() {
    let s = setup();
    let data = s1();
    assert_eq!(
        nested_raw(&s.env, s.dev_id, s.ioas, 1, &data, 24),
        Err(Errno::EOPNOTSUPP)
    );
}

#[test]
fn nest_parent_alloc_on_a_unit_without_nesting_is_eopnotsupp() {
    let env = Env::new(PlatformDesc::without_nesting());
    let (_dev, dev_id) = env.bind(0);
    let ioas = env.ioas();
    assert_eq!(
        env.paging(dev_id, ioas, HwptAllocFlags::NEST_PARENT),
        Err(Errno::EOPNOTSUPP)
    );
    assert!(env.paging(dev_id, ioas, HwptAllocFlags::empty()).is_ok());
}

#[test]
fn nest_parent_with_dirty_tracking_is_allowed_where_ssads_is_supported() {
    let s = setup();
    let r = s.env.paging(
        s.dev_id,
        s.ioas,
        HwptAllocFlags::NEST_PARENT | HwptAllocFlags::DIRTY_TRACKING,
    );
    assert_eq!(r, Ok(5));
}

#[test]
fn hwpt_alloc_whose_reply_cannot_be_written_is_efault_and_frees_the_id() {
    let s = setup();
    let b = alloc_cmd(0, s.dev_id, s.ioas);
    let mut bytes = vec![0u8; SIZE];
    for (i, x) in bytes.iter_mut().enumerate() {
        *x = b.u8(i);
    }
    vtd_model::PhysMem::write_bytes(&s.env.ram, 0x5000, &bytes).expect("write guest RAM");
    s.env.ram.protect(0x5000, 0x1000, libc::PROT_READ);
    let r = raw_ptr(s.env.fd.fd(), nr::IOMMU_HWPT_ALLOC, s.env.ram.hva(0x5000));
    s.env
        .ram
        .protect(0x5000, 0x1000, libc::PROT_READ | libc::PROT_WRITE);
    assert_eq!(r, Err(Errno::EFAULT));
    assert_eq!(s.env.next_id(), 5);
    assert_eq!(
        s.env.destroy(s.ioas),
        Err(Errno::EBUSY),
        "parent and plain remain"
    );
}

// ---------------------------------------------------------------------------------------
// Nested allocation (KS §3.4), T3 rows 6–17.

#[test]
fn nested_alloc_with_data_type_none_and_length_4_is_einval() {
    let s = setup();
    let data = s1();
    assert_eq!(
        nested_raw(&s.env, s.dev_id, s.parent, 0, &data, 4),
        Err(Errno::EINVAL)
    );
}

#[test]
fn nested_alloc_without_data_is_eopnotsupp() {
    let s = setup();
    let mut b = alloc_cmd(0, s.dev_id, s.parent);
    assert_eq!(
        s.env.raw(nr::IOMMU_HWPT_ALLOC, &mut b),
        Err(Errno::EOPNOTSUPP)
    );
}

#[test]
fn nested_alloc_with_a_data_type_other_than_vtd_s1_is_eopnotsupp() {
    let s = setup();
    let data = s1();
    for ty in [2, 3, 0xdead] {
        assert_eq!(
            nested_raw(&s.env, s.dev_id, s.parent, ty, &data, 24),
            Err(Errno::EOPNOTSUPP),
            "type {ty}"
        );
    }
}

#[test]
fn nested_alloc_with_a_length_other_than_24_is_einval() {
    let s = setup();
    let data = vtd_s1_bytes(0, 0x10_0000, 48, 0);
    let big = Buf::new(64);
    for len in [3, 16, 23] {
        assert_eq!(
            nested_raw(&s.env, s.dev_id, s.parent, 1, &data, len),
            Err(Errno::EINVAL),
            "length {len}"
        );
    }
    // Longer blobs are refused outright, even with a zero tail (KS §1.3).
    for len in [25, 32, 64] {
        assert_eq!(
            nested_raw(&s.env, s.dev_id, s.parent, 1, &big, len),
            Err(Errno::EINVAL),
            "length {len}"
        );
    }
}

#[test]
fn nested_alloc_with_a_null_data_pointer_is_efault() {
    let s = setup();
    let mut b = alloc_cmd(0, s.dev_id, s.parent);
    b.set_u32(DATA_TYPE, 1)
        .set_u32(DATA_LEN, 24)
        .set_u64(DATA_UPTR, 0);
    assert_eq!(s.env.raw(nr::IOMMU_HWPT_ALLOC, &mut b), Err(Errno::EFAULT));
    assert_eq!(s.env.next_id(), 5, "no object left behind");
}

#[test]
fn nested_alloc_with_nest_parent_or_dirty_tracking_is_eopnotsupp() {
    let s = setup();
    let data = s1();
    for flags in [NEST_PARENT, DIRTY] {
        let mut b = nested_alloc_cmd(s.dev_id, s.parent, &data, 24);
        b.set_u32(FLAGS, flags);
        assert_eq!(
            s.env.raw(nr::IOMMU_HWPT_ALLOC, &mut b),
            Err(Errno::EOPNOTSUPP),
            "flags {flags}"
        );
    }
}

#[test]
fn nested_alloc_on_a_paging_hwpt_that_is_not_a_parent_is_einval() {
    let s = setup();
    assert_eq!(
        s.env.nested(s.dev_id, s.plain, &VtdS1::new(0x1000)),
        Err(Errno::EINVAL)
    );
}

#[test]
fn nested_alloc_on_an_auto_hwpt_is_einval() {
    let env = Env::spr();
    let (dev, dev_id) = env.bind(0);
    let ioas = env.ioas();
    let auto = dev.attach_pt(ioas).expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
    assert_eq!(
        env.nested(dev_id, auto, &VtdS1::new(0x1000)),
        Err(Errno::EINVAL)
    );
}

#[test]
fn nested_alloc_on_a_nested_hwpt_is_einval() {
    let s = setup();
    let nested = s
        .env
        .nested(s.dev_id, s.parent, &VtdS1::new(0x1000))
        .expect("IOMMU_HWPT_ALLOC (nested)");
    assert_eq!(
        s.env.nested(s.dev_id, nested, &VtdS1::new(0x1000)),
        Err(Errno::EINVAL)
    );
}

#[test]
fn two_nested_hwpts_on_one_parent_get_consecutive_ids() {
    let s = setup();
    let a = s.env.nested(s.dev_id, s.parent, &VtdS1::new(0x1000));
    let b = s.env.nested(s.dev_id, s.parent, &VtdS1::new(0x2000));
    assert_eq!((a, b), (Ok(5), Ok(6)));
}

#[test]
fn nested_alloc_with_an_unknown_fault_id_is_enoent_and_leaves_nothing() {
    let s = setup();
    let data = s1();
    let mut b = nested_alloc_cmd(s.dev_id, s.parent, &data, 24);
    b.set_u32(FLAGS, FAULT_ID_VALID).set_u32(FAULT_ID, u32::MAX);
    assert_eq!(s.env.raw(nr::IOMMU_HWPT_ALLOC, &mut b), Err(Errno::ENOENT));
    assert_eq!(s.env.next_id(), 5);
    assert_eq!(s.env.destroy(s.parent), Ok(()), "the parent holds no child");
}

#[test]
fn nested_alloc_with_a_fault_holds_the_fault() {
    let s = setup();
    let (fault, fd) = s.env.fault_alloc().expect("IOMMU_FAULT_QUEUE_ALLOC");
    let data = s1();
    let mut b = nested_alloc_cmd(s.dev_id, s.parent, &data, 24);
    b.set_u32(FLAGS, FAULT_ID_VALID).set_u32(FAULT_ID, fault);
    assert_eq!(s.env.raw(nr::IOMMU_HWPT_ALLOC, &mut b), Ok(()));
    let iopf = b.u32(OUT_HWPT_ID);
    s.env.platform.close_fd(fd).expect("close the fault queue");
    assert_eq!(s.env.destroy(fault), Err(Errno::EBUSY));
    s.env.destroy(iopf).expect("IOMMU_DESTROY");
    assert_eq!(s.env.destroy(fault), Ok(()));
}

#[test]
fn nested_alloc_with_a_fault_id_that_is_not_a_fault_is_enoent() {
    let s = setup();
    let data = s1();
    let mut b = nested_alloc_cmd(s.dev_id, s.parent, &data, 24);
    b.set_u32(FLAGS, FAULT_ID_VALID).set_u32(FAULT_ID, s.ioas);
    assert_eq!(s.env.raw(nr::IOMMU_HWPT_ALLOC, &mut b), Err(Errno::ENOENT));
}

#[test]
fn destroy_of_a_parent_with_a_nested_child_is_ebusy() {
    let s = setup();
    let nested = s
        .env
        .nested(s.dev_id, s.parent, &VtdS1::new(0x1000))
        .expect("IOMMU_HWPT_ALLOC (nested)");
    assert_eq!(s.env.destroy(s.parent), Err(Errno::EBUSY));
    s.env.destroy(nested).expect("IOMMU_DESTROY");
    assert_eq!(s.env.destroy(s.parent), Ok(()));
}

#[test]
fn stage1_data_is_not_validated_at_allocation() {
    let s = setup();
    // Unknown flag bits, a non-zero __reserved, any width and an unaligned root pointer.
    for (flags, addr, width, reserved) in [
        (!0u64, 0x1000, 48, 0),
        (0, 0x1000, 48, 0xFFFF_FFFF),
        (0, 0x1000, 0, 0),
        (0, 0x1000, 64, 0),
        (0, 0x1234, 39, 0),
    ] {
        let data = vtd_s1_bytes(flags, addr, width, reserved);
        assert!(
            nested_raw(&s.env, s.dev_id, s.parent, 1, &data, 24).is_ok(),
            "flags {flags:#x} addr {addr:#x} width {width} reserved {reserved:#x}"
        );
    }
}

#[test]
fn nested_alloc_for_a_device_whose_unit_lacks_nesting_is_eopnotsupp() {
    let env = Env::new(two_units(vtd_model::UnitConfig::without_nesting()));
    let (_nic, nic_id) = env.bind(NIC0);
    let (_ext, ext_id) = env.bind(EXT0);
    let ioas = env.ioas();
    let parent = env.parent(nic_id, ioas);
    assert_eq!(
        env.nested(ext_id, parent, &VtdS1::new(0x1000)),
        Err(Errno::EOPNOTSUPP)
    );
}

#[test]
fn unsupported_stage1_features_are_accepted_at_alloc_and_refused_at_attach() {
    let unit = spr_unit_with(|mut c| {
        c.ecap = c.ecap.with_srs(false).with_eafs(false);
        c.cap = c.cap.with_fs5lp(false);
        c
    });
    let env = Env::new(PlatformDesc {
        units: vec![unit],
        ..PlatformDesc::sapphire_rapids()
    });
    let (dev, dev_id) = env.bind(0);
    let (_, parent) = env.parent_with_ram(dev_id);
    dev.attach_pt(parent)
        .expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
    for (what, flags, width) in [
        ("SRE without SRS", 1, 48),
        ("EAFE without EAFS", 2, 48),
        ("57-bit without FS5LP", 0, 57),
        ("39-bit", 0, 39),
    ] {
        let data = vtd_s1_bytes(flags, 0x10_0000, width, 0);
        let nested = nested_raw(&env, dev_id, parent, 1, &data, 24)
            .unwrap_or_else(|e| panic!("{what}: alloc failed with {e:?}"));
        assert_eq!(
            dev.attach_pt(nested).map_err(err),
            Err(Errno::EINVAL),
            "{what}"
        );
        env.destroy(nested).expect("IOMMU_DESTROY");
    }
    // The failed attaches put the device back on the parent.
    env.ram.fill(0x3000, 0x77, 4);
    assert_eq!(env.dma_read(0, 0x3000, 4).expect("DMA read"), [0x77; 4]);
}

// ---------------------------------------------------------------------------------------
// T6 `alloc_hwpt`: a nest parent is an ordinary attachable paging HWPT.

#[test]
fn paging_and_parent_hwpts_are_attachable_and_held_while_attached() {
    let env = Env::spr();
    let (dev, dev_id) = env.bind(0);
    let ioas = env.ioas();
    dev.attach_pt(ioas).expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
    let a = env
        .paging(dev_id, ioas, HwptAllocFlags::empty())
        .expect("IOMMU_HWPT_ALLOC");
    let b = env
        .paging(dev_id, ioas, HwptAllocFlags::NEST_PARENT)
        .expect("IOMMU_HWPT_ALLOC");
    assert_eq!(dev.attach_pt(a).expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT"), a);
    assert_eq!(env.destroy(a), Err(Errno::EBUSY));
    assert_eq!(dev.attach_pt(b).expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT"), b);
    assert_eq!(env.destroy(b), Err(Errno::EBUSY));
    let auto = dev.attach_pt(ioas).expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
    assert!(
        auto != a && auto != b,
        "an explicit HWPT is never picked automatically"
    );
    assert_eq!(env.destroy(b), Ok(()));
    // A second device attached directly to A.
    let (dev2, _) = env.bind(1);
    assert_eq!(dev2.attach_pt(a).expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT"), a);
    drop(dev2);
    assert_eq!(env.destroy(a), Ok(()));
}

// ---------------------------------------------------------------------------------------
// The read-only rule of a nest parent (KS §4.1).

#[test]
fn read_only_map_into_an_ioas_with_a_nest_parent_is_einval_and_maps_nothing() {
    let env = Env::spr();
    let (_nic, nic_id) = env.bind(0);
    let (ssd, _) = env.bind(1);
    let ioas = env.ioas();
    // An auto domain first, so the failing parent is the second domain filled.
    ssd.attach_pt(ioas).expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
    env.parent(nic_id, ioas);
    env.ram.fill(0x6000, 0x11, 8);
    assert_eq!(
        env.map(ioas, 0x6000, 0x1000, Some(0x10_0000), MapFlags::READABLE),
        Err(Errno::EINVAL)
    );
    assert!(
        env.faults(1, 0x10_0000, Read),
        "not left in the plain domain"
    );
    assert_eq!(env.unmap(ioas, 0x10_0000, 0x1000), Err(Errno::ENOENT));
    assert!(!env.platform.host_mem().is_pinned(env.ram.hva(0x6000), 1));
}

#[test]
fn read_only_copy_into_an_ioas_with_a_nest_parent_is_einval() {
    let env = Env::spr();
    let (_nic, nic_id) = env.bind(0);
    let src = env.ioas();
    let dst = env.ioas();
    env.map(src, 0, 0x1000, Some(0x1000), RW)
        .expect("IOMMU_IOAS_MAP");
    env.parent(nic_id, dst);
    let r = env
        .fd
        .ioas_copy(dst, src, 0x1000, 0x1000, Some(0x1000), MapFlags::READABLE)
        .map_err(err);
    assert_eq!(r, Err(Errno::EINVAL));
    assert_eq!(env.unmap(dst, 0x1000, 0x1000), Err(Errno::ENOENT));
}

#[test]
fn nest_parent_alloc_on_an_ioas_holding_a_read_only_area_is_einval() {
    let env = Env::spr();
    let (_nic, nic_id) = env.bind(0);
    let ioas = env.ioas();
    env.map(ioas, 0, 0x1000, Some(0x1000), RW)
        .expect("IOMMU_IOAS_MAP");
    env.map(ioas, 0x1000, 0x1000, Some(0x2000), MapFlags::READABLE)
        .expect("IOMMU_IOAS_MAP");
    assert_eq!(
        env.paging(nic_id, ioas, HwptAllocFlags::NEST_PARENT),
        Err(Errno::EINVAL)
    );
    assert_eq!(env.next_id(), 3, "the HWPT id was released");
    assert_eq!(
        env.fd
            .ioas_iova_ranges(ioas)
            .expect("IOMMU_IOAS_IOVA_RANGES")
            .alignment,
        1
    );
    assert!(!env.platform.host_mem().is_pinned(env.ram.hva(0), 1));
    // A plain paging HWPT takes the read-only area.
    assert!(env.paging(nic_id, ioas, HwptAllocFlags::empty()).is_ok());
}

#[test]
fn write_only_map_into_an_ioas_with_a_nest_parent_is_allowed() {
    let env = Env::spr();
    let (nic, nic_id) = env.bind(0);
    let ioas = env.ioas();
    let parent = env.parent(nic_id, ioas);
    nic.attach_pt(parent)
        .expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
    assert_eq!(
        env.map(ioas, 0x8000, 0x1000, Some(0x20_0000), MapFlags::WRITEABLE),
        Ok(0x20_0000)
    );
    env.dma_write(0, 0x20_0000, b"wo").expect("DMA write");
    assert_eq!(env.ram.read(0x8000, 2), b"wo");
    assert!(env.faults(0, 0x20_0000, Read), "not readable");
}

#[test]
fn read_only_map_into_an_ioas_with_only_plain_domains_is_allowed() {
    let env = Env::spr();
    let (nic, nic_id) = env.bind(0);
    let ioas = env.ioas();
    let plain = env
        .paging(nic_id, ioas, HwptAllocFlags::empty())
        .expect("IOMMU_HWPT_ALLOC");
    nic.attach_pt(plain).expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
    env.ram.fill(0x9000, 0x42, 4);
    env.map(ioas, 0x9000, 0x1000, Some(0x1000), MapFlags::READABLE)
        .expect("IOMMU_IOAS_MAP");
    assert_eq!(env.dma_read(0, 0x1000, 4).expect("DMA read"), [0x42; 4]);
    assert!(env.faults(0, 0x1000, Write));
}

#[test]
fn read_only_refusal_does_not_need_a_nested_child_or_an_attached_device() {
    let env = Env::spr();
    let (_nic, nic_id) = env.bind(0);
    let ioas = env.ioas();
    env.parent(nic_id, ioas);
    assert_eq!(
        env.map(ioas, 0, 0x1000, Some(0x1000), MapFlags::READABLE),
        Err(Errno::EINVAL)
    );
    let (info, vtd) = env.fd.get_vtd_hw_info(nic_id).expect("IOMMU_GET_HW_INFO");
    assert!(info.is_vtd() && vtd.errata_772415_spr17);
}

#[test]
fn whole_guest_ram_maps_into_a_parent_before_or_after_it_exists() {
    let env = Env::spr();
    let (nic, nic_id) = env.bind(0);
    let before = env.ioas();
    env.map(before, 0, RAM, Some(0), RW)
        .expect("IOMMU_IOAS_MAP");
    let p1 = env.parent(nic_id, before);
    let after = env.ioas();
    let p2 = env.parent(nic_id, after);
    env.map(after, 0, RAM, Some(0), RW).expect("IOMMU_IOAS_MAP");
    for p in [p1, p2] {
        nic.attach_pt(p).expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
        env.ram.fill(RAM - 8, p as u8, 8);
        assert_eq!(env.dma_read(0, RAM - 8, 8).expect("DMA read"), [p as u8; 8]);
    }
}

#[test]
fn nested_alloc_checks_flags_then_the_parent_then_the_data_type() {
    let s = setup();
    let data = s1();
    let mut b = nested_alloc_cmd(s.dev_id, s.plain, &data, 24);
    b.set_u32(FLAGS, DIRTY).set_u32(DATA_TYPE, 2);
    assert_eq!(
        s.env.raw(nr::IOMMU_HWPT_ALLOC, &mut b),
        Err(Errno::EOPNOTSUPP),
        "flags"
    );
    b.set_u32(FLAGS, 0);
    assert_eq!(
        s.env.raw(nr::IOMMU_HWPT_ALLOC, &mut b),
        Err(Errno::EINVAL),
        "not a parent"
    );
    b.set_u32(PT_ID, s.parent);
    assert_eq!(
        s.env.raw(nr::IOMMU_HWPT_ALLOC, &mut b),
        Err(Errno::EOPNOTSUPP),
        "type 2"
    );
    b.set_u32(DATA_TYPE, 1).set_u32(DATA_LEN, 23);
    assert_eq!(
        s.env.raw(nr::IOMMU_HWPT_ALLOC, &mut b),
        Err(Errno::EINVAL),
        "length 23"
    );
}
