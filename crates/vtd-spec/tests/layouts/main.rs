//! Layout tests for `vtd-spec` against the project's hardware reference
//! (`shared/spec/vtd-hardware.md`).
//!
//! Every expected raw value is written by hand from the bit numbers in the reference's
//! tables (section given next to each group of tests), never computed with the accessors
//! under test. Multi-qword entries use absolute bit numbers, as the reference does: bit 64
//! is bit 0 of the second qword. For the high half of a PASID entry (bits 255:128) the
//! expected values are written as `value << (absolute_bit - 128)`.

mod descriptors;
mod faults;
mod golden;
mod paging;
mod registers;
mod reserved;
mod tables;
