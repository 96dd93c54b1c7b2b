//! Owners of iommufd object ids: each destroys its object when dropped, and holds what it
//! depends on, so objects go away in dependency order (nested HWPT, then its parent, then
//! the IOAS) — the order the kernel requires, since it refuses a busy object with EBUSY.

use std::sync::Arc;

use crate::error::Result;
use crate::fd::IoctlFd;
use crate::iommufd::Iommufd;
use crate::uapi::{HwptAllocFlags, MapFlags};
use crate::vtd::VtdS1;

/// An IOAS, destroyed on drop.
#[derive(Debug)]
pub struct Ioas<F: IoctlFd> {
    iommufd: Arc<Iommufd<F>>,
    id: u32,
}

impl<F: IoctlFd> Ioas<F> {
    /// Allocate a new IOAS.
    pub fn new(iommufd: &Arc<Iommufd<F>>) -> Result<Arc<Self>> {
        let id = iommufd.ioas_alloc()?;
        Ok(Arc::new(Self {
            iommufd: Arc::clone(iommufd),
            id,
        }))
    }

    /// The IOAS id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The iommufd it lives in.
    pub fn iommufd(&self) -> &Arc<Iommufd<F>> {
        &self.iommufd
    }

    /// `IOMMU_IOAS_MAP` at a fixed IOVA.
    ///
    /// # Safety
    ///
    /// As [`Iommufd::ioas_map`]: the user range must stay mapped until unmapped.
    pub unsafe fn map_fixed(
        &self,
        user_va: *const u8,
        length: u64,
        iova: u64,
        flags: MapFlags,
    ) -> Result<()> {
        // SAFETY: forwarded; the caller upholds the contract.
        unsafe {
            self.iommufd
                .ioas_map(self.id, user_va, length, Some(iova), flags)
        }
        .map(|_| ())
    }

    /// `IOMMU_IOAS_UNMAP` of `[iova, iova + length)`.
    pub fn unmap(&self, iova: u64, length: u64) -> Result<u64> {
        self.iommufd.ioas_unmap(self.id, iova, length)
    }
}

impl<F: IoctlFd> Drop for Ioas<F> {
    fn drop(&mut self) {
        // Nothing useful can be done with a failure here; the object then lives until the
        // iommufd is closed.
        let _ = self.iommufd.destroy(self.id);
    }
}

/// What a HWPT was allocated on; kept alive as long as the HWPT.
#[derive(Debug)]
pub enum HwptParent<F: IoctlFd> {
    /// A paging HWPT on an IOAS.
    Ioas(Arc<Ioas<F>>),
    /// A nested HWPT on a nest-parent HWPT.
    Hwpt(Arc<Hwpt<F>>),
}

/// A HWPT, destroyed on drop.
#[derive(Debug)]
pub struct Hwpt<F: IoctlFd> {
    iommufd: Arc<Iommufd<F>>,
    id: u32,
    parent: HwptParent<F>,
}

impl<F: IoctlFd> Hwpt<F> {
    /// Allocate a paging HWPT for `dev_id` on `ioas` (NEST_PARENT and DIRTY_TRACKING as
    /// `flags` say).
    pub fn paging(ioas: &Arc<Ioas<F>>, dev_id: u32, flags: HwptAllocFlags) -> Result<Arc<Self>> {
        let iommufd = Arc::clone(ioas.iommufd());
        let id = iommufd.hwpt_alloc_paging(dev_id, ioas.id(), flags)?;
        Ok(Arc::new(Self {
            iommufd,
            id,
            parent: HwptParent::Ioas(Arc::clone(ioas)),
        }))
    }

    /// Allocate a nested HWPT for `dev_id` with VT-d stage 1 `s1` on `parent`.
    pub fn nested(parent: &Arc<Hwpt<F>>, dev_id: u32, s1: &VtdS1) -> Result<Arc<Self>> {
        let iommufd = Arc::clone(&parent.iommufd);
        let id = iommufd.hwpt_alloc_nested(dev_id, parent.id, s1, None)?;
        Ok(Arc::new(Self {
            iommufd,
            id,
            parent: HwptParent::Hwpt(Arc::clone(parent)),
        }))
    }

    /// The HWPT id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// What it was allocated on.
    pub fn parent(&self) -> &HwptParent<F> {
        &self.parent
    }

    /// The iommufd it lives in.
    pub fn iommufd(&self) -> &Arc<Iommufd<F>> {
        &self.iommufd
    }
}

impl<F: IoctlFd> Drop for Hwpt<F> {
    fn drop(&mut self) {
        // A failure (EBUSY while a device is still attached) leaves the object to be
        // destroyed when the iommufd is closed.
        let _ = self.iommufd.destroy(self.id);
    }
}
