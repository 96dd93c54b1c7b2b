//! The IOTLB-hit fast path: context cache, PASID cache and IOTLB all hit and the cached
//! rights allow the request.
//!
//! It tries the front cache first (one probe, then a check that the three entries behind
//! the answer are still cached unchanged), then the three caches in turn. The front-cache
//! probe is inlined into `Unit::translate`; everything after it is out of line.
//!
//! When the fast path has to give up, the walker reuses its lookups ([`Prefetch`], filled
//! in place), and after a walk that filled the IOTLB it makes the front-cache entry the
//! next identical request would otherwise make here (`front_fill_after_walk`), with the
//! same helpers, so a page a device keeps using costs one walk, not a walk and a slower
//! second lookup.
//!
//! It decides nothing the full walk would decide differently: whenever a step is not a
//! clean hit (a miss, a cached not-present entry, a denial, a dirty flag still to set,
//! pass-through, an ATS request) it gives up and the walker does the whole translation,
//! with the same helpers for the decisions both make. A fast hit counts once; the
//! counter snapshot adds it to every counter a walker hit would have moved.

use vtd_spec::addr::PageSize;
use vtd_spec::pasid::Pgtt;
use vtd_spec::regs::Ttm;

use super::{PasidCtx, SmContext, Walker};
use crate::cache::{
    CachedContext, CachedPasid, FrontEntry, IotlbEntry, IotlbKind, SlotRef, Unguarded, lookup_page,
};
use crate::mem::PhysMem;
use crate::request::{AddressType, Perms, Request, Translation};
use crate::stats::{Counter, shard_index};
use crate::trace::WalkObserver;
use crate::unit::Unit;

/// What the fast path found before it had to give up: the cache lookups the walker need
/// not repeat. Every field is a clean hit (or, for the IOTLB, a clean miss).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Prefetch {
    /// The context-cache entry of the source id and where it sits.
    pub(crate) ctx: Option<(SmContext, SlotRef)>,
    /// The PASID looked up, its PASID-cache entry and where it sits.
    pub(crate) pasid: Option<(u32, PasidCtx, SlotRef)>,
    /// The IOTLB holds no entry of any page size for the request.
    pub(crate) iotlb_absent: bool,
    /// `Caches::full_clears` before the lookups, for a front-cache fill from them.
    pub(crate) clears: u64,
}

/// True for the requests the fast path (and so the front cache) serves: untranslated, no
/// execute, not zero-length. Anything else always goes to the walker.
#[inline]
fn front_eligible(req: &Request) -> bool {
    req.address_type == AddressType::Untranslated && !req.execute && req.len != 0
}

impl<M: PhysMem> Unit<M> {
    /// True when the fast path may serve `req`: caching on, a request it handles, and
    /// remapping enabled in scalable mode.
    /// `translate` checks it once, for both the front-cache probe and the fast path.
    #[inline(always)]
    pub(crate) fn fast_path_applies(&self, req: &Request) -> bool {
        let state = self.root_state();
        self.caches.enabled
            && front_eligible(req)
            && state.enabled()
            && state.ttm() == Ttm::Scalable
            && self.config.ecap.smts()
    }

    /// The translation of `req` if the context cache, PASID cache and IOTLB all hit
    /// cleanly; otherwise `None`, with what the walker can reuse left in `found` (the
    /// walker's own prefetch, so nothing is copied). The front cache was tried first. Only
    /// for requests [`Unit::fast_path_applies`] to.
    #[inline]
    pub(crate) fn fast_path(&self, req: &Request, found: &mut Prefetch) -> Option<Translation> {
        self.fast_hit(req, found)
    }

    /// One probe of the front cache, then a check that the three cache entries behind the
    /// answer are still cached unchanged. Only for requests [`Unit::fast_path_applies`] to.
    #[inline(always)]
    pub(crate) fn front_hit(&self, req: &Request) -> Option<Translation> {
        let caches = &self.caches;
        // The thread's index picks its front cache and, on a hit, its counters.
        let shard = shard_index();
        let key = FrontEntry::key(req.sid, req.pasid, front_privileged(req), req.addr);
        let entry = FrontEntry::decode(&caches.front(shard)?.lookup(&key)?);
        if entry.clears != caches.full_clears() {
            return None;
        }
        let [context, pasid, iotlb] = entry.sources;
        let context = caches.context.current(context)?;
        let pasid = caches.pasid.current(pasid)?;
        let iotlb = caches.iotlb.current(iotlb)?;
        if (req.access.needs_write() && !entry.dirty) || !entry.perms.allow(req.access) {
            return None;
        }
        context.touch();
        pasid.touch();
        iotlb.touch();
        self.counters.shard_at(shard).inc(Counter::FastHits);
        Some(entry.translation(req.addr))
    }

    /// The context cache, PASID cache and IOTLB probed in turn; a clean hit also fills the
    /// front cache.
    #[inline]
    fn fast_hit(&self, req: &Request, found: &mut Prefetch) -> Option<Translation> {
        let caches = &self.caches;
        found.clears = caches.full_clears();
        let (raw_ctx, ctx_ref) = caches
            .context
            .lookup_ref(&CachedContext::key(req.sid, false))?;
        let CachedContext::Scalable(ctx) = CachedContext::decode(&raw_ctx) else {
            return None;
        };
        found.ctx = Some((ctx, ctx_ref));
        if req.pasid.is_some() && !ctx.paside {
            return None;
        }
        let ecap = self.config.ecap;
        let pasid = ctx.effective_pasid(req, ecap.rps(), self.limits.pasid_bits)?;
        let (raw_pe, pasid_ref) = caches.pasid.lookup_ref(&CachedPasid::key(req.sid, pasid))?;
        let CachedPasid::Present(pe) = CachedPasid::decode(&raw_pe) else {
            return None;
        };
        found.pasid = Some((pasid, pe, pasid_ref));
        let privileged = ctx.privileged(req, ecap.rprivs());
        if (privileged && !pe.sre) || pe.pgtt == Pgtt::PassThrough {
            return None;
        }
        let tag_pasid = pe.pgtt.uses_first_stage().then_some(pasid);
        // The same probe as the walker's IOTLB lookup.
        let hit = lookup_page(&caches.iotlb, |size| {
            IotlbEntry::key(pe.did, tag_pasid, req.addr, size)
        });
        let Some((raw, iotlb_ref, size)) = hit else {
            found.iotlb_absent = true;
            return None;
        };
        let entry = IotlbEntry::decode(&raw);
        let perms = self.fast_rights(req, &entry, &pe, privileged)?;
        let t = entry.translation(req.addr, size, perms, pe.did, true);
        // An output in the interrupt range faults (SGN.8): the walker reports it.
        if vtd_spec::addr::in_interrupt_range(t.hpa) {
            return None;
        }
        self.counters.inc(Counter::FastHits);
        self.front_fill(
            req,
            &entry,
            size,
            perms,
            pe.did,
            ([ctx_ref, pasid_ref, iotlb_ref], found.clears),
        );
        Some(t)
    }

    /// The rights `req` gets from IOTLB `entry` when the fast path may serve it: a present
    /// entry, every dirty flag a write needs already set, and rights that allow the
    /// access. `None` leaves the request to the walker.
    #[inline]
    fn fast_rights(
        &self,
        req: &Request,
        entry: &IotlbEntry,
        pe: &PasidCtx,
        privileged: bool,
    ) -> Option<Perms> {
        if entry.kind == IotlbKind::NotPresent || (req.access.needs_write() && !entry.dirty) {
            return None;
        }
        let zlr = self.config.cap.zlr();
        let rights = entry.rights(req, pe.fs.wpe, pe.fs.smep, pe.ss.ssee, privileged, zlr);
        rights.ok()
    }

    /// Remember in the front cache what IOTLB `entry` (of page `size`) answers `req`, tied
    /// to the context-cache, PASID-cache and IOTLB entries in `sources` and to the count
    /// of full clears read before they were looked up.
    #[inline]
    fn front_fill(
        &self,
        req: &Request,
        entry: &IotlbEntry,
        size: PageSize,
        perms: Perms,
        did: u16,
        (sources, clears): ([SlotRef; 3], u64),
    ) {
        let page_in_entry = req.addr & size.offset_mask() & !0xFFF;
        // Both callers checked this very page against the interrupt range, which starts and
        // ends on 4 KiB boundaries.
        debug_assert!(!vtd_spec::addr::in_interrupt_range(
            entry.hpa | page_in_entry
        ));
        let front = FrontEntry {
            hpa: entry.hpa | page_in_entry,
            gpa: entry.gpa | page_in_entry,
            perms,
            dirty: entry.dirty,
            kind: entry.kind,
            size,
            did,
            sources,
            clears,
        };
        let key = FrontEntry::key(req.sid, req.pasid, front_privileged(req), req.addr);
        let front_cache = self.caches.front_or_make(shard_index());
        front_cache.insert(&key, &front.encode(), Unguarded);
    }
}

impl<M: PhysMem, O: WalkObserver> Walker<'_, M, O> {
    /// After a walk that filled the IOTLB (the entry sits at `iotlb_ref`): the front-cache
    /// entry the fast path would make on the next identical request, made now.
    ///
    /// Only when the fast path served this walk's context and PASID entries from the
    /// caches (so their slots are known and the request is one it handles), and the next
    /// fast path would find this very IOTLB entry: a 4 KiB page is probed first, and a
    /// larger one only when the fast path saw no entry of any size. The front entry is
    /// served only while all three entries stay cached unchanged, like one the fast path
    /// makes.
    pub(super) fn front_fill_after_walk(
        &self,
        pe: &PasidCtx,
        privileged: bool,
        entry: &IotlbEntry,
        size: PageSize,
        iotlb_ref: SlotRef,
    ) {
        let (Some((_, ctx_ref)), Some((_, _, pasid_ref))) =
            (self.prefetch.ctx, self.prefetch.pasid)
        else {
            return;
        };
        // The fast path filled the prefetch, so the request is one it handles.
        if size != PageSize::Size4K && !self.prefetch.iotlb_absent {
            return;
        }
        let unit = self.unit;
        let Some(perms) = unit.fast_rights(self.req, entry, pe, privileged) else {
            return;
        };
        unit.front_fill(
            self.req,
            entry,
            size,
            perms,
            pe.did,
            ([ctx_ref, pasid_ref, iotlb_ref], self.prefetch.clears),
        );
    }
}

/// The privilege bit of a front-cache key: the request's PR, only with a PASID.
#[inline]
fn front_privileged(req: &Request) -> bool {
    req.pasid.is_some() && req.privileged
}
