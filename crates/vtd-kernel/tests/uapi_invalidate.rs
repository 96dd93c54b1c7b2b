//! uAPI conformance: IOMMU_HWPT_INVALIDATE (KS §6.1–6.2, selftest T3 rows 19–32 in their
//! VT-d form) and the invalidation descriptors the driver submits for it and for stage-2
//! changes (KS §5.4, §6.3–6.4; core semantics §5.3–5.4).

mod common;
mod uapi_support;

use common::{guest_s1_table, s1_map};
use uapi_support::layout::invalidate::*;
use uapi_support::{
    Env, InvEntry, inv_array, invalidate_cmd, nr, raw_ptr, spr_unit_with, submissions,
};
use vtd_iommufd::uapi::MapFlags;
use vtd_iommufd::{Errno, VtdS1};
use vtd_kernel::PlatformDesc;
use vtd_spec::inv::{
    DescType, DevTlbInvDesc, IotlbInvDesc, PasidCacheInvDesc, PasidIotlbGranularity,
    PasidIotlbInvDesc, RawDescriptor,
};
use vtd_spec::regs::IotlbGranularity;

const RW: MapFlags = MapFlags::READABLE.union(MapFlags::WRITEABLE);
const IOVA: u64 = 0x4000_0000;
const LEAF: u32 = 1;

type Dev = vtd_iommufd::VfioDevice<vtd_kernel::VfioDeviceFile>;

/// `nic0` attached to a nested HWPT over a parent with all guest RAM mapped, with a
/// second nested HWPT on the same parent; `ssd0` bound but unattached.
struct Nested {
    env: Env,
    nic: Dev,
    ssd: Dev,
    ioas: u32,
    parent: u32,
    n0: u32,
    n1: u32,
}

fn nested() -> Nested {
    let env = Env::spr();
    let (nic, nic_id) = env.bind(0);
    let (ssd, _) = env.bind(1);
    let (ioas, parent) = env.parent_with_ram(nic_id);
    let root = {
        let mut s1 = guest_s1_table(&env.ram);
        s1_map(&mut s1, IOVA, 0x20_0000);
        s1.root()
    };
    let n0 = env
        .nested(nic_id, parent, &VtdS1::new(root))
        .expect("IOMMU_HWPT_ALLOC (nested)");
    let n1 = env
        .nested(nic_id, parent, &VtdS1::new(root))
        .expect("IOMMU_HWPT_ALLOC (nested)");
    nic.attach_pt(n0).expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
    Nested {
        env,
        nic,
        ssd,
        ioas,
        parent,
        n0,
        n1,
    }
}

/// Invalidate with raw entries; returns (result, entry_num written back).
fn invalidate(env: &Env, hwpt: u32, entries: &[InvEntry]) -> (Result<(), Errno>, u32) {
    let data = inv_array(entries, 24, 0);
    let mut b = invalidate_cmd(hwpt, data.addr(0), 24, entries.len() as u32);
    let r = env.raw(nr::IOMMU_HWPT_INVALIDATE, &mut b);
    (r, b.u32(ENTRY_NUM))
}

fn pasid_iotlb(d: &RawDescriptor) -> PasidIotlbInvDesc {
    assert_eq!(d.desc_type(), DescType::PasidIotlb, "{d:?}");
    PasidIotlbInvDesc::from_bits(d.lo)
}

fn iotlb(d: &RawDescriptor) -> IotlbInvDesc {
    assert_eq!(d.desc_type(), DescType::Iotlb, "{d:?}");
    IotlbInvDesc::from_bits(d.lo)
}

// ---------------------------------------------------------------------------------------
// The ioctl (KS §6.1) and per-entry checks (§6.2).

#[test]
fn invalidate_of_a_parent_hwpt_is_enoent_with_entry_num_0() {
    let s = nested();
    assert_eq!(
        invalidate(&s.env, s.parent, &[InvEntry::new(IOVA, 1)]),
        (Err(Errno::ENOENT), 0)
    );
}

#[test]
fn invalidate_of_0_entries_is_a_probe_that_ignores_the_array() {
    let s = nested();
    let mut b = invalidate_cmd(s.n0, 0, 0, 0);
    assert_eq!(s.env.raw(nr::IOMMU_HWPT_INVALIDATE, &mut b), Ok(()));
    assert_eq!(b.u32(ENTRY_NUM), 0);
}

#[test]
fn invalidate_with_an_unknown_data_type_is_einval_even_for_0_entries() {
    let s = nested();
    for num in [0, 1] {
        let data = inv_array(&[InvEntry::new(IOVA, 1)], 24, 0);
        let mut b = invalidate_cmd(s.n0, data.addr(0), 24, num);
        b.set_u32(DATA_TYPE, 1);
        assert_eq!(
            s.env.raw(nr::IOMMU_HWPT_INVALIDATE, &mut b),
            Err(Errno::EINVAL)
        );
        assert_eq!(b.u32(ENTRY_NUM), 0);
    }
}

#[test]
fn invalidate_with_reserved_set_is_eopnotsupp_with_entry_num_0() {
    let s = nested();
    let data = inv_array(&[InvEntry::new(IOVA, 1)], 24, 0);
    let mut b = invalidate_cmd(s.n0, data.addr(0), 24, 1);
    b.set_u32(RESERVED, 1);
    assert_eq!(
        s.env.raw(nr::IOMMU_HWPT_INVALIDATE, &mut b),
        Err(Errno::EOPNOTSUPP)
    );
    assert_eq!(b.u32(ENTRY_NUM), 0);
}

#[test]
fn invalidate_with_an_entry_len_other_than_24_is_einval_with_entry_num_0() {
    let s = nested();
    for len in [1, 23, 25, 32] {
        let data = inv_array(&[InvEntry::new(IOVA, 1)], len.max(24), 0);
        let mut b = invalidate_cmd(s.n0, data.addr(0), len as u32, 1);
        assert_eq!(
            s.env.raw(nr::IOMMU_HWPT_INVALIDATE, &mut b),
            Err(Errno::EINVAL),
            "entry_len {len}"
        );
        assert_eq!(b.u32(ENTRY_NUM), 0);
    }
}

#[test]
fn invalidate_with_a_null_array_or_entry_len_0_is_einval() {
    let s = nested();
    let data = inv_array(&[InvEntry::new(IOVA, 1)], 24, 0);
    for (uptr, len) in [(0, 24), (data.addr(0), 0)] {
        let mut b = invalidate_cmd(s.n0, uptr, len, 1);
        assert_eq!(
            s.env.raw(nr::IOMMU_HWPT_INVALIDATE, &mut b),
            Err(Errno::EINVAL)
        );
        assert_eq!(b.u32(ENTRY_NUM), 0);
    }
}

#[test]
fn invalidate_with_an_unreadable_array_is_efault() {
    let s = nested();
    let mut b = invalidate_cmd(s.n0, 0x10, 24, 1);
    assert_eq!(
        s.env.raw(nr::IOMMU_HWPT_INVALIDATE, &mut b),
        Err(Errno::EFAULT)
    );
    assert_eq!(b.u32(ENTRY_NUM), 0);
}

#[test]
fn invalidate_with_unknown_entry_flags_or_reserved_is_eopnotsupp() {
    let s = nested();
    let mut flags = InvEntry::new(IOVA, 1);
    flags.flags = 0xFFFF_FFFF;
    let mut reserved = InvEntry::new(IOVA, 1);
    reserved.reserved = 1;
    for e in [flags, reserved] {
        assert_eq!(invalidate(&s.env, s.n0, &[e]), (Err(Errno::EOPNOTSUPP), 0));
    }
}

#[test]
fn invalidate_of_a_misaligned_address_or_everything_from_nonzero_is_einval() {
    let s = nested();
    for e in [
        InvEntry::new(IOVA + 0x10, 1),
        InvEntry::new(0x1000, u64::MAX),
    ] {
        assert_eq!(
            invalidate(&s.env, s.n0, &[e]),
            (Err(Errno::EINVAL), 0),
            "{e:?}"
        );
    }
}

#[test]
fn invalidate_stops_at_the_first_bad_entry_after_processing_the_ones_before() {
    let s = nested();
    let mut bad_flags = InvEntry::new(IOVA, 1);
    bad_flags.flags = 0xFFFF_FFFF;
    s.env.log(0);
    assert_eq!(
        invalidate(&s.env, s.n0, &[InvEntry::new(IOVA, 1), bad_flags]),
        (Err(Errno::EOPNOTSUPP), 1)
    );
    assert_eq!(
        submissions(&s.env.logged(0)).len(),
        1,
        "entry 0 was flushed"
    );
    assert_eq!(
        invalidate(
            &s.env,
            s.n0,
            &[InvEntry::new(IOVA, 1), InvEntry::new(IOVA + 4, 1)]
        ),
        (Err(Errno::EINVAL), 1)
    );
}

#[test]
fn invalidate_of_several_good_entries_reports_them_all() {
    let s = nested();
    assert_eq!(
        invalidate(&s.env, s.n0, &[InvEntry::new(IOVA, 1)]),
        (Ok(()), 1)
    );
    assert_eq!(
        invalidate(
            &s.env,
            s.n0,
            &[InvEntry::new(IOVA, 1), InvEntry::new(IOVA + 0x1000, 2)]
        ),
        (Ok(()), 2)
    );
    assert_eq!(
        invalidate(&s.env, s.n1, &[InvEntry::new(0, u64::MAX)]),
        (Ok(()), 1)
    );
}

#[test]
fn invalidate_of_0_pages_is_accepted() {
    let s = nested();
    assert_eq!(
        invalidate(&s.env, s.n0, &[InvEntry::new(IOVA, 0)]),
        (Ok(()), 1)
    );
}

#[test]
fn invalidate_whose_reply_cannot_be_written_is_efault_instead_of_its_error() {
    let s = nested();
    let cmd = invalidate_cmd(s.n0, 0, 24, 1);
    let mut bytes: Vec<u8> = (0..SIZE).map(|i| cmd.u8(i)).collect();
    bytes[RESERVED] = 1;
    vtd_model::PhysMem::write_bytes(&s.env.ram, 0xF0_0000, &bytes).expect("write guest RAM");
    s.env.ram.protect(0xF0_0000, 0x1000, libc::PROT_READ);
    let r = raw_ptr(
        s.env.fd.fd(),
        nr::IOMMU_HWPT_INVALIDATE,
        s.env.ram.hva(0xF0_0000),
    );
    s.env
        .ram
        .protect(0xF0_0000, 0x1000, libc::PROT_READ | libc::PROT_WRITE);
    assert_eq!(r, Err(Errno::EFAULT));
}

#[test]
fn typed_invalidate_reports_the_processed_count_in_its_error() {
    let s = nested();
    let r = s.env.fd.hwpt_invalidate(
        s.n0,
        &[
            vtd_iommufd::VtdS1Invalidate::range(IOVA, 0x1000),
            vtd_iommufd::VtdS1Invalidate {
                addr: 0x1000,
                npages: u64::MAX,
                leaf: false,
            },
        ],
    );
    match r {
        Err(vtd_iommufd::Error::Invalidate {
            errno, processed, ..
        }) => assert_eq!((errno, processed), (Errno::EINVAL, 1)),
        other => panic!("expected a partial invalidation, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// What HWPT_INVALIDATE submits (KS §6.3).

#[test]
fn invalidate_submits_a_page_selective_pasid_iotlb_descriptor_then_a_wait() {
    let s = nested();
    s.env.log(0);
    invalidate(&s.env, s.n0, &[InvEntry::new(IOVA, 1)])
        .0
        .expect("IOMMU_HWPT_INVALIDATE");
    let log = s.env.logged(0);
    let subs = submissions(&log);
    assert_eq!(subs.len(), 1);
    assert_eq!(subs[0].len(), 1);
    let d = pasid_iotlb(&subs[0][0]);
    assert_eq!(d.g(), PasidIotlbGranularity::Page);
    assert_eq!((d.did(), d.pasid()), (2, 0), "the nested DID, RID_PASID 0");
    assert_eq!((d.address(), d.am(), d.ih()), (IOVA, 0, false));
    assert_eq!(log.last().map(|d| d.desc_type()), Some(DescType::Wait));
}

#[test]
fn invalidate_with_leaf_sets_ih_and_a_straddling_range_grows_the_mask() {
    let s = nested();
    s.env.log(0);
    let mut e = InvEntry::new(IOVA + 0x3000, 2);
    e.flags = LEAF;
    invalidate(&s.env, s.n0, &[e])
        .0
        .expect("IOMMU_HWPT_INVALIDATE");
    let subs = submissions(&s.env.logged(0));
    let d = pasid_iotlb(&subs[0][0]);
    assert_eq!((d.address(), d.am(), d.ih()), (IOVA, 3, true));
}

#[test]
fn invalidate_of_everything_is_page_selective_with_mask_52() {
    let s = nested();
    s.env.log(0);
    invalidate(&s.env, s.n0, &[InvEntry::new(0, u64::MAX)])
        .0
        .expect("IOMMU_HWPT_INVALIDATE");
    let subs = submissions(&s.env.logged(0));
    let d = pasid_iotlb(&subs[0][0]);
    assert_eq!(d.g(), PasidIotlbGranularity::Page);
    assert_eq!((d.address(), d.am()), (0, 52));
}

#[test]
fn each_entry_is_its_own_submission() {
    let s = nested();
    s.env.log(0);
    invalidate(
        &s.env,
        s.n0,
        &[InvEntry::new(IOVA, 1), InvEntry::new(IOVA + 0x10_0000, 1)],
    )
    .0
    .expect("IOMMU_HWPT_INVALIDATE");
    let subs = submissions(&s.env.logged(0));
    assert_eq!(subs.len(), 2);
    assert_eq!(pasid_iotlb(&subs[1][0]).address(), IOVA + 0x10_0000);
}

#[test]
fn invalidate_of_an_unattached_nested_hwpt_submits_nothing() {
    let s = nested();
    s.env.log(0);
    assert_eq!(
        invalidate(&s.env, s.n1, &[InvEntry::new(IOVA, 1)]),
        (Ok(()), 1)
    );
    assert!(s.env.logged(0).is_empty());
}

#[test]
fn two_nested_hwpts_attached_at_once_use_different_dids() {
    let s = nested();
    s.ssd
        .attach_pt(s.n1)
        .expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
    s.env.log(0);
    invalidate(&s.env, s.n0, &[InvEntry::new(IOVA, 1)])
        .0
        .expect("IOMMU_HWPT_INVALIDATE");
    invalidate(&s.env, s.n1, &[InvEntry::new(IOVA, 1)])
        .0
        .expect("IOMMU_HWPT_INVALIDATE");
    let subs = submissions(&s.env.logged(0));
    let (a, b) = (
        pasid_iotlb(&subs[0][0]).did(),
        pasid_iotlb(&subs[1][0]).did(),
    );
    assert_eq!((a, b), (2, 3));
}

#[test]
fn the_nested_did_differs_from_the_did_of_a_parent_still_in_use() {
    let s = nested();
    // ssd0 keeps the parent attached directly, so the parent keeps its DID.
    s.nic.detach_pt().expect("VFIO_DEVICE_DETACH_IOMMUFD_PT");
    s.ssd
        .attach_pt(s.parent)
        .expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
    s.nic
        .attach_pt(s.n0)
        .expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
    s.env.log(0);
    invalidate(&s.env, s.n0, &[InvEntry::new(IOVA, 1)])
        .0
        .expect("IOMMU_HWPT_INVALIDATE");
    let subs = submissions(&s.env.logged(0));
    assert_eq!(pasid_iotlb(&subs[0][0]).did(), 3, "parent has 2");
}

// ---------------------------------------------------------------------------------------
// Stage-2 changes on the parent reach the nested DIDs (KS §6.4, core §5.4).

#[test]
fn parent_unmap_flushes_the_nested_did_page_selectively_with_ih() {
    let s = nested();
    s.env
        .map(s.ioas, 0, 0x2000, Some(0x100_0000), RW)
        .expect("IOMMU_IOAS_MAP");
    s.env.log(0);
    s.env
        .unmap(s.ioas, 0x100_0000, 0x2000)
        .expect("IOMMU_IOAS_UNMAP");
    let subs = submissions(&s.env.logged(0));
    assert_eq!(subs.len(), 1);
    assert_eq!(
        subs[0].len(),
        1,
        "no device-TLB: 6.12 leaves ATS off for nested"
    );
    let d = iotlb(&subs[0][0]);
    assert_eq!(d.g(), IotlbGranularity::Page);
    assert_eq!(d.did(), 2, "the nested DID");
    assert_eq!((d.address(), d.am()), (0x100_0000, 1));
    assert!(
        d.ih(),
        "no page-table page covered whole by the range was freed"
    );
    assert!(d.dw() && d.dr(), "CAP.DWD and CAP.DRD are set on this unit");
}

#[test]
fn parent_unmap_of_2mib_pages_is_one_flush_of_the_whole_area() {
    let s = nested();
    s.env.log(0);
    assert_eq!(s.env.unmap_all(s.ioas), Ok(uapi_support::RAM));
    let subs = submissions(&s.env.logged(0));
    assert_eq!(subs.len(), 1);
    let d = iotlb(&subs[0][0]);
    assert_eq!((d.g(), d.did()), (IotlbGranularity::Page, 2));
    assert_eq!((d.address(), d.am(), d.ih()), (0, 12, true));
}

#[test]
fn parent_unmap_beyond_mamv_falls_back_to_domain_selective() {
    let unit = spr_unit_with(|mut c| {
        c.cap = c.cap.with_mamv(4);
        c
    });
    let env = Env::new(PlatformDesc {
        units: vec![unit],
        ..PlatformDesc::sapphire_rapids()
    });
    let (nic, nic_id) = env.bind(0);
    let (ioas, parent) = env.parent_with_ram(nic_id);
    let n = env
        .nested(nic_id, parent, &VtdS1::new(0x10_0000))
        .expect("IOMMU_HWPT_ALLOC (nested)");
    nic.attach_pt(n).expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
    env.log(0);
    env.unmap(ioas, 0, uapi_support::RAM)
        .expect("IOMMU_IOAS_UNMAP");
    let subs = submissions(&env.logged(0));
    let d = iotlb(&subs[0][0]);
    assert_eq!(
        (d.g(), d.did(), d.address(), d.am(), d.ih()),
        (IotlbGranularity::Domain, 2, 0, 0, false)
    );
}

#[test]
fn parent_map_on_a_unit_without_caching_mode_submits_nothing() {
    let s = nested();
    s.env.log(0);
    s.env
        .map(s.ioas, 0, 0x1000, Some(0x100_0000), RW)
        .expect("IOMMU_IOAS_MAP");
    assert!(s.env.logged(0).is_empty());
}

#[test]
fn unmap_from_a_domain_without_devices_submits_nothing() {
    let s = nested();
    s.nic.detach_pt().expect("VFIO_DEVICE_DETACH_IOMMUFD_PT");
    s.env.log(0);
    s.env.unmap_all(s.ioas).expect("IOMMU_IOAS_UNMAP");
    assert!(s.env.logged(0).is_empty());
}

#[test]
fn unmap_on_a_paging_domain_with_an_ats_device_also_flushes_its_device_tlb() {
    let env = Env::spr();
    let (ssd, ssd_id) = env.bind(1);
    let (ioas, parent) = env.parent_with_ram(ssd_id);
    ssd.attach_pt(parent)
        .expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
    env.map(ioas, 0, 0x1000, Some(0x100_0000), RW)
        .expect("IOMMU_IOAS_MAP");
    env.log(0);
    env.unmap(ioas, 0x100_0000, 0x1000)
        .expect("IOMMU_IOAS_UNMAP");
    let subs = submissions(&env.logged(0));
    assert_eq!(subs.len(), 1);
    let types: Vec<DescType> = subs[0].iter().map(|d| d.desc_type()).collect();
    assert_eq!(types, [DescType::Iotlb, DescType::DevTlb]);
    let d = iotlb(&subs[0][0]);
    assert_eq!((d.did(), d.address(), d.am()), (2, 0x100_0000, 0));
    let t = DevTlbInvDesc::from_bits(subs[0][1].lo);
    let sid = env.platform.devices()[1].sid;
    assert_eq!((t.sid(), t.s(), t.addr()), (sid, false, 0x100_0000 >> 12));
    assert_eq!(
        (t.pfsid_lo() as u16 | (t.pfsid_hi() << 4)),
        sid,
        "a physical function is its own PFSID"
    );
}

// ---------------------------------------------------------------------------------------
// Entry tear-down on replace and detach (KS §5.4).

#[test]
fn replacing_the_parent_with_a_nested_hwpt_tears_the_second_stage_entry_down_first() {
    let s = nested();
    s.nic
        .attach_pt(s.parent)
        .expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
    s.env.log(0);
    s.nic
        .attach_pt(s.n0)
        .expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
    let subs = submissions(&s.env.logged(0));
    assert_eq!(subs.len(), 1, "CM=0: nothing after the new entry");
    assert_eq!(subs[0].len(), 2);
    let pc = PasidCacheInvDesc::from_bits(subs[0][0].lo);
    assert_eq!(subs[0][0].desc_type(), DescType::PasidCache);
    assert_eq!((pc.did(), pc.pasid()), (2, 0));
    let d = iotlb(&subs[0][1]);
    assert_eq!((d.g(), d.did()), (IotlbGranularity::Domain, 2));
}

#[test]
fn detaching_from_a_nested_hwpt_flushes_its_did_domain_selectively() {
    let s = nested();
    s.env.log(0);
    s.nic.detach_pt().expect("VFIO_DEVICE_DETACH_IOMMUFD_PT");
    let subs = submissions(&s.env.logged(0));
    assert_eq!(subs.len(), 1);
    let types: Vec<DescType> = subs[0].iter().map(|d| d.desc_type()).collect();
    assert_eq!(types, [DescType::PasidCache, DescType::Iotlb]);
    let d = iotlb(&subs[0][1]);
    assert_eq!((d.g(), d.did()), (IotlbGranularity::Domain, 2));
}

// ---------------------------------------------------------------------------------------
// Map-time flushes on a caching-mode unit (core §5.3).

fn caching_mode_env() -> Env {
    let unit = spr_unit_with(|mut c| {
        c.cap = c.cap.with_cm(true);
        c
    });
    Env::new(PlatformDesc {
        units: vec![unit],
        ..PlatformDesc::sapphire_rapids()
    })
}

#[test]
fn map_on_a_caching_mode_unit_flushes_the_paging_did_without_ih() {
    let env = caching_mode_env();
    let (nic, nic_id) = env.bind(0);
    let (ioas, parent) = env.parent_with_ram(nic_id);
    nic.attach_pt(parent)
        .expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
    env.log(0);
    env.map(ioas, 0, 0x2000, Some(0x100_0000), RW)
        .expect("IOMMU_IOAS_MAP");
    let subs = submissions(&env.logged(0));
    assert_eq!(subs.len(), 1);
    let d = iotlb(&subs[0][0]);
    assert_eq!((d.g(), d.did()), (IotlbGranularity::Page, 2));
    assert_eq!((d.address(), d.am(), d.ih()), (0x100_0000, 1, false));
}

#[test]
fn a_parent_used_only_through_nested_hwpts_gets_no_map_time_flush() {
    // 6.12 sets the domain's sync-on-map flag only on a paging attach (KS §6.4 quirk).
    let env = caching_mode_env();
    let (nic, nic_id) = env.bind(0);
    let (ioas, parent) = env.parent_with_ram(nic_id);
    let n = env
        .nested(nic_id, parent, &VtdS1::new(0x10_0000))
        .expect("IOMMU_HWPT_ALLOC (nested)");
    nic.attach_pt(n).expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
    env.log(0);
    env.map(ioas, 0, 0x1000, Some(0x100_0000), RW)
        .expect("IOMMU_IOAS_MAP");
    assert!(env.logged(0).is_empty());
}

#[test]
fn nested_attach_on_a_caching_mode_unit_flushes_the_new_entry() {
    let env = caching_mode_env();
    let (nic, nic_id) = env.bind(0);
    let (_, parent) = env.parent_with_ram(nic_id);
    let n = env
        .nested(nic_id, parent, &VtdS1::new(0x10_0000))
        .expect("IOMMU_HWPT_ALLOC (nested)");
    env.log(0);
    nic.attach_pt(n).expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
    let subs = submissions(&env.logged(0));
    let types: Vec<DescType> = subs.concat().iter().map(|d| d.desc_type()).collect();
    assert_eq!(types, [DescType::PasidCache, DescType::PasidIotlb]);
    let d = pasid_iotlb(&subs[0][1]);
    assert_eq!((d.g(), d.did()), (PasidIotlbGranularity::Pasid, 2));
}

#[test]
fn a_superpage_over_a_leftover_table_is_flushed_with_ih_clear() {
    let s = nested();
    s.nic
        .attach_pt(s.parent)
        .expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
    // 4 KiB at a 2 MiB boundary leaves its table behind when unmapped...
    s.env
        .map(s.ioas, 0, 0x1000, Some(0x200_0000), RW)
        .expect("IOMMU_IOAS_MAP");
    s.env.log(0);
    s.env
        .unmap(s.ioas, 0x200_0000, 0x1000)
        .expect("IOMMU_IOAS_UNMAP");
    let d = iotlb(&submissions(&s.env.logged(0))[0][0]);
    assert!(d.ih(), "the 4 KiB unmap freed no table");
    // ...which a 2 MiB page at the same IOVA replaces, with a flush (CM=0 or not).
    s.env.log(0);
    s.env
        .map(s.ioas, 0x20_0000, 2 << 20, Some(0x200_0000), RW)
        .expect("IOMMU_IOAS_MAP");
    let subs = submissions(&s.env.logged(0));
    assert_eq!(subs.len(), 1);
    let d = iotlb(&subs[0][0]);
    assert_eq!((d.g(), d.did()), (IotlbGranularity::Page, 2));
    assert_eq!((d.address(), d.am(), d.ih()), (0x200_0000, 9, false));
    s.env.ram.fill(0x20_0800, 0x3E, 2);
    assert_eq!(
        s.env.dma_read(0, 0x200_0800, 2).expect("DMA read"),
        [0x3E; 2]
    );
}

#[test]
fn an_ats_device_on_a_nested_hwpt_gets_no_device_tlb_flush() {
    // 6.12's nested attach leaves ATS disabled (KS §5.2), so no DEVTLB tags exist.
    let s = nested();
    s.nic.detach_pt().expect("VFIO_DEVICE_DETACH_IOMMUFD_PT");
    s.ssd
        .attach_pt(s.n0)
        .expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
    s.env
        .map(s.ioas, 0, 0x1000, Some(0x100_0000), RW)
        .expect("IOMMU_IOAS_MAP");
    s.env.log(0);
    s.env
        .unmap(s.ioas, 0x100_0000, 0x1000)
        .expect("IOMMU_IOAS_UNMAP");
    invalidate(&s.env, s.n0, &[InvEntry::new(IOVA, 1)])
        .0
        .expect("IOMMU_HWPT_INVALIDATE");
    let types: Vec<DescType> = s.env.logged(0).iter().map(|d| d.desc_type()).collect();
    assert_eq!(
        types,
        [
            DescType::Iotlb,
            DescType::Wait,
            DescType::PasidIotlb,
            DescType::Wait
        ]
    );
}

#[test]
fn map_with_huge_pages_off_on_a_caching_mode_unit_flushes_each_page() {
    let env = caching_mode_env();
    let (nic, _) = env.bind(0);
    let ioas = env.ioas();
    let mut b = uapi_support::Buf::sized(24, 24);
    b.set_u32(4, 1)
        .set_u16(8, 0)
        .set_u32(12, ioas)
        .set_u64(16, 0);
    env.raw(nr::IOMMU_OPTION, &mut b).expect("IOMMU_OPTION");
    nic.attach_pt(ioas).expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
    env.log(0);
    env.map(ioas, 0, 0x2000, Some(0x100_0000), RW)
        .expect("IOMMU_IOAS_MAP");
    let subs = submissions(&env.logged(0));
    let flushed: Vec<(u64, u8)> = subs
        .iter()
        .map(|s| {
            let d = iotlb(&s[0]);
            (d.address(), d.am())
        })
        .collect();
    assert_eq!(flushed, [(0x100_0000, 0), (0x100_1000, 0)]);
}
