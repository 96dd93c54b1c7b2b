//! Emulated devices behind the vIOMMU: device-model code reads and writes through
//! vm-memory's `IommuMemory`, translated by the guest-facing unit (first stage only, or
//! pass-through), with stale translations until the guest invalidates.

mod common;

use std::sync::Arc;

use common::{Setup, guest_maps, map_4k, setup};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap, IommuMemory};
use vtd_viommu::GuestMemory;
use vtd_viommu::emulated::DeviceIommu;
use vtd_viommu::guest::{GuestDriver, GuestPasid};

/// Where the guest sees the emulated device (00:04.0).
const EMU_SID: u16 = 0x0020;
const EMU_DID: u16 = 4;
const IOVA: u64 = 0x8000_0000;
const GPA: u64 = 0x30_0000;

type Dma = IommuMemory<GuestMemoryMmap, DeviceIommu<Arc<GuestMemory>>>;

fn device_memory(s: &Setup) -> Dma {
    IommuMemory::new(
        s.mem.mmap().clone(),
        s.viommu.device_iommu(EMU_SID, None),
        true,
        (),
    )
}

/// The guest maps `IOVA → GPA` for the emulated device with a first-stage entry.
fn guest_maps_device<'a>(s: &'a Setup, driver: &mut GuestDriver<'a, Arc<GuestMemory>>) -> u64 {
    let _ = s;
    guest_maps(driver, EMU_SID, EMU_DID, IOVA, GPA)
}

#[test]
fn device_model_reads_guest_memory_through_the_guest_stage1() {
    let s = setup();
    let mut driver = GuestDriver::boot(s.viommu.unit(), s.mem.clone(), &s.pages).unwrap();
    guest_maps_device(&s, &mut driver);
    s.mem.write(GPA + 8, &0x1234_5678u32.to_le_bytes()).unwrap();
    let dma = device_memory(&s);
    let v: u32 = dma.read_obj(GuestAddress(IOVA + 8)).unwrap();
    assert_eq!(v, 0x1234_5678);
}

#[test]
fn device_model_write_lands_in_guest_memory_and_sets_the_dirty_flag() {
    let s = setup();
    let mut driver = GuestDriver::boot(s.viommu.unit(), s.mem.clone(), &s.pages).unwrap();
    let root = guest_maps_device(&s, &mut driver);
    let dma = device_memory(&s);
    let _: u8 = dma.read_obj(GuestAddress(IOVA)).unwrap();
    dma.write_obj(0xABu8, GuestAddress(IOVA + 1)).unwrap();
    let mut b = [0u8; 1];
    s.mem.read(GPA + 1, &mut b).unwrap();
    assert_eq!(b[0], 0xAB);
    let (_, leaf) = driver.stage1(root, 4).leaf(IOVA).unwrap().unwrap();
    assert_ne!(
        leaf & (1 << 6),
        0,
        "the write after a read must re-walk and set D"
    );
}

#[test]
fn unmapped_iova_is_refused() {
    let s = setup();
    let mut driver = GuestDriver::boot(s.viommu.unit(), s.mem.clone(), &s.pages).unwrap();
    guest_maps_device(&s, &mut driver);
    let dma = device_memory(&s);
    assert!(dma.read_obj::<u32>(GuestAddress(IOVA + 0x1000)).is_err());
}

#[test]
fn remapped_iova_is_stale_until_the_guest_invalidates() {
    let s = setup();
    let mut driver = GuestDriver::boot(s.viommu.unit(), s.mem.clone(), &s.pages).unwrap();
    let root = guest_maps_device(&s, &mut driver);
    s.mem.write(GPA, &[1]).unwrap();
    s.mem.write(GPA + 0x1000, &[2]).unwrap();
    let dma = device_memory(&s);
    assert_eq!(dma.read_obj::<u8>(GuestAddress(IOVA)).unwrap(), 1);
    map_4k(&driver, root, IOVA, GPA + 0x1000);
    assert_eq!(dma.read_obj::<u8>(GuestAddress(IOVA)).unwrap(), 1);
    driver.invalidate(EMU_DID, 0, Some(IOVA), 0, true).unwrap();
    assert_eq!(dma.read_obj::<u8>(GuestAddress(IOVA)).unwrap(), 2);
}

#[test]
fn pass_through_entry_gives_guest_physical_addresses() {
    let s = setup();
    let mut driver = GuestDriver::boot(s.viommu.unit(), s.mem.clone(), &s.pages).unwrap();
    driver.add_device(EMU_SID).unwrap();
    driver
        .set_pasid(EMU_SID, 0, GuestPasid::PassThrough { did: EMU_DID })
        .unwrap();
    s.mem.write(GPA, &[9]).unwrap();
    let dma = device_memory(&s);
    assert_eq!(dma.read_obj::<u8>(GuestAddress(GPA)).unwrap(), 9);
}

#[test]
fn device_model_reads_the_vbios_but_its_writes_to_it_are_refused() {
    let s = setup();
    s.mem.write(0xC_0000, &[0x55; 8]).unwrap();
    let mut driver = GuestDriver::boot(s.viommu.unit(), s.mem.clone(), &s.pages).unwrap();
    let root = guest_maps_device(&s, &mut driver);
    map_4k(&driver, root, IOVA + 0x1000, 0xC_0000);
    driver.invalidate(EMU_DID, 0, None, 0, false).unwrap();
    let dma = device_memory(&s);
    assert_eq!(
        dma.read_obj::<u8>(GuestAddress(IOVA + 0x1000)).unwrap(),
        0x55
    );
    assert!(dma.write_obj(0xAAu8, GuestAddress(IOVA + 0x1000)).is_err());
    // A write spanning RAM and the ROM is refused too.
    assert!(
        dma.write_slice(&[0xAA; 8], GuestAddress(IOVA + 0xFFC))
            .is_err()
    );
    let mut rom = [0u8; 8];
    s.mem.read(0xC_0000, &mut rom).unwrap();
    assert_eq!(rom, [0x55; 8]);
}
