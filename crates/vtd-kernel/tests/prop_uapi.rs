//! Property tests of the simulated kernel's uAPI. The project brief counts every uAPI
//! struct as input: bad input gets an errno and never a panic, undefined behaviour or a
//! byte outside the mapping. Five properties, one behaviour each:
//!
//! 1. `random_calls_answer_ok_or_an_errno_linux_uses_for_that_call`: random sequences of
//!    iommufd and VFIO cdev calls with arbitrary field values, sizes and pointers never
//!    panic, and each call answers Ok or an errno from the set Linux 6.12 returns for that
//!    ioctl (KS §1–7): the handler's own errnos, plus EINVAL only for a size below the
//!    minimum, E2BIG only for a size past the kernel struct, EFAULT only for a bad
//!    argument pointer or for the calls that follow user pointers.
//! 2. `no_call_allocates_a_length_user_space_chose`: whatever sizes and lengths the same
//!    random calls carry (up to 4 GiB), no call makes a single allocation over 1 MiB.
//!    Linux walks user memory in place (check_zeroed_user, clear_user); an allocation
//!    sized by user space aborts the process wherever it fails.
//! 3. `after_random_calls_everything_tears_down_and_a_known_good_flow_still_works`: the
//!    kernel is never wedged. After such a sequence, detaching every device and destroying
//!    every object in dependency order succeeds (or finds the id already gone), no object
//!    or pin is left, and IOAS_ALLOC → MAP → attach → DMA → UNMAP → destroy works.
//! 4. `dma_reaches_exactly_the_user_bytes_the_mappings_name`: a shadow model of what the
//!    successful IOAS_MAP/UNMAP/COPY calls mapped, on an IOAS two devices attach to
//!    through an automatic or an explicit paging HWPT. Device reads and writes at random
//!    IOVAs, page-crossing ones included, see or change exactly the user bytes the model
//!    says; a request the model refuses (unmapped, not writeable, not readable, device
//!    detached) is an IOMMU fault, and no other byte of the user memory ever changes. A
//!    third of the cases also map a 2 MiB window the domain maps with one large leaf.
//! 5. `nested_dma_reaches_exactly_the_user_bytes_both_stages_name`: the same through a
//!    nested HWPT. A nest parent on an IOAS maps random GPA ranges to user pages as the
//!    stage 2 (a read-only range is EINVAL, at IOAS_MAP once the parent exists or at the
//!    parent's HWPT_ALLOC before: KS §4.1, the SPR17 erratum); the guest's 4-level
//!    first-stage table lives in user pages that stage 2 maps too, and maps random IOVAs
//!    to GPAs stage 2 maps or not, some read-only; `nic0` and `ssd0` attach to a nested
//!    HWPT (IOMMU_HWPT_DATA_VTD_S1) over it. The shadow model composes IOVA → GPA (with
//!    stage 1's R/W) and GPA → user byte (with stage 2's rights): every DMA moves exactly
//!    the bytes of that composition or is an IOMMU fault at the first piece either stage
//!    refuses, and no other user byte changes but the stage-1 A/D bits: A is set in every
//!    entry of a walk that went through and D in the leaf of every write that did, while
//!    the table words change in nothing else, never in a non-present entry, and D only
//!    in a writeable leaf. Now and then the guest remaps or clears a stage-1 leaf and
//!    invalidates it (IOMMU_HWPT_INVALIDATE: the page, the page leaf-only, or
//!    everything) before the next DMA.
//!
//! Every pointer a call gets is NULL, a low unmapped address, a non-canonical address, a
//! read-only page, or test-owned memory with a PROT_NONE page right after the bytes the
//! call is about ([`prop_support::Guarded`]): the simulation really reads and writes user
//! memory, so an arbitrary length must end in EFAULT, never in another live buffer of
//! this process. For the same reason no DMA happens in properties 1–3 except through the
//! one page the known-good flow maps.
//!
//! `PROPTEST_CASES` overrides the case counts.

mod alloc_probe;
mod common;
mod prop_support;
mod uapi_support;

use std::collections::BTreeMap;
use std::ops::Range;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::{FileFailurePersistence, TestCaseError};

use alloc_probe::largest_allocation;
use prop_support::{Bytes, Guarded, PAGE};
use uapi_support::{Env, layout, nr, raw_ptr, two_units, unit_39bit, unit_without_ssads};
use vtd_iommufd::uapi::{HwptAllocFlags, MapFlags};
use vtd_iommufd::{Errno, IoctlFd, VfioDevice, VtdS1, VtdS1Invalidate};
use vtd_kernel::platform::page_chunks;
use vtd_kernel::{DmaError, PlatformDesc, VfioDeviceFile};
use vtd_model::PhysMem;
use vtd_model::build::{Format, Leaf, PageTable};
use vtd_model::mem::SparseMem;
use vtd_model::request::Access;
use vtd_spec::addr::PageSize;
use vtd_spec::first_stage::FsEntry;

/// The largest single allocation a call may make: 128 times what the calls here need
/// (a few KiB, for reading /proc/self/maps when pinning), far below any length they
/// carry.
const ALLOC_LIMIT: usize = 1 << 20;

/// Calls per generated sequence, at most.
const MAX_STEPS: usize = 40;

fn config() -> ProptestConfig {
    let mut config = ProptestConfig::with_cases(48);
    // tests/prop_uapi.proptest-regressions, committed.
    config.failure_persistence = Some(Box::new(FileFailurePersistence::WithSource(
        "proptest-regressions",
    )));
    if let Some(n) = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        config.cases = n;
    }
    config
}

const PAGE64: u64 = PAGE as u64;
/// A page nothing maps (below `vm.mmap_min_addr`).
const LOW_ADDR: u64 = 0x1000;
/// Not canonical with 4- or 5-level CPU paging.
const NON_CANONICAL: u64 = 0xdead_0000_0000_0000;
/// Pages of user memory properties 1–3 map; `BACKING_PAGES` itself is the guard page.
const BACKING_PAGES: usize = 16;

const RW: MapFlags = MapFlags::READABLE.union(MapFlags::WRITEABLE);

// ---------------------------------------------------------------------------------------
// Which errnos a call may answer.

/// The errnos Linux 6.12's handler of iommufd `request` returns (KS §1–7 and
/// drivers/iommu/iommufd), without the dispatcher's size and copy rules, which
/// [`errno_allowed`] adds. ENOMEM is left out: nothing here injects allocation failures,
/// so an ENOMEM would be the simulation's own mistake.
fn iommufd_errnos(request: u64) -> Option<&'static [Errno]> {
    use Errno as E;
    Some(match request {
        // Unknown id; still referenced (KS §1.4).
        nr::IOMMU_DESTROY => &[E::ENOENT, E::EBUSY],
        // Unknown flags.
        nr::IOMMU_IOAS_ALLOC => &[E::EOPNOTSUPP],
        // __reserved; the IOAS; reading the array; an empty or overlapping range; a
        // range over a reservation.
        nr::IOMMU_IOAS_ALLOW_IOVAS => &[
            E::EOPNOTSUPP,
            E::ENOENT,
            E::EFAULT,
            E::EINVAL,
            E::EADDRINUSE,
        ],
        // Flags; U64_MAX fields and sums; bad lengths and alignment; the IOASes or a gap in
        // the source; a used destination; no free IOVA; a writeable copy of pages mapped
        // read-only (EPERM); pinning a bad user range.
        nr::IOMMU_IOAS_COPY => &[
            E::EOPNOTSUPP,
            E::EOVERFLOW,
            E::EINVAL,
            E::ENOENT,
            E::EEXIST,
            E::ENOSPC,
            E::EPERM,
            E::EFAULT,
        ],
        // __reserved; the IOAS; writing the array; a short array.
        nr::IOMMU_IOAS_IOVA_RANGES => &[E::EOPNOTSUPP, E::ENOENT, E::EFAULT, E::EMSGSIZE],
        // Flags or __reserved; U64_MAX fields and sums; a bad length, alignment, neither
        // READABLE nor WRITEABLE or a reserved IOVA; the IOAS; a used IOVA; no free IOVA;
        // pinning a bad user range.
        nr::IOMMU_IOAS_MAP => &[
            E::EOPNOTSUPP,
            E::EOVERFLOW,
            E::EINVAL,
            E::ENOENT,
            E::EEXIST,
            E::ENOSPC,
            E::EFAULT,
        ],
        // The IOAS or an area sticking out; U64_MAX; length 0.
        nr::IOMMU_IOAS_UNMAP => &[E::ENOENT, E::EOVERFLOW, E::EINVAL],
        // Unknown option or op; the IOAS; RLIMIT_MODE with objects; a value above 1;
        // areas a page size no longer fits (iopt_disable_large_pages).
        nr::IOMMU_OPTION => &[E::EOPNOTSUPP, E::ENOENT, E::EBUSY, E::EINVAL, E::EADDRINUSE],
        // __reserved or op; the IOAS; GET without a compat IOAS.
        nr::IOMMU_VFIO_IOAS => &[E::EOPNOTSUPP, E::ENOENT, E::ENODEV],
        // KS §3.5, plus populating from the IOAS: pinning (EFAULT), alignment and
        // aperture (EADDRINUSE), read-only areas in a nest parent (EINVAL).
        nr::IOMMU_HWPT_ALLOC => &[
            E::EOPNOTSUPP,
            E::EINVAL,
            E::ENOENT,
            E::EFAULT,
            E::EADDRINUSE,
        ],
        // KS §2.
        nr::IOMMU_GET_HW_INFO => &[E::EOPNOTSUPP, E::ENOENT, E::EFAULT],
        // KS §7: flags; not a paging HWPT; no dirty ops.
        nr::IOMMU_HWPT_SET_DIRTY_TRACKING => &[E::EOPNOTSUPP, E::ENOENT],
        // KS §7: flags; id; overflow; alignment and page size. Walk errors are not
        // reported in 6.12, so no EFAULT for the bitmap.
        nr::IOMMU_HWPT_GET_DIRTY_BITMAP => &[E::EOPNOTSUPP, E::ENOENT, E::EOVERFLOW, E::EINVAL],
        // KS §6.1–6.2.
        nr::IOMMU_HWPT_INVALIDATE => &[E::EOPNOTSUPP, E::EINVAL, E::ENOENT, E::EFAULT],
        nr::IOMMU_FAULT_QUEUE_ALLOC => &[E::EOPNOTSUPP],
        _ => return None,
    })
}

/// `(minimum, 6.12 kernel)` size of iommufd `request`.
fn iommufd_sizes(request: u64) -> Option<(usize, usize)> {
    layout::IOCTLS
        .iter()
        .find(|(_, r, _, _)| *r == request)
        .map(|&(_, _, min, kernel)| (min, kernel))
}

/// The errnos of a VFIO cdev `request` (KS §1.1, vfio/device_cdev.c), besides EFAULT for a
/// bad argument pointer.
fn vfio_errnos(request: u64) -> &'static [Errno] {
    use Errno as E;
    match request {
        // Short argsz, flags, negative fd, bound already; not an open fd; not an
        // iommufd; no interrupt isolation.
        nr::VFIO_DEVICE_BIND_IOMMUFD => &[E::EINVAL, E::EBADF, E::EBADFD, E::EPERM],
        // KS §5.1–5.2 and core attach: unbound, argsz, flags, pt type, agaw, domain
        // compatibility; the id; reserved regions; agaw; PASID entry busy; no DID left;
        // pinning the IOAS for an automatic domain.
        nr::VFIO_DEVICE_ATTACH_IOMMUFD_PT => &[
            E::EINVAL,
            E::ENOENT,
            E::EADDRINUSE,
            E::ENODEV,
            E::EBUSY,
            E::ENOSPC,
            E::EFAULT,
        ],
        nr::VFIO_DEVICE_DETACH_IOMMUFD_PT => &[E::EINVAL],
        // Unbound cdev or short argsz (EINVAL); anything vfio-pci does not know.
        _ => &[E::EINVAL, E::ENOTTY],
    }
}

/// The calls that write their struct back (iommufd_ucmd_respond, or copy_to_user of an
/// output field): only these can be EFAULT for a read-only argument. DESTROY,
/// ALLOW_IOVAS, the dirty-tracking calls and VFIO detach only read it; IOMMU_VFIO_IOAS
/// writes back for GET only, so it is in.
fn writes_back(request: u64) -> bool {
    !matches!(
        request,
        nr::IOMMU_DESTROY
            | nr::IOMMU_IOAS_ALLOW_IOVAS
            | nr::IOMMU_HWPT_SET_DIRTY_TRACKING
            | nr::IOMMU_HWPT_GET_DIRTY_BITMAP
            | nr::VFIO_DEVICE_DETACH_IOMMUFD_PT
    )
}

/// How one call was sent, for judging its errno.
struct Sent {
    name: String,
    request: u64,
    ptr: Ptr,
    /// The `size` field (iommufd) or 0 (VFIO).
    size: u64,
    /// `(minimum, kernel)` struct size for iommufd calls.
    sizes: Option<(usize, usize)>,
    /// Bytes of valid memory behind the argument pointer.
    buf_len: usize,
}

/// Ok, or an errno of `handler` or of the dispatcher rules that apply to how the call was
/// sent (KS §1.2).
fn errno_allowed(
    result: Result<i32, Errno>,
    handler: &[Errno],
    sent: &Sent,
) -> Result<(), TestCaseError> {
    let Err(e) = result else {
        return Ok(());
    };
    let by_size = sent.sizes.is_some_and(|(min, kernel)| {
        (e == Errno::EINVAL && sent.size < min as u64)
            || (e == Errno::E2BIG && sent.size > kernel as u64)
    });
    // The argument itself: unbacked, read-only for a call that writes it back, or a size
    // reaching past it into the guard page.
    let bad_arg = match sent.ptr {
        Ptr::Valid => false,
        Ptr::ReadOnly => writes_back(sent.request),
        Ptr::Null | Ptr::Low | Ptr::NonCanonical => true,
    };
    let by_pointer = e == Errno::EFAULT && (bad_arg || sent.size > sent.buf_len as u64);
    prop_assert!(
        handler.contains(&e) || by_size || by_pointer,
        "{}: {e:?} is not an errno Linux answers here (size {}, argument {:?})",
        sent.name,
        sent.size,
        sent.ptr
    );
    Ok(())
}

/// The dispatcher reads `size` before anything else (KS §1.2 step 2), so an iommufd
/// ioctl of the table through an unbacked pointer is EFAULT and nothing else.
fn unbacked_arg_is_efault(result: Result<i32, Errno>, sent: &Sent) -> Result<(), TestCaseError> {
    if matches!(sent.ptr, Ptr::Null | Ptr::Low | Ptr::NonCanonical) {
        prop_assert_eq!(
            result,
            Err(Errno::EFAULT),
            "{} through an unbacked pointer ({:?})",
            &sent.name,
            sent.ptr
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// What the generated calls are made of.

/// Where a pointer points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ptr {
    /// Test-owned guarded memory holding what the call needs.
    Valid,
    Null,
    Low,
    NonCanonical,
    /// A read-only page holding the same bytes: reads work, writes are EFAULT.
    ReadOnly,
}

impl Ptr {
    /// The address of a pointer that is not backed by anything.
    fn bad_addr(self) -> u64 {
        match self {
            Ptr::Low => LOW_ADDR,
            Ptr::NonCanonical => NON_CANONICAL,
            _ => 0,
        }
    }
}

fn ptr() -> impl Strategy<Value = Ptr> {
    prop_oneof![
        12 => Just(Ptr::Valid),
        1 => Just(Ptr::Null),
        1 => Just(Ptr::Low),
        1 => Just(Ptr::NonCanonical),
        2 => Just(Ptr::ReadOnly),
    ]
}

/// A destination pointer: `Valid` points `off` bytes into the data buffer, so writes
/// that run on reach its guard page.
#[derive(Clone, Copy, Debug)]
struct Dest {
    ptr: Ptr,
    off: u16,
}

fn dest() -> impl Strategy<Value = Dest> {
    (ptr(), prop_oneof![3 => Just(0u16), 1 => any::<u16>()])
        .prop_map(|(ptr, off)| Dest { ptr, off })
}

/// The `size` field of an iommufd argument.
#[derive(Clone, Copy, Debug)]
enum Size {
    /// The 6.12 struct size.
    Kernel,
    /// The minimum size (fields past it read as zero).
    Min,
    /// Below the minimum: `n % min`.
    Below(u8),
    /// The struct plus `1 + n % 16` zero bytes.
    ZeroTail(u8),
    /// The struct plus `1 + n % 16` bytes, one of them non-zero.
    NonZeroTail(u8, u8),
    /// Anything, usually past the end of the buffer.
    Any(u32),
}

fn size() -> impl Strategy<Value = Size> {
    prop_oneof![
        16 => Just(Size::Kernel),
        1 => Just(Size::Min),
        1 => any::<u8>().prop_map(Size::Below),
        1 => any::<u8>().prop_map(Size::ZeroTail),
        1 => (any::<u8>(), any::<u8>()).prop_map(|(n, b)| Size::NonZeroTail(n, b)),
        1 => any::<u32>().prop_map(Size::Any),
    ]
}

/// An object id: one the sequence made (of the kind the field wants, or any), 0, or
/// anything.
#[derive(Clone, Copy, Debug)]
enum Id {
    Typed(Index),
    Made(Index),
    Zero,
    Any(u32),
}

fn id() -> impl Strategy<Value = Id> {
    prop_oneof![
        12 => any::<Index>().prop_map(Id::Typed),
        3 => any::<Index>().prop_map(Id::Made),
        1 => Just(Id::Zero),
        1 => any::<u32>().prop_map(Id::Any),
    ]
}

/// What an id was made as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Ioas,
    Device,
    Paging,
    Parent,
    Auto,
    Nested,
    Fault,
}

const IOAS: &[Kind] = &[Kind::Ioas];
const DEVICE: &[Kind] = &[Kind::Device];
const PAGING: &[Kind] = &[Kind::Paging, Kind::Parent, Kind::Auto];
const PARENT: &[Kind] = &[Kind::Parent];
const NESTED: &[Kind] = &[Kind::Nested];
const FAULT: &[Kind] = &[Kind::Fault];
const ATTACHABLE: &[Kind] = &[
    Kind::Ioas,
    Kind::Paging,
    Kind::Parent,
    Kind::Auto,
    Kind::Nested,
];
const ANY_KIND: &[Kind] = &[
    Kind::Ioas,
    Kind::Device,
    Kind::Paging,
    Kind::Parent,
    Kind::Auto,
    Kind::Nested,
    Kind::Fault,
];

/// `flags` with the known bits `mask` mostly, anything sometimes.
fn flags(mask: u32) -> impl Strategy<Value = u32> {
    prop_oneof![8 => 0..=mask, 1 => any::<u32>()]
}

/// A reserved field: 0 mostly.
fn reserved() -> impl Strategy<Value = u32> {
    prop_oneof![9 => Just(0u32), 1 => any::<u32>()]
}

fn iova() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => (0u64..16).prop_map(|p| p * PAGE64),
        1 => Just(0xFEE0_0000u64),
        1 => Just((1u64 << 48) - PAGE64),
        1 => Just(u64::MAX),
        1 => 0u64..0x4_0000,
        1 => any::<u64>(),
    ]
}

fn length() -> impl Strategy<Value = u64> {
    prop_oneof![
        6 => (1u64..=8).prop_map(|p| p * PAGE64),
        1 => Just(0u64),
        1 => 1u64..0x3000,
        1 => Just(u64::MAX),
        1 => any::<u64>(),
    ]
}

/// The user address of IOAS_MAP.
#[derive(Clone, Copy, Debug)]
enum Va {
    /// Page `page` (up to the guard page) of the backing buffer, plus `offset`.
    Backing {
        page: u8,
        offset: u16,
    },
    /// A read-only page.
    ReadOnly,
    Bad(Ptr),
}

fn va() -> impl Strategy<Value = Va> {
    let backing = (
        0..=BACKING_PAGES as u8,
        prop_oneof![6 => Just(0u16), 1 => 0u16..4096],
    )
        .prop_map(|(page, offset)| Va::Backing { page, offset });
    let bad = select(&[Ptr::Null, Ptr::Low, Ptr::NonCanonical][..]).prop_map(Va::Bad);
    prop_oneof![10 => backing, 1 => Just(Va::ReadOnly), 1 => bad]
}

/// `usual` mostly, one of `edges` sometimes, anything now and then.
fn mostly_u32(usual: u32, edges: &'static [u32]) -> impl Strategy<Value = u32> {
    prop_oneof![10 => Just(usual), 2 => select(edges), 1 => any::<u32>()]
}

/// One of `values`, or anything now and then.
fn one_of_u64(values: &'static [u64]) -> impl Strategy<Value = u64> {
    prop_oneof![4 => select(values), 1 => any::<u64>()]
}

/// A page-aligned address below 16 MiB mostly.
fn page_addr() -> impl Strategy<Value = u64> {
    prop_oneof![4 => (0u64..0x1000).prop_map(|p| p << 12), 1 => any::<u64>()]
}

/// `struct iommu_hwpt_vtd_s1` with arbitrary fields.
#[derive(Clone, Copy, Debug)]
struct S1 {
    flags: u64,
    pgtbl_addr: u64,
    addr_width: u32,
    reserved: u32,
}

fn s1() -> impl Strategy<Value = S1> {
    (
        prop_oneof![4 => 0u64..8, 1 => any::<u64>()],
        page_addr(),
        mostly_u32(48, &[57, 39, 0]),
        reserved(),
    )
        .prop_map(|(flags, pgtbl_addr, addr_width, reserved)| S1 {
            flags,
            pgtbl_addr,
            addr_width,
            reserved,
        })
}

/// `struct iommu_hwpt_vtd_s1_invalidate` with arbitrary fields.
#[derive(Clone, Copy, Debug)]
struct InvEntry {
    addr: u64,
    npages: u64,
    flags: u32,
    reserved: u32,
}

fn inv_entry() -> impl Strategy<Value = InvEntry> {
    (
        page_addr(),
        prop_oneof![4 => 1u64..1024, 1 => one_of_u64(&[0, 1, u64::MAX])],
        prop_oneof![4 => 0u32..2, 1 => any::<u32>()],
        reserved(),
    )
        .prop_map(|(addr, npages, flags, reserved)| InvEntry {
            addr,
            npages,
            flags,
            reserved,
        })
}

/// The `iommufd` field of VFIO_DEVICE_BIND_IOMMUFD.
#[derive(Clone, Copy, Debug)]
enum FdSel {
    Iommufd,
    /// The descriptor of a VFIO file or fault queue.
    OtherFile(Index),
    Any(i32),
}

#[derive(Clone, Debug)]
struct HwptAlloc {
    /// Aimed at a nested HWPT (the pt id is drawn from nest parents) rather than a paging
    /// one (drawn from IOASes).
    nested: bool,
    flags: u32,
    dev: Id,
    pt: Id,
    reserved: u32,
    data_type: u32,
    data_len: u32,
    s1: S1,
    src: Ptr,
    fault: Id,
    reserved2: u32,
}

#[derive(Clone, Debug)]
struct Invalidate {
    hwpt: Id,
    data_type: u32,
    entry_len: u32,
    entries: Vec<InvEntry>,
    /// `entry_num`, if not the number of entries.
    num: Option<u32>,
    src: Ptr,
    reserved: u32,
}

#[derive(Clone, Debug)]
enum Call {
    IoasAlloc {
        flags: u32,
    },
    IoasMap {
        ioas: Id,
        flags: u32,
        reserved: u32,
        va: Va,
        length: u64,
        iova: u64,
    },
    IoasUnmap {
        ioas: Id,
        iova: u64,
        length: u64,
    },
    IoasCopy {
        dst: Id,
        src: Id,
        flags: u32,
        length: u64,
        dst_iova: u64,
        src_iova: u64,
    },
    IovaRanges {
        ioas: Id,
        num: u32,
        reserved: u32,
        out: Dest,
    },
    AllowIovas {
        ioas: Id,
        ranges: Vec<(u64, u64)>,
        num: Option<u32>,
        reserved: u32,
        src: Ptr,
    },
    HwptAlloc(HwptAlloc),
    Invalidate(Invalidate),
    HwInfo {
        flags: u32,
        dev: Id,
        data_len: u32,
        out: Dest,
        max_pasid_log2: u8,
        reserved: u8,
    },
    SetDirty {
        flags: u32,
        hwpt: Id,
        reserved: u32,
    },
    GetDirty {
        hwpt: Id,
        flags: u32,
        reserved: u32,
        iova: u64,
        length: u64,
        page_size: u64,
        out: Dest,
    },
    Destroy {
        id: Id,
    },
    Option {
        option_id: u32,
        op: u16,
        reserved: u16,
        object: Id,
        val64: u64,
    },
    VfioIoas {
        ioas: Id,
        op: u16,
        reserved: u16,
    },
    FaultAlloc {
        flags: u32,
    },
    Bind {
        dev: Index,
        argsz: u32,
        flags: u32,
        fd: FdSel,
    },
    Attach {
        dev: Index,
        argsz: u32,
        flags: u32,
        pt: Id,
    },
    Detach {
        dev: Index,
        argsz: u32,
        flags: u32,
    },
    /// Close the device's VFIO file (unbinding it) and open it again.
    Reopen {
        dev: Index,
    },
    /// Any request number, on the iommufd or a device file, with a zeroed struct.
    Random {
        vfio: Option<Index>,
        request: u64,
    },
}

fn hwpt_alloc() -> impl Strategy<Value = Call> {
    let parent = HwptAllocFlags::NEST_PARENT.bits();
    let dirty = HwptAllocFlags::DIRTY_TRACKING.bits();
    let fault_id_valid = HwptAllocFlags::FAULT_ID_VALID.bits();
    let paging_flags = prop_oneof![
        3 => Just(parent),
        2 => Just(parent | dirty),
        1 => Just(dirty),
        3 => flags(7),
    ];
    // A paging HWPT takes no data: (type, len) is (NONE, 0) mostly.
    let paging_data = prop_oneof![
        9 => Just((0u32, 0u32)),
        1 => Just((1u32, 24u32)),
        1 => (any::<u32>(), any::<u32>()),
    ];
    /// flags, dev, pt, reserved; then (data_type, data_len), s1, src, fault, reserved2.
    type Drawn = ((u32, Id, Id, u32), ((u32, u32), S1, Ptr, Id, u32));
    /// The struct from its drawn fields, aimed at a nested HWPT or a paging one.
    fn build(nested: bool) -> impl Fn(Drawn) -> HwptAlloc {
        move |((flags, dev, pt, reserved), ((data_type, data_len), s1, src, fault, reserved2))| {
            HwptAlloc {
                nested,
                flags,
                dev,
                pt,
                reserved,
                data_type,
                data_len,
                s1,
                src,
                fault,
                reserved2,
            }
        }
    }
    let paging = (
        (paging_flags, id(), id(), reserved()),
        (paging_data, s1(), ptr(), id(), reserved()),
    )
        .prop_map(build(false));
    let nested_flags = prop_oneof![8 => Just(0u32), 2 => Just(fault_id_valid), 1 => any::<u32>()];
    let nested_data = (mostly_u32(1, &[0, 2]), mostly_u32(24, &[0, 23, 25]));
    let nested = (
        (nested_flags, id(), id(), reserved()),
        (nested_data, s1(), ptr(), id(), reserved()),
    )
        .prop_map(build(true));
    prop_oneof![paging, nested].prop_map(Call::HwptAlloc)
}

fn invalidate() -> impl Strategy<Value = Call> {
    let num = prop_oneof![8 => Just(None), 1 => Just(Some(0u32)), 1 => any::<u32>().prop_map(Some)];
    (
        id(),
        mostly_u32(0, &[1]),
        mostly_u32(24, &[0, 23, 25, 32]),
        vec(inv_entry(), 0..4),
        num,
        ptr(),
        reserved(),
    )
        .prop_map(
            |(hwpt, data_type, entry_len, entries, num, src, reserved)| {
                Call::Invalidate(Invalidate {
                    hwpt,
                    data_type,
                    entry_len,
                    entries,
                    num,
                    src,
                    reserved,
                })
            },
        )
}

/// IOAS_MAP/COPY flags: FIXED_IOVA (bit 0), WRITEABLE (bit 1), READABLE (bit 2).
fn map_flags() -> impl Strategy<Value = u32> {
    prop_oneof![4 => Just(7u32), 3 => select(&[5u32, 6, 4][..]), 3 => flags(7)]
}

fn iova_range() -> impl Strategy<Value = (u64, u64)> {
    (iova(), length()).prop_map(|(start, len)| (start, start.wrapping_add(len).wrapping_sub(1)))
}

/// `n` pages, `n` from `pages`.
fn pages(pages: std::ops::Range<u64>) -> impl Strategy<Value = u64> {
    pages.prop_map(|n| n * PAGE64)
}

fn ioas_map() -> impl Strategy<Value = Call> {
    (id(), map_flags(), reserved(), va(), length(), iova()).prop_map(
        |(ioas, flags, reserved, va, length, iova)| Call::IoasMap {
            ioas,
            flags,
            reserved,
            va,
            length,
            iova,
        },
    )
}

fn ioas_unmap() -> impl Strategy<Value = Call> {
    let range = prop_oneof![
        4 => (iova(), length()),
        1 => Just((0u64, u64::MAX)),
        1 => (pages(0..16), pages(1..16)),
    ];
    (id(), range).prop_map(|(ioas, (iova, length))| Call::IoasUnmap { ioas, iova, length })
}

fn ioas_copy() -> impl Strategy<Value = Call> {
    (
        id(),
        id(),
        map_flags(),
        prop_oneof![3 => pages(1..5), 1 => length()],
        iova(),
        prop_oneof![3 => pages(0..16), 1 => iova()],
    )
        .prop_map(
            |(dst, src, flags, length, dst_iova, src_iova)| Call::IoasCopy {
                dst,
                src,
                flags,
                length,
                dst_iova,
                src_iova,
            },
        )
}

fn iova_ranges() -> impl Strategy<Value = Call> {
    (id(), mostly_u32(8, &[0, 1]), reserved(), dest()).prop_map(|(ioas, num, reserved, out)| {
        Call::IovaRanges {
            ioas,
            num,
            reserved,
            out,
        }
    })
}

fn allow_iovas() -> impl Strategy<Value = Call> {
    let num = prop_oneof![6 => Just(None), 1 => any::<u32>().prop_map(Some)];
    (id(), vec(iova_range(), 0..4), num, reserved(), ptr()).prop_map(
        |(ioas, ranges, num, reserved, src)| Call::AllowIovas {
            ioas,
            ranges,
            num,
            reserved,
            src,
        },
    )
}

fn hw_info() -> impl Strategy<Value = Call> {
    (
        flags(0),
        id(),
        mostly_u32(24, &[0, 4, 40, 4096]),
        dest(),
        any::<u8>(),
        prop_oneof![9 => Just(0u8), 1 => any::<u8>()],
    )
        .prop_map(
            |(flags, dev, data_len, out, max_pasid_log2, reserved)| Call::HwInfo {
                flags,
                dev,
                data_len,
                out,
                max_pasid_log2,
                reserved,
            },
        )
}

fn set_dirty() -> impl Strategy<Value = Call> {
    (flags(1), id(), any::<u32>()).prop_map(|(flags, hwpt, reserved)| Call::SetDirty {
        flags,
        hwpt,
        reserved,
    })
}

fn get_dirty() -> impl Strategy<Value = Call> {
    (
        (id(), flags(1), reserved()),
        (
            iova(),
            prop_oneof![3 => pages(1..17), 1 => length()],
            prop_oneof![4 => Just(PAGE64), 1 => select(&[0u64, 1, 2 << 20][..]), 1 => any::<u64>()],
            dest(),
        ),
    )
        .prop_map(
            |((hwpt, flags, reserved), (iova, length, page_size, out))| Call::GetDirty {
                hwpt,
                flags,
                reserved,
                iova,
                length,
                page_size,
                out,
            },
        )
}

fn option() -> impl Strategy<Value = Call> {
    (
        prop_oneof![Just(0u32), Just(1u32), any::<u32>()],
        prop_oneof![Just(0u16), Just(1u16), any::<u16>()],
        prop_oneof![9 => Just(0u16), 1 => any::<u16>()],
        id(),
        one_of_u64(&[0, 1]),
    )
        .prop_map(|(option_id, op, reserved, object, val64)| Call::Option {
            option_id,
            op,
            reserved,
            object,
            val64,
        })
}

fn vfio_ioas() -> impl Strategy<Value = Call> {
    (
        id(),
        prop_oneof![0u16..3, any::<u16>()],
        prop_oneof![9 => Just(0u16), 1 => any::<u16>()],
    )
        .prop_map(|(ioas, op, reserved)| Call::VfioIoas { ioas, op, reserved })
}

fn bind() -> impl Strategy<Value = Call> {
    let fd = prop_oneof![
        8 => Just(FdSel::Iommufd),
        1 => any::<Index>().prop_map(FdSel::OtherFile),
        1 => any::<i32>().prop_map(FdSel::Any),
    ];
    (any::<Index>(), argsz(16), flags(0), fd).prop_map(|(dev, argsz, flags, fd)| Call::Bind {
        dev,
        argsz,
        flags,
        fd,
    })
}

/// A VFIO `argsz`: the struct's `size` mostly, less or anything sometimes.
fn argsz(size: u32) -> impl Strategy<Value = u32> {
    prop_oneof![8 => Just(size), 1 => 0..size, 1 => any::<u32>()]
}

fn attach() -> impl Strategy<Value = Call> {
    (any::<Index>(), argsz(12), flags(0), id()).prop_map(|(dev, argsz, flags, pt)| Call::Attach {
        dev,
        argsz,
        flags,
        pt,
    })
}

fn detach() -> impl Strategy<Value = Call> {
    (any::<Index>(), argsz(8), flags(0)).prop_map(|(dev, argsz, flags)| Call::Detach {
        dev,
        argsz,
        flags,
    })
}

fn random_request() -> impl Strategy<Value = Call> {
    let target = prop_oneof![3 => Just(None), 1 => any::<Index>().prop_map(Some)];
    let request = prop_oneof![
        // Every number of the iommufd/VFIO type, encoded as they are (_IO).
        2 => (0u64..=0xFF).prop_map(|n| 0x3B00 | n),
        // The same numbers with size and direction bits (_IOWR-style encodings).
        1 => (0u64..=0xFF, 1u64..0x4000, 0u64..4)
            .prop_map(|(n, size, dir)| dir << 30 | size << 16 | 0x3B00 | n),
        1 => any::<u64>(),
    ];
    (target, request).prop_map(|(vfio, request)| Call::Random { vfio, request })
}

fn call() -> impl Strategy<Value = Call> {
    prop_oneof![
        3 => flags(0).prop_map(|flags| Call::IoasAlloc { flags }),
        5 => ioas_map(),
        2 => ioas_unmap(),
        2 => ioas_copy(),
        1 => iova_ranges(),
        1 => allow_iovas(),
        6 => hwpt_alloc(),
        2 => invalidate(),
        1 => hw_info(),
        1 => set_dirty(),
        1 => get_dirty(),
        3 => id().prop_map(|id| Call::Destroy { id }),
        1 => option(),
        1 => vfio_ioas(),
        1 => flags(0).prop_map(|flags| Call::FaultAlloc { flags }),
        3 => bind(),
        4 => attach(),
        1 => detach(),
        1 => any::<Index>().prop_map(|dev| Call::Reopen { dev }),
        1 => random_request(),
    ]
}

/// One call and how its argument is passed.
#[derive(Clone, Debug)]
struct Step {
    call: Call,
    ptr: Ptr,
    size: Size,
}

fn step() -> impl Strategy<Value = Step> {
    // Half the calls pass their struct cleanly, so the field checks behind the size and
    // copy rules get reached as often as those rules themselves.
    let how = prop_oneof![
        1 => Just((Ptr::Valid, Size::Kernel)),
        1 => (ptr(), size()),
    ];
    (call(), how).prop_map(|(call, (ptr, size))| Step { call, ptr, size })
}

/// The machines the sequences run on.
#[derive(Clone, Copy, Debug)]
enum Machine {
    /// One Sapphire Rapids unit, `nic0` and `ssd0` (PASID, ATS).
    SapphireRapids,
    /// A second unit without second-stage A/D bits (dirty tracking refused there).
    SecondUnitWithoutSsads,
    /// A second unit with a 39-bit second stage and no first stage.
    SecondUnit39Bit,
    /// One unit without nesting.
    WithoutNesting,
}

fn machine() -> impl Strategy<Value = Machine> {
    prop_oneof![
        4 => Just(Machine::SapphireRapids),
        1 => Just(Machine::SecondUnitWithoutSsads),
        1 => Just(Machine::SecondUnit39Bit),
        1 => Just(Machine::WithoutNesting),
    ]
}

impl Machine {
    fn desc(self) -> PlatformDesc {
        match self {
            Machine::SapphireRapids => PlatformDesc::sapphire_rapids(),
            Machine::SecondUnitWithoutSsads => two_units(unit_without_ssads()),
            Machine::SecondUnit39Bit => two_units(unit_39bit()),
            Machine::WithoutNesting => PlatformDesc::without_nesting(),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Properties 1–3: a world of random calls.

/// Test-owned user memory; dropped after the iommufd, which may hold pins on it.
struct Mem {
    /// Argument structs, placed against the guard page.
    arg: Guarded,
    /// What argument structs point at: payloads against the guard page, destinations at
    /// an offset.
    data: Guarded,
    /// User memory IOAS_MAP maps.
    backing: Guarded,
    /// Read-only copies of arguments and payloads.
    ro_arg: Guarded,
    ro_data: Guarded,
    /// A read-only page IOAS_MAP maps.
    ro_backing: Guarded,
}

impl Mem {
    fn new() -> Self {
        let ro_backing = Guarded::new(1);
        ro_backing.set_readonly(true);
        Self {
            arg: Guarded::new(1),
            data: Guarded::new(2),
            backing: Guarded::new(BACKING_PAGES),
            ro_arg: Guarded::new(1),
            ro_data: Guarded::new(1),
            ro_backing,
        }
    }

    /// The argument pointer for `bytes`.
    fn arg(&self, ptr: Ptr, bytes: &[u8]) -> u64 {
        match ptr {
            Ptr::Valid => self.arg.put_at_end(bytes),
            Ptr::ReadOnly => self.ro_arg.put_readonly(bytes),
            bad => bad.bad_addr(),
        }
    }

    /// A pointer to `payload`, which the kernel reads.
    fn source(&self, ptr: Ptr, payload: &[u8]) -> u64 {
        match ptr {
            Ptr::Valid => self.data.put_at_end(payload),
            Ptr::ReadOnly => self.ro_data.put_readonly(payload),
            bad => bad.bad_addr(),
        }
    }

    /// A pointer the kernel writes through; `room` tells how many bytes are valid there.
    fn dest(&self, d: Dest) -> (u64, usize) {
        match d.ptr {
            Ptr::Valid => {
                let off = d.off as usize % self.data.len();
                (self.data.addr(off), self.data.len() - off)
            }
            Ptr::ReadOnly => (self.ro_data.addr(0), 0),
            bad => (bad.bad_addr(), 0),
        }
    }

    fn va(&self, va: Va) -> u64 {
        match va {
            Va::Backing { page, offset } => self
                .backing
                .addr(page as usize * PAGE + offset as usize % PAGE),
            Va::ReadOnly => self.ro_backing.addr(0),
            Va::Bad(p) => p.bad_addr(),
        }
    }
}

/// One machine, one iommufd, every device's VFIO file, and what the calls made.
struct World {
    /// Dropped first: closing a file unbinds its device.
    devs: Vec<VfioDevice<VfioDeviceFile>>,
    env: Env,
    mem: Mem,
    /// Every id a call made, with its kind, in order.
    made: Vec<(u32, Kind)>,
    /// The ids believed alive and their kinds.
    live: BTreeMap<u32, Kind>,
    /// The DEVICE id of each file while it is bound.
    bound: Vec<Option<u32>>,
    /// Fault queue descriptors to close.
    fault_fds: Vec<i32>,
}

impl Drop for World {
    fn drop(&mut self) {
        // A fault queue's file holds the context: close them so it is released (and its
        // pins with it) before the memory goes.
        for fd in self.fault_fds.drain(..) {
            let _ = self.env.platform.close_fd(fd);
        }
    }
}

impl World {
    fn new(machine: Machine) -> Self {
        let env = Env::new(machine.desc());
        let devs: Vec<_> = (0..env.platform.devices().len())
            .map(|i| env.open(i))
            .collect();
        let bound = vec![None; devs.len()];
        let mut world = Self {
            devs,
            env,
            mem: Mem::new(),
            made: Vec::new(),
            live: BTreeMap::new(),
            bound,
            fault_fds: Vec::new(),
        };
        // Start where a VMM starts: every device bound, an IOAS, and a nest parent on it
        // where the first device's unit can nest, so the calls that need those ids get
        // past their lookups from the first step.
        for i in 0..world.devs.len() {
            let fd = world.env.fd.fd().fd_number();
            let id = world.devs[i].bind_iommufd(fd).expect("bind");
            world.made(id, Kind::Device);
            world.bound[i] = Some(id);
        }
        let ioas = world.env.ioas();
        world.made(ioas, Kind::Ioas);
        let dev0 = world.bound[0].expect("bound");
        if let Ok(parent) = world.env.paging(dev0, ioas, HwptAllocFlags::NEST_PARENT) {
            world.made(parent, Kind::Parent);
        }
        world
    }

    fn id(&self, id: Id, kinds: &[Kind]) -> u32 {
        let typed: Vec<u32> = self
            .live
            .iter()
            .filter(|(_, k)| kinds.contains(k))
            .map(|(id, _)| *id)
            .collect();
        match id {
            Id::Typed(i) if !typed.is_empty() => typed[i.index(typed.len())],
            Id::Typed(i) | Id::Made(i) if !self.made.is_empty() => {
                self.made[i.index(self.made.len())].0
            }
            Id::Typed(_) | Id::Made(_) | Id::Zero => 0,
            Id::Any(v) => v,
        }
    }

    fn made(&mut self, id: u32, kind: Kind) {
        self.made.push((id, kind));
        self.live.insert(id, kind);
    }

    /// Send an iommufd ioctl: `cmd` is the full 6.12 struct; `size` and `ptr` say how it
    /// reaches the kernel. Returns the result, the struct as the kernel left it (valid
    /// pointer only), and how it was sent.
    fn iommufd(
        &self,
        name: &str,
        request: u64,
        mut cmd: Bytes,
        sizes: (usize, usize),
        size: Size,
        ptr: Ptr,
    ) -> (Result<i32, Errno>, Option<Bytes>, Sent) {
        let (min, kernel) = sizes;
        debug_assert_eq!(cmd.0.len(), kernel);
        let size_value: u64 = match size {
            Size::Kernel => kernel as u64,
            Size::Min => min as u64,
            Size::Below(n) => (n as usize % min) as u64,
            Size::ZeroTail(n) | Size::NonZeroTail(n, _) => (kernel + 1 + n as usize % 16) as u64,
            Size::Any(v) => v as u64,
        };
        if let Size::ZeroTail(n) | Size::NonZeroTail(n, _) = size {
            cmd.0.resize(kernel + 1 + n as usize % 16, 0);
        }
        if let Size::NonZeroTail(n, b) = size {
            let extra = 1 + n as usize % 16;
            cmd.u8(kernel + b as usize % extra, b | 1);
        }
        cmd.u32(0, size_value as u32);
        let addr = self.mem.arg(ptr, &cmd.0);
        let result = raw_ptr(self.env.fd.fd(), request, addr);
        let out = (ptr == Ptr::Valid).then(|| {
            let off = self.mem.arg.len() - cmd.0.len();
            Bytes(self.mem.arg.read(off, cmd.0.len()))
        });
        let sent = Sent {
            name: name.to_string(),
            request,
            ptr,
            size: size_value,
            sizes: Some(sizes),
            buf_len: cmd.0.len(),
        };
        (result, out, sent)
    }

    /// Send a VFIO ioctl on device file `dev`.
    fn vfio(
        &self,
        name: &str,
        dev: usize,
        request: u64,
        cmd: &Bytes,
        ptr: Ptr,
    ) -> (Result<i32, Errno>, Option<Bytes>, Sent) {
        let addr = self.mem.arg(ptr, &cmd.0);
        let result = raw_ptr(self.devs[dev].fd(), request, addr);
        let out = (ptr == Ptr::Valid).then(|| {
            let off = self.mem.arg.len() - cmd.0.len();
            Bytes(self.mem.arg.read(off, cmd.0.len()))
        });
        let sent = Sent {
            name: name.to_string(),
            request,
            ptr,
            size: 0,
            sizes: None,
            buf_len: cmd.0.len(),
        };
        (result, out, sent)
    }

    /// Remember the objects a successful iommufd call made or destroyed.
    fn record_iommufd(&mut self, request: u64, out: &Bytes) {
        match request {
            nr::IOMMU_IOAS_ALLOC => self.made(out.get_u32(8), Kind::Ioas),
            nr::IOMMU_HWPT_ALLOC => {
                let (flags, pt) = (out.get_u32(4), out.get_u32(12));
                let kind = match self.live.get(&pt) {
                    Some(Kind::Ioas) if flags & HwptAllocFlags::NEST_PARENT.bits() != 0 => {
                        Kind::Parent
                    }
                    Some(Kind::Ioas) => Kind::Paging,
                    _ => Kind::Nested,
                };
                self.made(out.get_u32(16), kind);
            }
            nr::IOMMU_FAULT_QUEUE_ALLOC => {
                self.made(out.get_u32(8), Kind::Fault);
                self.fault_fds.push(out.get_u32(12) as i32);
            }
            nr::IOMMU_DESTROY => {
                self.live.remove(&out.get_u32(4));
            }
            _ => {}
        }
    }

    /// Run one step; with `check`, fail unless it answered Ok or a Linux errno of its call.
    fn step(&mut self, step: &Step, check: bool) -> Result<(), TestCaseError> {
        let Step { call, ptr, size } = step;
        let (ptr, size) = (*ptr, *size);
        let iommufd_call = |request: u64| -> (&'static str, (usize, usize)) {
            let name = layout::IOCTLS
                .iter()
                .find(|(_, r, _, _)| *r == request)
                .map_or("?", |(n, _, _, _)| *n);
            (name, iommufd_sizes(request).expect("an iommufd ioctl"))
        };
        // The iommufd calls: request and struct.
        let iommufd_cmd: Option<(u64, Bytes)> = match call {
            Call::IoasAlloc { flags } => {
                let mut b = Bytes::zeroed(12);
                b.u32(4, *flags);
                Some((nr::IOMMU_IOAS_ALLOC, b))
            }
            Call::IoasMap {
                ioas,
                flags,
                reserved,
                va,
                length,
                iova,
            } => {
                use layout::map::*;
                let mut b = Bytes::zeroed(SIZE);
                b.u32(FLAGS, *flags)
                    .u32(IOAS_ID, self.id(*ioas, IOAS))
                    .u32(RESERVED, *reserved)
                    .u64(USER_VA, self.mem.va(*va))
                    .u64(LENGTH, *length)
                    .u64(IOVA, *iova);
                Some((nr::IOMMU_IOAS_MAP, b))
            }
            Call::IoasUnmap { ioas, iova, length } => {
                use layout::unmap::*;
                let mut b = Bytes::zeroed(SIZE);
                b.u32(IOAS_ID, self.id(*ioas, IOAS))
                    .u64(IOVA, *iova)
                    .u64(LENGTH, *length);
                Some((nr::IOMMU_IOAS_UNMAP, b))
            }
            Call::IoasCopy {
                dst,
                src,
                flags,
                length,
                dst_iova,
                src_iova,
            } => {
                // struct iommu_ioas_copy: flags@4, dst_ioas_id@8, src_ioas_id@12,
                // length@16, dst_iova@24, src_iova@32.
                let mut b = Bytes::zeroed(40);
                b.u32(4, *flags)
                    .u32(8, self.id(*dst, IOAS))
                    .u32(12, self.id(*src, IOAS))
                    .u64(16, *length)
                    .u64(24, *dst_iova)
                    .u64(32, *src_iova);
                Some((nr::IOMMU_IOAS_COPY, b))
            }
            Call::IovaRanges {
                ioas,
                num,
                reserved,
                out,
            } => {
                use layout::iova_ranges::*;
                let (addr, _) = self.mem.dest(*out);
                let mut b = Bytes::zeroed(SIZE);
                b.u32(IOAS_ID, self.id(*ioas, IOAS))
                    .u32(NUM_IOVAS, *num)
                    .u32(RESERVED, *reserved)
                    .u64(ALLOWED_IOVAS, addr);
                Some((nr::IOMMU_IOAS_IOVA_RANGES, b))
            }
            Call::AllowIovas {
                ioas,
                ranges,
                num,
                reserved,
                src,
            } => {
                let mut payload = Bytes::zeroed(16 * ranges.len());
                for (i, (start, last)) in ranges.iter().enumerate() {
                    payload.u64(16 * i, *start).u64(16 * i + 8, *last);
                }
                // struct iommu_ioas_allow_iovas: ioas_id@4, num_iovas@8, __reserved@12,
                // allowed_iovas@16.
                let mut b = Bytes::zeroed(24);
                b.u32(4, self.id(*ioas, IOAS))
                    .u32(8, num.unwrap_or(ranges.len() as u32))
                    .u32(12, *reserved)
                    .u64(16, self.mem.source(*src, &payload.0));
                Some((nr::IOMMU_IOAS_ALLOW_IOVAS, b))
            }
            Call::HwptAlloc(h) => {
                use layout::hwpt_alloc::*;
                let mut data = Bytes::zeroed(24);
                data.u64(0, h.s1.flags)
                    .u64(8, h.s1.pgtbl_addr)
                    .u32(16, h.s1.addr_width)
                    .u32(20, h.s1.reserved);
                let pt_kinds = if h.nested { PARENT } else { IOAS };
                let mut b = Bytes::zeroed(SIZE);
                b.u32(FLAGS, h.flags)
                    .u32(DEV_ID, self.id(h.dev, DEVICE))
                    .u32(PT_ID, self.id(h.pt, pt_kinds))
                    .u32(RESERVED, h.reserved)
                    .u32(DATA_TYPE, h.data_type)
                    .u32(DATA_LEN, h.data_len)
                    .u64(DATA_UPTR, self.mem.source(h.src, &data.0))
                    .u32(FAULT_ID, self.id(h.fault, FAULT))
                    .u32(RESERVED2, h.reserved2);
                Some((nr::IOMMU_HWPT_ALLOC, b))
            }
            Call::Invalidate(inv) => {
                use layout::invalidate::*;
                // Entries `entry_len` apart when that is a plausible stride, 24 apart
                // otherwise (the kernel refuses any length but 24 before reading).
                let stride = match inv.entry_len as usize {
                    l @ 24..=64 => l,
                    _ => 24,
                };
                let mut payload = Bytes::zeroed(stride * inv.entries.len());
                for (i, e) in inv.entries.iter().enumerate() {
                    let at = i * stride;
                    payload
                        .u64(at, e.addr)
                        .u64(at + 8, e.npages)
                        .u32(at + 16, e.flags)
                        .u32(at + 20, e.reserved);
                }
                let mut b = Bytes::zeroed(SIZE);
                b.u32(HWPT_ID, self.id(inv.hwpt, NESTED))
                    .u64(DATA_UPTR, self.mem.source(inv.src, &payload.0))
                    .u32(DATA_TYPE, inv.data_type)
                    .u32(ENTRY_LEN, inv.entry_len)
                    .u32(ENTRY_NUM, inv.num.unwrap_or(inv.entries.len() as u32))
                    .u32(RESERVED, inv.reserved);
                Some((nr::IOMMU_HWPT_INVALIDATE, b))
            }
            Call::HwInfo {
                flags,
                dev,
                data_len,
                out,
                max_pasid_log2,
                reserved,
            } => {
                use layout::hw_info::*;
                let (addr, _) = self.mem.dest(*out);
                let mut b = Bytes::zeroed(SIZE);
                b.u32(FLAGS, *flags)
                    .u32(DEV_ID, self.id(*dev, DEVICE))
                    .u32(DATA_LEN, *data_len)
                    .u64(DATA_UPTR, addr)
                    .u8(OUT_MAX_PASID_LOG2, *max_pasid_log2)
                    .u8(RESERVED + 1, *reserved);
                Some((nr::IOMMU_GET_HW_INFO, b))
            }
            Call::SetDirty {
                flags,
                hwpt,
                reserved,
            } => {
                use layout::set_dirty::*;
                let mut b = Bytes::zeroed(SIZE);
                b.u32(FLAGS, *flags)
                    .u32(HWPT_ID, self.id(*hwpt, PAGING))
                    .u32(RESERVED, *reserved);
                Some((nr::IOMMU_HWPT_SET_DIRTY_TRACKING, b))
            }
            Call::GetDirty {
                hwpt,
                flags,
                reserved,
                iova,
                length,
                page_size,
                out,
            } => {
                use layout::dirty_bitmap::*;
                let (mut addr, room) = self.mem.dest(*out);
                // A bitmap that would not fit the data buffer could have bits set past its
                // guard page, in live memory: point such a bitmap at nothing instead.
                let bits = length.checked_div(*page_size).unwrap_or(u64::MAX);
                if bits / 8 + 8 > room as u64 {
                    addr = 0;
                }
                let mut b = Bytes::zeroed(SIZE);
                b.u32(HWPT_ID, self.id(*hwpt, PAGING))
                    .u32(FLAGS, *flags)
                    .u32(RESERVED, *reserved)
                    .u64(IOVA, *iova)
                    .u64(LENGTH, *length)
                    .u64(PAGE_SIZE, *page_size)
                    .u64(DATA, addr);
                Some((nr::IOMMU_HWPT_GET_DIRTY_BITMAP, b))
            }
            Call::Destroy { id } => {
                let mut b = Bytes::zeroed(8);
                b.u32(4, self.id(*id, ANY_KIND));
                Some((nr::IOMMU_DESTROY, b))
            }
            Call::Option {
                option_id,
                op,
                reserved,
                object,
                val64,
            } => {
                use layout::option::*;
                let mut b = Bytes::zeroed(SIZE);
                b.u32(OPTION_ID, *option_id)
                    .u16(OP, *op)
                    .u16(RESERVED, *reserved)
                    .u32(OBJECT_ID, self.id(*object, IOAS))
                    .u64(VAL64, *val64);
                Some((nr::IOMMU_OPTION, b))
            }
            Call::VfioIoas { ioas, op, reserved } => {
                use layout::vfio_ioas::*;
                let mut b = Bytes::zeroed(SIZE);
                b.u32(IOAS_ID, self.id(*ioas, IOAS))
                    .u16(OP, *op)
                    .u16(RESERVED, *reserved);
                Some((nr::IOMMU_VFIO_IOAS, b))
            }
            Call::FaultAlloc { flags } => {
                let mut b = Bytes::zeroed(16);
                b.u32(4, *flags);
                Some((nr::IOMMU_FAULT_QUEUE_ALLOC, b))
            }
            Call::Random {
                vfio: None,
                request,
            } if iommufd_sizes(*request).is_some() => {
                // A known request with a zeroed struct: points at nothing, so it is safe
                // whatever it is.
                let (_, kernel) = iommufd_sizes(*request).expect("known");
                Some((*request, Bytes::zeroed(kernel)))
            }
            _ => None,
        };
        if let Some((request, cmd)) = iommufd_cmd {
            let (name, sizes) = iommufd_call(request);
            let (result, out, sent) = self.iommufd(name, request, cmd, sizes, size, ptr);
            if check {
                let handler = iommufd_errnos(request).expect("a known iommufd ioctl");
                errno_allowed(result, handler, &sent)?;
                unbacked_arg_is_efault(result, &sent)?;
            }
            if let (Ok(_), Some(out)) = (result, out) {
                self.record_iommufd(request, &out);
            }
            return Ok(());
        }
        match call {
            Call::Random {
                vfio: None,
                request,
            } => {
                // Not an iommufd ioctl of 6.12: the size is read (EFAULT) for numbers in
                // the table's range, then ENOTTY.
                let mut b = Bytes::zeroed(64);
                b.u32(0, 64);
                let addr = self.mem.arg(ptr, &b.0);
                let result = raw_ptr(self.env.fd.fd(), *request, addr);
                if check {
                    let sent = Sent {
                        name: format!("iommufd request {request:#x}"),
                        request: *request,
                        ptr,
                        size: 64,
                        sizes: None,
                        buf_len: 64,
                    };
                    errno_allowed(result, &[Errno::ENOTTY], &sent)?;
                }
            }
            Call::Random {
                vfio: Some(dev),
                request,
            } => {
                let dev = dev.index(self.devs.len());
                let mut b = Bytes::zeroed(64);
                b.u32(0, 64);
                let name = format!("VFIO request {request:#x}");
                let (result, out, sent) = self.vfio(&name, dev, *request, &b, ptr);
                if check {
                    errno_allowed(result, vfio_errnos(*request), &sent)?;
                }
                // A zeroed BIND/ATTACH/DETACH has argsz 64 and flags 0: BIND names fd 0,
                // never an iommufd here; DETACH changes nothing this test tracks.
                if let (Ok(_), Some(out), nr::VFIO_DEVICE_ATTACH_IOMMUFD_PT) =
                    (result, out, *request)
                {
                    self.record_attach(0, &out);
                }
            }
            Call::Bind {
                dev,
                argsz,
                flags,
                fd,
            } => {
                let dev = dev.index(self.devs.len());
                let fd_number = match fd {
                    FdSel::Iommufd => self.env.fd.fd().fd_number(),
                    FdSel::OtherFile(i) => {
                        let mut others: Vec<i32> =
                            self.devs.iter().map(|d| d.fd().fd_number()).collect();
                        others.extend(&self.fault_fds);
                        others[i.index(others.len())]
                    }
                    FdSel::Any(v) => *v,
                };
                let mut b = Bytes::zeroed(16);
                b.u32(0, *argsz).u32(4, *flags).u32(8, fd_number as u32);
                let (result, out, sent) = self.vfio(
                    "VFIO_DEVICE_BIND_IOMMUFD",
                    dev,
                    nr::VFIO_DEVICE_BIND_IOMMUFD,
                    &b,
                    ptr,
                );
                if check {
                    errno_allowed(result, vfio_errnos(nr::VFIO_DEVICE_BIND_IOMMUFD), &sent)?;
                }
                if let (Ok(_), Some(out)) = (result, out) {
                    let id = out.get_u32(12);
                    self.made(id, Kind::Device);
                    self.bound[dev] = Some(id);
                }
            }
            Call::Attach {
                dev,
                argsz,
                flags,
                pt,
            } => {
                let dev = dev.index(self.devs.len());
                let pt = self.id(*pt, ATTACHABLE);
                let mut b = Bytes::zeroed(12);
                b.u32(0, *argsz).u32(4, *flags).u32(8, pt);
                let request = nr::VFIO_DEVICE_ATTACH_IOMMUFD_PT;
                let (result, out, sent) =
                    self.vfio("VFIO_DEVICE_ATTACH_IOMMUFD_PT", dev, request, &b, ptr);
                if check {
                    errno_allowed(result, vfio_errnos(request), &sent)?;
                }
                if let (Ok(_), Some(out)) = (result, out) {
                    self.record_attach(pt, &out);
                }
            }
            Call::Detach { dev, argsz, flags } => {
                let dev = dev.index(self.devs.len());
                let mut b = Bytes::zeroed(8);
                b.u32(0, *argsz).u32(4, *flags);
                let request = nr::VFIO_DEVICE_DETACH_IOMMUFD_PT;
                let (result, _, sent) =
                    self.vfio("VFIO_DEVICE_DETACH_IOMMUFD_PT", dev, request, &b, ptr);
                if check {
                    errno_allowed(result, vfio_errnos(request), &sent)?;
                }
            }
            Call::Reopen { dev } => {
                let dev = dev.index(self.devs.len());
                self.devs[dev] = self.env.open(dev);
                if let Some(id) = self.bound[dev].take() {
                    self.live.remove(&id);
                }
            }
            _ => unreachable!("iommufd calls are handled above"),
        }
        Ok(())
    }

    /// An attach to an IOAS put the device on an automatic HWPT, whose id came back.
    fn record_attach(&mut self, pt: u32, out: &Bytes) {
        let got = out.get_u32(8);
        if self.live.get(&pt) == Some(&Kind::Ioas) || got != pt {
            self.made(got, Kind::Auto);
        }
    }

    /// Detach every device, destroy every object in dependency order, unbind every
    /// device; then nothing may be left: no object, no pinned user page.
    fn tear_down(&mut self) -> Result<(), TestCaseError> {
        for (i, dev) in self.devs.iter().enumerate() {
            let r = dev.detach_pt().map_err(uapi_support::err);
            match self.bound[i] {
                Some(_) => prop_assert_eq!(r, Ok(()), "detach of bound device {}", i),
                None => prop_assert_eq!(r, Err(Errno::EINVAL), "detach of unbound device {}", i),
            }
        }
        let order: [&[Kind]; 3] = [NESTED, PAGING, IOAS];
        for kinds in order {
            self.destroy_all(kinds)?;
        }
        for fd in std::mem::take(&mut self.fault_fds) {
            prop_assert_eq!(
                self.env.platform.close_fd(fd),
                Ok(()),
                "close fault fd {}",
                fd
            );
        }
        self.destroy_all(FAULT)?;
        for i in 0..self.devs.len() {
            self.devs[i] = self.env.open(i);
            self.bound[i] = None;
        }
        // The lowest free id is 1 again only if no object is left behind.
        let first = self.env.ioas();
        prop_assert_eq!(first, 1, "objects left after tear-down");
        prop_assert_eq!(self.env.destroy(first), Ok(()));
        for (name, buf) in [
            ("backing", &self.mem.backing),
            ("read-only backing", &self.mem.ro_backing),
        ] {
            for page in 0..buf.len() / PAGE {
                prop_assert!(
                    !self
                        .env
                        .platform
                        .host_mem()
                        .is_pinned(buf.addr(page * PAGE), 1),
                    "page {} of the {} buffer is still pinned",
                    page,
                    name
                );
            }
        }
        Ok(())
    }

    fn destroy_all(&mut self, kinds: &[Kind]) -> Result<(), TestCaseError> {
        let ids: Vec<u32> = self
            .live
            .iter()
            .filter(|(_, k)| kinds.contains(k))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let r = self.env.destroy(id);
            prop_assert!(
                matches!(r, Ok(()) | Err(Errno::ENOENT)),
                "destroy of {:?} {} in dependency order: {:?}",
                self.live[&id],
                id,
                r
            );
            self.live.remove(&id);
        }
        Ok(())
    }

    /// IOAS_ALLOC, IOAS_MAP of one page, attach device 0, DMA through it, unmap (DMA
    /// faults again), detach, destroy.
    fn known_good_flow(&mut self) -> Result<(), TestCaseError> {
        const IOVA: u64 = 0x10_0000;
        let env = &self.env;
        let dev_id = self.devs[0].bind_iommufd(env.fd.fd().fd_number());
        prop_assert!(dev_id.is_ok(), "bind: {:?}", dev_id);
        let ioas = env.fd.ioas_alloc().map_err(uapi_support::err);
        prop_assert!(ioas.is_ok(), "IOAS_ALLOC: {:?}", ioas);
        let ioas = ioas.expect("checked");
        let page = &self.mem.backing;
        page.write(0, &[0x11; PAGE]);
        let mapped = env.map_va(ioas, page.addr(0), PAGE64, Some(IOVA), RW);
        prop_assert_eq!(mapped, Ok(IOVA), "IOAS_MAP");
        let attached = self.devs[0].attach_pt(ioas).map_err(uapi_support::err);
        prop_assert!(attached.is_ok(), "attach: {:?}", attached);
        let wrote = env.dma_write(0, IOVA + 0x10, &[0xA5; 8]);
        prop_assert!(wrote.is_ok(), "DMA write: {:?}", wrote);
        prop_assert_eq!(page.read(0x10, 8), vec![0xA5; 8]);
        let read = env.dma_read(0, IOVA + 0xC, 16);
        prop_assert_eq!(read, Ok(page.read(0xC, 16)), "DMA read");
        prop_assert_eq!(env.unmap(ioas, IOVA, PAGE64), Ok(PAGE64), "IOAS_UNMAP");
        let after = env.dma_read(0, IOVA, 8);
        prop_assert!(
            matches!(after, Err(DmaError::Fault(_))),
            "DMA after unmap: {:?}",
            after
        );
        prop_assert_eq!(self.devs[0].detach_pt().map_err(uapi_support::err), Ok(()));
        prop_assert_eq!(env.destroy(ioas), Ok(()), "destroy the IOAS");
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Property 4: DMA against a shadow model of the mappings.

/// Pages of user memory property 4 maps (the guard page is page `DMA_PAGES`).
const DMA_PAGES: usize = 16;
/// A second-stage large page.
const HUGE: u64 = 2 << 20;
/// Pages of user memory in the large-page cases: 4 MiB, which always holds a 2 MiB-aligned
/// 2 MiB window.
const HUGE_CASE_PAGES: usize = 1024;
/// IOVA pages the maps and DMAs mostly use.
const IOVA_PAGES: u64 = 40;

/// How the devices reach the mapped IOAS.
#[derive(Clone, Copy, Debug)]
enum Via {
    /// Attach to the IOAS: an automatic HWPT, destroyed with its last device.
    Auto,
    /// Attach to a paging HWPT allocated explicitly on the IOAS.
    Paging,
}

/// Where a DMA goes.
#[derive(Clone, Copy, Debug)]
enum At {
    /// In a mapped area of the devices' IOAS, `off` bytes into it, or (`edge`) `off`
    /// bytes from a page before it, up to a page after it.
    Area {
        area: Index,
        off: u16,
        edge: bool,
    },
    /// IOVA page `page` plus `off`.
    Page(u8, u16),
    /// `off` bytes into the 2 MiB IOVA slot of [`DmaStep::MapHuge`].
    Huge(u8, u32),
    Any(u64),
}

#[derive(Clone, Debug)]
enum DmaStep {
    /// IOAS_MAP of `pages` pages from backing page `page` (+ `offset`) at IOVA page `iova`
    /// (or an allocated IOVA); `prot` bit 0 readable, bit 1 writeable.
    Map {
        side: bool,
        page: u8,
        offset: u16,
        pages: u8,
        iova: Option<u8>,
        prot: u8,
    },
    Unmap {
        side: bool,
        page: u8,
        offset: u16,
        pages: u8,
    },
    UnmapAll {
        side: bool,
    },
    /// In the large-page cases, IOAS_MAP of the 2 MiB-aligned 2 MiB window of the
    /// backing memory at IOVA `(slot + 1) * 2 MiB`, which the domain maps with a large
    /// page; a no-op otherwise.
    MapHuge {
        side: bool,
        slot: u8,
        prot: u8,
    },
    /// IOAS_UNMAP of `pages` pages from the IOVA of 2 MiB slot `slot`: the whole large
    /// mapping, less (ENOENT) or more.
    UnmapHuge {
        side: bool,
        slot: u8,
        pages: u16,
    },
    /// IOAS_COPY of `pages` pages from the start of a mapped area of the source IOAS
    /// (`src_area`) or from IOVA page `src_page`.
    Copy {
        from_side: bool,
        to_side: bool,
        src_area: Option<Index>,
        src_page: u8,
        pages: u8,
        dst_page: Option<u8>,
        prot: u8,
    },
    Attach {
        dev: bool,
    },
    Detach {
        dev: bool,
    },
    Read {
        dev: bool,
        at: At,
        len: usize,
    },
    Write {
        dev: bool,
        at: At,
        len: usize,
        seed: u8,
    },
}

fn at() -> impl Strategy<Value = At> {
    prop_oneof![
        5 => (any::<Index>(), any::<u16>(), prop_oneof![2 => Just(false), 1 => Just(true)])
            .prop_map(|(area, off, edge)| At::Area { area, off, edge }),
        2 => (0..IOVA_PAGES as u8, 0u16..4096).prop_map(|(p, off)| At::Page(p, off)),
        2 => (prop_oneof![2 => Just(0u8), 1 => 0u8..3], any::<u32>())
            .prop_map(|(slot, off)| At::Huge(slot, off)),
        1 => one_of_u64(&[u64::MAX - 7, 0xFEE0_0000, 1 << 48]).prop_map(At::Any),
    ]
}

fn dma_len() -> impl Strategy<Value = usize> {
    prop_oneof![3 => 1usize..=16, 2 => 1usize..=PAGE, 1 => PAGE - 16..=2 * PAGE + 32]
}

fn prot() -> impl Strategy<Value = u8> {
    prop_oneof![4 => Just(3u8), 2 => Just(1u8), 1 => Just(2u8), 1 => Just(0u8)]
}

/// The side IOAS (true) sometimes, the devices' mostly.
fn side() -> impl Strategy<Value = bool> {
    prop_oneof![3 => Just(false), 1 => Just(true)]
}

/// A sub-page offset: none mostly.
fn offset() -> impl Strategy<Value = u16> {
    prop_oneof![8 => Just(0u16), 1 => 1u16..4096]
}

/// An IOVA page for a fixed map, or None for an allocated IOVA.
fn iova_page() -> impl Strategy<Value = Option<u8>> {
    prop_oneof![6 => (0..IOVA_PAGES as u8).prop_map(Some), 1 => Just(None)]
}

fn dma_map() -> impl Strategy<Value = DmaStep> {
    (
        side(),
        0..=DMA_PAGES as u8,
        offset(),
        1u8..=4,
        iova_page(),
        prot(),
    )
        .prop_map(|(side, page, offset, pages, iova, prot)| DmaStep::Map {
            side,
            page,
            offset,
            pages,
            iova,
            prot,
        })
}

fn dma_unmap() -> impl Strategy<Value = DmaStep> {
    (side(), 0..IOVA_PAGES as u8, offset(), 1u8..=8).prop_map(|(side, page, offset, pages)| {
        DmaStep::Unmap {
            side,
            page,
            offset,
            pages,
        }
    })
}

fn dma_copy() -> impl Strategy<Value = DmaStep> {
    let src_area = prop_oneof![2 => any::<Index>().prop_map(Some), 1 => Just(None)];
    (
        (side(), side(), src_area, 0..IOVA_PAGES as u8),
        (1u8..=4, iova_page(), prot()),
    )
        .prop_map(
            |((from_side, to_side, src_area, src_page), (pages, dst_page, prot))| DmaStep::Copy {
                from_side,
                to_side,
                src_area,
                src_page,
                pages,
                dst_page,
                prot,
            },
        )
}

fn dma_step() -> impl Strategy<Value = DmaStep> {
    let map_huge = (side(), 0u8..3, prot()).prop_map(|(side, slot, prot)| DmaStep::MapHuge {
        side,
        slot,
        prot,
    });
    let unmap_huge = (
        side(),
        0u8..3,
        prop_oneof![2 => Just(512u16), 1 => 1u16..=1024],
    )
        .prop_map(|(side, slot, pages)| DmaStep::UnmapHuge { side, slot, pages });
    let read =
        (any::<bool>(), at(), dma_len()).prop_map(|(dev, at, len)| DmaStep::Read { dev, at, len });
    let write = (any::<bool>(), at(), dma_len(), any::<u8>())
        .prop_map(|(dev, at, len, seed)| DmaStep::Write { dev, at, len, seed });
    prop_oneof![
        6 => dma_map(),
        3 => dma_unmap(),
        1 => side().prop_map(|side| DmaStep::UnmapAll { side }),
        2 => map_huge,
        1 => unmap_huge,
        2 => dma_copy(),
        2 => any::<bool>().prop_map(|dev| DmaStep::Attach { dev }),
        1 => any::<bool>().prop_map(|dev| DmaStep::Detach { dev }),
        6 => read,
        6 => write,
    ]
}

/// One mapped range of an IOAS in the model.
#[derive(Clone, Copy, Debug)]
struct Area {
    iova: u64,
    len: u64,
    /// User address of the first byte.
    uaddr: u64,
    read: bool,
    write: bool,
    /// The user pages were mapped WRITEABLE at first (COPY may only grant write then).
    pages_writable: bool,
}

impl Area {
    fn last(&self) -> u64 {
        self.iova + self.len - 1
    }
}

/// The shadow model: the areas of the devices' IOAS (0) and of a side IOAS (1) no device
/// uses, and which device is attached.
#[derive(Default)]
struct Model {
    ioas: [BTreeMap<u64, Area>; 2],
    attached: [bool; 2],
}

impl Model {
    /// The areas of IOAS `which` intersecting `[start, last]`, lowest first.
    fn intersecting(&self, which: usize, start: u64, last: u64) -> Vec<Area> {
        self.ioas[which]
            .values()
            .filter(|a| a.iova <= last && a.last() >= start)
            .copied()
            .collect()
    }

    /// IOMMU_IOAS_UNMAP as Linux does it (io_pagetable.c: iopt_unmap_iova_range): whole
    /// areas only, lowest first; an area sticking out ends it with ENOENT, keeping what was
    /// already removed; nothing removed is ENOENT, except for unmap-all.
    fn unmap(&mut self, which: usize, iova: u64, length: u64) -> Result<u64, Errno> {
        let all = iova == 0 && length == u64::MAX;
        let last = if all {
            u64::MAX
        } else {
            iova.checked_add(length - 1).ok_or(Errno::EOVERFLOW)?
        };
        let mut removed = 0;
        for area in self.intersecting(which, iova, last) {
            if area.iova < iova || area.last() > last {
                return Err(Errno::ENOENT);
            }
            self.ioas[which].remove(&area.iova);
            removed += area.len;
        }
        if removed == 0 && !all {
            return Err(Errno::ENOENT);
        }
        Ok(removed)
    }

    /// The user ranges behind `[iova, iova + len)` of IOAS `which`, if a gap-free chain of
    /// areas covers it (iopt_get_pages): `(uaddr, len, pages_writable)`.
    fn pieces(&self, which: usize, iova: u64, len: u64) -> Option<Vec<(u64, u64, bool)>> {
        let last = iova.checked_add(len - 1)?;
        let mut at = iova;
        let mut out = Vec::new();
        for area in self.intersecting(which, iova, last) {
            if area.iova > at {
                return None;
            }
            let end = area.last().min(last);
            out.push((
                area.uaddr + (at - area.iova),
                end - at + 1,
                area.pages_writable,
            ));
            if end == last {
                return Some(out);
            }
            at = end + 1;
        }
        None
    }

    fn is_free(&self, which: usize, iova: u64, len: u64) -> bool {
        self.intersecting(which, iova, iova + len - 1).is_empty()
    }

    /// The user address a device access of `n` bytes at `iova` reaches, or `None` if the
    /// IOMMU must refuse it. The access never crosses a 4 KiB IOVA page, and while a
    /// device is attached every area is page aligned, so one area holds all of it.
    fn target(&self, dev: usize, iova: u64, n: usize, write: bool) -> Option<u64> {
        if !self.attached[dev] {
            return None;
        }
        let last = iova.checked_add(n as u64 - 1)?;
        let area = self.ioas[0]
            .values()
            .find(|a| a.iova <= iova && last <= a.last())?;
        let allowed = if write { area.write } else { area.read };
        allowed.then(|| area.uaddr + (iova - area.iova))
    }
}

/// Property 4's world: `nic0` and `ssd0` bound to one iommufd, the devices' IOAS and a
/// side IOAS, test-owned backing memory and its shadow copy.
struct DmaWorld {
    devs: [VfioDevice<VfioDeviceFile>; 2],
    env: Env,
    /// Dropped after the iommufd, which pins it.
    backing: Guarded,
    ioas: [u32; 2],
    /// What the devices attach to: the IOAS or the explicit paging HWPT.
    target: u32,
    model: Model,
    /// What every byte of `backing` must hold.
    shadow: Vec<u8>,
    /// In the large-page cases, the offset of the 2 MiB-aligned window in `backing`.
    huge: Option<usize>,
}

impl DmaWorld {
    fn new(via: Via, seed: u64, large_pages: bool) -> Self {
        let env = Env::spr();
        let (d0, id0) = env.bind(0);
        let (d1, _) = env.bind(1);
        let ioas = [env.ioas(), env.ioas()];
        let target = match via {
            Via::Auto => ioas[0],
            Via::Paging => env
                .paging(id0, ioas[0], HwptAllocFlags::empty())
                .expect("paging HWPT"),
        };
        let pages = if large_pages {
            HUGE_CASE_PAGES
        } else {
            DMA_PAGES
        };
        let backing = Guarded::new(pages);
        let huge = large_pages.then(|| {
            let base = backing.addr(0);
            (base.next_multiple_of(HUGE) - base) as usize
        });
        let shadow = pattern(seed, backing.len());
        backing.write(0, &shadow);
        Self {
            devs: [d0, d1],
            env,
            backing,
            ioas,
            target,
            model: Model::default(),
            shadow,
            huge,
        }
    }

    /// IOAS_MAP of `len` bytes at user address `uaddr`; the model gets the area if the
    /// kernel made it, which must be where the model has none.
    fn map(
        &mut self,
        which: usize,
        uaddr: u64,
        len: u64,
        fixed: Option<u64>,
        prot: u8,
    ) -> Result<(), TestCaseError> {
        let got = self
            .env
            .map_va(self.ioas[which], uaddr, len, fixed, flags_of(prot));
        if let Ok(iova) = got {
            prop_assert!(
                self.model.is_free(which, iova, len),
                "IOAS_MAP at {iova:#x} over an area the model has"
            );
            self.model.ioas[which].insert(
                iova,
                Area {
                    iova,
                    len,
                    uaddr,
                    read: prot & 1 != 0,
                    write: prot & 2 != 0,
                    pages_writable: prot & 2 != 0,
                },
            );
        }
        Ok(())
    }

    /// IOAS_UNMAP, which must answer what the model does.
    fn unmap(&mut self, which: usize, iova: u64, len: u64) -> Result<(), TestCaseError> {
        let got = self.env.unmap(self.ioas[which], iova, len);
        let want = self.model.unmap(which, iova, len);
        prop_assert_eq!(got, want, "IOAS_UNMAP {:#x}+{:#x}", iova, len);
        Ok(())
    }

    fn step(&mut self, step: &DmaStep) -> Result<(), TestCaseError> {
        match *step {
            DmaStep::Map {
                side,
                page,
                offset,
                pages,
                iova,
                prot,
            } => {
                let uaddr = self.backing.addr(page as usize * PAGE + offset as usize);
                let fixed = iova.map(|p| p as u64 * PAGE64);
                self.map(side as usize, uaddr, pages as u64 * PAGE64, fixed, prot)?;
            }
            DmaStep::Unmap {
                side,
                page,
                offset,
                pages,
            } => {
                let iova = page as u64 * PAGE64 + offset as u64;
                self.unmap(side as usize, iova, pages as u64 * PAGE64)?;
            }
            DmaStep::UnmapAll { side } => self.unmap(side as usize, 0, u64::MAX)?,
            DmaStep::MapHuge { side, slot, prot } => {
                if let Some(window) = self.huge {
                    let iova = (slot as u64 + 1) * HUGE;
                    self.map(
                        side as usize,
                        self.backing.addr(window),
                        HUGE,
                        Some(iova),
                        prot,
                    )?;
                }
            }
            DmaStep::UnmapHuge { side, slot, pages } => {
                let iova = (slot as u64 + 1) * HUGE;
                self.unmap(side as usize, iova, pages as u64 * PAGE64)?;
            }
            DmaStep::Copy {
                from_side,
                to_side,
                src_area,
                src_page,
                pages,
                dst_page,
                prot,
            } => {
                let (src, dst) = (from_side as usize, to_side as usize);
                let areas: Vec<u64> = self.model.ioas[src].keys().copied().collect();
                let src_iova = match src_area {
                    Some(i) if !areas.is_empty() => areas[i.index(areas.len())],
                    _ => src_page as u64 * PAGE64,
                };
                let len = pages as u64 * PAGE64;
                let fixed = dst_page.map(|p| p as u64 * PAGE64);
                let got = self.env.fd.ioas_copy(
                    self.ioas[dst],
                    self.ioas[src],
                    src_iova,
                    len,
                    fixed,
                    flags_of(prot),
                );
                if let Ok(dst_iova) = got {
                    let pieces = self.model.pieces(src, src_iova, len);
                    prop_assert!(
                        pieces.is_some(),
                        "IOAS_COPY from a range the model has gaps in"
                    );
                    prop_assert!(
                        self.model.is_free(dst, dst_iova, len),
                        "IOAS_COPY to {dst_iova:#x} over an area the model has"
                    );
                    let mut at = dst_iova;
                    for (uaddr, n, pages_writable) in pieces.expect("checked") {
                        let area = Area {
                            iova: at,
                            len: n,
                            uaddr,
                            read: prot & 1 != 0,
                            write: prot & 2 != 0,
                            pages_writable,
                        };
                        prop_assert!(
                            pages_writable || !area.write,
                            "IOAS_COPY made a writeable mapping of pages mapped read-only"
                        );
                        self.model.ioas[dst].insert(at, area);
                        at += n;
                    }
                }
            }
            DmaStep::Attach { dev } => {
                let dev = dev as usize;
                if self.devs[dev].attach_pt(self.target).is_ok() {
                    self.model.attached[dev] = true;
                }
            }
            DmaStep::Detach { dev } => {
                let dev = dev as usize;
                let r = self.devs[dev].detach_pt().map_err(uapi_support::err);
                prop_assert_eq!(r, Ok(()), "detach");
                self.model.attached[dev] = false;
            }
            DmaStep::Read { dev, at, len } => {
                let iova = self.iova(at);
                self.dma(dev as usize, iova, len, None)?;
            }
            DmaStep::Write { dev, at, len, seed } => {
                let iova = self.iova(at);
                let data = pattern(seed as u64 ^ iova, len);
                self.dma(dev as usize, iova, len, Some(data))?;
            }
        }
        // Whatever the step, the user memory holds exactly what the model says.
        if let Some(i) = self.backing.first_difference(&self.shadow) {
            return Err(TestCaseError::fail(format!(
                "backing byte {:#x} is {:#x}, the model says {:#x}, after {:?}",
                i,
                self.backing.read(i, 1)[0],
                self.shadow[i],
                step
            )));
        }
        Ok(())
    }

    fn iova(&self, at: At) -> u64 {
        match at {
            At::Area { area, off, edge } => {
                let areas: Vec<&Area> = self.model.ioas[0].values().collect();
                if areas.is_empty() {
                    return off as u64;
                }
                let a = areas[area.index(areas.len())];
                match edge {
                    false => a.iova + off as u64 % a.len,
                    true => a
                        .iova
                        .wrapping_sub(PAGE64)
                        .wrapping_add(off as u64 % (a.len + 2 * PAGE64)),
                }
            }
            At::Page(p, off) => p as u64 * PAGE64 + off as u64,
            At::Huge(slot, off) => (slot as u64 + 1) * HUGE + off as u64 % HUGE,
            At::Any(v) => v,
        }
    }

    /// Device `dev` reads (`data` None) or writes `len` bytes at `iova`. The platform
    /// splits the access at 4 KiB IOVA boundaries and stops at the first refused piece,
    /// as PCIe requests would: every piece before it lands, none after.
    fn dma(
        &mut self,
        dev: usize,
        iova: u64,
        len: usize,
        data: Option<Vec<u8>>,
    ) -> Result<(), TestCaseError> {
        let write = data.is_some();
        let mut landed: Vec<(usize, Range<usize>)> = Vec::new();
        let mut refused = false;
        for (at, range) in page_chunks(iova, len) {
            let Some(uaddr) = self.model.target(dev, at, range.len(), write) else {
                refused = true;
                break;
            };
            let off = self.backing.offset_of(uaddr);
            prop_assert!(
                off.is_some_and(|o| o + range.len() <= self.backing.len()),
                "the model maps IOVA {at:#x} outside the backing buffer"
            );
            landed.push((off.expect("checked"), range));
        }
        let sent = SentDma {
            dev,
            iova,
            data: data.as_deref(),
            len,
            label: "DMA",
        };
        send_dma(&self.env.platform, sent, &landed, refused, &mut self.shadow)
    }
}

/// MAP/COPY flags from `prot` bits (0 readable, 1 writeable).
fn flags_of(prot: u8) -> MapFlags {
    let mut f = MapFlags::empty();
    f.set(MapFlags::READABLE, prot & 1 != 0);
    f.set(MapFlags::WRITEABLE, prot & 2 != 0);
    f
}

/// `len` pseudo-random bytes from `seed` (xorshift), so every byte says where it came
/// from.
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Where every case starts, so DMA has something to go through from its first step: both
/// devices attached; four read-write pages at IOVA 0, a read-only page at IOVA page 8 and a
/// write-only one at page 10 in the devices' IOAS; two pages in the side IOAS.
const PRELUDE: [DmaStep; 6] = [
    DmaStep::Attach { dev: false },
    DmaStep::Attach { dev: true },
    DmaStep::Map {
        side: false,
        page: 0,
        offset: 0,
        pages: 4,
        iova: Some(0),
        prot: 3,
    },
    DmaStep::Map {
        side: false,
        page: 4,
        offset: 0,
        pages: 1,
        iova: Some(8),
        prot: 1,
    },
    DmaStep::Map {
        side: false,
        page: 5,
        offset: 0,
        pages: 1,
        iova: Some(10),
        prot: 2,
    },
    DmaStep::Map {
        side: true,
        page: 6,
        offset: 0,
        pages: 2,
        iova: Some(0),
        prot: 3,
    },
];

fn via() -> impl Strategy<Value = Via> {
    prop_oneof![Just(Via::Auto), Just(Via::Paging)]
}

// ---------------------------------------------------------------------------------------
// Property 5: DMA through a nested HWPT against a shadow model of both stages.

/// Pages of the backing buffer that hold the guest's stage-1 tables (GPA
/// [`NEST_TABLE_GPA`] on), then the data pages stage 2 may map; the guard page follows.
const NEST_TABLE_PAGES: usize = 16;
const NEST_DATA_PAGES: usize = 16;
const NEST_TABLE_BYTES: usize = NEST_TABLE_PAGES * PAGE;
/// Where stage 2 maps the table pages, far above every data GPA.
const NEST_TABLE_GPA: u64 = 0x100_0000;
/// GPA pages (from 0) the data mappings start in.
const NEST_GPA_PAGES: u8 = 24;
/// The IOVA regions stage 1 maps pages in: different PML4, PDPT and PD slots, so the
/// walks cross distinct tables at every level, and the last 2 MiB of the lower half.
const S1_REGIONS: [u64; 4] = [0, 0x4020_0000, 0x1234_5600_0000, 0x7FFF_FFE0_0000];
/// Pages per region stage 1 may map; DMAs also reach the two pages after them.
const S1_REGION_PAGES: u8 = 8;
const S1_SLOTS: u8 = S1_REGIONS.len() as u8 * S1_REGION_PAGES;
/// First-stage entry bits: present, R/W, and the flags the hardware sets (no EAFE, so
/// never EA).
const FS_P: u64 = 1;
const FS_RW: u64 = 1 << 1;
const FS_HW: u64 = FsEntry::A | FsEntry::D;

/// The IOVA of stage-1 slot `slot`.
fn s1_iova(slot: u8) -> u64 {
    S1_REGIONS[(slot / S1_REGION_PAGES) as usize] + (slot % S1_REGION_PAGES) as u64 * PAGE64
}

/// A stage-2 mapping: `pages` data pages from `data_page` at GPA page `gpa_page`.
#[derive(Clone, Copy, Debug)]
struct S2Map {
    gpa_page: u8,
    data_page: u8,
    pages: u8,
    prot: u8,
}

fn s2_map() -> impl Strategy<Value = S2Map> {
    let prot = prop_oneof![6 => Just(3u8), 2 => Just(1u8), 2 => Just(2u8), 1 => Just(0u8)];
    (0..NEST_GPA_PAGES, 0..NEST_DATA_PAGES as u8, 1u8..=4, prot).prop_map(
        |(gpa_page, data_page, pages, prot)| S2Map {
            gpa_page,
            data_page,
            pages,
            prot,
        },
    )
}

/// What a stage-1 leaf points at: a page of a stage-2 area (mostly), or any GPA page,
/// mapped or not.
#[derive(Clone, Copy, Debug)]
enum Gpa {
    Area(Index, u8),
    Page(u8),
}

#[derive(Clone, Copy, Debug)]
struct S1Leaf {
    slot: u8,
    gpa: Gpa,
    write: bool,
}

fn s1_leaf() -> impl Strategy<Value = S1Leaf> {
    let gpa = prop_oneof![
        5 => (any::<Index>(), 0u8..4).prop_map(|(i, p)| Gpa::Area(i, p)),
        1 => (0..NEST_GPA_PAGES + 8).prop_map(Gpa::Page),
    ];
    (
        0..S1_SLOTS,
        gpa,
        prop_oneof![3 => Just(true), 1 => Just(false)],
    )
        .prop_map(|(slot, gpa, write)| S1Leaf { slot, gpa, write })
}

/// How the guest invalidates after changing a stage-1 entry.
#[derive(Clone, Copy, Debug)]
enum S1Inv {
    /// The page, all levels.
    Page,
    /// The page, leaf only (IOMMU_VTD_INV_FLAGS_LEAF) when only the leaf changed.
    Leaf,
    All,
}

/// Where a nested DMA goes.
#[derive(Clone, Copy, Debug)]
enum NestAt {
    /// `off` bytes into a slot stage 1 maps (any slot if none).
    Mapped(Index, u16),
    /// `off` bytes into stage-1 slot `slot`.
    Slot(u8, u16),
    /// Page `page` (up to two past the slots) of region `region`, plus `off`.
    Region(u8, u8, u16),
    Any(u64),
}

#[derive(Clone, Copy, Debug)]
enum NestStep {
    Read {
        dev: bool,
        at: NestAt,
        len: usize,
    },
    Write {
        dev: bool,
        at: NestAt,
        len: usize,
        seed: u8,
    },
    /// The guest maps (or remaps) a slot, then invalidates.
    S1Map {
        leaf: S1Leaf,
        inv: S1Inv,
    },
    /// The guest clears a slot's leaf, then invalidates.
    S1Unmap {
        slot: u8,
        inv: S1Inv,
    },
}

fn nest_at() -> impl Strategy<Value = NestAt> {
    prop_oneof![
        6 => (any::<Index>(), 0u16..4096).prop_map(|(i, off)| NestAt::Mapped(i, off)),
        2 => (0..S1_SLOTS, 0u16..4096).prop_map(|(s, off)| NestAt::Slot(s, off)),
        2 => (0..S1_REGIONS.len() as u8, 0..S1_REGION_PAGES + 2, 0u16..4096)
            .prop_map(|(r, p, off)| NestAt::Region(r, p, off)),
        1 => one_of_u64(&[u64::MAX - 7, 1 << 47, 0xFEE0_0000, NEST_TABLE_GPA])
            .prop_map(NestAt::Any),
    ]
}

fn s1_inv() -> impl Strategy<Value = S1Inv> {
    prop_oneof![Just(S1Inv::Page), Just(S1Inv::Leaf), Just(S1Inv::All)]
}

fn nest_step() -> impl Strategy<Value = NestStep> {
    prop_oneof![
        6 => (any::<bool>(), nest_at(), dma_len())
            .prop_map(|(dev, at, len)| NestStep::Read { dev, at, len }),
        6 => (any::<bool>(), nest_at(), dma_len(), any::<u8>())
            .prop_map(|(dev, at, len, seed)| NestStep::Write { dev, at, len, seed }),
        2 => (s1_leaf(), s1_inv()).prop_map(|(leaf, inv)| NestStep::S1Map { leaf, inv }),
        1 => (0..S1_SLOTS, s1_inv()).prop_map(|(slot, inv)| NestStep::S1Unmap { slot, inv }),
    ]
}

/// A stage-2 area: GPA range, where its bytes are in the backing buffer, rights.
#[derive(Clone, Copy, Debug)]
struct S2Area {
    gpa: u64,
    len: u64,
    off: usize,
    read: bool,
    write: bool,
}

/// The shadow model of both stages.
#[derive(Default)]
struct NestModel {
    s2: BTreeMap<u64, S2Area>,
    /// Stage 1: IOVA page → (GPA page, writeable).
    s1: BTreeMap<u64, (u64, bool)>,
}

impl NestModel {
    fn s2_overlaps(&self, gpa: u64, len: u64) -> bool {
        self.s2
            .values()
            .any(|a| a.gpa < gpa + len && gpa < a.gpa + a.len)
    }

    /// The backing offset a device access of `n` bytes at `iova` reaches, or `None` if
    /// either stage refuses it. The access never crosses a 4 KiB page, and stage-2 areas
    /// are page-aligned, so one stage-1 leaf and one area hold all of it.
    fn target(&self, iova: u64, n: usize, write: bool) -> Option<usize> {
        let &(gpa_page, s1_write) = self.s1.get(&(iova & !(PAGE64 - 1)))?;
        if write && !s1_write {
            return None;
        }
        let gpa = gpa_page + (iova % PAGE64);
        let last = gpa + n as u64 - 1;
        let area = self
            .s2
            .values()
            .find(|a| a.gpa <= gpa && last < a.gpa + a.len)?;
        let allowed = if write { area.write } else { area.read };
        allowed.then(|| area.off + (gpa - area.gpa) as usize)
    }
}

/// Property 5's world: `nic0` and `ssd0` attached to one nested HWPT whose parent is a
/// nest-parent HWPT on the IOAS; the guest's stage-1 tables are built in a scratch
/// memory by GPA and copied, one changed entry at a time, into the table pages of the
/// backing buffer, as a guest writes its tables.
struct NestWorld {
    devs: [VfioDevice<VfioDeviceFile>; 2],
    env: Env,
    /// Dropped after the iommufd, which pins it.
    backing: Guarded,
    nested: u32,
    /// The guest's view of its tables (by GPA), without the hardware's A/D bits.
    scratch: SparseMem,
    model: NestModel,
    /// What every byte of `backing` must hold; in the table pages, what the guest last
    /// wrote (the hardware may only have set A/D bits since).
    shadow: Vec<u8>,
}

impl NestWorld {
    fn new(
        seed: u64,
        parent_first: bool,
        s2: &[S2Map],
        s1: &[S1Leaf],
    ) -> Result<Self, TestCaseError> {
        let env = Env::spr();
        let (d0, id0) = env.bind(0);
        let (d1, _) = env.bind(1);
        let ioas = env.ioas();
        let backing = Guarded::new(NEST_TABLE_PAGES + NEST_DATA_PAGES);
        let mut shadow = vec![0u8; NEST_TABLE_BYTES];
        shadow.extend(pattern(seed, NEST_DATA_PAGES * PAGE));
        backing.write(0, &shadow);
        let mut parent = parent_first.then(|| env.parent(id0, ioas));
        let mut model = NestModel::default();

        let tables = env.map_va(
            ioas,
            backing.addr(0),
            NEST_TABLE_BYTES as u64,
            Some(NEST_TABLE_GPA),
            RW,
        );
        prop_assert_eq!(tables, Ok(NEST_TABLE_GPA), "IOAS_MAP of the table pages");
        for m in s2 {
            let pages = m.pages.min(NEST_DATA_PAGES as u8 - m.data_page) as u64;
            let (gpa, len) = (m.gpa_page as u64 * PAGE64, pages * PAGE64);
            let off = NEST_TABLE_BYTES + m.data_page as usize * PAGE;
            let got = env.map_va(ioas, backing.addr(off), len, Some(gpa), flags_of(m.prot));
            // ioas.c refuses no rights first; iopt_alloc_area a used IOVA; the driver,
            // mapping into the nest parent, a read-only area (KS §4.1).
            let want = if m.prot == 0 {
                Err(Errno::EINVAL)
            } else if model.s2_overlaps(gpa, len) {
                Err(Errno::EEXIST)
            } else if parent.is_some() && m.prot == 1 {
                Err(Errno::EINVAL)
            } else {
                Ok(gpa)
            };
            prop_assert_eq!(got, want, "stage-2 IOAS_MAP {:?}", m);
            if got.is_ok() {
                let (read, write) = (m.prot & 1 != 0, m.prot & 2 != 0);
                model.s2.insert(
                    gpa,
                    S2Area {
                        gpa,
                        len,
                        off,
                        read,
                        write,
                    },
                );
            }
        }
        if parent.is_none() {
            // A nest parent on an IOAS with a read-only area is refused whole (KS §3.2
            // step 8); the VMM drops those areas and tries again.
            let read_only: Vec<S2Area> = model.s2.values().filter(|a| !a.write).copied().collect();
            let got = env.paging(id0, ioas, HwptAllocFlags::NEST_PARENT);
            if read_only.is_empty() {
                prop_assert!(got.is_ok(), "nest parent: {:?}", got);
            } else {
                prop_assert_eq!(got, Err(Errno::EINVAL), "nest parent over read-only areas");
                for a in &read_only {
                    prop_assert_eq!(env.unmap(ioas, a.gpa, a.len), Ok(a.len));
                    model.s2.remove(&a.gpa);
                }
            }
            parent = Some(
                got.or_else(|_| env.paging(id0, ioas, HwptAllocFlags::NEST_PARENT))
                    .expect("nest parent without read-only areas"),
            );
        }
        let parent = parent.expect("allocated above");

        let scratch = SparseMem::with_alloc_base(NEST_TABLE_GPA);
        let root = PageTable::physical(&scratch, &scratch, Format::FirstStage, 4).root();
        assert_eq!(root, NEST_TABLE_GPA, "the PML4 is the first table page");
        let nested = env
            .nested(id0, parent, &VtdS1::new(root))
            .expect("nested HWPT");
        let mut world = Self {
            devs: [d0, d1],
            env,
            backing,
            nested,
            scratch,
            model,
            shadow,
        };
        for leaf in s1 {
            world.s1_map(leaf);
        }
        world.sync_tables();
        for dev in &world.devs {
            let r = dev.attach_pt(nested).map_err(uapi_support::err);
            prop_assert_eq!(r, Ok(nested), "attach to the nested HWPT");
        }
        world.check_memory(&"setup")?;
        Ok(world)
    }

    fn table(&self) -> PageTable<'_, SparseMem> {
        PageTable::open_physical(
            &self.scratch,
            &self.scratch,
            Format::FirstStage,
            4,
            NEST_TABLE_GPA,
        )
    }

    fn gpa_of(&self, gpa: Gpa) -> u64 {
        match gpa {
            Gpa::Area(i, page) if !self.model.s2.is_empty() => {
                let areas: Vec<&S2Area> = self.model.s2.values().collect();
                let a = areas[i.index(areas.len())];
                a.gpa + (page as u64 % (a.len / PAGE64)) * PAGE64
            }
            Gpa::Area(_, page) | Gpa::Page(page) => page as u64 * PAGE64,
        }
    }

    /// Map the slot in the scratch tables and the model; true if only its leaf changed
    /// (the tables down to it were there).
    fn s1_map(&mut self, leaf: &S1Leaf) -> bool {
        let (iova, gpa) = (s1_iova(leaf.slot), self.gpa_of(leaf.gpa));
        let rights = if leaf.write {
            Leaf::read_write()
        } else {
            Leaf::read_only()
        };
        let mut t = self.table();
        let leaf_only = t.path(iova).expect("scratch walk").len() == 4;
        t.map(iova, gpa, PageSize::Size4K, rights)
            .expect("stage-1 map in scratch");
        drop(t);
        self.model.s1.insert(iova, (gpa, leaf.write));
        leaf_only
    }

    /// Copy every table word that differs from what the guest last wrote into the backing
    /// buffer, as the guest's stores.
    fn sync_tables(&mut self) {
        assert!(
            self.scratch.backed_pages() <= NEST_TABLE_PAGES,
            "the stage-1 tables outgrew the table pages"
        );
        for off in (0..NEST_TABLE_BYTES).step_by(8) {
            let v = self
                .scratch
                .read_u64(NEST_TABLE_GPA + off as u64)
                .unwrap_or(0);
            if v.to_le_bytes() != self.shadow[off..off + 8] {
                self.backing.write(off, &v.to_le_bytes());
                self.shadow[off..off + 8].copy_from_slice(&v.to_le_bytes());
            }
        }
    }

    /// IOMMU_HWPT_INVALIDATE after a change of `iova`'s stage-1 entries.
    fn invalidate(&self, iova: u64, inv: S1Inv, leaf_only: bool) -> Result<(), TestCaseError> {
        let e = match inv {
            S1Inv::Page => VtdS1Invalidate::range(iova, PAGE64),
            S1Inv::Leaf if leaf_only => VtdS1Invalidate::range(iova, PAGE64).leaf_only(),
            S1Inv::Leaf => VtdS1Invalidate::range(iova, PAGE64),
            S1Inv::All => VtdS1Invalidate::all(),
        };
        let r = self
            .env
            .fd
            .hwpt_invalidate(self.nested, &[e])
            .map_err(uapi_support::err);
        prop_assert_eq!(r, Ok(1), "HWPT_INVALIDATE {:?}", e);
        Ok(())
    }

    fn iova(&self, at: NestAt) -> u64 {
        match at {
            NestAt::Mapped(i, off) => {
                let mapped: Vec<u64> = self.model.s1.keys().copied().collect();
                match mapped.is_empty() {
                    true => s1_iova(0) + off as u64,
                    false => mapped[i.index(mapped.len())] + off as u64,
                }
            }
            NestAt::Slot(slot, off) => s1_iova(slot) + off as u64,
            NestAt::Region(r, page, off) => {
                S1_REGIONS[r as usize] + page as u64 * PAGE64 + off as u64
            }
            NestAt::Any(v) => v,
        }
    }

    fn step(&mut self, step: &NestStep) -> Result<(), TestCaseError> {
        match *step {
            NestStep::Read { dev, at, len } => {
                self.dma(dev as usize, self.iova(at), len, None)?;
            }
            NestStep::Write { dev, at, len, seed } => {
                let iova = self.iova(at);
                let data = pattern(seed as u64 ^ iova, len);
                self.dma(dev as usize, iova, len, Some(data))?;
            }
            NestStep::S1Map { leaf, inv } => {
                let leaf_only = self.s1_map(&leaf);
                self.sync_tables();
                self.invalidate(s1_iova(leaf.slot), inv, leaf_only)?;
            }
            NestStep::S1Unmap { slot, inv } => {
                let iova = s1_iova(slot);
                self.table().unmap(iova).expect("scratch unmap");
                self.model.s1.remove(&iova);
                self.sync_tables();
                self.invalidate(iova, inv, true)?;
            }
        }
        self.check_memory(step)
    }

    /// The backing offsets of the stage-1 entries a walk of `iova` reads, top first.
    fn s1_path(&self, iova: u64) -> Vec<usize> {
        self.table()
            .path(iova)
            .expect("scratch walk")
            .iter()
            .map(|&(_, gpa, _)| (gpa - NEST_TABLE_GPA) as usize)
            .collect()
    }

    fn backing_word(&self, off: usize) -> u64 {
        u64::from_le_bytes(self.backing.read(off, 8).try_into().expect("8 bytes"))
    }

    /// Device `dev` reads (`data` None) or writes `len` bytes at `iova`, piece by 4 KiB
    /// piece as the platform does, stopping at the first piece the model refuses. Every
    /// piece that went through has A set in each stage-1 entry of its walk, and D in its
    /// leaf if it was a write (§4.5).
    fn dma(
        &mut self,
        dev: usize,
        iova: u64,
        len: usize,
        data: Option<Vec<u8>>,
    ) -> Result<(), TestCaseError> {
        let write = data.is_some();
        let mut landed: Vec<(usize, Range<usize>)> = Vec::new();
        let mut refused = false;
        for (at, range) in page_chunks(iova, len) {
            let Some(off) = self.model.target(at, range.len(), write) else {
                refused = true;
                break;
            };
            prop_assert!(
                off >= NEST_TABLE_BYTES && off + range.len() <= self.backing.len(),
                "the model maps IOVA {at:#x} outside the data pages"
            );
            landed.push((off, range));
        }
        let sent = SentDma {
            dev,
            iova,
            data: data.as_deref(),
            len,
            label: "nested DMA",
        };
        send_dma(&self.env.platform, sent, &landed, refused, &mut self.shadow)?;
        let what = if write { "write" } else { "read" };
        for (_, range) in &landed {
            let at = iova.wrapping_add(range.start as u64);
            let path = self.s1_path(at);
            for (i, &e) in path.iter().enumerate() {
                let v = self.backing_word(e);
                prop_assert!(
                    v & FsEntry::A != 0,
                    "device {dev} {what} at {at:#x} went through stage-1 entry {:#x} = {v:#x} \
                     without setting A",
                    NEST_TABLE_GPA + e as u64
                );
                if write && i + 1 == path.len() {
                    prop_assert!(
                        v & FsEntry::D != 0,
                        "device {dev} wrote at {at:#x} through stage-1 leaf {:#x} = {v:#x} \
                         without setting D",
                        NEST_TABLE_GPA + e as u64
                    );
                }
            }
        }
        Ok(())
    }

    /// The data pages hold exactly what the model says. In the table pages each word is
    /// what the guest wrote, give or take A and D set by the hardware: none in a
    /// non-present entry, and D only in a present, writeable leaf of the model.
    fn check_memory(&self, after: &dyn std::fmt::Debug) -> Result<(), TestCaseError> {
        let now = self.backing.read(0, self.backing.len());
        if let Some(i) = (NEST_TABLE_BYTES..now.len()).find(|&i| now[i] != self.shadow[i]) {
            return Err(TestCaseError::fail(format!(
                "backing byte {:#x} is {:#x}, the model says {:#x}, after {:?}",
                i, now[i], self.shadow[i], after
            )));
        }
        let leaves: Vec<usize> = self
            .model
            .s1
            .keys()
            .filter_map(|&iova| self.s1_path(iova).last().copied())
            .collect();
        for off in (0..NEST_TABLE_BYTES).step_by(8) {
            let word = |b: &[u8]| u64::from_le_bytes(b[off..off + 8].try_into().expect("8"));
            let (cur, exp) = (word(&now), word(&self.shadow));
            let gpa = NEST_TABLE_GPA + off as u64;
            prop_assert!(
                (cur ^ exp) & !FS_HW == 0 && exp & !cur == 0,
                "stage-1 entry at GPA {gpa:#x} is {cur:#x}, the guest wrote {exp:#x}: more \
                 than A/D set, after {after:?}"
            );
            prop_assert!(
                exp & FS_P != 0 || cur == exp,
                "non-present stage-1 entry at GPA {gpa:#x} became {cur:#x}, after {after:?}"
            );
            prop_assert!(
                cur & !exp & FsEntry::D == 0 || (leaves.contains(&off) && cur & FS_RW != 0),
                "D set in stage-1 entry at GPA {gpa:#x} = {cur:#x}, not a writeable leaf, \
                 after {after:?}"
            );
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_calls_answer_ok_or_an_errno_linux_uses_for_that_call(
        machine in machine(),
        steps in vec(step(), 1..=MAX_STEPS),
    ) {
        let mut world = World::new(machine);
        for step in &steps {
            world.step(step, true)?;
        }
    }

    #[test]
    fn no_call_allocates_a_length_user_space_chose(
        machine in machine(),
        steps in vec(step(), 1..=MAX_STEPS),
    ) {
        let mut world = World::new(machine);
        for step in &steps {
            let (r, largest) = largest_allocation(|| world.step(step, false));
            r?;
            prop_assert!(
                largest <= ALLOC_LIMIT,
                "{:?} made an allocation of {} bytes",
                step.call,
                largest
            );
        }
    }

    #[test]
    fn after_random_calls_everything_tears_down_and_a_known_good_flow_still_works(
        machine in machine(),
        steps in vec(step(), 1..=MAX_STEPS),
    ) {
        let mut world = World::new(machine);
        for step in &steps {
            // Property 1 judges the answers; this one only what they leave behind.
            world.step(step, false)?;
        }
        world.tear_down()?;
        world.known_good_flow()?;
    }

    #[test]
    fn dma_reaches_exactly_the_user_bytes_the_mappings_name(
        via in via(),
        seed in any::<u64>(),
        large_pages in prop_oneof![2 => Just(false), 1 => Just(true)],
        steps in vec(dma_step(), 1..=MAX_STEPS),
    ) {
        let mut world = DmaWorld::new(via, seed, large_pages);
        for step in &PRELUDE {
            world.step(step)?;
        }
        if large_pages {
            let window = DmaStep::MapHuge { side: false, slot: 0, prot: 3 };
            world.step(&window)?;
            // The point of these cases: the domain maps the window with one large leaf.
            let t = world.env.platform.translate(0, None, HUGE, 8, Access::Read);
            prop_assert!(
                matches!(&t, Ok(t) if t.page_size == PageSize::Size2M),
                "the 2 MiB window is not one large page: {:?}",
                t
            );
        }
        for step in &steps {
            world.step(step)?;
        }
    }

    #[test]
    fn nested_dma_reaches_exactly_the_user_bytes_both_stages_name(
        seed in any::<u64>(),
        parent_first in prop_oneof![3 => Just(true), 1 => Just(false)],
        s2 in vec(s2_map(), 2..=10),
        s1 in vec(s1_leaf(), 0..=24),
        steps in vec(nest_step(), 1..=MAX_STEPS),
    ) {
        let mut world = NestWorld::new(seed, parent_first, &s2, &s1)?;
        for step in &steps {
            world.step(step)?;
        }
    }
}

/// One device DMA as a property sends it: a write of `data`, or a read of `len` bytes.
struct SentDma<'a> {
    dev: usize,
    iova: u64,
    data: Option<&'a [u8]>,
    len: usize,
    /// What failure messages call it.
    label: &'static str,
}

/// Send `sent` and check it against a shadow of the user memory. `landed` are the pieces
/// the model lets through, in order (offset in the user memory, byte range in the DMA);
/// `refused` says the model stops the DMA at the piece after them. A refused DMA must
/// fault, any other must succeed; a write changes the shadow where it landed, and a read
/// returns the shadow's bytes there.
fn send_dma(
    platform: &vtd_kernel::Platform,
    sent: SentDma<'_>,
    landed: &[(usize, Range<usize>)],
    refused: bool,
    shadow: &mut [u8],
) -> Result<(), TestCaseError> {
    let SentDma {
        dev,
        iova,
        data,
        len,
        label,
    } = sent;
    let mut buf = vec![0u8; len];
    let (what, r) = match data {
        Some(data) => {
            let r = platform.dma_write(dev, None, iova, data);
            for (off, range) in landed {
                shadow[*off..*off + range.len()].copy_from_slice(&data[range.clone()]);
            }
            ("write", r)
        }
        None => ("read", platform.dma_read(dev, None, iova, &mut buf)),
    };
    if refused {
        prop_assert!(
            matches!(r, Err(DmaError::Fault(_))),
            "device {dev} {label} {what} of {len} at {iova:#x}: {r:?}, the model refuses it"
        );
        return Ok(());
    }
    prop_assert!(
        r.is_ok(),
        "device {dev} {label} {what} of {len} at {iova:#x}: {r:?}"
    );
    if data.is_none() {
        for (off, range) in landed {
            prop_assert_eq!(
                &buf[range.clone()],
                &shadow[*off..*off + range.len()],
                "device {} {} read at {:#x}",
                dev,
                label,
                iova.wrapping_add(range.start as u64)
            );
        }
    }
    Ok(())
}
