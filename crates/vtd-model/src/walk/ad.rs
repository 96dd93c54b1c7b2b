//! Accessed/dirty flag updates: atomic compare-exchange on the entry in memory (§4.5, §5.5).

use vtd_spec::fault::FaultReason;

use super::{Stop, WalkMode, Walker};
use crate::fault::FaultStage;
use crate::mem::PhysMem;
use crate::trace::{WalkEvent, WalkObserver};

impl<M: PhysMem, O: WalkObserver> Walker<'_, M, O> {
    /// Set `bits` in the entry at `addr`, which the walk read as `seen`.
    ///
    /// The update is a compare-exchange against the value the walk used. If it fails only
    /// because hardware-owned flags (`hw_flags`) were set meanwhile, it retries; if software
    /// changed anything else, the walk restarts so it never writes flags into an entry it
    /// did not translate through. A memory error is reported as SFS.10 (A/D update failed);
    /// second-stage callers remap it.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn update_flags(
        &mut self,
        addr: u64,
        seen: u64,
        bits: u64,
        hw_flags: u64,
        first_stage: bool,
        level: u8,
        by_erratum: bool,
    ) -> Result<(), Stop> {
        let mut current = seen;
        loop {
            let new = current | bits;
            if new == current {
                return Ok(());
            }
            if self.mode == WalkMode::DryRun {
                self.obs.event(WalkEvent::AdUpdate {
                    first_stage,
                    level,
                    addr,
                    old: current,
                    new,
                    by_erratum,
                });
                return Ok(());
            }
            let result = self
                .unit
                .mem
                .compare_exchange_u64(addr, current, new)
                .map_err(|_| {
                    let stage = if first_stage {
                        FaultStage::FirstStageAdUpdate
                    } else {
                        FaultStage::SecondStage
                    };
                    Stop::from(
                        self.fault(FaultReason::SfsAdUpdateFailed, stage)
                            .entry_addr(addr),
                    )
                })?;
            match result {
                Ok(_) => {
                    self.obs.event(WalkEvent::AdUpdate {
                        first_stage,
                        level,
                        addr,
                        old: current,
                        new,
                        by_erratum,
                    });
                    return Ok(());
                }
                Err(actual) if actual & !hw_flags == seen & !hw_flags => current = actual,
                Err(_) => return Err(Stop::Restart),
            }
        }
    }
}
