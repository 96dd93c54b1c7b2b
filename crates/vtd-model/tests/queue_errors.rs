//! Invalidation-queue errors and mechanics (§1.8, §1.10, §8.2): a malformed descriptor or
//! tail sets FSTS.IQE with the reason in IQERCD.IQEI, IQH stays at the offending
//! descriptor, nothing after it runs until software clears IQE, and the fault event is
//! raised. Also: the queue wraps around the end of the ring.

mod inv_support;

use inv_support::{Rig, Space, desc, hpa};
use vtd_model::build::InvalidationQueue;
use vtd_model::mem::{PhysMem, SparseMem};
use vtd_model::regs::{EventKind, Msi};
use vtd_spec::inv::{IotlbInvDesc, RawDescriptor};
use vtd_spec::regs::{IotlbGranularity, QueueIndex, offset};

const SID_A: u16 = 0x0018;
const DID_1: u16 = 1;
const PASID_1: u32 = 1;
const X: u64 = 0x7000_0000;
/// FSTS.IQE (bit 4).
const IQE: u32 = 1 << 4;

/// FSTS.IQE as a guest reads it over MMIO.
fn iqe(rig: &Rig) -> bool {
    rig.fsts() & IQE != 0
}

/// IQERCD.IQEI as a guest reads it over MMIO.
fn iqei(rig: &Rig) -> u64 {
    rig.read64(offset::IQERCD) & 0xF
}

/// IQH as a byte offset into the queue.
fn iqh(rig: &Rig) -> u64 {
    QueueIndex::from_bits(rig.read64(offset::IQH)).byte_offset()
}

fn iqt(rig: &Rig) -> u64 {
    QueueIndex::from_bits(rig.read64(offset::IQT)).byte_offset()
}

/// Base address of the queue, from IQA.
fn queue_base(rig: &Rig) -> u64 {
    rig.read64(offset::IQA) & !0xFFF
}

/// Software clears IQE: write 1 to FSTS bit 4.
fn clear_iqe(rig: &Rig) {
    rig.write32(offset::FSTS, IQE);
}

/// Overwrite the 128-bit slot at byte offset `at` of a 128-bit queue.
fn rewrite_slot(rig: &Rig, at: u64, d: RawDescriptor) {
    rig.mem().write_u128(queue_base(rig) + at, d.lo).unwrap();
}

fn status_page(rig: &Rig) -> u64 {
    rig.mem().alloc_page()
}

fn status(rig: &Rig, page: u64) -> u32 {
    rig.mem().read_u64(page).unwrap() as u32
}

/// An IOTLB descriptor with bit 40 set: inside bits 63:32, which §8.3 type 2 leaves
/// undefined (reserved).
fn iotlb_with_reserved_bit() -> RawDescriptor {
    desc::raw(
        IotlbInvDesc::new()
            .with_g(IotlbGranularity::Global)
            .into_bits()
            | 1 << 40,
    )
}

/// PASID 1 of `SID_A`: `X` translated once (cached), then remapped from `hpa(0)` to
/// `hpa(100)`. A PASID-IOTLB or IOTLB invalidation that runs makes `hpa(100)` appear.
fn remapped(rig: &Rig) -> Space {
    let s = rig.first_stage(SID_A, PASID_1, DID_1);
    rig.map(&s, X, hpa(0));
    rig.translate(&s, X).unwrap();
    rig.map(&s, X, hpa(100));
    s
}

// ---------------------------------------------------------------------------------------
// IQEI codes (§1.10)
// ---------------------------------------------------------------------------------------

#[test]
fn unknown_descriptor_type_sets_iqe_with_iqei_3() {
    let rig = Rig::new();
    let mut q = rig.queue(false);

    q.submit(&[desc::raw(0xF)]).unwrap();

    assert!(iqe(&rig));
    assert_eq!(iqei(&rig), 3);
}

#[test]
fn reserved_field_set_in_a_descriptor_sets_iqe_with_iqei_4() {
    let rig = Rig::new();
    let mut q = rig.queue(false);

    q.submit(&[iotlb_with_reserved_bit()]).unwrap();

    assert!(iqe(&rig));
    assert_eq!(iqei(&rig), 4);
}

#[test]
fn nonzero_upper_half_in_a_256_bit_queue_sets_iqe_with_iqei_4() {
    // §8.3: qwords 2–3 are reserved in 256-bit mode.
    let rig = Rig::new();
    let mut q = rig.queue(true);

    q.submit(&[RawDescriptor {
        lo: desc::iotlb_global().lo,
        hi: 1,
    }])
    .unwrap();

    assert!(iqe(&rig));
    assert_eq!(iqei(&rig), 4);
}

#[test]
fn pasid_based_descriptor_in_a_128_bit_queue_sets_iqe_with_iqei_5() {
    let rig = Rig::new();
    let mut q = rig.queue(false);

    q.submit(&[desc::piotlb_pasid(DID_1, PASID_1)]).unwrap();

    assert!(iqe(&rig));
    assert_eq!(iqei(&rig), 5);
}

#[test]
fn pasid_cache_descriptor_in_a_128_bit_queue_sets_iqe_with_iqei_5() {
    let rig = Rig::new();
    let mut q = rig.queue(false);

    q.submit(&[desc::pc_global()]).unwrap();

    assert!(iqe(&rig));
    assert_eq!(iqei(&rig), 5);
}

#[test]
fn tail_beyond_the_queue_sets_iqe_with_iqei_1_and_runs_nothing() {
    let rig = Rig::new();
    let page = status_page(&rig);
    let _q = rig.queue(false);
    rewrite_slot(&rig, 0, desc::wait_status(page, 1));

    // One 4 KiB page (QS=0) holds offsets 0..0x1000.
    rig.write64(offset::IQT, 0x1000);

    assert!(iqe(&rig));
    assert_eq!(iqei(&rig), 1);
    assert_eq!(iqh(&rig), 0);
    assert_eq!(status(&rig, page), 0);
}

#[test]
fn tail_not_256_bit_aligned_in_a_256_bit_queue_sets_iqe_with_iqei_6() {
    let rig = Rig::new();
    let _q = rig.queue(true);

    rig.write64(offset::IQT, 0x10);

    assert!(iqe(&rig));
    assert_eq!(iqei(&rig), 6);
    assert_eq!(iqh(&rig), 0);
}

#[test]
fn wait_descriptor_without_sw_if_or_fn_is_rejected_with_iqe() {
    // §8.3 type 5: SW=IF=FN=0 is invalid.
    let rig = Rig::new();
    let mut q = rig.queue(false);

    q.submit(&[desc::raw(vtd_spec::inv::InvWaitDesc::new().into_bits())])
        .unwrap();

    assert!(iqe(&rig));
    assert_eq!(iqh(&rig), 0);
}

// ---------------------------------------------------------------------------------------
// Stopping and resuming (§8.2)
// ---------------------------------------------------------------------------------------

/// A 128-bit queue holding, from offset 0: an IOTLB invalidation of unused domain 99, a
/// descriptor with a reserved bit set (offset 0x10), an IOTLB invalidation of domain 1
/// (which would make `hpa(100)` appear for `s`), and a wait writing status 1 to `page`.
/// The queue stopped at the second descriptor.
struct Stopped<'a> {
    rig: &'a Rig,
    q: InvalidationQueue<'a, SparseMem, SparseMem>,
    s: Space,
    page: u64,
}

fn stopped(rig: &Rig) -> Stopped<'_> {
    let s = remapped(rig);
    let page = status_page(rig);
    let mut q = rig.queue(false);
    q.submit(&[
        desc::iotlb_domain(99),
        iotlb_with_reserved_bit(),
        desc::iotlb_domain(DID_1),
        desc::wait_status(page, 1),
    ])
    .unwrap();
    Stopped { rig, q, s, page }
}

#[test]
fn iqh_stays_at_the_offending_descriptor() {
    let rig = Rig::new();

    let st = stopped(&rig);

    assert!(iqe(st.rig));
    assert_eq!(iqh(st.rig), 0x10);
    assert_eq!(iqt(st.rig), 0x40);
}

#[test]
fn descriptors_after_the_offending_one_are_not_executed() {
    let rig = Rig::new();

    let st = stopped(&rig);

    assert_eq!(status(st.rig, st.page), 0);
    assert_eq!(st.rig.served(&st.s, X), (hpa(0), true));
}

#[test]
fn queue_stays_stopped_when_software_moves_the_tail_while_iqe_is_set() {
    let rig = Rig::new();
    let mut st = stopped(&rig);
    let page2 = status_page(&rig);

    st.q.submit(&[desc::wait_status(page2, 2)]).unwrap();

    assert_eq!(iqh(st.rig), 0x10);
    assert_eq!(status(st.rig, page2), 0);
    assert_eq!(status(st.rig, st.page), 0);
}

#[test]
fn clearing_iqe_after_fixing_the_descriptor_resumes_fetching_at_iqh() {
    // §8.2: "fetching stops until IQE is cleared" — Linux (qi_check_fault) overwrites the
    // bad descriptor, clears FSTS.IQE and expects the queue to carry on from IQH.
    let rig = Rig::new();
    let st = stopped(&rig);
    rewrite_slot(st.rig, 0x10, desc::wait_fence());

    clear_iqe(st.rig);

    assert!(!iqe(st.rig));
    assert_eq!(iqh(st.rig), 0x40);
    assert_eq!(status(st.rig, st.page), 1);
    assert_eq!(st.rig.served(&st.s, X), (hpa(100), false));
}

#[test]
fn after_fixing_the_descriptor_and_clearing_iqe_the_next_tail_write_runs_the_rest() {
    let rig = Rig::new();
    let mut st = stopped(&rig);
    rewrite_slot(st.rig, 0x10, desc::wait_fence());
    clear_iqe(st.rig);
    let page2 = status_page(&rig);

    st.q.submit(&[desc::wait_status(page2, 2)]).unwrap();

    assert_eq!(iqh(st.rig), 0x50);
    assert_eq!((status(st.rig, st.page), status(st.rig, page2)), (1, 2));
    assert_eq!(st.rig.served(&st.s, X), (hpa(100), false));
}

// ---------------------------------------------------------------------------------------
// Fault event (§7.2 step 5, §8.2)
// ---------------------------------------------------------------------------------------

fn program_fault_msi(rig: &Rig, masked: bool) {
    rig.write32(offset::FEDATA, 0x66);
    rig.write32(offset::FEADDR, 0xFEE0_2000);
    rig.write32(offset::FEUADDR, 0);
    rig.write32(offset::FECTL, (masked as u32) << 31);
}

const FAULT_MSI: (EventKind, Msi) = (
    EventKind::Fault,
    Msi {
        addr: 0xFEE0_2000,
        data: 0x66,
    },
);

#[test]
fn queue_error_sends_the_fault_event_msi() {
    let rig = Rig::new();
    program_fault_msi(&rig, false);
    let mut q = rig.queue(false);

    q.submit(&[desc::raw(0xF)]).unwrap();

    assert_eq!(rig.irq.events(), vec![FAULT_MSI]);
}

#[test]
fn queue_error_while_fault_event_is_masked_sets_ip_and_sends_the_msi_on_unmask() {
    let rig = Rig::new();
    program_fault_msi(&rig, true);
    let mut q = rig.queue(false);
    q.submit(&[desc::raw(0xF)]).unwrap();
    let ip_while_masked = rig.read32(offset::FECTL) >> 30 & 1;
    let events_while_masked = rig.irq.events().len();

    rig.write32(offset::FECTL, 0);

    assert_eq!((ip_while_masked, events_while_masked), (1, 0));
    assert_eq!(rig.irq.events(), vec![FAULT_MSI]);
}

// ---------------------------------------------------------------------------------------
// Wrap-around (§8.2)
// ---------------------------------------------------------------------------------------

#[test]
fn batch_straddling_the_end_of_a_128_bit_ring_runs_in_order() {
    // One page holds 256 slots. Two batches of 120 fences (+1 wait each) leave the tail at
    // slot 242; the next batch fills 242..=255 with fences, wraps, and puts the IOTLB
    // invalidation in slot 0 and its wait in slot 1.
    let rig = Rig::new();
    let s = remapped(&rig);
    let mut q = rig.queue(false);
    q.submit_and_wait(&[desc::wait_fence(); 120]).unwrap();
    q.submit_and_wait(&[desc::wait_fence(); 120]).unwrap();
    let mut batch = vec![desc::wait_fence(); 14];
    batch.push(desc::iotlb_domain(DID_1));

    q.submit_and_wait(&batch).unwrap();

    assert_eq!((iqh(&rig), iqt(&rig)), (0x20, 0x20));
    assert!(!iqe(&rig));
    assert_eq!(rig.served(&s, X), (hpa(100), false));
}

#[test]
fn batch_straddling_the_end_of_a_256_bit_ring_runs_in_order() {
    // One page holds 128 slots of 32 bytes; the PASID-IOTLB invalidation lands in slot 0.
    let rig = Rig::new();
    let s = remapped(&rig);
    let mut q = rig.queue(true);
    q.submit_and_wait(&[desc::wait_fence(); 60]).unwrap();
    q.submit_and_wait(&[desc::wait_fence(); 60]).unwrap();
    let mut batch = vec![desc::wait_fence(); 6];
    batch.push(desc::piotlb_page(DID_1, PASID_1, X, 0, false));

    q.submit_and_wait(&batch).unwrap();

    assert_eq!((iqh(&rig), iqt(&rig)), (0x40, 0x40));
    assert!(!iqe(&rig));
    assert_eq!(rig.served(&s, X), (hpa(100), false));
}
