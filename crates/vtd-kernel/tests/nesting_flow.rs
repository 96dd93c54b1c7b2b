//! The VMM's ioctl sequence for one assigned device under a nesting vIOMMU (KS §9.2),
//! end to end: uAPI calls on the simulated kernel, DMA through the hardware model.

mod common;

use common::{RAM, Vmm, errno, guest_s1_table, s1_map};
use vtd_iommufd::uapi::{HwptAllocFlags, IOMMU_HW_INFO_TYPE_INTEL_VTD};
use vtd_iommufd::{Errno, VtdS1Invalidate};
use vtd_kernel::DmaError;
use vtd_spec::fault::FaultReason;

const IOVA: u64 = 0x4000_0000;
const GPA: u64 = 0x20_0000;

#[test]
fn hw_info_reports_vtd_with_the_erratum_and_nesting() {
    let vmm = Vmm::new();
    let (info, vtd) = vmm.iommufd.get_vtd_hw_info(vmm.dev_id).unwrap();
    assert_eq!(info.data_type, IOMMU_HW_INFO_TYPE_INTEL_VTD);
    assert!(vtd.errata_772415_spr17);
    assert!(vtd.nesting());
}

#[test]
fn device_attached_to_the_parent_translates_gpa_to_guest_ram() {
    let vmm = Vmm::new();
    vmm.with_parent();
    vmm.ram.fill(GPA, 0xA5, 64);
    assert_eq!(vmm.dma_read(GPA, 64).unwrap(), vec![0xA5; 64]);
}

#[test]
fn nested_hwpt_translates_iova_through_guest_stage1_then_stage2() {
    let vmm = Vmm::new();
    let (_, parent) = vmm.with_parent();
    let mut s1 = guest_s1_table(&vmm.ram);
    s1_map(&mut s1, IOVA, GPA);
    let nested = vmm.nested(parent, s1.root());
    assert_eq!(vmm.dev.attach_pt(nested).unwrap(), nested);
    vmm.ram.fill(GPA, 0x5A, 32);
    assert_eq!(vmm.dma_read(IOVA + 0x10, 16).unwrap(), vec![0x5A; 16]);
    vmm.dma_write(IOVA, b"written through s1").unwrap();
    assert_eq!(vmm.ram.read(GPA, 18), b"written through s1");
}

#[test]
fn iova_the_guest_did_not_map_faults_in_the_first_stage() {
    let vmm = Vmm::new();
    let (_, parent) = vmm.with_parent();
    let s1 = guest_s1_table(&vmm.ram);
    let nested = vmm.nested(parent, s1.root());
    vmm.dev.attach_pt(nested).unwrap();
    match vmm.dma_read(IOVA, 8) {
        Err(DmaError::Fault(f)) => assert_eq!(f.reason, FaultReason::SfsNotPresent),
        other => panic!("expected a first-stage fault, got {other:?}"),
    }
}

#[test]
fn changed_guest_s1_leaf_stays_stale_until_hwpt_invalidate() {
    let vmm = Vmm::new();
    let (_, parent) = vmm.with_parent();
    let mut s1 = guest_s1_table(&vmm.ram);
    s1_map(&mut s1, IOVA, GPA);
    let nested = vmm.nested(parent, s1.root());
    vmm.dev.attach_pt(nested).unwrap();
    vmm.ram.fill(GPA, 1, 8);
    vmm.ram.fill(GPA + 0x1000, 2, 8);
    assert_eq!(vmm.dma_read(IOVA, 8).unwrap(), vec![1; 8]);
    // The guest repoints the page but has not invalidated yet: the IOTLB keeps the old
    // translation, as real hardware would.
    s1_map(&mut s1, IOVA, GPA + 0x1000);
    assert_eq!(vmm.dma_read(IOVA, 8).unwrap(), vec![1; 8]);
    let done = vmm
        .iommufd
        .hwpt_invalidate(nested, &[VtdS1Invalidate::range(IOVA, 1)])
        .unwrap();
    assert_eq!(done, 1);
    assert_eq!(vmm.dma_read(IOVA, 8).unwrap(), vec![2; 8]);
}

#[test]
fn invalidate_all_drops_every_cached_stage1_translation() {
    let vmm = Vmm::new();
    let (_, parent) = vmm.with_parent();
    let mut s1 = guest_s1_table(&vmm.ram);
    s1_map(&mut s1, IOVA, GPA);
    s1_map(&mut s1, IOVA + 0x1000, GPA + 0x1000);
    let nested = vmm.nested(parent, s1.root());
    vmm.dev.attach_pt(nested).unwrap();
    vmm.dma_read(IOVA, 8).unwrap();
    vmm.dma_read(IOVA + 0x1000, 8).unwrap();
    s1.unmap(IOVA).unwrap();
    s1.unmap(IOVA + 0x1000).unwrap();
    vmm.iommufd
        .hwpt_invalidate(nested, &[VtdS1Invalidate::all()])
        .unwrap();
    assert!(matches!(vmm.dma_read(IOVA, 8), Err(DmaError::Fault(_))));
    assert!(matches!(
        vmm.dma_read(IOVA + 0x1000, 8),
        Err(DmaError::Fault(_))
    ));
}

#[test]
fn stage2_unmap_on_the_parent_reaches_nested_translations() {
    let vmm = Vmm::new();
    let (ioas, parent) = vmm.with_parent();
    let mut s1 = guest_s1_table(&vmm.ram);
    s1_map(&mut s1, IOVA, GPA);
    let nested = vmm.nested(parent, s1.root());
    vmm.dev.attach_pt(nested).unwrap();
    vmm.dma_read(IOVA, 8).unwrap();
    // Unmapping guest RAM from stage 2 must flush the nested DID (NESTING_IOTLB tag),
    // or the device would keep reaching the unmapped memory.
    vmm.iommufd.ioas_unmap(ioas, 0, RAM as u64).unwrap();
    assert!(matches!(vmm.dma_read(IOVA, 8), Err(DmaError::Fault(_))));
}

#[test]
fn replacing_nested_with_parent_goes_back_to_gpa_translation() {
    let vmm = Vmm::new();
    let (_, parent) = vmm.with_parent();
    let mut s1 = guest_s1_table(&vmm.ram);
    s1_map(&mut s1, IOVA, GPA);
    let nested = vmm.nested(parent, s1.root());
    vmm.dev.attach_pt(nested).unwrap();
    vmm.dev.attach_pt(parent).unwrap();
    vmm.iommufd.destroy(nested).unwrap();
    vmm.ram.fill(GPA, 7, 4);
    assert_eq!(vmm.dma_read(GPA, 4).unwrap(), vec![7; 4]);
    assert!(matches!(vmm.dma_read(IOVA, 4), Err(DmaError::Fault(_))));
}

#[test]
fn objects_in_use_cannot_be_destroyed() {
    let vmm = Vmm::new();
    let (ioas, parent) = vmm.with_parent();
    let s1 = guest_s1_table(&vmm.ram);
    let nested = vmm.nested(parent, s1.root());
    vmm.dev.attach_pt(nested).unwrap();
    assert_eq!(errno(vmm.iommufd.destroy(ioas)), Errno::EBUSY);
    assert_eq!(errno(vmm.iommufd.destroy(parent)), Errno::EBUSY);
    assert_eq!(errno(vmm.iommufd.destroy(nested)), Errno::EBUSY);
    assert_eq!(errno(vmm.iommufd.destroy(vmm.dev_id)), Errno::EBUSY);
}

#[test]
fn teardown_in_dependency_order_succeeds() {
    let vmm = Vmm::new();
    let (ioas, parent) = vmm.with_parent();
    let s1 = guest_s1_table(&vmm.ram);
    let nested = vmm.nested(parent, s1.root());
    vmm.dev.attach_pt(nested).unwrap();
    vmm.dev.detach_pt().unwrap();
    vmm.iommufd.destroy(nested).unwrap();
    vmm.iommufd.destroy(parent).unwrap();
    vmm.iommufd.destroy(ioas).unwrap();
    assert!(matches!(vmm.dma_read(GPA, 4), Err(DmaError::Fault(_))));
}

#[test]
fn nested_alloc_on_a_plain_paging_hwpt_is_einval() {
    let vmm = Vmm::new();
    let ioas = vmm.iommufd.ioas_alloc().unwrap();
    let plain = vmm
        .iommufd
        .hwpt_alloc_paging(vmm.dev_id, ioas, HwptAllocFlags::empty())
        .unwrap();
    let r =
        vmm.iommufd
            .hwpt_alloc_nested(vmm.dev_id, plain, &vtd_iommufd::VtdS1::new(0x1000), None);
    assert_eq!(errno(r), Errno::EINVAL);
}

#[test]
fn stage1_with_an_unsupported_address_width_fails_at_attach_not_alloc() {
    let vmm = Vmm::new();
    let (_, parent) = vmm.with_parent();
    let mut s1 = vtd_iommufd::VtdS1::new(0x1000);
    s1.addr_width = 39;
    let nested = vmm
        .iommufd
        .hwpt_alloc_nested(vmm.dev_id, parent, &s1, None)
        .unwrap();
    assert_eq!(errno(vmm.dev.attach_pt(nested)), Errno::EINVAL);
}
