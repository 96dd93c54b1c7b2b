//! The hit path allocates nothing (ARCHITECTURE §6): a counting global allocator watches
//! translations served from the caches (front cache and IOTLB) after one warm-up
//! translation, which fills the caches and sets up the thread's front cache.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use common::{Nested, SID};
use vtd_model::UnitConfig;
use vtd_model::build::Leaf;
use vtd_model::request::Request;
use vtd_spec::addr::PageSize;

/// Counts allocations made by the current thread.
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded unchanged to the system allocator; the counter is a
// thread-local Cell, which does not allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

const IOVA: u64 = 0x4000_0000;

/// Allocations made by `n` translations of `req` after one warm-up.
fn allocations_on_hits(n: &Nested, req: &Request) -> u64 {
    n.unit.translate(req).expect("warm-up translation");
    let before = allocations();
    for _ in 0..1000 {
        let t = n.unit.translate(req).expect("hit");
        std::hint::black_box(t);
    }
    allocations() - before
}

fn nested_with_caches() -> Nested {
    let n = Nested::with_config(UnitConfig::default());
    n.map(IOVA, 0x20_0000, PageSize::Size4K, Leaf::read_write());
    n.map(
        IOVA + 0x1000,
        0x20_1000,
        PageSize::Size4K,
        Leaf::read_write(),
    );
    n
}

#[test]
fn nested_reads_served_from_the_caches_allocate_nothing() {
    let n = nested_with_caches();
    assert_eq!(allocations_on_hits(&n, &Request::read(SID, IOVA)), 0);
}

#[test]
fn nested_writes_served_from_the_caches_allocate_nothing() {
    let n = nested_with_caches();
    assert_eq!(
        allocations_on_hits(&n, &Request::write(SID, IOVA + 0x1000)),
        0
    );
}

#[test]
fn alternating_pages_served_from_the_iotlb_allocate_nothing() {
    let n = nested_with_caches();
    let (a, b) = (Request::read(SID, IOVA), Request::read(SID, IOVA + 0x1000));
    n.unit.translate(&a).unwrap();
    n.unit.translate(&b).unwrap();
    let before = allocations();
    for _ in 0..500 {
        std::hint::black_box(n.unit.translate(&a).unwrap());
        std::hint::black_box(n.unit.translate(&b).unwrap());
    }
    assert_eq!(allocations() - before, 0);
}
