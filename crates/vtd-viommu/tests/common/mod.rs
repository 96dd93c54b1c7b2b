//! Shared setup: a Sapphire Rapids platform, a VMM with one assigned NIC behind the
//! vIOMMU, 16 MiB of PC-like guest memory and a pool of guest pages for IOMMU tables.
#![allow(dead_code)]

use std::sync::Arc;

use vtd_iommufd::Iommufd;
use vtd_kernel::{DmaError, IommufdFile, Platform, PlatformDesc, VfioDeviceFile};
use vtd_model::build::Leaf;
use vtd_spec::addr::PageSize;
use vtd_viommu::guest::{FirstStage, GuestDriver, GuestPages, GuestPasid};
use vtd_viommu::{GuestMemory, MemoryMap, NewDevice, VIommu};

/// Where the guest sees the assigned NIC (00:02.0).
pub const GUEST_SID: u16 = 0x0010;
pub const DID: u16 = 3;
pub const IOVA: u64 = 0x4000_0000;
pub const GPA: u64 = 0x20_0000;
pub const TABLE_POOL: u64 = 0xE0_0000;

pub struct Setup {
    pub platform: Platform,
    pub mem: Arc<GuestMemory>,
    pub viommu: VIommu<IommufdFile, VfioDeviceFile>,
    pub pages: GuestPages,
}

pub fn setup() -> Setup {
    setup_with(MemoryMap::pc(16 << 20), false)
}

/// Where the guest sees the second assigned device, the platform's `ssd0` (00:04.0).
pub const GUEST_SSD_SID: u16 = 0x0020;

/// [`setup`] over the memory map `map` (which must hold [`TABLE_POOL`] in RAM), with the
/// platform's `ssd0` assigned too when `with_ssd`.
pub fn setup_with(map: MemoryMap, with_ssd: bool) -> Setup {
    let platform = Platform::new(PlatformDesc::sapphire_rapids()).unwrap();
    let iommufd = Arc::new(Iommufd::new(platform.open_iommufd()));
    let mem = Arc::new(GuestMemory::new(map).unwrap());
    let nic = NewDevice {
        name: "nic0".into(),
        guest_sid: GUEST_SID,
        vfio: vtd_iommufd::VfioDevice::new(platform.open_vfio(0).unwrap()),
    };
    let viommu = VIommu::new(iommufd, mem.clone(), nic, false).unwrap();
    if with_ssd {
        let ssd = NewDevice {
            name: "ssd0".into(),
            guest_sid: GUEST_SSD_SID,
            vfio: vtd_iommufd::VfioDevice::new(platform.open_vfio(1).unwrap()),
        };
        viommu.add_device(ssd).unwrap();
    }
    let pages = GuestPages::new(mem.clone(), TABLE_POOL, 1 << 20);
    Setup {
        platform,
        mem,
        viommu,
        pages,
    }
}

pub fn dma_read(s: &Setup, iova: u64, len: usize) -> Result<Vec<u8>, DmaError> {
    let mut buf = vec![0; len];
    s.platform.dma_read(0, None, iova, &mut buf).map(|()| buf)
}

/// The guest boots its IOMMU driver, gives the NIC a stage 1 mapping IOVA → GPA, and
/// points the NIC's PASID entry at it.
pub fn guest_maps_nic<'a>(s: &'a Setup, driver: &mut GuestDriver<'a, Arc<GuestMemory>>) -> u64 {
    driver.add_device(GUEST_SID).unwrap();
    let root = driver.new_stage1(4).root();
    driver
        .map(root, 4, IOVA, GPA, PageSize::Size4K, Leaf::read_write())
        .unwrap();
    let fs = FirstStage {
        root,
        levels: 4,
        sre: false,
        wpe: false,
        eafe: false,
    };
    driver
        .set_pasid(GUEST_SID, 0, GuestPasid::FirstStage { fs, did: DID })
        .unwrap();
    let _ = s;
    root
}
