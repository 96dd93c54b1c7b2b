//! The vIOMMU never loses track of a nested HWPT it created: when the host refuses to
//! destroy one nothing uses any more (a transient error, or EBUSY while something else
//! still holds it), the id stays pending and is destroyed at the guest's next
//! invalidation, or when the vIOMMU is dropped, before the nest parent it sits on.

mod common;

use std::sync::Arc;

use common::{
    DID, GPA, GUEST_SID, GUEST_SSD_SID, IOVA, Setup, dma_read, guest_maps_nic, map_4k, set_stage1,
    setup, setup_with,
};
use vtd_iommufd::{Errno, IoctlFd, Iommufd, VfioDevice, ioctl};
use vtd_kernel::VfioDeviceFile;
use vtd_viommu::guest::GuestDriver;
use vtd_viommu::shadow::Attachment;
use vtd_viommu::{Event, GuestMemory, MemoryMap};

/// The nested HWPT the NIC is attached to.
fn nic_hwpt(s: &Setup) -> u32 {
    match s.viommu.attachment("nic0") {
        Some(Attachment::Nested { hwpt, .. }) => hwpt,
        other => panic!("nic0 is not nested: {other:?}"),
    }
}

/// Whether the iommufd holds `id` as a nested HWPT: only a nested HWPT takes a
/// (zero-entry) IOMMU_HWPT_INVALIDATE.
fn is_nested<I: IoctlFd>(iommufd: &Iommufd<I>, id: u32) -> bool {
    iommufd.hwpt_invalidate(id, &[]).is_ok()
}

/// The nested HWPTs the iommufd holds.
fn nested_hwpts<I: IoctlFd>(iommufd: &Iommufd<I>) -> Vec<u32> {
    (1..=32).filter(|&id| is_nested(iommufd, id)).collect()
}

/// The guest moves the NIC to a fresh stage 1 mapping IOVA → GPA (and invalidates its
/// PASID entry), so the vIOMMU replaces the NIC's nested HWPT.
fn guest_moves_nic<'a>(driver: &mut GuestDriver<'a, Arc<GuestMemory>>) -> u64 {
    let root = driver.new_stage1(4).root();
    map_4k(driver, root, IOVA, GPA);
    set_stage1(driver, GUEST_SID, root, DID);
    root
}

/// The platform's `ssd0`, opened outside the vIOMMU, bound to its iommufd and attached to
/// `hwpt`: something else that still holds the HWPT.
fn ssd_holds(s: &Setup, hwpt: u32) -> VfioDevice<VfioDeviceFile> {
    let ssd = VfioDevice::new(s.platform.open_vfio(1).unwrap());
    ssd.bind_iommufd(s.viommu.iommufd().fd().fd_number())
        .unwrap();
    ssd.attach_pt(hwpt).unwrap();
    ssd
}

#[test]
fn a_refused_destroy_of_the_replaced_hwpt_stays_pending_until_the_next_invalidation() {
    let s = setup();
    let mut driver = boot(&s);
    let old = nic_hwpt(&s);
    s.faults.arm(ioctl::IOMMU_DESTROY, Errno::EIO);
    guest_moves_nic(&mut driver);
    let new = nic_hwpt(&s);
    assert_ne!(new, old);
    assert_eq!(s.viommu.pending_destroys(), 1);
    assert_eq!(s.viommu.pending_destroy_ids(), vec![old]);
    assert_eq!(s.viommu.refused_destroys(), 1);
    assert!(
        is_nested(s.viommu.iommufd(), old),
        "the kernel still has it"
    );
    driver.invalidate(DID, 0, Some(IOVA), 0, true).unwrap();
    assert_eq!(s.viommu.pending_destroys(), 0);
    assert_eq!(nested_hwpts(s.viommu.iommufd()), vec![new]);
    assert_eq!(s.viommu.refused_destroys(), 1);
}

#[test]
fn a_hwpt_another_device_still_holds_is_destroyed_once_it_lets_go() {
    let s = setup();
    let mut driver = boot(&s);
    let old = nic_hwpt(&s);
    let ssd = ssd_holds(&s, old);
    guest_moves_nic(&mut driver);
    // The kernel itself says EBUSY, and keeps saying it while the SSD holds the HWPT.
    assert_eq!(s.viommu.pending_destroy_ids(), vec![old]);
    driver.invalidate(DID, 0, Some(IOVA), 0, true).unwrap();
    assert_eq!(s.viommu.pending_destroy_ids(), vec![old]);
    assert_eq!(s.viommu.refused_destroys(), 2);
    ssd.detach_pt().unwrap();
    driver.invalidate(DID, 0, Some(IOVA), 0, true).unwrap();
    assert_eq!(s.viommu.pending_destroys(), 0);
    assert!(!is_nested(s.viommu.iommufd(), old));
    // The NIC's DMA went through its new HWPT all along.
    s.mem.write(GPA, b"fresh").unwrap();
    assert_eq!(dma_read(&s, IOVA, 5).unwrap(), b"fresh");
}

#[test]
fn a_refused_destroy_is_logged_once_with_the_errno_however_often_it_is_retried() {
    let s = setup();
    let mut driver = boot(&s);
    let old = nic_hwpt(&s);
    let ssd = ssd_holds(&s, old);
    s.viommu.take_events();
    guest_moves_nic(&mut driver);
    driver.invalidate(DID, 0, Some(IOVA), 0, true).unwrap();
    driver.invalidate(DID, 0, Some(IOVA), 0, true).unwrap();
    assert_eq!(s.viommu.refused_destroys(), 3);
    let refusals: Vec<_> = s
        .viommu
        .take_events()
        .into_iter()
        .filter_map(|e| match e {
            Event::DestroyRefused {
                device,
                hwpt,
                errno,
            } => Some((device, hwpt, errno)),
            _ => None,
        })
        .collect();
    assert_eq!(
        refusals,
        vec![("nic0".to_string(), old, Some(Errno::EBUSY))]
    );
    drop(ssd);
}

#[test]
fn a_fresh_hwpt_the_host_would_neither_attach_nor_destroy_is_destroyed_later() {
    let s = setup();
    let mut driver = boot(&s);
    let first = nic_hwpt(&s);
    let faults = s.faults.clone();
    s.faults.fail_then(
        ioctl::VFIO_DEVICE_ATTACH_IOMMUFD_PT,
        Errno::ENOMEM,
        move || faults.arm(ioctl::IOMMU_DESTROY, Errno::EIO),
    );
    guest_moves_nic(&mut driver);
    // The device is blocked (its old HWPT destroyed), the fresh one refused twice over.
    assert_eq!(s.viommu.attachment("nic0"), Some(Attachment::Blocked));
    let pending = s.viommu.pending_destroy_ids();
    assert_eq!(pending.len(), 1);
    assert_ne!(pending[0], first);
    assert!(is_nested(s.viommu.iommufd(), pending[0]));
    guest_moves_nic(&mut driver);
    assert_eq!(s.viommu.pending_destroys(), 0);
    assert_eq!(nested_hwpts(s.viommu.iommufd()), vec![nic_hwpt(&s)]);
}

#[test]
fn a_pending_id_the_host_hands_out_again_is_the_attachment_and_never_retried() {
    let s = setup();
    let mut driver = boot(&s);
    let old = nic_hwpt(&s);
    let ssd = ssd_holds(&s, old);
    guest_moves_nic(&mut driver);
    assert_eq!(s.viommu.pending_destroy_ids(), vec![old]);
    // Just before the next allocation the SSD lets go and the id is freed behind the
    // vIOMMU's back, so the host hands the same id out again for the new HWPT.
    let iommufd = s.viommu.iommufd().clone();
    s.faults.before(ioctl::IOMMU_HWPT_ALLOC, move || {
        ssd.detach_pt().unwrap();
        iommufd.destroy(old).unwrap();
    });
    guest_moves_nic(&mut driver);
    assert_eq!(nic_hwpt(&s), old, "the host reused the id");
    assert!(s.viommu.pending_destroy_ids().is_empty());
    let refused = s.viommu.refused_destroys();
    driver.invalidate(DID, 0, Some(IOVA), 0, true).unwrap();
    assert_eq!(s.viommu.refused_destroys(), refused, "nothing retried");
    assert_eq!(nic_hwpt(&s), old);
    s.mem.write(GPA, b"still attached").unwrap();
    assert_eq!(dma_read(&s, IOVA, 14).unwrap(), b"still attached");
}

#[test]
fn a_pending_id_the_host_hands_to_another_device_is_never_retried() {
    let s = setup_with(MemoryMap::pc(16 << 20), true);
    let mut driver = boot(&s);
    let old = nic_hwpt(&s);
    s.faults.arm(ioctl::IOMMU_DESTROY, Errno::EIO);
    guest_moves_nic(&mut driver);
    assert_eq!(s.viommu.pending_destroy_ids(), vec![old]);
    driver.add_device(GUEST_SSD_SID).unwrap();
    let root = driver.new_stage1(4).root();
    map_4k(&driver, root, IOVA, GPA);
    // In the re-shadow the SSD's PASID entry causes, the NIC's retry is refused again,
    // and then the id is freed behind the vIOMMU's back just before the SSD's HWPT is
    // allocated, so the SSD gets it.
    let (faults, iommufd) = (s.faults.clone(), s.viommu.iommufd().clone());
    s.faults
        .fail_then(ioctl::IOMMU_DESTROY, Errno::EIO, move || {
            faults.before(ioctl::IOMMU_HWPT_ALLOC, move || {
                iommufd.destroy(old).unwrap();
            })
        });
    set_stage1(&mut driver, GUEST_SSD_SID, root, DID + 1);
    let ssd_hwpt = match s.viommu.attachment("ssd0") {
        Some(Attachment::Nested { hwpt, .. }) => hwpt,
        other => panic!("ssd0 is not nested: {other:?}"),
    };
    assert_eq!(ssd_hwpt, old, "the host reused the id");
    assert!(s.viommu.pending_destroy_ids().is_empty());
    let refused = s.viommu.refused_destroys();
    driver.invalidate(DID, 0, Some(IOVA), 0, true).unwrap();
    assert_eq!(s.viommu.refused_destroys(), refused, "nothing retried");
    assert!(
        is_nested(s.viommu.iommufd(), old),
        "the SSD's HWPT is alive"
    );
}

#[test]
fn pending_hwpts_are_destroyed_on_drop_so_the_kernel_holds_no_nested_hwpt() {
    let s = setup();
    let mut driver = boot(&s);
    let old = nic_hwpt(&s);
    s.faults.arm(ioctl::IOMMU_DESTROY, Errno::EIO);
    guest_moves_nic(&mut driver);
    assert_eq!(s.viommu.pending_destroy_ids(), vec![old]);
    drop(driver);
    assert_dropped_clean(s);
}

#[test]
fn a_destroy_refused_while_dropping_is_retried_before_the_parent_goes() {
    let s = setup();
    drop(boot(&s));
    s.faults.arm(ioctl::IOMMU_DESTROY, Errno::EIO);
    assert_dropped_clean(s);
}

/// The guest boots its driver and puts the NIC on a guest stage 1 (a nested HWPT).
fn boot(s: &Setup) -> GuestDriver<'_, Arc<GuestMemory>> {
    let mut driver = GuestDriver::boot(s.viommu.unit(), s.mem.clone(), &s.pages).unwrap();
    guest_maps_nic(s, &mut driver);
    driver
}

/// Drop the vIOMMU and check through the iommufd, which outlives it, that the kernel
/// holds none of its objects: no nested HWPT, no parent, no IOAS.
fn assert_dropped_clean(s: Setup) {
    let iommufd = s.viommu.iommufd().clone();
    let (ioas, parent) = (s.viommu.stage2().ioas, s.viommu.stage2().hwpt);
    let Setup { viommu, faults, .. } = s;
    drop(viommu);
    faults.disarm();
    assert_eq!(nested_hwpts(&iommufd), Vec::<u32>::new());
    for id in [parent, ioas] {
        let gone = iommufd.destroy(id).err().and_then(|e| e.errno());
        assert_eq!(gone, Some(Errno::ENOENT), "object {id} left behind");
    }
}
