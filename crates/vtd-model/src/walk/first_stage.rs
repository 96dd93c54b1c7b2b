//! First-stage walks (§4) for PGTT=001b, and nested walks (§6.1) for PGTT=011b where every
//! first-stage table and the final guest-physical address go through the second stage.

use vtd_spec::addr::{PageSize, table_index};
use vtd_spec::fault::FaultReason;
use vtd_spec::first_stage::FsEntry;

use super::scalable::PasidCtx;
use super::second_stage::{SsError, SsLeaf, SsParams, SsWalk};
use super::{Stop, Walked, Walker};
use crate::cache::{FsPscEntry, IotlbEntry, IotlbKind};
use crate::config::{AdTiming, NestedSsAd, NonSnoopedAd, Spr17, SsPermissionFault};
use crate::fault::{Fault, FaultStage};
use crate::mem::PhysMem;
use crate::request::{Perms, Request};
use crate::stats::Counter;
use crate::trace::{CacheKind, SsPurpose, WalkEvent, WalkObserver};

/// What a first-stage walk needs from the PASID entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FsParams {
    /// FSPTPTR: host physical for PGTT=001b, guest physical for PGTT=011b.
    pub(crate) root: u64,
    /// 4 or 5.
    pub(crate) levels: u8,
    pub(crate) wpe: bool,
    pub(crate) eafe: bool,
    pub(crate) nxe: bool,
    pub(crate) smep: bool,
}

/// One first-stage entry used by the walk; its level is its place in [`FsPath`].
#[derive(Clone, Copy, Debug)]
struct FsStep {
    /// Table address as the first stage names it (GPA under nesting).
    table: u64,
    /// Host-physical address of the table.
    table_hpa: u64,
    /// Physical address of the entry.
    addr: u64,
    /// Value as read (with the flags the walk set since).
    value: u64,
    /// The second-stage mapping of the table page (nested, when the table was not served
    /// by the paging-structure cache).
    table_ss: Option<SsLeaf>,
    /// Rights accumulated from the top down to and including this entry.
    rights: FsRights,
}

impl FsStep {
    /// A step not read (yet). All zero, so a path of them costs a few stores to set up.
    const EMPTY: FsStep = FsStep {
        table: 0,
        table_hpa: 0,
        addr: 0,
        value: 0,
        table_ss: None,
        rights: FsRights {
            rw: false,
            us: false,
            xd: false,
        },
    };
}

/// The entries a first-stage walk read: levels `leaf..=top`, kept in place by level so no
/// step is ever optional. Levels above `top` were served by the paging-structure cache.
struct FsPath {
    /// Indexed by level − 1.
    steps: [FsStep; 5],
    /// The level the walk started reading at.
    top: u8,
    /// The leaf's level (the last one read).
    leaf: u8,
}

impl FsPath {
    #[inline(always)]
    fn step(&self, level: u8) -> &FsStep {
        &self.steps[level as usize - 1]
    }

    #[inline(always)]
    fn step_mut(&mut self, level: u8) -> &mut FsStep {
        &mut self.steps[level as usize - 1]
    }
}

/// Rights accumulated over the first-stage path.
#[derive(Clone, Copy, Debug)]
struct FsRights {
    rw: bool,
    us: bool,
    xd: bool,
}

impl FsRights {
    const ALL: FsRights = FsRights {
        rw: true,
        us: true,
        xd: false,
    };
}

impl<M: PhysMem, O: WalkObserver> Walker<'_, M, O> {
    /// PGTT=001b (`nested == false`) or PGTT=011b (`nested == true`) for `pasid`.
    pub(super) fn first_stage(
        &mut self,
        pe: &PasidCtx,
        pasid: u32,
        privileged: bool,
        nested: bool,
    ) -> Result<Walked, Stop> {
        // The caller has checked the address is canonical (§6.1 step 1, before the
        // privilege checks).
        let fs = pe.fs;
        let req = *self.req;
        let ss = nested.then_some(pe.ss);
        let timing = self.unit.config.switches.ad_timing;
        let a_bits = if fs.eafe {
            FsEntry::A | FsEntry::EA
        } else {
            FsEntry::A
        };

        let (top, mut table, mut known_hpa, mut rights) =
            match self.fs_psc_lookup(pe, pasid, fs.levels) {
                Some((level, psc)) => {
                    let rights = FsRights {
                        rw: psc.rw,
                        us: psc.us,
                        xd: psc.xd,
                    };
                    (level - 1, psc.next_table, Some(psc.next_table_hpa), rights)
                }
                None => (fs.levels, fs.root, None, FsRights::ALL),
            };
        let mut path = FsPath {
            steps: [FsStep::EMPTY; 5],
            top,
            leaf: top,
        };
        // Each step is read straight into its place in the path. Level 1 always ends the
        // walk.
        loop {
            let level = path.leaf;
            let step = path.step_mut(level);
            self.fs_read_entry(pe, ss.as_ref(), table, known_hpa.take(), level, step)?;
            let e = FsEntry::from_bits(step.value);
            rights.rw &= e.rw();
            rights.us &= e.us();
            rights.xd |= fs.nxe && e.xd();
            step.rights = rights;
            if timing == AdTiming::PerLevel {
                self.fs_set_flags(pe, step, level, a_bits)?;
            }
            if level == 1 || (level <= 3 && e.ps()) {
                break;
            }
            table = e.table_addr();
            path.leaf -= 1;
        }
        // The leaf as the walk ended on it: the flags set later do not change what it maps.
        let (leaf_addr, leaf_value) = {
            let leaf = path.step(path.leaf);
            (leaf.addr, leaf.value)
        };

        let fs_perms =
            self.fs_check_permissions(&fs, path.leaf, leaf_addr, leaf_value, rights, privileged)?;

        // Flags bottom-up, the leaf first.
        let dirty = req.access.needs_write();
        for level in path.leaf..=path.top {
            let is_leaf = level == path.leaf;
            let bits = match timing {
                AdTiming::PerLevel if is_leaf && dirty => a_bits | FsEntry::D,
                AdTiming::PerLevel => continue,
                AdTiming::AfterWalk if is_leaf && dirty => a_bits | FsEntry::D,
                AdTiming::AfterWalk => a_bits,
            };
            self.fs_set_flags(pe, path.step_mut(level), level, bits)?;
        }

        let size = PageSize::from_level(path.leaf).unwrap_or(PageSize::Size4K);
        let out = FsEntry::from_bits(leaf_value).frame_addr(size) | (req.addr & size.offset_mask());
        let fs_dirty = dirty || FsEntry::from_bits(leaf_value).d();
        let (hpa, page_size, perms, ss_perms, ss_dirty) = match ss {
            Some(ss) => {
                let walk = self.ss_final(&ss, out, Some(out))?;
                let perms = fs_perms & walk.perms & self.request_perms_mask(ss.ssee);
                (walk.out, size.min(walk.size), perms, walk.perms, walk.dirty)
            }
            None => (out, size, fs_perms, Perms::all(), true),
        };
        self.check_output(hpa, false)?;
        self.fs_psc_fill(pe, pasid, &path);
        let entry = IotlbEntry {
            kind: if nested {
                IotlbKind::Nested
            } else {
                IotlbKind::FirstStage
            },
            hpa: page_size.align_down(hpa),
            gpa: page_size.align_down(out),
            ss_perms,
            fs_rw: rights.rw,
            fs_us: rights.us,
            fs_xd: rights.xd,
            dirty: fs_dirty && ss_dirty,
            reason_code: 0,
        };
        Ok(Walked {
            entry,
            size: page_size,
            perms,
        })
    }

    /// The deepest first-stage paging-structure-cache entry for the request: (its level,
    /// entry). Levels 2 and up hold non-leaf entries.
    #[inline(always)]
    fn fs_psc_lookup(&mut self, pe: &PasidCtx, pasid: u32, levels: u8) -> Option<(u8, FsPscEntry)> {
        if !self.caching {
            return None;
        }
        let psc = &self.unit.caches.fs_psc;
        let mut found = None;
        for level in 2..=levels {
            if !psc.may_hold(level as u32) {
                continue;
            }
            let key = FsPscEntry::key(pe.did, pasid, self.req.addr, level);
            if let Some(v) = psc.lookup(&key) {
                found = Some((level, FsPscEntry::decode(&v)));
                break;
            }
        }
        self.cache_result(CacheKind::FirstStagePsc, found.is_some());
        found
    }

    /// Cache every non-leaf entry of a successful walk, lowest level first.
    fn fs_psc_fill(&self, pe: &PasidCtx, pasid: u32, path: &FsPath) {
        if !self.caching {
            return;
        }
        // The leaf is never cached here: a PSC entry names the table below it.
        for level in (path.leaf + 1).max(2)..=path.top {
            let step = path.step(level);
            let e = FsEntry::from_bits(step.value);
            let entry = FsPscEntry {
                next_table: e.table_addr(),
                next_table_hpa: path.step(level - 1).table_hpa,
                rw: step.rights.rw,
                us: step.rights.us,
                xd: step.rights.xd,
            };
            let key = FsPscEntry::key(pe.did, pasid, self.req.addr, level);
            let inserted = self.unit.caches.fs_psc.insert_kind(
                &key,
                &entry.encode(),
                level as u32,
                self.fill_guard(),
            );
            self.note_fill(inserted);
        }
    }

    /// Fetch the first-stage entry at `level` of `table` (translating the table through
    /// the second stage when nested) into `step`, and check it is present and has no
    /// reserved bit.
    #[inline(always)]
    fn fs_read_entry(
        &mut self,
        pe: &PasidCtx,
        ss: Option<&SsParams>,
        table: u64,
        known_hpa: Option<u64>,
        level: u8,
        step: &mut FsStep,
    ) -> Result<(), Stop> {
        let top = level == pe.fs.levels;
        let (table_hpa, table_ss) = match (ss, known_hpa) {
            (_, Some(hpa)) => (hpa, None),
            (Some(ss), None) => {
                let (hpa, leaf) = self.fs_table_through_ss(ss, table, level, top)?;
                (hpa, Some(leaf))
            }
            (None, None) => (table, None),
        };
        let addr = table_hpa + 8 * table_index(self.req.addr, level);
        self.count(Counter::FsEntryReads);
        let value = self.read_u64(addr).map_err(|_| {
            let reason = if top {
                FaultReason::SfsRootAccessError
            } else {
                FaultReason::SfsAccessError
            };
            self.fs_fault(reason, level, table, ss.is_some())
                .entry_addr(addr)
        })?;
        let e = FsEntry::from_bits(value);
        let leaf = level == 1 || (level <= 3 && e.ps());
        self.obs.event(WalkEvent::FirstStageEntry {
            level,
            table,
            addr,
            value,
            leaf,
        });
        if !e.p() {
            return Err(self
                .fs_fault(FaultReason::SfsNotPresent, level, table, ss.is_some())
                .entry(addr, value)
                .into());
        }
        if value & self.unit.masks.fs(level, leaf, ss.is_some()) != 0 {
            return Err(self
                .fs_fault(FaultReason::SfsReserved, level, table, ss.is_some())
                .entry(addr, value)
                .into());
        }
        *step = FsStep {
            table,
            table_hpa,
            addr,
            value,
            table_ss,
            rights: FsRights::ALL,
        };
        Ok(())
    }

    /// A first-stage fault at `level`, carrying the table's GPA when nested.
    fn fs_fault(&self, reason: FaultReason, level: u8, table: u64, nested: bool) -> Fault {
        let fault = self.fault(reason, FaultStage::FirstStage).fs_level(level);
        if nested { fault.gpa(table) } else { fault }
    }

    /// Nested: translate the GPA of a first-stage table through the second stage with
    /// read permission (§6.1 step 4a), setting second-stage A where enabled. Returns the
    /// table's host-physical address and the leaf that maps it.
    fn fs_table_through_ss(
        &mut self,
        ss: &SsParams,
        table: u64,
        level: u8,
        top: bool,
    ) -> Result<(u64, SsLeaf), Stop> {
        let stage = FaultStage::SecondStageForFirstStageTable;
        let denied = if top {
            FaultReason::SfsRootReadDenied
        } else {
            FaultReason::SfsReadDenied
        };
        let denied = match self.unit.config.switches.ss_permission_fault {
            SsPermissionFault::General => denied,
            SsPermissionFault::SecondStage => FaultReason::SssNotPresent,
        };
        let mut walk = SsWalk::EMPTY;
        self.ss_walk(
            ss,
            table,
            SsPurpose::FirstStageTable { fs_level: level },
            &mut walk,
        )
        .map_err(|e| {
            let fault = match e {
                SsError::Beyond => self.fault(FaultReason::SfsGpaBeyond, stage),
                SsError::Fetch {
                    level: l,
                    addr,
                    top,
                } => {
                    let reason = if top {
                        FaultReason::SssInvalidRoot
                    } else {
                        FaultReason::SssAccessError
                    };
                    self.fault(reason, stage).ss_level(l).entry_addr(addr)
                }
                SsError::NotPresent {
                    level: l,
                    addr,
                    value,
                } => self.fault(denied, stage).ss_level(l).entry(addr, value),
                SsError::Reserved {
                    level: l,
                    addr,
                    value,
                } => self
                    .fault(FaultReason::SssReserved, stage)
                    .ss_level(l)
                    .entry(addr, value),
            };
            Stop::from(fault.fs_level(level).gpa(table))
        })?;
        if !walk.perms.contains(Perms::READ) {
            return Err(self.fault(denied, stage).fs_level(level).gpa(table).into());
        }
        if self.unit.config.switches.nested_ss_ad == NestedSsAd::Full {
            self.ss_set_ad(ss, &mut walk, false)?;
        }
        Ok((walk.out, walk.leaf()))
    }

    /// The permission checks of §4.4, returning the rights the requester has.
    fn fs_check_permissions(
        &self,
        fs: &FsParams,
        leaf_level: u8,
        leaf_addr: u64,
        leaf_value: u64,
        rights: FsRights,
        privileged: bool,
    ) -> Result<Perms, Stop> {
        let FsRights { rw, us, xd } = rights;
        fs_rights(self.req, rw, us, xd, fs.wpe, fs.smep, privileged).map_err(|reason| {
            self.fault(reason, FaultStage::FirstStage)
                .fs_level(leaf_level)
                .entry(leaf_addr, leaf_value)
                .into()
        })
    }

    /// Set `bits` (A, EA, D) in a first-stage entry (§4.5). Under nesting the update is a
    /// write through the second stage and needs its write permission (§6.1 step 6), except
    /// where the SPR17 erratum lets it through (§6.5). The step's `value` is updated.
    #[inline(always)]
    fn fs_set_flags(
        &mut self,
        pe: &PasidCtx,
        step: &mut FsStep,
        level: u8,
        bits: u64,
    ) -> Result<(), Stop> {
        if step.value & bits == bits {
            return Ok(());
        }
        let switches = self.unit.config.switches;
        let nested = pe.pgtt == vtd_spec::pasid::Pgtt::Nested;
        // A table served by the paging-structure cache has no second-stage walk at hand:
        // the update needs one to know the write permission of the table page.
        if nested && step.table_ss.is_none() {
            let top = level == pe.fs.levels;
            step.table_ss = Some(self.fs_table_through_ss(&pe.ss, step.table, level, top)?.1);
        }
        let mut by_erratum = false;
        if let Some(table_ss) = &step.table_ss
            && !table_ss.perms.contains(Perms::WRITE)
        {
            let top = level == pe.fs.levels;
            // `ss.snooped` is the PASID entry's PWSNP, which covers first-stage tables too.
            let erratum = pe.ss.snooped
                && match switches.erratum_spr17 {
                    Spr17::Off => false,
                    Spr17::TopLevel => top,
                    Spr17::AllLevels => true,
                };
            if !erratum {
                let fault = self
                    .fault(
                        FaultReason::SfsAdWriteDenied,
                        FaultStage::FirstStageAdUpdate,
                    )
                    .fs_level(level)
                    .gpa(step.table)
                    .entry(step.addr, step.value);
                return Err(fault.into());
            }
            by_erratum = true;
        }
        if !pe.ss.snooped && switches.non_snooped_ad == NonSnoopedAd::Fault {
            let fault = self
                .fault(FaultReason::SfsAdNonSnooped, FaultStage::FirstStageAdUpdate)
                .fs_level(level)
                .entry(step.addr, step.value);
            return Err(fault.into());
        }
        let hw_flags = FsEntry::A | FsEntry::D | FsEntry::EA;
        let (addr, value) = (step.addr, step.value);
        self.update_flags(addr, value, bits, hw_flags, true, level, by_erratum)?;
        step.value = value | bits;
        self.count(Counter::FsAdWrites);
        if by_erratum {
            self.count(Counter::FsAdWritesByErratum);
        }
        // The update is a write to the table page: it dirties that page in the second
        // stage too, unless the erratum let it through a read-only mapping.
        if let Some(table_ss) = step.table_ss
            && !by_erratum
            && switches.nested_ss_ad == NestedSsAd::Full
        {
            self.ss_set_leaf_dirty(&pe.ss, &table_ss)?;
        }
        Ok(())
    }
}

/// The first-stage rights (§4.4) a requester has through a path whose accumulated R/W,
/// U/S and XD are `rw`, `us` and `xd`, or why `req` is denied (SGN.2, SGN.6, SGN.3). A
/// walk and an IOTLB hit both decide through it. `wpe` and `smep` come from the PASID entry.
#[inline]
pub(crate) fn fs_rights(
    req: &Request,
    rw: bool,
    us: bool,
    xd: bool,
    wpe: bool,
    smep: bool,
    privileged: bool,
) -> Result<Perms, FaultReason> {
    let write_ok = if privileged { !wpe || rw } else { us && rw };
    let exec_ok = !xd && if privileged { !(smep && us) } else { us };
    if !privileged && !us {
        return Err(FaultReason::SgnUserDenied);
    }
    if req.access.needs_write() && !write_ok {
        return Err(FaultReason::SgnWriteDenied);
    }
    if req.execute && !exec_ok {
        return Err(FaultReason::SgnExecuteDenied);
    }
    let mut perms = Perms::READ;
    perms.set(Perms::WRITE, write_ok);
    perms.set(Perms::EXECUTE, exec_ok);
    Ok(perms)
}
