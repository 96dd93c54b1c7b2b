//! uAPI conformance: IOMMU_GET_HW_INFO on VT-d (KS §2) and selftest T5 (`get_hw_info`)
//! in its VT-d form: 24 bytes of `struct iommu_hw_info_vtd`, truncation to a short user
//! buffer, zero fill of a longer one.

mod common;
mod uapi_support;

use uapi_support::layout::hw_info::*;
use uapi_support::{Buf, Env, nr, unit_without_ssads};
use vtd_iommufd::Errno;
use vtd_iommufd::uapi::HwCaps;
use vtd_kernel::{DeviceDesc, PlatformDesc};
use vtd_model::UnitConfig;

fn hw_info_cmd(dev_id: u32, data: &Buf, data_len: u32) -> Buf {
    let mut b = Buf::sized(SIZE, SIZE as u32);
    b.set_u32(DEV_ID, dev_id)
        .set_u32(DATA_LEN, data_len)
        .set_u64(DATA_UPTR, data.addr(0));
    b
}

#[test]
fn hw_info_with_flags_is_eopnotsupp() {
    let env = Env::spr();
    let (_dev, id) = env.bind(0);
    let data = Buf::new(24);
    let mut b = hw_info_cmd(id, &data, 24);
    b.set_u32(FLAGS, 1);
    assert_eq!(
        env.raw(nr::IOMMU_GET_HW_INFO, &mut b),
        Err(Errno::EOPNOTSUPP)
    );
}

#[test]
fn hw_info_with_any_reserved_byte_set_is_eopnotsupp() {
    let env = Env::spr();
    let (_dev, id) = env.bind(0);
    let data = Buf::new(24);
    for byte in RESERVED..RESERVED + 3 {
        let mut b = hw_info_cmd(id, &data, 24);
        b.set_u8(byte, 1);
        assert_eq!(
            env.raw(nr::IOMMU_GET_HW_INFO, &mut b),
            Err(Errno::EOPNOTSUPP),
            "byte {byte}"
        );
    }
}

#[test]
fn hw_info_does_not_check_the_max_pasid_input_byte() {
    let env = Env::spr();
    let (_dev, id) = env.bind(0);
    let data = Buf::new(24);
    let mut b = hw_info_cmd(id, &data, 24);
    b.set_u8(OUT_MAX_PASID_LOG2, 0xFF);
    assert_eq!(env.raw(nr::IOMMU_GET_HW_INFO, &mut b), Ok(()));
    assert_eq!(
        b.u8(OUT_MAX_PASID_LOG2),
        0,
        "overwritten with the device's width"
    );
}

#[test]
fn hw_info_without_a_device_is_enoent_for_exact_and_larger_buffers() {
    let env = Env::spr();
    let ioas = env.ioas();
    for len in [24, 32] {
        let data = Buf::new(32);
        assert_eq!(
            env.raw(nr::IOMMU_GET_HW_INFO, &mut hw_info_cmd(0, &data, len)),
            Err(Errno::ENOENT)
        );
        assert_eq!(
            env.raw(nr::IOMMU_GET_HW_INFO, &mut hw_info_cmd(ioas, &data, len)),
            Err(Errno::ENOENT),
            "an IOAS id is not a device"
        );
    }
}

#[test]
fn hw_info_with_no_buffer_reports_the_type_and_the_kernel_length() {
    let env = Env::spr();
    let (_dev, id) = env.bind(0);
    let mut b = Buf::sized(SIZE, SIZE as u32);
    b.set_u32(DEV_ID, id);
    assert_eq!(env.raw(nr::IOMMU_GET_HW_INFO, &mut b), Ok(()));
    assert_eq!(b.u32(OUT_DATA_TYPE), 1, "IOMMU_HW_INFO_TYPE_INTEL_VTD");
    assert_eq!(b.u32(DATA_LEN), 24);
}

#[test]
fn hw_info_of_24_bytes_has_the_erratum_flag_and_the_raw_registers() {
    let env = Env::spr();
    let (_dev, id) = env.bind(0);
    let mut data = Buf::new(24);
    data.poison(0, 24, 0xAB);
    let mut b = hw_info_cmd(id, &data, 24);
    assert_eq!(env.raw(nr::IOMMU_GET_HW_INFO, &mut b), Ok(()));
    let unit = UnitConfig::sapphire_rapids();
    assert_eq!(
        data.u32(0),
        1,
        "IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17 and nothing else"
    );
    assert_eq!(data.u32(4), 0, "__reserved");
    assert_eq!(data.u64(8), unit.cap.into_bits());
    assert_eq!(data.u64(16), unit.ecap.into_bits());
    assert_eq!(b.u32(DATA_LEN), 24);
}

#[test]
fn hw_info_into_a_larger_buffer_zeroes_the_bytes_past_24() {
    let env = Env::spr();
    let (_dev, id) = env.bind(0);
    let mut data = Buf::new(40);
    data.poison(0, 40, 0xAB);
    let mut b = hw_info_cmd(id, &data, 40);
    assert_eq!(env.raw(nr::IOMMU_GET_HW_INFO, &mut b), Ok(()));
    assert_eq!((data.u64(24), data.u64(32)), (0, 0));
    assert_eq!(data.u32(0), 1);
    assert_eq!(b.u32(DATA_LEN), 24, "the kernel's length, not the user's");
}

#[test]
fn hw_info_into_a_4_byte_buffer_writes_only_the_flags() {
    let env = Env::spr();
    let (_dev, id) = env.bind(0);
    let mut data = Buf::new(24);
    data.poison(0, 24, 0xAB);
    let mut b = hw_info_cmd(id, &data, 4);
    assert_eq!(env.raw(nr::IOMMU_GET_HW_INFO, &mut b), Ok(()));
    assert_eq!(data.u32(0), 1);
    assert_eq!(data.u32(4), 0xABAB_ABAB, "nothing past data_len");
    assert_eq!(b.u32(DATA_LEN), 24);
}

#[test]
fn hw_info_with_a_length_and_a_null_pointer_is_efault() {
    let env = Env::spr();
    let (_dev, id) = env.bind(0);
    let mut b = Buf::sized(SIZE, SIZE as u32);
    b.set_u32(DEV_ID, id).set_u32(DATA_LEN, 24);
    assert_eq!(env.raw(nr::IOMMU_GET_HW_INFO, &mut b), Err(Errno::EFAULT));
}

#[test]
fn hw_info_reports_dirty_tracking_where_the_unit_has_ssads() {
    let env = Env::spr();
    let (_dev, id) = env.bind(0);
    let info = env.fd.get_hw_info(id).expect("IOMMU_GET_HW_INFO");
    assert!(info.capabilities.contains(HwCaps::DIRTY_TRACKING));
    let env = Env::new(PlatformDesc {
        units: vec![unit_without_ssads()],
        devices: vec![DeviceDesc::new("nic0", 0, 3, 0)],
        allow_unsafe_interrupts: false,
        iommufd_test: false,
    });
    let (_dev, id) = env.bind(0);
    let info = env.fd.get_hw_info(id).expect("IOMMU_GET_HW_INFO");
    assert!(!info.capabilities.contains(HwCaps::DIRTY_TRACKING));
}

#[test]
fn hw_info_reports_the_pasid_width_of_pasid_capable_devices_only() {
    let env = Env::spr();
    let (_nic, nic_id) = env.bind(0);
    let (_ssd, ssd_id) = env.bind(1);
    assert_eq!(
        env.fd
            .get_hw_info(nic_id)
            .expect("IOMMU_GET_HW_INFO")
            .max_pasid_log2,
        0
    );
    assert_eq!(
        env.fd
            .get_hw_info(ssd_id)
            .expect("IOMMU_GET_HW_INFO")
            .max_pasid_log2,
        20
    );
}

#[test]
fn hw_info_sets_the_erratum_flag_on_units_without_the_erratum_too() {
    let env = Env::new(PlatformDesc::without_nesting());
    let (_dev, id) = env.bind(0);
    let (_, vtd) = env.fd.get_vtd_hw_info(id).expect("IOMMU_GET_HW_INFO");
    assert!(vtd.errata_772415_spr17);
    assert!(!vtd.nesting());
}
