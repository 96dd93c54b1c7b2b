//! One DMA-remapping unit: the hardware seam of ARCHITECTURE §3.
//!
//! A unit offers exactly what hardware offers: MMIO register reads and writes, and the
//! translation of DMA requests against tables in [`PhysMem`]. Translation takes no lock on
//! its fast path; MMIO and fault recording serialise on the register-file lock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use vtd_spec::regs::{
    Ccmd, CcmdGranularity, GlobalCommand, GlobalStatus, IotlbGranularity, IotlbReg, Iqa, IvaReg,
    RtAddr, Ttm,
};

use crate::cache::{CacheOccupancy, Caches};
use crate::config::{ConfigError, UnitConfig};
use crate::fault::{Fault, FaultRecording};
use crate::mem::PhysMem;
use crate::regs::{Effect, EventKind, Msi, RegisterFile};
use crate::request::{Request, Translation};
use crate::stats::{Counter, Counters, Stats};
use crate::trace::{NoTrace, WalkObserver};
use crate::walk::{ReservedMasks, WalkMode, Walker};

/// Receives the unit's MSIs (fault and invalidation-completion events).
pub trait InterruptSink: Send + Sync {
    /// Deliver one interrupt message.
    fn deliver(&self, kind: EventKind, msi: Msi);
}

/// What a VMM learns from the unit as the guest drives it: completed invalidations and
/// remapping being switched on or off (a vIOMMU forwards the first and re-derives its
/// shadow state on both).
///
/// The callbacks run synchronously, inside the register write that caused them and with
/// the unit's register lock held, so an invalidation is forwarded before the guest can see
/// its wait descriptor complete. They must not access the unit's registers; translating
/// and [`Unit::lookup_pasid_entry`] are fine.
pub trait UnitObserver: Send + Sync {
    /// An invalidation request completed: the unit's caches no longer hold what it names.
    fn invalidated(&self, inv: &crate::invalidation::Invalidation) {
        let _ = inv;
    }

    /// GSTS.TES changed, or a new root table was latched (SRTP) while remapping is on.
    fn remapping_changed(&self, enabled: bool) {
        let _ = enabled;
    }
}

/// What [`Unit::lookup_pasid_entry`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PasidLookup {
    /// Remapping is off (GSTS.TES clear): requests pass untranslated.
    Disabled,
    /// The root table is not in scalable mode (legacy or abort-DMA).
    NotScalable,
    /// The entry, with the PASID it was looked up for (the request's or RID_PASID).
    Entry {
        /// The PASID.
        pasid: u32,
        /// The PASID-table entry as in memory; it passed the §3.5 checks.
        entry: vtd_spec::pasid::PasidEntry,
    },
    /// The lookup stops with this fault before a usable PASID entry.
    Fault(vtd_spec::fault::FaultReason),
}

/// A malformed MMIO access. Hardware would ignore it; the model reports it so a VMM can
/// log the guest's mistake.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MmioError {
    /// Only 4- and 8-byte accesses are defined.
    #[error("{size}-byte register access at {offset:#x}: only 4- and 8-byte accesses are defined")]
    BadSize {
        /// Offset of the access.
        offset: u64,
        /// Its size in bytes.
        size: u8,
    },
    /// The access is not naturally aligned.
    #[error("register access at {offset:#x} is not aligned to its size {size}")]
    Unaligned {
        /// Offset of the access.
        offset: u64,
        /// Its size in bytes.
        size: u8,
    },
    /// The access is beyond the register window.
    #[error("register access at {offset:#x} is outside the {window:#x}-byte register window")]
    OutOfWindow {
        /// Offset of the access.
        offset: u64,
        /// Size of the window.
        window: u64,
    },
}

/// Limits derived once from the configuration.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// Address bits 51:HAW, reserved in every table pointer and frame.
    pub(crate) above_haw: u64,
    /// Maximum guest address width in bits (MGAW + 1).
    pub(crate) mgaw_bits: u32,
    /// Number of domain ids.
    pub(crate) num_domains: u32,
    /// PASID width in bits.
    pub(crate) pasid_bits: u32,
}

impl Limits {
    fn new(config: &UnitConfig) -> Self {
        Self {
            above_haw: vtd_spec::second_stage::SsEntry::addr_bits_above(
                config.host_address_width as u32,
            ),
            mgaw_bits: config.cap.mgaw_bits(),
            num_domains: config.cap.num_domains(),
            pasid_bits: config.ecap.pasid_bits(),
        }
    }
}

/// The translation-relevant part of the global state, packed so a walk reads it with one
/// atomic load: bit 0 TE, bits 2:1 TTM, bits 63:12 the latched root-table address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RootState(u64);

impl RootState {
    fn new(enabled: bool, rtaddr: RtAddr) -> Self {
        Self(rtaddr.root_table() | (rtaddr.ttm().into_bits() as u64) << 1 | enabled as u64)
    }

    pub(crate) fn enabled(self) -> bool {
        self.0 & 1 != 0
    }

    pub(crate) fn ttm(self) -> Ttm {
        Ttm::from_bits((self.0 >> 1) as u8)
    }

    pub(crate) fn root_table(self) -> u64 {
        self.0 & !0xFFF
    }
}

/// A software VT-d DMA-remapping unit.
pub struct Unit<M> {
    pub(crate) config: UnitConfig,
    pub(crate) limits: Limits,
    pub(crate) masks: ReservedMasks,
    pub(crate) mem: M,
    root_state: AtomicU64,
    latched_rtaddr: AtomicU64,
    regs: Mutex<RegisterFile>,
    pub(crate) counters: Counters,
    pub(crate) caches: Caches,
    irq: Option<Arc<dyn InterruptSink>>,
    observer: Option<Arc<dyn UnitObserver>>,
    mmio_size: u64,
}

impl<M: PhysMem> Unit<M> {
    /// Build a unit from `config` over physical memory `mem`. Remapping starts disabled,
    /// as after reset.
    pub fn new(config: UnitConfig, mem: M) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            limits: Limits::new(&config),
            masks: ReservedMasks::new(&config),
            mmio_size: config.mmio_size(),
            regs: Mutex::new(RegisterFile::new(&config)),
            caches: Caches::new(&config.caches),
            config,
            mem,
            root_state: AtomicU64::new(0),
            latched_rtaddr: AtomicU64::new(0),
            counters: Counters::new(),
            irq: None,
            observer: None,
        })
    }

    /// Report completed invalidations and remapping changes to `observer`.
    pub fn with_observer(mut self, observer: Arc<dyn UnitObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// The observer, if any.
    pub(crate) fn observer(&self) -> Option<&dyn UnitObserver> {
        self.observer.as_deref()
    }

    /// Route the unit's MSIs to `sink`.
    pub fn with_interrupt_sink(mut self, sink: Arc<dyn InterruptSink>) -> Self {
        self.irq = Some(sink);
        self
    }

    /// The configuration the unit was built from.
    pub fn config(&self) -> &UnitConfig {
        &self.config
    }

    /// The unit's physical memory.
    pub fn mem(&self) -> &M {
        &self.mem
    }

    /// Size of the MMIO register window in bytes.
    pub fn mmio_size(&self) -> u64 {
        self.mmio_size
    }

    /// A snapshot of the unit's counters.
    pub fn stats(&self) -> Stats {
        self.counters.snapshot()
    }

    /// Zero the unit's counters.
    pub fn reset_stats(&self) {
        self.counters.reset();
    }

    /// How many entries each cache holds right now.
    pub fn cache_occupancy(&self) -> CacheOccupancy {
        self.caches.occupancy()
    }

    pub(crate) fn root_state(&self) -> RootState {
        RootState(self.root_state.load(Ordering::Acquire))
    }

    fn lock_regs(&self) -> MutexGuard<'_, RegisterFile> {
        // A panic while holding the lock cannot leave the registers half-written in a way
        // that matters more than refusing all further MMIO, so keep going.
        self.regs.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn check_access(&self, offset: u64, size: u8) -> Result<(), MmioError> {
        if size != 4 && size != 8 {
            return Err(MmioError::BadSize { offset, size });
        }
        if !offset.is_multiple_of(size as u64) {
            return Err(MmioError::Unaligned { offset, size });
        }
        if offset
            .checked_add(size as u64)
            .is_none_or(|end| end > self.mmio_size)
        {
            return Err(MmioError::OutOfWindow {
                offset,
                window: self.mmio_size,
            });
        }
        Ok(())
    }

    /// Read `size` bytes (4 or 8) of registers at `offset`.
    pub fn mmio_read(&self, offset: u64, size: u8) -> Result<u64, MmioError> {
        self.check_access(offset, size)?;
        let regs = self.lock_regs();
        let low = regs.read32(offset) as u64;
        Ok(if size == 8 {
            low | (regs.read32(offset + 4) as u64) << 32
        } else {
            low
        })
    }

    /// Write `size` bytes (4 or 8) of `value` to registers at `offset`. An 8-byte write is
    /// two dword writes, low half first.
    pub fn mmio_write(&self, offset: u64, size: u8, value: u64) -> Result<(), MmioError> {
        self.check_access(offset, size)?;
        let mut regs = self.lock_regs();
        let mut msis = Vec::new();
        let halves: &[(u64, u32)] = if size == 8 {
            &[(offset, value as u32), (offset + 4, (value >> 32) as u32)]
        } else {
            &[(offset, value as u32)]
        };
        for &(off, dword) in halves {
            if let Some(effect) = regs.write32(off, dword) {
                self.apply(&mut regs, effect, &mut msis);
            }
        }
        drop(regs);
        self.send(msis);
        Ok(())
    }

    fn send(&self, msis: Vec<(EventKind, Msi)>) {
        for (kind, msi) in msis {
            self.counters.inc(match kind {
                EventKind::Fault => Counter::FaultEvents,
                EventKind::InvalidationComplete => Counter::CompletionEvents,
            });
            if let Some(sink) = &self.irq {
                sink.deliver(kind, msi);
            }
        }
    }

    fn apply(&self, regs: &mut RegisterFile, effect: Effect, msis: &mut Vec<(EventKind, Msi)>) {
        match effect {
            Effect::GlobalCommand(value) => self.global_command(regs, value, msis),
            Effect::ContextCommand => self.context_command(regs),
            Effect::IotlbCommand => self.iotlb_command(regs),
            Effect::FetchDescriptors => self.process_queue(regs, msis),
            Effect::Deliver(kind) => {
                if let Some(msi) = regs.deliver_if_unmasked(kind) {
                    msis.push((kind, msi));
                }
            }
        }
    }

    /// GCMD: software writes the persistent status bits it wants plus at most one one-shot
    /// command (§1.4). Each change completes at once, so GSTS shows it on the next read.
    fn global_command(
        &self,
        regs: &mut RegisterFile,
        value: u32,
        msis: &mut Vec<(EventKind, Msi)>,
    ) {
        let cmd = GlobalCommand::from_bits_truncate(value);
        let ecap = self.config.ecap;
        if cmd.contains(GlobalCommand::SRTP) {
            let rtaddr = RtAddr::from_bits(regs.rtaddr);
            self.latched_rtaddr
                .store(rtaddr.into_bits(), Ordering::Release);
            regs.gsts.insert(GlobalStatus::RTPS);
            self.publish_root_state(regs);
            if self.config.cap.esrtps() {
                self.invalidate(crate::invalidation::Invalidation::Everything);
            }
            if let (Some(o), true) = (self.observer(), regs.gsts.contains(GlobalStatus::TES)) {
                o.remapping_changed(true);
            }
        }
        let te = cmd.contains(GlobalCommand::TE);
        if te != regs.gsts.contains(GlobalStatus::TES) {
            regs.gsts.set(GlobalStatus::TES, te);
            if !te {
                regs.reset_fault_index();
            }
            self.publish_root_state(regs);
            if let Some(o) = self.observer() {
                o.remapping_changed(te);
            }
        }
        if self.config.cap.afl() {
            if cmd.contains(GlobalCommand::SFL) {
                regs.gsts.insert(GlobalStatus::FLS);
            }
            regs.gsts
                .set(GlobalStatus::AFLS, cmd.contains(GlobalCommand::EAFL));
        }
        // WBF completes immediately, so WBFS never reads as set.
        let qie = cmd.contains(GlobalCommand::QIE);
        if ecap.qi() && qie != regs.gsts.contains(GlobalStatus::QIES) {
            self.set_queued_invalidation(regs, qie, msis);
        }
        if ecap.ir() {
            regs.gsts
                .set(GlobalStatus::IRES, cmd.contains(GlobalCommand::IRE));
            regs.gsts
                .set(GlobalStatus::CFIS, cmd.contains(GlobalCommand::CFI));
            if cmd.contains(GlobalCommand::SIRTP) {
                regs.gsts.insert(GlobalStatus::IRTPS);
            }
        }
    }

    fn publish_root_state(&self, regs: &RegisterFile) {
        let rtaddr = RtAddr::from_bits(self.latched_rtaddr.load(Ordering::Acquire));
        let state = RootState::new(regs.gsts.contains(GlobalStatus::TES), rtaddr);
        self.root_state.store(state.0, Ordering::Release);
    }

    /// QIE set: latch IQA and start fetching if the tail is ahead. QIE clear: allowed only
    /// with an empty queue (IQH == IQT); IQH then resets to 0. A refused disable leaves
    /// QIES set, as QEMU does.
    fn set_queued_invalidation(
        &self,
        regs: &mut RegisterFile,
        enable: bool,
        msis: &mut Vec<(EventKind, Msi)>,
    ) {
        if enable {
            regs.iqa_latched = Iqa::from_bits(regs.iqa);
            regs.gsts.insert(GlobalStatus::QIES);
            self.process_queue(regs, msis);
        } else if regs.queue_head() == regs.queue_tail() {
            regs.gsts.remove(GlobalStatus::QIES);
            regs.set_queue_head(0);
        }
    }

    /// CCMD with ICC=1: register-based context-cache invalidation (§1.6, §8.6). Refused
    /// (CAIG = 0) while queued invalidation is enabled.
    fn context_command(&self, regs: &mut RegisterFile) {
        let ccmd = Ccmd::from_bits(regs.ccmd);
        let actual = if regs.gsts.contains(GlobalStatus::QIES) {
            CcmdGranularity::Reserved
        } else {
            self.context_cache_invalidate_register(ccmd)
        };
        regs.ccmd = ccmd.with_icc(false).with_caig(actual).into_bits();
    }

    /// IOTLB_REG with IVT=1: register-based IOTLB invalidation (§1.7, §8.6). Refused
    /// (IAIG = 0) while queued invalidation is enabled.
    fn iotlb_command(&self, regs: &mut RegisterFile) {
        let cmd = IotlbReg::from_bits(regs.iotlb);
        let actual = if regs.gsts.contains(GlobalStatus::QIES) {
            IotlbGranularity::Reserved
        } else {
            self.iotlb_invalidate_register(cmd, IvaReg::from_bits(regs.iva))
        };
        regs.iotlb = cmd.with_ivt(false).with_iaig(actual).into_bits();
    }

    /// Translate one DMA request. On a fault the fault is also recorded in the
    /// fault-recording registers (subject to FPD) and counted.
    #[inline]
    pub fn translate(&self, req: &Request) -> Result<Translation, Fault> {
        // Only the front-cache probe is inline: most translations end there, and keeping
        // the rest out of line keeps this path free of the walker's stack frame.
        let fast = self.fast_path_applies(req);
        if fast && let Some(t) = self.front_hit(req) {
            return Ok(t);
        }
        self.translate_past_front(req, fast)
    }

    /// [`Unit::translate`] once the front cache did not answer: the cache probes of the
    /// fast path (when `fast`: it applies to `req`), then the walk.
    #[inline(never)]
    fn translate_past_front(&self, req: &Request, fast: bool) -> Result<Translation, Fault> {
        // The thread's front cache is made on its first translation (one allocation per
        // thread and unit), not by the fill that first needs it: that fill can come from
        // an IOTLB hit on the fast path, which must not allocate.
        if self.caches.enabled {
            self.caches.front_or_make(crate::stats::shard_index());
        }
        let mut obs = NoTrace;
        let mut walker = Walker::new(self, req, &mut obs, WalkMode::Normal);
        if fast && let Some(t) = self.fast_path(req, &mut walker.prefetch) {
            return Ok(t);
        }
        let result = walker.run();
        result.map_err(|(fault, fpd)| self.finish_fault(fault, fpd, WalkMode::Normal))
    }

    /// Translate with every step reported to `observer`: the hardware's own walk, with all
    /// side effects (A/D updates, fault recording, counters).
    pub fn translate_traced<O: WalkObserver>(
        &self,
        req: &Request,
        observer: &mut O,
    ) -> Result<Translation, Fault> {
        self.translate_observed(req, observer, WalkMode::Normal)
    }

    /// Walk `req` without side effects, reporting each step to `observer`: no cache is
    /// consulted or filled, no A/D bit is written (the events say what would be), no fault
    /// is recorded and no counter moves. For explaining a DMA.
    pub fn explain<O: WalkObserver>(
        &self,
        req: &Request,
        observer: &mut O,
    ) -> Result<Translation, Fault> {
        self.translate_observed(req, observer, WalkMode::DryRun)
    }

    fn translate_observed<O: WalkObserver>(
        &self,
        req: &Request,
        observer: &mut O,
        mode: WalkMode,
    ) -> Result<Translation, Fault> {
        let result = Walker::new(self, req, observer, mode).run();
        match result {
            Ok(t) => Ok(t),
            Err((fault, fpd)) => Err(self.finish_fault(fault, fpd, mode)),
        }
    }

    /// The PASID entry requests from `sid` (with `pasid`, or without: RID_PASID) would use,
    /// read from memory with every check of §2.5 and §3.5 and no side effect: no cache is
    /// consulted or filled, nothing is recorded. A vIOMMU reads guest PASID entries this
    /// way when the guest invalidates them.
    pub fn lookup_pasid_entry(&self, sid: u16, pasid: Option<u32>) -> PasidLookup {
        let state = self.root_state();
        if !state.enabled() {
            return PasidLookup::Disabled;
        }
        if state.ttm() != Ttm::Scalable || !self.config.ecap.smts() {
            return PasidLookup::NotScalable;
        }
        /// Keeps the PASID entry the lookup read.
        struct Grab(Option<(u32, vtd_spec::pasid::PasidEntry)>);
        impl crate::trace::WalkObserver for Grab {
            fn event(&mut self, event: crate::trace::WalkEvent) {
                if let crate::trace::WalkEvent::PasidEntry { pasid, entry, .. } = event {
                    self.0 = Some((pasid, entry));
                }
            }
        }
        let mut req = Request::read(sid, 0);
        if let Some(p) = pasid {
            req = req.with_pasid(p);
        }
        let mut grab = Grab(None);
        let found =
            Walker::new(self, &req, &mut grab, WalkMode::DryRun).pasid_lookup(state.root_table());
        match (found, grab.0) {
            (Err(f), _) => PasidLookup::Fault(f.reason),
            (Ok(_), Some((pasid, entry))) => PasidLookup::Entry { pasid, entry },
            // A lookup that succeeds has read the entry; the arm keeps the match total.
            (Ok(_), None) => PasidLookup::Disabled,
        }
    }

    /// Record `fault` in the fault-recording registers as if this unit had detected it,
    /// with the usual FPD, collapsing and interrupt rules (FPD as given). A vIOMMU reports
    /// the faults of the devices it shadows onto host hardware this way. Returns the fault
    /// with how it was recorded.
    pub fn report_fault(&self, fault: Fault, fpd: bool) -> Fault {
        self.finish_fault(fault, fpd, WalkMode::Normal)
    }

    /// Count and record a fault (§7.2), unless suppressed by FPD (§7.3).
    fn finish_fault(&self, mut fault: Fault, fpd: bool, mode: WalkMode) -> Fault {
        if mode == WalkMode::DryRun {
            fault.recording = FaultRecording::DryRun;
            return fault;
        }
        self.counters.fault(fault.reason);
        if fault.recording == FaultRecording::AbortDmaMode {
            return fault;
        }
        if fpd && fault.reason.is_qualified() {
            fault.recording = FaultRecording::SuppressedByFpd;
            return fault;
        }
        if fault.address_type == crate::request::AddressType::TranslationRequest {
            fault.recording = FaultRecording::NotRecordedAts;
            return fault;
        }
        let mut regs = self.lock_regs();
        let (recording, msi) = regs.record_fault(&fault);
        drop(regs);
        fault.recording = recording;
        if let Some(msi) = msi {
            self.send(vec![(EventKind::Fault, msi)]);
        }
        fault
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::SparseMem;
    use vtd_spec::regs::offset;

    fn unit() -> Unit<SparseMem> {
        Unit::new(UnitConfig::default(), SparseMem::new()).unwrap()
    }

    #[test]
    fn capability_registers_read_back_the_configuration() {
        let u = unit();
        assert_eq!(
            u.mmio_read(offset::CAP, 8).unwrap(),
            u.config().cap.into_bits()
        );
        assert_eq!(
            u.mmio_read(offset::ECAP, 8).unwrap(),
            u.config().ecap.into_bits()
        );
        assert_eq!(
            u.mmio_read(offset::ECAP + 4, 4).unwrap(),
            u.config().ecap.into_bits() >> 32
        );
    }

    #[test]
    fn capability_registers_ignore_writes() {
        let u = unit();
        u.mmio_write(offset::CAP, 8, 0).unwrap();
        assert_eq!(
            u.mmio_read(offset::CAP, 8).unwrap(),
            u.config().cap.into_bits()
        );
    }

    #[test]
    fn gcmd_reads_as_zero_and_srtp_sets_rtps() {
        let u = unit();
        u.mmio_write(offset::RTADDR, 8, 0x5000 | 1 << 10).unwrap();
        u.mmio_write(offset::GCMD, 4, GlobalCommand::SRTP.bits() as u64)
            .unwrap();
        assert_eq!(u.mmio_read(offset::GCMD, 4).unwrap(), 0);
        let gsts = GlobalStatus::from_bits_retain(u.mmio_read(offset::GSTS, 4).unwrap() as u32);
        assert!(gsts.contains(GlobalStatus::RTPS));
        assert_eq!(u.root_state().root_table(), 0x5000);
        assert_eq!(u.root_state().ttm(), Ttm::Scalable);
        assert!(!u.root_state().enabled());
    }

    #[test]
    fn rtaddr_change_takes_effect_only_on_srtp() {
        let u = unit();
        u.mmio_write(offset::RTADDR, 8, 0x5000).unwrap();
        u.mmio_write(offset::GCMD, 4, GlobalCommand::SRTP.bits() as u64)
            .unwrap();
        u.mmio_write(offset::RTADDR, 8, 0x9000).unwrap();
        assert_eq!(u.root_state().root_table(), 0x5000);
    }

    #[test]
    fn te_handshake_enables_and_disables_translation() {
        let u = unit();
        u.mmio_write(offset::GCMD, 4, GlobalCommand::TE.bits() as u64)
            .unwrap();
        assert_eq!(
            u.mmio_read(offset::GSTS, 4).unwrap() as u32 & GlobalStatus::TES.bits(),
            GlobalStatus::TES.bits()
        );
        assert!(u.root_state().enabled());
        u.mmio_write(offset::GCMD, 4, 0).unwrap();
        assert!(!u.root_state().enabled());
    }

    #[test]
    fn bad_mmio_accesses_are_reported_not_panicking() {
        let u = unit();
        assert_eq!(
            u.mmio_read(0x1, 4),
            Err(MmioError::Unaligned { offset: 1, size: 4 })
        );
        assert_eq!(
            u.mmio_read(0x0, 2),
            Err(MmioError::BadSize { offset: 0, size: 2 })
        );
        assert!(matches!(
            u.mmio_write(u64::MAX - 3, 4, 0),
            Err(MmioError::OutOfWindow { .. })
        ));
    }

    #[test]
    fn unimplemented_offsets_read_zero() {
        let u = unit();
        assert_eq!(u.mmio_read(0x0F0, 8).unwrap(), 0);
    }
}
