//! A scenario's machine and the execution of its steps, through the public APIs a VMM
//! uses: vtd-viommu (stage 2, the guest-facing unit, shadowing), vtd-iommufd calls on the
//! simulated kernel's files, and device DMA through the hardware units.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use vtd_iommufd::{IoctlFd, Iommufd, VfioDevice, VtdS1, VtdS1Invalidate};
use vtd_kernel::platform::page_chunks;
use vtd_kernel::{IommufdFile, Platform, VfioDeviceFile};
use vtd_model::Unit;
use vtd_model::build::{Format, Leaf, PageTable};
use vtd_model::fault::Fault;
use vtd_model::mem::PhysMem;
use vtd_model::request::{Access, Request, Translation};
use vtd_model::stats::Stats;
use vtd_model::trace::{WalkEvent, WalkRecorder};
use vtd_spec::addr::PageSize;
use vtd_viommu::guest::{FirstStage, GuestDriver, GuestPages, GuestPasid};
use vtd_viommu::shadow::{Attachment, Change, Target};
use vtd_viommu::{Event, GuestMemory, NewDevice, Stage2, Stage2Policy, VIommu};

use super::format::*;
use super::load::{DeviceDef, Scenario, parse_reason};
use crate::error::{Error, Result};
use crate::explain::{GuestView, fault_story, kind_name, perms_name, size_name};

/// A step whose outcome differs from what the scenario expects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// What the scenario expected.
    pub expected: String,
    /// What happened.
    pub got: String,
}

/// What a step did (one line), or how it differed.
pub type StepResult = std::result::Result<String, Mismatch>;

fn mismatch(expected: impl Into<String>, got: impl Into<String>) -> Mismatch {
    Mismatch {
        expected: expected.into(),
        got: got.into(),
    }
}

/// Guest memory as the scenario writes tables into it: through the VMM's view
/// ([`GuestMemory::read`]/[`GuestMemory::write`]), which reaches ROM too — a stage-1 table
/// may sit in a ROM image (the erratum stories put one there). Scenario steps run one at
/// a time, so the compare-exchange needs no atomicity beyond the word stores.
pub struct VmmView<'a>(pub &'a GuestMemory);

impl PhysMem for VmmView<'_> {
    fn read_u64(&self, addr: u64) -> std::result::Result<u64, vtd_model::mem::MemError> {
        let mut b = [0u8; 8];
        self.0.read(addr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn write_u64(
        &self,
        addr: u64,
        value: u64,
    ) -> std::result::Result<(), vtd_model::mem::MemError> {
        self.0.write(addr, &value.to_le_bytes())
    }

    fn compare_exchange_u64(
        &self,
        addr: u64,
        current: u64,
        new: u64,
    ) -> std::result::Result<std::result::Result<u64, u64>, vtd_model::mem::MemError> {
        let old = self.read_u64(addr)?;
        if old != current {
            return Ok(Err(old));
        }
        self.write_u64(addr, new)?;
        Ok(Ok(old))
    }

    fn write_u32(
        &self,
        addr: u64,
        value: u32,
    ) -> std::result::Result<(), vtd_model::mem::MemError> {
        self.0.write(addr, &value.to_le_bytes())
    }

    fn read_bytes(
        &self,
        addr: u64,
        buf: &mut [u8],
    ) -> std::result::Result<(), vtd_model::mem::MemError> {
        self.0.read(addr, buf)
    }

    fn write_bytes(
        &self,
        addr: u64,
        data: &[u8],
    ) -> std::result::Result<(), vtd_model::mem::MemError> {
        self.0.write(addr, data)
    }
}

/// The machine a scenario runs on; [`World`] borrows it while the steps run.
pub struct Base {
    /// The simulated machine.
    pub platform: Platform,
    /// Guest memory.
    pub mem: Arc<GuestMemory>,
    /// The VMM's iommufd.
    pub iommufd: Arc<Iommufd<IommufdFile>>,
    /// The vIOMMU (viommu mode).
    pub viommu: Option<VIommu<IommufdFile, VfioDeviceFile>>,
    /// The guest's pages for its IOMMU tables.
    pub pages: GuestPages,
    /// Manual mode: each assigned device's VFIO file and dev_id.
    pub bound: HashMap<String, (VfioDevice<VfioDeviceFile>, u32)>,
}

impl Base {
    /// Build the platform, guest memory and the VMM's side for `sc`.
    pub fn new(sc: &Scenario) -> Result<Self> {
        let config = |msg: String| Error::Config {
            path: sc.path.clone(),
            msg,
        };
        let platform =
            Platform::new(sc.platform.clone()).map_err(|e| config(format!("platform: {e}")))?;
        platform
            .intel_driver()
            .set_nest_parent_ro_refusal(sc.ro_refusal);
        let mem =
            Arc::new(GuestMemory::new(sc.map.clone()).map_err(|e| config(format!("memory: {e}")))?);
        let iommufd = Arc::new(Iommufd::new(platform.open_iommufd()));
        let open = |d: &DeviceDef| -> Result<VfioDevice<VfioDeviceFile>> {
            let idx = d.host.unwrap_or(usize::MAX);
            platform
                .open_vfio(idx)
                .map(VfioDevice::new)
                .map_err(|e| config(format!("device {}: open: {e}", d.name)))
        };
        let mut viommu = None;
        let mut bound = HashMap::new();
        let assigned = sc.devices.iter().filter(|d| d.kind == DeviceKind::Assigned);
        match sc.mode {
            VmmMode::Viommu => {
                for d in assigned {
                    let dev = NewDevice {
                        name: d.name.clone(),
                        guest_sid: d.guest_sid,
                        vfio: open(d)?,
                    };
                    match &viommu {
                        None => {
                            viommu = Some(
                                VIommu::new(iommufd.clone(), mem.clone(), dev, sc.dirty_tracking)
                                    .map_err(|e| config(format!("vIOMMU: {e}")))?,
                            )
                        }
                        Some(v) => v
                            .add_device(dev)
                            .map_err(|e| config(format!("vIOMMU: device {}: {e}", d.name)))?,
                    }
                }
            }
            VmmMode::Manual => {
                for d in assigned {
                    let vfio = open(d)?;
                    let dev_id = vfio
                        .bind_iommufd(iommufd.fd().fd_number())
                        .map_err(|e| config(format!("device {}: {e}", d.name)))?;
                    bound.insert(d.name.clone(), (vfio, dev_id));
                }
            }
        }
        let pages = GuestPages::new(mem.clone(), sc.pool.0, sc.pool.1);
        Ok(Self {
            platform,
            mem,
            iommufd,
            viommu,
            pages,
            bound,
        })
    }
}

/// A DMA that completed.
#[derive(Clone, Debug)]
pub struct DmaDone {
    /// The translation of its first byte.
    pub first: Translation,
    /// The guest-physical address its first byte reached.
    pub gpa: Option<u64>,
    /// What a read returned.
    pub bytes: Vec<u8>,
}

/// Why a DMA did not complete.
#[derive(Clone, Debug)]
pub enum DmaFail {
    /// The IOMMU refused it.
    Fault(Fault),
    /// It translated to memory nothing backs.
    Abort(u64),
}

/// A DMA as a step describes it.
#[derive(Clone, Debug)]
pub struct DmaSpec {
    /// The device.
    pub device: String,
    /// Address.
    pub iova: u64,
    /// Access.
    pub access: Access,
    /// Bytes.
    pub len: usize,
    /// PASID.
    pub pasid: Option<u32>,
    /// Supervisor.
    pub privileged: bool,
    /// Bytes a write stores.
    pub data: Option<Vec<u8>>,
}

impl DmaSpec {
    /// A plain read of `len` bytes at `iova` by `device`: no PASID, user privilege.
    pub fn read(device: &str, iova: u64, len: usize) -> Self {
        Self {
            device: device.into(),
            iova,
            access: Access::Read,
            len,
            pasid: None,
            privileged: false,
            data: None,
        }
    }

    /// The request for `len` bytes at `addr` of this DMA, from source id `sid`.
    fn request(&self, sid: u16, addr: u64, len: u32) -> Request {
        let mut req = Request::new(sid, addr, self.access).with_len(len);
        if let Some(p) = self.pasid {
            req = req.with_pasid(p);
        }
        if self.privileged {
            req = req.privileged();
        }
        req
    }

    /// The DMA of a `dma` step.
    pub fn from_step(step: &Step) -> Option<Self> {
        let Step::Dma {
            device,
            iova,
            access,
            len,
            pasid,
            privileged,
            data,
            expect,
        } = step
        else {
            return None;
        };
        let access = match access {
            AccessSpec::Read => Access::Read,
            AccessSpec::Write => Access::Write,
            AccessSpec::Atomic => Access::AtomicRmw,
        };
        let expected_read = expect.as_ref().and_then(|e| e.data.as_ref());
        let len = data
            .as_ref()
            .or(expected_read)
            .map(|d| d.len())
            .or(len.map(|l| l as usize))
            .unwrap_or(4);
        Some(Self {
            device: device.clone(),
            iova: iova.0,
            access,
            len,
            pasid: *pasid,
            privileged: *privileged,
            data: data.as_ref().map(|d| d.as_bytes().to_vec()),
        })
    }

    /// `read 0x40000000 (4 bytes)`.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "{} {} {:#x} ({} bytes",
            self.device,
            self.access.name(),
            self.iova,
            self.len
        );
        if let Some(p) = self.pasid {
            s += &format!(", PASID {p}");
        }
        if self.privileged {
            s += ", supervisor";
        }
        s + ")"
    }
}

/// Which unit translates a device's DMA.
pub enum Which<'a> {
    /// The host unit (assigned devices).
    Host(&'a Unit<Arc<vtd_kernel::HostMem>>),
    /// The vIOMMU's guest-facing unit (emulated devices).
    Guest(&'a Unit<Arc<GuestMemory>>),
}

/// Translate and move the bytes of one DMA, split at 4 KiB as PCIe requires
/// ([`page_chunks`]).
pub(crate) fn dma_through<M: PhysMem, D: PhysMem + ?Sized>(
    unit: &Unit<M>,
    data_mem: &D,
    sid: u16,
    spec: &DmaSpec,
) -> std::result::Result<(Translation, Vec<u8>), DmaFail> {
    let mut buf = vec![0u8; spec.len];
    let mut first = None;
    // A zero-length DMA has no piece, but is still sent: one zero-length request at
    // `iova` (CAP.ZLR).
    let zero_length = (spec.len == 0).then_some((spec.iova, 0..0));
    for (at, range) in page_chunks(spec.iova, spec.len).chain(zero_length) {
        let chunk = range.len();
        let req = spec.request(sid, at, chunk as u32);
        let t = unit.translate(&req).map_err(DmaFail::Fault)?;
        let moved = match (spec.access, &spec.data) {
            (Access::Write, Some(d)) => data_mem.write_bytes(t.hpa, &d[range]),
            (Access::Write, None) => data_mem.write_bytes(t.hpa, &vec![0; chunk]),
            _ => data_mem.read_bytes(t.hpa, &mut buf[range]),
        };
        moved.map_err(|_| DmaFail::Abort(t.hpa))?;
        first.get_or_insert(t);
    }
    Ok((first.expect("at least one piece"), buf))
}

/// The scenario's state while its steps run.
pub struct World<'a> {
    /// The scenario.
    pub sc: &'a Scenario,
    /// The machine.
    pub base: &'a Base,
    driver: Option<GuestDriver<'a, Arc<GuestMemory>>>,
    added: HashSet<u16>,
    tables: HashMap<String, (u64, u8)>,
    ioas: HashMap<String, u32>,
    hwpts: HashMap<String, u32>,
    host_baseline: Stats,
    guest_baseline: Stats,
}

impl<'a> World<'a> {
    /// The world before the first step; counters count from here.
    pub fn new(sc: &'a Scenario, base: &'a Base) -> Self {
        let mut ioas = HashMap::new();
        let mut hwpts = HashMap::new();
        if let Some(v) = &base.viommu {
            ioas.insert("ioas".to_string(), v.stage2().ioas);
            hwpts.insert("parent".to_string(), v.stage2().hwpt);
            let _ = v.take_events();
        }
        let mut w = Self {
            sc,
            base,
            driver: None,
            added: HashSet::new(),
            tables: HashMap::new(),
            ioas,
            hwpts,
            host_baseline: Stats::default(),
            guest_baseline: Stats::default(),
        };
        w.reset_counters();
        w
    }

    fn reset_counters(&mut self) {
        self.host_baseline = self.host_unit().map(|u| u.stats()).unwrap_or_default();
        self.guest_baseline = self
            .base
            .viommu
            .as_ref()
            .map(|v| v.unit().stats())
            .unwrap_or_default();
    }

    fn host_unit(&self) -> Option<&'a Unit<Arc<vtd_kernel::HostMem>>> {
        self.base.platform.unit(0)
    }

    /// Counters of `unit` since the start or the last reset.
    pub fn stats(&self, unit: UnitSpec) -> Stats {
        match unit {
            UnitSpec::Host => self
                .host_unit()
                .map(|u| u.stats().since(&self.host_baseline))
                .unwrap_or_default(),
            UnitSpec::Guest => self
                .base
                .viommu
                .as_ref()
                .map(|v| v.unit().stats().since(&self.guest_baseline))
                .unwrap_or_default(),
        }
    }

    /// What the explanation of a fault may know.
    pub fn view(&self) -> GuestView {
        GuestView {
            map: Some(self.sc.map.clone()),
            skipped: self
                .base
                .viommu
                .as_ref()
                .map(|v| {
                    v.stage2()
                        .plan
                        .skipped()
                        .map(|(r, why)| (r.clone(), why))
                        .collect()
                })
                .unwrap_or_default(),
            fs_levels: self.tables.values().next().map(|t| t.1),
        }
    }

    /// The unit and source id that translate `device`'s DMA.
    pub fn route(&self, device: &str) -> Option<(Which<'a>, u16)> {
        let d = self.sc.device(device)?;
        match d.kind {
            DeviceKind::Assigned => {
                let host = self.base.platform.devices().get(d.host?)?;
                let unit = self.base.platform.unit(host.unit)?;
                Some((Which::Host(unit), host.sid))
            }
            DeviceKind::Emulated => {
                let v = self.base.viommu.as_ref()?;
                Some((Which::Guest(v.unit()), d.guest_sid))
            }
        }
    }

    /// The request of `spec`'s first byte, for explaining.
    pub fn first_request(&self, spec: &DmaSpec, sid: u16) -> Request {
        // As `dma_through` sends it: a zero-length request stays zero-length (CAP.ZLR).
        let chunk = page_chunks(spec.iova, spec.len)
            .next()
            .map_or(0, |(_, r)| r.len());
        spec.request(sid, spec.iova, chunk as u32)
    }

    /// Walk `spec`'s first byte without side effects (no cache, no A/D write, no record).
    pub fn explain(
        &self,
        spec: &DmaSpec,
    ) -> Option<(Vec<WalkEvent>, std::result::Result<Translation, Fault>)> {
        let (which, sid) = self.route(&spec.device)?;
        let req = self.first_request(spec, sid);
        let mut rec = WalkRecorder::default();
        let r = match which {
            Which::Host(u) => u.explain(&req, &mut rec),
            Which::Guest(u) => u.explain(&req, &mut rec),
        };
        Some((rec.events, r))
    }

    /// Do `spec`'s DMA.
    pub fn dma(&self, spec: &DmaSpec) -> std::result::Result<DmaDone, DmaFail> {
        let Some((which, sid)) = self.route(&spec.device) else {
            return Err(DmaFail::Abort(0));
        };
        match which {
            Which::Host(u) => {
                let (first, bytes) = dma_through(u, &**self.base.platform.host_mem(), sid, spec)?;
                Ok(DmaDone {
                    gpa: self.gpa_of_hva(first.hpa),
                    first,
                    bytes,
                })
            }
            Which::Guest(u) => {
                let (first, bytes) = dma_through(u, &*self.base.mem, sid, spec)?;
                Ok(DmaDone {
                    gpa: Some(first.hpa),
                    first,
                    bytes,
                })
            }
        }
    }

    /// The guest-physical address behind host address `hpa` (host-physical is the VMM's
    /// virtual address in the simulation).
    pub fn gpa_of_hva(&self, hpa: u64) -> Option<u64> {
        self.sc.map.regions().iter().find_map(|r| {
            let base = self.base.mem.hva(r.gpa)? as u64;
            (hpa >= base && hpa - base < r.size).then(|| r.gpa + (hpa - base))
        })
    }

    fn driver(&mut self) -> std::result::Result<&mut GuestDriver<'a, Arc<GuestMemory>>, Mismatch> {
        self.driver
            .as_mut()
            .ok_or_else(|| mismatch("a booted guest", "no guest_boot step ran"))
    }

    fn table(&self, name: &str) -> std::result::Result<(u64, u8), Mismatch> {
        self.tables
            .get(name)
            .copied()
            .ok_or_else(|| mismatch(format!("stage-1 table `{name}`"), "it was never made"))
    }

    fn hwpt(&self, name: &str) -> std::result::Result<u32, Mismatch> {
        self.hwpts.get(name).copied().ok_or_else(|| {
            mismatch(
                format!("HWPT `{name}`"),
                "it does not exist (its allocation failed or never ran)",
            )
        })
    }

    fn dev_id(
        &self,
        name: &str,
    ) -> std::result::Result<&'a (VfioDevice<VfioDeviceFile>, u32), Mismatch> {
        self.base
            .bound
            .get(name)
            .ok_or_else(|| mismatch(format!("assigned device `{name}`"), "it is not bound"))
    }

    /// The vIOMMU's events since the last call, as one line.
    fn events(&self) -> String {
        let Some(v) = &self.base.viommu else {
            return String::new();
        };
        let lines: Vec<String> = v.take_events().iter().map(event_line).collect();
        if lines.is_empty() {
            String::new()
        } else {
            format!("; vIOMMU: {}", lines.join("; "))
        }
    }

    /// Run one step.
    pub fn step(&mut self, step: &Step) -> StepResult {
        let mem = &self.base.mem;
        let pages = &self.base.pages;
        match step {
            Step::GuestBoot {} => {
                let v = self
                    .base
                    .viommu
                    .as_ref()
                    .ok_or_else(|| mismatch("the vIOMMU", "none"))?;
                let d = GuestDriver::boot(v.unit(), mem.clone(), pages)
                    .map_err(|e| mismatch("the guest boots", e.to_string()))?;
                self.driver = Some(d);
                Ok(format!(
                    "guest IOMMU driver up (root table, queued invalidation, translation on){}",
                    self.events()
                ))
            }
            Step::Stage1 { name, levels, root } => {
                let first = match root {
                    Some(r) => {
                        mem.write(r.0, &[0u8; 4096])
                            .map_err(|e| mismatch("a zeroed root page", e.to_string()))?;
                        Some(r.0)
                    }
                    None => None,
                };
                let mut first = first;
                let view = VmmView(mem);
                let t = PageTable::new(
                    &view,
                    Format::FirstStage,
                    *levels,
                    move || {
                        first
                            .take()
                            .unwrap_or_else(|| vtd_model::build::PageAlloc::alloc_page(pages))
                    },
                    |g| g,
                );
                if pages.exhausted() {
                    return Err(mismatch(
                        "a page for the table",
                        "the table pool is used up",
                    ));
                }
                let root = t.root();
                self.tables.insert(name.clone(), (root, *levels));
                Ok(format!("{levels}-level stage 1 `{name}` at GPA {root:#x}"))
            }
            Step::Map {
                table,
                iova,
                gpa,
                size,
                write,
                user,
                accessed,
                dirty,
            } => {
                let (root, levels) = self.table(table)?;
                let leaf = Leaf {
                    read: true,
                    write: *write,
                    user: *user,
                    extra: (*accessed as u64) << 5 | (*dirty as u64) << 6,
                };
                let ps = PageSize::from(*size);
                let view = VmmView(mem);
                let mut t = PageTable::open(
                    &view,
                    Format::FirstStage,
                    levels,
                    root,
                    || vtd_model::build::PageAlloc::alloc_page(pages),
                    |g| g,
                );
                t.map(iova.0, gpa.0, ps, leaf).map_err(|e| {
                    let why = if pages.exhausted() {
                        "the table pool is used up".to_string()
                    } else {
                        e.to_string()
                    };
                    mismatch("the mapping is written", why)
                })?;
                Ok(format!(
                    "`{table}`: IOVA {:#x} → GPA {:#x} ({}, {})",
                    iova.0,
                    gpa.0,
                    size_name(ps),
                    if *write { "read-write" } else { "read-only" }
                ))
            }
            Step::Unmap { table, iova } => {
                let (root, levels) = self.table(table)?;
                let view = VmmView(mem);
                let t = PageTable::open(
                    &view,
                    Format::FirstStage,
                    levels,
                    root,
                    || vtd_model::build::PageAlloc::alloc_page(pages),
                    |g| g,
                );
                match t.unmap(iova.0) {
                    Ok(true) => Ok(format!("`{table}`: IOVA {:#x} unmapped", iova.0)),
                    Ok(false) => Err(mismatch(
                        format!("a mapping of {:#x} to clear", iova.0),
                        "nothing maps it",
                    )),
                    Err(e) => Err(mismatch("the leaf is cleared", e.to_string())),
                }
            }
            Step::Pasid {
                device,
                pasid,
                entry,
                table,
                did,
                sre,
            } => {
                let sid = self
                    .sc
                    .device(device)
                    .map(|d| d.guest_sid)
                    .ok_or_else(|| mismatch(format!("device {device}"), "none"))?;
                let did = did.unwrap_or(1);
                let what = match entry {
                    PasidKindSpec::None => GuestPasid::None,
                    PasidKindSpec::PassThrough => GuestPasid::PassThrough { did },
                    PasidKindSpec::FirstStage => {
                        let (root, levels) = self.table(table.as_deref().unwrap_or(""))?;
                        GuestPasid::FirstStage {
                            fs: FirstStage {
                                sre: *sre,
                                ..FirstStage::new(root, levels)
                            },
                            did,
                        }
                    }
                };
                let fresh = self.added.insert(sid);
                let driver = self.driver()?;
                if fresh {
                    driver
                        .add_device(sid)
                        .map_err(|e| mismatch("a context entry for the device", e.to_string()))?;
                }
                driver
                    .set_pasid(sid, *pasid, what)
                    .map_err(|e| mismatch("the PASID entry is written", e.to_string()))?;
                Ok(format!(
                    "guest PASID entry {pasid} of {device}: {}{}",
                    match entry {
                        PasidKindSpec::FirstStage => format!(
                            "first-stage `{}`, DID {did}",
                            table.as_deref().unwrap_or("")
                        ),
                        PasidKindSpec::PassThrough => format!("pass-through, DID {did}"),
                        PasidKindSpec::None => "not present".into(),
                    },
                    self.events()
                ))
            }
            Step::Invalidate {
                hwpt,
                did,
                pasid,
                iova,
                pages: npages,
                expect,
            } => {
                let npages = &npages.unwrap_or(1);
                match hwpt {
                    Some(h) => {
                        let id = self.hwpt(h)?;
                        let entry = match iova {
                            Some(a) => VtdS1Invalidate::range(a.0, *npages),
                            None => VtdS1Invalidate::all(),
                        };
                        control(
                            self.base.iommufd.hwpt_invalidate(id, &[entry]),
                            expect,
                            |n| format!("IOMMU_HWPT_INVALIDATE on `{h}`: {n} entry processed"),
                        )
                    }
                    None => {
                        let did = did.unwrap_or(1);
                        let pasid = &pasid.unwrap_or(0);
                        let am = npages.trailing_zeros() as u8;
                        let addr = iova.map(|a| a.0);
                        self.driver()?
                            .invalidate(did, *pasid, addr, am, false)
                            .map_err(|e| {
                                mismatch("the guest's invalidation completes", e.to_string())
                            })?;
                        Ok(format!(
                            "guest PASID-based IOTLB invalidation (DID {did}, PASID {pasid}, {}){}",
                            addr.map_or("all".to_string(), |a| format!("{a:#x} +{npages} pages")),
                            self.events()
                        ))
                    }
                }
            }
            Step::Stage2 {
                name,
                ioas,
                device,
                nest_parent,
                keep_ro_out,
                dirty,
                expect,
            } => {
                let (_, dev_id) = self.dev_id(device)?;
                let erratum = match keep_ro_out {
                    Some(k) => *k,
                    None => self
                        .base
                        .iommufd
                        .get_vtd_hw_info(*dev_id)
                        .map(|(_, v)| v.errata_772415_spr17)
                        .unwrap_or(false),
                };
                let policy = Stage2Policy {
                    nest_parent: *nest_parent,
                    erratum_772415: erratum,
                    dirty_tracking: *dirty,
                };
                let r = match Stage2::build(&self.base.iommufd, *dev_id, mem, policy) {
                    Ok(s2) => Ok(s2),
                    Err(vtd_viommu::Stage2Error::Iommufd(e)) => Err(e),
                    Err(other) => return Err(mismatch("stage 2 is built", other.to_string())),
                };
                let line = control(r.as_ref().map(|_| ()).map_err(Clone::clone), expect, |_| {
                    String::new()
                })?;
                match r {
                    Ok(s2) => {
                        self.ioas
                            .insert(ioas.clone().unwrap_or_else(|| "ioas".into()), s2.ioas);
                        self.hwpts.insert(name.clone(), s2.hwpt);
                        Ok(plan_line(name, &s2))
                    }
                    Err(_) => Ok(line),
                }
            }
            Step::IoasUnmap {
                ioas,
                iova,
                size,
                expect,
            } => {
                let id = self
                    .ioas
                    .get(ioas)
                    .copied()
                    .ok_or_else(|| mismatch(format!("IOAS `{ioas}`"), "it does not exist"))?;
                control(
                    self.base.iommufd.ioas_unmap(id, iova.0, size.0),
                    expect,
                    |n| {
                        format!(
                            "IOMMU_IOAS_UNMAP `{ioas}` [{:#x}, +{:#x}): {n:#x} bytes unmapped",
                            iova.0, size.0
                        )
                    },
                )
            }
            Step::Alloc {
                name,
                kind,
                device,
                ioas,
                parent,
                table,
                dirty,
                expect,
            } => {
                let (_, dev_id) = self.dev_id(device)?;
                let fd = &self.base.iommufd;
                let r = match kind {
                    HwptKindSpec::Paging | HwptKindSpec::NestParent => {
                        let a = ioas.as_deref().unwrap_or("ioas");
                        let id =
                            self.ioas.get(a).copied().ok_or_else(|| {
                                mismatch(format!("IOAS `{a}`"), "it does not exist")
                            })?;
                        let mut flags = vtd_iommufd::uapi::HwptAllocFlags::empty();
                        flags.set(
                            vtd_iommufd::uapi::HwptAllocFlags::NEST_PARENT,
                            *kind == HwptKindSpec::NestParent,
                        );
                        flags.set(vtd_iommufd::uapi::HwptAllocFlags::DIRTY_TRACKING, *dirty);
                        fd.hwpt_alloc_paging(*dev_id, id, flags)
                    }
                    HwptKindSpec::Nested => {
                        let p = self.hwpt(parent.as_deref().unwrap_or(""))?;
                        let (root, levels) = self.table(table.as_deref().unwrap_or(""))?;
                        let mut s1 = VtdS1::new(root);
                        if levels == 5 {
                            s1 = s1.five_level();
                        }
                        fd.hwpt_alloc_nested(*dev_id, p, &s1, None)
                    }
                };
                let line = control(r.as_ref().map(|_| ()).map_err(Clone::clone), expect, |_| {
                    String::new()
                })?;
                match r {
                    Ok(id) => {
                        self.hwpts.insert(name.clone(), id);
                        Ok(format!("IOMMU_HWPT_ALLOC `{name}` ({kind:?}) → id {id}"))
                    }
                    Err(_) => Ok(line),
                }
            }
            Step::Attach {
                device,
                hwpt,
                expect,
            } => {
                let id = self.hwpt(hwpt)?;
                let (vfio, _) = self.dev_id(device)?;
                control(vfio.attach_pt(id), expect, |_| {
                    format!("VFIO_DEVICE_ATTACH_IOMMUFD_PT {device} → `{hwpt}`")
                })
            }
            Step::Detach { device, expect } => {
                let (vfio, _) = self.dev_id(device)?;
                control(vfio.detach_pt(), expect, |_| {
                    format!("VFIO_DEVICE_DETACH_IOMMUFD_PT {device}")
                })
            }
            Step::Dma { expect, .. } => {
                let spec = DmaSpec::from_step(step).expect("a dma step");
                let r = self.dma(&spec);
                check_dma(&spec, &r, expect.as_ref(), &self.view())
            }
            Step::MemWrite { gpa, data } => {
                mem.write(gpa.0, data.as_bytes())
                    .map_err(|e| mismatch("the write lands in guest memory", e.to_string()))?;
                Ok(format!("guest memory {:#x} ← {:?}", gpa.0, data))
            }
            Step::MemCheck { gpa, data } => {
                let mut buf = vec![0u8; data.len()];
                mem.read(gpa.0, &mut buf)
                    .map_err(|e| mismatch("guest memory to read", e.to_string()))?;
                if buf == data.as_bytes() {
                    Ok(format!("guest memory {:#x} holds {:?}", gpa.0, data))
                } else {
                    Err(mismatch(
                        format!("{data:?} at GPA {:#x}", gpa.0),
                        format!("{:?}", String::from_utf8_lossy(&buf)),
                    ))
                }
            }
            Step::DirtyTracking {
                hwpt,
                enable,
                expect,
            } => {
                let id = self.hwpt(hwpt)?;
                control(
                    self.base.iommufd.hwpt_set_dirty_tracking(id, *enable),
                    expect,
                    |_| {
                        format!(
                            "dirty tracking on `{hwpt}` {}",
                            if *enable { "on" } else { "off" }
                        )
                    },
                )
            }
            Step::DirtyBitmap {
                hwpt,
                iova,
                length,
                expect,
            } => {
                let id = self.hwpt(hwpt)?;
                let r = self
                    .base
                    .iommufd
                    .hwpt_get_dirty_bitmap(id, iova.0, length.0, 4096, false);
                let want_errno = expect.as_ref().and_then(|e| e.errno.clone());
                let bitmap = match (r, want_errno) {
                    (Err(e), Some(want))
                        if e.errno().and_then(|x| x.name()) == Some(want.as_str()) =>
                    {
                        return Ok(format!("{want} as expected"));
                    }
                    (Err(e), _) => return Err(mismatch("a dirty bitmap", e.to_string())),
                    (Ok(_), Some(want)) => return Err(mismatch(want, "success")),
                    (Ok(b), None) => b,
                };
                // Visit only the set bits: the range may be up to 1 TiB of IOVA.
                let pages = length.0.div_ceil(4096);
                let mut dirty = Vec::new();
                for (w, &word) in bitmap.iter().enumerate() {
                    let mut bits = word;
                    while bits != 0 {
                        let i = w as u64 * 64 + bits.trailing_zeros() as u64;
                        if i < pages {
                            dirty.push(iova.0.wrapping_add(i * 4096));
                        }
                        bits &= bits - 1;
                    }
                }
                let shown = hex_list(&dirty);
                if let Some(want) = expect.as_ref().and_then(|e| e.dirty.as_ref()) {
                    let want: Vec<u64> = want.iter().map(|n| n.0 & !0xFFF).collect();
                    if want != dirty {
                        return Err(mismatch(
                            format!("dirty pages {}", hex_list(&want)),
                            format!("dirty pages {shown}"),
                        ));
                    }
                }
                Ok(format!("dirty pages of `{hwpt}`: {shown}"))
            }
            Step::HwInfo { device, expect } => {
                let (erratum, nesting) = match &self.base.viommu {
                    Some(v) => (v.host().errata_772415_spr17, v.host().nesting()),
                    None => {
                        let (_, dev_id) = self.dev_id(device)?;
                        let (_, v) =
                            self.base.iommufd.get_vtd_hw_info(*dev_id).map_err(|e| {
                                mismatch("IOMMU_GET_HW_INFO succeeds", e.to_string())
                            })?;
                        (v.errata_772415_spr17, v.nesting())
                    }
                };
                let mut diffs = Vec::new();
                if let Some(e) = expect {
                    if e.erratum.is_some_and(|x| x != erratum) {
                        diffs.push(format!("erratum flag {}", !erratum));
                    }
                    if e.nesting.is_some_and(|x| x != nesting) {
                        diffs.push(format!("nesting {}", !nesting));
                    }
                }
                let got = format!("erratum flag {erratum}, nesting {nesting}");
                if diffs.is_empty() {
                    Ok(format!("IOMMU_GET_HW_INFO: {got}"))
                } else {
                    Err(mismatch(diffs.join(", "), got))
                }
            }
            Step::Expect {
                unit,
                counters,
                faults,
                device,
                attachment,
                skipped,
            } => self.expect(*unit, counters, faults, device, attachment, skipped),
            Step::ResetCounters {} => {
                self.reset_counters();
                Ok("counters start again from zero".into())
            }
        }
    }

    fn expect(
        &self,
        unit: UnitSpec,
        counters: &Option<std::collections::BTreeMap<String, u64>>,
        faults: &Option<std::collections::BTreeMap<String, u64>>,
        device: &Option<String>,
        attachment: &Option<AttachmentSpec>,
        skipped: &Option<Vec<String>>,
    ) -> StepResult {
        let stats = self.stats(unit);
        let mut want = Vec::new();
        let mut got = Vec::new();
        let mut shown = Vec::new();
        for (name, value) in counters.iter().flatten() {
            let actual = counter(&stats, name).unwrap_or(0);
            shown.push(format!("{name} = {actual}"));
            if actual != *value {
                want.push(format!("{name} = {value}"));
                got.push(format!("{name} = {actual}"));
            }
        }
        for (name, value) in faults.iter().flatten() {
            let reason = parse_reason(name);
            let actual = reason
                .and_then(|r| stats.faults_by_reason.get(&r).copied())
                .unwrap_or(0);
            shown.push(format!("{name} faults = {actual}"));
            if actual != *value {
                want.push(format!("{name} faults = {value}"));
                got.push(format!("{name} faults = {actual}"));
            }
        }
        if let (Some(d), Some(a), Some(v)) = (device, attachment, &self.base.viommu) {
            let actual = match v.attachment(d) {
                Some(Attachment::Blocked) | None => AttachmentSpec::Blocked,
                Some(Attachment::Parent) => AttachmentSpec::Parent,
                Some(Attachment::Nested { .. }) => AttachmentSpec::Nested,
            };
            shown.push(format!("{d} attached to {actual:?}"));
            if actual != *a {
                want.push(format!("{d} attached to {a:?}"));
                got.push(format!("{d} attached to {actual:?}"));
            }
        }
        if let (Some(s), Some(v)) = (skipped, &self.base.viommu) {
            let actual: Vec<String> = v
                .stage2()
                .plan
                .skipped()
                .map(|(r, _)| r.name.clone())
                .collect();
            shown.push(format!("kept out of stage 2: [{}]", actual.join(", ")));
            if &actual != s {
                want.push(format!("kept out of stage 2: [{}]", s.join(", ")));
                got.push(format!("kept out of stage 2: [{}]", actual.join(", ")));
            }
        }
        if want.is_empty() {
            let prefix = if counters.is_some() || faults.is_some() {
                format!(
                    "{} unit: ",
                    if unit == UnitSpec::Host {
                        "host"
                    } else {
                        "guest"
                    }
                )
            } else {
                String::new()
            };
            Ok(format!("{prefix}{}", shown.join(", ")))
        } else {
            Err(mismatch(want.join(", "), got.join(", ")))
        }
    }
}

/// A counter by name (`Stats` names, `faults`, `paging_reads`).
pub fn counter(stats: &Stats, name: &str) -> Option<u64> {
    match name {
        "faults" => Some(stats.faults()),
        "paging_reads" => Some(stats.paging_reads()),
        _ => stats
            .counters()
            .into_iter()
            .find(|c| c.0 == name)
            .map(|c| c.1),
    }
}

fn hex_list(v: &[u64]) -> String {
    let items: Vec<String> = v.iter().map(|x| format!("{x:#x}")).collect();
    format!("[{}]", items.join(", "))
}

/// A one-line summary of a vIOMMU event.
pub fn event_line(e: &Event) -> String {
    match e {
        Event::Stage2Built { ioas, hwpt, plan } => format!(
            "stage 2 built (IOAS {ioas}, nest parent {hwpt}, {} regions kept out)",
            plan.skipped().count()
        ),
        Event::Shadowed {
            device,
            target,
            change,
        } => {
            let what = match change {
                Change::None => "unchanged".to_string(),
                Change::ToParent => "attached to the nest parent".to_string(),
                Change::ToNested { hwpt } => {
                    format!("IOMMU_HWPT_ALLOC (VTD_S1) → nested HWPT {hwpt}, attached")
                }
                Change::DidChanged => "guest domain id changed".to_string(),
                Change::ToBlocked => "detached (DMA blocked)".to_string(),
            };
            match target {
                Target::Blocked(why) => format!("{device} {what}: {}", why.explain()),
                _ => format!("{device} {what}"),
            }
        }
        Event::ShadowFailed { device, errno, .. } => format!(
            "{device}: the host refused the guest's stage 1 ({}); DMA blocked",
            errno.map_or("no errno".to_string(), |e| e.to_string())
        ),
        Event::DestroyRefused {
            device,
            hwpt,
            errno,
        } => format!(
            "{device}: the host refused to destroy unused nested HWPT {hwpt} ({}); kept and retried",
            errno.map_or("no errno".to_string(), |e| e.to_string())
        ),
        Event::Forwarded {
            device,
            hwpt,
            entries,
            result,
        } => format!(
            "forwarded to {device}'s nested HWPT {hwpt} as IOMMU_HWPT_INVALIDATE ({} entr{}) → {}",
            entries.len(),
            if entries.len() == 1 { "y" } else { "ies" },
            match result {
                Ok(n) => format!("{n} processed"),
                Err(e) => e.to_string(),
            }
        ),
    }
}

fn plan_line(name: &str, s2: &Stage2) -> String {
    let parts: Vec<String> = s2
        .plan
        .placements
        .iter()
        .map(|p| match p {
            vtd_viommu::Placement::Mapped { region, writable } => {
                format!("{} {}", region.name, if *writable { "RW" } else { "RO" })
            }
            vtd_viommu::Placement::Skipped { region, .. } => format!("{} kept out", region.name),
        })
        .collect();
    format!(
        "stage 2 `{name}` (IOAS {}, HWPT {}): {}",
        s2.ioas,
        s2.hwpt,
        parts.join(", ")
    )
}

/// Check a control call against an expected errno (or success).
fn control<T>(
    r: std::result::Result<T, vtd_iommufd::Error>,
    expect: &Option<OpExpect>,
    ok: impl FnOnce(&T) -> String,
) -> StepResult {
    let want = expect.as_ref().and_then(|e| e.errno.as_deref());
    match (r, want) {
        (Ok(v), None) => Ok(ok(&v)),
        (Ok(_), Some(want)) => Err(mismatch(want.to_string(), "success")),
        (Err(e), Some(want)) if e.errno().and_then(|x| x.name()) == Some(want) => {
            Ok(format!("{e} (as expected)"))
        }
        (Err(e), Some(want)) => Err(mismatch(want.to_string(), e.to_string())),
        (Err(e), None) => Err(mismatch("success", e.to_string())),
    }
}

/// One line for a DMA's result.
pub fn dma_line(r: &std::result::Result<DmaDone, DmaFail>, view: &GuestView) -> String {
    match r {
        Ok(d) => {
            let t = &d.first;
            let mut s = format!(
                "ok: GPA {}, {}, {} page, rights {}",
                d.gpa.map_or("?".to_string(), |g| format!("{g:#x}")),
                kind_name(t.kind),
                size_name(t.page_size),
                perms_name(t.perms)
            );
            if t.from_iotlb {
                s += ", from the IOTLB";
            }
            s
        }
        Err(DmaFail::Fault(f)) => {
            let story = fault_story(f, view);
            format!("fault {}: {}", story.code, story.what)
        }
        Err(DmaFail::Abort(hpa)) => format!("master abort: {hpa:#x} is not backed memory"),
    }
}

fn check_dma(
    spec: &DmaSpec,
    r: &std::result::Result<DmaDone, DmaFail>,
    expect: Option<&DmaExpect>,
    view: &GuestView,
) -> StepResult {
    let line = format!("dma {} → {}", spec.describe(), dma_line(r, view));
    let default = DmaExpect::default();
    let e = expect.unwrap_or(&default);
    if let Some(want) = &e.fault {
        // `load` refuses unknown reasons; a Scenario built by hand may still hold one.
        let Some(reason) = parse_reason(want) else {
            return Err(mismatch(
                format!("fault {want:?}, which is not a fault reason"),
                dma_line(r, view),
            ));
        };
        return match r {
            Err(DmaFail::Fault(f)) if f.reason == reason => Ok(line),
            _ => Err(mismatch(
                format!("fault {} ({:#04x})", reason.name(), reason.code()),
                dma_line(r, view),
            )),
        };
    }
    let d = match r {
        Ok(d) => d,
        Err(_) => return Err(mismatch("success", dma_line(r, view))),
    };
    let mut want = Vec::new();
    let mut got = Vec::new();
    if let Some(g) = e.gpa
        && d.gpa != Some(g.0)
    {
        want.push(format!("GPA {:#x}", g.0));
        got.push(format!(
            "GPA {}",
            d.gpa.map_or("?".into(), |x| format!("{x:#x}"))
        ));
    }
    if let Some(k) = &e.kind
        && k != kind_name(d.first.kind)
    {
        want.push(k.clone());
        got.push(kind_name(d.first.kind).to_string());
    }
    if let Some(p) = e.page_size.map(PageSize::from)
        && p != d.first.page_size
    {
        want.push(format!("{} page", size_name(p)));
        got.push(format!("{} page", size_name(d.first.page_size)));
    }
    if let Some(b) = e.from_iotlb
        && b != d.first.from_iotlb
    {
        want.push(format!("from_iotlb = {b}"));
        got.push(format!("from_iotlb = {}", d.first.from_iotlb));
    }
    if let Some(data) = &e.data
        && data.as_bytes() != d.bytes.as_slice()
    {
        want.push(format!("data {data:?}"));
        got.push(format!("data {:?}", String::from_utf8_lossy(&d.bytes)));
    }
    if want.is_empty() {
        Ok(line)
    } else {
        Err(mismatch(want.join(", "), got.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::parse;

    #[test]
    fn an_unknown_fault_reason_in_a_hand_built_scenario_is_a_mismatch() {
        let mut sc = parse(
            "t.toml",
            "[[device]]\nname = \"nic0\"\nguest_bdf = \"00:02.0\"\n[[device]]\nname = \"emu0\"\nkind = \"emulated\"\nguest_bdf = \"00:04.0\"\n[[step]]\nop = \"dma\"\ndevice = \"emu0\"\niova = 0\nexpect = { fault = \"SSS.2\" }\n",
        )
        .unwrap();
        if let Step::Dma { expect, .. } = &mut sc.steps[0].step {
            expect.as_mut().unwrap().fault = Some("nope".into());
        }
        let base = Base::new(&sc).unwrap();
        let mut world = World::new(&sc, &base);
        let m = world.step(&sc.steps[0].step).unwrap_err();
        assert!(m.expected.contains("not a fault reason"), "{m:?}");
    }

    /// A scenario with an assigned `nic0` and an emulated `emu0`, and a read by `emu0`.
    fn emulated_read(iova: u64, len: usize) -> (Scenario, DmaSpec) {
        let sc = parse(
            "t.toml",
            "[[device]]\nname = \"nic0\"\nguest_bdf = \"00:02.0\"\n[[device]]\nname = \"emu0\"\nkind = \"emulated\"\nguest_bdf = \"00:04.0\"\n",
        )
        .unwrap();
        (sc, DmaSpec::read("emu0", iova, len))
    }

    #[test]
    fn a_zero_length_dma_is_sent_as_one_zero_length_request() {
        let (sc, spec) = emulated_read(0x1FFC, 0);
        let base = Base::new(&sc).unwrap();
        let world = World::new(&sc, &base);
        let (_, sid) = world.route("emu0").unwrap();
        assert_eq!(world.first_request(&spec, sid).len, 0);
        let before = world.stats(UnitSpec::Guest);
        let done = world.dma(&spec).unwrap();
        let sent = world.stats(UnitSpec::Guest).since(&before).translations;
        assert_eq!(sent, 1);
        assert_eq!(done.first.hpa, 0x1FFC);
        assert!(done.bytes.is_empty());
    }

    #[test]
    fn a_dma_across_a_page_boundary_is_explained_by_its_first_piece_and_sent_as_two() {
        let (sc, spec) = emulated_read(0x1FFC, 8);
        let base = Base::new(&sc).unwrap();
        let world = World::new(&sc, &base);
        let (_, sid) = world.route("emu0").unwrap();
        let first = world.first_request(&spec, sid);
        assert_eq!((first.addr, first.len), (0x1FFC, 4));
        let before = world.stats(UnitSpec::Guest);
        let done = world.dma(&spec).unwrap();
        let sent = world.stats(UnitSpec::Guest).since(&before).translations;
        assert_eq!(sent, 2);
        assert_eq!(done.first.hpa, 0x1FFC);
        assert_eq!(done.bytes.len(), 8);
    }
}
