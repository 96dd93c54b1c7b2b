//! `probe` on simulated hosts: what it reports and the verdict it draws, against what
//! `VIommu::new` does on the same host.

use std::sync::Arc;

use vtd_iommufd::uapi::HwCaps;
use vtd_iommufd::{Errno, Iommufd, VfioDevice};
use vtd_kernel::{IommufdFile, Platform, PlatformDesc, VfioDeviceFile};
use vtd_viommu::config::HostUnsupported;
use vtd_viommu::probe::{Blocker, HostReport, probe};
use vtd_viommu::{GuestMemory, MemoryMap, NewDevice, VIommu, VIommuError};

/// The platform's first device probed through a fresh iommufd.
fn probe_first(desc: PlatformDesc) -> (Platform, Arc<Iommufd<IommufdFile>>, HostReport) {
    let platform = Platform::new(desc).unwrap();
    let iommufd = Arc::new(Iommufd::new(platform.open_iommufd()));
    let dev = VfioDevice::new(platform.open_vfio(0).unwrap());
    let report = probe(&iommufd, &dev).unwrap();
    (platform, iommufd, report)
}

fn viommu_on(platform: &Platform) -> Result<VIommu<IommufdFile, VfioDeviceFile>, VIommuError> {
    let iommufd = Arc::new(Iommufd::new(platform.open_iommufd()));
    let mem = Arc::new(GuestMemory::new(MemoryMap::pc(16 << 20)).unwrap());
    let first = NewDevice {
        name: "nic0".into(),
        guest_sid: 0x10,
        vfio: VfioDevice::new(platform.open_vfio(0).unwrap()),
    };
    VIommu::new(iommufd, mem, first, false)
}

#[test]
fn sapphire_rapids_is_ready_and_asks_to_keep_read_only_memory_out() {
    let (platform, _, report) = probe_first(PlatformDesc::sapphire_rapids());
    let vtd = report.vtd().expect("a VT-d host");
    assert!(vtd.nesting());
    assert!(report.hw_info.capabilities.contains(HwCaps::DIRTY_TRACKING));
    assert_eq!(report.nest_parent, Ok(()));
    assert_eq!(report.dirty_tracking, Ok(()));
    assert_eq!(report.blocker(), None);
    assert!(report.keep_read_only_out());
    assert!(viommu_on(&platform).is_ok(), "the verdict is VIommu::new's");
}

#[test]
fn a_unit_without_nesting_is_blocked_by_the_hardware_and_refuses_the_parent() {
    let (platform, _, report) = probe_first(PlatformDesc::without_nesting());
    assert!(!report.vtd().unwrap().nesting());
    assert_eq!(report.nest_parent, Err(Errno::EOPNOTSUPP));
    assert_eq!(
        report.blocker(),
        Some(Blocker::Host(HostUnsupported::NoNesting))
    );
    // Linux 6.12 flags the erratum on every VT-d unit; it only matters with nesting.
    assert!(report.keep_read_only_out());
    assert!(matches!(
        viommu_on(&platform),
        Err(VIommuError::Host(HostUnsupported::NoNesting))
    ));
}

#[test]
fn the_scratch_objects_are_gone_after_the_probe() {
    let platform = Platform::new(PlatformDesc::sapphire_rapids()).unwrap();
    let iommufd = Arc::new(Iommufd::new(platform.open_iommufd()));
    let dev = VfioDevice::new(platform.open_vfio(0).unwrap());
    let report = probe(&iommufd, &dev).unwrap();
    // Object ids are handed out lowest first, so a fresh IOAS takes the scratch IOAS's
    // id, and the id after it (the scratch HWPTs') is free too.
    let ioas = iommufd.ioas_alloc().unwrap();
    assert_eq!(ioas, report.dev_id + 1, "the scratch IOAS was destroyed");
    assert_eq!(
        iommufd.destroy(ioas + 1).unwrap_err().errno(),
        Some(Errno::ENOENT)
    );
}

#[test]
fn a_device_that_is_already_bound_is_an_error_not_a_report() {
    let platform = Platform::new(PlatformDesc::sapphire_rapids()).unwrap();
    let iommufd = Arc::new(Iommufd::new(platform.open_iommufd()));
    let dev = VfioDevice::new(platform.open_vfio(0).unwrap());
    probe(&iommufd, &dev).unwrap();
    let again = probe(&iommufd, &dev).unwrap_err();
    assert_eq!(again.errno(), Some(Errno::EINVAL));
}

#[test]
fn a_kernel_that_refuses_the_parent_blocks_a_capable_unit() {
    let (_, _, mut report) = probe_first(PlatformDesc::sapphire_rapids());
    report.nest_parent = Err(Errno::EOPNOTSUPP);
    assert_eq!(
        report.blocker(),
        Some(Blocker::NestParentRefused(Errno::EOPNOTSUPP))
    );
}
