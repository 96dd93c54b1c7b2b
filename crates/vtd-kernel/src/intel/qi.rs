//! Queued invalidation as the driver drives it (dmar.c's `qi_submit_sync`): descriptors
//! written at the tail, a wait descriptor with a status write after them, IQT moved, the
//! status polled.

use std::sync::Arc;

use vtd_model::Unit;
use vtd_model::mem::PhysMem;
use vtd_spec::inv::{InvWaitDesc, RawDescriptor};
use vtd_spec::regs::{Fsts, GlobalCommand, GlobalStatus, Iqa, QueueIndex, offset};

use crate::hostmem::HostMem;

/// Why a submission failed (the hardware flagged the queue).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QiError {
    /// FSTS.IQE: the unit rejected a descriptor.
    #[error("invalidation queue error, FSTS {0:#x}")]
    QueueError(u32),
    /// The wait descriptor's status never arrived.
    #[error("invalidation wait did not complete")]
    NoCompletion,
}

/// The invalidation queue of one unit.
pub(crate) struct Qi {
    base: u64,
    slots: u64,
    wide: bool,
    tail: u64,
    status: u64,
    next_status: u32,
    /// Descriptors submitted (wait descriptors included), for tests and statistics.
    pub(crate) submitted: Vec<RawDescriptor>,
    /// Keep a log of submitted descriptors.
    pub(crate) log: bool,
}

/// GCMD value that keeps the persistent status bits and adds `cmd`.
pub(crate) fn gcmd_with(unit: &Unit<Arc<HostMem>>, cmd: GlobalCommand) -> u64 {
    let status = unit.mmio_read(offset::GSTS, 4).unwrap_or(0) as u32;
    let keep = GlobalStatus::from_bits_retain(status) & GlobalStatus::PERSISTENT;
    (keep.bits() | cmd.bits()) as u64
}

impl Qi {
    /// Allocate the queue and status pages, program IQA and enable queued invalidation
    /// (256-bit descriptors in scalable mode, as Linux does).
    pub(crate) fn enable(unit: &Unit<Arc<HostMem>>, mem: &HostMem, wide: bool) -> Self {
        let base = mem.alloc_page();
        let status = mem.alloc_page();
        let iqa = Iqa::new().with_iqa(base >> 12).with_dw(wide).with_qs(0);
        // Register accesses to a unit we built cannot fail: offsets are in its window.
        let _ = unit.mmio_write(offset::IQT, 8, 0);
        let _ = unit.mmio_write(offset::IQA, 8, iqa.into_bits());
        let _ = unit.mmio_write(offset::GCMD, 4, gcmd_with(unit, GlobalCommand::QIE));
        Self {
            base,
            slots: iqa.slots(),
            wide,
            tail: 0,
            status,
            next_status: 1,
            submitted: Vec::new(),
            log: false,
        }
    }

    /// Submit `descs` followed by a wait, in as many rounds as the queue needs, and wait
    /// for each round to complete.
    pub(crate) fn submit(
        &mut self,
        unit: &Unit<Arc<HostMem>>,
        mem: &HostMem,
        descs: &[RawDescriptor],
    ) -> Result<(), QiError> {
        // Leave room for the wait descriptor of each round.
        let round = (self.slots - 2) as usize;
        for chunk in descs.chunks(round.max(1)) {
            self.submit_round(unit, mem, chunk)?;
        }
        Ok(())
    }

    fn submit_round(
        &mut self,
        unit: &Unit<Arc<HostMem>>,
        mem: &HostMem,
        descs: &[RawDescriptor],
    ) -> Result<(), QiError> {
        let data = self.next_status;
        self.next_status = self.next_status.wrapping_add(1).max(1);
        let wait = InvWaitDesc::new()
            .with_sw(true)
            .with_fence(true)
            .with_status_data(data)
            .with_status_addr(self.status >> 2);
        let size = if self.wide { 32 } else { 16 };
        for d in descs.iter().chain(std::iter::once(&RawDescriptor {
            lo: wait.into_bits(),
            hi: 0,
        })) {
            let slot = self.base + self.tail * size;
            let _ = mem.write_u128(slot, d.lo);
            if self.wide {
                let _ = mem.write_u128(slot + 16, d.hi);
            }
            self.tail = (self.tail + 1) % self.slots;
            if self.log {
                self.submitted.push(*d);
            }
        }
        let _ = unit.mmio_write(
            offset::IQT,
            8,
            QueueIndex::from_byte_offset(self.tail * size).into_bits(),
        );
        let fsts = Fsts::from_bits(unit.mmio_read(offset::FSTS, 4).unwrap_or(0) as u32);
        if fsts.iqe() {
            return Err(QiError::QueueError(fsts.into_bits()));
        }
        if mem.read_u64(self.status).map(|v| v as u32) != Ok(data) {
            return Err(QiError::NoCompletion);
        }
        Ok(())
    }
}
