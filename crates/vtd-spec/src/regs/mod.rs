//! The MMIO register map of a DMA-remapping unit (§1.1) and the layout of each register.
//!
//! Offsets are from the unit's register base. 64-bit registers may be accessed as one
//! 8-byte access or as two 4-byte halves; the register file in `vtd-model` handles both.

mod cap;
mod command;
mod ecap;
mod fault_regs;
mod invalidation;
mod misc;

pub use cap::Cap;
pub use command::{GlobalCommand, GlobalStatus, RtAddr, Ttm};
pub use ecap::Ecap;
pub use fault_regs::{EventControl, FaultRecord, Fsts};
pub use invalidation::{
    Ccmd, CcmdGranularity, Ics, IotlbGranularity, IotlbReg, Iqa, Iqei, Iqercd, IvaReg, QueueIndex,
};
pub use misc::{Aflog, Pmen};

/// Fixed register offsets of §1.1. The IOTLB registers and fault-recording registers sit at
/// offsets given by ECAP.IRO and CAP.FRO; see [`iotlb_reg_offset`] and [`frcd_offset`].
pub mod offset {
    /// Version register (32-bit).
    pub const VER: u64 = 0x000;
    /// Capability register (64-bit, §1.2).
    pub const CAP: u64 = 0x008;
    /// Extended capability register (64-bit, §1.3).
    pub const ECAP: u64 = 0x010;
    /// Global command register (32-bit, write-only, §1.4).
    pub const GCMD: u64 = 0x018;
    /// Global status register (32-bit, read-only, §1.4).
    pub const GSTS: u64 = 0x01C;
    /// Root table address register (64-bit, §1.5).
    pub const RTADDR: u64 = 0x020;
    /// Context command register (64-bit, §1.6).
    pub const CCMD: u64 = 0x028;
    /// Fault status register (32-bit, §1.8).
    pub const FSTS: u64 = 0x034;
    /// Fault event control register (32-bit).
    pub const FECTL: u64 = 0x038;
    /// Fault event data register (32-bit).
    pub const FEDATA: u64 = 0x03C;
    /// Fault event address register (32-bit).
    pub const FEADDR: u64 = 0x040;
    /// Fault event upper address register (32-bit).
    pub const FEUADDR: u64 = 0x044;
    /// Advanced fault log register (64-bit).
    pub const AFLOG: u64 = 0x058;
    /// Protected memory enable register (32-bit).
    pub const PMEN: u64 = 0x064;
    /// Protected low-memory base register (32-bit).
    pub const PLMBASE: u64 = 0x068;
    /// Protected low-memory limit register (32-bit).
    pub const PLMLIMIT: u64 = 0x06C;
    /// Protected high-memory base register (64-bit).
    pub const PHMBASE: u64 = 0x070;
    /// Protected high-memory limit register (64-bit).
    pub const PHMLIMIT: u64 = 0x078;
    /// Invalidation queue head register (64-bit, §1.10).
    pub const IQH: u64 = 0x080;
    /// Invalidation queue tail register (64-bit).
    pub const IQT: u64 = 0x088;
    /// Invalidation queue address register (64-bit).
    pub const IQA: u64 = 0x090;
    /// Invalidation completion status register (32-bit).
    pub const ICS: u64 = 0x09C;
    /// Invalidation event control register (32-bit).
    pub const IECTL: u64 = 0x0A0;
    /// Invalidation event data register (32-bit).
    pub const IEDATA: u64 = 0x0A4;
    /// Invalidation event address register (32-bit).
    pub const IEADDR: u64 = 0x0A8;
    /// Invalidation event upper address register (32-bit).
    pub const IEUADDR: u64 = 0x0AC;
    /// Invalidation queue error record register (64-bit).
    pub const IQERCD: u64 = 0x0B0;
    /// Interrupt remapping table address register (64-bit).
    pub const IRTA: u64 = 0x0B8;
    /// Page request queue head register (64-bit).
    pub const PQH: u64 = 0x0C0;
    /// Page request queue tail register (64-bit).
    pub const PQT: u64 = 0x0C8;
    /// Page request queue address register (64-bit).
    pub const PQA: u64 = 0x0D0;
    /// Page request status register (32-bit).
    pub const PRS: u64 = 0x0DC;
    /// Page request event control register (32-bit).
    pub const PECTL: u64 = 0x0E0;
    /// Page request event data register (32-bit).
    pub const PEDATA: u64 = 0x0E4;
    /// Page request event address register (32-bit).
    pub const PEADDR: u64 = 0x0E8;
    /// Page request event upper address register (32-bit).
    pub const PEUADDR: u64 = 0x0EC;
}

/// Offset of the invalidate-address register (IVA_REG) for ECAP.IRO (§1.7).
pub const fn iva_reg_offset(iro: u16) -> u64 {
    iro as u64 * 16
}

/// Offset of the IOTLB invalidate register (IOTLB_REG) for ECAP.IRO (§1.7).
pub const fn iotlb_reg_offset(iro: u16) -> u64 {
    iro as u64 * 16 + 8
}

/// Offset of fault-recording register `index` for CAP.FRO (§1.9): 16 bytes each.
pub const fn frcd_offset(fro: u16, index: u16) -> u64 {
    fro as u64 * 16 + index as u64 * 16
}

/// Version register value: major in bits 7:4, minor in bits 3:0 (§1.1).
pub const fn version(major: u8, minor: u8) -> u32 {
    ((major as u32 & 0xF) << 4) | (minor as u32 & 0xF)
}
