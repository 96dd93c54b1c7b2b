//! The vIOMMU end to end on the simulated kernel: a scripted guest programs the
//! guest-facing VT-d; the assigned device's DMA goes through the host hardware model with
//! the guest's stage 1 nested over the VMM's stage 2.

mod common;

use common::{DID, GPA, GUEST_SID, IOVA, dma_read, guest_maps_nic, map_4k, set_stage1, setup};
use vtd_kernel::DmaError;
use vtd_spec::fault::FaultReason;
use vtd_viommu::guest::{GuestDriver, GuestPasid};
use vtd_viommu::shadow::{Attachment, BlockReason, Change, Target};
use vtd_viommu::{Event, SkipReason};

#[test]
fn stage2_keeps_the_vbios_out_and_says_why() {
    let s = setup();
    assert!(s.viommu.host().errata_772415_spr17);
    let skipped: Vec<_> = s
        .viommu
        .stage2()
        .plan
        .skipped()
        .map(|(r, why)| (r.name.clone(), why))
        .collect();
    assert_eq!(
        skipped,
        vec![("vbios".to_string(), SkipReason::ReadOnlyUnderErratum)]
    );
    assert!(matches!(
        s.viommu.take_events().first(),
        Some(Event::Stage2Built { .. })
    ));
}

#[test]
fn before_the_guest_enables_remapping_the_device_sees_guest_physical_addresses() {
    let s = setup();
    s.mem.write(GPA, b"gpa view").unwrap();
    assert_eq!(s.viommu.attachment("nic0"), Some(Attachment::Parent));
    assert_eq!(dma_read(&s, GPA, 8).unwrap(), b"gpa view");
}

#[test]
fn guest_first_stage_entry_becomes_a_nested_hwpt() {
    let s = setup();
    let mut driver = GuestDriver::boot(s.viommu.unit(), s.mem.clone(), &s.pages).unwrap();
    guest_maps_nic(&s, &mut driver);
    assert!(matches!(
        s.viommu.attachment("nic0"),
        Some(Attachment::Nested { did: DID, .. })
    ));
    s.mem.write(GPA + 0x10, b"through both stages").unwrap();
    assert_eq!(
        dma_read(&s, IOVA + 0x10, 19).unwrap(),
        b"through both stages"
    );
}

#[test]
fn guest_remap_is_stale_until_its_invalidation_is_forwarded() {
    let s = setup();
    let mut driver = GuestDriver::boot(s.viommu.unit(), s.mem.clone(), &s.pages).unwrap();
    let root = guest_maps_nic(&s, &mut driver);
    s.mem.write(GPA, &[1; 8]).unwrap();
    s.mem.write(GPA + 0x1000, &[2; 8]).unwrap();
    assert_eq!(dma_read(&s, IOVA, 8).unwrap(), vec![1; 8]);
    map_4k(&driver, root, IOVA, GPA + 0x1000);
    assert_eq!(
        dma_read(&s, IOVA, 8).unwrap(),
        vec![1; 8],
        "host IOTLB still holds the old translation"
    );
    driver.invalidate(DID, 0, Some(IOVA), 0, true).unwrap();
    assert_eq!(dma_read(&s, IOVA, 8).unwrap(), vec![2; 8]);
    let forwarded = s
        .viommu
        .take_events()
        .into_iter()
        .any(|e| matches!(e, Event::Forwarded { result: Ok(1), .. }));
    assert!(forwarded);
}

#[test]
fn dma_to_the_vbios_faults_in_stage2_and_reaches_the_guest_fault_log() {
    let s = setup();
    let mut driver = GuestDriver::boot(s.viommu.unit(), s.mem.clone(), &s.pages).unwrap();
    let root = guest_maps_nic(&s, &mut driver);
    map_4k(&driver, root, IOVA + 0x1000, 0xC_0000);
    let fault = match dma_read(&s, IOVA + 0x1000, 4) {
        Err(DmaError::Fault(f)) => *f,
        other => panic!("expected a fault, got {other:?}"),
    };
    assert_eq!(fault.reason, FaultReason::SssNotPresent);
    assert_eq!(fault.gpa, Some(0xC_0000));
    let recorded = s.viommu.report_host_fault("nic0", &fault).unwrap();
    assert!(matches!(
        recorded.recording,
        vtd_model::fault::FaultRecording::Recorded { .. }
    ));
    assert_eq!(recorded.sid, GUEST_SID);
}

#[test]
fn guest_clearing_the_entry_blocks_the_device() {
    let s = setup();
    let mut driver = GuestDriver::boot(s.viommu.unit(), s.mem.clone(), &s.pages).unwrap();
    guest_maps_nic(&s, &mut driver);
    driver.set_pasid(GUEST_SID, 0, GuestPasid::None).unwrap();
    assert_eq!(s.viommu.attachment("nic0"), Some(Attachment::Blocked));
    assert!(matches!(dma_read(&s, IOVA, 4), Err(DmaError::Fault(_))));
    let blocked = s.viommu.take_events().into_iter().any(|e| {
        matches!(
            e,
            Event::Shadowed {
                target: Target::Blocked(BlockReason::NoEntry(FaultReason::SptNotPresent)),
                ..
            }
        )
    });
    assert!(blocked);
}

#[test]
fn guest_pass_through_entry_goes_back_to_the_parent() {
    let s = setup();
    let mut driver = GuestDriver::boot(s.viommu.unit(), s.mem.clone(), &s.pages).unwrap();
    guest_maps_nic(&s, &mut driver);
    driver
        .set_pasid(GUEST_SID, 0, GuestPasid::PassThrough { did: DID })
        .unwrap();
    assert_eq!(s.viommu.attachment("nic0"), Some(Attachment::Parent));
    s.mem.write(GPA, b"pt").unwrap();
    assert_eq!(dma_read(&s, GPA, 2).unwrap(), b"pt");
}

#[test]
fn a_refused_attach_to_the_parent_blocks_rather_than_keeping_the_abandoned_stage1() {
    let s = setup();
    let mut driver = GuestDriver::boot(s.viommu.unit(), s.mem.clone(), &s.pages).unwrap();
    guest_maps_nic(&s, &mut driver);
    s.faults.arm(
        vtd_iommufd::ioctl::VFIO_DEVICE_ATTACH_IOMMUFD_PT,
        vtd_iommufd::Errno::ENOMEM,
    );
    driver
        .set_pasid(GUEST_SID, 0, GuestPasid::PassThrough { did: DID })
        .unwrap();
    assert_eq!(s.viommu.attachment("nic0"), Some(Attachment::Blocked));
    assert!(matches!(dma_read(&s, IOVA, 4), Err(DmaError::Fault(_))));
    assert!(s.viommu.take_events().iter().any(|e| matches!(
        e,
        Event::ShadowFailed {
            target: Target::Parent,
            ..
        }
    )));
    // The guest's next invalidation tries again.
    driver
        .set_pasid(GUEST_SID, 0, GuestPasid::PassThrough { did: DID })
        .unwrap();
    assert_eq!(s.viommu.attachment("nic0"), Some(Attachment::Parent));
}

#[test]
fn a_refused_detach_is_retried_and_the_record_stays_what_the_host_has() {
    let s = setup();
    let mut driver = GuestDriver::boot(s.viommu.unit(), s.mem.clone(), &s.pages).unwrap();
    guest_maps_nic(&s, &mut driver);
    s.faults.arm(
        vtd_iommufd::ioctl::VFIO_DEVICE_DETACH_IOMMUFD_PT,
        vtd_iommufd::Errno::EINVAL,
    );
    driver.set_pasid(GUEST_SID, 0, GuestPasid::None).unwrap();
    // The fallback detach went through: blocked, and the nested HWPT is gone.
    assert_eq!(s.viommu.attachment("nic0"), Some(Attachment::Blocked));
    assert!(matches!(dma_read(&s, IOVA, 4), Err(DmaError::Fault(_))));
    let nested = (1..=16)
        .filter(|&id| s.viommu.iommufd().hwpt_invalidate(id, &[]).is_ok())
        .count();
    assert_eq!(nested, 0);
}

#[test]
fn a_device_assigned_while_the_guest_changes_its_entry_ends_up_on_the_new_entry() {
    use std::sync::mpsc;

    let s = common::setup_with(vtd_viommu::MemoryMap::pc(16 << 20), false);
    let mut driver = GuestDriver::boot(s.viommu.unit(), s.mem.clone(), &s.pages).unwrap();
    common::guest_points_at_new_stage1(&mut driver, common::GUEST_SSD_SID, DID);
    // The guest switches the SSD to pass-through (and invalidates) while the VMM is
    // between reading the old entry and adding the device to its list.
    let (go, wait) = mpsc::channel();
    s.faults
        .before(vtd_iommufd::ioctl::IOMMU_HWPT_ALLOC, move || {
            go.send(()).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(50));
        });
    std::thread::scope(|scope| {
        let guest = &mut driver;
        scope.spawn(move || {
            wait.recv().unwrap();
            guest
                .set_pasid(
                    common::GUEST_SSD_SID,
                    0,
                    GuestPasid::PassThrough { did: DID },
                )
                .unwrap();
        });
        s.viommu
            .add_device(common::ssd(&s.platform, &s.faults))
            .unwrap();
    });
    assert_eq!(s.viommu.attachment("ssd0"), Some(Attachment::Parent));
}

#[test]
fn a_device_whose_guest_stage1_the_host_refuses_is_assigned_blocked() {
    let s = setup();
    let mut driver = GuestDriver::boot(s.viommu.unit(), s.mem.clone(), &s.pages).unwrap();
    common::guest_points_at_new_stage1(&mut driver, common::GUEST_SSD_SID, DID);
    s.faults.arm(
        vtd_iommufd::ioctl::IOMMU_HWPT_ALLOC,
        vtd_iommufd::Errno::ENOMEM,
    );
    s.viommu
        .add_device(common::ssd(&s.platform, &s.faults))
        .unwrap();
    assert_eq!(s.viommu.attachment("ssd0"), Some(Attachment::Blocked));
    assert!(s.viommu.take_events().iter().any(|e| matches!(
        e,
        Event::ShadowFailed { device, errno: Some(vtd_iommufd::Errno::ENOMEM), .. } if device == "ssd0"
    )));
}

#[test]
fn a_guest_that_invalidates_without_end_cannot_grow_the_event_log() {
    let s = setup();
    let mut driver = GuestDriver::boot(s.viommu.unit(), s.mem.clone(), &s.pages).unwrap();
    guest_maps_nic(&s, &mut driver);
    let extra = 100;
    for _ in 0..vtd_viommu::viommu::MAX_EVENTS + extra {
        driver.invalidate(DID, 0, Some(IOVA), 0, true).unwrap();
    }
    let events = s.viommu.take_events();
    assert_eq!(events.len(), vtd_viommu::viommu::MAX_EVENTS);
    assert!(s.viommu.dropped_events() >= extra as u64);
    assert!(matches!(events.last(), Some(Event::Forwarded { .. })));
}

#[test]
fn dropping_the_viommu_releases_its_host_objects() {
    let s = setup();
    {
        let mut driver = GuestDriver::boot(s.viommu.unit(), s.mem.clone(), &s.pages).unwrap();
        guest_maps_nic(&s, &mut driver);
    }
    let iommufd = s.viommu.iommufd().clone();
    let (ioas, parent) = (s.viommu.stage2().ioas, s.viommu.stage2().hwpt);
    let unit = s.viommu.unit().clone();
    let common::Setup {
        platform, viommu, ..
    } = s;
    drop(viommu);
    for id in [ioas, parent] {
        let gone = iommufd.destroy(id).err().and_then(|e| e.errno());
        assert_eq!(gone, Some(vtd_iommufd::Errno::ENOENT));
    }
    let nested = (1..=16)
        .filter(|&id| iommufd.hwpt_invalidate(id, &[]).is_ok())
        .count();
    assert_eq!(nested, 0);
    let mut buf = [0u8; 4];
    assert!(platform.dma_read(0, None, IOVA, &mut buf).is_err());
    // The guest keeps driving its unit: nothing is left to shadow, nothing breaks.
    unit.mmio_write(vtd_spec::regs::offset::GCMD, 4, 0).unwrap();
}

#[test]
fn a_refused_flush_is_retried_whole_and_then_blocks_rather_than_serving_stale_dma() {
    let s = setup();
    let mut driver = GuestDriver::boot(s.viommu.unit(), s.mem.clone(), &s.pages).unwrap();
    let root = guest_maps_nic(&s, &mut driver);
    s.mem.write(GPA, &[1; 8]).unwrap();
    s.mem.write(GPA + 0x1000, &[2; 8]).unwrap();
    s.mem.write(GPA + 0x2000, &[3; 8]).unwrap();
    let remap = |driver: &GuestDriver<'_, _>, gpa| map_4k(driver, root, IOVA, gpa);
    let invalidate = vtd_iommufd::ioctl::IOMMU_HWPT_INVALIDATE;
    assert_eq!(dma_read(&s, IOVA, 8).unwrap(), vec![1; 8]);
    // The range is refused; the whole flush that follows goes through.
    remap(&driver, GPA + 0x1000);
    s.faults.arm(invalidate, vtd_iommufd::Errno::EINVAL);
    driver.invalidate(DID, 0, Some(IOVA), 0, true).unwrap();
    assert_eq!(dma_read(&s, IOVA, 8).unwrap(), vec![2; 8]);
    // Both are refused: the device is blocked until the guest's next PASID-cache
    // invalidation gives it a fresh HWPT.
    remap(&driver, GPA + 0x2000);
    s.faults
        .arm_times(invalidate, vtd_iommufd::Errno::EINVAL, 2);
    driver.invalidate(DID, 0, Some(IOVA), 0, true).unwrap();
    assert_eq!(s.viommu.attachment("nic0"), Some(Attachment::Blocked));
    assert!(matches!(dma_read(&s, IOVA, 8), Err(DmaError::Fault(_))));
    set_stage1(&mut driver, GUEST_SID, root, DID);
    assert_eq!(dma_read(&s, IOVA, 8).unwrap(), vec![3; 8]);
}

#[test]
fn moving_the_entry_to_another_domain_leaves_nothing_the_old_domain_cached() {
    let s = setup();
    let mut driver = GuestDriver::boot(s.viommu.unit(), s.mem.clone(), &s.pages).unwrap();
    let root = guest_maps_nic(&s, &mut driver);
    s.mem.write(GPA, &[1; 8]).unwrap();
    s.mem.write(GPA + 0x1000, &[2; 8]).unwrap();
    assert_eq!(dma_read(&s, IOVA, 8).unwrap(), vec![1; 8]);
    // The guest remaps under the old domain without flushing it yet, moves the entry to
    // domain DID + 1 (same stage 1), then flushes the old domain, as hardware allows.
    map_4k(&driver, root, IOVA, GPA + 0x1000);
    set_stage1(&mut driver, GUEST_SID, root, DID + 1);
    driver.invalidate(DID, 0, None, 0, false).unwrap();
    assert!(matches!(
        s.viommu.attachment("nic0"),
        Some(Attachment::Nested { did, .. }) if did == DID + 1
    ));
    assert_eq!(dma_read(&s, IOVA, 8).unwrap(), vec![2; 8]);
}

#[test]
fn a_new_device_refused_the_parent_is_an_error_and_is_not_assigned() {
    let s = setup();
    s.faults.arm(
        vtd_iommufd::ioctl::VFIO_DEVICE_ATTACH_IOMMUFD_PT,
        vtd_iommufd::Errno::ENOMEM,
    );
    let _ = s.viommu.take_events();
    assert!(
        s.viommu
            .add_device(common::ssd(&s.platform, &s.faults))
            .is_err()
    );
    assert_eq!(s.viommu.attachment("ssd0"), None);
    let events = s.viommu.take_events();
    assert!(
        !events.iter().any(|e| matches!(
            e,
            Event::Shadowed { device, .. } | Event::ShadowFailed { device, .. } if device == "ssd0"
        )),
        "{events:?}"
    );
}

#[test]
fn a_new_device_is_logged_as_shadowed_even_when_its_attachment_does_not_change() {
    let s = setup();
    // Remapping on, no context entry for the SSD: blocked, which a new device already is.
    let _driver = GuestDriver::boot(s.viommu.unit(), s.mem.clone(), &s.pages).unwrap();
    let _ = s.viommu.take_events();
    s.viommu
        .add_device(common::ssd(&s.platform, &s.faults))
        .unwrap();
    assert_eq!(s.viommu.attachment("ssd0"), Some(Attachment::Blocked));
    let events = s.viommu.take_events();
    assert!(
        events.iter().any(|e| matches!(
            e,
            Event::Shadowed { device, target: Target::Blocked(_), change: Change::None }
                if device == "ssd0"
        )),
        "{events:?}"
    );
}

#[test]
fn a_reshadow_that_changes_nothing_logs_no_shadowed_event() {
    let s = setup();
    let mut driver = GuestDriver::boot(s.viommu.unit(), s.mem.clone(), &s.pages).unwrap();
    driver.add_device(GUEST_SID).unwrap();
    let pass_through = GuestPasid::PassThrough { did: DID };
    driver.set_pasid(GUEST_SID, 0, pass_through).unwrap();
    assert_eq!(s.viommu.attachment("nic0"), Some(Attachment::Parent));
    let _ = s.viommu.take_events();
    driver.set_pasid(GUEST_SID, 0, pass_through).unwrap();
    let events = s.viommu.take_events();
    assert!(
        !events.iter().any(|e| matches!(e, Event::Shadowed { .. })),
        "{events:?}"
    );
}
