//! The SPR17 erratum (Intel 772415) end to end: the kernel reports it, refuses read-only
//! mappings in a nest parent, and — with that refusal bypassed by the test-only hook —
//! the hardware writes a first-stage A bit into a page stage 2 maps read-only, which is
//! exactly what the refusal exists to prevent. On a unit without the erratum the same
//! walk faults with SFS.8 (0x77).

mod common;

use common::{RAM, Vmm, errno, guest_s1_table, s1_map};
use vtd_iommufd::Errno;
use vtd_iommufd::uapi::{HwptAllocFlags, MapFlags};
use vtd_kernel::{DmaError, PlatformDesc};
use vtd_model::config::Spr17;
use vtd_spec::fault::FaultReason;

const IOVA: u64 = 0x4000_0000;
const GPA: u64 = 0x20_0000;
/// The last page of guest RAM: the guest's first stage-1 table (its PML4) lands here.
const RO_PAGE: u64 = RAM as u64 - 0x1000;
/// The PML4E for `IOVA` (1 GiB is PML4 index 0): the first entry of `RO_PAGE`.
const PML4E: u64 = RO_PAGE;
/// First-stage entry bit 5: Accessed.
const ACCESSED: u64 = 1 << 5;

/// A Sapphire Rapids platform whose unit has the erratum switched `erratum`.
fn platform(erratum: Spr17) -> PlatformDesc {
    let mut desc = PlatformDesc::sapphire_rapids();
    desc.units[0].switches.erratum_spr17 = erratum;
    desc
}

/// A nest parent mapping guest RAM read-write except `RO_PAGE`, read-only; the kernel's
/// refusal is bypassed first, as Linux without the workaround would behave.
fn parent_with_read_only_table_page(vmm: &Vmm) -> u32 {
    vmm.platform
        .intel_driver()
        .set_nest_parent_ro_refusal(false);
    let ioas = vmm.iommufd.ioas_alloc().unwrap();
    let parent = vmm
        .iommufd
        .hwpt_alloc_paging(vmm.dev_id, ioas, HwptAllocFlags::NEST_PARENT)
        .unwrap();
    let rw = MapFlags::READABLE | MapFlags::WRITEABLE;
    // SAFETY: guest RAM outlives the iommufd, which unmaps everything when dropped.
    unsafe {
        vmm.iommufd
            .ioas_map(ioas, vmm.ram.ptr(0), RO_PAGE, Some(0), rw)
            .unwrap();
        vmm.iommufd
            .ioas_map(
                ioas,
                vmm.ram.ptr(RO_PAGE),
                0x1000,
                Some(RO_PAGE),
                MapFlags::READABLE,
            )
            .unwrap();
    }
    parent
}

/// Guest stage 1 with its PML4 in `RO_PAGE`, mapping `IOVA → GPA`; a nested HWPT for
/// it attached to the device.
fn attach_nested(vmm: &Vmm, parent: u32) {
    let mut s1 = guest_s1_table(&vmm.ram);
    assert_eq!(s1.root(), RO_PAGE, "the PML4 is the first table allocated");
    s1_map(&mut s1, IOVA, GPA);
    let nested = vmm.nested(parent, s1.root());
    vmm.dev.attach_pt(nested).unwrap();
}

fn pml4e(vmm: &Vmm, gpa: u64) -> u64 {
    u64::from_le_bytes(vmm.ram.read(gpa, 8).try_into().unwrap())
}

#[test]
fn hw_info_carries_the_erratum_flag() {
    let vmm = Vmm::on(platform(Spr17::TopLevel), 0);
    let (_, vtd) = vmm.iommufd.get_vtd_hw_info(vmm.dev_id).unwrap();
    assert!(vtd.errata_772415_spr17);
}

#[test]
fn read_only_mapping_into_a_nest_parent_is_refused_with_einval() {
    let vmm = Vmm::on(platform(Spr17::TopLevel), 0);
    let ioas = vmm.iommufd.ioas_alloc().unwrap();
    vmm.iommufd
        .hwpt_alloc_paging(vmm.dev_id, ioas, HwptAllocFlags::NEST_PARENT)
        .unwrap();
    // SAFETY: guest RAM outlives the iommufd.
    let r = unsafe {
        vmm.iommufd.ioas_map(
            ioas,
            vmm.ram.ptr(RO_PAGE),
            0x1000,
            Some(RO_PAGE),
            MapFlags::READABLE,
        )
    };
    assert_eq!(errno(r), Errno::EINVAL);
}

#[test]
fn stage2_really_maps_the_table_page_read_only() {
    let vmm = Vmm::on(platform(Spr17::TopLevel), 0);
    let parent = parent_with_read_only_table_page(&vmm);
    vmm.dev.attach_pt(parent).unwrap();
    assert_eq!(vmm.dma_read(RO_PAGE, 8).unwrap(), vec![0; 8]);
    match vmm.dma_write(RO_PAGE, &[0xFF; 8]) {
        Err(DmaError::Fault(f)) => assert_eq!(f.reason, FaultReason::SgnWriteDenied),
        other => panic!("expected a stage-2 write fault, got {other:?}"),
    }
    assert_eq!(vmm.ram.read(RO_PAGE, 8), vec![0; 8]);
}

#[test]
fn with_the_erratum_the_hardware_sets_an_accessed_bit_in_a_read_only_page() {
    let vmm = Vmm::on(platform(Spr17::TopLevel), 0);
    let parent = parent_with_read_only_table_page(&vmm);
    attach_nested(&vmm, parent);
    vmm.ram.fill(GPA, 0x5A, 8);
    assert_eq!(pml4e(&vmm, PML4E) & ACCESSED, 0);

    assert_eq!(vmm.dma_read(IOVA, 8).unwrap(), vec![0x5A; 8]);

    assert_ne!(
        pml4e(&vmm, PML4E) & ACCESSED,
        0,
        "the A/D update wrote into a page stage 2 maps read-only"
    );
}

#[test]
fn without_the_erratum_the_same_walk_faults_sfs8_and_leaves_the_page_alone() {
    let vmm = Vmm::on(platform(Spr17::Off), 0);
    let parent = parent_with_read_only_table_page(&vmm);
    attach_nested(&vmm, parent);
    let before = pml4e(&vmm, PML4E);

    match vmm.dma_read(IOVA, 8) {
        Err(DmaError::Fault(f)) => {
            assert_eq!(f.reason, FaultReason::SfsAdWriteDenied);
            assert_eq!(f.reason.code(), 0x77);
            assert_eq!(f.gpa, Some(PML4E));
        }
        other => panic!("expected SFS.8, got {other:?}"),
    }
    assert_eq!(pml4e(&vmm, PML4E), before);
}

#[test]
fn with_the_refusal_in_place_no_read_only_page_reaches_stage2() {
    // The workaround's point: the same setup with the refusal on never gets a read-only
    // page into the parent, so there is nothing for the erratum to write into.
    let vmm = Vmm::on(platform(Spr17::TopLevel), 0);
    let ioas = vmm.iommufd.ioas_alloc().unwrap();
    let parent = vmm
        .iommufd
        .hwpt_alloc_paging(vmm.dev_id, ioas, HwptAllocFlags::NEST_PARENT)
        .unwrap();
    // SAFETY: guest RAM outlives the iommufd.
    let r = unsafe {
        vmm.iommufd.ioas_map(
            ioas,
            vmm.ram.ptr(0),
            RAM as u64,
            Some(0),
            MapFlags::READABLE,
        )
    };
    assert_eq!(errno(r), Errno::EINVAL);
    vmm.dev.attach_pt(parent).unwrap();
    match vmm.dma_read(0, 8) {
        Err(DmaError::Fault(f)) => assert_eq!(f.reason, FaultReason::SssNotPresent),
        other => panic!("nothing should be mapped, got {other:?}"),
    }
}
