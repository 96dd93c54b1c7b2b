//! An Intel VT-d unit as QEMU 10.0 emulates it (`intel-iommu,intremap=on,
//! x-scalable-mode=on`: second stage only, no nesting) with QEMU's `edu` device bound to
//! vfio-pci.

use std::sync::Arc;
use std::time::Duration;

use vtd_iommufd::uapi::{
    HwptAllocFlags, IOMMU_HW_INFO_TYPE_INTEL_VTD, IOMMU_HWPT_DATA_VTD_S1, MapFlags,
    VTD_S1_DATA_LEN, iommu_hwpt_alloc, size_of,
};
use vtd_iommufd::vfio::{VFIO_PCI_BAR0_REGION_INDEX, VFIO_PCI_CONFIG_REGION_INDEX};
use vtd_iommufd::{Errno, Iommufd, VfioDevice, VfioRegionInfo, VtdS1};

use vtd_viommu::config::HostUnsupported;
use vtd_viommu::{
    GuestMemory, MemoryMap, NewDevice, Placement, Stage2, Stage2Policy, VIommu, VIommuError,
};

use crate::target::{Fd, Target};
use crate::{Buffer, Case, Failure, Log, Outcome};

/// Every case of the suite, in run order.
pub(crate) static CASES: &[Case] = &[
    Case {
        name: "vfio.bind_then_device_info",
        run: vfio_bind_then_device_info,
    },
    Case {
        name: "hw_info.qemu_vtd_fields_and_erratum",
        run: hw_info_qemu_vtd_fields,
    },
    Case {
        name: "hwpt.nest_parent_is_eopnotsupp",
        run: hwpt_nest_parent_is_eopnotsupp,
    },
    Case {
        name: "attach.paging_hwpt_and_iova_ranges",
        run: attach_paging_hwpt,
    },
    Case {
        name: "attach.ioas_gets_an_automatic_hwpt",
        run: attach_ioas_auto_hwpt,
    },
    Case {
        name: "invalidate.paging_hwpt_is_enoent",
        run: invalidate_paging_hwpt_is_enoent,
    },
    Case {
        name: "dma.edu_round_trip_and_unmapped_blocked",
        run: dma_edu_round_trip,
    },
    Case {
        name: "viommu.refuses_a_host_without_nesting",
        run: viommu_refuses_a_host_without_nesting,
    },
    Case {
        name: "viommu.stage2_from_the_memory_map_carries_dma",
        run: viommu_stage2_carries_dma,
    },
    Case {
        name: "probe.reports_no_nesting_and_undoes_its_objects",
        run: probe_reports_no_nesting,
    },
    Case {
        name: "dirty.paging_hwpt_has_no_dirty_ops",
        run: dirty_paging_hwpt_has_no_dirty_ops,
    },
    Case {
        name: "ioas.map_respects_the_vtd_reserved_ranges",
        run: ioas_map_respects_the_vtd_reserved_ranges,
    },
    Case {
        name: "vfio.cdev_argument_checks",
        run: vfio_cdev_argument_checks,
    },
    Case {
        name: "attach.replace_moves_between_domains",
        run: attach_replace_moves_between_domains,
    },
];

/// A fresh iommufd with the edu device bound to it.
fn bound(t: &dyn Target, log: &mut Log) -> Result<(Iommufd<Fd>, VfioDevice<Fd>, u32), Failure> {
    let ictx = t.iommufd()?;
    let dev = t.edu()?;
    let devid = log.ok("bind", dev.bind_iommufd(ictx.fd().fd_number()))?;
    log.note("devid", devid);
    Ok((ictx, dev, devid))
}

/// [`bound`], then an IOAS and a paging HWPT on it with the device attached:
/// (iommufd, device, IOAS, HWPT).
fn attached_paging(
    t: &dyn Target,
    log: &mut Log,
) -> Result<(Iommufd<Fd>, VfioDevice<Fd>, u32, u32), Failure> {
    let (ictx, dev, devid) = bound(t, log)?;
    let ioas = log.ok("ioas", ictx.ioas_alloc())?;
    let hwpt = log.ok(
        "hwpt",
        ictx.hwpt_alloc_paging(devid, ioas, HwptAllocFlags::empty()),
    )?;
    log.eq("attach", dev.attach_pt(hwpt)?, hwpt)?;
    Ok((ictx, dev, ioas, hwpt))
}

fn vfio_bind_then_device_info(t: &dyn Target, log: &mut Log) -> Outcome {
    let ictx = t.iommufd()?;
    let dev = t.edu()?;
    log.errno("info_unbound", dev.get_info(), Errno::EINVAL)?;
    log.errno(
        "region_unbound",
        dev.region_info(VFIO_PCI_CONFIG_REGION_INDEX),
        Errno::EINVAL,
    )?;
    let devid = log.ok("bind", dev.bind_iommufd(ictx.fd().fd_number()))?;
    log.eq("devid", devid, 1)?;
    log.errno(
        "bind_twice",
        dev.bind_iommufd(ictx.fd().fd_number()),
        Errno::EINVAL,
    )?;
    let info = log.ok("info", dev.get_info())?;
    log.eq(
        "flags",
        info.flags,
        vtd_iommufd::vfio::VFIO_DEVICE_FLAGS_PCI,
    )?;
    log.eq("num_regions", info.num_regions, 9)?;
    log.eq("num_irqs", info.num_irqs, 5)?;
    log.errno("destroy_device", ictx.destroy(devid), Errno::EBUSY)
}

fn hw_info_qemu_vtd_fields(t: &dyn Target, log: &mut Log) -> Outcome {
    let (ictx, _dev, devid) = bound(t, log)?;
    let (info, vtd) = log.ok("hw_info", ictx.get_vtd_hw_info(devid))?;
    log.eq("type", info.data_type, IOMMU_HW_INFO_TYPE_INTEL_VTD)?;
    log.eq("data_len", info.data_len, 24)?;
    log.eq("capabilities", info.capabilities.bits(), 0)?;
    log.eq("max_pasid_log2", info.max_pasid_log2, 0)?;
    // Linux sets the erratum flag on every VT-d unit, QEMU's included.
    log.eq("errata_772415_spr17", vtd.errata_772415_spr17, true)?;
    let (cap, ecap) = (vtd.cap, vtd.ecap);
    log.eq("cap.sagaw", cap.sagaw(), 0b0110)?;
    log.eq("cap.mgaw", cap.mgaw_bits(), 48)?;
    log.eq("cap.sl_2m", cap.ss_2m(), true)?;
    log.eq("cap.sl_1g", cap.ss_1g(), true)?;
    log.eq("cap.psi", cap.psi(), true)?;
    log.eq("cap.cm", cap.cm(), false)?;
    log.eq("cap.fs1gp", cap.fs1gp(), false)?;
    log.eq("cap.fs5lp", cap.fs5lp(), false)?;
    log.eq("ecap.qi", ecap.qi(), true)?;
    log.eq("ecap.ir", ecap.ir(), true)?;
    log.eq("ecap.pt", ecap.pt(), true)?;
    log.eq("ecap.dt", ecap.dt(), false)?;
    log.eq("ecap.sc", ecap.sc(), false)?;
    log.eq("ecap.nest", ecap.nest(), false)?;
    log.eq("ecap.pasid", ecap.pasid(), false)?;
    log.eq("ecap.smts", ecap.smts(), true)?;
    log.eq("ecap.slts", ecap.slts(), true)?;
    log.eq("ecap.flts", ecap.flts(), false)?;
    log.eq("ecap.slads", ecap.slads(), false)?;
    log.eq("nesting", vtd.nesting(), false)
}

fn hwpt_nest_parent_is_eopnotsupp(t: &dyn Target, log: &mut Log) -> Outcome {
    let (ictx, _dev, devid) = bound(t, log)?;
    let ioas = log.ok("ioas", ictx.ioas_alloc())?;
    log.errno(
        "nest_parent",
        ictx.hwpt_alloc_paging(devid, ioas, HwptAllocFlags::NEST_PARENT),
        Errno::EOPNOTSUPP,
    )?;
    log.errno(
        "dirty_tracking",
        ictx.hwpt_alloc_paging(devid, ioas, HwptAllocFlags::DIRTY_TRACKING),
        Errno::EOPNOTSUPP,
    )?;
    let mut s1 = VtdS1::new(0x1000).to_raw();
    let mut cmd = iommu_hwpt_alloc {
        size: size_of::<iommu_hwpt_alloc>(),
        dev_id: devid,
        pt_id: ioas,
        data_type: IOMMU_HWPT_DATA_VTD_S1,
        data_len: VTD_S1_DATA_LEN,
        data_uptr: &mut s1 as *mut _ as u64,
        ..Default::default()
    };
    log.errno(
        "vtd_s1_on_ioas",
        ictx.hwpt_alloc_raw(&mut cmd),
        Errno::EOPNOTSUPP,
    )?;
    let plain = log.ok(
        "plain",
        ictx.hwpt_alloc_paging(devid, ioas, HwptAllocFlags::empty()),
    )?;
    log.eq("plain_id", plain, 3)?;
    log.errno(
        "nested_on_plain",
        ictx.hwpt_alloc_nested(devid, plain, &VtdS1::new(0x1000), None),
        Errno::EINVAL,
    )
}

fn attach_paging_hwpt(t: &dyn Target, log: &mut Log) -> Outcome {
    let (ictx, dev, ioas, hwpt) = attached_paging(t, log)?;
    let r = log.ok("ranges", ictx.ioas_iova_ranges(ioas))?;
    log.eq(
        "iova_ranges",
        format!("{:x?}/{:#x}", r.ranges, r.alignment),
        format!(
            "{:x?}/0x1000",
            [(0u64, 0xfedf_ffffu64), (0xfef0_0000, (1 << 48) - 1)]
        ),
    )?;
    log.errno("destroy_attached", ictx.destroy(hwpt), Errno::EBUSY)?;
    log.errno("attach_missing", dev.attach_pt(99), Errno::ENOENT)?;
    log.ok("detach", dev.detach_pt())?;
    log.ok("detach_again", dev.detach_pt())?;
    log.ok("destroy_detached", ictx.destroy(hwpt))?;
    let r = log.ok("ranges_after", ictx.ioas_iova_ranges(ioas))?;
    log.eq(
        "iova_ranges_after",
        format!("{:x?}/{}", r.ranges, r.alignment),
        format!("{:x?}/1", [(0u64, u64::MAX)]),
    )
}

fn attach_ioas_auto_hwpt(t: &dyn Target, log: &mut Log) -> Outcome {
    let (ictx, dev, _devid) = bound(t, log)?;
    let ioas = log.ok("ioas", ictx.ioas_alloc())?;
    let auto = log.ok("attach_ioas", dev.attach_pt(ioas))?;
    log.eq("auto_hwpt", auto, 3)?;
    log.eq("attach_ioas_again", dev.attach_pt(ioas)?, auto)?;
    log.errno("destroy_auto", ictx.destroy(auto), Errno::EBUSY)?;
    log.errno("destroy_ioas", ictx.destroy(ioas), Errno::EBUSY)?;
    log.ok("detach", dev.detach_pt())?;
    log.errno("auto_gone", ictx.destroy(auto), Errno::ENOENT)?;
    log.ok("destroy_ioas_after", ictx.destroy(ioas))
}

fn invalidate_paging_hwpt_is_enoent(t: &dyn Target, log: &mut Log) -> Outcome {
    let (ictx, _dev, devid) = bound(t, log)?;
    let ioas = log.ok("ioas", ictx.ioas_alloc())?;
    let hwpt = log.ok(
        "hwpt",
        ictx.hwpt_alloc_paging(devid, ioas, HwptAllocFlags::empty()),
    )?;
    log.invalidate(
        "invalidate_paging",
        ictx.hwpt_invalidate(hwpt, &[vtd_iommufd::VtdS1Invalidate::all()]),
        Err((Errno::ENOENT, 0)),
    )
}

/// edu's BAR 0: identification register, DMA source, destination, count, command.
const EDU_IDENT: u64 = 0x00;
const EDU_DMA_SRC: u64 = 0x80;
const EDU_DMA_DST: u64 = 0x88;
const EDU_DMA_CNT: u64 = 0x90;
const EDU_DMA_CMD: u64 = 0x98;
/// The device's 4 KiB buffer, in its DMA address space.
const EDU_BUF: u64 = 0x40000;
const CMD_RUN: u64 = 1;
const CMD_TO_MEMORY: u64 = 2;

fn read64(dev: &VfioDevice<Fd>, bar: &VfioRegionInfo, off: u64) -> vtd_iommufd::Result<u64> {
    let mut b = [0u8; 8];
    dev.read_region(bar, off, &mut b)?;
    Ok(u64::from_le_bytes(b))
}

/// Run one edu DMA and wait for the engine to finish (QEMU completes it from a timer).
fn edu_dma(
    dev: &VfioDevice<Fd>,
    bar: &VfioRegionInfo,
    src: u64,
    dst: u64,
    len: u64,
    cmd: u64,
) -> Result<bool, Failure> {
    dev.write_region(bar, EDU_DMA_SRC, &src.to_le_bytes())?;
    dev.write_region(bar, EDU_DMA_DST, &dst.to_le_bytes())?;
    dev.write_region(bar, EDU_DMA_CNT, &len.to_le_bytes())?;
    dev.write_region(bar, EDU_DMA_CMD, &(cmd | CMD_RUN).to_le_bytes())?;
    for _ in 0..500 {
        if read64(dev, bar, EDU_DMA_CMD)? & CMD_RUN == 0 {
            return Ok(true);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(false)
}

/// Check edu's identity through its config space and BAR 0, and turn on memory decoding
/// and bus mastering; returns BAR 0's region.
fn edu_enable(dev: &VfioDevice<Fd>, log: &mut Log) -> Result<VfioRegionInfo, Failure> {
    let cfg = log.ok(
        "config_region",
        dev.region_info(VFIO_PCI_CONFIG_REGION_INDEX),
    )?;
    log.note(
        "config",
        format!("size={:#x},flags={:#x}", cfg.size, cfg.flags),
    );
    let bar = log.ok("bar0_region", dev.region_info(VFIO_PCI_BAR0_REGION_INDEX))?;
    log.eq(
        "bar0",
        format!("size={:#x},flags={:#x}", bar.size, bar.flags),
        "size=0x100000,flags=0x7".into(),
    )?;
    let mut id = [0u8; 4];
    log.ok("read_ids", dev.read_region(&cfg, 0, &mut id))?;
    log.eq(
        "pci_id",
        format!(
            "{:04x}:{:04x}",
            u16::from_le_bytes([id[0], id[1]]),
            u16::from_le_bytes([id[2], id[3]])
        ),
        "1234:11e8".into(),
    )?;
    let mut cmd = [0u8; 2];
    log.ok("read_command", dev.read_region(&cfg, 4, &mut cmd))?;
    // Memory decoding for BAR access, bus mastering for DMA.
    let on = u16::from_le_bytes(cmd) | 0x6;
    log.ok(
        "enable_bus_master",
        dev.write_region(&cfg, 4, &on.to_le_bytes()),
    )?;
    let mut ident = [0u8; 4];
    log.ok("read_ident", dev.read_region(&bar, EDU_IDENT, &mut ident))?;
    log.eq(
        "ident",
        format!("{:#010x}", u32::from_le_bytes(ident)),
        "0x010000ed".into(),
    )?;
    Ok(bar)
}

fn dma_edu_round_trip(t: &dyn Target, log: &mut Log) -> Outcome {
    let src = Buffer::new(4096).map_err(|e| Failure(format!("mmap: {e}")))?;
    let dst = Buffer::new(4096).map_err(|e| Failure(format!("mmap: {e}")))?;
    for i in 0..4096 {
        src.set(i, (i * 7 + 3) as u8);
    }
    let (ictx, dev, devid) = bound(t, log)?;
    let bar = edu_enable(&dev, log)?;
    let ioas = log.ok("ioas", ictx.ioas_alloc())?;
    let hwpt = log.ok(
        "hwpt",
        ictx.hwpt_alloc_paging(devid, ioas, HwptAllocFlags::empty()),
    )?;
    log.eq("attach", dev.attach_pt(hwpt)?, hwpt)?;
    let (iova_src, iova_dst) = (0x10_0000u64, 0x20_0000u64);
    let rw = MapFlags::READABLE | MapFlags::WRITEABLE;
    // SAFETY: both buffers are declared before the iommufd and the device, so they stay
    // mapped until the iommufd is closed.
    log.ok("map_src", unsafe {
        ictx.ioas_map(ioas, src.as_ptr(), 4096, Some(iova_src), rw)
    })?;
    // SAFETY: as above.
    log.ok("map_dst", unsafe {
        ictx.ioas_map(ioas, dst.as_ptr(), 4096, Some(iova_dst), rw)
    })?;
    log.eq(
        "dma_to_device_done",
        edu_dma(&dev, &bar, iova_src, EDU_BUF, 4096, 0)?,
        true,
    )?;
    log.eq(
        "dma_to_memory_done",
        edu_dma(&dev, &bar, EDU_BUF, iova_dst, 4096, CMD_TO_MEMORY)?,
        true,
    )?;
    let same = (0..4096).all(|i| dst.get(i) == src.get(i));
    log.eq("round_trip_equal", same, true)?;
    log.eq("unmap_dst", ictx.ioas_unmap(ioas, iova_dst, 4096)?, 4096)?;
    for i in 0..4096 {
        dst.set(i, 0);
    }
    log.eq(
        "dma_to_unmapped_done",
        edu_dma(&dev, &bar, EDU_BUF, iova_dst, 4096, CMD_TO_MEMORY)?,
        true,
    )?;
    let untouched = (0..4096).all(|i| dst.get(i) == 0);
    log.eq("unmapped_untouched", untouched, true)?;
    log.ok("detach", dev.detach_pt())
}

/// 16 MiB of guest memory with the PC layout: RAM up to 0xC0000, a 64 KiB vBIOS ROM at
/// 0xC0000, RAM from 1 MiB.
fn pc_guest_memory() -> Result<Arc<GuestMemory>, Failure> {
    GuestMemory::new(MemoryMap::pc(16 << 20))
        .map(Arc::new)
        .map_err(|e| Failure(format!("guest memory: {e}")))
}

/// The VMM's vIOMMU set up on this host: QEMU's unit has no nesting, so `VIommu::new`
/// must refuse with that reason after one hw_info, and leave no object behind.
fn viommu_refuses_a_host_without_nesting(t: &dyn Target, log: &mut Log) -> Outcome {
    let ictx = Arc::new(t.iommufd()?);
    let first = NewDevice {
        name: "edu".into(),
        guest_sid: 0x10,
        vfio: t.edu()?,
    };
    match VIommu::new(Arc::clone(&ictx), pc_guest_memory()?, first, false) {
        Ok(_) => {
            return Err(Failure(
                "VIommu::new accepted a host without nesting".into(),
            ));
        }
        Err(e) => log.eq(
            "error",
            e.to_string(),
            VIommuError::from(HostUnsupported::NoNesting).to_string(),
        )?,
    }
    // The device went with its file, so nothing holds an id: the next object is 1.
    let next = log.ok("ioas_after", ictx.ioas_alloc())?;
    log.eq("next_id", next, 1)
}

/// `vtd-nest probe`'s question, asked of this host: QEMU's unit is VT-d in scalable mode
/// without nesting or second-stage A/D, the kernel flags the erratum, refuses both HWPT
/// allocations nesting needs, and the verdict names the hardware. The scratch objects
/// are gone afterwards.
fn probe_reports_no_nesting(t: &dyn Target, log: &mut Log) -> Outcome {
    let ictx = Arc::new(t.iommufd()?);
    let dev = t.edu()?;
    let report = log.ok("probe", vtd_viommu::probe::probe(&ictx, &dev))?;
    log.eq("dev_id", report.dev_id, 1)?;
    let vtd = report
        .vtd()
        .ok_or_else(|| Failure("hw_info is not VT-d".into()))?;
    log.eq("scalable_mode", vtd.ecap.smts(), true)?;
    log.eq("nesting", vtd.ecap.nest(), false)?;
    log.eq("slads", vtd.ecap.slads(), false)?;
    log.eq("erratum_flag", vtd.errata_772415_spr17, true)?;
    let errno = |r: Result<(), Errno>| match r {
        Ok(()) => "ok".to_string(),
        Err(e) => e.symbol(),
    };
    log.eq(
        "nest_parent",
        errno(report.nest_parent),
        "EOPNOTSUPP".to_string(),
    )?;
    log.eq(
        "dirty_tracking",
        errno(report.dirty_tracking),
        "EOPNOTSUPP".to_string(),
    )?;
    log.eq(
        "blocker",
        report.blocker().map(|b| b.to_string()).unwrap_or_default(),
        HostUnsupported::NoNesting.to_string(),
    )?;
    // The device holds id 1; the scratch IOAS had 2 and is gone, with any HWPT after it.
    let next = log.ok("ioas_after", ictx.ioas_alloc())?;
    log.eq("next_id", next, 2)?;
    log.errno("no_hwpt_left", ictx.destroy(next + 1), Errno::ENOENT)
}

/// The VMM's stage-2 builder on this host, with a plain paging HWPT (no nesting here):
/// the PC memory map becomes IOAS mappings at IOVA = GPA, ROM read-only, and edu's DMA
/// lands in guest RAM where the map says and cannot write the ROM.
fn viommu_stage2_carries_dma(t: &dyn Target, log: &mut Log) -> Outcome {
    let mem = pc_guest_memory()?;
    let (ictx, dev, devid) = bound(t, log)?;
    let ictx = Arc::new(ictx);
    let bar = edu_enable(&dev, log)?;
    let policy = Stage2Policy {
        nest_parent: false,
        erratum_772415: true,
        dirty_tracking: false,
    };
    let stage2 =
        Stage2::build(&ictx, devid, &mem, policy).map_err(|e| Failure(format!("stage 2: {e}")))?;
    let plan: Vec<String> = stage2
        .plan
        .placements
        .iter()
        .map(|p| match p {
            Placement::Mapped { region, writable } => {
                format!("{}:{}", region.name, if *writable { "rw" } else { "ro" })
            }
            Placement::Skipped { region, .. } => format!("{}:out", region.name),
        })
        .collect();
    log.eq("plan", plan.join(","), "ram-low:rw,vbios:ro,ram:rw".into())?;
    log.eq("attach", dev.attach_pt(stage2.hwpt)?, stage2.hwpt)?;

    let (src, dst, rom) = (0x20_0000u64, 0x30_0000u64, 0xC_0000u64);
    let pattern: Vec<u8> = (0..4096).map(|i| (i * 13 + 5) as u8).collect();
    let rom_before = vec![0xA5u8; 4096];
    let write = |gpa: u64, data: &[u8]| {
        mem.write(gpa, data)
            .map_err(|e| Failure(format!("guest write {gpa:#x}: {e}")))
    };
    write(src, &pattern)?;
    write(rom, &rom_before)?;
    log.eq(
        "dma_to_device_done",
        edu_dma(&dev, &bar, src, EDU_BUF, 4096, 0)?,
        true,
    )?;
    log.eq(
        "dma_to_ram_done",
        edu_dma(&dev, &bar, EDU_BUF, dst, 4096, CMD_TO_MEMORY)?,
        true,
    )?;
    let mut got = vec![0u8; 4096];
    mem.read(dst, &mut got)
        .map_err(|e| Failure(format!("guest read: {e}")))?;
    log.eq("ram_holds_the_pattern", got == pattern, true)?;
    log.eq(
        "dma_to_rom_done",
        edu_dma(&dev, &bar, EDU_BUF, rom, 4096, CMD_TO_MEMORY)?,
        true,
    )?;
    mem.read(rom, &mut got)
        .map_err(|e| Failure(format!("guest read: {e}")))?;
    log.eq("rom_untouched", got == rom_before, true)?;
    log.ok("detach", dev.detach_pt())
}

/// A VT-d paging HWPT allocated without DIRTY_TRACKING has no dirty ops: setting tracking
/// and reading a bitmap are EOPNOTSUPP, the bitmap only after its range checks (an IOVA
/// off the 4 KiB alignment is EINVAL first).
fn dirty_paging_hwpt_has_no_dirty_ops(t: &dyn Target, log: &mut Log) -> Outcome {
    let (ictx, dev, _ioas, hwpt) = attached_paging(t, log)?;
    log.errno(
        "set_tracking",
        ictx.hwpt_set_dirty_tracking(hwpt, true),
        Errno::EOPNOTSUPP,
    )?;
    log.errno(
        "bitmap_unaligned",
        ictx.hwpt_get_dirty_bitmap(hwpt, 0x10_0800, 0x1000, 0x800, false),
        Errno::EINVAL,
    )?;
    log.errno(
        "bitmap",
        ictx.hwpt_get_dirty_bitmap(hwpt, 0x10_0000, 0x1000, 0x1000, false),
        Errno::EOPNOTSUPP,
    )?;
    log.ok("detach", dev.detach_pt())
}

/// With the edu device attached, the IOAS takes the VT-d domain's limits: a FIXED_IOVA map
/// into the interrupt window (0xfee00000..0xfeefffff) or past the 48-bit aperture is
/// EINVAL, one just after the window works, and a 2 KiB IOVA breaks the 4 KiB alignment.
fn ioas_map_respects_the_vtd_reserved_ranges(t: &dyn Target, log: &mut Log) -> Outcome {
    let buf = Buffer::new(0x2000).map_err(|e| Failure(format!("mmap: {e}")))?;
    let (ictx, dev, ioas, _hwpt) = attached_paging(t, log)?;
    let map = |iova: u64| {
        // SAFETY: `buf` outlives the iommufd (declared before it), so the range stays
        // mapped while it is in the IOAS.
        unsafe {
            ictx.ioas_map(
                ioas,
                buf.as_ptr(),
                buf.len() as u64,
                Some(iova),
                MapFlags::READABLE | MapFlags::WRITEABLE,
            )
        }
    };
    log.errno("in_msi_window", map(0xfee0_0000), Errno::EINVAL)?;
    log.errno("straddling_window", map(0xfedf_f000), Errno::EINVAL)?;
    log.errno("past_aperture", map(1 << 48), Errno::EINVAL)?;
    log.errno("iova_2k", map(0x10_0800), Errno::EINVAL)?;
    log.eq(
        "after_window",
        format!("{:#x}", map(0xfef0_0000)?),
        "0xfef00000".into(),
    )?;
    log.eq("unmap_all", ictx.ioas_unmap_all(ioas)?, 0x2000)?;
    log.ok("detach", dev.detach_pt())
}

/// Issue a VFIO cdev ioctl with the words in `buf` (argsz first).
fn vfio_raw(dev: &VfioDevice<Fd>, request: u64, buf: &mut [u32]) -> vtd_iommufd::Result<i32> {
    // SAFETY: the kernel reads at most min(argsz, its struct) bytes of `buf` — argsz is
    // at most `buf`'s size here — and writes back only fields inside it; no pointers.
    unsafe { dev.fd().ioctl(request, buf.as_mut_ptr().cast()) }.map_err(|errno| {
        vtd_iommufd::Error::Ioctl {
            call: vtd_iommufd::Call::VfioBindIommufd,
            errno,
        }
    })
}

/// The VFIO cdev's own checks: before BIND every other ioctl is EINVAL; BIND refuses a
/// short argsz, flags, a negative fd (EINVAL), a closed fd (EBADF) and a file that is no
/// iommufd (EBADFD) and stays unbound; after BIND, ATTACH and DETACH refuse a short argsz
/// or any flag (EINVAL).
fn vfio_cdev_argument_checks(t: &dyn Target, log: &mut Log) -> Outcome {
    use vtd_iommufd::ioctl::{
        VFIO_DEVICE_ATTACH_IOMMUFD_PT, VFIO_DEVICE_BIND_IOMMUFD, VFIO_DEVICE_DETACH_IOMMUFD_PT,
    };
    let ictx = t.iommufd()?;
    let dev = t.edu()?;
    let ioas = log.ok("ioas", ictx.ioas_alloc())?;
    let own = dev.fd().fd_number() as u32;
    let fd = ictx.fd().fd_number() as u32;
    log.errno(
        "attach_unbound",
        vfio_raw(&dev, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &mut [12, 0, ioas]),
        Errno::EINVAL,
    )?;
    for (label, words, want) in [
        ("bind_argsz_12", [12, 0, fd, 0], Errno::EINVAL),
        ("bind_flags", [16, 1, fd, 0], Errno::EINVAL),
        ("bind_fd_negative", [16, 0, u32::MAX, 0], Errno::EINVAL),
        ("bind_fd_closed", [16, 0, 9999, 0], Errno::EBADF),
        ("bind_not_iommufd", [16, 0, own, 0], Errno::EBADFD),
    ] {
        let mut words = words;
        log.errno(
            label,
            vfio_raw(&dev, VFIO_DEVICE_BIND_IOMMUFD, &mut words),
            want,
        )?;
    }
    log.errno("info_still_unbound", dev.get_info(), Errno::EINVAL)?;
    let devid = log.ok("bind", dev.bind_iommufd(fd as i32))?;
    log.eq("devid", devid, 2)?;
    for (label, words, want) in [
        ("attach_argsz_8", [8, 0, ioas], Errno::EINVAL),
        ("attach_flags", [12, 1, ioas], Errno::EINVAL),
    ] {
        let mut words = words;
        log.errno(
            label,
            vfio_raw(&dev, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &mut words),
            want,
        )?;
    }
    log.errno(
        "detach_argsz_4",
        vfio_raw(&dev, VFIO_DEVICE_DETACH_IOMMUFD_PT, &mut [4, 0]),
        Errno::EINVAL,
    )?;
    log.errno(
        "detach_flags",
        vfio_raw(&dev, VFIO_DEVICE_DETACH_IOMMUFD_PT, &mut [8, 1]),
        Errno::EINVAL,
    )?;
    let mut words = [12, 0, ioas];
    log.ok(
        "attach",
        vfio_raw(&dev, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &mut words),
    )?;
    log.eq("attach_pt_out", words[2], 3)?;
    log.ok("detach", dev.detach_pt())
}

/// Attaching an attached device again replaces its domain: moving from an IOAS's
/// automatic HWPT to a user HWPT destroys the automatic one; moving to another IOAS makes
/// a new automatic HWPT there (with the lowest free id) and leaves the user HWPT free to
/// destroy; replacing with a missing id is ENOENT and keeps the current one.
fn attach_replace_moves_between_domains(t: &dyn Target, log: &mut Log) -> Outcome {
    let (ictx, dev, devid) = bound(t, log)?;
    let ioas = log.ok("ioas", ictx.ioas_alloc())?;
    let other = log.ok("other_ioas", ictx.ioas_alloc())?;
    let auto = log.ok("attach_ioas", dev.attach_pt(ioas))?;
    log.eq("auto_hwpt", auto, 4)?;
    let hwpt = log.ok(
        "hwpt",
        ictx.hwpt_alloc_paging(devid, ioas, HwptAllocFlags::empty()),
    )?;
    log.eq("hwpt_id", hwpt, 5)?;
    log.eq("replace_to_hwpt", dev.attach_pt(hwpt)?, hwpt)?;
    log.errno("auto_gone", ictx.destroy(auto), Errno::ENOENT)?;
    log.errno("replace_missing", dev.attach_pt(99), Errno::ENOENT)?;
    log.errno("hwpt_still_held", ictx.destroy(hwpt), Errno::EBUSY)?;
    log.eq("replace_to_other_ioas", dev.attach_pt(other)?, 4)?;
    log.ok("destroy_hwpt", ictx.destroy(hwpt))?;
    log.errno("destroy_other", ictx.destroy(other), Errno::EBUSY)?;
    log.ok("detach", dev.detach_pt())?;
    log.ok("destroy_other_after", ictx.destroy(other))
}
