//! How each cache's entries are packed into 64-bit words, and how invalidation filters
//! read their tags back.
//!
//! Every helper is `#[inline]`: the walker is generic over the memory and observer, so
//! it is compiled in the crate that names them, and a plain function of this crate would
//! stay an out-of-line call there.

use vtd_spec::addr::PageSize;
use vtd_spec::context::LegacyTt;
use vtd_spec::fault::FaultReason;
use vtd_spec::pasid::Pgtt;

use super::seqcache::SlotRef;
use crate::request::{Perms, Translation, TranslationKind};
use crate::walk::{FsParams, LegacyCtx, PasidCtx, SmContext, SsParams};

const ADDR_MASK: u64 = !0xFFF;

#[inline]
fn bit(v: u64, n: u32) -> bool {
    v >> n & 1 != 0
}

/// The page-size code used in keys, and as the entry kind of size-keyed caches.
#[inline]
pub(crate) fn size_code(size: PageSize) -> u64 {
    match size {
        PageSize::Size4K => 0,
        PageSize::Size2M => 1,
        PageSize::Size1G => 2,
    }
}

#[inline]
fn size_from_code(code: u64) -> PageSize {
    match code & 3 {
        1 => PageSize::Size2M,
        2 => PageSize::Size1G,
        _ => PageSize::Size4K,
    }
}

/// Page key word: page base >> 12 with the size in the low two bits.
#[inline]
fn page_key(addr: u64, size: PageSize) -> u64 {
    (size.align_down(addr) >> 12) << 2 | size_code(size)
}

/// True when the page named by a page key word overlaps `[start, end]`.
#[inline]
fn page_overlaps(word: u64, start: u64, end: u64) -> bool {
    let size = size_from_code(word);
    let base = (word >> 2) << 12;
    base <= end && base.saturating_add(size.bytes() - 1) >= start
}

/// Tag word of PASID-tagged entries: DID, PASID and whether a PASID is present.
#[inline]
fn did_pasid_key(did: u16, pasid: Option<u32>) -> u64 {
    did as u64 | (pasid.unwrap_or(0) as u64 & 0xF_FFFF) << 16 | (pasid.is_some() as u64) << 36
}

#[inline]
fn key_pasid(word: u64) -> Option<u32> {
    bit(word, 36).then_some((word >> 16) as u32 & 0xF_FFFF)
}

/// Prefix key word of a paging-structure-cache entry at `level`: the input bits that select
/// the entry, with the level in the low three bits.
#[inline]
fn prefix_key(input: u64, level: u8) -> u64 {
    (input >> prefix_shift(level)) << 3 | level as u64
}

#[inline]
fn prefix_shift(level: u8) -> u32 {
    12 + 9 * (level as u32 - 1)
}

#[inline]
fn prefix_overlaps(word: u64, start: u64, end: u64) -> bool {
    let level = (word & 7) as u8;
    if level == 0 {
        return false;
    }
    let shift = prefix_shift(level);
    let base = (word >> 3).checked_shl(shift).unwrap_or(0);
    let last = base.saturating_add((1u64 << shift.min(63)) - 1);
    base <= end && last >= start
}

/// A context-cache entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CachedContext {
    /// A scalable-mode context entry.
    Scalable(SmContext),
    /// A legacy context entry.
    Legacy(LegacyCtx),
    /// A not-present context entry, cached only in caching mode.
    NotPresent { fpd: bool },
}

impl CachedContext {
    const TAG_SCALABLE: u64 = 0;
    const TAG_LEGACY: u64 = 1;
    const TAG_NOT_PRESENT: u64 = 2;

    #[inline]
    pub(crate) fn key(sid: u16, legacy: bool) -> [u64; 1] {
        [sid as u64 | (legacy as u64) << 16]
    }

    #[inline]
    pub(crate) fn key_sid(key: &[u64; 1]) -> u16 {
        key[0] as u16
    }

    #[inline]
    pub(crate) fn encode(&self) -> [u64; 3] {
        match *self {
            CachedContext::Scalable(c) => [
                c.pasid_dir & ADDR_MASK
                    | c.dte as u64
                    | (c.paside as u64) << 1
                    | (c.rid_priv as u64) << 2
                    | (c.fpd as u64) << 3,
                c.pasid_limit as u64 | (c.rid_pasid as u64) << 32,
                Self::TAG_SCALABLE << 62,
            ],
            CachedContext::Legacy(c) => [
                c.ss.root & ADDR_MASK
                    | c.tt.into_bits() as u64
                    | (c.fpd as u64) << 2
                    | (c.ss.snooped as u64) << 3,
                c.did as u64 | (c.ss.levels as u64) << 16 | (c.ss.width as u64) << 24,
                Self::TAG_LEGACY << 62,
            ],
            CachedContext::NotPresent { fpd } => [fpd as u64, 0, Self::TAG_NOT_PRESENT << 62],
        }
    }

    #[inline]
    pub(crate) fn decode(v: &[u64; 3]) -> Self {
        match v[2] >> 62 {
            Self::TAG_SCALABLE => CachedContext::Scalable(SmContext {
                pasid_dir: v[0] & ADDR_MASK,
                pasid_limit: v[1] as u32,
                dte: bit(v[0], 0),
                paside: bit(v[0], 1),
                rid_pasid: (v[1] >> 32) as u32,
                rid_priv: bit(v[0], 2),
                fpd: bit(v[0], 3),
            }),
            Self::TAG_LEGACY => {
                let did = v[1] as u16;
                CachedContext::Legacy(LegacyCtx {
                    tt: LegacyTt::from_bits(v[0] as u8 & 3),
                    did,
                    fpd: bit(v[0], 2),
                    ss: SsParams {
                        root: v[0] & ADDR_MASK,
                        levels: (v[1] >> 16) as u8,
                        width: (v[1] >> 24) as u8 as u32,
                        ssade: false,
                        ssee: false,
                        snooped: bit(v[0], 3),
                        legacy: true,
                        did,
                    },
                })
            }
            _ => CachedContext::NotPresent { fpd: bit(v[0], 0) },
        }
    }

    /// The DID of a legacy entry (legacy domain-selective invalidation).
    #[inline]
    pub(crate) fn legacy_did(&self) -> Option<u16> {
        match self {
            CachedContext::Legacy(c) => Some(c.did),
            _ => None,
        }
    }
}

/// A PASID-cache entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CachedPasid {
    /// A present, valid PASID entry.
    Present(PasidCtx),
    /// A not-present directory or table entry, cached only in caching mode.
    NotPresent { fpd: bool, reason: FaultReason },
}

impl CachedPasid {
    #[inline]
    pub(crate) fn key(sid: u16, pasid: u32) -> [u64; 1] {
        [sid as u64 | (pasid as u64) << 16]
    }

    #[inline]
    pub(crate) fn key_pasid(key: &[u64; 1]) -> u32 {
        (key[0] >> 16) as u32
    }

    #[inline]
    pub(crate) fn encode(&self) -> [u64; 3] {
        match *self {
            CachedPasid::Present(p) => [
                p.fs.root & ADDR_MASK
                    | (p.fs.levels == 5) as u64
                    | (p.fs.wpe as u64) << 1
                    | (p.fs.eafe as u64) << 2
                    | (p.fs.nxe as u64) << 3
                    | (p.fs.smep as u64) << 4
                    | (p.sre as u64) << 5
                    | (p.ere as u64) << 6
                    | (p.fpd as u64) << 8,
                p.ss.root & ADDR_MASK
                    | p.ss.levels as u64
                    | (p.ss.ssade as u64) << 3
                    | (p.ss.ssee as u64) << 4
                    | (p.ss.snooped as u64) << 5,
                p.did as u64 | (p.pgtt.into_bits() as u64) << 16 | (p.ss.width as u64) << 19,
            ],
            CachedPasid::NotPresent { fpd, reason } => [fpd as u64, reason.code() as u64, 1 << 63],
        }
    }

    #[inline(always)]
    pub(crate) fn decode(v: &[u64; 3]) -> Self {
        if bit(v[2], 63) {
            return CachedPasid::NotPresent {
                fpd: bit(v[0], 0),
                reason: FaultReason::from_code(v[1] as u8).unwrap_or(FaultReason::SptNotPresent),
            };
        }
        let did = v[2] as u16;
        CachedPasid::Present(PasidCtx {
            pgtt: Pgtt::from_bits((v[2] >> 16) as u8),
            did,
            fpd: bit(v[0], 8),
            sre: bit(v[0], 5),
            ere: bit(v[0], 6),
            fs: FsParams {
                root: v[0] & ADDR_MASK,
                levels: if bit(v[0], 0) { 5 } else { 4 },
                wpe: bit(v[0], 1),
                eafe: bit(v[0], 2),
                nxe: bit(v[0], 3),
                smep: bit(v[0], 4),
            },
            ss: SsParams {
                root: v[1] & ADDR_MASK,
                levels: (v[1] & 7) as u8,
                width: (v[2] >> 19) as u8 as u32 & 0x7F,
                ssade: bit(v[1], 3),
                ssee: bit(v[1], 4),
                snooped: bit(v[1], 5),
                legacy: false,
                did,
            },
        })
    }

    /// The DID the entry is tagged with (0 for a negative entry).
    #[inline]
    pub(crate) fn did(&self) -> u16 {
        match self {
            CachedPasid::Present(p) => p.did,
            CachedPasid::NotPresent { .. } => 0,
        }
    }

    #[inline]
    pub(crate) fn is_negative(&self) -> bool {
        matches!(self, CachedPasid::NotPresent { .. })
    }
}

/// What produced an IOTLB entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IotlbKind {
    /// PGTT=001b.
    FirstStage,
    /// PGTT=010b or legacy mode.
    SecondStage,
    /// PGTT=011b.
    Nested,
    /// A not-present leaf, cached only in caching mode.
    NotPresent,
}

impl IotlbKind {
    /// The two-bit code IOTLB and front-cache entries store.
    #[inline]
    fn code(self) -> u64 {
        match self {
            IotlbKind::FirstStage => 0,
            IotlbKind::SecondStage => 1,
            IotlbKind::Nested => 2,
            IotlbKind::NotPresent => 3,
        }
    }

    /// The kind of a code from [`IotlbKind::code`]; bits above the low two are ignored.
    #[inline]
    fn from_code(code: u64) -> Self {
        match code & 3 {
            0 => IotlbKind::FirstStage,
            1 => IotlbKind::SecondStage,
            2 => IotlbKind::Nested,
            _ => IotlbKind::NotPresent,
        }
    }

    /// The kind of translation an entry of this kind gives.
    #[inline]
    pub(crate) fn translation_kind(self) -> TranslationKind {
        match self {
            IotlbKind::FirstStage => TranslationKind::FirstStage,
            IotlbKind::Nested => TranslationKind::Nested,
            _ => TranslationKind::SecondStage,
        }
    }
}

/// An IOTLB entry: a leaf translation with the rights of both stages kept apart, so that
/// requests of either privilege can be checked against it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IotlbEntry {
    pub(crate) kind: IotlbKind,
    /// Host-physical base of the page.
    pub(crate) hpa: u64,
    /// Guest-physical base of the page (nested), else 0.
    pub(crate) gpa: u64,
    /// Second-stage rights (all set for first-stage-only entries).
    pub(crate) ss_perms: Perms,
    /// First-stage R/W, U/S and XD accumulated over the path (R/W=U/S=1, XD=0 without a
    /// first stage).
    pub(crate) fs_rw: bool,
    pub(crate) fs_us: bool,
    pub(crate) fs_xd: bool,
    /// Every dirty flag a write needs is already set, so a write may hit.
    pub(crate) dirty: bool,
    /// Reason code of a cached not-present fault (0 otherwise), decoded only when used.
    pub(crate) reason_code: u8,
}

/// Why a cached translation does not allow a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Denial {
    /// The first-stage rights deny it, with this reason (SGN.2, SGN.6, SGN.3).
    FirstStage(FaultReason),
    /// The second-stage rights deny it.
    SecondStage(Perms),
}

impl IotlbEntry {
    /// The translation this entry gives input address `addr`: the page of `size` it holds
    /// for, the requester's rights `perms`, domain `did`. Both a walk and an IOTLB hit
    /// answer through it.
    #[inline]
    pub(crate) fn translation(
        &self,
        addr: u64,
        size: PageSize,
        perms: Perms,
        did: u16,
        from_iotlb: bool,
    ) -> Translation {
        let offset = addr & size.offset_mask();
        let bases = (self.hpa, self.gpa);
        cached_translation(self.kind, bases, offset, size, perms, did, from_iotlb)
    }

    /// The fault a cached not-present entry gives.
    #[inline]
    pub(crate) fn not_present_reason(&self) -> Option<FaultReason> {
        if self.kind == IotlbKind::NotPresent {
            FaultReason::from_code(self.reason_code)
        } else {
            None
        }
    }

    /// The rights `req` has through this entry (§4.4 for the first stage, §5.4 for the
    /// second), or why it is denied. `wpe`, `smep` and `ssee` come from the PASID entry.
    #[inline]
    pub(crate) fn rights(
        &self,
        req: &crate::request::Request,
        wpe: bool,
        smep: bool,
        ssee: bool,
        privileged: bool,
        zlr: bool,
    ) -> Result<Perms, Denial> {
        let fs_perms = if self.kind == IotlbKind::SecondStage {
            Perms::all()
        } else {
            let (rw, us, xd) = (self.fs_rw, self.fs_us, self.fs_xd);
            crate::walk::fs_rights(req, rw, us, xd, wpe, smep, privileged)
                .map_err(Denial::FirstStage)?
        };
        if self.kind == IotlbKind::FirstStage {
            return Ok(fs_perms);
        }
        if !crate::walk::ss_allows(self.ss_perms, req, zlr) {
            return Err(Denial::SecondStage(self.ss_perms));
        }
        let ss_mask = if ssee {
            Perms::all()
        } else {
            Perms::READ | Perms::WRITE
        };
        Ok(fs_perms & self.ss_perms & ss_mask)
    }

    #[inline]
    pub(crate) fn key(did: u16, pasid: Option<u32>, addr: u64, size: PageSize) -> [u64; 2] {
        [page_key(addr, size), did_pasid_key(did, pasid)]
    }

    #[inline]
    pub(crate) fn key_did(key: &[u64; 2]) -> u16 {
        key[1] as u16
    }

    #[inline]
    pub(crate) fn key_pasid(key: &[u64; 2]) -> Option<u32> {
        key_pasid(key[1])
    }

    #[inline]
    pub(crate) fn key_overlaps(key: &[u64; 2], start: u64, end: u64) -> bool {
        page_overlaps(key[0], start, end)
    }

    #[inline]
    pub(crate) fn encode(&self) -> [u64; 2] {
        let kind = self.kind.code();
        [
            self.hpa & ADDR_MASK
                | self.ss_perms.bits() as u64
                | (self.fs_rw as u64) << 3
                | (self.fs_us as u64) << 4
                | (self.fs_xd as u64) << 5
                | (self.dirty as u64) << 6
                | kind << 7,
            self.gpa & ADDR_MASK | self.reason_code as u64,
        ]
    }

    #[inline]
    pub(crate) fn decode(v: &[u64; 2]) -> Self {
        let kind = IotlbKind::from_code(v[0] >> 7);
        Self {
            kind,
            hpa: v[0] & ADDR_MASK,
            gpa: v[1] & ADDR_MASK,
            ss_perms: Perms::from_bits_truncate(v[0] as u8 & 7),
            fs_rw: bit(v[0], 3),
            fs_us: bit(v[0], 4),
            fs_xd: bit(v[0], 5),
            dirty: bit(v[0], 6),
            reason_code: v[1] as u8,
        }
    }
}

/// A first-stage paging-structure-cache entry: a non-leaf entry at some level with the
/// rights accumulated down to it and its next table, already translated under nesting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FsPscEntry {
    /// Next table as the first stage names it (GPA under nesting).
    pub(crate) next_table: u64,
    /// Next table's host-physical address.
    pub(crate) next_table_hpa: u64,
    pub(crate) rw: bool,
    pub(crate) us: bool,
    pub(crate) xd: bool,
}

impl FsPscEntry {
    #[inline]
    pub(crate) fn key(did: u16, pasid: u32, input: u64, level: u8) -> [u64; 2] {
        [prefix_key(input, level), did_pasid_key(did, Some(pasid))]
    }

    #[inline]
    pub(crate) fn key_did(key: &[u64; 2]) -> u16 {
        key[1] as u16
    }

    #[inline]
    pub(crate) fn key_pasid(key: &[u64; 2]) -> u32 {
        key_pasid(key[1]).unwrap_or(0)
    }

    #[inline]
    pub(crate) fn key_overlaps(key: &[u64; 2], start: u64, end: u64) -> bool {
        prefix_overlaps(key[0], start, end)
    }

    #[inline]
    pub(crate) fn encode(&self) -> [u64; 2] {
        [
            self.next_table & ADDR_MASK
                | self.rw as u64
                | (self.us as u64) << 1
                | (self.xd as u64) << 2,
            self.next_table_hpa & ADDR_MASK,
        ]
    }

    #[inline]
    pub(crate) fn decode(v: &[u64; 2]) -> Self {
        Self {
            next_table: v[0] & ADDR_MASK,
            next_table_hpa: v[1] & ADDR_MASK,
            rw: bit(v[0], 0),
            us: bit(v[0], 1),
            xd: bit(v[0], 2),
        }
    }
}

/// A second-stage paging-structure-cache entry: a non-leaf entry with the rights
/// accumulated down to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SsPscEntry {
    pub(crate) next_table: u64,
    pub(crate) perms: Perms,
}

impl SsPscEntry {
    #[inline]
    pub(crate) fn key(did: u16, input: u64, level: u8) -> [u64; 2] {
        [prefix_key(input, level), did as u64]
    }

    #[inline]
    pub(crate) fn key_did(key: &[u64; 2]) -> u16 {
        key[1] as u16
    }

    #[inline]
    pub(crate) fn key_overlaps(key: &[u64; 2], start: u64, end: u64) -> bool {
        prefix_overlaps(key[0], start, end)
    }

    #[inline]
    pub(crate) fn encode(&self) -> [u64; 1] {
        [self.next_table & ADDR_MASK | self.perms.bits() as u64]
    }

    #[inline]
    pub(crate) fn decode(v: &[u64; 1]) -> Self {
        Self {
            next_table: v[0] & ADDR_MASK,
            perms: Perms::from_bits_truncate(v[0] as u8 & 7),
        }
    }
}

/// A front-cache entry: the final answer for one request shape (source id, PASID as the
/// request carried it, privilege, 4 KiB page) plus the cache entries it came from. It is
/// served only while all three of those entries are still cached unchanged, so it never
/// outlives them: invalidation, replacement and hit statistics stay those of the
/// architectural caches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FrontEntry {
    /// Host-physical base of the 4 KiB page.
    pub(crate) hpa: u64,
    /// Guest-physical base of the 4 KiB page (nested), else 0.
    pub(crate) gpa: u64,
    /// Rights of this requester.
    pub(crate) perms: Perms,
    /// A write may hit (every dirty flag is set).
    pub(crate) dirty: bool,
    pub(crate) kind: IotlbKind,
    /// Page size of the IOTLB entry.
    pub(crate) size: PageSize,
    pub(crate) did: u16,
    /// Context-cache, PASID-cache and IOTLB entries the answer came from.
    pub(crate) sources: [SlotRef; 3],
    /// `Caches::full_clears` before the sources were looked up.
    pub(crate) clears: u64,
}

impl FrontEntry {
    #[inline]
    pub(crate) fn key(sid: u16, pasid: Option<u32>, privileged: bool, addr: u64) -> [u64; 2] {
        [
            (addr >> 12) << 1 | privileged as u64,
            did_pasid_key(sid, pasid),
        ]
    }

    #[inline]
    pub(crate) fn encode(&self) -> [u64; 10] {
        let kind = self.kind.code();
        let [c, p, i] = self.sources;
        [
            self.hpa & ADDR_MASK
                | self.perms.bits() as u64
                | (self.dirty as u64) << 3
                | kind << 4
                | size_code(self.size) << 6,
            self.gpa & ADDR_MASK,
            self.did as u64,
            c.index,
            c.meta,
            p.index,
            p.meta,
            i.index,
            i.meta,
            self.clears,
        ]
    }

    #[inline]
    pub(crate) fn decode(v: &[u64; 10]) -> Self {
        let kind = IotlbKind::from_code(v[0] >> 4);
        let slot = |i: usize| SlotRef {
            index: v[i],
            meta: v[i + 1],
        };
        Self {
            hpa: v[0] & ADDR_MASK,
            gpa: v[1] & ADDR_MASK,
            perms: Perms::from_bits_truncate(v[0] as u8 & 7),
            dirty: bit(v[0], 3),
            kind,
            size: size_from_code(v[0] >> 6),
            did: v[2] as u16,
            sources: [slot(3), slot(5), slot(7)],
            clears: v[9],
        }
    }
}

impl FrontEntry {
    /// The translation of `addr` (in this entry's 4 KiB page) it gives.
    #[inline(always)]
    pub(crate) fn translation(&self, addr: u64) -> Translation {
        let bases = (self.hpa, self.gpa);
        cached_translation(
            self.kind,
            bases,
            addr & 0xFFF,
            self.size,
            self.perms,
            self.did,
            true,
        )
    }
}

/// The translation a cached leaf of `kind` gives: its (HPA, GPA) `bases` plus the
/// request's `offset` into them, for a page of `size`. The GPA is reported for nested
/// translations only.
#[inline(always)]
fn cached_translation(
    kind: IotlbKind,
    (hpa, gpa): (u64, u64),
    offset: u64,
    size: PageSize,
    perms: Perms,
    did: u16,
    from_iotlb: bool,
) -> Translation {
    Translation {
        hpa: hpa | offset,
        page_size: size,
        perms,
        kind: kind.translation_kind(),
        did: Some(did),
        gpa: (kind == IotlbKind::Nested).then_some(gpa | offset),
        from_iotlb,
    }
}

/// A device-TLB entry: what the unit answered an ATS translation request with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DevTlbEntry {
    pub(crate) hpa: u64,
    pub(crate) perms: Perms,
}

impl DevTlbEntry {
    #[inline]
    pub(crate) fn key(sid: u16, pasid: Option<u32>, addr: u64, size: PageSize) -> [u64; 2] {
        [page_key(addr, size), did_pasid_key(sid, pasid)]
    }

    #[inline]
    pub(crate) fn key_sid(key: &[u64; 2]) -> u16 {
        key[1] as u16
    }

    #[inline]
    pub(crate) fn key_pasid(key: &[u64; 2]) -> Option<u32> {
        key_pasid(key[1])
    }

    #[inline]
    pub(crate) fn key_overlaps(key: &[u64; 2], start: u64, end: u64) -> bool {
        page_overlaps(key[0], start, end)
    }

    #[inline]
    pub(crate) fn encode(&self) -> [u64; 1] {
        [self.hpa & ADDR_MASK | self.perms.bits() as u64]
    }

    #[inline]
    pub(crate) fn decode(v: &[u64; 1]) -> Self {
        Self {
            hpa: v[0] & ADDR_MASK,
            perms: Perms::from_bits_truncate(v[0] as u8 & 7),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pasid_entry_round_trips() {
        let pe = PasidCtx {
            pgtt: Pgtt::Nested,
            did: 0x1234,
            fpd: false,
            sre: true,
            ere: false,
            fs: FsParams {
                root: 0x5000,
                levels: 5,
                wpe: true,
                eafe: true,
                nxe: false,
                smep: true,
            },
            ss: SsParams {
                root: 0x9000,
                levels: 4,
                width: 48,
                ssade: true,
                ssee: true,
                snooped: true,
                legacy: false,
                did: 0x1234,
            },
        };
        let v = CachedPasid::Present(pe).encode();
        assert_eq!(CachedPasid::decode(&v), CachedPasid::Present(pe));
    }

    #[test]
    fn iotlb_entry_round_trips() {
        let e = IotlbEntry {
            kind: IotlbKind::Nested,
            hpa: 0x1234_5000,
            gpa: 0x8_0000_0000,
            ss_perms: Perms::READ,
            fs_rw: true,
            fs_us: false,
            fs_xd: false,
            dirty: true,
            reason_code: 0,
        };
        assert_eq!(IotlbEntry::decode(&e.encode()), e);
    }

    #[test]
    fn page_key_overlap_covers_the_whole_large_page() {
        let key = IotlbEntry::key(3, Some(5), 0x4020_1234, PageSize::Size2M);
        assert!(IotlbEntry::key_overlaps(&key, 0x403F_F000, 0x403F_FFFF));
        assert!(!IotlbEntry::key_overlaps(&key, 0x4040_0000, 0x4040_0FFF));
        assert_eq!(IotlbEntry::key_did(&key), 3);
        assert_eq!(IotlbEntry::key_pasid(&key), Some(5));
    }

    #[test]
    fn prefix_key_overlap_matches_level_coverage() {
        // A level-2 entry covers 2 MiB.
        let key = SsPscEntry::key(1, 0x4020_0000, 2);
        assert!(SsPscEntry::key_overlaps(&key, 0x4020_0000, 0x4020_0000));
        assert!(SsPscEntry::key_overlaps(&key, 0x403F_FFFF, 0x5000_0000));
        assert!(!SsPscEntry::key_overlaps(&key, 0x4040_0000, 0x5000_0000));
    }
}
