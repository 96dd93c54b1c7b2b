//! Reserved-bit masks of every entry the walker checks, computed once per unit from its
//! capabilities and switches (§2.3–§2.4, §3.2–§3.5, §4.3, §5.3).

use vtd_spec::addr::PageSize;
use vtd_spec::context::{SmContextEntry, SmContextEntryLo};
use vtd_spec::first_stage::FsEntry;
use vtd_spec::pasid::{PasidEntry, PasidEntryHi, PasidEntryLo};
use vtd_spec::second_stage::SsEntry;

use crate::config::UnitConfig;

/// Reserved bits by entry kind; paging masks are indexed by level (1–5) and leaf.
#[derive(Clone, Debug)]
pub(crate) struct ReservedMasks {
    /// Low 128 bits of a scalable-mode context entry.
    pub(crate) context_lo: u128,
    /// PASID-entry bits 127:0 and 255:128.
    pub(crate) pasid_lo: u128,
    pub(crate) pasid_hi: u128,
    ss: [[u64; 2]; 6],
    fs_host: [[u64; 2]; 6],
    fs_nested: [[u64; 2]; 6],
}

impl ReservedMasks {
    pub(crate) fn new(config: &UnitConfig) -> Self {
        let (pasid_lo, pasid_hi) = pasid_masks(config);
        let mut masks = Self {
            context_lo: context_mask(config),
            pasid_lo,
            pasid_hi,
            ss: [[0; 2]; 6],
            fs_host: [[0; 2]; 6],
            fs_nested: [[0; 2]; 6],
        };
        let above_haw = SsEntry::addr_bits_above(config.host_address_width as u32);
        for level in 1..=5u8 {
            for leaf in [false, true] {
                let l = level as usize;
                masks.ss[l][leaf as usize] = ss_mask(config, above_haw, level, leaf);
                let fs = fs_mask(config, level, leaf);
                masks.fs_host[l][leaf as usize] = fs | above_haw;
                masks.fs_nested[l][leaf as usize] = fs;
            }
        }
        masks
    }

    /// Reserved bits of a present second-stage entry (§5.3).
    #[inline]
    pub(crate) fn ss(&self, level: u8, leaf: bool) -> u64 {
        // Levels are 1–5; clamping (a compare) keeps the index in range more cheaply than
        // a modulo.
        self.ss[usize::from(level).min(5)][leaf as usize]
    }

    /// Reserved bits of a present first-stage entry (§4.3). Under nesting entry addresses
    /// are guest-physical, bounded by the second stage's width instead of the HAW.
    #[inline]
    pub(crate) fn fs(&self, level: u8, leaf: bool, nested: bool) -> u64 {
        let table = if nested {
            &self.fs_nested
        } else {
            &self.fs_host
        };
        table[usize::from(level).min(5)][leaf as usize]
    }
}

fn ss_mask(config: &UnitConfig, above_haw: u64, level: u8, leaf: bool) -> u64 {
    let cap = config.cap;
    let mut mask = above_haw | SsEntry::TM;
    match level {
        5 | 4 => mask |= 1 << 7,
        3 if !cap.ss_1g() => mask |= 1 << 7,
        2 if !cap.ss_2m() => mask |= 1 << 7,
        _ => {}
    }
    if leaf {
        if let Some(size) = PageSize::from_level(level) {
            mask |= SsEntry::large_leaf_reserved(size);
        }
        if !config.ecap.sc() {
            mask |= SsEntry::SNP;
        }
    } else {
        mask |= SsEntry::SNP;
    }
    mask
}

fn fs_mask(config: &UnitConfig, level: u8, leaf: bool) -> u64 {
    let mut mask = 0;
    match level {
        5 | 4 => mask |= 1 << 7,
        3 if !config.cap.fs1gp() => mask |= 1 << 7,
        _ => {}
    }
    if leaf && let Some(size) = PageSize::from_level(level) {
        mask |= FsEntry::large_leaf_reserved(size);
    }
    mask
}

/// Reserved bits of a context entry's low half, including fields of features the unit
/// does not advertise.
fn context_mask(config: &UnitConfig) -> u128 {
    let mut mask = SmContextEntry::RESERVED_LO;
    if config.switches.capability_reserved_fields {
        let ecap = config.ecap;
        let none = SmContextEntryLo::new();
        if !ecap.dt() {
            mask |= none.with_dte(true).into_bits();
        }
        if !ecap.pasid() {
            mask |= none.with_paside(true).into_bits();
        }
        if !ecap.prs() {
            mask |= none.with_pre(true).into_bits();
        }
        if !ecap.rps() {
            mask |= none.with_rid_pasid(0xF_FFFF).into_bits();
        }
        if !ecap.rprivs() {
            mask |= none.with_rid_priv(true).into_bits();
        }
    }
    mask
}

/// PASID-entry reserved masks (low half, high half): the always-reserved fields plus, with
/// the switch on, the fields of features the unit does not advertise.
fn pasid_masks(config: &UnitConfig) -> (u128, u128) {
    let mut lo = PasidEntry::RESERVED_LO;
    let mut hi = PasidEntry::RESERVED_HI;
    if config.switches.capability_reserved_fields {
        let ecap = config.ecap;
        let (l, h) = (PasidEntryLo::new(), PasidEntryHi::new());
        if !ecap.slads() {
            lo |= l.with_ssade(true).into_bits();
        }
        if !ecap.smpwcs() {
            lo |= l.with_pwsnp(true).into_bits();
        }
        if !ecap.sc() {
            lo |= l.with_pgsnp(true).into_bits();
        }
        if !ecap.mts() {
            lo |= l
                .with_cd(true)
                .with_emte(true)
                .with_emt(7)
                .with_pwt(true)
                .with_pcd(true)
                .with_pat(u32::MAX)
                .into_bits();
        }
        if !ecap.ers() {
            lo |= l.with_ssee(true).into_bits();
            hi |= h.with_ere(true).with_nxe(true).with_smep(true).into_bits();
        }
        if !ecap.srs() {
            hi |= h.with_sre(true).into_bits();
        }
        if !ecap.eafs() {
            hi |= h.with_eafe(true).into_bits();
        }
    }
    (lo, hi)
}
