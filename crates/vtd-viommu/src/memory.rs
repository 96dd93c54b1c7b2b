//! Guest memory: the guest-physical memory map a VMM builds (RAM and read-only regions
//! such as the vBIOS) and the host memory behind it, as vm-memory `MmapRegion`s.
//!
//! The same memory is seen three ways: the VMM maps it into the stage-2 IOAS by host
//! virtual address; assigned devices reach it through the host IOMMU; and the guest-facing
//! vIOMMU reads the guest's tables from it by guest-physical address ([`PhysMem`]).

use std::sync::atomic::{AtomicU64, Ordering};

use vm_memory::{
    Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion, VolatileSlice,
};
use vtd_model::mem::{MemError, PhysMem};

const PAGE: u64 = 4096;

/// What a guest-physical region holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RegionKind {
    /// Guest RAM, read-write.
    Ram,
    /// Read-only to the guest: firmware code, vBIOS, option ROMs. Under a nest parent with
    /// ERRATA_772415_SPR17 these stay out of stage 2 (see [`crate::stage2`]).
    Rom,
}

impl RegionKind {
    /// "RAM" or "ROM".
    pub fn label(self) -> &'static str {
        match self {
            RegionKind::Ram => "RAM",
            RegionKind::Rom => "ROM",
        }
    }
}

/// One region of the guest memory map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Region {
    /// A name for reports (`"vbios"`, `"ram-low"`).
    pub name: String,
    /// First guest-physical address (4 KiB aligned).
    pub gpa: u64,
    /// Size in bytes (a non-zero multiple of 4 KiB).
    pub size: u64,
    /// RAM or ROM.
    pub kind: RegionKind,
}

impl Region {
    /// A region `name` of `kind` at `[gpa, gpa + size)`.
    pub fn new(name: &str, gpa: u64, size: u64, kind: RegionKind) -> Self {
        Self {
            name: name.to_string(),
            gpa,
            size,
            kind,
        }
    }

    /// Last guest-physical address (saturating for a region [`MemoryMap::new`] would
    /// refuse).
    pub fn last(&self) -> u64 {
        self.gpa.saturating_add(self.size.saturating_sub(1))
    }

    /// `gpa` is inside the region.
    pub fn contains(&self, gpa: u64) -> bool {
        gpa >= self.gpa && gpa - self.gpa < self.size
    }
}

/// Why a memory map is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MemoryMapError {
    /// Start or size not page aligned, or size zero.
    #[error("region {name}: start {gpa:#x} and size {size:#x} must be non-zero multiples of 4 KiB")]
    Unaligned {
        /// Region name.
        name: String,
        /// Its start.
        gpa: u64,
        /// Its size.
        size: u64,
    },
    /// The region runs past the end of the 64-bit space.
    #[error("region {0} runs past the end of the address space")]
    Overflow(String),
    /// Two regions overlap.
    #[error("regions {0} and {1} overlap")]
    Overlap(String, String),
    /// No regions at all.
    #[error("the memory map is empty")]
    Empty,
    /// The host could not provide the memory.
    #[error("cannot allocate guest memory: {0}")]
    Allocation(String),
}

/// A validated guest memory map: sorted, page-aligned, non-overlapping regions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryMap {
    regions: Vec<Region>,
}

impl MemoryMap {
    /// Check and sort `regions`.
    pub fn new(mut regions: Vec<Region>) -> Result<Self, MemoryMapError> {
        if regions.is_empty() {
            return Err(MemoryMapError::Empty);
        }
        for r in &regions {
            if r.size == 0 || r.gpa % PAGE != 0 || r.size % PAGE != 0 {
                return Err(MemoryMapError::Unaligned {
                    name: r.name.clone(),
                    gpa: r.gpa,
                    size: r.size,
                });
            }
            if r.gpa.checked_add(r.size - 1).is_none() {
                return Err(MemoryMapError::Overflow(r.name.clone()));
            }
        }
        regions.sort_by_key(|r| r.gpa);
        for pair in regions.windows(2) {
            if pair[1].gpa <= pair[0].last() {
                return Err(MemoryMapError::Overlap(
                    pair[0].name.clone(),
                    pair[1].name.clone(),
                ));
            }
        }
        Ok(Self { regions })
    }

    /// A small PC-like map: low RAM, a 64 KiB vBIOS at 0xC0000, and RAM from 1 MiB up to
    /// `ram_top` (at least 2 MiB, at most 2^48), leaving out the 32-bit PCI hole
    /// [3 GiB, 4 GiB) that holds the interrupt window: RAM across it would be kept out of
    /// stage 2 whole.
    pub fn pc(ram_top: u64) -> Self {
        const HOLE: u64 = 0xC000_0000;
        const HIGH: u64 = 1 << 32;
        let top = ram_top.clamp(2 << 20, 1 << 48).next_multiple_of(PAGE);
        let mut regions = vec![
            Region::new("ram-low", 0, 0xC_0000, RegionKind::Ram),
            Region::new("vbios", 0xC_0000, 0x1_0000, RegionKind::Rom),
            Region::new("ram", 0x10_0000, top.min(HOLE) - 0x10_0000, RegionKind::Ram),
        ];
        if top > HIGH {
            regions.push(Region::new("ram-high", HIGH, top - HIGH, RegionKind::Ram));
        }
        Self::new(regions).expect("the built-in PC map is valid")
    }

    /// The regions, lowest first.
    pub fn regions(&self) -> &[Region] {
        &self.regions
    }

    /// The ROM regions as inclusive `(first, last)` GPA ranges, lowest first.
    pub fn rom_ranges(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.regions
            .iter()
            .filter(|r| r.kind == RegionKind::Rom)
            .map(|r| (r.gpa, r.last()))
    }

    /// The region holding `gpa`.
    pub fn region_at(&self, gpa: u64) -> Option<&Region> {
        self.regions.iter().find(|r| r.contains(gpa))
    }
}

/// Guest memory: the map and the host memory behind each region.
#[derive(Debug)]
pub struct GuestMemory {
    map: MemoryMap,
    mem: GuestMemoryMmap,
}

impl GuestMemory {
    /// Anonymous, zeroed host memory for every region of `map`.
    pub fn new(map: MemoryMap) -> Result<Self, MemoryMapError> {
        let ranges: Vec<(GuestAddress, usize)> = map
            .regions()
            .iter()
            .map(|r| (GuestAddress(r.gpa), r.size as usize))
            .collect();
        let mem = GuestMemoryMmap::from_ranges(&ranges)
            .map_err(|e| MemoryMapError::Allocation(e.to_string()))?;
        Ok(Self { map, mem })
    }

    /// The memory map.
    pub fn map(&self) -> &MemoryMap {
        &self.map
    }

    /// The vm-memory view, for device models.
    pub fn mmap(&self) -> &GuestMemoryMmap {
        &self.mem
    }

    /// The host virtual address of `gpa`, if it is guest memory.
    pub fn hva(&self, gpa: u64) -> Option<*mut u8> {
        self.mem.get_host_address(GuestAddress(gpa)).ok()
    }

    /// Copy `data` into guest memory at `gpa` (the VMM loading a ROM image, or the guest
    /// writing RAM). Writes that leave guest memory fail whole.
    pub fn write(&self, gpa: u64, data: &[u8]) -> Result<(), MemError> {
        self.check_range(gpa, data.len() as u64)?;
        self.copy_in(gpa, data)
    }

    /// Copy `data` to `gpa`, a range the caller has checked is all guest memory, so the
    /// copy cannot stop part way.
    fn copy_in(&self, gpa: u64, data: &[u8]) -> Result<(), MemError> {
        self.mem
            .write_slice(data, GuestAddress(gpa))
            .map_err(|_| MemError::Unbacked { addr: gpa })
    }

    /// Copy guest memory at `gpa` into `buf`.
    pub fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        self.check_range(gpa, buf.len() as u64)?;
        self.mem
            .read_slice(buf, GuestAddress(gpa))
            .map_err(|_| MemError::Unbacked { addr: gpa })
    }

    /// The whole of `[gpa, gpa + len)` is guest memory (possibly across regions).
    fn check_range(&self, gpa: u64, len: u64) -> Result<(), MemError> {
        let end = gpa
            .checked_add(len)
            .ok_or(MemError::Unbacked { addr: gpa })?;
        let mut at = gpa;
        while at < end {
            let r = self
                .mem
                .find_region(GuestAddress(at))
                .ok_or(MemError::Unbacked { addr: at })?;
            at = r.start_addr().0 + r.len();
        }
        Ok(())
    }

    /// The whole of `[gpa, gpa + len)` is guest memory and none of it ROM. Only the VMM
    /// writes ROM (through [`GuestMemory::write`]); to the guest and to the guest-facing
    /// unit (invalidation-wait status, A/D updates) it is read-only, and a refused write
    /// reads as unbacked, so the unit turns it into a queue error or a fault.
    fn check_writable(&self, gpa: u64, len: u64) -> Result<(), MemError> {
        self.check_range(gpa, len)?;
        let last = gpa.saturating_add(len.saturating_sub(1));
        match self
            .map
            .rom_ranges()
            .find(|&(first, end)| first <= last && gpa <= end)
        {
            Some((first, _)) if len > 0 => Err(MemError::Unbacked {
                addr: gpa.max(first),
            }),
            _ => Ok(()),
        }
    }

    /// The slice of `len` bytes at `gpa`, inside one region.
    fn slice(&self, gpa: u64, len: usize) -> Result<VolatileSlice<'_, ()>, MemError> {
        let r = self
            .mem
            .find_region(GuestAddress(gpa))
            .ok_or(MemError::Unbacked { addr: gpa })?;
        let offset = gpa - r.start_addr().0;
        r.get_slice(vm_memory::MemoryRegionAddress(offset), len)
            .map_err(|_| MemError::Unbacked { addr: gpa })
    }

    /// The 8-aligned word at `gpa` as an atomic.
    fn with_word<R>(&self, gpa: u64, f: impl FnOnce(&AtomicU64) -> R) -> Result<R, MemError> {
        if !gpa.is_multiple_of(8) {
            return Err(MemError::Misaligned { addr: gpa, size: 8 });
        }
        let slice = self.slice(gpa, 8)?;
        let guard = slice.ptr_guard_mut();
        // SAFETY: the slice covers 8 bytes of one mmap'd region, valid while `guard`
        // lives; `gpa` is 8-aligned and regions are page aligned, so the host address is
        // 8-aligned; AtomicU64 has the layout of u64 and every bit pattern is valid.
        let word = unsafe { &*(guard.as_ptr() as *const AtomicU64) };
        Ok(f(word))
    }
}

/// Guest memory as the guest and the guest-facing unit see it: ROM is read-only.
impl PhysMem for GuestMemory {
    fn read_u64(&self, addr: u64) -> Result<u64, MemError> {
        self.with_word(addr, |w| w.load(Ordering::Acquire))
    }

    fn write_u64(&self, addr: u64, value: u64) -> Result<(), MemError> {
        self.check_writable(addr, 8)?;
        self.with_word(addr, |w| w.store(value, Ordering::Release))
    }

    fn compare_exchange_u64(
        &self,
        addr: u64,
        current: u64,
        new: u64,
    ) -> Result<Result<u64, u64>, MemError> {
        self.check_writable(addr, 8)?;
        self.with_word(addr, |w| {
            w.compare_exchange(current, new, Ordering::AcqRel, Ordering::Acquire)
        })
    }

    fn write_u32(&self, addr: u64, value: u32) -> Result<(), MemError> {
        if !addr.is_multiple_of(4) {
            return Err(MemError::Misaligned { addr, size: 4 });
        }
        self.check_writable(addr, 4)?;
        let shift = (addr % 8) * 8;
        let mask = 0xFFFF_FFFFu64 << shift;
        self.with_word(addr & !7, |w| {
            let _ = w.fetch_update(Ordering::AcqRel, Ordering::Acquire, |old| {
                Some((old & !mask) | (value as u64) << shift)
            });
        })
    }

    fn read_bytes(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemError> {
        self.read(addr, buf)
    }

    fn write_bytes(&self, addr: u64, data: &[u8]) -> Result<(), MemError> {
        // Checks the range too, so nothing is written unless all of it can be.
        self.check_writable(addr, data.len() as u64)?;
        self.copy_in(addr, data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_regions_are_refused() {
        let r = MemoryMap::new(vec![
            Region::new("a", 0, 0x2000, RegionKind::Ram),
            Region::new("b", 0x1000, 0x1000, RegionKind::Rom),
        ]);
        assert_eq!(r, Err(MemoryMapError::Overlap("a".into(), "b".into())));
    }

    #[test]
    fn unaligned_region_is_refused() {
        let r = MemoryMap::new(vec![Region::new("a", 0x10, 0x1000, RegionKind::Ram)]);
        assert!(matches!(r, Err(MemoryMapError::Unaligned { .. })));
    }

    #[test]
    fn a_large_pc_map_leaves_the_pci_hole_and_its_interrupt_window_out() {
        let map = MemoryMap::pc(8 << 30);
        let window = vtd_spec::addr::INTERRUPT_RANGE_BASE;
        assert_eq!(map.region_at(window), None);
        assert_eq!(
            map.region_at(0xBFFF_F000).map(|r| r.kind),
            Some(RegionKind::Ram)
        );
        assert_eq!(
            map.region_at((8 << 30) - 1).map(|r| r.name.as_str()),
            Some("ram-high")
        );
        assert_eq!(map.region_at(8 << 30), None);
        // Between the hole and 4 GiB nothing is added; any top is fine.
        assert_eq!(MemoryMap::pc(0xF000_0000).regions().len(), 3);
        assert_eq!(
            MemoryMap::pc(u64::MAX).regions().last().unwrap().last(),
            (1 << 48) - 1
        );
    }

    #[test]
    fn region_bounds_do_not_overflow_at_the_top_of_the_space() {
        let top = Region::new("top", u64::MAX - 0xFFF, 0x1000, RegionKind::Ram);
        assert_eq!(top.last(), u64::MAX);
        assert!(top.contains(u64::MAX) && !top.contains(u64::MAX - 0x1000));
        let bad = Region::new("bad", u64::MAX - 0xFFF, 0x2000, RegionKind::Ram);
        assert_eq!(bad.last(), u64::MAX);
        assert!(!bad.contains(0));
        assert_eq!(
            MemoryMap::new(vec![bad]),
            Err(MemoryMapError::Overflow("bad".into()))
        );
    }

    #[test]
    fn pc_map_has_a_read_only_vbios() {
        let map = MemoryMap::pc(16 << 20);
        assert_eq!(
            map.region_at(0xC_8000).map(|r| r.kind),
            Some(RegionKind::Rom)
        );
        assert_eq!(map.region_at(0xF_0000), None);
    }

    #[test]
    fn words_round_trip_through_guest_memory() {
        let mem = GuestMemory::new(MemoryMap::pc(2 << 20)).unwrap();
        mem.write_u64(0x10_0008, 0x1122_3344_5566_7788).unwrap();
        assert_eq!(mem.read_u64(0x10_0008), Ok(0x1122_3344_5566_7788));
        assert_eq!(
            mem.compare_exchange_u64(0x10_0008, 1, 2),
            Ok(Err(0x1122_3344_5566_7788))
        );
    }

    #[test]
    fn the_unit_and_the_guest_cannot_write_rom() {
        let mem = GuestMemory::new(MemoryMap::pc(2 << 20)).unwrap();
        mem.write(0xC_0000, &[0xAA; 16]).unwrap();
        let refused = Err(MemError::Unbacked { addr: 0xC_0000 });
        assert_eq!(mem.write_u32(0xC_0000, 1), refused);
        assert_eq!(mem.write_u64(0xC_0000, 1), refused);
        assert_eq!(
            mem.compare_exchange_u64(0xC_0000, 0, 1).map(|_| ()),
            refused
        );
        // A write that starts in RAM and runs into the ROM is refused whole.
        assert_eq!(mem.write_bytes(0xB_FFF8, &[0; 16]), refused);
        assert_eq!(mem.read_u64(0xC_0000), Ok(0xAAAA_AAAA_AAAA_AAAA));
        let mut low = [0xFFu8; 8];
        mem.read(0xB_FFF8, &mut low).unwrap();
        assert_eq!(low, [0; 8]);
        assert_eq!(mem.write_bytes(0xC_0000, &[]), Ok(()));
    }

    #[test]
    fn a_write_that_runs_off_guest_memory_fails_and_writes_nothing() {
        let mem = GuestMemory::new(MemoryMap::pc(2 << 20)).unwrap();
        let end = 2 << 20;
        let refused = Err(MemError::Unbacked { addr: end });
        assert_eq!(mem.write(end - 8, &[0xAA; 16]), refused);
        assert_eq!(mem.write_bytes(end - 8, &[0xAA; 16]), refused);
        assert_eq!(mem.read_u64(end - 8), Ok(0));
        // The VMM may write the vBIOS, but not on into the hole after it.
        let hole = Err(MemError::Unbacked { addr: 0xD_0000 });
        assert_eq!(mem.write(0xC_FFF8, &[0xAA; 16]), hole);
        assert_eq!(mem.read_u64(0xC_FFF8), Ok(0));
        // Nor past the top of the address space.
        let top = Err(MemError::Unbacked { addr: u64::MAX });
        assert_eq!(mem.write(u64::MAX, &[0xAA; 2]), top);
        assert_eq!(mem.write_bytes(u64::MAX, &[0xAA; 2]), top);
    }

    #[test]
    fn access_to_the_hole_is_unbacked() {
        let mem = GuestMemory::new(MemoryMap::pc(2 << 20)).unwrap();
        assert_eq!(
            mem.read_u64(0xE_0000),
            Err(MemError::Unbacked { addr: 0xE_0000 })
        );
        let mut buf = [0u8; 16];
        assert!(mem.read(0xC_FFF8, &mut buf).is_err());
    }
}
