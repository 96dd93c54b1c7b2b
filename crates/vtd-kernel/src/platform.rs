//! A simulated machine: VT-d units, PCI devices behind them, host memory, and the device
//! files user space opens (`/dev/iommu`, `/dev/vfio/devices/vfioN`).

use std::ops::Range;
use std::sync::{Arc, Mutex};

use vtd_iommufd::Errno;
use vtd_model::mem::MemError;
use vtd_model::request::{Access, Request, Translation};
use vtd_model::{Fault, PhysMem, Unit, UnitConfig};

use crate::driver::IommuDriver;
use crate::files::{FdTable, IommufdFile, OpenFile, VfioDeviceFile};
use crate::hostmem::HostMem;
use crate::intel::IntelDriver;
use crate::iommufd::{Drivers, Ictx, MockDriver};

/// A PCI device of the platform.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceDesc {
    /// A name for messages (`"nic0"`).
    pub name: String,
    /// Source id: bus in bits 15:8, device in 7:3, function in 2:0.
    pub sid: u16,
    /// Index of the unit the device sits behind.
    pub unit: usize,
    /// PASID width of the device's PASID capability; 0 for none.
    pub pasid_bits: u8,
    /// The device has an ATS capability.
    pub ats: bool,
    /// The device is QEMU's `edu` (1234:11e8): its VFIO file then has the config space,
    /// BAR 0 and DMA engine of that device.
    pub edu: bool,
}

impl DeviceDesc {
    /// A device `name` at `bus:dev.fn` behind unit 0, without PASID or ATS.
    pub fn new(name: &str, bus: u8, dev: u8, func: u8) -> Self {
        Self {
            name: name.to_string(),
            sid: (bus as u16) << 8 | ((dev as u16) & 0x1F) << 3 | (func as u16 & 7),
            unit: 0,
            pasid_bits: 0,
            ats: false,
            edu: false,
        }
    }

    /// The same device as QEMU's `edu` device.
    pub fn as_edu(mut self) -> Self {
        self.edu = true;
        self
    }

    /// The same device with a PASID capability of `bits` bits.
    pub fn with_pasid(mut self, bits: u8) -> Self {
        self.pasid_bits = bits;
        self
    }

    /// The same device with an ATS capability.
    pub fn with_ats(mut self) -> Self {
        self.ats = true;
        self
    }

    /// The same device behind unit `unit`.
    pub fn behind(mut self, unit: usize) -> Self {
        self.unit = unit;
        self
    }

    /// `bus:dev.fn` as text.
    pub fn bdf(&self) -> String {
        bdf(self.sid)
    }
}

/// A source id as `bus:dev.fn` text (`00:03.0`).
pub fn bdf(sid: u16) -> String {
    format!("{:02x}:{:02x}.{}", sid >> 8, (sid >> 3) & 0x1F, sid & 7)
}

/// The pieces a DMA of `len` bytes at `iova` is split into at 4 KiB boundaries, as PCIe
/// requires: each piece's address and its byte range in the DMA's buffer, in order.
///
/// A zero-length DMA has no pieces. Addresses wrap at the top of the 64-bit space (the
/// piece after one ending at `u64::MAX` starts at 0); the unit, not this split, refuses
/// such an address.
pub fn page_chunks(iova: u64, len: usize) -> impl Iterator<Item = (u64, Range<usize>)> {
    let mut done = 0usize;
    std::iter::from_fn(move || {
        if done >= len {
            return None;
        }
        let at = iova.wrapping_add(done as u64);
        let chunk = ((4096 - (at & 0xFFF)) as usize).min(len - done);
        let range = done..done + chunk;
        done += chunk;
        Some((at, range))
    })
}

/// What a platform is built from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlatformDesc {
    /// The VT-d units.
    pub units: Vec<UnitConfig>,
    /// The PCI devices.
    pub devices: Vec<DeviceDesc>,
    /// The `allow_unsafe_interrupts` module parameter: bind devices whose unit cannot
    /// isolate MSIs (no interrupt remapping, ECAP.IR clear).
    pub allow_unsafe_interrupts: bool,
    /// The kernel is built with `CONFIG_IOMMUFD_TEST`: `IOMMU_TEST_CMD` and the selftest's
    /// mock IOMMU driver are there (off by default, as in distribution kernels).
    pub iommufd_test: bool,
}

impl PlatformDesc {
    /// One Sapphire Rapids-like unit (nesting, 5-level first stage, SRS/EAFS, the SPR17
    /// erratum switch on) with two devices: `nic0` at 00:03.0 and `ssd0` at 00:04.0
    /// (PASID-capable, with ATS).
    pub fn sapphire_rapids() -> Self {
        Self {
            units: vec![UnitConfig::sapphire_rapids()],
            devices: vec![
                DeviceDesc::new("nic0", 0, 3, 0),
                DeviceDesc::new("ssd0", 0, 4, 0).with_pasid(20).with_ats(),
            ],
            allow_unsafe_interrupts: false,
            iommufd_test: false,
        }
    }

    /// One unit without nesting (ECAP.NEST clear) and one device `nic0`.
    pub fn without_nesting() -> Self {
        Self {
            units: vec![UnitConfig::without_nesting()],
            devices: vec![DeviceDesc::new("nic0", 0, 3, 0)],
            allow_unsafe_interrupts: false,
            iommufd_test: false,
        }
    }

    /// A machine without any VT-d unit or PCI device, whose kernel has
    /// `CONFIG_IOMMUFD_TEST`: only the selftest's mock devices exist — the setting of the
    /// iommufd selftests, and of a guest booted without an emulated IOMMU.
    pub fn selftest_only() -> Self {
        Self {
            units: Vec::new(),
            devices: Vec::new(),
            allow_unsafe_interrupts: false,
            iommufd_test: true,
        }
    }

    /// The same machine with `CONFIG_IOMMUFD_TEST` on or off.
    pub fn with_iommufd_test(mut self, on: bool) -> Self {
        self.iommufd_test = on;
        self
    }
}

/// Why a platform cannot be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlatformError {
    /// A unit's configuration is impossible.
    #[error("unit {0}: {1}")]
    Unit(usize, vtd_model::config::ConfigError),
    /// A device names a unit that does not exist.
    #[error("device {0} is behind unit {1}, but there are {2} units")]
    NoSuchUnit(String, usize, usize),
    /// Two devices share a source id on one unit.
    #[error("devices {0} and {1} share source id {2:#06x}")]
    DuplicateSid(String, String, u16),
}

/// Why a device's DMA failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DmaError {
    /// The IOMMU refused the access.
    #[error("{0}")]
    Fault(Box<Fault>),
    /// The translated address is not host memory the simulation knows (a master abort).
    #[error("translated address {0:#x} is not backed host memory")]
    Abort(u64),
    /// No such device.
    #[error("no device {0}")]
    NoDevice(usize),
}

/// The state shared by the platform and its files.
pub(crate) struct PlatformInner {
    pub(crate) mem: Arc<HostMem>,
    pub(crate) units: Vec<Arc<Unit<Arc<HostMem>>>>,
    pub(crate) intel: Arc<IntelDriver>,
    /// Every driver, routed by device and domain (the Intel driver, and the mock driver
    /// with `iommufd_test`).
    pub(crate) drivers: Drivers,
    pub(crate) devices: Vec<DeviceDesc>,
    pub(crate) files: FdTable,
    /// For each device: bound through some VFIO file (DMA ownership claimed).
    claimed: Mutex<Vec<bool>>,
    pub(crate) allow_unsafe_interrupts: bool,
}

impl PlatformInner {
    pub(crate) fn driver(&self) -> &dyn IommuDriver {
        &self.drivers
    }

    /// `CONFIG_IOMMUFD_TEST`.
    pub(crate) fn iommufd_test(&self) -> bool {
        self.drivers.mock.is_some()
    }

    /// Claim `dev` for a binding; false if it is bound already.
    pub(crate) fn claim(&self, dev: usize) -> bool {
        let mut claimed = self.claimed.lock().unwrap_or_else(|e| e.into_inner());
        match claimed.get_mut(dev) {
            Some(c) if !*c => {
                *c = true;
                true
            }
            _ => false,
        }
    }

    /// Give up the claim on `dev`.
    pub(crate) fn release(&self, dev: usize) {
        if let Some(c) = self
            .claimed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(dev)
        {
            *c = false;
        }
    }

    /// The unit `dev` sits behind remaps interrupts, so its MSIs are isolated.
    pub(crate) fn msi_isolated(&self, dev: usize) -> bool {
        self.devices
            .get(dev)
            .is_some_and(|d| self.units[d.unit].config().ecap.ir())
    }
}

/// A simulated machine. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Platform {
    pub(crate) inner: Arc<PlatformInner>,
}

impl Platform {
    /// Build the machine, boot the driver (every unit up in scalable mode where it can
    /// be, with queued invalidation and translation enabled) and probe every device.
    pub fn new(desc: PlatformDesc) -> Result<Platform, PlatformError> {
        let mem = Arc::new(HostMem::new());
        let mut units = Vec::new();
        for (i, config) in desc.units.iter().enumerate() {
            let unit = Unit::new(config.clone(), Arc::clone(&mem))
                .map_err(|e| PlatformError::Unit(i, e))?;
            units.push(Arc::new(unit));
        }
        for (i, d) in desc.devices.iter().enumerate() {
            if d.unit >= units.len() {
                return Err(PlatformError::NoSuchUnit(
                    d.name.clone(),
                    d.unit,
                    units.len(),
                ));
            }
            if let Some(other) = desc.devices[..i]
                .iter()
                .find(|o| o.unit == d.unit && o.sid == d.sid)
            {
                return Err(PlatformError::DuplicateSid(
                    other.name.clone(),
                    d.name.clone(),
                    d.sid,
                ));
            }
        }
        let intel = Arc::new(IntelDriver::new(
            Arc::clone(&mem),
            units.clone(),
            &desc.devices,
        ));
        let claimed = Mutex::new(vec![false; desc.devices.len()]);
        let drivers = Drivers {
            intel: Arc::clone(&intel),
            mock: desc.iommufd_test.then(|| Arc::new(MockDriver::default())),
        };
        Ok(Platform {
            inner: Arc::new(PlatformInner {
                mem,
                units,
                intel,
                drivers,
                devices: desc.devices,
                files: FdTable::default(),
                claimed,
                allow_unsafe_interrupts: desc.allow_unsafe_interrupts,
            }),
        })
    }

    /// `open("/dev/iommu")`: a new iommufd with its own objects.
    pub fn open_iommufd(&self) -> IommufdFile {
        IommufdFile::open(&self.inner)
    }

    /// `open("/dev/vfio/devices/vfioN")` for device `index`.
    pub fn open_vfio(&self, index: usize) -> Result<VfioDeviceFile, Errno> {
        if index >= self.inner.devices.len() {
            return Err(Errno::ENODEV);
        }
        Ok(VfioDeviceFile::open(&self.inner, index))
    }

    /// `close(fd)` for a descriptor the kernel handed out as a bare number — the file of a
    /// fault queue (`IOMMU_FAULT_QUEUE_ALLOC`): its FAULT object can be destroyed from
    /// then on, and the iommufd context is released once nothing else holds it. EBADF for
    /// any other number ([`IommufdFile`] and [`VfioDeviceFile`] close when dropped).
    pub fn close_fd(&self, fd: i32) -> Result<(), Errno> {
        let (ctx, id) = self.inner.files.take_fault(fd).ok_or(Errno::EBADF)?;
        ctx.fault_file_closed(id);
        // Dropping `ctx` may release the context, outside the descriptor table's lock.
        drop(ctx);
        Ok(())
    }

    /// `read(2)` on a fault queue's descriptor: the page faults queued for it, as whole
    /// `struct iommu_hwpt_pgfault` records, each with the cookie its response must
    /// carry. ESPIPE unless `buf` holds a whole number of records; 0 when none is queued
    /// (the simulation never blocks); EBADF for a number that is no fault queue's.
    pub fn fault_read(&self, fd: i32, buf: &mut [u8]) -> Result<usize, Errno> {
        let (ctx, id) = self.fault_file(fd)?;
        ctx.fault_read(id, buf)
    }

    /// `write(2)` of `struct iommu_hwpt_page_response` records to a fault queue's
    /// descriptor: each answers the fault read with its cookie. Returns the bytes of the
    /// responses taken; EINVAL when the first has an unknown cookie or code, ESPIPE unless
    /// `data` holds a whole number of responses, EBADF as for [`Platform::fault_read`].
    pub fn fault_write(&self, fd: i32, data: &[u8]) -> Result<usize, Errno> {
        let (ctx, id) = self.fault_file(fd)?;
        ctx.fault_write(id, data)
    }

    /// `poll(2)` for reading on a fault queue's descriptor: true when a read would return
    /// a fault. EBADF as for [`Platform::fault_read`].
    pub fn fault_readable(&self, fd: i32) -> Result<bool, Errno> {
        let (ctx, id) = self.fault_file(fd)?;
        ctx.fault_readable(id)
    }

    fn fault_file(&self, fd: i32) -> Result<(Arc<Ictx>, u32), Errno> {
        match self.inner.files.get(fd) {
            Some(OpenFile::Fault { ctx, id }) => Ok((ctx, id)),
            _ => Err(Errno::EBADF),
        }
    }

    /// Fault injection, the analogue of Linux's `/proc/self/task/<tid>/fail-nth` that the
    /// `iommufd_fail_nth` selftests use: the `n`-th kernel allocation point reached from
    /// now on fails with ENOMEM (`n` = 1: the next one), once; `0` disarms. See
    /// [`HostMem::fail_nth`] for the allocation points.
    pub fn fail_nth(&self, n: u32) {
        self.inner.mem.fail_nth(n);
    }

    /// The failure armed by [`Platform::fail_nth`] has happened.
    pub fn fail_nth_fired(&self) -> bool {
        self.inner.mem.fail_nth_fired()
    }

    /// The devices.
    pub fn devices(&self) -> &[DeviceDesc] {
        &self.inner.devices
    }

    /// The hardware unit `index`: registers, counters, caches.
    pub fn unit(&self, index: usize) -> Option<&Unit<Arc<HostMem>>> {
        self.inner.units.get(index).map(|u| &**u)
    }

    /// Host memory as the hardware sees it.
    pub fn host_mem(&self) -> &Arc<HostMem> {
        &self.inner.mem
    }

    /// The Intel driver (for tests that look at the invalidations it issued).
    pub fn intel_driver(&self) -> &IntelDriver {
        &self.inner.intel
    }

    /// Device `dev` reads `buf.len()` bytes at `iova` (with `pasid`, if given) through its
    /// unit. The access is split at 4 KiB boundaries, as PCIe requires.
    pub fn dma_read(
        &self,
        dev: usize,
        pasid: Option<u32>,
        iova: u64,
        buf: &mut [u8],
    ) -> Result<(), DmaError> {
        self.dma_pages(dev, pasid, iova, buf.len(), Access::Read, |hpa, at| {
            self.inner.mem.read_bytes(hpa, &mut buf[at])
        })
    }

    /// Device `dev` writes `data` at `iova` (with `pasid`, if given) through its unit.
    pub fn dma_write(
        &self,
        dev: usize,
        pasid: Option<u32>,
        iova: u64,
        data: &[u8],
    ) -> Result<(), DmaError> {
        self.dma_pages(dev, pasid, iova, data.len(), Access::Write, |hpa, at| {
            self.inner.mem.write_bytes(hpa, &data[at])
        })
    }

    /// Split `[iova, iova + len)` with [`page_chunks`], translate each piece for `access`
    /// and hand `move_bytes` its HPA and its byte range in the caller's buffer; a failed
    /// move is a master abort at that HPA.
    fn dma_pages(
        &self,
        dev: usize,
        pasid: Option<u32>,
        iova: u64,
        len: usize,
        access: Access,
        mut move_bytes: impl FnMut(u64, Range<usize>) -> Result<(), MemError>,
    ) -> Result<(), DmaError> {
        for (at, range) in page_chunks(iova, len) {
            let t = self.translate(dev, pasid, at, range.len(), access)?;
            move_bytes(t.hpa, range).map_err(|_| DmaError::Abort(t.hpa))?;
        }
        Ok(())
    }

    /// The translation device `dev` gets for one access.
    pub fn translate(
        &self,
        dev: usize,
        pasid: Option<u32>,
        iova: u64,
        len: usize,
        access: Access,
    ) -> Result<Translation, DmaError> {
        let desc = self.inner.devices.get(dev).ok_or(DmaError::NoDevice(dev))?;
        let unit = &self.inner.units[desc.unit];
        let mut req = Request::new(desc.sid, iova, access).with_len(len as u32);
        if let Some(p) = pasid {
            req = req.with_pasid(p);
        }
        unit.translate(&req)
            .map_err(|f| DmaError::Fault(Box::new(f)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_chunks_split_at_every_4k_boundary() {
        let pieces: Vec<_> = page_chunks(0x1FF0, 0x2020).collect();
        assert_eq!(
            pieces,
            [
                (0x1FF0, 0..0x10),
                (0x2000, 0x10..0x1010),
                (0x3000, 0x1010..0x2010),
                (0x4000, 0x2010..0x2020),
            ]
        );
    }

    #[test]
    fn a_zero_length_dma_has_no_pieces() {
        assert_eq!(page_chunks(0x1234, 0).count(), 0);
        assert_eq!(page_chunks(u64::MAX, 0).count(), 0);
    }

    #[test]
    fn pieces_wrap_to_address_zero_past_the_top_of_the_address_space() {
        let pieces: Vec<_> = page_chunks(u64::MAX - 1, 4).collect();
        assert_eq!(pieces, [(u64::MAX - 1, 0..2), (0, 2..4)]);
        let last: Vec<_> = page_chunks(u64::MAX - 0xFFF, 0x1000).collect();
        assert_eq!(last, [(u64::MAX - 0xFFF, 0..0x1000)]);
    }

    #[test]
    fn a_dma_across_the_top_of_the_address_space_faults_at_its_first_piece() {
        let p = Platform::new(PlatformDesc::sapphire_rapids()).unwrap();
        let mut buf = [0u8; 4];
        match p.dma_read(0, None, u64::MAX - 1, &mut buf) {
            Err(DmaError::Fault(f)) => assert_eq!(f.addr, u64::MAX - 1),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_zero_length_dma_translates_nothing_and_succeeds() {
        let p = Platform::new(PlatformDesc::sapphire_rapids()).unwrap();
        // Not even the device is looked up: no piece, no translation.
        assert_eq!(p.dma_read(99, None, 0x1000, &mut []), Ok(()));
        assert_eq!(p.dma_write(99, None, u64::MAX, &[]), Ok(()));
    }
}
