use bitfield_struct::bitfield;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// CAP_REG (offset 0x008): capabilities of the remapping unit (§1.2).
#[bitfield(u64)]
#[derive(PartialEq, Eq, Hash, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct Cap {
    /// ND: number of domains supported; domain-id width is `4 + 2·ND` bits (7 reserved).
    #[bits(3)]
    pub nd: u8,
    /// AFL: advanced fault logging supported.
    pub afl: bool,
    /// RWBF: required write-buffer flushing (software uses GCMD.WBF).
    pub rwbf: bool,
    /// PLMR: protected low-memory region supported.
    pub plmr: bool,
    /// PHMR: protected high-memory region supported.
    pub phmr: bool,
    /// CM: caching mode; not-present and erroneous entries may be cached.
    pub cm: bool,
    /// SAGAW: supported adjusted guest address widths (bit1 39-bit, bit2 48-bit, bit3 57-bit).
    #[bits(5)]
    pub sagaw: u8,
    #[bits(3)]
    __: u8,
    /// MGAW: maximum guest address width minus one.
    #[bits(6)]
    pub mgaw: u8,
    /// ZLR: zero-length DMA reads to write-only pages are allowed.
    pub zlr: bool,
    /// Deprecated isochrony bit (was ISOCH).
    pub isoch: bool,
    /// FRO: fault-recording register offset, in units of 16 bytes.
    #[bits(10)]
    pub fro: u16,
    /// SLLPS/SSLPS: second-stage large pages (bit0 2 MiB, bit1 1 GiB; bits 2–3 reserved).
    #[bits(4)]
    pub sllps: u8,
    #[bits(1)]
    __: u8,
    /// PSI: page-selective IOTLB invalidation supported.
    pub psi: bool,
    /// NFR: number of fault-recording registers minus one.
    #[bits(8)]
    pub nfr: u8,
    /// MAMV: maximum address-mask value for page-selective second-stage invalidation.
    #[bits(6)]
    pub mamv: u8,
    /// DWD: write draining supported.
    pub dwd: bool,
    /// DRD: read draining supported.
    pub drd: bool,
    /// FL1GP/FS1GP: first-stage 1 GiB pages supported.
    pub fs1gp: bool,
    #[bits(2)]
    __: u8,
    /// PI: posted interrupts supported.
    pub pi: bool,
    /// FL5LP/FS5LP: 5-level first-stage paging supported.
    pub fs5lp: bool,
    /// ECMDS: enhanced command interface supported.
    pub ecmds: bool,
    /// ESIRTPS: SIRTP also invalidates the interrupt-entry cache.
    pub esirtps: bool,
    /// ESRTPS: SRTP also invalidates all DMA-remapping caches.
    pub esrtps: bool,
}

impl Cap {
    /// Domain-id width in bits: `4 + 2·ND` (16 for ND=6). Returns `None` for the reserved ND=7.
    pub const fn domain_id_bits(&self) -> Option<u32> {
        match self.nd() {
            7 => None,
            nd => Some(4 + 2 * nd as u32),
        }
    }

    /// Number of domain ids the unit supports (`2^(4 + 2·ND)`), 0 for the reserved ND=7.
    pub const fn num_domains(&self) -> u32 {
        match self.domain_id_bits() {
            Some(bits) => 1 << bits,
            None => 0,
        }
    }

    /// True when SAGAW advertises the second-stage AW encoding `aw` (1, 2 or 3).
    pub const fn supports_aw(&self, aw: u8) -> bool {
        aw >= 1 && aw <= 3 && self.sagaw() & (1 << aw) != 0
    }

    /// Maximum guest address width in bits (MGAW + 1).
    pub const fn mgaw_bits(&self) -> u32 {
        self.mgaw() as u32 + 1
    }

    /// Number of fault-recording registers (NFR + 1).
    pub const fn fault_records(&self) -> u16 {
        self.nfr() as u16 + 1
    }

    /// Second-stage 2 MiB pages supported (SLLPS bit 0).
    pub const fn ss_2m(&self) -> bool {
        self.sllps() & 1 != 0
    }

    /// Second-stage 1 GiB pages supported (SLLPS bit 1).
    pub const fn ss_1g(&self) -> bool {
        self.sllps() & 2 != 0
    }
}
