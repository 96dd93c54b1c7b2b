//! Second-stage walks (§5): for PGTT=010b and legacy mode, for every first-stage table a
//! nested walk fetches, and for the final guest-physical address of a nested walk.

use vtd_spec::addr::{PageSize, table_index};
use vtd_spec::fault::FaultReason;
use vtd_spec::second_stage::SsEntry;

use super::{Stop, Walked, Walker};
use crate::cache::{IotlbEntry, IotlbKind, SsPscEntry};
use crate::config::{NonSnoopedAd, SsPermissionFault};
use crate::fault::{Fault, FaultStage};
use crate::mem::PhysMem;
use crate::request::{Access, Perms};
use crate::stats::Counter;
use crate::trace::{CacheKind, SsPurpose, WalkEvent, WalkObserver};

/// What a second-stage walk needs from the PASID (or legacy context) entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SsParams {
    /// Top-level table (host physical).
    pub(crate) root: u64,
    /// Number of levels (3, 4 or 5).
    pub(crate) levels: u8,
    /// Input addresses must be below 2^width: min(AGAW, MGAW+1).
    pub(crate) width: u32,
    /// SSADE: set accessed/dirty flags.
    pub(crate) ssade: bool,
    /// SSEE: honour the X bit.
    pub(crate) ssee: bool,
    /// Page-walk accesses are snooped (PWSNP; ECAP.C in legacy mode).
    pub(crate) snooped: bool,
    /// Report faults with legacy reason codes.
    pub(crate) legacy: bool,
    /// Domain id tagging second-stage paging-structure-cache entries.
    pub(crate) did: u16,
}

/// A finished second-stage walk: the output and the rights accumulated over every level.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SsWalk {
    pub(crate) out: u64,
    pub(crate) size: PageSize,
    pub(crate) perms: Perms,
    /// No dirty flag remains for a write to set: SSADE is off, or the leaf's D is set.
    pub(crate) dirty: bool,
    /// (address, value) of each entry read, top first; levels served by the
    /// paging-structure cache are not read.
    entries: [(u64, u64); 5],
    /// The rights accumulated down to and including each entry of `entries`.
    rights: [Perms; 5],
    /// Level of `entries[0]`.
    top: u8,
    len: u8,
}

/// What the final second-stage walk gives its caller.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SsOut {
    pub(crate) out: u64,
    pub(crate) size: PageSize,
    pub(crate) perms: Perms,
    /// No dirty flag remains for a write to set.
    pub(crate) dirty: bool,
}

impl SsWalk {
    /// A walk not made yet, for [`Walker::ss_walk`] to fill.
    pub(crate) const EMPTY: SsWalk = SsWalk {
        out: 0,
        size: PageSize::Size4K,
        perms: Perms::empty(),
        dirty: false,
        entries: [(0, 0); 5],
        rights: [Perms::empty(); 5],
        top: 0,
        len: 0,
    };

    /// The output, without the entries read.
    fn result(&self) -> SsOut {
        SsOut {
            out: self.out,
            size: self.size,
            perms: self.perms,
            dirty: self.dirty,
        }
    }

    /// (address, value, level) of each entry read, top first.
    fn entries(&self) -> impl Iterator<Item = (u64, u64, u8)> + '_ {
        let top = self.top;
        self.entries[..self.len as usize]
            .iter()
            .enumerate()
            .map(move |(i, &(a, v))| (a, v, top - i as u8))
    }

    /// The leaf entry: (address, value, level).
    fn leaf_entry(&self) -> (u64, u64, u8) {
        let i = self.len.saturating_sub(1);
        let (addr, value) = self.entries[i as usize];
        (addr, value, self.top - i)
    }

    /// The rights and leaf entry of this walk, all a later A/D update of the page needs.
    pub(crate) fn leaf(&self) -> SsLeaf {
        let (addr, value, level) = self.leaf_entry();
        SsLeaf {
            perms: self.perms,
            addr,
            value,
            level,
        }
    }
}

/// What is kept of the second-stage walk that fetched a first-stage table: the rights on
/// the table page and the leaf that maps it (its D bit is set when the first stage writes
/// A/D into the table).
#[derive(Clone, Copy, Debug)]
pub(crate) struct SsLeaf {
    pub(crate) perms: Perms,
    pub(crate) addr: u64,
    pub(crate) value: u64,
    pub(crate) level: u8,
}

/// Why a second-stage walk stopped; the caller turns it into the reason code that fits
/// the purpose of the walk.
#[derive(Clone, Copy, Debug)]
pub(crate) enum SsError {
    /// The input is at or beyond 2^width.
    Beyond,
    /// Reading an entry failed.
    Fetch { level: u8, addr: u64, top: bool },
    /// An entry on the path has R=W=0.
    NotPresent { level: u8, addr: u64, value: u64 },
    /// A present entry has a reserved bit set.
    Reserved { level: u8, addr: u64, value: u64 },
}

impl<M: PhysMem, O: WalkObserver> Walker<'_, M, O> {
    /// Walk the second stage for `input`, into `walk` (an out-parameter so the walk's
    /// entries are written once, where the caller keeps them).
    #[inline(always)]
    pub(crate) fn ss_walk(
        &mut self,
        ss: &SsParams,
        input: u64,
        purpose: SsPurpose,
        walk: &mut SsWalk,
    ) -> Result<(), SsError> {
        if ss.width < 64 && input >> ss.width != 0 {
            return Err(SsError::Beyond);
        }
        let counter = match purpose {
            SsPurpose::FirstStageTable { .. } => Counter::SsReadsForFsTables,
            SsPurpose::Final => Counter::SsReadsFinal,
        };
        let (start, mut table, start_perms) = match self.ss_psc_lookup(ss, input) {
            Some((level, psc)) => (level - 1, psc.next_table, psc.perms),
            None => (ss.levels, ss.root, Perms::all()),
        };
        *walk = SsWalk {
            out: 0,
            size: PageSize::Size4K,
            perms: start_perms,
            dirty: !ss.ssade,
            entries: [(0, 0); 5],
            rights: [Perms::empty(); 5],
            top: start,
            len: 0,
        };
        for level in (1..=start).rev() {
            let addr = table + 8 * table_index(input, level);
            self.count(counter);
            let value = self.read_u64(addr).map_err(|_| SsError::Fetch {
                level,
                addr,
                top: level == ss.levels,
            })?;
            let e = SsEntry::from_bits(value);
            let present = if ss.ssee {
                e.present_with_x()
            } else {
                e.present()
            };
            let leaf = level == 1 || (level <= 3 && e.ps());
            self.obs.event(WalkEvent::SecondStageEntry {
                purpose,
                level,
                input,
                addr,
                value,
                leaf,
            });
            if !present {
                return Err(SsError::NotPresent { level, addr, value });
            }
            if value & self.unit.masks.ss(level, leaf) != 0 {
                return Err(SsError::Reserved { level, addr, value });
            }
            walk.perms = ss_entry_rights(walk.perms, e, ss.ssee);
            walk.entries[walk.len as usize] = (addr, value);
            walk.rights[walk.len as usize] = walk.perms;
            walk.len += 1;
            if leaf {
                let size = PageSize::from_level(level).unwrap_or(PageSize::Size4K);
                walk.size = size;
                walk.out = e.frame_addr(size) | (input & size.offset_mask());
                walk.dirty |= e.d();
                self.ss_psc_fill(ss, input, walk);
                return Ok(());
            }
            table = e.table_addr();
        }
        // Unreachable: level 1 is always a leaf.
        Err(SsError::Beyond)
    }

    /// The deepest paging-structure-cache entry covering `input`: (its level, entry).
    #[inline(always)]
    fn ss_psc_lookup(&mut self, ss: &SsParams, input: u64) -> Option<(u8, SsPscEntry)> {
        if !self.caching || ss.levels < 2 {
            return None;
        }
        let psc = &self.unit.caches.ss_psc;
        let mut found = None;
        for level in 2..=ss.levels {
            if !psc.may_hold(level as u32) {
                continue;
            }
            if let Some(v) = psc.lookup(&SsPscEntry::key(ss.did, input, level)) {
                found = Some((level, SsPscEntry::decode(&v)));
                break;
            }
        }
        self.cache_result(CacheKind::SecondStagePsc, found.is_some());
        found
    }

    /// Cache the non-leaf entries of a successful walk, lowest level first, each with the
    /// rights the walk had accumulated down to it.
    fn ss_psc_fill(&self, ss: &SsParams, input: u64, walk: &SsWalk) {
        if !self.caching {
            return;
        }
        let non_leaf = &walk.entries[..walk.len as usize - 1];
        for (i, &(_, value)) in non_leaf.iter().enumerate().rev() {
            let level = walk.top - i as u8;
            let entry = SsPscEntry {
                next_table: SsEntry::from_bits(value).table_addr(),
                perms: walk.rights[i],
            };
            let key = SsPscEntry::key(ss.did, input, level);
            let inserted = self.unit.caches.ss_psc.insert_kind(
                &key,
                &entry.encode(),
                level as u32,
                self.fill_guard(),
            );
            self.note_fill(inserted);
        }
    }

    /// Set second-stage A on every entry of `walk`, and D on its leaf when `dirty`, if the
    /// entry enables SSADE (§5.5).
    #[inline(always)]
    pub(crate) fn ss_set_ad(
        &mut self,
        ss: &SsParams,
        walk: &mut SsWalk,
        dirty: bool,
    ) -> Result<(), Stop> {
        if !ss.ssade {
            return Ok(());
        }
        walk.dirty |= dirty;
        let leaf = walk.len as usize - 1;
        for (i, (addr, value, level)) in walk.entries().enumerate() {
            let bits = if dirty && i == leaf {
                SsEntry::A | SsEntry::D
            } else {
                SsEntry::A
            };
            self.ss_set_flags(ss, addr, value, level, bits)?;
        }
        Ok(())
    }

    /// Set A and D in the second-stage leaf mapping a first-stage table page the first stage
    /// just wrote A/D into (SSADE, §5.5). Upper levels got A when the table was fetched.
    pub(crate) fn ss_set_leaf_dirty(&mut self, ss: &SsParams, leaf: &SsLeaf) -> Result<(), Stop> {
        if !ss.ssade {
            return Ok(());
        }
        let bits = SsEntry::A | SsEntry::D;
        self.ss_set_flags(ss, leaf.addr, leaf.value, leaf.level, bits)
    }

    /// Set `bits` in the second-stage entry at `addr` (read as `value`, at `level`) unless
    /// they are set already. A non-snooped walk may not write (SSS.5, by switch); a memory
    /// error is reported as a second-stage access error.
    #[inline(always)]
    fn ss_set_flags(
        &mut self,
        ss: &SsParams,
        addr: u64,
        value: u64,
        level: u8,
        bits: u64,
    ) -> Result<(), Stop> {
        if value & bits == bits {
            return Ok(());
        }
        if !ss.snooped && self.unit.config.switches.non_snooped_ad == NonSnoopedAd::Fault {
            return Err(self
                .fault(FaultReason::SssAdNonSnooped, FaultStage::SecondStage)
                .ss_level(level)
                .entry(addr, value)
                .into());
        }
        let hw_flags = SsEntry::A | SsEntry::D;
        match self.update_flags(addr, value, bits, hw_flags, false, level, false) {
            Ok(()) => {
                self.count(Counter::SsAdWrites);
                Ok(())
            }
            Err(Stop::Fault(_)) => {
                let fault = self.fault(FaultReason::SssAccessError, FaultStage::SecondStage);
                Err(fault.ss_level(level).entry_addr(addr).into())
            }
            Err(stop) => Err(stop),
        }
    }

    /// Map a second-stage walk failure for the final address (or PGTT=010b input) to its
    /// fault (§5.4, §7.1).
    pub(crate) fn ss_final_fault(&self, ss: &SsParams, err: SsError, gpa: Option<u64>) -> Fault {
        let with_gpa = |f: Fault| match gpa {
            Some(g) => f.gpa(g),
            None => f,
        };
        let stage = FaultStage::SecondStage;
        let f = match err {
            SsError::Beyond if ss.legacy => self.fault(FaultReason::LgnAddressBeyond, stage),
            // Under nesting the final GPA is a first-stage entry's address (SFS.5).
            SsError::Beyond if gpa.is_some() => self.fault(FaultReason::SfsGpaBeyond, stage),
            SsError::Beyond => self.fault(FaultReason::SgnAddressBeyond, stage),
            SsError::Fetch { level, addr, top } => {
                let reason = match (ss.legacy, top) {
                    (true, _) => FaultReason::LslAccessError,
                    (false, true) => FaultReason::SssInvalidRoot,
                    (false, false) => FaultReason::SssAccessError,
                };
                self.fault(reason, stage).ss_level(level).entry_addr(addr)
            }
            SsError::NotPresent { level, addr, value } => {
                let reason = if ss.legacy {
                    legacy_denied(self.req.access)
                } else {
                    FaultReason::SssNotPresent
                };
                self.fault(reason, stage).ss_level(level).entry(addr, value)
            }
            SsError::Reserved { level, addr, value } => {
                let reason = if ss.legacy {
                    FaultReason::LslReserved
                } else {
                    FaultReason::SssReserved
                };
                self.fault(reason, stage).ss_level(level).entry(addr, value)
            }
        };
        with_gpa(f)
    }

    /// The fault for a final access that the second stage's rights do not allow.
    pub(crate) fn ss_permission_fault(&self, ss: &SsParams, perms: Perms) -> FaultReason {
        let access = self.req.access;
        if ss.legacy {
            return legacy_denied(access);
        }
        if self.unit.config.switches.ss_permission_fault == SsPermissionFault::SecondStage {
            return FaultReason::SssNotPresent;
        }
        // ss_allows refuses a missing X first, so the reason follows the same order.
        if self.req.execute && !perms.contains(Perms::EXECUTE) {
            return FaultReason::SgnExecuteDenied;
        }
        if access.needs_read() && !perms.contains(Perms::READ) {
            FaultReason::SgnReadDenied
        } else {
            FaultReason::SgnWriteDenied
        }
    }

    /// True when the second stage's rights allow the request's final access; a zero-length
    /// read needs only W when CAP.ZLR is set.
    pub(crate) fn ss_allows(&self, perms: Perms) -> bool {
        ss_allows(perms, self.req, self.unit.config.cap.zlr())
    }

    /// Translate the final address through the second stage: walk, permission check,
    /// accessed/dirty update. `gpa` is `Some` under nesting (for fault reporting).
    #[inline(always)]
    pub(crate) fn ss_final(
        &mut self,
        ss: &SsParams,
        input: u64,
        gpa: Option<u64>,
    ) -> Result<SsOut, Stop> {
        let mut walk = SsWalk::EMPTY;
        self.ss_walk(ss, input, SsPurpose::Final, &mut walk)
            .map_err(|e| self.ss_final_fault(ss, e, gpa))?;
        if !self.ss_allows(walk.perms) {
            let (addr, value, level) = walk.leaf_entry();
            let mut fault = self
                .fault(
                    self.ss_permission_fault(ss, walk.perms),
                    FaultStage::SecondStage,
                )
                .ss_level(level)
                .entry(addr, value);
            if let Some(g) = gpa {
                fault = fault.gpa(g);
            }
            return Err(fault.into());
        }
        self.ss_set_ad(ss, &mut walk, self.req.access.needs_write())?;
        Ok(walk.result())
    }

    /// PGTT=010b (and legacy mode): the input address goes through the second stage only.
    pub(super) fn second_stage_only(
        &mut self,
        pe: &super::scalable::PasidCtx,
    ) -> Result<Walked, Stop> {
        let walk = self.ss_final(&pe.ss, self.req.addr, None)?;
        self.check_output(walk.out, pe.ss.legacy)?;
        let entry = IotlbEntry {
            kind: IotlbKind::SecondStage,
            hpa: walk.size.align_down(walk.out),
            gpa: 0,
            ss_perms: walk.perms,
            fs_rw: true,
            fs_us: true,
            fs_xd: false,
            dirty: walk.dirty,
            reason_code: 0,
        };
        Ok(Walked {
            entry,
            size: walk.size,
            perms: walk.perms & self.request_perms_mask(pe.ss.ssee),
        })
    }

    /// Rights that can be reported: EXECUTE only where the stage honours it.
    pub(crate) fn request_perms_mask(&self, ssee: bool) -> Perms {
        if ssee {
            Perms::all()
        } else {
            Perms::READ | Perms::WRITE
        }
    }
}

/// True when second-stage rights `perms` allow `req`'s final access; with CAP.ZLR a
/// zero-length read needs only W (§5.4). Under nesting the rights are checked stage by
/// stage (§6.1): the first stage has already allowed the read (its pages are always
/// readable), so the exemption is decided by the second stage's rights alone, and the
/// reported combined rights of such a read may lack both R and W.
pub(crate) fn ss_allows(perms: Perms, req: &crate::request::Request, zlr: bool) -> bool {
    if req.execute && !perms.contains(Perms::EXECUTE) {
        return false;
    }
    if req.access == Access::Read && req.len == 0 && zlr {
        return perms.intersects(Perms::READ | Perms::WRITE);
    }
    perms.allow(req.access)
}

/// `perms` less what a present second-stage entry `e` withholds: R and W as it grants
/// them, X only where SSEE makes its X bit count.
#[inline]
fn ss_entry_rights(perms: Perms, e: SsEntry, ssee: bool) -> Perms {
    // The entry keeps R, W and X in bits 2:0, the bits `Perms` uses for them.
    let x_ignored = if ssee { 0 } else { Perms::EXECUTE.bits() };
    perms & Perms::from_bits_truncate(e.into_bits() as u8 & 0b111 | x_ignored)
}

/// Legacy-mode code for a denied access (§7.1): 0x05 for writes and atomics, 0x06 for reads.
fn legacy_denied(access: Access) -> FaultReason {
    if access.needs_write() {
        FaultReason::LgnWriteDenied
    } else {
        FaultReason::LgnReadDenied
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_rights_take_r_w_and_x_bits_where_they_count() {
        for bits in 0..8u64 {
            let e = SsEntry::from_bits(bits);
            for ssee in [false, true] {
                let mut want = Perms::all();
                want.set(Perms::READ, e.r());
                want.set(Perms::WRITE, e.w());
                want.set(Perms::EXECUTE, !ssee || e.x());
                assert_eq!(
                    ss_entry_rights(Perms::all(), e, ssee),
                    want,
                    "{bits:#b} {ssee}"
                );
                assert_eq!(
                    ss_entry_rights(Perms::READ, e, ssee),
                    want & Perms::READ,
                    "{bits:#b} {ssee}"
                );
            }
        }
    }
}
