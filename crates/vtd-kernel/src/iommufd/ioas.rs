//! IO address spaces: the IOAS ioctls (ioas.c) and the io_pagetable behind them
//! (io_pagetable.c, pages.c), as `docs/iommufd-core-semantics.md` §2–3 describe them.
//!
//! An IOAS holds *areas* (one per MAP, one per COPY piece), *reserved* ranges (domain
//! apertures, device reserved regions), *allowed* ranges (ALLOW_IOVAS) and the paging
//! domains that mirror it. User memory is pinned lazily: only while the IOAS has at least
//! one domain, so a MAP into an IOAS without domains touches nothing and a bad user
//! address surfaces later, at HWPT_ALLOC or attach (§7 item 1).
//!
//! Host-physical addresses are user virtual addresses in the simulation (ARCHITECTURE
//! §4), so a mapped area is one physically contiguous run and one `iommu_map` call per
//! domain (one per 4 KiB page with large pages disabled).

use std::collections::BTreeMap;
use std::sync::Arc;

use vtd_iommufd::Errno;
use vtd_iommufd::uapi::{
    MapFlags, iommu_ioas_alloc, iommu_ioas_allow_iovas, iommu_ioas_copy, iommu_ioas_iova_ranges,
    iommu_ioas_map, iommu_ioas_unmap, iommu_iova_range,
};

use super::{Ictx, ObjKind, decode, encode};
use crate::driver::{DevIndex, DomainHandle, IommuDriver, Prot, ResvKind};
use crate::hostmem::HostMem;
use crate::uaccess::{as_bytes, check_user_range, copy_to_user, read_user};

const PAGE: u64 = 4096;

/// The largest alignment automatic IOVA allocation derives from the user address
/// (HPAGE_SIZE with transparent huge pages, the distribution default).
const AUTO_ALIGN_MAX: u64 = 2 << 20;

/// Who owns a reserved range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Owner {
    /// A domain's aperture (by HWPT id).
    Domain(u32),
    /// A device's reserved regions (by DEVICE id).
    Device(u32),
    /// `IOMMU_TEST_OP_ADD_RESERVED`: no owner, freed with the IOAS.
    Test,
}

#[derive(Clone, Copy, Debug)]
struct Reserved {
    start: u64,
    last: u64,
    owner: Owner,
}

/// The user memory behind one or more areas (`struct iopt_pages`): a page-rounded span.
#[derive(Debug)]
pub(crate) struct Pages {
    /// First byte of the span, rounded down to a page.
    uptr: u64,
    /// Mapped with WRITEABLE: the pages were (or will be) pinned for writing.
    writable: bool,
}

/// A piece of a pages object: what COPY collects from the source and MAP creates.
#[derive(Clone, Debug)]
pub(crate) struct Piece {
    pages: Arc<Pages>,
    /// Byte offset of the piece from `pages.uptr`.
    start_byte: u64,
    length: u64,
}

impl Piece {
    fn uaddr(&self) -> u64 {
        self.pages.uptr + self.start_byte
    }
}

/// One mapped IOVA range.
#[derive(Debug)]
struct Area {
    iova: u64,
    last: u64,
    prot: Prot,
    piece: Piece,
    /// Its user pages hold a pin (the IOAS has a domain).
    pinned: bool,
}

impl Area {
    fn len(&self) -> u64 {
        self.last - self.iova + 1
    }

    /// The host-physical (user virtual) address of the first byte.
    fn paddr(&self) -> u64 {
        self.piece.uaddr()
    }

    /// The page-rounded user span its pin covers.
    fn pin_span(&self) -> (u64, u64) {
        let start = self.paddr() & !(PAGE - 1);
        let end = (self.paddr() + self.len()).next_multiple_of(PAGE);
        (start, end - start)
    }
}

/// A domain mirroring the IOAS.
#[derive(Clone, Copy, Debug)]
struct IoasDomain {
    hwpt: u32,
    dom: DomainHandle,
    /// Smallest page size of the domain.
    min_page: u64,
}

/// An IOAS object (`struct iommufd_ioas` with its `struct io_pagetable`).
#[derive(Debug)]
pub(crate) struct Ioas {
    areas: BTreeMap<u64, Area>,
    reserved: Vec<Reserved>,
    /// Non-overlapping, sorted.
    allowed: Vec<(u64, u64)>,
    domains: Vec<IoasDomain>,
    /// Paging HWPTs on this IOAS in creation order (auto-domain search order).
    pub(crate) hwpts: Vec<u32>,
    alignment: u64,
    large_pages: bool,
}

fn overlaps(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 <= b.1 && b.0 <= a.1
}

impl Default for Ioas {
    fn default() -> Self {
        Self {
            areas: BTreeMap::new(),
            reserved: Vec::new(),
            allowed: Vec::new(),
            domains: Vec::new(),
            hwpts: Vec::new(),
            alignment: 1,
            large_pages: true,
        }
    }
}

impl Ioas {
    /// The areas intersecting `[start, last]`, lowest first.
    fn areas_in(&self, start: u64, last: u64) -> impl Iterator<Item = &Area> {
        let first = self
            .areas
            .range(..=start)
            .next_back()
            .filter(|(_, a)| a.last >= start)
            .map(|(k, _)| *k);
        self.areas
            .range(first.unwrap_or(start)..=last)
            .map(|(_, a)| a)
            .filter(move |a| a.last >= start)
    }

    fn intersects_area(&self, start: u64, last: u64) -> bool {
        self.areas_in(start, last).next().is_some()
    }

    fn intersects_reserved(&self, start: u64, last: u64) -> bool {
        self.reserved
            .iter()
            .any(|r| overlaps((r.start, r.last), (start, last)))
    }

    /// `iopt_reserve_iova`: EADDRINUSE if an area or allowed range is in the way.
    pub(crate) fn reserve(&mut self, start: u64, last: u64, owner: Owner) -> Result<(), Errno> {
        if self.intersects_area(start, last)
            || self.allowed.iter().any(|&a| overlaps(a, (start, last)))
        {
            return Err(Errno::EADDRINUSE);
        }
        self.reserved.push(Reserved { start, last, owner });
        Ok(())
    }

    /// Drop every reservation `owner` made.
    pub(crate) fn unreserve(&mut self, owner: Owner) {
        self.reserved.retain(|r| r.owner != owner);
    }

    /// Reserve a device's reserved regions (`iopt_table_enforce_dev_resv_regions`);
    /// relaxable RMRRs are not reported by our driver, every other region counts. All or
    /// nothing.
    pub(crate) fn enforce_dev_resv(
        &mut self,
        driver: &dyn IommuDriver,
        dev: DevIndex,
        owner: u32,
    ) -> Result<(), Errno> {
        for r in driver.resv_regions(dev) {
            debug_assert!(matches!(
                r.kind,
                ResvKind::Direct | ResvKind::Msi | ResvKind::Reserved
            ));
            if let Err(e) = self.reserve(r.start, r.last, Owner::Device(owner)) {
                self.unreserve(Owner::Device(owner));
                return Err(e);
            }
        }
        Ok(())
    }

    /// The alignment the IOAS would need with `extra` domain or access alignment.
    fn required_alignment(&self, large_pages: bool, extra: u64) -> u64 {
        let base = if large_pages { 1 } else { PAGE };
        self.domains
            .iter()
            .map(|d| d.min_page)
            .fold(base.max(extra), u64::max)
    }

    /// EADDRINUSE when some area would not satisfy `align` (§3.12).
    fn check_alignment(&self, align: u64) -> Result<(), Errno> {
        let bad = self.areas.values().any(|a| {
            a.iova % align != 0 || a.len() % align != 0 || !(a.paddr() % PAGE).is_multiple_of(align)
        });
        if bad { Err(Errno::EADDRINUSE) } else { Ok(()) }
    }

    /// Pin the user pages of an area (FOLL_LONGTERM, plus FOLL_WRITE when writable):
    /// EFAULT unless the whole span is mapped user memory with the needed permission.
    fn pin(mem: &HostMem, area: &mut Area) -> Result<(), Errno> {
        if area.pinned {
            return Ok(());
        }
        let (start, len) = area.pin_span();
        check_user_range(start, len, area.piece.pages.writable)?;
        // Pages the simulated kernel owns are not user memory, whatever the process maps.
        if mem.overlaps_kernel(start, len) {
            return Err(Errno::EFAULT);
        }
        mem.pin(start, len);
        area.pinned = true;
        Ok(())
    }

    fn unpin(mem: &HostMem, area: &mut Area) {
        if area.pinned {
            let (start, len) = area.pin_span();
            mem.unpin(start, len);
            area.pinned = false;
        }
    }

    /// Map one area into one domain: one call, or one per page without large pages.
    fn map_into(
        &self,
        driver: &dyn IommuDriver,
        dom: DomainHandle,
        area: &Area,
    ) -> Result<(), Errno> {
        if self.large_pages {
            return driver.map(
                dom,
                area.iova,
                area.paddr(),
                area.len(),
                area.prot | Prot::CACHE,
            );
        }
        let mut done = 0;
        while done < area.len() {
            if let Err(e) = driver.map(
                dom,
                area.iova + done,
                area.paddr() + done,
                PAGE,
                area.prot | Prot::CACHE,
            ) {
                if done > 0 {
                    driver.unmap(dom, area.iova, done);
                }
                return Err(e);
            }
            done += PAGE;
        }
        Ok(())
    }

    /// Pin a new area and map it into every domain (`iopt_area_fill_domains`); undo all
    /// of it on failure. Nothing happens without domains.
    fn fill_domains(
        &self,
        driver: &dyn IommuDriver,
        mem: &HostMem,
        area: &mut Area,
    ) -> Result<(), Errno> {
        if self.domains.is_empty() {
            return Ok(());
        }
        Self::pin(mem, area)?;
        for (i, d) in self.domains.iter().enumerate() {
            if let Err(e) = self.map_into(driver, d.dom, area) {
                for done in &self.domains[..i] {
                    driver.unmap(done.dom, area.iova, area.len());
                }
                Self::unpin(mem, area);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Unmap an area from every domain and release its pin.
    fn unfill(&self, driver: &dyn IommuDriver, mem: &HostMem, area: &mut Area) {
        for d in &self.domains {
            driver.unmap(d.dom, area.iova, area.len());
        }
        Self::unpin(mem, area);
    }

    /// `iopt_alloc_iova` (§3.4): lowest-address first fit in the allowed ranges (or the
    /// whole space but the first and last page), avoiding areas and reserved ranges.
    fn alloc_iova(&self, uptr: u64, length: u64) -> Result<u64, Errno> {
        if length == 0 || length >= u64::MAX / 2 {
            return Err(Errno::EOVERFLOW);
        }
        let by_length = length.checked_next_power_of_two().unwrap_or(1 << 63);
        let mut align = if uptr == 0 {
            by_length
        } else {
            by_length.min(1 << uptr.trailing_zeros())
        };
        align = align.min(AUTO_ALIGN_MAX);
        if align < self.alignment {
            return Err(Errno::EINVAL);
        }
        let window = (PAGE, u64::MAX - PAGE);
        let regions: Vec<(u64, u64)> = if self.allowed.is_empty() {
            vec![window]
        } else {
            merge(self.allowed.clone())
                .into_iter()
                .filter_map(|(s, l)| {
                    let (s, l) = (s.max(window.0), l.min(window.1));
                    (s <= l).then_some((s, l))
                })
                .collect()
        };
        let mut used: Vec<(u64, u64)> = self.reserved.iter().map(|r| (r.start, r.last)).collect();
        used.extend(self.areas.values().map(|a| (a.iova, a.last)));
        let used = merge(used);
        let page_offset = uptr % PAGE;
        for (rs, rl) in regions {
            if rl - rs < length - 1 {
                continue;
            }
            for (hs, hl) in holes(&used, rs, rl) {
                let Some(start) = hs.checked_next_multiple_of(align) else {
                    continue;
                };
                let start = start | page_offset;
                if start < hl && hl - start >= length - 1 {
                    return Ok(start);
                }
            }
        }
        Err(Errno::ENOSPC)
    }

    /// `iopt_check_iova` (§3.5) for a FIXED_IOVA mapping.
    fn check_iova(&self, iova: u64, length: u64) -> Result<(), Errno> {
        if !iova.is_multiple_of(self.alignment) {
            return Err(Errno::EINVAL);
        }
        let last = iova.checked_add(length - 1).ok_or(Errno::EOVERFLOW)?;
        if self.intersects_reserved(iova, last) {
            return Err(Errno::EINVAL);
        }
        if self.intersects_area(iova, last) {
            return Err(Errno::EEXIST);
        }
        Ok(())
    }

    /// Map `pieces` as consecutive areas from `iova` (or an allocated IOVA) and fill every
    /// domain (`iopt_map_pages`). Atomic: on failure nothing stays mapped or pinned.
    pub(crate) fn map_pieces(
        &mut self,
        driver: &dyn IommuDriver,
        mem: &HostMem,
        pieces: &[Piece],
        fixed: Option<u64>,
        prot: Prot,
    ) -> Result<u64, Errno> {
        // iopt_alloc_area_pages allocates every area before it looks at the IOVA.
        for _ in pieces {
            mem.fail_point()?;
        }
        let length = pieces
            .iter()
            .try_fold(0u64, |acc, p| acc.checked_add(p.length))
            .ok_or(Errno::EOVERFLOW)?;
        if length == 0 || length % self.alignment != 0 {
            return Err(Errno::EINVAL);
        }
        let iova = match fixed {
            Some(iova) => {
                self.check_iova(iova, length)?;
                iova
            }
            None => self.alloc_iova(pieces[0].uaddr(), length)?,
        };
        let mut areas = Vec::with_capacity(pieces.len());
        let mut at = iova;
        for piece in pieces {
            if prot.contains(Prot::WRITE) && !piece.pages.writable {
                return Err(Errno::EPERM);
            }
            if !(piece.uaddr() % PAGE).is_multiple_of(self.alignment) {
                return Err(Errno::EINVAL);
            }
            let last = at.checked_add(piece.length - 1).ok_or(Errno::EOVERFLOW)?;
            areas.push(Area {
                iova: at,
                last,
                prot,
                piece: piece.clone(),
                pinned: false,
            });
            at = last.wrapping_add(1);
        }
        for i in 0..areas.len() {
            if let Err(e) = self.fill_domains(driver, mem, &mut areas[i]) {
                for done in &mut areas[..i] {
                    self.unfill(driver, mem, done);
                }
                return Err(e);
            }
        }
        for area in areas {
            self.areas.insert(area.iova, area);
        }
        Ok(iova)
    }

    /// Remove the areas inside `[start, last]` (`iopt_unmap_iova_range`, §3.8): ENOENT
    /// when an intersecting area sticks out, after the lower areas are already gone.
    /// Returns the bytes removed.
    pub(crate) fn unmap_range(
        &mut self,
        driver: &dyn IommuDriver,
        mem: &HostMem,
        start: u64,
        last: u64,
    ) -> Result<u64, Errno> {
        let mut removed = 0u64;
        loop {
            let Some(area) = self.areas_in(start, last).next() else {
                break;
            };
            if area.iova < start || area.last > last {
                return Err(Errno::ENOENT);
            }
            let key = area.iova;
            let Some(mut area) = self.areas.remove(&key) else {
                break;
            };
            self.unfill(driver, mem, &mut area);
            removed += area.len();
            if area.last >= last {
                break;
            }
        }
        Ok(removed)
    }

    /// Remove every area (unmap-all and IOAS destruction).
    pub(crate) fn unmap_all(&mut self, driver: &dyn IommuDriver, mem: &HostMem) -> u64 {
        self.unmap_range(driver, mem, 0, u64::MAX).unwrap_or(0)
    }

    /// The pieces of `[iova, iova + length)` along a gap-free chain of areas
    /// (`iopt_get_pages`, §3.9).
    pub(crate) fn get_pages(&self, iova: u64, length: u64) -> Result<Vec<Piece>, Errno> {
        if length == 0 {
            return Err(Errno::EINVAL);
        }
        let last = iova.checked_add(length - 1).ok_or(Errno::EOVERFLOW)?;
        Ok(self
            .chain(iova, last)?
            .into_iter()
            .map(|(area, s, l)| Piece {
                pages: Arc::clone(&area.piece.pages),
                start_byte: area.piece.start_byte + (s - area.iova),
                length: l - s + 1,
            })
            .collect())
    }

    /// The gap-free chain of areas covering `[iova, last]`, with the part each covers;
    /// ENOENT at a gap.
    fn chain(&self, iova: u64, last: u64) -> Result<Vec<(&Area, u64, u64)>, Errno> {
        match self.contiguous(iova, last) {
            (pieces, true) => Ok(pieces),
            (_, false) => Err(Errno::ENOENT),
        }
    }

    /// The areas that follow each other without a gap from `iova` towards `last`, each
    /// with the part `[start, end]` of the range it covers, up to the first gap; and
    /// whether they reach `last`.
    fn contiguous(&self, iova: u64, last: u64) -> (Vec<(&Area, u64, u64)>, bool) {
        let mut out = Vec::new();
        let mut at = iova;
        for area in self.areas_in(iova, last) {
            if area.iova > at {
                break;
            }
            let end = area.last.min(last);
            out.push((area, at, end));
            if end == last {
                return (out, true);
            }
            at = end + 1;
        }
        (out, false)
    }

    /// The ranges `[start, last]` of the areas that follow each other without a gap from
    /// `iova` towards `last`, up to the first gap (`iopt_for_each_contig_area`): what a
    /// dirty read walks before it finds out the range is not wholly mapped.
    pub(crate) fn contig_ranges(&self, iova: u64, last: u64) -> Vec<(u64, u64)> {
        let (pieces, _) = self.contiguous(iova, last);
        pieces.into_iter().map(|(_, at, end)| (at, end)).collect()
    }

    /// Every area as `(iova, len)`, lowest first.
    pub(crate) fn area_ranges(&self) -> Vec<(u64, u64)> {
        self.areas.values().map(|a| (a.iova, a.len())).collect()
    }

    /// Add a domain (`iopt_table_add_domain`, §3.13): alignment, aperture reservation,
    /// then every area mapped in (pinning them if this is the first domain). Atomic.
    pub(crate) fn add_domain(
        &mut self,
        driver: &dyn IommuDriver,
        mem: &HostMem,
        hwpt: u32,
        dom: DomainHandle,
    ) -> Result<(), Errno> {
        let geometry = driver.domain_geometry(dom);
        let min_page = 1u64 << geometry.page_sizes.trailing_zeros().min(63);
        let align = self.required_alignment(self.large_pages, min_page);
        if align > PAGE {
            return Err(Errno::EINVAL);
        }
        if align != self.alignment {
            self.check_alignment(align)?;
        }
        if geometry.aperture_start != 0 {
            self.reserve(0, geometry.aperture_start - 1, Owner::Domain(hwpt))?;
        }
        if geometry.aperture_last != u64::MAX
            && let Err(e) = self.reserve(geometry.aperture_last + 1, u64::MAX, Owner::Domain(hwpt))
        {
            self.unreserve(Owner::Domain(hwpt));
            return Err(e);
        }
        // The domain's slot in the IOAS's list (xa_reserve).
        if let Err(e) = mem.fail_point() {
            self.unreserve(Owner::Domain(hwpt));
            return Err(e);
        }
        let first = self.domains.is_empty();
        let keys: Vec<u64> = self.areas.keys().copied().collect();
        for (i, key) in keys.iter().enumerate() {
            let result = match self.areas.remove(key) {
                Some(mut area) => {
                    let r = (if first {
                        Self::pin(mem, &mut area)
                    } else {
                        Ok(())
                    })
                    .and_then(|()| self.map_into(driver, dom, &area));
                    if r.is_err() && first {
                        Self::unpin(mem, &mut area);
                    }
                    self.areas.insert(*key, area);
                    r
                }
                None => Ok(()),
            };
            if let Err(e) = result {
                for done in &keys[..i] {
                    if let Some(area) = self.areas.get_mut(done) {
                        driver.unmap(dom, area.iova, area.len());
                        if first {
                            Self::unpin(mem, area);
                        }
                    }
                }
                self.unreserve(Owner::Domain(hwpt));
                return Err(e);
            }
        }
        self.domains.push(IoasDomain {
            hwpt,
            dom,
            min_page,
        });
        self.alignment = align;
        Ok(())
    }

    /// Remove a domain (`iopt_table_remove_domain`): unmap every area from it, unpin
    /// when it was the last, drop its aperture reservation, recompute the alignment.
    pub(crate) fn remove_domain(&mut self, driver: &dyn IommuDriver, mem: &HostMem, hwpt: u32) {
        let Some(pos) = self.domains.iter().position(|d| d.hwpt == hwpt) else {
            return;
        };
        let d = self.domains.swap_remove(pos);
        let last = self.domains.is_empty();
        for area in self.areas.values_mut() {
            driver.unmap(d.dom, area.iova, area.len());
            if last {
                Self::unpin(mem, area);
            }
        }
        self.unreserve(Owner::Domain(hwpt));
        self.alignment = self.required_alignment(self.large_pages, 1);
    }

    /// The holes of the reserved set over the whole 64-bit space (IOVA_RANGES).
    fn iova_ranges(&self) -> Vec<(u64, u64)> {
        let used = merge(self.reserved.iter().map(|r| (r.start, r.last)).collect());
        holes(&used, 0, u64::MAX)
    }

    /// Replace the allowed set (`iopt_set_allow_iova`): EADDRINUSE, and the old set
    /// kept, when a new range overlaps a reservation.
    fn set_allowed(&mut self, new: Vec<(u64, u64)>) -> Result<(), Errno> {
        if new.iter().any(|&a| self.intersects_reserved(a.0, a.1)) {
            return Err(Errno::EADDRINUSE);
        }
        self.allowed = new;
        self.allowed.sort_unstable();
        Ok(())
    }

    /// IOMMU_OPTION HUGE_PAGES set (§1.7).
    pub(crate) fn set_large_pages(&mut self, enable: bool) -> Result<(), Errno> {
        if enable {
            self.large_pages = true;
            self.alignment = self.required_alignment(true, 1);
            return Ok(());
        }
        if !self.large_pages {
            return Ok(());
        }
        if !self.domains.is_empty() && !self.areas.is_empty() {
            return Err(Errno::EINVAL);
        }
        let align = self.required_alignment(false, 1);
        self.check_alignment(align)?;
        self.large_pages = false;
        self.alignment = align;
        Ok(())
    }

    /// Large pages are enabled (HUGE_PAGES get).
    pub(crate) fn large_pages(&self) -> bool {
        self.large_pages
    }

    /// The IOVA alignment MAP and COPY require.
    pub(crate) fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Tear down for IOMMU_DESTROY or close: no domain can be left by then.
    pub(crate) fn destroy(mut self, driver: &dyn IommuDriver, mem: &HostMem) {
        self.unmap_all(driver, mem);
    }
}

/// Sort and merge overlapping or adjacent ranges.
fn merge(mut ranges: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    ranges.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for (s, l) in ranges {
        match out.last_mut() {
            Some(prev) if s <= prev.1.saturating_add(1) => prev.1 = prev.1.max(l),
            _ => out.push((s, l)),
        }
    }
    out
}

/// The maximal runs of `[start, last]` not covered by the merged ranges `used`.
fn holes(used: &[(u64, u64)], start: u64, last: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut at = start;
    for &(s, l) in used {
        if l < at {
            continue;
        }
        if s > last {
            break;
        }
        if s > at {
            out.push((at, s - 1));
        }
        match l.checked_add(1) {
            Some(next) if next <= last => at = next,
            _ => return out,
        }
    }
    out.push((at, last));
    out
}

/// READ/WRITE protection from MAP/COPY flags.
fn prot_of(flags: MapFlags) -> Prot {
    let mut prot = Prot::empty();
    prot.set(Prot::READ, flags.contains(MapFlags::READABLE));
    prot.set(Prot::WRITE, flags.contains(MapFlags::WRITEABLE));
    prot
}

impl Ictx {
    /// IOMMU_IOAS_ALLOC.
    pub(super) fn ioas_alloc_ioctl(&self, buf: &mut [u8], arg: u64) -> Result<(), Errno> {
        let mut cmd: iommu_ioas_alloc = decode(buf);
        if cmd.flags != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        let platform = self.platform()?;
        let mut st = self.lock();
        platform.mem.fail_point()?;
        let id = st.insert(ObjKind::Ioas(Ioas::default()));
        cmd.out_ioas_id = id;
        encode(buf, &cmd);
        if let Err(e) = Self::respond(buf, arg) {
            self.destroy_object(&mut st, platform.driver(), &platform.mem, id);
            return Err(e);
        }
        Ok(())
    }

    /// IOMMU_IOAS_IOVA_RANGES (§2.2): fills what fits, writes back the total, EMSGSIZE
    /// when the array was short.
    pub(super) fn ioas_iova_ranges_ioctl(&self, buf: &mut [u8], arg: u64) -> Result<(), Errno> {
        let mut cmd: iommu_ioas_iova_ranges = decode(buf);
        if cmd.__reserved != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        let (ranges, alignment) = {
            let st = self.lock();
            let ioas = st.ioas(cmd.ioas_id)?;
            (ioas.iova_ranges(), ioas.alignment)
        };
        let max = cmd.num_iovas as usize;
        for (i, &(start, last)) in ranges.iter().enumerate().take(max) {
            let elem = iommu_iova_range { start, last };
            copy_to_user(
                cmd.allowed_iovas.wrapping_add(16 * i as u64),
                as_bytes(&elem),
            )?;
        }
        cmd.num_iovas = ranges.len() as u32;
        cmd.out_iova_alignment = alignment;
        encode(buf, &cmd);
        Self::respond(buf, arg)?;
        if ranges.len() > max {
            return Err(Errno::EMSGSIZE);
        }
        Ok(())
    }

    /// IOMMU_IOAS_ALLOW_IOVAS (§2.3): replace the allowed set atomically.
    pub(super) fn ioas_allow_iovas_ioctl(&self, buf: &mut [u8], _arg: u64) -> Result<(), Errno> {
        let cmd: iommu_ioas_allow_iovas = decode(buf);
        if cmd.__reserved != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        let mut st = self.lock();
        st.ioas(cmd.ioas_id)?;
        let mut new: Vec<(u64, u64)> = Vec::new();
        for i in 0..cmd.num_iovas as u64 {
            let elem: iommu_iova_range = read_user(cmd.allowed_iovas.wrapping_add(16 * i))?;
            if elem.start >= elem.last || new.iter().any(|&a| overlaps(a, (elem.start, elem.last)))
            {
                return Err(Errno::EINVAL);
            }
            new.push((elem.start, elem.last));
        }
        st.ioas_mut(cmd.ioas_id)?.set_allowed(new)
    }

    /// IOMMU_IOAS_MAP (§2.4).
    pub(super) fn ioas_map_ioctl(&self, buf: &mut [u8], arg: u64) -> Result<(), Errno> {
        let mut cmd: iommu_ioas_map = decode(buf);
        let flags = MapFlags::from_bits(cmd.flags)
            .filter(|_| cmd.__reserved == 0)
            .ok_or(Errno::EOPNOTSUPP)?;
        if cmd.iova == u64::MAX || cmd.length == u64::MAX {
            return Err(Errno::EOVERFLOW);
        }
        if !flags.intersects(MapFlags::READABLE | MapFlags::WRITEABLE) {
            return Err(Errno::EINVAL);
        }
        let platform = self.platform()?;
        let mut st = self.lock();
        let ioas = st.ioas_mut(cmd.ioas_id)?;
        let pieces = [new_pages(
            cmd.user_va,
            cmd.length,
            flags.contains(MapFlags::WRITEABLE),
        )?];
        // The pages object's allocation.
        platform.mem.fail_point()?;
        let fixed = flags.contains(MapFlags::FIXED_IOVA).then_some(cmd.iova);
        cmd.iova = ioas.map_pieces(
            platform.driver(),
            &platform.mem,
            &pieces,
            fixed,
            prot_of(flags),
        )?;
        drop(st);
        encode(buf, &cmd);
        // A failed write-back leaves the mapping in place, as in Linux.
        Self::respond(buf, arg)
    }

    /// IOMMU_IOAS_COPY (§2.5).
    pub(super) fn ioas_copy_ioctl(&self, buf: &mut [u8], arg: u64) -> Result<(), Errno> {
        let mut cmd: iommu_ioas_copy = decode(buf);
        let flags = MapFlags::from_bits(cmd.flags).ok_or(Errno::EOPNOTSUPP)?;
        if cmd.length == u64::MAX || cmd.src_iova == u64::MAX || cmd.dst_iova == u64::MAX {
            return Err(Errno::EOVERFLOW);
        }
        if !flags.intersects(MapFlags::READABLE | MapFlags::WRITEABLE) {
            return Err(Errno::EINVAL);
        }
        let platform = self.platform()?;
        let mut st = self.lock();
        let pieces = st
            .ioas(cmd.src_ioas_id)?
            .get_pages(cmd.src_iova, cmd.length)?;
        let dst = st.ioas_mut(cmd.dst_ioas_id)?;
        let fixed = flags.contains(MapFlags::FIXED_IOVA).then_some(cmd.dst_iova);
        cmd.dst_iova = dst.map_pieces(
            platform.driver(),
            &platform.mem,
            &pieces,
            fixed,
            prot_of(flags),
        )?;
        drop(st);
        encode(buf, &cmd);
        Self::respond(buf, arg)
    }

    /// IOMMU_IOAS_UNMAP (§2.6).
    pub(super) fn ioas_unmap_ioctl(&self, buf: &mut [u8], arg: u64) -> Result<(), Errno> {
        let mut cmd: iommu_ioas_unmap = decode(buf);
        let platform = self.platform()?;
        let mut st = self.lock();
        let ioas = st.ioas_mut(cmd.ioas_id)?;
        let removed = if cmd.iova == 0 && cmd.length == u64::MAX {
            ioas.unmap_all(platform.driver(), &platform.mem)
        } else {
            if cmd.iova == u64::MAX || cmd.length == u64::MAX {
                return Err(Errno::EOVERFLOW);
            }
            if cmd.length == 0 {
                return Err(Errno::EINVAL);
            }
            let last = cmd
                .iova
                .checked_add(cmd.length - 1)
                .ok_or(Errno::EOVERFLOW)?;
            match ioas.unmap_range(platform.driver(), &platform.mem, cmd.iova, last)? {
                0 => return Err(Errno::ENOENT),
                n => n,
            }
        };
        drop(st);
        cmd.length = removed;
        encode(buf, &cmd);
        Self::respond(buf, arg)
    }
}

/// `iopt_alloc_pages` (§3.2): a pages object for `[uptr, uptr + length)`; user memory is
/// not looked at yet.
fn new_pages(uptr: u64, length: u64, writable: bool) -> Result<Piece, Errno> {
    if length == 0 || length > u64::MAX - PAGE {
        return Err(Errno::EINVAL);
    }
    match uptr.checked_add(length) {
        Some(end) if end != 0 => {}
        _ => return Err(Errno::EOVERFLOW),
    }
    let aligned = uptr & !(PAGE - 1);
    Ok(Piece {
        pages: Arc::new(Pages {
            uptr: aligned,
            writable,
        }),
        start_byte: uptr - aligned,
        length,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holes_of_nothing_is_the_whole_space() {
        assert_eq!(holes(&[], 0, u64::MAX), vec![(0, u64::MAX)]);
    }

    #[test]
    fn holes_skip_the_msi_window_and_aperture() {
        let used = merge(vec![(0xFEE0_0000, 0xFEEF_FFFF), (1 << 48, u64::MAX)]);
        assert_eq!(
            holes(&used, 0, u64::MAX),
            vec![(0, 0xFEDF_FFFF), (0xFEF0_0000, (1 << 48) - 1)]
        );
    }

    #[test]
    fn merge_joins_adjacent_and_overlapping_ranges() {
        assert_eq!(
            merge(vec![(10, 20), (0, 9), (15, 30), (40, 50)]),
            vec![(0, 30), (40, 50)]
        );
    }

    #[test]
    fn auto_iova_skips_the_first_page_and_aligns_to_the_length() {
        let ioas = Ioas::default();
        assert_eq!(ioas.alloc_iova(0x7f00_0000_0000, 0x4000), Ok(0x4000));
    }

    #[test]
    fn auto_iova_keeps_the_user_page_offset() {
        let ioas = Ioas::default();
        assert_eq!(ioas.alloc_iova(0x7f00_0000_0010, 0x10), Ok(0x1010));
    }

    #[test]
    fn auto_iova_alignment_is_capped_at_2m() {
        let ioas = Ioas::default();
        assert_eq!(ioas.alloc_iova(0, 1 << 30), Ok(2 << 20));
    }

    #[test]
    fn pages_past_the_end_of_the_address_space_overflow() {
        assert_eq!(
            new_pages(u64::MAX - 0xFFF, 0x1000, true).unwrap_err(),
            Errno::EOVERFLOW
        );
        assert_eq!(new_pages(0x1000, 0, true).unwrap_err(), Errno::EINVAL);
    }
}
