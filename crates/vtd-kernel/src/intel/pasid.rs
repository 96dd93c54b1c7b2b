//! PASID-table entries as the driver programs them (pasid.c): second-stage and nested
//! setup, dirty-tracking updates, and tear-down with the invalidation sequence of §8.5.

use vtd_iommufd::Errno;
use vtd_iommufd::uapi::{VTD_S1_ADDR_WIDTH_4LEVEL, VTD_S1_ADDR_WIDTH_5LEVEL, VtdS1Flags};
use vtd_spec::inv::{
    PasidCacheGranularity, PasidCacheInvDesc, PasidIotlbGranularity, PasidIotlbInvDesc,
    RawDescriptor,
};
use vtd_spec::pasid::{Fspm, PasidEntry, PasidEntryHi, PasidEntryLo, Pgtt};
use vtd_spec::regs::Cap;

use super::cache::{devtlb_raw, iotlb_desc};
use super::tables::Tables;
use super::{IntelDriver, State};

fn raw(lo: u128) -> RawDescriptor {
    RawDescriptor { lo, hi: 0 }
}

/// PASID-cache invalidation, PASID-selective within the domain.
pub(crate) fn pasid_cache_psi(did: u16, pasid: u32) -> RawDescriptor {
    raw(PasidCacheInvDesc::new()
        .with_g(PasidCacheGranularity::Pasid)
        .with_did(did)
        .with_pasid(pasid)
        .into_bits())
}

/// PASID-based IOTLB invalidation, PASID-selective (every address).
pub(crate) fn piotlb_pasid(did: u16, pasid: u32) -> RawDescriptor {
    raw(PasidIotlbInvDesc::new()
        .with_g(PasidIotlbGranularity::Pasid)
        .with_did(did)
        .with_pasid(pasid)
        .into_bits())
}

/// IOTLB invalidation, domain-selective.
pub(crate) fn iotlb_dsi(cap: &Cap, did: u16) -> RawDescriptor {
    iotlb_desc(cap, did, None)
}

/// Device-TLB invalidation of everything for `pasid` (0: the no-PASID form).
pub(crate) fn devtlb_all(sid: u16, pasid: u32) -> RawDescriptor {
    devtlb_raw(sid, pasid, (1u64 << 51) - 1, true)
}

/// What a second-stage (PGTT=010b) entry needs from the domain.
pub(crate) struct SecondLevel {
    pub(crate) ssptptr: u64,
    pub(crate) agaw: u8,
    pub(crate) did: u16,
    pub(crate) dirty: bool,
    pub(crate) snoop: bool,
}

/// What a nested (PGTT=011b) entry needs: the stage-1 data and the parent.
pub(crate) struct NestedSetup {
    pub(crate) s1: vtd_iommufd::uapi::iommu_hwpt_vtd_s1,
    pub(crate) parent: SecondLevel,
    pub(crate) did: u16,
}

impl IntelDriver {
    fn entry_addr(&self, st: &mut State, dev: usize, pasid: u32) -> Result<u64, Errno> {
        let info = self.devices[dev];
        st.units[info.unit]
            .tables
            .pasid_entry_addr(&self.mem, info.sid, pasid)
            .ok_or(Errno::ENODEV)
    }

    /// After making an entry present: in caching mode invalidate what may be cached for
    /// it (PASID cache, PASID-based IOTLB), else nothing (pasid_flush_caches).
    fn flush_new_entry(&self, st: &mut State, dev: usize, pasid: u32, did: u16) {
        let unit = self.devices[dev].unit;
        if self.hw[unit].cap.cm() {
            self.submit(
                st,
                unit,
                &[pasid_cache_psi(did, pasid), piotlb_pasid(did, pasid)],
            );
        }
    }

    /// Program a second-stage-only entry (intel_pasid_setup_second_level).
    pub(crate) fn setup_second_level(
        &self,
        st: &mut State,
        dev: usize,
        pasid: u32,
        sl: &SecondLevel,
    ) -> Result<(), Errno> {
        let addr = self.entry_addr(st, dev, pasid)?;
        if Tables::read_pasid_entry(&self.mem, addr).lo.p() {
            return Err(Errno::EBUSY);
        }
        let hw = &self.hw[self.devices[dev].unit];
        let entry = PasidEntry {
            lo: PasidEntryLo::new()
                .with_aw(sl.agaw)
                .with_pgtt(Pgtt::SecondStage)
                .with_ssade(sl.dirty)
                .with_ssptptr(sl.ssptptr >> 12)
                .with_did(sl.did)
                .with_pwsnp(hw.ecap.smpwcs())
                .with_pgsnp(sl.snoop),
            ..PasidEntry::default()
        };
        self.install(addr, entry);
        self.flush_new_entry(st, dev, pasid, sl.did);
        Ok(())
    }

    /// Program a nested entry (intel_pasid_setup_nested, §5.3): validations first, then
    /// every field, present last.
    pub(crate) fn setup_nested(
        &self,
        st: &mut State,
        dev: usize,
        pasid: u32,
        n: &NestedSetup,
    ) -> Result<(), Errno> {
        let hw = &self.hw[self.devices[dev].unit];
        let flags = VtdS1Flags::from_bits_retain(n.s1.flags);
        let fspm = match n.s1.addr_width {
            VTD_S1_ADDR_WIDTH_4LEVEL => Fspm::Level4,
            VTD_S1_ADDR_WIDTH_5LEVEL if hw.cap.fs5lp() => Fspm::Level5,
            _ => return Err(Errno::EINVAL),
        };
        let sre = flags.contains(VtdS1Flags::SRE);
        let eafe = flags.contains(VtdS1Flags::EAFE);
        let wpe = flags.contains(VtdS1Flags::WPE);
        if (sre && !hw.ecap.srs()) || (eafe && !hw.ecap.eafs()) {
            return Err(Errno::EINVAL);
        }
        let addr = self.entry_addr(st, dev, pasid)?;
        if Tables::read_pasid_entry(&self.mem, addr).lo.p() {
            return Err(Errno::EBUSY);
        }
        let p = &n.parent;
        let lo = PasidEntryLo::new()
            .with_aw(p.agaw)
            .with_pgtt(Pgtt::Nested)
            .with_ssade(p.dirty)
            .with_ssptptr(p.ssptptr >> 12)
            .with_did(n.did)
            .with_pwsnp(hw.ecap.smpwcs())
            .with_pgsnp(p.snoop);
        let hi = PasidEntryHi::new()
            .with_sre(sre)
            .with_fspm(fspm)
            .with_wpe(sre && wpe)
            .with_eafe(eafe)
            .with_fsptptr(n.s1.pgtbl_addr >> 12);
        // Linux ORs the whole user pgtbl_addr into qword 2, so its low 12 bits, never
        // checked, land in SRE/FSPM/WPE/EAFE and reserved bits (§5.3 quirk). Reproduced.
        let hi = PasidEntryHi::from_bits(hi.into_bits() | (n.s1.pgtbl_addr & 0xFFF) as u128);
        self.install(
            addr,
            PasidEntry {
                lo,
                hi,
                rsvd: [0, 0],
            },
        );
        self.flush_new_entry(st, dev, pasid, n.did);
        Ok(())
    }

    /// Write `entry` with P set last.
    fn install(&self, addr: u64, entry: PasidEntry) {
        let mut staged = entry;
        staged.lo = staged.lo.with_p(false);
        Tables::write_pasid_entry(&self.mem, addr, &staged);
        Tables::set_pasid_present(&self.mem, addr, true);
    }

    /// Tear down an entry (intel_pasid_tear_down_entry, §5.4): clear P, invalidate the
    /// PASID cache, the IOTLB (DSI for second-stage and nested, PASID-selective for
    /// first-stage and pass-through) and the device TLB, then zero the entry.
    pub(crate) fn tear_down(&self, st: &mut State, dev: usize, pasid: u32) {
        let Ok(addr) = self.entry_addr(st, dev, pasid) else {
            return;
        };
        let entry = Tables::read_pasid_entry(&self.mem, addr);
        if !entry.lo.p() {
            if entry.lo.fpd() {
                Tables::write_pasid_entry(&self.mem, addr, &PasidEntry::default());
            }
            return;
        }
        let (did, pgtt) = (entry.lo.did(), entry.lo.pgtt());
        Tables::set_pasid_present(&self.mem, addr, false);
        let info = self.devices[dev];
        let mut descs = vec![pasid_cache_psi(did, pasid)];
        descs.push(match pgtt {
            Pgtt::PassThrough | Pgtt::FirstStage => piotlb_pasid(did, pasid),
            _ => iotlb_dsi(&self.hw[info.unit].cap, did),
        });
        if st.ats_enabled[dev] {
            descs.push(devtlb_all(info.sid, pasid));
        }
        self.submit(st, info.unit, &descs);
        Tables::write_pasid_entry(&self.mem, addr, &PasidEntry::default());
    }

    /// Set SSADE of an entry (intel_pasid_setup_dirty_tracking), with the invalidations
    /// the change needs.
    pub(crate) fn set_entry_dirty(
        &self,
        st: &mut State,
        dev: usize,
        pasid: u32,
        enable: bool,
    ) -> Result<(), Errno> {
        let addr = self.entry_addr(st, dev, pasid)?;
        let entry = Tables::read_pasid_entry(&self.mem, addr);
        if !matches!(entry.lo.pgtt(), Pgtt::SecondStage | Pgtt::Nested) {
            return Err(Errno::EOPNOTSUPP);
        }
        if entry.lo.ssade() == enable {
            return Ok(());
        }
        let w0 = entry.lo.with_ssade(enable).into_bits() as u64;
        let _ = vtd_model::PhysMem::write_u64(&*self.mem, addr, w0);
        let did = entry.lo.did();
        let info = self.devices[dev];
        let mut descs = vec![
            pasid_cache_psi(did, pasid),
            iotlb_dsi(&self.hw[info.unit].cap, did),
        ];
        if st.ats_enabled[dev] {
            descs.push(devtlb_all(info.sid, pasid));
        }
        self.submit(st, info.unit, &descs);
        Ok(())
    }
}
