//! Shared setup: a Sapphire Rapids platform, a VMM with one assigned NIC behind the
//! vIOMMU, 16 MiB of PC-like guest memory and a pool of guest pages for IOMMU tables.
//! The VMM's files fail one chosen ioctl on demand ([`Faults`]).
#![allow(dead_code)]

use std::ffi::c_void;
use std::sync::{Arc, Mutex};

use vtd_iommufd::{Errno, IoctlFd, Iommufd};
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
    pub viommu: VIommu<Flaky<IommufdFile>, Flaky<VfioDeviceFile>>,
    pub pages: GuestPages,
    pub faults: Faults,
}

/// What happens at the armed ioctl.
enum Action {
    /// Fail it, and this many more after it.
    Fail(Errno, u32),
    Run(Box<dyn FnOnce() + Send>),
    /// Run the hook (which may arm the next action), then fail with the errno.
    FailAfter(Errno, Box<dyn FnOnce() + Send>),
}

/// An action shared by the VMM's files: the next ioctls with the armed request number
/// fail, or the next one first runs a hook.
#[derive(Clone, Default)]
pub struct Faults(Arc<Mutex<Option<(u64, Action)>>>);

impl Faults {
    /// Fail the next `request` with `errno`.
    pub fn arm(&self, request: u64, errno: Errno) {
        self.arm_times(request, errno, 1);
    }

    /// Fail the next `times` (at least one) `request`s with `errno`.
    pub fn arm_times(&self, request: u64, errno: Errno, times: u32) {
        let action = Action::Fail(errno, times.max(1) - 1);
        *self.0.lock().unwrap() = Some((request, action));
    }

    /// Run `hook` just before the next `request` goes to the kernel.
    pub fn before(&self, request: u64, hook: impl FnOnce() + Send + 'static) {
        *self.0.lock().unwrap() = Some((request, Action::Run(Box::new(hook))));
    }

    /// Fail the next `request` with `errno` after running `hook`, which may arm the next
    /// action: two refusals in a row, of different calls.
    pub fn fail_then(&self, request: u64, errno: Errno, hook: impl FnOnce() + Send + 'static) {
        *self.0.lock().unwrap() = Some((request, Action::FailAfter(errno, Box::new(hook))));
    }

    /// Disarm; true if an armed action had not happened (in full).
    pub fn disarm(&self) -> bool {
        self.0.lock().unwrap().take().is_some()
    }

    fn take(&self, request: u64) -> Option<Action> {
        let mut armed = self.0.lock().unwrap();
        match &mut *armed {
            Some((r, Action::Fail(e, more))) if *r == request => {
                let e = *e;
                if *more == 0 {
                    *armed = None;
                } else {
                    *more -= 1;
                }
                Some(Action::Fail(e, 0))
            }
            Some((r, Action::Run(_) | Action::FailAfter(..))) if *r == request => {
                armed.take().map(|(_, a)| a)
            }
            _ => None,
        }
    }
}

/// `inner` behind `faults`, as the setup's own files are.
pub fn flaky<F>(inner: F, faults: &Faults) -> Flaky<F> {
    Flaky {
        inner,
        faults: faults.clone(),
    }
}

/// A simulated file whose ioctls fail when [`Faults`] says so.
pub struct Flaky<F> {
    inner: F,
    faults: Faults,
}

impl<F: IoctlFd> IoctlFd for Flaky<F> {
    unsafe fn ioctl(&self, request: u64, arg: *mut c_void) -> Result<i32, Errno> {
        match self.faults.take(request) {
            Some(Action::Fail(e, _)) => return Err(e),
            Some(Action::Run(hook)) => hook(),
            Some(Action::FailAfter(e, hook)) => {
                hook();
                return Err(e);
            }
            None => {}
        }
        // SAFETY: forwarded unchanged; the caller upholds the ioctl contract for `arg`.
        unsafe { self.inner.ioctl(request, arg) }
    }

    fn fd_number(&self) -> i32 {
        self.inner.fd_number()
    }
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
    let faults = Faults::default();
    let iommufd = Arc::new(Iommufd::new(flaky(platform.open_iommufd(), &faults)));
    let mem = Arc::new(GuestMemory::new(map).unwrap());
    let nic = NewDevice {
        name: "nic0".into(),
        guest_sid: GUEST_SID,
        vfio: vtd_iommufd::VfioDevice::new(flaky(platform.open_vfio(0).unwrap(), &faults)),
    };
    let viommu = VIommu::new(iommufd, mem.clone(), nic, false).unwrap();
    if with_ssd {
        viommu.add_device(ssd(&platform, &faults)).unwrap();
    }
    let pages = GuestPages::new(mem.clone(), TABLE_POOL, 1 << 20);
    Setup {
        platform,
        mem,
        viommu,
        pages,
        faults,
    }
}

pub fn dma_read(s: &Setup, iova: u64, len: usize) -> Result<Vec<u8>, DmaError> {
    let mut buf = vec![0; len];
    s.platform.dma_read(0, None, iova, &mut buf).map(|()| buf)
}

/// The guest boots its IOMMU driver, gives the NIC a stage 1 mapping IOVA → GPA, and
/// points the NIC's PASID entry at it.
pub fn guest_maps_nic<'a>(s: &'a Setup, driver: &mut GuestDriver<'a, Arc<GuestMemory>>) -> u64 {
    let _ = s;
    guest_maps(driver, GUEST_SID, DID, IOVA, GPA)
}

/// The guest gives device `sid` a context entry and a fresh 4-level stage 1 mapping
/// `iova` → `gpa`, then points its PASID-0 entry at it in domain `did`; returns the
/// stage-1 root.
pub fn guest_maps(
    driver: &mut GuestDriver<'_, Arc<GuestMemory>>,
    sid: u16,
    did: u16,
    iova: u64,
    gpa: u64,
) -> u64 {
    driver.add_device(sid).unwrap();
    let root = driver.new_stage1(4).root();
    map_4k(driver, root, iova, gpa);
    set_stage1(driver, sid, root, did);
    root
}

/// The guest gives device `sid` a context entry and points its PASID-0 entry, domain
/// `did`, at a fresh empty 4-level stage 1; returns the stage-1 root.
pub fn guest_points_at_new_stage1(
    driver: &mut GuestDriver<'_, Arc<GuestMemory>>,
    sid: u16,
    did: u16,
) -> u64 {
    driver.add_device(sid).unwrap();
    let root = driver.new_stage1(4).root();
    set_stage1(driver, sid, root, did);
    root
}

/// The guest points the PASID-0 entry of `sid` at the 4-level stage 1 at `root`, domain
/// `did` (and invalidates, as [`GuestDriver::set_pasid`] does).
pub fn set_stage1(driver: &mut GuestDriver<'_, Arc<GuestMemory>>, sid: u16, root: u64, did: u16) {
    let fs = FirstStage::new(root, 4);
    driver
        .set_pasid(sid, 0, GuestPasid::FirstStage { fs, did })
        .unwrap();
}

/// The guest maps (or remaps) the 4 KiB page `iova` → `gpa`, read-write, in the 4-level
/// stage 1 at `root`, without invalidating.
pub fn map_4k(driver: &GuestDriver<'_, Arc<GuestMemory>>, root: u64, iova: u64, gpa: u64) {
    driver
        .map(root, 4, iova, gpa, PageSize::Size4K, Leaf::read_write())
        .unwrap();
}

/// The platform's `ssd0` (VFIO device 1) as the VMM assigns it, at [`GUEST_SSD_SID`],
/// its file behind `faults`.
pub fn ssd(platform: &Platform, faults: &Faults) -> NewDevice<Flaky<VfioDeviceFile>> {
    NewDevice {
        name: "ssd0".into(),
        guest_sid: GUEST_SSD_SID,
        vfio: vtd_iommufd::VfioDevice::new(flaky(platform.open_vfio(1).unwrap(), faults)),
    }
}
