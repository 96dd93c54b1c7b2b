//! FAULT objects (§1.5 `struct iommu_hwpt_pgfault`, fault.c): the I/O page faults that
//! devices attached to a HWPT with a FAULT report, queued until user space reads them
//! from the queue's file and answers them by cookie.
//!
//! Only the selftest mock reports page requests (IOMMU_TEST_OP_TRIGGER_IOPF); VT-d
//! attach to such a HWPT is ENODEV, as no simulated PCI device has PRI. Each request
//! is the last of its group, so a group is one fault.

use std::collections::{BTreeMap, VecDeque};

use vtd_iommufd::Errno;
use vtd_iommufd::uapi::{IOMMUFD_PAGE_RESP_INVALID, iommu_hwpt_page_response, iommu_hwpt_pgfault};

use super::{decode, encode};

/// Bytes of one fault record (`struct iommu_hwpt_pgfault`).
pub(crate) const FAULT_RECORD: usize = std::mem::size_of::<iommu_hwpt_pgfault>();
/// Bytes of one response (`struct iommu_hwpt_page_response`).
pub(crate) const RESPONSE_RECORD: usize = std::mem::size_of::<iommu_hwpt_page_response>();

/// One page request as the queue holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Iopf {
    /// `IOMMU_PGFAULT_FLAGS_*`.
    pub(crate) flags: u32,
    /// DEVICE object of the requester.
    pub(crate) dev_id: u32,
    pub(crate) pasid: u32,
    pub(crate) grpid: u32,
    /// `IOMMU_PGFAULT_PERM_*`.
    pub(crate) perm: u32,
    pub(crate) addr: u64,
    /// The attachment the request came through ([`super::Device::attach_gen`]): a
    /// detach answers the faults of its own attachment only.
    pub(crate) attach_gen: u64,
}

impl Iopf {
    fn record(&self, cookie: u32) -> iommu_hwpt_pgfault {
        iommu_hwpt_pgfault {
            flags: self.flags,
            dev_id: self.dev_id,
            pasid: self.pasid,
            grpid: self.grpid,
            perm: self.perm,
            __reserved: 0,
            addr: self.addr,
            length: 0,
            cookie,
        }
    }
}

/// The queue of one FAULT object.
#[derive(Debug, Default)]
pub(crate) struct FaultQueue {
    /// Reported, not read yet.
    deliver: VecDeque<Iopf>,
    /// Read and waiting for their response, by cookie.
    response: BTreeMap<u32, Iopf>,
}

impl FaultQueue {
    /// `iommufd_fault_iopf_handler`: queue a request for reading.
    pub(crate) fn report(&mut self, fault: Iopf) {
        self.deliver.push_back(fault);
    }

    /// Whether a read would return a record (`poll` reports EPOLLIN).
    pub(crate) fn readable(&self) -> bool {
        !self.deliver.is_empty()
    }

    /// `read(2)` of the queue's file into `buf`: as many whole records as fit, each given
    /// the lowest free cookie from 1. ESPIPE unless `buf` holds a whole number of records;
    /// 0 when nothing is queued.
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> Result<usize, Errno> {
        if !buf.len().is_multiple_of(FAULT_RECORD) {
            return Err(Errno::ESPIPE);
        }
        let mut done = 0;
        while done < buf.len() {
            let Some(fault) = self.deliver.pop_front() else {
                break;
            };
            let Some(cookie) = (1..=u32::MAX).find(|c| !self.response.contains_key(c)) else {
                // Every cookie is taken (xa_alloc: EBUSY); the request stays queued.
                self.deliver.push_front(fault);
                return if done == 0 {
                    Err(Errno::EBUSY)
                } else {
                    Ok(done)
                };
            };
            self.response.insert(cookie, fault);
            encode(&mut buf[done..done + FAULT_RECORD], &fault.record(cookie));
            done += FAULT_RECORD;
        }
        Ok(done)
    }

    /// `write(2)` of responses: each must carry SUCCESS or INVALID and the cookie of a
    /// fault read and not yet answered, else EINVAL. Answers up to the first bad one and
    /// returns the bytes of those answered (the error only when none was). ESPIPE unless
    /// `data` holds a whole number of responses.
    pub(crate) fn write(&mut self, data: &[u8]) -> Result<usize, Errno> {
        if !data.len().is_multiple_of(RESPONSE_RECORD) {
            return Err(Errno::ESPIPE);
        }
        let mut done = 0;
        for chunk in data.chunks_exact(RESPONSE_RECORD) {
            let response: iommu_hwpt_page_response = decode(chunk);
            if response.code > IOMMUFD_PAGE_RESP_INVALID
                || self.response.remove(&response.cookie).is_none()
            {
                return if done == 0 {
                    Err(Errno::EINVAL)
                } else {
                    Ok(done)
                };
            }
            done += RESPONSE_RECORD;
        }
        Ok(done)
    }

    /// `iommufd_auto_response_faults`: answer (INVALID) and drop every fault, read or
    /// not, that came through attachment `attach_gen` of device `dev_id`.
    pub(crate) fn answer_attachment(&mut self, dev_id: u32, attach_gen: u64) {
        let other = |f: &Iopf| f.dev_id != dev_id || f.attach_gen != attach_gen;
        self.deliver.retain(other);
        self.response.retain(|_, f| other(f));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(addr: u64) -> Iopf {
        Iopf {
            flags: 3,
            dev_id: 2,
            pasid: 1,
            grpid: 7,
            perm: 3,
            addr,
            attach_gen: 1,
        }
    }

    fn cookie(record: &[u8]) -> u32 {
        u32::from_le_bytes(record[36..40].try_into().unwrap())
    }

    fn response(cookie: u32, code: u32) -> Vec<u8> {
        [cookie.to_le_bytes(), code.to_le_bytes()].concat()
    }

    #[test]
    fn a_read_fills_whole_records_with_the_lowest_free_cookies() {
        let mut q = FaultQueue::default();
        for a in [0x1000, 0x2000, 0x3000] {
            q.report(fault(a));
        }
        let mut buf = [0u8; 2 * FAULT_RECORD];
        assert_eq!(q.read(&mut buf), Ok(2 * FAULT_RECORD));
        assert_eq!((cookie(&buf[..40]), cookie(&buf[40..])), (1, 2));
        assert_eq!(q.write(&response(1, 0)), Ok(RESPONSE_RECORD));
        assert_eq!(q.read(&mut buf), Ok(FAULT_RECORD));
        assert_eq!(cookie(&buf[..40]), 1, "cookie 1 was free again");
        assert_eq!(u64::from_le_bytes(buf[24..32].try_into().unwrap()), 0x3000);
    }

    #[test]
    fn a_read_of_a_partial_record_is_espipe() {
        let mut q = FaultQueue::default();
        q.report(fault(0));
        assert_eq!(q.read(&mut [0u8; FAULT_RECORD - 1]), Err(Errno::ESPIPE));
        assert!(q.readable(), "nothing was taken");
    }

    #[test]
    fn an_empty_queue_reads_zero_bytes() {
        assert_eq!(FaultQueue::default().read(&mut [0u8; FAULT_RECORD]), Ok(0));
    }

    #[test]
    fn responses_stop_at_the_first_unknown_cookie_or_bad_code() {
        let mut q = FaultQueue::default();
        q.report(fault(0));
        q.report(fault(0x1000));
        let mut buf = [0u8; 2 * FAULT_RECORD];
        q.read(&mut buf).unwrap();
        assert_eq!(q.write(&response(1, 2)), Err(Errno::EINVAL), "bad code");
        assert_eq!(
            q.write(&response(9, 0)),
            Err(Errno::EINVAL),
            "unknown cookie"
        );
        let two = [response(1, 1), response(9, 0), response(2, 0)].concat();
        assert_eq!(q.write(&two), Ok(RESPONSE_RECORD), "the first was answered");
        assert_eq!(
            q.write(&response(1, 0)),
            Err(Errno::EINVAL),
            "answered once"
        );
        assert_eq!(q.write(&response(2, 0)), Ok(RESPONSE_RECORD));
        assert_eq!(q.write(&[0u8; 7]), Err(Errno::ESPIPE));
    }

    #[test]
    fn answering_an_attachment_drops_its_faults_read_or_not() {
        let mut q = FaultQueue::default();
        q.report(fault(0));
        q.read(&mut [0u8; FAULT_RECORD]).unwrap();
        q.report(fault(0x1000));
        q.report(Iopf {
            attach_gen: 2,
            ..fault(0x2000)
        });
        q.answer_attachment(2, 1);
        assert_eq!(q.write(&response(1, 0)), Err(Errno::EINVAL));
        let mut buf = [0u8; 2 * FAULT_RECORD];
        assert_eq!(q.read(&mut buf), Ok(FAULT_RECORD), "the other attachment's");
    }
}
