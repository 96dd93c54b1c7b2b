//! Invalidation: the queued-invalidation interface (§8.2, §8.3) and register-based
//! invalidation (§8.6). What each request drops from the caches follows §8.4.

use vtd_spec::inv::{
    ContextCacheInvDesc, DescType, DevTlbInvDesc, IecInvDesc, InvWaitDesc, IotlbInvDesc,
    PasidCacheGranularity, PasidCacheInvDesc, PasidDevTlbInvDesc, PasidIotlbGranularity,
    PasidIotlbInvDesc, RawDescriptor, devtlb_range,
};
use vtd_spec::regs::{
    Ccmd, CcmdGranularity, GlobalStatus, IotlbGranularity, IotlbReg, Iqei, IvaReg,
};

use crate::mem::PhysMem;
use crate::regs::{EventKind, Msi, RegisterFile};
use crate::stats::Counter;
use crate::unit::Unit;

/// What one invalidation request asks the caches to drop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invalidation {
    /// Every context-cache entry.
    ContextAll,
    /// Context-cache entries of a domain (legacy mode; scalable mode ignores the DID).
    ContextDomain {
        /// Domain id.
        did: u16,
    },
    /// Context-cache entries of a source id, with the function mask applied.
    ContextDevice {
        /// Source id.
        sid: u16,
        /// Function mask (0 none, 1 bit 2, 2 bits 2:1, 3 bits 2:0).
        fm: u8,
    },
    /// Every PASID-cache entry.
    PasidCacheAll,
    /// PASID-cache entries tagged with a domain id.
    PasidCacheDomain {
        /// Domain id.
        did: u16,
    },
    /// PASID-cache entries of one PASID within a domain.
    PasidCachePasid {
        /// Domain id.
        did: u16,
        /// PASID.
        pasid: u32,
    },
    /// Every IOTLB and paging-structure-cache entry.
    IotlbAll,
    /// Every IOTLB and paging-structure-cache entry of a domain.
    IotlbDomain {
        /// Domain id.
        did: u16,
    },
    /// Page-selective within a domain: second-stage entries of the range, and (because
    /// they are indexed by first-stage address) every first-stage and nested entry of the
    /// domain (§8.4).
    IotlbPage {
        /// Domain id.
        did: u16,
        /// First address (aligned to the range size).
        addr: u64,
        /// log2 of the number of 4 KiB pages.
        am: u8,
        /// Only leaf entries changed; paging-structure caches may stay.
        ih: bool,
    },
    /// PASID-selective: first-stage and nested entries of a PASID in a domain.
    PasidIotlbPasid {
        /// Domain id.
        did: u16,
        /// PASID.
        pasid: u32,
    },
    /// Page-selective within a PASID.
    PasidIotlbPage {
        /// Domain id.
        did: u16,
        /// PASID.
        pasid: u32,
        /// First address (aligned to the range size).
        addr: u64,
        /// log2 of the number of 4 KiB pages.
        am: u8,
        /// Only leaf entries changed.
        ih: bool,
    },
    /// Device-TLB of an endpoint, for requests without PASID (`size == 0`: everything).
    DevTlb {
        /// Source id of the endpoint.
        sid: u16,
        /// First address.
        addr: u64,
        /// Bytes covered; 0 means every address.
        size: u64,
    },
    /// Device-TLB of an endpoint for one PASID (or all PASIDs with `global`).
    PasidDevTlb {
        /// Source id of the endpoint.
        sid: u16,
        /// PASID.
        pasid: u32,
        /// All PASIDs of the endpoint.
        global: bool,
        /// First address.
        addr: u64,
        /// Bytes covered; 0 means every address.
        size: u64,
    },
    /// Every cache of the unit (SRTP with CAP.ESRTPS).
    Everything,
}

impl Invalidation {
    /// The address range `[start, end]` of a page-selective request with `am`.
    pub fn page_range(addr: u64, am: u8) -> (u64, u64) {
        let bytes_log2 = 12 + am.min(52) as u32;
        let mask = if bytes_log2 >= 64 {
            u64::MAX
        } else {
            (1u64 << bytes_log2) - 1
        };
        let start = addr & !mask;
        (start, start | mask)
    }
}

/// An invalid descriptor: why the queue stopped.
type DescError = Iqei;

impl<M: PhysMem> Unit<M> {
    /// Fetch and execute descriptors from IQH up to IQT (§8.2). Stops with FSTS.IQE on a
    /// bad tail or descriptor, leaving IQH at the offending descriptor.
    pub(crate) fn process_queue(&self, regs: &mut RegisterFile, msis: &mut Vec<(EventKind, Msi)>) {
        if !regs.gsts.contains(GlobalStatus::QIES) || regs.queue_stopped() {
            return;
        }
        let iqa = regs.iqa_latched;
        let wide = iqa.dw();
        if wide && !self.config.ecap.smts() {
            push(msis, EventKind::Fault, regs.queue_error(Iqei::InvalidWidth));
            return;
        }
        let queue_bytes = 4096u64 << iqa.qs();
        let desc_bytes = iqa.descriptor_bytes();
        let tail = regs.queue_tail();
        if tail >= queue_bytes {
            push(msis, EventKind::Fault, regs.queue_error(Iqei::InvalidTail));
            return;
        }
        if wide && !tail.is_multiple_of(32) {
            push(
                msis,
                EventKind::Fault,
                regs.queue_error(Iqei::TailMisaligned),
            );
            return;
        }
        let mut head = regs.queue_head() % queue_bytes;
        while head != tail {
            let addr = iqa.base() + head;
            let desc = match self.fetch_descriptor(addr, wide) {
                Ok(desc) => desc,
                Err(()) => {
                    push(msis, EventKind::Fault, regs.queue_error(Iqei::FetchError));
                    return;
                }
            };
            match self.execute_descriptor(regs, desc, wide, msis) {
                Ok(()) => {
                    head = (head + desc_bytes) % queue_bytes;
                    regs.set_queue_head(head);
                }
                Err(iqei) => {
                    push(msis, EventKind::Fault, regs.queue_error(iqei));
                    return;
                }
            }
        }
    }

    fn fetch_descriptor(&self, addr: u64, wide: bool) -> Result<RawDescriptor, ()> {
        let lo = self.mem.read_u128(addr).map_err(|_| ())?;
        let hi = if wide {
            self.mem.read_u128(addr + 16).map_err(|_| ())?
        } else {
            0
        };
        Ok(RawDescriptor { lo, hi })
    }

    /// Validate one descriptor and carry it out.
    fn execute_descriptor(
        &self,
        regs: &mut RegisterFile,
        desc: RawDescriptor,
        wide: bool,
        msis: &mut Vec<(EventKind, Msi)>,
    ) -> Result<(), DescError> {
        let ecap = self.config.ecap;
        let kind = desc.desc_type();
        if kind.needs_256bit() && !wide {
            return Err(Iqei::InvalidWidth);
        }
        if desc.hi != 0 {
            return Err(Iqei::ReservedField);
        }
        let lo = desc.lo;
        let reserved = |mask: u128| {
            if lo & mask != 0 {
                Err(Iqei::ReservedField)
            } else {
                Ok(())
            }
        };
        let inv = match kind {
            DescType::ContextCache => {
                reserved(ContextCacheInvDesc::RESERVED)?;
                let d = ContextCacheInvDesc::from_bits(lo);
                match d.g() {
                    CcmdGranularity::Global => Invalidation::ContextAll,
                    CcmdGranularity::Domain if ecap.smts() => Invalidation::ContextAll,
                    CcmdGranularity::Domain => Invalidation::ContextDomain { did: d.did() },
                    CcmdGranularity::Device => Invalidation::ContextDevice {
                        sid: d.sid(),
                        fm: d.fm(),
                    },
                    CcmdGranularity::Reserved => return Err(Iqei::ReservedField),
                }
            }
            DescType::Iotlb => {
                reserved(IotlbInvDesc::RESERVED)?;
                let d = IotlbInvDesc::from_bits(lo);
                match d.g() {
                    IotlbGranularity::Global => Invalidation::IotlbAll,
                    IotlbGranularity::Domain => Invalidation::IotlbDomain { did: d.did() },
                    IotlbGranularity::Page if d.am() > self.config.cap.mamv() => {
                        return Err(Iqei::ReservedField);
                    }
                    // Without CAP.PSI the unit invalidates the whole domain: more is legal.
                    IotlbGranularity::Page if !self.config.cap.psi() => {
                        Invalidation::IotlbDomain { did: d.did() }
                    }
                    IotlbGranularity::Page => Invalidation::IotlbPage {
                        did: d.did(),
                        addr: d.address(),
                        am: d.am(),
                        ih: d.ih(),
                    },
                    IotlbGranularity::Reserved => return Err(Iqei::ReservedField),
                }
            }
            DescType::DevTlb if ecap.dt() => {
                reserved(DevTlbInvDesc::RESERVED)?;
                let d = DevTlbInvDesc::from_bits(lo);
                let (addr, size) = devtlb_range(d.addr(), d.s());
                Invalidation::DevTlb {
                    sid: d.sid(),
                    addr,
                    size,
                }
            }
            DescType::Iec if ecap.ir() => {
                // Interrupt remapping is not modelled: nothing is cached to drop.
                reserved(IecInvDesc::RESERVED)?;
                self.counters.inc(Counter::Invalidations);
                return Ok(());
            }
            DescType::Wait => {
                reserved(InvWaitDesc::RESERVED)?;
                return self.invalidation_wait(regs, InvWaitDesc::from_bits(lo), msis);
            }
            DescType::PasidIotlb if ecap.smts() => {
                reserved(PasidIotlbInvDesc::RESERVED)?;
                let d = PasidIotlbInvDesc::from_bits(lo);
                match d.g() {
                    PasidIotlbGranularity::Pasid => Invalidation::PasidIotlbPasid {
                        did: d.did(),
                        pasid: d.pasid(),
                    },
                    PasidIotlbGranularity::Page => Invalidation::PasidIotlbPage {
                        did: d.did(),
                        pasid: d.pasid(),
                        addr: d.address(),
                        am: d.am(),
                        ih: d.ih(),
                    },
                    _ => return Err(Iqei::ReservedField),
                }
            }
            DescType::PasidCache if ecap.smts() => {
                reserved(PasidCacheInvDesc::RESERVED)?;
                let d = PasidCacheInvDesc::from_bits(lo);
                match d.g() {
                    PasidCacheGranularity::Domain => {
                        Invalidation::PasidCacheDomain { did: d.did() }
                    }
                    PasidCacheGranularity::Pasid => Invalidation::PasidCachePasid {
                        did: d.did(),
                        pasid: d.pasid(),
                    },
                    PasidCacheGranularity::Global => Invalidation::PasidCacheAll,
                    PasidCacheGranularity::Reserved => return Err(Iqei::ReservedField),
                }
            }
            DescType::PasidDevTlb if ecap.smts() && ecap.dt() => {
                reserved(PasidDevTlbInvDesc::RESERVED)?;
                let d = PasidDevTlbInvDesc::from_bits(lo);
                let (addr, size) = devtlb_range(d.addr(), d.s());
                Invalidation::PasidDevTlb {
                    sid: d.sid(),
                    pasid: d.pasid(),
                    global: d.g(),
                    addr,
                    size,
                }
            }
            DescType::PageGroupResponse | DescType::PageStreamResponse if ecap.prs() => {
                // Page requests are not modelled; a response has nothing to complete.
                self.counters.inc(Counter::Invalidations);
                return Ok(());
            }
            _ => return Err(Iqei::InvalidType),
        };
        self.invalidate(inv);
        Ok(())
    }

    /// Invalidation wait (type 5): everything before it is complete, so write the status
    /// and raise the completion event as asked.
    fn invalidation_wait(
        &self,
        regs: &mut RegisterFile,
        d: InvWaitDesc,
        msis: &mut Vec<(EventKind, Msi)>,
    ) -> Result<(), DescError> {
        if !d.intr() && !d.sw() && !d.fence() {
            return Err(Iqei::ReservedField);
        }
        if d.pd() && !self.config.ecap.pds() {
            return Err(Iqei::ReservedField);
        }
        if d.sw()
            && self
                .mem
                .write_u32(d.status_address(), d.status_data())
                .is_err()
        {
            return Err(Iqei::NoInfo);
        }
        if d.intr() {
            push(
                msis,
                EventKind::InvalidationComplete,
                regs.wait_completed_with_interrupt(),
            );
        }
        self.counters.inc(Counter::InvalidationWaits);
        Ok(())
    }

    /// Register-based context-cache invalidation; returns the actual granularity.
    pub(crate) fn context_cache_invalidate_register(&self, ccmd: Ccmd) -> CcmdGranularity {
        let inv = match ccmd.cirg() {
            CcmdGranularity::Global => Invalidation::ContextAll,
            // Scalable mode ignores the DID; report the global flush it became.
            CcmdGranularity::Domain if self.config.ecap.smts() => Invalidation::ContextAll,
            CcmdGranularity::Domain => Invalidation::ContextDomain { did: ccmd.did() },
            CcmdGranularity::Device => Invalidation::ContextDevice {
                sid: ccmd.sid(),
                fm: ccmd.fm(),
            },
            CcmdGranularity::Reserved => return CcmdGranularity::Reserved,
        };
        self.invalidate(inv);
        match inv {
            Invalidation::ContextAll => CcmdGranularity::Global,
            Invalidation::ContextDomain { .. } => CcmdGranularity::Domain,
            _ => CcmdGranularity::Device,
        }
    }

    /// Register-based IOTLB invalidation; returns the actual granularity.
    pub(crate) fn iotlb_invalidate_register(&self, cmd: IotlbReg, iva: IvaReg) -> IotlbGranularity {
        let cap = self.config.cap;
        let (inv, actual) = match cmd.iirg() {
            IotlbGranularity::Global => (Invalidation::IotlbAll, IotlbGranularity::Global),
            IotlbGranularity::Domain => (
                Invalidation::IotlbDomain { did: cmd.did() },
                IotlbGranularity::Domain,
            ),
            IotlbGranularity::Page if iva.am() > cap.mamv() => return IotlbGranularity::Reserved,
            IotlbGranularity::Page if !cap.psi() => (
                Invalidation::IotlbDomain { did: cmd.did() },
                IotlbGranularity::Domain,
            ),
            IotlbGranularity::Page => (
                Invalidation::IotlbPage {
                    did: cmd.did(),
                    addr: iva.addr() << 12,
                    am: iva.am(),
                    ih: iva.ih(),
                },
                IotlbGranularity::Page,
            ),
            IotlbGranularity::Reserved => return IotlbGranularity::Reserved,
        };
        self.invalidate(inv);
        actual
    }

    /// Drop what `inv` covers from every cache.
    pub fn invalidate(&self, inv: Invalidation) {
        self.counters.inc(Counter::Invalidations);
        self.caches.invalidate(&inv);
        if let Some(o) = self.observer() {
            o.invalidated(&inv);
        }
    }
}

fn push(msis: &mut Vec<(EventKind, Msi)>, kind: EventKind, msi: Option<Msi>) {
    if let Some(msi) = msi {
        msis.push((kind, msi));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_range_aligns_down_to_the_mask() {
        assert_eq!(Invalidation::page_range(0x5000, 0), (0x5000, 0x5FFF));
        assert_eq!(Invalidation::page_range(0x5000, 2), (0x4000, 0x7FFF));
        assert_eq!(Invalidation::page_range(0x1234_5000, 52), (0, u64::MAX));
    }
}
