//! The register file of one unit: storage, access semantics and fault recording (§1, §7.2).
//!
//! Registers are accessed as aligned 32-bit dwords; a 64-bit access is two dword accesses,
//! low half first, which is also how a driver issuing two 32-bit writes sees it. Writes
//! that start an operation (GCMD, CCMD.ICC, IOTLB_REG.IVT, IQT) return an `Effect` that
//! the unit carries out with access to memory and caches.

use vtd_spec::regs::{
    Ccmd, EventControl, FaultRecord, Fsts, GlobalStatus, IotlbReg, Iqa, Iqei, Iqercd, QueueIndex,
    offset,
};

use crate::config::UnitConfig;
use crate::fault::{Fault, FaultRecording};
use crate::request::{Access, AddressType};

/// An MSI the unit sends (fault event or invalidation-completion event).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Msi {
    /// Message address (FEADDR/FEUADDR or IEADDR/IEUADDR).
    pub addr: u64,
    /// Message data (FEDATA or IEDATA).
    pub data: u32,
}

/// Which event an [`Msi`] signals.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// Fault event: a fault record, overflow or invalidation-queue error (FECTL).
    Fault,
    /// Invalidation-completion event: a wait descriptor with IF=1 (IECTL).
    InvalidationComplete,
}

/// Something a register write asks the unit to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Effect {
    /// A GCMD write with this value.
    GlobalCommand(u32),
    /// CCMD was written with ICC=1.
    ContextCommand,
    /// IOTLB_REG was written with IVT=1.
    IotlbCommand,
    /// The queue may have work: IQT was written, or IQE/ITE cleared; fetch from IQH.
    FetchDescriptors,
    /// An event mask was cleared; its pending event, if any, is due.
    Deliver(EventKind),
}

/// The remapping unit's registers.
pub(crate) struct RegisterFile {
    pub(crate) version: u32,
    pub(crate) cap: u64,
    pub(crate) ecap: u64,
    pub(crate) gsts: GlobalStatus,
    pub(crate) rtaddr: u64,
    pub(crate) ccmd: u64,
    /// FSTS bits other than PPF, which is computed from the records.
    fsts: Fsts,
    fectl: EventControl,
    fedata: u32,
    feaddr: u32,
    feuaddr: u32,
    aflog: u64,
    pub(crate) iqh: u64,
    pub(crate) iqt: u64,
    pub(crate) iqa: u64,
    /// IQA as latched when queued invalidation was enabled.
    pub(crate) iqa_latched: Iqa,
    ics: u32,
    iectl: EventControl,
    iedata: u32,
    ieaddr: u32,
    ieuaddr: u32,
    pub(crate) iqercd: u64,
    irta: u64,
    pub(crate) iva: u64,
    pub(crate) iotlb: u64,
    frcd: Vec<FaultRecord>,
    next_frcd: usize,
    frcd_base: u64,
    iva_offset: u64,
    has_ir: bool,
    has_afl: bool,
    collapse_by_sid: bool,
}

fn lo(v: u64) -> u32 {
    v as u32
}

fn hi(v: u64) -> u32 {
    (v >> 32) as u32
}

fn set_lo(v: &mut u64, x: u32) {
    *v = (*v & !0xFFFF_FFFF) | x as u64;
}

fn set_hi(v: &mut u64, x: u32) {
    *v = (*v & 0xFFFF_FFFF) | (x as u64) << 32;
}

impl RegisterFile {
    pub(crate) fn new(config: &UnitConfig) -> Self {
        Self {
            version: config.version,
            cap: config.cap.into_bits(),
            ecap: config.ecap.into_bits(),
            gsts: GlobalStatus::empty(),
            rtaddr: 0,
            ccmd: 0,
            fsts: Fsts::new(),
            fectl: EventControl::new().with_im(true),
            fedata: 0,
            feaddr: 0,
            feuaddr: 0,
            aflog: 0,
            iqh: 0,
            iqt: 0,
            iqa: 0,
            iqa_latched: Iqa::new(),
            ics: 0,
            iectl: EventControl::new().with_im(true),
            iedata: 0,
            ieaddr: 0,
            ieuaddr: 0,
            iqercd: 0,
            irta: 0,
            iva: 0,
            iotlb: 0,
            frcd: vec![FaultRecord::new(); config.cap.fault_records() as usize],
            next_frcd: 0,
            frcd_base: vtd_spec::regs::frcd_offset(config.cap.fro(), 0),
            iva_offset: vtd_spec::regs::iva_reg_offset(config.ecap.iro()),
            has_ir: config.ecap.ir(),
            has_afl: config.cap.afl(),
            collapse_by_sid: config.switches.collapse_faults_by_sid,
        }
    }

    /// FSTS as software reads it: stored bits plus PPF computed from the records.
    pub(crate) fn fsts(&self) -> Fsts {
        self.fsts.with_ppf(self.frcd.iter().any(|r| r.f()))
    }

    /// Read the aligned dword at `off` (0 for unimplemented offsets).
    pub(crate) fn read32(&self, off: u64) -> u32 {
        let q = off & !7;
        let upper = off & 4 != 0;
        let half = |v: u64| if upper { hi(v) } else { lo(v) };
        if let Some((index, dword)) = self.frcd_dword(off) {
            let bits = self.frcd[index].into_bits();
            return (bits >> (32 * dword)) as u32;
        }
        if q == self.iva_offset {
            return half(self.iva);
        }
        if q == self.iva_offset + 8 {
            return half(self.iotlb);
        }
        match off {
            offset::VER => self.version,
            offset::GSTS => self.gsts.bits(),
            offset::FSTS => self.fsts().into_bits(),
            offset::FECTL => self.fectl.into_bits(),
            offset::FEDATA => self.fedata,
            offset::FEADDR => self.feaddr,
            offset::FEUADDR => self.feuaddr,
            offset::ICS => self.ics,
            offset::IECTL => self.iectl.into_bits(),
            offset::IEDATA => self.iedata,
            offset::IEADDR => self.ieaddr,
            offset::IEUADDR => self.ieuaddr,
            _ => match q {
                offset::CAP => half(self.cap),
                offset::ECAP => half(self.ecap),
                offset::RTADDR => half(self.rtaddr),
                offset::CCMD => half(self.ccmd),
                offset::AFLOG if self.has_afl => half(self.aflog),
                offset::IQH => half(self.iqh),
                offset::IQT => half(self.iqt),
                offset::IQA => half(self.iqa),
                offset::IQERCD => half(self.iqercd),
                offset::IRTA if self.has_ir => half(self.irta),
                _ => 0,
            },
        }
    }

    /// Write the aligned dword at `off`, applying each register's access semantics.
    /// Read-only and unimplemented offsets ignore the write.
    pub(crate) fn write32(&mut self, off: u64, value: u32) -> Option<Effect> {
        let q = off & !7;
        let upper = off & 4 != 0;
        if let Some((index, dword)) = self.frcd_dword(off) {
            // Only F (bit 127) is writable, and only as write-1-to-clear.
            if dword == 3 && value & (1 << 31) != 0 {
                self.frcd[index] = self.frcd[index].with_f(false);
                self.settle_fault_event();
            }
            return None;
        }
        let store = |reg: &mut u64| {
            if upper {
                set_hi(reg, value)
            } else {
                set_lo(reg, value)
            }
        };
        if q == self.iva_offset {
            store(&mut self.iva);
            return None;
        }
        if q == self.iva_offset + 8 {
            store(&mut self.iotlb);
            let started = upper && IotlbReg::from_bits(self.iotlb).ivt();
            return started.then_some(Effect::IotlbCommand);
        }
        match off {
            offset::GCMD => return Some(Effect::GlobalCommand(value)),
            offset::FSTS => {
                let stopped = self.queue_stopped();
                let clear = value & Fsts::RW1C_MASK;
                self.fsts = Fsts::from_bits(self.fsts.into_bits() & !clear);
                self.settle_fault_event();
                // Clearing IQE/ITE lets the queue fetch again from IQH (§8.2).
                return (stopped && !self.queue_stopped()).then_some(Effect::FetchDescriptors);
            }
            offset::FECTL => {
                self.fectl = self.fectl.with_im(EventControl::from_bits(value).im());
                return Some(Effect::Deliver(EventKind::Fault));
            }
            offset::FEDATA => self.fedata = value,
            offset::FEADDR => self.feaddr = value & !3,
            offset::FEUADDR => self.feuaddr = value,
            offset::ICS => {
                if value & 1 != 0 {
                    self.ics = 0;
                    self.iectl = self.iectl.with_ip(false);
                }
            }
            offset::IECTL => {
                self.iectl = self.iectl.with_im(EventControl::from_bits(value).im());
                return Some(Effect::Deliver(EventKind::InvalidationComplete));
            }
            offset::IEDATA => self.iedata = value,
            offset::IEADDR => self.ieaddr = value & !3,
            offset::IEUADDR => self.ieuaddr = value,
            _ => match q {
                offset::RTADDR => store(&mut self.rtaddr),
                offset::CCMD => {
                    store(&mut self.ccmd);
                    let started = upper && Ccmd::from_bits(self.ccmd).icc();
                    return started.then_some(Effect::ContextCommand);
                }
                offset::AFLOG if self.has_afl => store(&mut self.aflog),
                offset::IQT => {
                    store(&mut self.iqt);
                    return (!upper).then_some(Effect::FetchDescriptors);
                }
                offset::IQA => store(&mut self.iqa),
                offset::IRTA if self.has_ir => store(&mut self.irta),
                _ => {}
            },
        }
        None
    }

    /// (record index, dword within the 128-bit record) when `off` is inside FRCD.
    fn frcd_dword(&self, off: u64) -> Option<(usize, u64)> {
        let rel = off.checked_sub(self.frcd_base)?;
        let index = (rel / 16) as usize;
        (index < self.frcd.len()).then_some((index, (rel % 16) / 4))
    }

    /// True when a fault-event condition is pending: PPF, PFO, IQE, ICE or ITE.
    fn fault_condition_pending(&self) -> bool {
        let f = self.fsts();
        f.ppf() || f.pfo() || f.iqe() || f.ice() || f.ite()
    }

    /// Software cleared status bits: once nothing is pending, the pending event goes too.
    fn settle_fault_event(&mut self) {
        if !self.fault_condition_pending() {
            self.fectl = self.fectl.with_ip(false);
        }
    }

    /// Raise a fault event for a condition that just became pending, unless another one was
    /// already pending (§7.2 step 5). Returns the MSI to send, if any.
    fn raise_fault_event(&mut self, was_pending: bool) -> Option<Msi> {
        if was_pending {
            return None;
        }
        self.fectl = self.fectl.with_ip(true);
        self.deliver_if_unmasked(EventKind::Fault)
    }

    /// Send the event's MSI if its IP is set and IM clear; clears IP when sent.
    pub(crate) fn deliver_if_unmasked(&mut self, kind: EventKind) -> Option<Msi> {
        let (ctl, addr, data) = match kind {
            EventKind::Fault => (&mut self.fectl, self.feaddr, self.fedata),
            EventKind::InvalidationComplete => (&mut self.iectl, self.ieaddr, self.iedata),
        };
        if ctl.ip() && !ctl.im() {
            *ctl = ctl.with_ip(false);
            let upper = match kind {
                EventKind::Fault => self.feuaddr,
                EventKind::InvalidationComplete => self.ieuaddr,
            };
            return Some(Msi {
                addr: addr as u64 | (upper as u64) << 32,
                data,
            });
        }
        None
    }

    /// Record `fault` per §7.2 with FPD already applied by the caller. Returns where it went
    /// and the fault-event MSI to send, if any.
    pub(crate) fn record_fault(&mut self, fault: &Fault) -> (FaultRecording, Option<Msi>) {
        let was_pending = self.fault_condition_pending();
        if self.fsts.pfo() {
            return (FaultRecording::Overflow, None);
        }
        if self.collapse_by_sid && self.frcd.iter().any(|r| r.f() && r.sid() == fault.sid) {
            return (FaultRecording::Collapsed, None);
        }
        let index = self.next_frcd;
        if self.frcd[index].f() {
            self.fsts = self.fsts.with_pfo(true);
            return (
                FaultRecording::Overflow,
                self.raise_fault_event(was_pending),
            );
        }
        let had_ppf = self.fsts().ppf();
        self.frcd[index] = encode_record(fault);
        self.next_frcd = (index + 1) % self.frcd.len();
        if !had_ppf {
            self.fsts = self.fsts.with_fri(index as u8);
        }
        let msi = self.raise_fault_event(was_pending);
        (
            FaultRecording::Recorded {
                index: index as u16,
            },
            msi,
        )
    }

    /// TE went from 1 to 0: recording starts again at record 0 (QEMU behaviour).
    pub(crate) fn reset_fault_index(&mut self) {
        self.next_frcd = 0;
    }

    /// Flag an invalidation-queue error: FSTS.IQE and IQERCD.IQEI, with a fault event.
    pub(crate) fn queue_error(&mut self, iqei: Iqei) -> Option<Msi> {
        let was_pending = self.fault_condition_pending();
        self.fsts = self.fsts.with_iqe(true);
        self.iqercd = Iqercd::from_bits(self.iqercd).with_iqei(iqei).into_bits();
        self.raise_fault_event(was_pending)
    }

    /// True while FSTS.IQE holds the queue stopped.
    pub(crate) fn queue_stopped(&self) -> bool {
        self.fsts.iqe() || self.fsts.ite()
    }

    /// A wait descriptor with IF=1 completed: set ICS.IWC and raise the completion event if
    /// IWC was clear.
    pub(crate) fn wait_completed_with_interrupt(&mut self) -> Option<Msi> {
        if self.ics & 1 != 0 {
            return None;
        }
        self.ics = 1;
        self.iectl = self.iectl.with_ip(true);
        self.deliver_if_unmasked(EventKind::InvalidationComplete)
    }

    /// Current IQH as a byte offset into the queue.
    pub(crate) fn queue_head(&self) -> u64 {
        QueueIndex::from_bits(self.iqh).byte_offset()
    }

    /// Current IQT as a byte offset into the queue.
    pub(crate) fn queue_tail(&self) -> u64 {
        QueueIndex::from_bits(self.iqt).byte_offset()
    }

    /// Move IQH to `byte_offset`.
    pub(crate) fn set_queue_head(&mut self, byte_offset: u64) {
        self.iqh = QueueIndex::from_byte_offset(byte_offset).into_bits();
    }
}

/// Encode a fault into an FRCD value with F=1 (§1.9).
///
/// T2:T1 encode the request type as 00 write, 01 read, 10 translation request and 11
/// atomic — one consistent reading of the reference, which leaves the exact mapping UNSURE.
fn encode_record(fault: &Fault) -> FaultRecord {
    let (t2, t1) = match (fault.address_type, fault.access) {
        (AddressType::TranslationRequest, _) => (true, false),
        (_, Access::Write) => (false, false),
        (_, Access::Read) => (false, true),
        (_, Access::AtomicRmw) => (true, true),
    };
    FaultRecord::new()
        .with_fi(fault.addr >> 12)
        .with_sid(fault.sid)
        .with_t2(t2)
        .with_priv_mode(fault.privileged)
        .with_exe(fault.execute)
        .with_pp(fault.pasid.is_some())
        .with_fr(fault.reason.code())
        .with_pv(fault.pasid.unwrap_or(0) & 0xF_FFFF)
        .with_at(fault.address_type.bits())
        .with_t1(t1)
        .with_f(true)
}
