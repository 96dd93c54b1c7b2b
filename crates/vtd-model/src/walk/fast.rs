//! The IOTLB-hit fast path: context cache, PASID cache and IOTLB all hit and the cached
//! rights allow the request.
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
use crate::cache::{CachedContext, CachedPasid, IotlbEntry, IotlbKind};
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
        let mut found = Prefetch::default();
        match self.fast_hit(req, &mut found) {
            Some(t) => FastPath::Hit(t),
            None => FastPath::Walk(found),
        }
    }

    #[inline]
    fn fast_hit(&self, req: &Request, found: &mut Prefetch) -> Option<Translation> {
        let caches = &self.caches;
        if !caches.enabled || req.address_type != AddressType::Untranslated {
            return None;
        }
        let state = self.root_state();
        if !state.enabled() || state.ttm() != Ttm::Scalable || !self.config.ecap.smts() {
            return None;
        }
        let CachedContext::Scalable(ctx) =
            CachedContext::decode(&caches.context.lookup(&CachedContext::key(req.sid, false))?)
        else {
            return None;
        };
        found.ctx = Some(ctx);
        if req.pasid.is_some() && !ctx.paside {
            return None;
        }
        let ecap = self.config.ecap;
        let pasid = ctx.effective_pasid(req, ecap.rps(), self.limits.pasid_bits)?;
        let raw_pe = caches.pasid.lookup(&CachedPasid::key(req.sid, pasid))?;
        let pe = CachedPasid::fast_view(&raw_pe)?;
        found.pasid = Some((pasid, raw_pe));
        let privileged = ctx.privileged(req, ecap.rprivs());
        if (privileged && !pe.sre) || (req.execute && (req.pasid.is_none() || !pe.ere)) {
            return None;
        }
        if pe.pgtt == Pgtt::PassThrough {
            return None;
        }
        let tag_pasid = pe.pgtt.uses_first_stage().then_some(pasid);
        let probe = |size| {
            caches
                .iotlb
                .lookup(&IotlbEntry::key(pe.did, tag_pasid, req.addr, size))
        };
        let (raw, size) = match probe(PageSize::Size4K) {
            Some(raw) => (raw, PageSize::Size4K),
            None => match probe(PageSize::Size2M) {
                Some(raw) => (raw, PageSize::Size2M),
                None => match probe(PageSize::Size1G) {
                    Some(raw) => (raw, PageSize::Size1G),
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
        let nested = entry.kind == IotlbKind::Nested;
        Some(Translation {
            hpa: entry.hpa | offset,
            page_size: size,
            perms,
            kind: match entry.kind {
                IotlbKind::FirstStage => TranslationKind::FirstStage,
                IotlbKind::Nested => TranslationKind::Nested,
                _ => TranslationKind::SecondStage,
            },
            did: Some(pe.did),
            gpa: nested.then_some(entry.gpa | offset),
            from_iotlb: true,
        })
    }
}
