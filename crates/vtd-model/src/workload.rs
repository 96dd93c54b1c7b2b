//! Synthetic DMA streams shaped like real devices, for benchmarks and trace generation,
//! and [`NestedBench`], the nested unit the benchmarks measure.
//!
//! Each generator yields the sequence of single-page DMA requests a device issues; a
//! request never crosses a 4 KiB boundary, as PCIe requires.

use std::sync::atomic::{AtomicU64, Ordering};

use vtd_spec::addr::PageSize;
use vtd_spec::pasid::Fspm;

use crate::build::{
    BuildError, Format, Leaf, PageTable, ScalableTables, enable_translation, nested_pasid_entry,
};
use crate::cache::CacheConfig;
use crate::config::{ConfigError, UnitConfig};
use crate::mem::FlatMem;
use crate::request::{Access, Request};
use crate::unit::Unit;

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

/// Why a [`NestedBench`] could not be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FixtureError {
    /// The unit configuration (cache geometry) is impossible.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// A table could not be written (the fixture's memory is used up).
    #[error("{0}")]
    Build(#[from] BuildError),
}

/// The nested unit the hardware-model benchmarks measure, shared by `cargo bench -p
/// vtd-model` and `vtd-nest bench`/`trace` so both measure the same thing.
///
/// One unit (the default configuration: Sapphire Rapids-like, erratum off) over
/// [`FlatMem`]; device [`NestedBench::SID`] with PASID [`NestedBench::PASID`] translates
/// nested (PGTT=011b): a 4-level first stage whose tables live in guest memory, over a
/// 4-level second stage that maps guest-physical `g` to host-physical
/// `g + GUEST_BASE` for the whole [`NestedBench::GUEST_SIZE`] bytes.
pub struct NestedBench {
    /// The unit.
    pub unit: Unit<FlatMem>,
    fs_root: u64,
    next_table: AtomicU64,
}

impl NestedBench {
    /// Source id of the benchmark device.
    pub const SID: u16 = 0x0100;
    /// PASID its requests carry.
    pub const PASID: u32 = 1;
    /// Domain id of its PASID entry.
    pub const DID: u16 = 3;
    /// Guest-physical `g` is host-physical `g + GUEST_BASE`.
    pub const GUEST_BASE: u64 = 0x0400_0000;
    /// Bytes of guest memory stage 2 maps.
    pub const GUEST_SIZE: u64 = 0x0400_0000;
    /// Guest pages for first-stage tables are handed out upwards from this GPA; data
    /// mappings should stay below it.
    pub const GUEST_TABLES: u64 = 0x0380_0000;

    /// Build the unit and tables; stage 2 maps guest memory with `ss_page` leaves.
    pub fn new(ss_page: PageSize, caches: CacheConfig) -> Result<Self, FixtureError> {
        let config = UnitConfig {
            caches,
            ..UnitConfig::default()
        };
        let unit = Unit::new(config, FlatMem::new(0, Self::GUEST_BASE + Self::GUEST_SIZE))?;
        let next_table = AtomicU64::new(Self::GUEST_TABLES);
        let fs_root = {
            let mem = unit.mem();
            let tables = ScalableTables::new(mem, mem);
            tables.add_device(Self::SID, 0)?;
            let mut ss = PageTable::physical(mem, mem, Format::SecondStage, 4);
            ss.map_range(
                0,
                Self::GUEST_BASE,
                Self::GUEST_SIZE,
                ss_page,
                Leaf::read_write(),
            )?;
            let fs = PageTable::new(
                mem,
                Format::FirstStage,
                4,
                || next_table.fetch_add(4096, Ordering::Relaxed),
                |g| g + Self::GUEST_BASE,
            );
            let entry = nested_pasid_entry(ss.root(), fs.root(), Fspm::Level4, Self::DID, 2);
            tables.set_pasid_entry(Self::SID, Self::PASID, entry)?;
            enable_translation(&unit, tables.rtaddr())?;
            fs.root()
        };
        Ok(Self {
            unit,
            fs_root,
            next_table,
        })
    }

    /// The first stage, to map IOVAs (below [`NestedBench::GUEST_TABLES`]) into guest
    /// memory. Once the table pages run past the end of guest memory, maps fail.
    pub fn fs(&self) -> PageTable<'_, FlatMem> {
        PageTable::open(
            self.unit.mem(),
            Format::FirstStage,
            4,
            self.fs_root,
            || self.next_table.fetch_add(4096, Ordering::Relaxed),
            |g| g + Self::GUEST_BASE,
        )
    }

    /// A read of `iova` by the benchmark device.
    pub fn read(iova: u64) -> Request {
        Request::read(Self::SID, iova).with_pasid(Self::PASID)
    }

    /// Map `pages` 4 KiB pages, IOVA `0x4000_0000 + 4096·p` onto GPA `0x10_0000 + 4096·p`,
    /// and return one read inside each: the working set of the IOTLB-hit measurement
    /// (one IOTLB entry per page, §6.4).
    pub fn map_hot_pages(&self, pages: u64) -> Result<Vec<Request>, FixtureError> {
        let mut fs = self.fs();
        for p in 0..pages {
            fs.map(
                0x4000_0000 + p * 4096,
                0x10_0000 + p * 4096,
                PageSize::Size4K,
                Leaf::read_write(),
            )?;
        }
        Ok((0..pages)
            .map(|p| Self::read(0x4000_0000 + p * 4096 + 0x40))
            .collect())
    }

    /// Map the ring and buffers of NIC queue `q` (its own ring and 4096 buffers, 1 MiB of
    /// guest memory per queue apart) and return two passes over every buffer.
    pub fn nic_queue(&self, q: u64) -> Result<Vec<Dma>, FixtureError> {
        let nic = Self::nic(q);
        let (ring_pages, buffer_pages) = nic.footprint_pages();
        let gpa_base = 0x10_0000 + q * 0x100_0000;
        let mut fs = self.fs();
        fs.map_range(
            nic.ring,
            gpa_base,
            ring_pages * 4096,
            PageSize::Size4K,
            Leaf::read_write(),
        )?;
        fs.map_range(
            nic.buffers,
            gpa_base + 0x10_0000,
            buffer_pages * 4096,
            PageSize::Size4K,
            Leaf::read_write(),
        )?;
        Ok(nic.stream(nic.buffer_count * 2))
    }

    /// The NIC of queue `q` that [`NestedBench::nic_queue`] maps.
    pub fn nic(q: u64) -> NicRx {
        NicRx {
            ring: 0x1_0000_0000 + q * 0x100_0000,
            buffers: 0x2_0000_0000 + q * 0x1000_0000,
            buffer_count: 4096,
            ..NicRx::default()
        }
    }
}

/// 24 pages of `u64`s, each page holding the index of the next page's slot at a
/// page-dependent offset: walking it from the returned start index is 24 dependent loads
/// on distinct pages, the baseline of the cold-walk ratio.
pub fn pointer_chase_24() -> (Vec<u64>, usize) {
    const PAGES: usize = 24;
    let mut mem = vec![0u64; PAGES * 512];
    let start = 7;
    for p in 0..PAGES {
        let here = p * 512 + (p * 37 + start) % 512;
        let next = ((p + 1) % PAGES) * 512 + (((p + 1) % PAGES) * 37 + start) % 512;
        mem[here] = next as u64;
    }
    (mem, start)
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
    fn nested_bench_cold_walk_is_four_over_four() {
        let b = NestedBench::new(PageSize::Size4K, CacheConfig::disabled()).unwrap();
        let iova = 0x7_4020_3000;
        b.fs()
            .map(iova, 0x20_5000, PageSize::Size4K, Leaf::read_write())
            .unwrap();
        let before = b.unit.stats();
        b.unit.translate(&NestedBench::read(iova)).unwrap();
        assert_eq!(b.unit.stats().since(&before).paging_reads(), 24);
    }

    #[test]
    fn pointer_chase_visits_every_page_once_per_lap() {
        let (mem, start) = pointer_chase_24();
        let mut at = start;
        let mut pages = std::collections::BTreeSet::new();
        for _ in 0..24 {
            pages.insert(at / 512);
            at = mem[at] as usize;
        }
        assert_eq!((pages.len(), at), (24, start));
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
