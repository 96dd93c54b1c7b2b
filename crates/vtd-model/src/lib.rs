//! A software Intel VT-d DMA-remapping unit: the hardware seam of vtd-nest.
//!
//! A [`Unit`] is built from a [`UnitConfig`] (CAP/ECAP, host address width, model
//! switches, cache geometry) over a [`PhysMem`].
//! It offers what hardware offers:
//!
//! - **MMIO**: [`Unit::mmio_read`](unit::Unit::mmio_read) and
//!   [`Unit::mmio_write`](unit::Unit::mmio_write) on the register map of §1 — GCMD/GSTS
//!   handshakes, RTADDR, fault recording (FSTS/FRCD/FECTL), the invalidation queue
//!   (IQA/IQH/IQT/ICS/IECTL/IQERCD) and register-based invalidation (CCMD, IOTLB_REG).
//! - **DMA**: [`Unit::translate`](unit::Unit::translate) for every scalable-mode
//!   translation type (PGTT 001 first stage, 010 second stage, 011 nested, 100
//!   pass-through) and legacy mode, with the faults and reason codes of §7.1;
//!   [`Unit::translate_ats`](unit::Unit::translate_ats) for ATS endpoints with a
//!   device-TLB; [`Unit::explain`](unit::Unit::explain) for a side-effect-free walk
//!   reported step by step.
//! - **Caches** (§6.4, §8.1): context cache, PASID cache, IOTLB, first- and second-stage
//!   paging-structure caches and device-TLB, invalidated only by what §8.4 says drops
//!   them, so a driver that forgets an invalidation sees the stale translation.
//! - **Counters** ([`Stats`](stats::Stats)): translations, faults by reason, paging reads
//!   split by stage, A/D writes, cache hits and misses, invalidations.
//!
//! The model never trusts memory: any bit pattern in any table gives a translation or a
//! fault, and an access to unbacked memory is a fault, never a panic.
//!
//! Section numbers (§) refer to the project's hardware reference,
//! `shared/spec/vtd-hardware.md`, which follows the VT-d specification.
//!
//! # Model switches for UNSURE points
//!
//! Where the reference cannot pin hardware behaviour down, the choice is a field of
//! [`ModelSwitches`](config::ModelSwitches) with a documented default:
//!
//! | switch | question | default |
//! |---|---|---|
//! | [`erratum_spr17`](config::ModelSwitches::erratum_spr17) | SPR17: first-stage A/D written through read-only stage-2 mappings with PGTT=011b and PWSNP=1 (§6.5); top level only or every level | off; [`Spr17::TopLevel`](config::Spr17::TopLevel) in [`UnitConfig::sapphire_rapids`](config::UnitConfig::sapphire_rapids) |
//! | [`ad_timing`](config::ModelSwitches::ad_timing) | are first-stage A bits set level by level, or only after a successful walk (§4.5) | level by level |
//! | [`nested_ss_ad`](config::ModelSwitches::nested_ss_ad) | do first-stage table reads set stage-2 A, and first-stage A/D writes stage-2 D (§5.5) | yes |
//! | [`ss_permission_fault`](config::ModelSwitches::ss_permission_fault) | stage-2 denial of the final access: SGN.6/SGN.7 or SSS.2 (§5.4) | SGN.6/SGN.7 |
//! | [`non_snooped_ad`](config::ModelSwitches::non_snooped_ad) | an A/D update on a non-snooped walk (PWSNP=0): fault SFS.9/SSS.5 or perform (§4.5) | fault |
//! | [`collapse_faults_by_sid`](config::ModelSwitches::collapse_faults_by_sid) | collapse a fault from a SID that already has a pending record (§7.2) | no (yes in the QEMU presets) |
//! | [`capability_reserved_fields`](config::ModelSwitches::capability_reserved_fields) | fields of unadvertised features are reserved (§3.5) | yes |
//!
//! Further choices, fixed and documented where they are made: FPD qualification follows
//! QEMU's list ([`FaultReason::is_qualified`](vtd_spec::fault::FaultReason::is_qualified));
//! FRCD T2:T1 encode write/read/translation/atomic as 00/01/10/11; SCT.4 is never raised
//! (no sub-case is known); PGTT=011b needs ECAP.NEST only; PASID-entry AW is ignored for
//! PGTT 001b/100b; second-stage EMT/IPAT bits are ignored without ECAP.MTS;
//! pass-through translations are not cached in the IOTLB; a nested final GPA beyond the
//! stage-2 width is SFS.5; abort-DMA mode blocks silently; in caching mode a negative
//! PASID-cache entry is dropped by a PASID-selective invalidation of any DID.
#![forbid(unsafe_code)]

mod ats;
pub mod build;
pub mod cache;
pub mod config;
pub mod fault;
pub mod invalidation;
pub mod mem;
pub mod regs;
pub mod request;
pub mod stats;
pub mod trace;
pub mod unit;
mod walk;
pub mod workload;

pub use config::UnitConfig;
pub use fault::Fault;
pub use mem::PhysMem;
pub use request::{Access, Request, Translation};
pub use unit::{PasidLookup, Unit, UnitObserver};
