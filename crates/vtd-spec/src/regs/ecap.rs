use bitfield_struct::bitfield;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// ECAP_REG (offset 0x010): extended capabilities of the remapping unit (§1.3).
#[bitfield(u64)]
#[derive(PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct Ecap {
    /// C: legacy page walks (root/context/second stage) snoop CPU caches.
    pub c: bool,
    /// QI: queued invalidation supported.
    pub qi: bool,
    /// DT: device-TLB (ATS) supported.
    pub dt: bool,
    /// IR: interrupt remapping supported.
    pub ir: bool,
    /// EIM: extended interrupt mode (x2APIC 32-bit destinations).
    pub eim: bool,
    #[bits(1)]
    __: u8,
    /// PT: pass-through translation supported (legacy TT=10b, scalable PGTT=100b).
    pub pt: bool,
    /// SC: snoop control (SNP in second-stage leaves, PGSNP in PASID entries).
    pub sc: bool,
    /// IRO: IOTLB register offset, in units of 16 bytes.
    #[bits(10)]
    pub iro: u16,
    #[bits(2)]
    __: u8,
    /// MHMV: maximum handle-mask value for interrupt-entry-cache invalidation.
    #[bits(4)]
    pub mhmv: u8,
    /// Deprecated extended-context support bit (was ECS).
    pub ecs: bool,
    /// MTS: memory-type support.
    pub mts: bool,
    /// NEST: nested translation (PGTT=011b) supported.
    pub nest: bool,
    /// Deprecated bit 27.
    pub deprecated27: bool,
    /// Deprecated bit 28 (Linux names it "broken PASID").
    pub deprecated28: bool,
    /// PRS: page requests supported.
    pub prs: bool,
    /// ERS: execute-requested supported (architecturally removed later).
    pub ers: bool,
    /// SRS: supervisor requests supported (PASID-entry SRE usable).
    pub srs: bool,
    #[bits(1)]
    __: u8,
    /// NWFS: no-write flag in ATS translation requests honoured.
    pub nwfs: bool,
    /// EAFS: extended-accessed flag supported (PASID-entry EAFE usable).
    pub eafs: bool,
    /// PSS: PASID width minus one.
    #[bits(5)]
    pub pss: u8,
    /// PASID: requests-with-PASID supported.
    pub pasid: bool,
    /// DIT: device-TLB invalidation throttling.
    pub dit: bool,
    /// PDS: page-request drain supported (PD flag of the wait descriptor).
    pub pds: bool,
    /// SMTS: scalable-mode translation supported (RTADDR.TTM = 01b).
    pub smts: bool,
    /// VCS: virtual command interface (emulation only).
    pub vcs: bool,
    /// SLADS/SSADS: second-stage accessed/dirty supported (PASID-entry SSADE usable).
    pub slads: bool,
    /// SLTS/SSTS: second-stage translation (PGTT=010b) supported.
    pub slts: bool,
    /// FLTS/FSTS: first-stage translation (PGTT=001b) supported.
    pub flts: bool,
    /// SMPWCS: scalable-mode page walks can be snooped (PASID-entry PWSNP usable).
    pub smpwcs: bool,
    /// RPS: the context-entry RID_PASID field is honoured (else PASID 0 is used).
    pub rps: bool,
    /// TDXIO: TDX Connect I/O support.
    pub tdxio: bool,
    /// PMS: performance monitoring supported.
    pub pms: bool,
    /// ADMS: abort-DMA mode (RTADDR.TTM = 11b) supported.
    pub adms: bool,
    /// RPRIVS: the context-entry RID_PRIV field is honoured.
    pub rprivs: bool,
    #[bits(1)]
    __: u8,
    /// HPTS: hierarchical page-table support (newer; semantics not modelled).
    pub hpts: bool,
    /// PTRS: PASID in translated requests (newer; semantics not modelled).
    pub ptrs: bool,
    /// PBDS: page-specific DMA (newer; semantics not modelled).
    pub pbds: bool,
    #[bits(6)]
    __: u8,
}

impl Ecap {
    /// PASID width in bits (PSS + 1).
    pub const fn pasid_bits(&self) -> u32 {
        self.pss() as u32 + 1
    }

    /// Nested translation is usable: scalable mode and NEST (Linux `nested_supported`).
    pub const fn nested_supported(&self) -> bool {
        self.smts() && self.nest()
    }

    /// Second-stage dirty tracking is usable: SMTS, SLADS and SMPWCS (Linux `ssads_supported`).
    pub const fn dirty_tracking_supported(&self) -> bool {
        self.smts() && self.slads() && self.smpwcs()
    }
}
