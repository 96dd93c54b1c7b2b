//! DMA requests as the remapping unit receives them, and their translations.

use bitflags::bitflags;
use vtd_spec::addr::PageSize;

/// The access a request performs (§4.4, §5.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// A memory read.
    Read,
    /// A memory write.
    Write,
    /// An atomic read-modify-write: needs read and write permission.
    AtomicRmw,
}

impl Access {
    /// True when the access needs read permission.
    pub const fn needs_read(self) -> bool {
        matches!(self, Access::Read | Access::AtomicRmw)
    }

    /// True when the access needs write permission.
    pub const fn needs_write(self) -> bool {
        matches!(self, Access::Write | Access::AtomicRmw)
    }

    /// Lower-case name ("read", "write", "atomic").
    pub const fn name(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
            Access::AtomicRmw => "atomic",
        }
    }
}

/// The PCIe address type of a request (FRCD.AT).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum AddressType {
    /// 00b: an untranslated request, translated by the unit (default).
    #[default]
    Untranslated,
    /// 01b: an ATS translation request: the unit returns the translation to the device.
    TranslationRequest,
    /// 10b: a translated request carrying an address the device's TLB translated.
    Translated,
}

impl AddressType {
    /// The two-bit AT encoding.
    pub const fn bits(self) -> u8 {
        match self {
            AddressType::Untranslated => 0,
            AddressType::TranslationRequest => 1,
            AddressType::Translated => 2,
        }
    }
}

/// A DMA request arriving at the remapping unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Request {
    /// Source id: bus in bits 15:8, device in 7:3, function in 2:0.
    pub sid: u16,
    /// PASID of a request-with-PASID; `None` for a request-without-PASID.
    pub pasid: Option<u32>,
    /// Input address (IOVA, or guest IOVA under nesting).
    pub addr: u64,
    /// Length in bytes. Devices never cross a 4 KiB boundary in one request; the
    /// translation covers the page of `addr`. A zero-length read is allowed to a
    /// write-only page when CAP.ZLR is set.
    pub len: u32,
    /// What the request does.
    pub access: Access,
    /// Privileged (supervisor) request: PR of the PASID TLP prefix. Only meaningful with
    /// a PASID; a request-without-PASID takes its privilege from the context entry.
    pub privileged: bool,
    /// Execute requested: ER of the PASID TLP prefix. Only meaningful with a PASID.
    pub execute: bool,
    /// PCIe address type.
    pub address_type: AddressType,
}

impl Request {
    /// A user-mode, untranslated request-without-PASID of 4 bytes.
    pub const fn new(sid: u16, addr: u64, access: Access) -> Self {
        Self {
            sid,
            pasid: None,
            addr,
            len: 4,
            access,
            privileged: false,
            execute: false,
            address_type: AddressType::Untranslated,
        }
    }

    /// A read of `addr`.
    pub const fn read(sid: u16, addr: u64) -> Self {
        Self::new(sid, addr, Access::Read)
    }

    /// A write to `addr`.
    pub const fn write(sid: u16, addr: u64) -> Self {
        Self::new(sid, addr, Access::Write)
    }

    /// The same request carrying `pasid`.
    pub const fn with_pasid(mut self, pasid: u32) -> Self {
        self.pasid = Some(pasid);
        self
    }

    /// The same request as a privileged (supervisor) request.
    pub const fn privileged(mut self) -> Self {
        self.privileged = true;
        self
    }

    /// The same request with execute requested.
    pub const fn execute(mut self) -> Self {
        self.execute = true;
        self
    }

    /// The same request with length `len`.
    pub const fn with_len(mut self, len: u32) -> Self {
        self.len = len;
        self
    }

    /// The same request with address type `at`.
    pub const fn with_address_type(mut self, at: AddressType) -> Self {
        self.address_type = at;
        self
    }

    /// Bus number of the source id.
    pub const fn bus(&self) -> u8 {
        (self.sid >> 8) as u8
    }

    /// Device/function number of the source id.
    pub const fn devfn(&self) -> u8 {
        self.sid as u8
    }
}

bitflags! {
    /// Access rights a translation grants.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct Perms: u8 {
        /// Reads allowed.
        const READ = 1 << 0;
        /// Writes allowed.
        const WRITE = 1 << 1;
        /// Execute allowed.
        const EXECUTE = 1 << 2;
    }
}

impl Perms {
    /// True when these rights allow `access`.
    pub const fn allow(self, access: Access) -> bool {
        (!access.needs_read() || self.contains(Perms::READ))
            && (!access.needs_write() || self.contains(Perms::WRITE))
    }
}

/// How a translation was produced: the PASID entry's PGTT, or no translation at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TranslationKind {
    /// Remapping is disabled (GSTS.TES=0): the address passes unchanged.
    Disabled,
    /// Pass-through (PGTT=100b, or legacy TT=10b).
    PassThrough,
    /// First stage only (PGTT=001b).
    FirstStage,
    /// Second stage only (PGTT=010b, or legacy mode).
    SecondStage,
    /// Nested: first stage over second stage (PGTT=011b).
    Nested,
    /// A translated request (AT=10b) from a device with DTE=1: the address is already
    /// host-physical and passes unchanged.
    PreTranslated,
}

impl TranslationKind {
    /// Short name as the specification uses it.
    pub const fn name(self) -> &'static str {
        match self {
            TranslationKind::Disabled => "untranslated (remapping disabled)",
            TranslationKind::PassThrough => "pass-through",
            TranslationKind::FirstStage => "first-stage",
            TranslationKind::SecondStage => "second-stage",
            TranslationKind::Nested => "nested",
            TranslationKind::PreTranslated => "pre-translated (ATS)",
        }
    }
}

/// A successful translation of one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Translation {
    /// Host physical address of the request's input address.
    pub hpa: u64,
    /// The page size over which this translation holds: the smaller of the stages' pages.
    pub page_size: PageSize,
    /// The rights this requester has on the page (both stages combined).
    pub perms: Perms,
    /// How the address was translated.
    pub kind: TranslationKind,
    /// Domain id tagging the cache entries of this translation, if any.
    pub did: Option<u16>,
    /// Guest-physical address under nesting (the first stage's output).
    pub gpa: Option<u64>,
    /// The translation was served from the IOTLB without a page walk.
    pub from_iotlb: bool,
}

impl Translation {
    /// Host physical base of the page holding the translated address.
    pub const fn page_base(&self) -> u64 {
        self.page_size.align_down(self.hpa)
    }

    /// Bytes from the translated address to the end of its page.
    pub const fn bytes_to_page_end(&self) -> u64 {
        self.page_size.bytes() - (self.hpa & self.page_size.offset_mask())
    }
}
