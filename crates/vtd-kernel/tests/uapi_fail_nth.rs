//! uAPI conformance, robustness (selftest T10, `iommufd_fail_nth`): a nested VT-d setup
//! and teardown with the n-th kernel allocation failing, for every n until the sequence
//! runs through. Every failure must come back as an errno and leak nothing: the next
//! object id is the lowest free one, and once every file is closed, no kernel page and no
//! pin is left beyond what a clean run leaves.
//!
//! `Platform::fail_nth` is the simulation's analogue of writing to
//! `/proc/self/task/<tid>/fail-nth`; its allocation points are listed on
//! `HostMem::fail_nth`.

mod common;
mod uapi_support;

use std::collections::BTreeSet;

use common::GuestRam;
use uapi_support::err;
use vtd_iommufd::uapi::{HwptAllocFlags, MapFlags};
use vtd_iommufd::{Errno, IoctlFd, Iommufd, VfioDevice, VtdS1, VtdS1Invalidate};
use vtd_kernel::{DmaError, IommufdFile, Platform, PlatformDesc, VfioDeviceFile};
use vtd_model::request::Access;

const RW: MapFlags = MapFlags::READABLE.union(MapFlags::WRITEABLE);
const RAM: usize = 4 << 20;

/// The files of one run, closed by dropping them.
#[derive(Default)]
struct Files {
    fd: Option<Iommufd<IommufdFile>>,
    devs: Vec<VfioDevice<VfioDeviceFile>>,
    fault_fds: Vec<i32>,
}

/// Object ids alive in the run's iommufd.
type Live = BTreeSet<u32>;

fn step<T>(r: vtd_iommufd::Result<T>) -> Result<T, Errno> {
    r.map_err(err)
}

/// The nested setup a VMM makes (KS §9.2), with replace between IOAS, parent and nested
/// HWPTs (T10 `basic_fail_nth.device`), a fault object, a copy and a second device.
fn sequence(
    platform: &Platform,
    ram: &GuestRam,
    live: &mut Live,
    files: &mut Files,
) -> Result<(), Errno> {
    let fd = files.fd.insert(Iommufd::new(platform.open_iommufd()));
    let nic = VfioDevice::new(platform.open_vfio(0)?);
    let nic_id = step(nic.bind_iommufd(fd.fd().fd_number()))?;
    live.insert(nic_id);
    files.devs.push(nic);
    step(fd.get_vtd_hw_info(nic_id).map(|_| ()))?;
    let ioas = step(fd.ioas_alloc())?;
    live.insert(ioas);
    // SAFETY: `ram` outlives every file of the run (the caller drops them first).
    step(unsafe { fd.ioas_map(ioas, ram.ptr(0), RAM as u64, Some(0), RW) })?;
    let parent = step(fd.hwpt_alloc_paging(nic_id, ioas, HwptAllocFlags::NEST_PARENT))?;
    live.insert(parent);
    let nic = &files.devs[0];
    step(nic.attach_pt(parent))?;
    let nested = step(fd.hwpt_alloc_nested(nic_id, parent, &VtdS1::new(0x10_0000), None))?;
    live.insert(nested);
    step(nic.attach_pt(nested))?;
    step(fd.hwpt_invalidate(nested, &[VtdS1Invalidate::all()]))?;
    let auto = step(nic.attach_pt(ioas))?;
    live.insert(auto);
    step(nic.attach_pt(parent))?;
    live.remove(&auto);
    // SAFETY: as above.
    let iova = step(unsafe { fd.ioas_map(ioas, ram.ptr(0x1000), 0x2000, None, RW) })?;
    step(fd.ioas_unmap(ioas, iova, 0x2000))?;
    // A second device on a plain HWPT of the same IOAS.
    let ssd = VfioDevice::new(platform.open_vfio(1)?);
    let ssd_id = step(ssd.bind_iommufd(fd.fd().fd_number()))?;
    live.insert(ssd_id);
    files.devs.push(ssd);
    let plain = step(fd.hwpt_alloc_paging(ssd_id, ioas, HwptAllocFlags::empty()))?;
    live.insert(plain);
    step(files.devs[1].attach_pt(plain))?;
    // COPY into a second IOAS attached through an auto HWPT.
    let ioas2 = step(fd.ioas_alloc())?;
    live.insert(ioas2);
    step(fd.ioas_copy(ioas2, ioas, 0, 0x4000, Some(0x1000), RW))?;
    let auto2 = step(files.devs[1].attach_pt(ioas2))?;
    live.insert(auto2);
    step(files.devs[1].detach_pt())?;
    live.remove(&auto2);
    // A fault object and a nested HWPT that uses it.
    let fault = {
        let mut b = uapi_support::Buf::sized(16, 16);
        uapi_support::raw(fd.fd(), vtd_iommufd::ioctl::IOMMU_FAULT_QUEUE_ALLOC, &mut b)?;
        files.fault_fds.push(b.u32(12) as i32);
        b.u32(8)
    };
    live.insert(fault);
    let iopf = step(fd.hwpt_alloc_nested(nic_id, parent, &VtdS1::new(0x10_0000), Some(fault)))?;
    live.insert(iopf);
    // Teardown in dependency order.
    for id in [iopf, nested, plain] {
        if id == plain {
            step(files.devs[1].detach_pt())?;
        }
        step(fd.destroy(id))?;
        live.remove(&id);
    }
    step(files.devs[0].detach_pt())?;
    for id in [parent, ioas2] {
        step(fd.destroy(id))?;
        live.remove(&id);
    }
    Ok(())
}

/// Close every file of a run: fault queues, devices, then the iommufd.
fn close(platform: &Platform, files: Files) {
    for fd in &files.fault_fds {
        platform.close_fd(*fd).expect("close the fault queue");
    }
    drop(files.devs);
    drop(files.fd);
}

/// Kernel pages after one clean run and its teardown on a fresh platform.
fn reference_pages(ram: &GuestRam) -> usize {
    let platform = Platform::new(PlatformDesc::sapphire_rapids()).expect("platform builds");
    let mut files = Files::default();
    sequence(&platform, ram, &mut Live::new(), &mut files).expect("clean run");
    close(&platform, files);
    platform.host_mem().kernel_pages()
}

#[test]
fn every_allocation_failure_of_a_nested_setup_returns_an_errno_and_leaks_nothing() {
    let ram = GuestRam::new(RAM);
    let reference = reference_pages(&ram);
    let mut n = 1;
    loop {
        assert!(n < 1000, "the sequence never ran through");
        let platform = Platform::new(PlatformDesc::sapphire_rapids()).expect("platform builds");
        let mut files = Files::default();
        let mut live = Live::new();
        platform.fail_nth(n);
        let result = sequence(&platform, &ram, &mut live, &mut files);
        let fired = platform.fail_nth_fired();
        platform.fail_nth(0);
        if !fired {
            assert_eq!(
                result,
                Ok(()),
                "fail_nth({n}) never fired, yet the run failed"
            );
            close(&platform, files);
            break;
        }
        let errno = result.expect_err(&format!("fail_nth({n}) fired but the run succeeded"));
        assert!(
            [Errno::ENOMEM, Errno::ENODEV].contains(&errno),
            "fail_nth({n}): {errno:?}"
        );
        if let Some(fd) = &files.fd {
            let next = (1..).find(|id| !live.contains(id)).expect("a free id");
            let probe = fd.ioas_alloc().expect("an IOAS after the failure");
            assert_eq!(probe, next, "fail_nth({n}): ids in use {live:?}");
            fd.destroy(probe).expect("IOMMU_DESTROY");
        }
        close(&platform, files);
        // A clean run on the same platform must end where a clean run on a fresh one does.
        let mut again = Files::default();
        sequence(&platform, &ram, &mut Live::new(), &mut again)
            .unwrap_or_else(|e| panic!("fail_nth({n}): the platform is broken after it: {e:?}"));
        close(&platform, again);
        assert_eq!(
            platform.host_mem().kernel_pages(),
            reference,
            "fail_nth({n}) leaked kernel pages"
        );
        assert!(
            !platform.host_mem().is_pinned(ram.hva(0), 1),
            "fail_nth({n}) left user memory pinned"
        );
        n += 1;
    }
    assert!(
        n > 20,
        "only {n} allocation points: the injection is not wired up"
    );
}

#[test]
fn fail_nth_0_disarms_and_an_unfired_injection_reports_so() {
    let platform = Platform::new(PlatformDesc::sapphire_rapids()).expect("platform builds");
    let fd = Iommufd::new(platform.open_iommufd());
    platform.fail_nth(1);
    assert_eq!(step(fd.ioas_alloc()), Err(Errno::ENOMEM));
    assert!(platform.fail_nth_fired());
    assert_eq!(
        step(fd.ioas_alloc()),
        Ok(1),
        "fires once, and the id was not used"
    );
    platform.fail_nth(2);
    platform.fail_nth(0);
    assert_eq!(step(fd.ioas_alloc()), Ok(2));
    assert!(!platform.fail_nth_fired());
}

#[test]
fn a_failed_nest_parent_alloc_leaves_the_ioas_as_it_was() {
    let env = uapi_support::Env::spr();
    let (_nic, nic_id) = env.bind(0);
    let ioas = env.ioas();
    env.map(ioas, 0, 4 << 20, Some(0), RW)
        .expect("IOMMU_IOAS_MAP");
    env.map(ioas, 0x1000, 0x1000, Some(0x100_0000), RW)
        .expect("IOMMU_IOAS_MAP");
    let before = env
        .fd
        .ioas_iova_ranges(ioas)
        .expect("IOMMU_IOAS_IOVA_RANGES");
    let pages = env.kernel_pages();
    let mut n = 1;
    loop {
        env.platform.fail_nth(n);
        let r = env.paging(nic_id, ioas, HwptAllocFlags::NEST_PARENT);
        let fired = env.platform.fail_nth_fired();
        env.platform.fail_nth(0);
        if !fired {
            assert!(r.is_ok(), "fail_nth({n}) did not fire, yet: {r:?}");
            break;
        }
        assert_eq!(r, Err(Errno::ENOMEM), "fail_nth({n})");
        assert_eq!(
            env.fd
                .ioas_iova_ranges(ioas)
                .expect("IOMMU_IOAS_IOVA_RANGES"),
            before,
            "fail_nth({n})"
        );
        assert_eq!(env.kernel_pages(), pages, "fail_nth({n})");
        assert!(!env.platform.host_mem().is_pinned(env.ram.hva(0), 1));
        assert_eq!(env.next_id(), 3, "fail_nth({n})");
        n += 1;
    }
    assert!(
        n >= 5,
        "object, domain, root table, IOAS slot, page tables: {n}"
    );
}

#[test]
fn a_map_that_fails_part_way_leaves_nothing_mapped_in_any_domain() {
    let env = uapi_support::Env::spr();
    let (nic, _) = env.bind(0);
    let ioas = env.ioas();
    nic.attach_pt(ioas).expect("VFIO_DEVICE_ATTACH_IOMMUFD_PT");
    // Two 4 KiB pages on either side of a 2 MiB boundary, far from anything mapped: the
    // second page needs page tables of its own.
    let iova = (1 << 40) - 0x1000;
    let mut n = 1;
    loop {
        env.platform.fail_nth(n);
        let r = env.map(ioas, 0x1000, 0x2000, Some(iova), RW);
        let fired = env.platform.fail_nth_fired();
        env.platform.fail_nth(0);
        if !fired {
            assert_eq!(r, Ok(iova));
            break;
        }
        assert_eq!(r, Err(Errno::ENOMEM), "fail_nth({n})");
        // No translation, not merely unbacked memory behind a stale one.
        for at in [iova, iova + 0x1000] {
            let t = env.platform.translate(0, None, at, 4, Access::Read);
            assert!(
                matches!(t, Err(DmaError::Fault(_))),
                "fail_nth({n}): {at:#x} left mapped: {t:?}"
            );
        }
        assert_eq!(env.unmap(ioas, iova, 0x2000), Err(Errno::ENOENT));
        assert!(!env.platform.host_mem().is_pinned(env.ram.hva(0x1000), 1));
        n += 1;
    }
    assert!(n > 3, "pages object, area and page tables: {n}");
    env.ram.fill(0x2000, 0x6B, 4);
    assert_eq!(
        env.dma_read(0, iova + 0x1000, 4).expect("DMA read"),
        [0x6B; 4]
    );
}
