//! PASID-entry shadowing: what an assigned device's host attachment must be, given the
//! guest's view of it, and the iommufd calls that get it there (KS §9.2 steps 7–10).
//!
//! The guest sees a first-stage-only VT-d, so its PASID entries say first-stage (the
//! guest owns IOVA → GPA), pass-through, or nothing. On the host the device is attached
//! to the nest parent (GPA → HPA) directly, to a nested HWPT that carries the guest's
//! stage 1 over the parent, or to nothing (blocked).

use std::sync::Arc;

use vtd_iommufd::{Errno, IoctlFd, Iommufd, VfioDevice, VtdS1, VtdS1Invalidate};
use vtd_spec::fault::FaultReason;
use vtd_spec::pasid::{PasidEntry, Pgtt};

/// Why a device is blocked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockReason {
    /// The guest has no present context or PASID entry for the device: the lookup
    /// stopped with this fault.
    NoEntry(FaultReason),
    /// The guest asked for a translation type this vIOMMU does not offer.
    UnsupportedPgtt(Pgtt),
    /// The guest's first-stage paging mode is reserved or not offered.
    BadPagingMode,
    /// The host refused the nested HWPT, the attach, or a flush of it.
    HostRefused(Errno),
    /// The guest's root table is not in scalable mode; this vIOMMU shadows only scalable
    /// mode.
    NotScalable,
}

impl BlockReason {
    /// One line saying why.
    pub fn explain(self) -> String {
        match self {
            BlockReason::NoEntry(r) => format!(
                "the guest's tables give no entry ({}: {})",
                r.name(),
                r.meaning()
            ),
            BlockReason::UnsupportedPgtt(p) => {
                format!("the guest asked for {p:?} translation, which this vIOMMU does not offer")
            }
            BlockReason::BadPagingMode => {
                "the guest's first-stage paging mode is not one the host supports".into()
            }
            BlockReason::HostRefused(e) => format!("the host refused the nested translation ({e})"),
            BlockReason::NotScalable => "the guest's root table is not in scalable mode".into(),
        }
    }
}

/// Where an assigned device's requests without PASID should go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Guest-physical addresses straight through the nest parent: the guest's remapping
    /// is off, or its entry says pass-through.
    Parent,
    /// The guest's stage 1 over the nest parent.
    Nested {
        /// The stage-1 data for `IOMMU_HWPT_ALLOC`.
        s1: VtdS1,
        /// The guest's domain id in the entry, which its invalidations name.
        did: u16,
    },
    /// No DMA.
    Blocked(BlockReason),
}

impl Target {
    /// The target for a guest PASID entry the lookup found (`Ok`) or the fault it stopped
    /// with (`Err`), on a host that allows `widths` for stage 1.
    pub fn from_guest_entry(entry: Result<PasidEntry, FaultReason>, widths: &[u32]) -> Self {
        let entry = match entry {
            Ok(e) => e,
            Err(reason) => return Target::Blocked(BlockReason::NoEntry(reason)),
        };
        match entry.lo.pgtt() {
            Pgtt::PassThrough => Target::Parent,
            Pgtt::FirstStage => match VtdS1::from_guest_pasid_entry(&entry) {
                Some(s1) if widths.contains(&s1.addr_width) => Target::Nested {
                    s1,
                    did: entry.lo.did(),
                },
                _ => Target::Blocked(BlockReason::BadPagingMode),
            },
            other => Target::Blocked(BlockReason::UnsupportedPgtt(other)),
        }
    }
}

/// What an assigned device is attached to now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attachment {
    /// Nothing (DMA blocked).
    Blocked,
    /// The nest parent.
    Parent,
    /// A nested HWPT made from `s1`, for the guest domain `did`.
    Nested {
        /// Its id.
        hwpt: u32,
        /// The stage 1 it carries.
        s1: VtdS1,
        /// The guest domain id.
        did: u16,
    },
}

/// What [`Shadow::apply`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Already there.
    None,
    /// Attached to the parent.
    ToParent,
    /// A new nested HWPT was allocated and attached (replacing what was there).
    ToNested {
        /// The new HWPT.
        hwpt: u32,
    },
    /// Only the guest domain id changed; the HWPT stays, flushed whole.
    DidChanged,
    /// Detached: DMA is blocked.
    ToBlocked,
}

/// Nested HWPTs nothing holds any more whose destroy the host refused, kept so a later
/// [`PendingDestroys::retry`] frees them instead of leaking them for the life of the
/// iommufd. Object ids belong to the iommufd, so one list serves all its devices: an id
/// the host hands out again for a new nested HWPT leaves the list at once, and so the
/// list never holds an HWPT anyone is attached to.
#[derive(Debug, Default)]
pub struct PendingDestroys {
    ids: Vec<u32>,
    /// Destroys the host refused, retries included.
    refused: u64,
    /// Ids that joined `ids` since [`PendingDestroys::take_new`] last ran, with the
    /// host's errno: the vIOMMU logs each once, not on every retry.
    new: Vec<(u32, Option<Errno>)>,
}

impl PendingDestroys {
    /// The nested HWPTs waiting for a retry.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// How many destroys of such HWPTs the host has refused, retries included.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// The HWPTs whose destroy the host refused for the first time since the last call,
    /// with its errno.
    pub fn take_new(&mut self) -> Vec<(u32, Option<Errno>)> {
        std::mem::take(&mut self.new)
    }

    /// Try again to destroy every pending HWPT; an id is dropped once its destroy succeeds
    /// or the host no longer has it, and kept while the host refuses.
    pub fn retry<I: IoctlFd>(&mut self, iommufd: &Iommufd<I>) {
        let mut ids = std::mem::take(&mut self.ids);
        ids.retain(|hwpt| self.destroy(iommufd, *hwpt).is_err());
        self.ids = ids;
    }

    /// Add `hwpt`, freed without a destroy tried yet, for the next [`PendingDestroys::retry`].
    pub(crate) fn add(&mut self, hwpt: u32) {
        if !self.ids.contains(&hwpt) {
            self.ids.push(hwpt);
        }
    }

    /// The host handed out `hwpt` again (to a new HWPT), so it is no longer one to destroy.
    pub(crate) fn forget(&mut self, hwpt: u32) {
        self.ids.retain(|&p| p != hwpt);
    }

    /// Destroy a nested HWPT nothing holds any more, or keep its id if the host refuses
    /// (a transient error, or EBUSY while something else still references it). ENOENT
    /// means it is gone already: nothing to keep.
    pub(crate) fn destroy_or_keep<I: IoctlFd>(&mut self, iommufd: &Iommufd<I>, hwpt: u32) {
        if let Err(errno) = self.destroy(iommufd, hwpt)
            && !self.ids.contains(&hwpt)
        {
            self.ids.push(hwpt);
            self.new.push((hwpt, errno));
        }
    }

    /// Destroy `hwpt`; a refusal is counted and its errno returned.
    fn destroy<I: IoctlFd>(
        &mut self,
        iommufd: &Iommufd<I>,
        hwpt: u32,
    ) -> Result<(), Option<Errno>> {
        match iommufd.destroy(hwpt) {
            Ok(()) => Ok(()),
            Err(e) if e.errno() == Some(Errno::ENOENT) => Ok(()),
            Err(e) => {
                self.refused += 1;
                Err(e.errno())
            }
        }
    }
}

/// The host side of one assigned device's RID translation.
#[derive(Debug)]
pub struct Shadow {
    /// The nest parent.
    pub parent: u32,
    /// Current attachment.
    pub attachment: Attachment,
}

impl Shadow {
    /// A device attached to nothing yet.
    pub fn new(parent: u32) -> Self {
        Self {
            parent,
            attachment: Attachment::Blocked,
        }
    }

    /// The device's file was closed, which detaches it on the host: the nested HWPT it
    /// was attached to, if any, is held no more.
    pub(crate) fn device_closed(&mut self) -> Option<u32> {
        match std::mem::replace(&mut self.attachment, Attachment::Blocked) {
            Attachment::Nested { hwpt, .. } => Some(hwpt),
            _ => None,
        }
    }

    /// Bring the host attachment to `target`. A nested HWPT is allocated and attached
    /// before the old one is destroyed (a replace, so DMA never sees a gap the guest did
    /// not ask for). If the host refuses any step the device is blocked, never left on a
    /// stage 1 the guest has abandoned; if even the detach is refused, the record keeps
    /// what the host still has, and the next invalidation tries again. A refused destroy
    /// of the old HWPT keeps its id in `pending`.
    pub fn apply<I: IoctlFd, D: IoctlFd>(
        &mut self,
        iommufd: &Arc<Iommufd<I>>,
        dev: &VfioDevice<D>,
        dev_id: u32,
        target: Target,
        pending: &mut PendingDestroys,
    ) -> Result<Change, vtd_iommufd::Error> {
        match (target, self.attachment) {
            (Target::Parent, Attachment::Parent) => return Ok(Change::None),
            (Target::Blocked(_), Attachment::Blocked) => return Ok(Change::None),
            (
                Target::Nested { s1, did },
                Attachment::Nested {
                    hwpt,
                    s1: cur,
                    did: cur_did,
                },
            ) if s1 == cur => {
                if did == cur_did {
                    return Ok(Change::None);
                }
                // The HWPT may hold what the device cached under the old domain, which the
                // guest's flushes of that domain no longer reach and hardware would never
                // serve to the new one: flush it whole, or start a fresh HWPT below.
                if iommufd
                    .hwpt_invalidate(hwpt, &[VtdS1Invalidate::all()])
                    .is_ok()
                {
                    self.attachment = Attachment::Nested { hwpt, s1, did };
                    return Ok(Change::DidChanged);
                }
            }
            _ => {}
        }
        let reached = match target {
            Target::Parent => dev
                .attach_pt(self.parent)
                .map(|_| (Attachment::Parent, Change::ToParent)),
            Target::Blocked(_) => dev
                .detach_pt()
                .map(|()| (Attachment::Blocked, Change::ToBlocked)),
            Target::Nested { s1, did } => self
                .attach_nested(iommufd, dev, dev_id, s1, pending)
                .map(|hwpt| {
                    (
                        Attachment::Nested { hwpt, s1, did },
                        Change::ToNested { hwpt },
                    )
                }),
        };
        match reached {
            Ok((attachment, change)) => {
                let old = std::mem::replace(&mut self.attachment, attachment);
                Self::release(iommufd, old, pending);
                Ok(change)
            }
            Err(e) => {
                self.block(iommufd, dev, pending);
                Err(e)
            }
        }
    }

    /// Allocate a nested HWPT for `s1` and attach the device to it (replacing what it
    /// had). A refused attach leaves the device where it was and drops the new HWPT.
    fn attach_nested<I: IoctlFd, D: IoctlFd>(
        &self,
        iommufd: &Iommufd<I>,
        dev: &VfioDevice<D>,
        dev_id: u32,
        s1: VtdS1,
        pending: &mut PendingDestroys,
    ) -> Result<u32, vtd_iommufd::Error> {
        let hwpt = iommufd.hwpt_alloc_nested(dev_id, self.parent, &s1, None)?;
        // The host hands out an id only once its object is gone, so a pending id equal to
        // this one was destroyed behind our back: retrying it would destroy the new HWPT.
        pending.forget(hwpt);
        if let Err(e) = dev.attach_pt(hwpt) {
            pending.destroy_or_keep(iommufd, hwpt);
            return Err(e);
        }
        Ok(hwpt)
    }

    /// Detach the device: the fallback when the host refuses what the guest asked for.
    /// If the host refuses the detach too, the attachment stays what it was.
    pub(crate) fn block<I: IoctlFd, D: IoctlFd>(
        &mut self,
        iommufd: &Iommufd<I>,
        dev: &VfioDevice<D>,
        pending: &mut PendingDestroys,
    ) {
        if self.attachment == Attachment::Blocked || dev.detach_pt().is_err() {
            return;
        }
        let old = std::mem::replace(&mut self.attachment, Attachment::Blocked);
        Self::release(iommufd, old, pending);
    }

    /// Destroy the nested HWPT of an attachment nothing holds any more (kept for a retry
    /// if the host refuses). It is never the new attachment: the host cannot hand out the
    /// id of an HWPT that still exists.
    fn release<I: IoctlFd>(iommufd: &Iommufd<I>, old: Attachment, pending: &mut PendingDestroys) {
        if let Attachment::Nested { hwpt, .. } = old {
            pending.destroy_or_keep(iommufd, hwpt);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vtd_spec::pasid::{Fspm, PasidEntryHi, PasidEntryLo};

    fn entry(pgtt: Pgtt, fspm: Fspm) -> PasidEntry {
        PasidEntry {
            lo: PasidEntryLo::new().with_p(true).with_pgtt(pgtt).with_did(9),
            hi: PasidEntryHi::new().with_fspm(fspm).with_fsptptr(0x1234),
            rsvd: [0; 2],
        }
    }

    #[test]
    fn first_stage_entry_becomes_a_nested_target() {
        let t = Target::from_guest_entry(Ok(entry(Pgtt::FirstStage, Fspm::Level4)), &[48]);
        assert_eq!(
            t,
            Target::Nested {
                s1: VtdS1::new(0x1234 << 12),
                did: 9
            }
        );
    }

    #[test]
    fn five_level_entry_on_a_four_level_host_is_blocked() {
        let t = Target::from_guest_entry(Ok(entry(Pgtt::FirstStage, Fspm::Level5)), &[48]);
        assert_eq!(t, Target::Blocked(BlockReason::BadPagingMode));
    }

    #[test]
    fn pass_through_entry_goes_to_the_parent() {
        assert_eq!(
            Target::from_guest_entry(Ok(entry(Pgtt::PassThrough, Fspm::Level4)), &[48]),
            Target::Parent
        );
    }

    #[test]
    fn second_stage_entry_is_not_offered() {
        let t = Target::from_guest_entry(Ok(entry(Pgtt::SecondStage, Fspm::Level4)), &[48]);
        assert_eq!(
            t,
            Target::Blocked(BlockReason::UnsupportedPgtt(Pgtt::SecondStage))
        );
    }
}
