//! Cache tags and range flushes (cache.c).
//!
//! A tag records that some unit may cache translations of a domain under a DID (and
//! PASID), or that a device's TLB may. Attaching a device to a nested domain tags the
//! nested domain (IOTLB, DEVTLB) and its parent (NESTING_IOTLB, NESTING_DEVTLB), so a
//! stage-2 change on the parent flushes the nested DIDs: their combined entries are
//! indexed by first-stage address and cannot be found by GPA (§6.4).

use vtd_spec::inv::{
    DevTlbInvDesc, IotlbInvDesc, PasidDevTlbInvDesc, PasidIotlbGranularity, PasidIotlbInvDesc,
    RawDescriptor,
};
use vtd_spec::regs::{Cap, IotlbGranularity};

use super::{Domain, IntelDriver, State};

/// What a tag says is cached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TagKind {
    /// The unit's IOTLB and paging-structure caches, for this domain's own DID.
    Iotlb,
    /// A device's TLB, for this domain.
    DevTlb,
    /// The unit's caches, for a nested child's DID (tag on the parent).
    NestingIotlb,
    /// A device's TLB, for a nested child (tag on the parent).
    NestingDevTlb,
}

/// One cache tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CacheTag {
    pub(crate) kind: TagKind,
    pub(crate) unit: usize,
    pub(crate) did: u16,
    pub(crate) pasid: u32,
    /// Source id of the device (device-TLB tags).
    pub(crate) sid: u16,
    pub(crate) users: u32,
}

/// Page-selective address and mask covering `[start, end]` (calculate_psi_aligned_address):
/// the page count rounded up to a power of two, grown until one aligned block holds both
/// ends, capped at 2^52 pages.
pub(crate) fn psi_aligned(start: u64, end: u64) -> (u64, u8) {
    let pages = ((end >> 12) - (start >> 12)).saturating_add(1);
    let mut mask = pages.next_power_of_two().trailing_zeros().min(52) as u8;
    let mut aligned = (start >> 12) & !((1u64 << mask) - 1);
    while mask < 52 && aligned + (1u64 << mask) - 1 < end >> 12 {
        mask += 1;
        aligned = (start >> 12) & !((1u64 << mask) - 1);
    }
    (aligned << 12, mask)
}

/// Device-TLB descriptor address field for `[addr, addr + 2^mask pages)` with S=1, or a
/// single page with S=0.
fn devtlb_addr(addr: u64, mask: u8) -> (u64, bool) {
    if mask == 0 {
        return (addr >> 12, false);
    }
    // Size encoded as the number of trailing one-bits below the aligned page number.
    let ones = (1u64 << (mask - 1)) - 1;
    ((addr >> 12) | ones, true)
}

fn raw(lo: u128) -> RawDescriptor {
    RawDescriptor { lo, hi: 0 }
}

/// An IOTLB invalidation (type 2) as qi_desc_iotlb builds it: DW and DR follow CAP.DWD
/// and CAP.DRD on every descriptor; domain-selective ones carry no address, mask or hint.
pub(crate) fn iotlb_desc(cap: &Cap, did: u16, psi: Option<(u64, u8, bool)>) -> RawDescriptor {
    let d = IotlbInvDesc::new()
        .with_did(did)
        .with_dw(cap.dwd())
        .with_dr(cap.drd());
    let d = match psi {
        Some((addr, mask, ih)) => d
            .with_g(IotlbGranularity::Page)
            .with_addr(addr >> 12)
            .with_am(mask)
            .with_ih(ih),
        None => d.with_g(IotlbGranularity::Domain),
    };
    raw(d.into_bits())
}

impl IntelDriver {
    /// Record that `dom` may be cached under (`unit`, `did`, `pasid`).
    pub(crate) fn tag_assign(
        st: &mut State,
        dom: u64,
        kind: TagKind,
        unit: usize,
        did: u16,
        pasid: u32,
        sid: u16,
    ) {
        let Some(d) = st.domains.get_mut(&dom) else {
            return;
        };
        let tags = &mut d.common_mut().tags;
        match tags.iter_mut().find(|t| {
            t.kind == kind && t.unit == unit && t.did == did && t.pasid == pasid && t.sid == sid
        }) {
            Some(t) => t.users += 1,
            None => tags.push(CacheTag {
                kind,
                unit,
                did,
                pasid,
                sid,
                users: 1,
            }),
        }
    }

    /// Drop one use of a tag.
    pub(crate) fn tag_unassign(
        st: &mut State,
        dom: u64,
        kind: TagKind,
        unit: usize,
        did: u16,
        pasid: u32,
        sid: u16,
    ) {
        let Some(d) = st.domains.get_mut(&dom) else {
            return;
        };
        let tags = &mut d.common_mut().tags;
        if let Some(i) = tags.iter().position(|t| {
            t.kind == kind && t.unit == unit && t.did == did && t.pasid == pasid && t.sid == sid
        }) {
            tags[i].users -= 1;
            if tags[i].users == 0 {
                tags.remove(i);
            }
        }
    }

    /// Flush the caches that may hold translations of `[start, end]` in `dom`
    /// (cache_tag_flush_range). `ih`: only leaves changed.
    pub(crate) fn flush_range(&self, st: &mut State, dom: u64, start: u64, end: u64, ih: bool) {
        let Some(d) = st.domains.get(&dom) else {
            return;
        };
        let first_stage = matches!(d, Domain::Nested(_));
        let (addr, mask) = psi_aligned(start, end);
        let mut per_unit: Vec<Vec<RawDescriptor>> = vec![Vec::new(); self.hw.len()];
        for tag in &d.common().tags {
            let hw = &self.hw[tag.unit];
            let descs = &mut per_unit[tag.unit];
            match (tag.kind, first_stage) {
                // A nested domain's own entries are first-stage: PASID-based invalidation.
                (TagKind::Iotlb, true) => {
                    let d = PasidIotlbInvDesc::new()
                        .with_g(PasidIotlbGranularity::Page)
                        .with_did(tag.did)
                        .with_pasid(tag.pasid)
                        .with_addr(addr >> 12)
                        .with_am(mask)
                        .with_ih(ih);
                    descs.push(raw(d.into_bits()));
                }
                (TagKind::Iotlb | TagKind::NestingIotlb, _) => {
                    let page_selective = hw.cap.psi() && mask <= hw.cap.mamv();
                    let psi = page_selective.then_some((addr, mask, ih));
                    descs.push(iotlb_desc(&hw.cap, tag.did, psi));
                }
                (TagKind::DevTlb, _) => descs.push(devtlb_desc(tag.sid, tag.pasid, addr, mask)),
                // A stage-2 change cannot be mapped to the nested translations a device
                // cached: flush its whole TLB.
                (TagKind::NestingDevTlb, _) => descs.push(devtlb_desc(tag.sid, tag.pasid, 0, 52)),
            }
        }
        for (unit, descs) in per_unit.iter().enumerate() {
            self.submit(st, unit, descs);
        }
    }

    /// Flush after a sync with nothing gathered (core semantics §5.4.4): Linux computes
    /// mask 53, past any MAMV, so every IOTLB tag gets a domain-selective invalidation.
    /// The device-TLB part is undefined in C; this model flushes each device TLB whole.
    pub(crate) fn flush_empty_gather(&self, st: &mut State, dom: u64) {
        let Some(d) = st.domains.get(&dom) else {
            return;
        };
        let mut per_unit: Vec<Vec<RawDescriptor>> = vec![Vec::new(); self.hw.len()];
        for tag in &d.common().tags {
            let desc = match tag.kind {
                TagKind::Iotlb | TagKind::NestingIotlb => {
                    iotlb_desc(&self.hw[tag.unit].cap, tag.did, None)
                }
                TagKind::DevTlb | TagKind::NestingDevTlb => devtlb_desc(tag.sid, tag.pasid, 0, 52),
            };
            per_unit[tag.unit].push(desc);
        }
        for (unit, descs) in per_unit.iter().enumerate() {
            self.submit(st, unit, descs);
        }
    }

    /// The flush after a map into a domain with `iotlb_sync_map` (cache_tag_flush_range_np,
    /// core semantics §5.3): on a caching-mode unit, IOTLB invalidations (IH 0) for the
    /// domain's IOTLB tags, nothing for device TLBs (non-present entries are not cached
    /// there); elsewhere a write-buffer flush where the unit requires one.
    pub(crate) fn flush_range_np(&self, st: &mut State, dom: u64, start: u64, end: u64) {
        let Some(d) = st.domains.get(&dom) else {
            return;
        };
        let (addr, mask) = psi_aligned(start, end);
        let mut per_unit: Vec<Vec<RawDescriptor>> = vec![Vec::new(); self.hw.len()];
        let mut wbf = vec![false; self.hw.len()];
        for tag in &d.common().tags {
            let hw = &self.hw[tag.unit];
            if !hw.cap.cm() {
                wbf[tag.unit] |= hw.cap.rwbf();
                continue;
            }
            if matches!(tag.kind, TagKind::Iotlb | TagKind::NestingIotlb) {
                let psi = (hw.cap.psi() && mask <= hw.cap.mamv()).then_some((addr, mask, false));
                per_unit[tag.unit].push(iotlb_desc(&hw.cap, tag.did, psi));
            }
        }
        for (unit, descs) in per_unit.iter().enumerate() {
            self.submit(st, unit, descs);
            if wbf[unit] {
                self.write_buffer_flush(unit);
            }
        }
    }

    /// GCMD.WBF and wait for GSTS.WBFS to clear (iommu_flush_write_buffer).
    pub(crate) fn write_buffer_flush(&self, unit: usize) {
        let hw = &self.hw[unit].unit;
        let _ = hw.mmio_write(
            vtd_spec::regs::offset::GCMD,
            4,
            super::qi::gcmd_with(hw, vtd_spec::regs::GlobalCommand::WBF),
        );
    }
}

/// A device-TLB invalidation of `2^mask` pages at `addr` for `sid` (PASID 0: the
/// request-without-PASID form).
fn devtlb_desc(sid: u16, pasid: u32, addr: u64, mask: u8) -> RawDescriptor {
    let (field, s) = devtlb_addr(addr, mask);
    devtlb_raw(sid, pasid, field & ((1 << 52) - 1), s)
}

/// A device-TLB descriptor with the ADDR field `field` and size bit `s`. Every simulated
/// device is a physical function, so its PFSID is its own source id (`info->pfsid`),
/// which qi_desc_dev_iotlb and qi_desc_dev_iotlb_pasid always fill in.
pub(crate) fn devtlb_raw(sid: u16, pasid: u32, field: u64, s: bool) -> RawDescriptor {
    let (pfsid_lo, pfsid_hi) = ((sid & 0xF) as u8, sid >> 4);
    if pasid == 0 {
        raw(DevTlbInvDesc::new()
            .with_sid(sid)
            .with_pfsid_lo(pfsid_lo)
            .with_pfsid_hi(pfsid_hi)
            .with_s(s)
            .with_addr(field)
            .into_bits())
    } else {
        raw(PasidDevTlbInvDesc::new()
            .with_sid(sid)
            .with_pfsid_lo(pfsid_lo)
            .with_pfsid_hi(pfsid_hi)
            .with_pasid(pasid)
            .with_s(s)
            .with_addr(field)
            .into_bits())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psi_mask_covers_a_single_page() {
        assert_eq!(psi_aligned(0x5000, 0x5FFF), (0x5000, 0));
    }

    #[test]
    fn psi_mask_grows_until_one_block_holds_both_ends() {
        // Two pages straddling a 2-page boundary need a 4-page block.
        assert_eq!(psi_aligned(0x3000, 0x4FFF), (0x0000, 3));
        assert_eq!(psi_aligned(0x4000, 0x5FFF), (0x4000, 1));
    }

    #[test]
    fn psi_for_everything_is_mask_52() {
        assert_eq!(psi_aligned(0, u64::MAX), (0, 52));
    }

    #[test]
    fn devtlb_size_field_encodes_the_mask() {
        assert_eq!(devtlb_addr(0x4000, 0), (4, false));
        assert_eq!(devtlb_addr(0x4000, 2), (0b101, true));
    }
}
