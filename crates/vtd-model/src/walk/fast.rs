//! The IOTLB-hit fast path: context cache, PASID cache and IOTLB all hit and the cached
//! rights allow the request.
//!
//! It tries the front cache first (one probe, then a check that the three entries behind
//! the answer are still cached unchanged), then the three caches in turn.
//!
//! It decides nothing the full walk would decide differently: whenever a step is not a
//! clean hit (a miss, a cached not-present entry, a denial, a dirty flag still to set,
//! pass-through, an ATS request) it gives up and the walker does the whole translation,
//! with the same helpers for the decisions both make. A fast hit counts once; the
//! counter snapshot adds it to every counter a walker hit would have moved.

use vtd_spec::addr::PageSize;
use vtd_spec::pasid::Pgtt;
use vtd_spec::regs::Ttm;

use super::SmContext;
use crate::cache::{CachedContext, CachedPasid, FrontEntry, IotlbEntry, IotlbKind, size_code};
use crate::mem::PhysMem;
use crate::request::{AddressType, Request, Translation, TranslationKind};
use crate::stats::Counter;
use crate::unit::Unit;

/// What the fast path found before it had to give up: the cache lookups the walker need
/// not repeat. Every field is a clean hit (or, for the IOTLB, a clean miss).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Prefetch {
    /// The context-cache entry of the source id.
    pub(crate) ctx: Option<SmContext>,
    /// The PASID looked up and its PASID-cache entry, packed.
    pub(crate) pasid: Option<(u32, [u64; 3])>,
    /// The IOTLB holds no entry of any page size for the request.
    pub(crate) iotlb_absent: bool,
}

/// The fast path's answer.
pub(crate) enum FastPath {
    /// Served from the caches.
    Hit(Translation),
    /// The walker must translate; here is what the fast path already looked up.
    Walk(Prefetch),
}

impl<M: PhysMem> Unit<M> {
    /// The translation of `req` if every cache hits cleanly; otherwise what the walker can
    /// reuse.
    #[inline]
    pub(crate) fn fast_path(&self, req: &Request) -> FastPath {
        if !self.caches.enabled
            || req.address_type != AddressType::Untranslated
            || req.execute
            || req.len == 0
        {
            return FastPath::Walk(Prefetch::default());
        }
        let state = self.root_state();
        if !state.enabled() || state.ttm() != Ttm::Scalable || !self.config.ecap.smts() {
            return FastPath::Walk(Prefetch::default());
        }
        if let Some(t) = self.front_hit(req) {
            return FastPath::Hit(t);
        }
        let mut found = Prefetch::default();
        match self.fast_hit(req, &mut found) {
            Some(t) => FastPath::Hit(t),
            None => FastPath::Walk(found),
        }
    }

    /// One probe of the front cache, then a check that the three cache entries behind the
    /// answer are still cached unchanged.
    #[inline]
    fn front_hit(&self, req: &Request) -> Option<Translation> {
        let caches = &self.caches;
        let privileged = req.pasid.is_some() && req.privileged;
        let key = FrontEntry::key(req.sid, req.pasid, privileged, req.addr);
        let entry = FrontEntry::decode(&caches.front.lookup(&key)?);
        let [context, pasid, iotlb] = entry.sources;
        let current = caches.context.still_cached(context)
            && caches.pasid.still_cached(pasid)
            && caches.iotlb.still_cached(iotlb);
        if !current || (req.access.needs_write() && !entry.dirty) || !entry.perms.allow(req.access)
        {
            return None;
        }
        caches.context.touch(context);
        caches.pasid.touch(pasid);
        caches.iotlb.touch(iotlb);
        self.counters.inc(Counter::FastHits);
        let offset = req.addr & 0xFFF;
        Some(Translation {
            hpa: entry.hpa | offset,
            page_size: entry.size,
            perms: entry.perms,
            kind: translation_kind(entry.kind),
            did: Some(entry.did),
            gpa: (entry.kind == IotlbKind::Nested).then_some(entry.gpa | offset),
            from_iotlb: true,
        })
    }

    /// The context cache, PASID cache and IOTLB probed in turn; a clean hit also fills the
    /// front cache.
    #[inline]
    fn fast_hit(&self, req: &Request, found: &mut Prefetch) -> Option<Translation> {
        let caches = &self.caches;
        let (raw_ctx, ctx_ref) = caches
            .context
            .lookup_ref(&CachedContext::key(req.sid, false))?;
        let CachedContext::Scalable(ctx) = CachedContext::decode(&raw_ctx) else {
            return None;
        };
        found.ctx = Some(ctx);
        if req.pasid.is_some() && !ctx.paside {
            return None;
        }
        let ecap = self.config.ecap;
        let pasid = ctx.effective_pasid(req, ecap.rps(), self.limits.pasid_bits)?;
        let (raw_pe, pasid_ref) = caches.pasid.lookup_ref(&CachedPasid::key(req.sid, pasid))?;
        let pe = CachedPasid::fast_view(&raw_pe)?;
        found.pasid = Some((pasid, raw_pe));
        let privileged = ctx.privileged(req, ecap.rprivs());
        if (privileged && !pe.sre) || pe.pgtt == Pgtt::PassThrough {
            return None;
        }
        let tag_pasid = pe.pgtt.uses_first_stage().then_some(pasid);
        let probe = |size| {
            let held = caches.iotlb.may_hold(size_code(size) as u32);
            held.then(|| {
                caches
                    .iotlb
                    .lookup_ref(&IotlbEntry::key(pe.did, tag_pasid, req.addr, size))
            })
            .flatten()
        };
        let ((raw, iotlb_ref), size) = match probe(PageSize::Size4K) {
            Some(hit) => (hit, PageSize::Size4K),
            None => match probe(PageSize::Size2M) {
                Some(hit) => (hit, PageSize::Size2M),
                None => match probe(PageSize::Size1G) {
                    Some(hit) => (hit, PageSize::Size1G),
                    None => {
                        found.iotlb_absent = true;
                        return None;
                    }
                },
            },
        };
        let entry = IotlbEntry::decode(&raw);
        if entry.kind == IotlbKind::NotPresent || (req.access.needs_write() && !entry.dirty) {
            return None;
        }
        let perms = entry
            .rights(
                req,
                pe.wpe,
                pe.smep,
                pe.ssee,
                privileged,
                self.config.cap.zlr(),
            )
            .ok()?;
        self.counters.inc(Counter::FastHits);
        let offset = req.addr & size.offset_mask();
        let page_in_entry = offset & !0xFFF;
        let front = FrontEntry {
            hpa: entry.hpa | page_in_entry,
            gpa: entry.gpa | page_in_entry,
            perms,
            dirty: entry.dirty,
            kind: entry.kind,
            size,
            did: pe.did,
            sources: [ctx_ref, pasid_ref, iotlb_ref],
        };
        let key = FrontEntry::key(
            req.sid,
            req.pasid,
            req.pasid.is_some() && req.privileged,
            req.addr,
        );
        caches.front.insert(&key, &front.encode(), || true);
        Some(Translation {
            hpa: entry.hpa | offset,
            page_size: size,
            perms,
            kind: translation_kind(entry.kind),
            did: Some(pe.did),
            gpa: (entry.kind == IotlbKind::Nested).then_some(entry.gpa | offset),
            from_iotlb: true,
        })
    }
}

fn translation_kind(kind: IotlbKind) -> TranslationKind {
    match kind {
        IotlbKind::FirstStage => TranslationKind::FirstStage,
        IotlbKind::Nested => TranslationKind::Nested,
        _ => TranslationKind::SecondStage,
    }
}
