//! Synthetic DMA streams shaped like real devices, for benchmarks and trace generation.
//!
//! Each generator yields the sequence of single-page DMA requests a device issues; a
//! request never crosses a 4 KiB boundary, as PCIe requires.

use crate::request::{Access, Request};

/// One DMA access of a stream: which IOVA, how many bytes, read or write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Dma {
    /// Input address.
    pub iova: u64,
    /// Bytes, at most up to the end of the 4 KiB page.
    pub len: u32,
    /// Read or write.
    pub access: Access,
}

impl Dma {
    /// The request this access makes from `sid`, with `pasid` if given.
    pub fn request(&self, sid: u16, pasid: Option<u32>) -> Request {
        let req = Request::new(sid, self.iova, self.access).with_len(self.len);
        match pasid {
            Some(p) => req.with_pasid(p),
            None => req,
        }
    }
}

/// A NIC receiving packets: read the RX descriptor, write the frame into a 2 KiB buffer
/// in maximum-payload-size chunks, write the descriptor back.
///
/// With the defaults (256-entry ring, 1500-byte frames in 512-byte TLPs, 8192 buffers of
/// 2 KiB in 4096 pages) that is five requests per packet, and only the first touch of
/// each buffer page misses an IOTLB smaller than the buffer pool: about 90 % hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NicRx {
    /// IOVA of the descriptor ring (16-byte descriptors).
    pub ring: u64,
    /// Ring entries.
    pub ring_entries: u64,
    /// IOVA of the first receive buffer.
    pub buffers: u64,
    /// Number of buffers (each 2 KiB).
    pub buffer_count: u64,
    /// Frame length in bytes.
    pub frame: u32,
    /// PCIe maximum payload size in bytes.
    pub mps: u32,
}

impl Default for NicRx {
    fn default() -> Self {
        Self {
            ring: 0x1_0000_0000,
            ring_entries: 256,
            buffers: 0x2_0000_0000,
            buffer_count: 8192,
            frame: 1500,
            mps: 512,
        }
    }
}

impl NicRx {
    /// Bytes of one receive buffer.
    pub const BUFFER_BYTES: u64 = 2048;

    /// Pages the ring and buffers occupy: (ring pages, buffer pages).
    pub fn footprint_pages(&self) -> (u64, u64) {
        (
            (self.ring_entries * 16).div_ceil(4096),
            (self.buffer_count * Self::BUFFER_BYTES).div_ceil(4096),
        )
    }

    /// The requests of packet number `n`.
    pub fn packet(&self, n: u64) -> Vec<Dma> {
        let mut out = Vec::with_capacity(2 + self.frame.div_ceil(self.mps.max(1)) as usize);
        self.packet_into(n, &mut out);
        out
    }

    /// Append the requests of packet number `n` to `out`.
    pub fn packet_into(&self, n: u64, out: &mut Vec<Dma>) {
        let desc = self.ring + (n % self.ring_entries.max(1)) * 16;
        out.push(Dma {
            iova: desc,
            len: 16,
            access: Access::Read,
        });
        let buffer = self.buffers + (n % self.buffer_count.max(1)) * Self::BUFFER_BYTES;
        let mut off = 0u32;
        while off < self.frame {
            let len = self.mps.max(1).min(self.frame - off);
            out.push(Dma {
                iova: buffer + off as u64,
                len,
                access: Access::Write,
            });
            off += len;
        }
        out.push(Dma {
            iova: desc,
            len: 16,
            access: Access::Write,
        });
    }

    /// The requests of packets `0..packets`.
    pub fn stream(&self, packets: u64) -> Vec<Dma> {
        let mut out = Vec::new();
        for n in 0..packets {
            self.packet_into(n, &mut out);
        }
        out
    }
}

/// A storage controller (NVMe-like): fetch a 64-byte submission entry, read or write a
/// block range in 4 KiB pieces, post a 16-byte completion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Storage {
    /// IOVA of the submission queue.
    pub sq: u64,
    /// IOVA of the completion queue.
    pub cq: u64,
    /// Queue entries.
    pub queue_entries: u64,
    /// IOVA of the first data buffer.
    pub data: u64,
    /// Data buffer pages (I/Os cycle through them).
    pub data_pages: u64,
    /// Pages per I/O.
    pub io_pages: u64,
    /// Every `write_every`-th I/O is a write (device reads memory); the rest are reads
    /// (device writes memory).
    pub write_every: u64,
}

impl Default for Storage {
    fn default() -> Self {
        Self {
            sq: 0x3_0000_0000,
            cq: 0x3_1000_0000,
            queue_entries: 1024,
            data: 0x4_0000_0000,
            data_pages: 65536,
            io_pages: 32,
            write_every: 4,
        }
    }
}

impl Storage {
    /// Append the requests of I/O number `n` to `out`.
    pub fn io_into(&self, n: u64, out: &mut Vec<Dma>) {
        let slot = n % self.queue_entries.max(1);
        out.push(Dma {
            iova: self.sq + slot * 64,
            len: 64,
            access: Access::Read,
        });
        // A storage write moves data from memory to the device: a DMA read.
        let device_reads_memory = self.write_every != 0 && n.is_multiple_of(self.write_every);
        let access = if device_reads_memory {
            Access::Read
        } else {
            Access::Write
        };
        let first = (n * self.io_pages) % self.data_pages.max(1);
        for p in 0..self.io_pages {
            let page = (first + p) % self.data_pages.max(1);
            out.push(Dma {
                iova: self.data + page * 4096,
                len: 4096,
                access,
            });
        }
        out.push(Dma {
            iova: self.cq + slot * 16,
            len: 16,
            access: Access::Write,
        });
    }

    /// The requests of I/Os `0..ios`.
    pub fn stream(&self, ios: u64) -> Vec<Dma> {
        let mut out = Vec::new();
        for n in 0..ios {
            self.io_into(n, &mut out);
        }
        out
    }

    /// Pages the queues and data occupy: (queue pages, data pages).
    pub fn footprint_pages(&self) -> (u64, u64) {
        (
            (self.queue_entries * 64).div_ceil(4096) + (self.queue_entries * 16).div_ceil(4096),
            self.data_pages,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nic_packet_is_descriptor_read_three_chunks_and_writeback() {
        let nic = NicRx::default();
        let p = nic.packet(1);
        assert_eq!(p.len(), 5);
        assert_eq!(
            p[0],
            Dma {
                iova: nic.ring + 16,
                len: 16,
                access: Access::Read
            }
        );
        assert_eq!(p[1].iova, nic.buffers + 2048);
        assert_eq!(p.iter().skip(1).take(3).map(|d| d.len).sum::<u32>(), 1500);
        assert_eq!(p[4].access, Access::Write);
    }

    #[test]
    fn no_request_crosses_a_page() {
        let reqs = NicRx::default()
            .stream(64)
            .into_iter()
            .chain(Storage::default().stream(8));
        for d in reqs {
            assert!((d.iova & 0xFFF) + d.len as u64 <= 4096, "{d:?}");
        }
    }

    #[test]
    fn storage_io_spans_its_pages_between_queue_entries() {
        let s = Storage {
            io_pages: 2,
            ..Storage::default()
        };
        let mut out = Vec::new();
        s.io_into(1, &mut out);
        assert_eq!(out.len(), 4);
        assert_eq!(out[1].iova, s.data + 2 * 4096);
        assert_eq!(out[3].iova, s.cq + 16);
    }
}
