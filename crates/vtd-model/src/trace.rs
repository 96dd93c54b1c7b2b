//! Observing a walk: every entry the hardware reads and every A/D bit it writes.
//!
//! The walker is generic over a [`WalkObserver`]; the default [`NoTrace`] compiles to
//! nothing, so translation pays only when someone asks (the CLI's `explain`).

use vtd_spec::pasid::PasidEntry;

use crate::fault::Fault;
use crate::request::Translation;

/// Why the second stage was walked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SsPurpose {
    /// To fetch the first-stage table of `fs_level` (nested only).
    FirstStageTable {
        /// The first-stage level whose table is being fetched.
        fs_level: u8,
    },
    /// To translate the final guest-physical address (or the input, PGTT=010b/legacy).
    Final,
}

/// Which cache answered or missed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CacheKind {
    /// Context cache.
    Context,
    /// PASID cache.
    Pasid,
    /// IOTLB.
    Iotlb,
    /// First-stage paging-structure cache.
    FirstStagePsc,
    /// Second-stage paging-structure cache.
    SecondStagePsc,
    /// Device-TLB of an ATS-capable endpoint.
    DevTlb,
}

/// One step of a walk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WalkEvent {
    /// The root entry was read.
    RootEntry {
        /// Physical address of the entry.
        addr: u64,
        /// Its 128-bit value.
        value: u128,
    },
    /// The context entry was read (low 128 bits; a legacy entry has only these).
    ContextEntry {
        /// Physical address of the entry.
        addr: u64,
        /// Its low 128 bits.
        value: u128,
    },
    /// The PASID-directory entry was read.
    PasidDirEntry {
        /// Physical address of the entry.
        addr: u64,
        /// Its value.
        value: u64,
    },
    /// The PASID-table entry was read.
    PasidEntry {
        /// Physical address of the entry.
        addr: u64,
        /// The PASID the lookup used (the request's, or RID_PASID).
        pasid: u32,
        /// The entry.
        entry: PasidEntry,
    },
    /// A first-stage entry was read.
    FirstStageEntry {
        /// Level (5 = PML5E … 1 = PTE).
        level: u8,
        /// Table address as the first stage names it (a GPA under nesting).
        table: u64,
        /// Physical address of the entry.
        addr: u64,
        /// Its value.
        value: u64,
        /// It is the leaf of the walk.
        leaf: bool,
    },
    /// A second-stage entry was read.
    SecondStageEntry {
        /// Why the second stage was walked.
        purpose: SsPurpose,
        /// Second-stage level.
        level: u8,
        /// The second-stage input address being translated.
        input: u64,
        /// Physical address of the entry.
        addr: u64,
        /// Its value.
        value: u64,
        /// It is the leaf of this second-stage walk.
        leaf: bool,
    },
    /// An accessed/dirty flag update was written (or would be, in a dry run).
    AdUpdate {
        /// True for a first-stage entry, false for a second-stage entry.
        first_stage: bool,
        /// Level of the entry updated.
        level: u8,
        /// Physical address of the entry.
        addr: u64,
        /// Value before.
        old: u64,
        /// Value after.
        new: u64,
        /// The write went through only because of the SPR17 erratum: stage 2 maps the
        /// page read-only.
        by_erratum: bool,
    },
    /// A cache lookup.
    Cache {
        /// Which cache.
        cache: CacheKind,
        /// True for a hit.
        hit: bool,
    },
    /// The translation finished.
    Done(Result<Translation, Fault>),
}

/// Receives the steps of a walk.
pub trait WalkObserver {
    /// Called for each step, in order.
    fn event(&mut self, event: WalkEvent);
}

/// The observer that observes nothing; walks with it cost nothing extra.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoTrace;

impl WalkObserver for NoTrace {
    #[inline(always)]
    fn event(&mut self, _event: WalkEvent) {}
}

/// An observer that keeps every step.
#[derive(Clone, Debug, Default)]
pub struct WalkRecorder {
    /// The steps, in order.
    pub events: Vec<WalkEvent>,
}

impl WalkObserver for WalkRecorder {
    fn event(&mut self, event: WalkEvent) {
        self.events.push(event);
    }
}

impl WalkRecorder {
    /// Number of paging-structure entries read (first- and second-stage), the measure of
    /// §6.2.
    pub fn paging_reads(&self) -> usize {
        self.events
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    WalkEvent::FirstStageEntry { .. } | WalkEvent::SecondStageEntry { .. }
                )
            })
            .count()
    }
}
