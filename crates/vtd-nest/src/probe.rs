//! `vtd-nest probe`: ask a kernel what its IOMMU offers a nesting vIOMMU, through
//! [`vtd_viommu::probe`] — a real `/dev/iommu` and VFIO device cdevs, or a simulated
//! machine. One report per device: the hw_info fields nesting depends on, the SPR17
//! erratum flag, the HWPT allocations tried, and the verdict.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::ValueEnum;
use serde_json::json;
use vtd_iommufd::uapi::HwCaps;
use vtd_iommufd::{Errno, IoctlFd, Iommufd, VfioDevice};
use vtd_kernel::{DeviceDesc, Platform, PlatformDesc};
use vtd_model::UnitConfig;
use vtd_viommu::probe::{HostReport, probe};

use crate::error::{Error, Result};
use crate::one_line;
use crate::output::{Report, yes};

/// Where VFIO device cdevs live.
const VFIO_DEVICES: &str = "/dev/vfio/devices";

/// Simulated hosts `probe --sim` can ask.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SimHost {
    /// The Sapphire Rapids-like machine of the demo: nesting, dirty tracking, the erratum.
    SapphireRapids,
    /// The same unit without nesting (ECAP.NEST clear).
    WithoutNesting,
    /// QEMU 10.0's `intel-iommu,intremap=on,x-scalable-mode=on` with its `edu` device:
    /// second stage only, the unit the real-kernel guests run.
    Qemu,
}

impl SimHost {
    fn platform(self) -> PlatformDesc {
        match self {
            SimHost::SapphireRapids => PlatformDesc::sapphire_rapids(),
            SimHost::WithoutNesting => PlatformDesc::without_nesting(),
            SimHost::Qemu => PlatformDesc {
                units: vec![UnitConfig::qemu_scalable_intremap()],
                devices: vec![DeviceDesc::new("edu", 0, 2, 0).as_edu()],
                ..PlatformDesc::without_nesting()
            },
        }
    }
}

/// What `probe` asks: a simulated machine, or the real kernel's files.
pub enum Source {
    /// Every device of a simulated machine.
    Sim(SimHost),
    /// `iommu` (normally `/dev/iommu`) and VFIO device cdevs (none: every one in
    /// `/dev/vfio/devices`).
    Real {
        /// The iommufd character device.
        iommu: PathBuf,
        /// The device cdevs.
        devices: Vec<PathBuf>,
    },
}

/// Probe every device, reporting each as it is asked. Exit 0 when each can back a
/// nesting vIOMMU, 1 when one cannot; a device that cannot be asked (busy in a VM, not a
/// VFIO device) is one `error:` line on `err` and makes it 2, after the others are
/// reported.
pub fn run(source: Source, rep: &mut Report<'_>, err: &mut dyn Write) -> Result<i32> {
    let mut outcome = Outcome::default();
    match source {
        Source::Sim(host) => {
            let platform = Platform::new(host.platform())
                .map_err(|e| Error::Setup(format!("simulated host: {e}")))?;
            let iommufd = Arc::new(Iommufd::new(platform.open_iommufd()));
            let name = host.to_possible_value().map(|v| v.get_name().to_string());
            let on = format!("simulated {}", name.unwrap_or_default());
            for (i, d) in platform.devices().iter().enumerate() {
                let name = format!("{} ({})", d.name, d.bdf());
                let asked = platform
                    .open_vfio(i)
                    .map_err(|e| format!("open: {e}"))
                    .and_then(|file| ask(&iommufd, &VfioDevice::new(file)));
                outcome.add(rep, err, &name, &on, asked)?;
            }
        }
        Source::Real { iommu, devices } => {
            let iommufd = Arc::new(Iommufd::new(open_rw(&iommu)?));
            let devices = if devices.is_empty() {
                vfio_cdevs()?
            } else {
                devices
            };
            let on = one_line(&iommu.to_string_lossy());
            for path in devices {
                let name = one_line(&path.to_string_lossy());
                let asked = open_rw(&path)
                    .map_err(|e| e.to_string())
                    .and_then(|file| ask(&iommufd, &VfioDevice::new(file)));
                outcome.add(rep, err, &name, &on, asked)?;
            }
        }
    }
    Ok(outcome.exit_status())
}

/// What the devices asked so far add up to.
#[derive(Default)]
struct Outcome {
    not_ready: bool,
    not_asked: bool,
}

impl Outcome {
    /// Report one device: its report, or one error line.
    fn add(
        &mut self,
        rep: &mut Report<'_>,
        err: &mut dyn Write,
        name: &str,
        on: &str,
        asked: std::result::Result<HostReport, String>,
    ) -> Result<()> {
        match asked {
            Ok(report) => {
                self.not_ready |= report.blocker().is_some();
                print(rep, name, on, &report)
            }
            Err(e) => {
                self.not_asked = true;
                writeln!(err, "error: {}", one_line(&format!("{name}: {e}")))?;
                Ok(())
            }
        }
    }

    fn exit_status(&self) -> i32 {
        if self.not_asked {
            crate::EXIT_BAD_INPUT
        } else {
            i32::from(self.not_ready)
        }
    }
}

/// Probe one device.
fn ask<I: IoctlFd, D: IoctlFd>(
    iommufd: &Arc<Iommufd<I>>,
    dev: &VfioDevice<D>,
) -> std::result::Result<HostReport, String> {
    probe(iommufd, dev).map_err(|e| e.to_string())
}

fn open_rw(path: &Path) -> Result<std::fs::File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|source| Error::File {
            path: one_line(&path.to_string_lossy()),
            source,
        })
}

/// Every `vfio*` cdev in `/dev/vfio/devices`, in name order.
fn vfio_cdevs() -> Result<Vec<PathBuf>> {
    let none = || {
        Error::Usage(format!(
            "no VFIO device cdev in {VFIO_DEVICES}: bind a device to vfio-pci (kernel with VFIO_DEVICE_CDEV) or name one"
        ))
    };
    let entries = match std::fs::read_dir(VFIO_DEVICES) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(none()),
        Err(source) => {
            return Err(Error::File {
                path: VFIO_DEVICES.into(),
                source,
            });
        }
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("vfio"))
        .map(|e| e.path())
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(none());
    }
    Ok(paths)
}

fn answer(r: &std::result::Result<(), Errno>) -> String {
    match r {
        Ok(()) => "allowed".into(),
        Err(e) => format!("refused, {e}"),
    }
}

fn print(rep: &mut Report<'_>, name: &str, on: &str, r: &HostReport) -> Result<()> {
    let info = &r.hw_info;
    let dirty_cap = info.capabilities.contains(HwCaps::DIRTY_TRACKING);
    let mut verdict = match r.blocker() {
        None if r.keep_read_only_out() => "vtd-viommu can run here; keep read-only guest memory (vBIOS, option ROMs) out of stage 2: the kernel flags erratum 772415 and refuses read-only mappings in a nest parent".to_string(),
        None => "vtd-viommu can run here".to_string(),
        Some(b) => format!("vtd-viommu cannot run here: {b}"),
    };
    if let (None, Err(e)) = (r.blocker(), r.dirty_tracking) {
        verdict += &format!(
            "; without dirty tracking (a dirty-tracked nest parent is refused: {})",
            e.symbol()
        );
    }
    let mut text = vec![format!("{name}: dev_id {} on {on}", r.dev_id)];
    let row = |what: &str, value: String| format!("  {what:<38} {value}");
    match r.vtd() {
        Some(v) => {
            let (cap, ecap) = (v.cap, v.ecap);
            text.extend([
                row(
                    "IOMMU",
                    format!(
                        "Intel VT-d, CAP {:#018x}, ECAP {:#018x}",
                        cap.into_bits(),
                        ecap.into_bits()
                    ),
                ),
                row("scalable mode (ECAP.SMTS)", yes(ecap.smts()).into()),
                row(
                    "first stage (ECAP.FLTS)",
                    format!(
                        "{}; 5-level (CAP.FS5LP) {}, 1 GiB pages (CAP.FS1GP) {}",
                        yes(ecap.flts()),
                        yes(cap.fs5lp()),
                        yes(cap.fs1gp())
                    ),
                ),
                row(
                    "second stage (ECAP.SLTS)",
                    format!(
                        "{}; A/D bits (ECAP.SLADS) {}",
                        yes(ecap.slts()),
                        yes(ecap.slads())
                    ),
                ),
                row("nested translation (ECAP.NEST)", yes(ecap.nest()).into()),
                row(
                    "erratum 772415 (SPR17) flag",
                    if v.errata_772415_spr17 {
                        "set: read-only mappings are refused in a nest parent".into()
                    } else {
                        "clear".into()
                    },
                ),
            ]);
        }
        None => text.push(row(
            "IOMMU",
            format!("not Intel VT-d (hw_info type {})", info.data_type),
        )),
    }
    text.extend([
        row(
            "PASID width of the device",
            format!("{} bits", info.max_pasid_log2),
        ),
        row("dirty tracking (hw_info capability)", yes(dirty_cap).into()),
        row("IOMMU_HWPT_ALLOC NEST_PARENT", answer(&r.nest_parent)),
        row("IOMMU_HWPT_ALLOC DIRTY_TRACKING", answer(&r.dirty_tracking)),
        format!("  verdict: {verdict}"),
    ]);
    let errno = |r: &std::result::Result<(), Errno>| r.err().map(|e| e.symbol());
    let vtd = r.vtd().map(|v| {
        json!({
            "cap": v.cap.into_bits(), "ecap": v.ecap.into_bits(),
            "scalable_mode": v.ecap.smts(), "first_stage": v.ecap.flts(),
            "second_stage": v.ecap.slts(), "nesting": v.ecap.nest(),
            "fs5lp": v.cap.fs5lp(), "fs1gp": v.cap.fs1gp(), "slads": v.ecap.slads(),
            "errata_772415_spr17": v.errata_772415_spr17,
        })
    });
    rep.record(
        "probe",
        json!({
            "device": name, "iommufd": on, "dev_id": r.dev_id,
            "hw_info_type": info.data_type, "vtd": vtd,
            "max_pasid_log2": info.max_pasid_log2, "dirty_tracking_capability": dirty_cap,
            "nest_parent_errno": errno(&r.nest_parent),
            "dirty_tracking_errno": errno(&r.dirty_tracking),
            "ready": r.blocker().is_none(),
            "blocker": r.blocker().map(|b| b.to_string()),
            "keep_read_only_out": r.keep_read_only_out(),
        }),
        &text,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The report of the simulated Sapphire Rapids' first device.
    fn sapphire_rapids_report() -> HostReport {
        let platform = Platform::new(PlatformDesc::sapphire_rapids()).unwrap();
        let iommufd = Arc::new(Iommufd::new(platform.open_iommufd()));
        let dev = VfioDevice::new(platform.open_vfio(0).unwrap());
        probe(&iommufd, &dev).unwrap()
    }

    fn printed(report: &HostReport) -> String {
        let mut out = Vec::new();
        print(&mut Report::new(&mut out, false), "nic0", "here", report).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_ready_host_that_refuses_dirty_tracking_says_so_in_the_verdict() {
        let mut report = sapphire_rapids_report();
        assert!(!printed(&report).contains("without dirty tracking"));
        report.dirty_tracking = Err(Errno::EOPNOTSUPP);
        let text = printed(&report);
        let verdict = text.lines().find(|l| l.contains("verdict:")).unwrap();
        assert!(verdict.contains("vtd-viommu can run here"), "{verdict}");
        assert!(
            verdict.contains(
                "without dirty tracking (a dirty-tracked nest parent is refused: EOPNOTSUPP)"
            ),
            "{verdict}"
        );
    }
}
