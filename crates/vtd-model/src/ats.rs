//! DMA from ATS-capable endpoints through their device-TLB (§6.4, §8.3 types 3 and 8).
//!
//! The device-TLB lives in the endpoint; the model keeps it next to the unit so that a
//! scenario can drive an ATS device with one call. On a hit the endpoint sends a
//! translated request (AT=10b) that the unit passes when the context entry's DTE is set;
//! on a miss it sends a translation request (AT=01b), caches the answer, then sends the
//! translated request. An entry stays until a device-TLB invalidation drops it.

use vtd_spec::addr::PageSize;

use crate::cache::{DevTlbEntry, lookup_page, size_code};
use crate::fault::Fault;
use crate::mem::PhysMem;
use crate::request::{AddressType, Request, Translation, TranslationKind};
use crate::stats::Counter;
use crate::unit::Unit;

impl<M: PhysMem> Unit<M> {
    /// A DMA from an ATS-capable endpoint: device-TLB lookup, translation request on a
    /// miss, then the translated request. Returns the translation the access used.
    pub fn translate_ats(&self, req: &Request) -> Result<Translation, Fault> {
        let untranslated = req.with_address_type(AddressType::Untranslated);
        if self.caches.enabled {
            if let Some((entry, size)) = self.devtlb_lookup(&untranslated)
                && entry.perms.allow(req.access)
            {
                self.counters.inc(Counter::DevTlbHits);
                let hpa = entry.hpa | (req.addr & size.offset_mask());
                self.translated_request(&untranslated, hpa)?;
                return Ok(Translation {
                    hpa,
                    page_size: size,
                    perms: entry.perms,
                    kind: TranslationKind::PreTranslated,
                    did: None,
                    gpa: None,
                    from_iotlb: false,
                });
            }
            self.counters.inc(Counter::DevTlbMisses);
        }
        let epoch = self.caches.epoch();
        let translation =
            self.translate(&untranslated.with_address_type(AddressType::TranslationRequest))?;
        if self.caches.enabled {
            let key = DevTlbEntry::key(req.sid, req.pasid, req.addr, translation.page_size);
            let entry = DevTlbEntry {
                hpa: translation.page_base(),
                perms: translation.perms,
            };
            let inserted = self.caches.devtlb.insert_kind(
                &key,
                &entry.encode(),
                size_code(translation.page_size) as u32,
                self.caches.fill_from(epoch),
            );
            if inserted.is_none() {
                self.counters.inc(Counter::FillsDropped);
            }
        }
        self.translated_request(&untranslated, translation.hpa)?;
        Ok(translation)
    }

    fn devtlb_lookup(&self, req: &Request) -> Option<(DevTlbEntry, PageSize)> {
        let (raw, _, size) = lookup_page(&self.caches.devtlb, |size| {
            DevTlbEntry::key(req.sid, req.pasid, req.addr, size)
        })?;
        Some((DevTlbEntry::decode(&raw), size))
    }

    /// The translated request (AT=10b) carrying `hpa`.
    fn translated_request(&self, req: &Request, hpa: u64) -> Result<Translation, Fault> {
        let mut translated = req.with_address_type(AddressType::Translated);
        translated.addr = hpa;
        self.translate(&translated)
    }
}
