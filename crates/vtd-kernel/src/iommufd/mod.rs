//! The vendor-neutral iommufd core (drivers/iommu/iommufd): objects, IOAS, HWPT, devices
//! and the ioctl dispatcher, joined to the IOMMU driver by [`IommuDriver`].
//!
//! | module | Linux | concern |
//! |---|---|---|
//! | this | main.c | dispatcher, size rules, object table, destroy, release |
//! | `ioas` | ioas.c, io_pagetable.c | IOAS ioctls, areas, IOVA allocation, reserved and allowed ranges |
//! | `hwpt` | hw_pagetable.c | HWPT allocation, invalidation, dirty tracking |
//! | `device` | device.c | bind, attach, replace, detach, hw_info |
//!
//! One mutex serialises a context's ioctls; DMA never takes it.

mod device;
mod fault;
mod hwpt;
mod ioas;
mod selftest;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use vtd_iommufd::Errno;
use vtd_iommufd::ioctl::{IOCTL_TYPE, IOMMUFD_CMD_BASE};

use crate::driver::{DevIndex, DomainHandle, IommuDriver};
use crate::hostmem::HostMem;
use crate::platform::PlatformInner;
use crate::uaccess::{as_bytes, check_zeroed_user, copy_from_user, copy_to_user, read_user};
use fault::FaultQueue;
pub(crate) use ioas::{Ioas, Owner};
pub(crate) use selftest::{Drivers, MockDriver, SelftestObj};

/// The object kinds user space sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ObjType {
    Ioas,
    Device,
    HwptPaging,
    HwptNested,
    Fault,
    Selftest,
}

/// A paging HWPT: a driver domain mirroring an IOAS.
pub(crate) struct HwptPaging {
    pub(crate) ioas: u32,
    pub(crate) domain: DomainHandle,
    pub(crate) nest_parent: bool,
    /// Created by attaching a device to an IOAS, destroyed with its last device.
    pub(crate) auto_domain: bool,
}

/// A nested HWPT: a driver domain on a parent HWPT.
pub(crate) struct HwptNested {
    pub(crate) parent: u32,
    pub(crate) domain: DomainHandle,
    pub(crate) fault: Option<u32>,
}

/// A device bound to this iommufd.
pub(crate) struct Device {
    pub(crate) dev: DevIndex,
    /// The HWPT its requests without PASID use.
    pub(crate) attached: Option<u32>,
    /// Bumped by every attach and replace: the page faults a HWPT with a FAULT queued
    /// carry it, so that leaving that attachment answers its own faults only.
    pub(crate) attach_gen: u64,
}

pub(crate) enum ObjKind {
    Ioas(Ioas),
    Device(Device),
    HwptPaging(HwptPaging),
    HwptNested(HwptNested),
    Fault(FaultQueue),
    /// A mock device of IOMMU_TEST_OP_MOCK_DOMAIN; `None` while it is being built.
    Selftest(Option<SelftestObj>),
}

/// An object and how many other objects and attachments hold it.
pub(crate) struct Obj {
    pub(crate) kind: ObjKind,
    pub(crate) users: u32,
}

impl Obj {
    pub(crate) fn ty(&self) -> ObjType {
        match self.kind {
            ObjKind::Ioas(_) => ObjType::Ioas,
            ObjKind::Device(_) => ObjType::Device,
            ObjKind::HwptPaging(_) => ObjType::HwptPaging,
            ObjKind::HwptNested(_) => ObjType::HwptNested,
            ObjKind::Fault(_) => ObjType::Fault,
            ObjKind::Selftest(_) => ObjType::Selftest,
        }
    }
}

/// The objects of one iommufd.
#[derive(Default)]
pub(crate) struct State {
    pub(crate) objects: BTreeMap<u32, Obj>,
    /// `IOMMU_VFIO_IOAS` compat IOAS.
    pub(crate) vfio_ioas: Option<u32>,
    /// IOMMU_OPTION_RLIMIT_MODE: pinned pages are accounted to the mm (1) rather than the
    /// user (0). Kept for GET; the simulation accounts nothing.
    pub(crate) account_mm: bool,
}

impl State {
    /// The lowest free id from 1 (xarray with XA_FLAGS_ALLOC1).
    pub(crate) fn insert(&mut self, kind: ObjKind) -> u32 {
        let id = (1..=i32::MAX as u32)
            .find(|id| !self.objects.contains_key(id))
            .unwrap_or(u32::MAX);
        self.objects.insert(id, Obj { kind, users: 0 });
        id
    }

    /// Look up `id` requiring type `ty`: ENOENT when missing or of another type.
    pub(crate) fn get(&self, id: u32, ty: ObjType) -> Result<&Obj, Errno> {
        self.objects
            .get(&id)
            .filter(|o| o.ty() == ty)
            .ok_or(Errno::ENOENT)
    }

    pub(crate) fn ioas(&self, id: u32) -> Result<&Ioas, Errno> {
        match &self.get(id, ObjType::Ioas)?.kind {
            ObjKind::Ioas(i) => Ok(i),
            _ => Err(Errno::ENOENT),
        }
    }

    pub(crate) fn ioas_mut(&mut self, id: u32) -> Result<&mut Ioas, Errno> {
        match self.objects.get_mut(&id).map(|o| &mut o.kind) {
            Some(ObjKind::Ioas(i)) => Ok(i),
            _ => Err(Errno::ENOENT),
        }
    }

    pub(crate) fn device(&self, id: u32) -> Result<&Device, Errno> {
        match &self.get(id, ObjType::Device)?.kind {
            ObjKind::Device(d) => Ok(d),
            _ => Err(Errno::ENOENT),
        }
    }

    /// The queue of FAULT `id`.
    pub(crate) fn fault_queue_mut(&mut self, id: u32) -> Result<&mut FaultQueue, Errno> {
        match self.objects.get_mut(&id).map(|o| &mut o.kind) {
            Some(ObjKind::Fault(q)) => Ok(q),
            _ => Err(Errno::ENOENT),
        }
    }

    pub(crate) fn device_mut(&mut self, id: u32) -> Result<&mut Device, Errno> {
        match self.objects.get_mut(&id).map(|o| &mut o.kind) {
            Some(ObjKind::Device(d)) => Ok(d),
            _ => Err(Errno::ENOENT),
        }
    }

    pub(crate) fn hwpt_paging(&self, id: u32) -> Result<&HwptPaging, Errno> {
        match &self.get(id, ObjType::HwptPaging)?.kind {
            ObjKind::HwptPaging(h) => Ok(h),
            _ => Err(Errno::ENOENT),
        }
    }

    pub(crate) fn add_user(&mut self, id: u32) {
        if let Some(o) = self.objects.get_mut(&id) {
            o.users += 1;
        }
    }

    pub(crate) fn drop_user(&mut self, id: u32) {
        if let Some(o) = self.objects.get_mut(&id) {
            o.users = o.users.saturating_sub(1);
        }
    }
}

/// An ioctl handler: it gets the kernel copy of the argument struct and the user's
/// pointer (for structs that point at more user memory).
type Handler = fn(&Ictx, &mut [u8], u64) -> Result<(), Errno>;

/// One row of the dispatch table (IOCTL_OP in main.c).
struct Op {
    /// Struct size in 6.12.
    size: usize,
    /// The minimum size user space may pass (end of the last original field).
    min_size: usize,
    handler: Handler,
}

/// Slots of the dispatch table: 0x80..=0x8e, or up to IOMMU_TEST_CMD (0xa0) with
/// `CONFIG_IOMMUFD_TEST`, the slots between being holes.
const TABLE_LEN: u32 = 15;
const TABLE_LEN_TEST: u32 = 0xa1 - IOMMUFD_CMD_BASE;

/// The dispatch table: index = nr - 0x80; `None` is a hole (ENOTTY).
fn op(nr: u32) -> Option<Op> {
    let (size, min_size, handler): (usize, usize, Handler) = match nr {
        0x80 => (8, 8, Ictx::destroy_ioctl),
        0x81 => (12, 12, Ictx::ioas_alloc_ioctl),
        0x82 => (24, 24, Ictx::ioas_allow_iovas_ioctl),
        0x83 => (40, 40, Ictx::ioas_copy_ioctl),
        0x84 => (32, 32, Ictx::ioas_iova_ranges_ioctl),
        0x85 => (40, 40, Ictx::ioas_map_ioctl),
        0x86 => (24, 24, Ictx::ioas_unmap_ioctl),
        0x87 => (24, 24, Ictx::option_ioctl),
        0x88 => (12, 12, Ictx::vfio_ioas_ioctl),
        0x89 => (48, 24, Ictx::hwpt_alloc_ioctl),
        0x8a => (40, 32, Ictx::get_hw_info_ioctl),
        0x8b => (16, 16, Ictx::hwpt_set_dirty_tracking_ioctl),
        0x8c => (48, 48, Ictx::hwpt_get_dirty_bitmap_ioctl),
        0x8d => (32, 32, Ictx::hwpt_invalidate_ioctl),
        0x8e => (16, 16, Ictx::fault_queue_alloc_ioctl),
        // Reached only when the table is long enough (CONFIG_IOMMUFD_TEST).
        0xa0 => (72, 68, Ictx::test_cmd_ioctl),
        _ => return None,
    };
    Some(Op {
        size,
        min_size,
        handler,
    })
}

/// One open iommufd (`struct iommufd_ctx`).
pub struct Ictx {
    pub(crate) platform: Weak<PlatformInner>,
    /// This context, for the files that hold a reference on it (fault queues).
    this: Weak<Ictx>,
    state: Mutex<State>,
}

/// Read a struct the handler got as bytes.
pub(crate) fn decode<T: Copy + Default>(buf: &[u8]) -> T {
    let mut value = T::default();
    let n = buf.len().min(std::mem::size_of::<T>());
    // SAFETY: `value` is a live T and the uAPI structs used here are plain integers
    // (every bit pattern valid); at most size_of::<T>() bytes are written into it.
    unsafe { std::ptr::copy_nonoverlapping(buf.as_ptr(), (&mut value as *mut T).cast::<u8>(), n) };
    value
}

/// Store a struct back into the handler's buffer (for the response).
pub(crate) fn encode<T: Copy>(buf: &mut [u8], value: &T) {
    let bytes = as_bytes(value);
    let n = buf.len().min(bytes.len());
    buf[..n].copy_from_slice(&bytes[..n]);
}

impl Drop for Ictx {
    fn drop(&mut self) {
        self.release();
    }
}

impl Ictx {
    pub(crate) fn new(platform: Weak<PlatformInner>, this: Weak<Ictx>) -> Self {
        Self {
            platform,
            this,
            state: Mutex::new(State::default()),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn platform(&self) -> Result<Arc<PlatformInner>, Errno> {
        self.platform.upgrade().ok_or(Errno::ENODEV)
    }

    /// The dispatcher (iommufd_fops_ioctl, §1.2).
    pub(crate) fn ioctl(&self, request: u64, arg: u64) -> Result<i32, Errno> {
        let nr = (request & 0xFF) as u32;
        let ty = ((request >> 8) & 0xFF) as u8;
        // The table of a kernel without CONFIG_IOMMUFD_TEST ends at 0x8e, with it at 0xa0;
        // everything else goes to the VFIO container compatibility layer before the
        // argument is read.
        let table_len = match self.platform() {
            Ok(p) if p.iommufd_test() => TABLE_LEN_TEST,
            _ => TABLE_LEN,
        };
        if !(IOMMUFD_CMD_BASE..IOMMUFD_CMD_BASE + table_len).contains(&nr) {
            // The compatibility layer itself is not simulated: every command is ENOTTY.
            return Err(Errno::ENOTTY);
        }
        let size: u32 = read_user(arg)?;
        // The table entry must match the whole command value (type, nr, no size bits).
        let op = op(nr)
            .filter(|_| ty == IOCTL_TYPE && request >> 16 == 0)
            .ok_or(Errno::ENOTTY)?;
        let size = size as usize;
        if size < op.min_size {
            return Err(Errno::EINVAL);
        }
        let mut buf = vec![0u8; op.size];
        let copy = size.min(op.size);
        copy_from_user(arg, &mut buf[..copy])?;
        // The tail is walked in place, never copied: its length is the user's choice.
        if size > op.size && !check_zeroed_user(arg + op.size as u64, (size - op.size) as u64)? {
            return Err(Errno::E2BIG);
        }
        let result = (op.handler)(self, &mut buf, arg);
        // Handlers that respond did so themselves (see `respond`).
        result.map(|()| 0)
    }

    /// Copy the response back: the first `min(size, struct size)` bytes
    /// (iommufd_ucmd_respond).
    pub(crate) fn respond(buf: &[u8], arg: u64) -> Result<(), Errno> {
        let size: u32 = read_user(arg)?;
        let n = (size as usize).min(buf.len());
        copy_to_user(arg, &buf[..n])
    }

    /// IOMMU_DESTROY (iommufd_destroy, §1.5): ENOENT for an unknown id, EBUSY while
    /// anything holds it (a DEVICE is always held by its VFIO binding).
    fn destroy_ioctl(&self, buf: &mut [u8], _arg: u64) -> Result<(), Errno> {
        let cmd: vtd_iommufd::uapi::iommu_destroy = decode(buf);
        let platform = self.platform()?;
        let mut st = self.lock();
        let obj = st.objects.get(&cmd.id).ok_or(Errno::ENOENT)?;
        // A SELFTEST object still being built is reserved, not yet visible.
        if matches!(obj.kind, ObjKind::Selftest(None)) {
            return Err(Errno::ENOENT);
        }
        if obj.users > 0 {
            return Err(Errno::EBUSY);
        }
        self.destroy_object(&mut st, platform.driver(), &platform.mem, cmd.id);
        Ok(())
    }

    /// Remove an object nobody holds, releasing what it held.
    pub(crate) fn destroy_object(
        &self,
        st: &mut State,
        driver: &dyn IommuDriver,
        mem: &HostMem,
        id: u32,
    ) {
        let Some(obj) = st.objects.remove(&id) else {
            return;
        };
        match obj.kind {
            ObjKind::Ioas(ioas) => ioas.destroy(driver, mem),
            ObjKind::HwptPaging(h) => self.destroy_hwpt_paging(st, driver, mem, id, h),
            ObjKind::HwptNested(h) => {
                driver.domain_free(h.domain);
                st.drop_user(h.parent);
                if let Some(f) = h.fault {
                    st.drop_user(f);
                }
            }
            ObjKind::Selftest(Some(s)) => self.destroy_selftest(st, driver, mem, s),
            ObjKind::Device(_) | ObjKind::Fault(_) | ObjKind::Selftest(None) => {}
        }
        if st.vfio_ioas == Some(id) {
            st.vfio_ioas = None;
        }
    }

    /// Context teardown (§1.6), once the last file reference is gone: sweep the ids in
    /// ascending order destroying every object nobody holds, until none is left.
    fn release(&self) {
        let Ok(platform) = self.platform() else {
            return;
        };
        let mut st = self.lock();
        loop {
            let leaves: Vec<u32> = st
                .objects
                .iter()
                .filter(|(_, o)| o.users == 0)
                .map(|(id, _)| *id)
                .collect();
            if leaves.is_empty() {
                break;
            }
            for id in leaves {
                if st.objects.get(&id).is_some_and(|o| o.users == 0) {
                    self.destroy_object(&mut st, platform.driver(), &platform.mem, id);
                }
            }
        }
        if !st.objects.is_empty() {
            eprintln!(
                "vtd-kernel: iommufd release left {} objects with references",
                st.objects.len()
            );
        }
    }

    /// IOMMU_OPTION (§1.7): RLIMIT_MODE (global; pinned pages are not accounted in the
    /// simulation, so only the rules are kept) and HUGE_PAGES (per IOAS).
    fn option_ioctl(&self, buf: &mut [u8], arg: u64) -> Result<(), Errno> {
        let mut cmd: vtd_iommufd::uapi::iommu_option = decode(buf);
        if cmd.__reserved != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        const SET: u16 = 0;
        const GET: u16 = 1;
        let mut st = self.lock();
        match cmd.option_id {
            // IOMMU_OPTION_RLIMIT_MODE
            0 => {
                if cmd.object_id != 0 {
                    return Err(Errno::EOPNOTSUPP);
                }
                match cmd.op {
                    GET => cmd.val64 = st.account_mm as u64,
                    SET if !st.objects.is_empty() => return Err(Errno::EBUSY),
                    SET if cmd.val64 <= 1 => st.account_mm = cmd.val64 == 1,
                    SET => return Err(Errno::EINVAL),
                    _ => return Err(Errno::EOPNOTSUPP),
                }
            }
            // IOMMU_OPTION_HUGE_PAGES
            1 => {
                let ioas = st.ioas_mut(cmd.object_id)?;
                match cmd.op {
                    GET => cmd.val64 = ioas.large_pages() as u64,
                    SET if cmd.val64 <= 1 => ioas.set_large_pages(cmd.val64 == 1)?,
                    SET => return Err(Errno::EINVAL),
                    _ => return Err(Errno::EOPNOTSUPP),
                }
            }
            _ => return Err(Errno::EOPNOTSUPP),
        }
        drop(st);
        encode(buf, &cmd);
        Self::respond(buf, arg)
    }

    /// IOMMU_VFIO_IOAS: get, set or clear the IOAS of the VFIO compatibility layer.
    fn vfio_ioas_ioctl(&self, buf: &mut [u8], arg: u64) -> Result<(), Errno> {
        let ioas_id = u32::from_le_bytes(buf[4..8].try_into().unwrap_or_default());
        let op = u16::from_le_bytes(buf[8..10].try_into().unwrap_or_default());
        let reserved = u16::from_le_bytes(buf[10..12].try_into().unwrap_or_default());
        if reserved != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        let mut st = self.lock();
        match op {
            // GET
            0 => {
                let id = st.vfio_ioas.ok_or(Errno::ENODEV)?;
                buf[4..8].copy_from_slice(&id.to_le_bytes());
                drop(st);
                Self::respond(buf, arg)
            }
            // SET
            1 => {
                st.ioas(ioas_id)?;
                st.vfio_ioas = Some(ioas_id);
                Ok(())
            }
            // CLEAR
            2 => {
                st.vfio_ioas = None;
                Ok(())
            }
            _ => Err(Errno::EOPNOTSUPP),
        }
    }

    /// IOMMU_FAULT_QUEUE_ALLOC: a FAULT object and the descriptor of its queue. The open
    /// descriptor holds a reference on the object (DESTROY is EBUSY until it is closed
    /// with [`crate::Platform::close_fd`]) and on the context. The selftest mock's page
    /// requests are read from it and answered with [`crate::Platform::fault_read`] and
    /// [`crate::Platform::fault_write`].
    fn fault_queue_alloc_ioctl(&self, buf: &mut [u8], arg: u64) -> Result<(), Errno> {
        let flags = u32::from_le_bytes(buf[4..8].try_into().unwrap_or_default());
        if flags != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        let platform = self.platform()?;
        let ctx = self.this.upgrade().ok_or(Errno::ENODEV)?;
        let id = {
            let mut st = self.lock();
            platform.mem.fail_point()?;
            let id = st.insert(ObjKind::Fault(FaultQueue::default()));
            st.add_user(id);
            id
        };
        let fd = platform
            .files
            .insert(crate::files::OpenFile::Fault { ctx, id });
        buf[8..12].copy_from_slice(&id.to_le_bytes());
        buf[12..16].copy_from_slice(&fd.to_le_bytes());
        if let Err(e) = Self::respond(buf, arg) {
            self.lock().objects.remove(&id);
            // The descriptor was never installed; dropping it drops its context reference
            // (never the last one: the caller's file holds another).
            drop(platform.files.remove(fd));
            return Err(e);
        }
        Ok(())
    }

    /// The fault queue's descriptor of FAULT `id` was closed: drop its reference.
    pub(crate) fn fault_file_closed(&self, id: u32) {
        self.lock().drop_user(id);
    }

    /// `read(2)` on the queue of FAULT `id` (see [`FaultQueue::read`]).
    pub(crate) fn fault_read(&self, id: u32, buf: &mut [u8]) -> Result<usize, Errno> {
        self.lock().fault_queue_mut(id)?.read(buf)
    }

    /// `write(2)` of page responses to the queue of FAULT `id` (see [`FaultQueue::write`]).
    pub(crate) fn fault_write(&self, id: u32, data: &[u8]) -> Result<usize, Errno> {
        self.lock().fault_queue_mut(id)?.write(data)
    }

    /// Whether the queue of FAULT `id` has a fault to read.
    pub(crate) fn fault_readable(&self, id: u32) -> Result<bool, Errno> {
        Ok(self.lock().fault_queue_mut(id)?.readable())
    }
}
