//! uAPI conformance: lengths user space chooses are walked in user memory, never
//! allocated. Linux checks a struct's tail past the kernel size with check_zeroed_user
//! (KS §1.2 step 5) and zero-fills GET_HW_INFO's buffer past the driver data with
//! clear_user (KS §2 step 5): any `size` or `data_len` up to 4 GiB costs the kernel no
//! memory, and the walk stops at the first non-zero byte or unreadable page. Found by
//! `prop_uapi` under an address-space limit, where the process aborted on a 4 GiB
//! allocation.

mod alloc_probe;
mod common;
mod prop_support;
mod uapi_support;

use alloc_probe::largest_allocation;
use prop_support::{Bytes, Guarded, PAGE};
use uapi_support::{Env, layout, nr, raw_ptr};
use vtd_iommufd::Errno;

/// Far more than any ioctl of these tests needs to allocate.
const SMALL: usize = 64 << 10;

#[test]
fn a_size_far_past_the_struct_is_checked_for_zeros_without_allocating_it() {
    let env = Env::spr();
    // IOMMU_DESTROY of id 1 with size u32::MAX: the 24 zero pages after the struct are
    // walked, then the guard page faults.
    let mem = Guarded::new(25);
    let mut cmd = Bytes::zeroed(8);
    cmd.u32(0, u32::MAX).u32(4, 1);
    mem.write(0, &cmd.0);
    let (r, largest) = largest_allocation(|| raw_ptr(env.fd.fd(), nr::IOMMU_DESTROY, mem.addr(0)));
    assert_eq!(r, Err(Errno::EFAULT));
    assert!(largest < SMALL, "the tail check allocated {largest} bytes");
}

#[test]
fn a_non_zero_tail_byte_before_an_unreadable_page_is_e2big() {
    let env = Env::spr();
    // The tail runs into the guard page, but its first non-zero byte comes before it:
    // check_zeroed_user stops there.
    let mem = Guarded::new(2);
    let mut cmd = Bytes::zeroed(8);
    cmd.u32(0, 3 * PAGE as u32).u32(4, 1);
    mem.write(0, &cmd.0);
    mem.write(PAGE + 100, &[1]);
    assert_eq!(
        raw_ptr(env.fd.fd(), nr::IOMMU_DESTROY, mem.addr(0)),
        Err(Errno::E2BIG)
    );
}

#[test]
fn hw_info_zero_fills_a_user_length_past_its_buffer_without_allocating_it() {
    use layout::hw_info::*;
    let env = Env::spr();
    let (_dev, dev_id) = env.bind(0);
    // Two pages of 0xFF for a data_len of u32::MAX: the driver's 24 bytes, zeros up to
    // the guard page, then EFAULT.
    let data = Guarded::new(2);
    data.write(0, &[0xFF; 2 * PAGE]);
    let arg = Guarded::new(1);
    let mut cmd = Bytes::zeroed(SIZE);
    cmd.u32(0, SIZE as u32)
        .u32(DEV_ID, dev_id)
        .u32(DATA_LEN, u32::MAX)
        .u64(DATA_UPTR, data.addr(0));
    let at = arg.put_at_end(&cmd.0);
    let (r, largest) = largest_allocation(|| raw_ptr(env.fd.fd(), nr::IOMMU_GET_HW_INFO, at));
    assert_eq!(r, Err(Errno::EFAULT));
    assert!(largest < SMALL, "the zero fill allocated {largest} bytes");
    assert_ne!(
        data.read(0, 24),
        vec![0xFF; 24],
        "the VT-d data is copied first"
    );
    assert!(
        data.read(24, 2 * PAGE - 24).iter().all(|&b| b == 0),
        "every byte up to the fault is zeroed"
    );
}
