//! The model never trusts memory or software: random bytes as tables, random register
//! writes and random invalidation-queue contents give results or errors, never a panic.
//!
//! Memory is a pool of backed pages at host address 0 whose words are random but biased
//! towards pointers back into the pool, so walks through "tables" made of noise go deep:
//! root, context, PASID directory and table, first- and second-stage entries, legacy and
//! scalable mode. Each page repeats a short random pattern (so every index of a table sees
//! one of a few words) with a few random words poked in.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use proptest::prelude::*;
use vtd_model::cache::{CacheConfig, Geometry, Replacement};
use vtd_model::config::{
    AdTiming, ModelSwitches, NestedSsAd, NonSnoopedAd, Spr17, SsPermissionFault, UnitConfig,
};
use vtd_model::mem::{PhysMem, SparseMem};
use vtd_model::regs::{EventKind, Msi};
use vtd_model::request::{Access, AddressType, Request};
use vtd_model::trace::{NoTrace, WalkRecorder};
use vtd_model::unit::InterruptSink;
use vtd_model::{Unit, build};
use vtd_spec::regs::{GlobalCommand, GlobalStatus, Iqei, Iqercd, RtAddr, offset};

/// Backed pages `[0, POOL_PAGES * 4 KiB)` hold the random tables.
const POOL_PAGES: u64 = 8;
/// Backed pages of the invalidation queue start here (when IQA points at them).
const QUEUE_BASE: u64 = 0x20_0000;
/// At most this many queue pages are backed; the rest of a larger queue is unbacked.
const QUEUE_BACKED_PAGES: u64 = 4;

// ---------------------------------------------------------------------------------------
// Random memory
// ---------------------------------------------------------------------------------------

/// A word of a table page: a raw value, or a pointer to pool page `page` with the low 12
/// bits `low` (present/permission/size flags, or noise).
#[derive(Clone, Copy, Debug)]
enum Word {
    Raw(u64),
    Ptr { page: u8, low: u16 },
}

impl Word {
    fn value(self) -> u64 {
        match self {
            Word::Raw(v) => v,
            Word::Ptr { page, low } => (page as u64) << 12 | (low & 0xFFF) as u64,
        }
    }
}

/// Noise: anything, or a pointer into the pool with noise around it.
fn noise_word() -> impl Strategy<Value = Word> {
    prop_oneof![
        3 => any::<u64>().prop_map(Word::Raw),
        3 => (0..POOL_PAGES as u8, 0u16..0x1000).prop_map(|(page, low)| Word::Ptr { page, low }),
        1 => (any::<u64>(), 0..POOL_PAGES)
            .prop_map(|(noise, p)| Word::Raw(noise & !0x000F_FFFF_FFFF_F000 | p << 12)),
        1 => Just(Word::Raw(0)),
        1 => Just(Word::Raw(u64::MAX)),
    ]
}

/// Low bits made of `set` (each bit 0–11 set with probability 1/2) plus bit 0 usually.
fn flags(set: u16) -> impl Strategy<Value = u16> {
    (any::<u16>(), prop::bool::weighted(0.95))
        .prop_map(move |(bits, present)| bits & set | present as u16)
}

/// A pointer to one of `pages` with flags from `set`, or noise.
fn ptr(pages: std::ops::Range<u8>, set: u16) -> impl Strategy<Value = Word> {
    prop_oneof![
        30 => (pages, flags(set)).prop_map(|(page, low)| Word::Ptr { page, low }),
        1 => noise_word(),
    ]
}

/// A small value (an AW, DID, RID_PASID, ... field), or noise.
fn small(max: u64) -> impl Strategy<Value = Word> {
    prop_oneof![
        3 => (0..max).prop_map(Word::Raw),
        1 => Just(Word::Raw(0)),
        1 => noise_word(),
    ]
}

fn zero() -> impl Strategy<Value = Word> {
    prop_oneof![30 => Just(Word::Raw(0)), 1 => noise_word()]
}

/// Pool page roles: the walk's next table is on the next page.
const ROOT: u8 = 0;
const CONTEXT: u8 = 1;
const PASID_DIR: u8 = 2;
const PASID_TABLE: u8 = 3;
const PAGING: std::ops::Range<u8> = 4..POOL_PAGES as u8;

/// The words of a page of each role, repeated over the page (a pattern's length divides
/// the entry size, so every entry of the table is the same). Root and context pages are
/// laid out for `legacy` or scalable mode.
fn role_pattern(page: u8, legacy: bool) -> BoxedStrategy<Vec<Word>> {
    match page {
        // Legacy root entries: context pointer, upper qword zero.
        ROOT if legacy => (ptr(CONTEXT..CONTEXT + 1, 0), zero())
            .prop_map(|(a, b)| vec![a, b])
            .boxed(),
        // Scalable root entries: lower and upper context pointers.
        ROOT => (ptr(CONTEXT..CONTEXT + 1, 0), ptr(CONTEXT..CONTEXT + 1, 0))
            .prop_map(|(a, b)| vec![a, b])
            .boxed(),
        // Legacy context entries: P/FPD/TT + second-stage table; AW and DID in qword 1.
        CONTEXT if legacy => (
            (
                PAGING,
                prop::bool::weighted(0.95),
                prop::bool::weighted(0.2),
                prop_oneof![12 => Just(0u16), 4 => Just(1), 3 => Just(2), 1 => Just(3)],
            )
                .prop_map(|(page, p, fpd, tt)| Word::Ptr {
                    page,
                    low: p as u16 | (fpd as u16) << 1 | tt << 2,
                }),
            prop_oneof![
                4 => (1u64..=3, 0u64..32).prop_map(|(aw, did)| Word::Raw(aw | did << 8)),
                1 => small(1 << 24),
            ],
        )
            .prop_map(|(a, b)| vec![a, b])
            .boxed(),
        // Scalable context entries: P/FPD/DTE/PASIDE/PRE/PDTS + PASID directory; RID_PASID
        // and RID_PRIV in qword 1 (reserved without RPS/RPRIVS); qwords 2-3 zero.
        CONTEXT => (
            (
                prop::bool::weighted(0.95),
                prop::bool::weighted(0.2),
                prop::bool::weighted(0.5),
                prop::bool::weighted(0.8),
                prop::bool::weighted(0.1),
                0u16..8,
            )
                .prop_map(|(p, fpd, dte, paside, pre, pdts)| Word::Ptr {
                    page: PASID_DIR,
                    low: p as u16
                        | (fpd as u16) << 1
                        | (dte as u16) << 2
                        | (paside as u16) << 3
                        | (pre as u16) << 4
                        | pdts << 9,
                }),
            prop_oneof![9 => Just(Word::Raw(0)), 1 => small(1 << 21)],
            zero(),
            zero(),
        )
            .prop_map(|(a, b, c, d)| vec![a, b, c, d])
            .boxed(),
        PASID_DIR => prop::collection::vec(ptr(PASID_TABLE..PASID_TABLE + 1, 0x3), 1..=2).boxed(),
        // PASID entries: P/FPD/AW/PGTT/SSADE + SSPTPTR; DID/PWSNP/PGSNP; SRE/FSPM (4 or 5
        // levels)/WPE/EAFE + FSPTPTR; the rest zero.
        PASID_TABLE => (
            (PAGING, any::<u16>(), 1u16..=3, 1u16..=4, prop::bool::weighted(0.9)).prop_map(
                |(page, bits, aw, pgtt, p)| Word::Ptr {
                    page,
                    low: p as u16 | aw << 2 | pgtt << 6 | bits & 0x202,
                },
            ),
            prop_oneof![
                3 => (1u64..16, any::<bool>(), any::<bool>())
                    .prop_map(|(did, pwsnp, pgsnp)| Word::Raw(did | (pwsnp as u64) << 23 | (pgsnp as u64) << 24)),
                1 => noise_word(),
            ],
            ptr(PAGING, 0x95),
            zero(),
            zero(),
        )
            .prop_map(|(a, b, c, d, e)| vec![a, b, c, d, e, Word::Raw(0), Word::Raw(0), Word::Raw(0)])
            .boxed(),
        // Paging entries of either stage: R/W/X or P/RW/US, PS, A/D, noise.
        _ => prop::collection::vec(
            prop_oneof![
                4 => ptr(PAGING, 0x7),
                1 => ptr(PAGING, 0xFFF),
                1 => (PAGING, prop::sample::select(vec![0x87u16, 0x83, 0x67, 0x367, 0x107, 0x4A7]))
                    .prop_map(|(page, low)| Word::Ptr { page, low }),
                1 => noise_word(),
            ],
            1..=4,
        )
        .boxed(),
    }
}

/// One page: `pattern` repeated, then `pokes` (word index, value) written over it.
#[derive(Clone, Debug)]
struct PageFill {
    pattern: Vec<Word>,
    pokes: Vec<(u16, Word)>,
}

impl PageFill {
    fn write(&self, mem: &SparseMem, base: u64) {
        let mut words: Vec<u64> = (0..512)
            .map(|i| self.pattern[i % self.pattern.len()].value())
            .collect();
        for &(i, w) in &self.pokes {
            words[i as usize % 512] = w.value();
        }
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        mem.write_bytes(base, &bytes).expect("backed page");
    }
}

/// Page `page` of the pool: its role's pattern, or noise, plus a few noise words.
fn page_fill(page: u8, legacy: bool) -> impl Strategy<Value = PageFill> {
    (
        prop_oneof![
            19 => role_pattern(page, legacy),
            1 => prop::collection::vec(noise_word(), 1..=8),
        ],
        prop::collection::vec((0u16..512, noise_word()), 0..3),
    )
        .prop_map(|(pattern, pokes)| PageFill { pattern, pokes })
}

/// The pool (root and context pages laid out for one mode) and the RTADDR pointing at it.
#[derive(Clone, Debug)]
struct Memory {
    pages: Vec<PageFill>,
    rtaddr: u64,
}

impl Memory {
    fn build(&self) -> SparseMem {
        let mem = SparseMem::with_alloc_base(0x4000_0000);
        mem.back(0, POOL_PAGES * 4096);
        for (p, fill) in self.pages.iter().enumerate() {
            fill.write(&mem, p as u64 * 4096);
        }
        mem
    }
}

/// Tables laid out for legacy or scalable mode, and RTADDR: usually the root page in that
/// mode, sometimes another page or TTM, sometimes anything.
fn memory() -> impl Strategy<Value = Memory> {
    prop::bool::weighted(0.35).prop_flat_map(|legacy| {
        let pages = (0..POOL_PAGES as u8)
            .map(|p| page_fill(p, legacy))
            .collect::<Vec<_>>();
        let ttm = if legacy { 0u64 } else { 1 };
        let rtaddr = prop_oneof![
            12 => Just((ROOT as u64) << 12 | ttm << 10),
            1 => (0..POOL_PAGES, 0u64..4).prop_map(|(p, ttm)| p << 12 | ttm << 10),
            1 => any::<u64>(),
        ];
        (pages, rtaddr).prop_map(|(pages, rtaddr)| Memory { pages, rtaddr })
    })
}

// ---------------------------------------------------------------------------------------
// Random configurations
// ---------------------------------------------------------------------------------------

/// A configuration: a preset with random switches, capabilities and caches. Every field
/// varied here keeps the configuration valid.
#[derive(Clone, Debug)]
struct ConfigSpec {
    preset: u8,
    haw: u8,
    switches: ModelSwitches,
    caches: Option<(Geometry, Replacement)>,
    /// Bit i flips the i-th feature of [`ECAP_FLIPS`].
    ecap_flips: u32,
    /// Bit i flips the i-th feature of [`CAP_FLIPS`].
    cap_flips: u8,
    sagaw: Option<u8>,
    sllps: Option<u8>,
}

type EcapFlip = fn(vtd_spec::regs::Ecap) -> vtd_spec::regs::Ecap;
type CapFlip = fn(vtd_spec::regs::Cap) -> vtd_spec::regs::Cap;

const ECAP_FLIPS: &[EcapFlip] = &[
    |e| e.with_c(!e.c()),
    |e| e.with_dt(!e.dt()),
    |e| e.with_pt(!e.pt()),
    |e| e.with_sc(!e.sc()),
    |e| e.with_mts(!e.mts()),
    |e| e.with_nest(!e.nest()),
    |e| e.with_prs(!e.prs()),
    |e| e.with_ers(!e.ers()),
    |e| e.with_srs(!e.srs()),
    |e| e.with_eafs(!e.eafs()),
    |e| e.with_pasid(!e.pasid()),
    |e| e.with_pds(!e.pds()),
    |e| e.with_slads(!e.slads()),
    |e| e.with_slts(!e.slts()),
    |e| e.with_flts(!e.flts()),
    |e| e.with_smpwcs(!e.smpwcs()),
    |e| e.with_rps(!e.rps()),
    |e| e.with_adms(!e.adms()),
    |e| e.with_rprivs(!e.rprivs()),
    |e| e.with_ir(!e.ir()),
];

const CAP_FLIPS: &[CapFlip] = &[
    |c| c.with_cm(!c.cm()),
    |c| c.with_zlr(!c.zlr()),
    |c| c.with_fs1gp(!c.fs1gp()),
    |c| c.with_fs5lp(!c.fs5lp()),
    |c| c.with_psi(!c.psi()),
    |c| c.with_esrtps(!c.esrtps()),
    |c| c.with_afl(!c.afl()),
];

impl ConfigSpec {
    fn config(&self) -> UnitConfig {
        let mut c = match self.preset {
            0 => UnitConfig::default(),
            1 => UnitConfig::sapphire_rapids(),
            2 => UnitConfig::without_nesting(),
            3 => UnitConfig::qemu_scalable(),
            4 => UnitConfig::qemu_first_stage(),
            _ => UnitConfig::qemu_legacy(),
        };
        c.host_address_width = self.haw;
        c.switches = self.switches;
        for (i, flip) in ECAP_FLIPS.iter().enumerate() {
            if self.ecap_flips >> i & 1 != 0 {
                c.ecap = flip(c.ecap);
            }
        }
        for (i, flip) in CAP_FLIPS.iter().enumerate() {
            if self.cap_flips >> i & 1 != 0 {
                c.cap = flip(c.cap);
            }
        }
        if let Some(sagaw) = self.sagaw {
            c.cap = c.cap.with_sagaw(sagaw);
        }
        if let Some(sllps) = self.sllps {
            c.cap = c.cap.with_sllps(sllps);
        }
        c.caches = match self.caches {
            None => CacheConfig::disabled(),
            Some((g, replacement)) => CacheConfig {
                context: g,
                pasid: g,
                iotlb: g,
                fs_psc: g,
                ss_psc: g,
                devtlb: g,
                replacement,
                ..CacheConfig::default()
            },
        };
        c
    }
}

fn switches() -> impl Strategy<Value = ModelSwitches> {
    (
        prop_oneof![
            Just(Spr17::Off),
            Just(Spr17::TopLevel),
            Just(Spr17::AllLevels)
        ],
        prop_oneof![Just(AdTiming::PerLevel), Just(AdTiming::AfterWalk)],
        prop_oneof![Just(NestedSsAd::Full), Just(NestedSsAd::FinalAccessOnly)],
        prop_oneof![
            Just(SsPermissionFault::General),
            Just(SsPermissionFault::SecondStage)
        ],
        prop_oneof![Just(NonSnoopedAd::Fault), Just(NonSnoopedAd::Perform)],
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(spr17, ad, ss_ad, ss_perm, non_snooped, collapse, reserved)| ModelSwitches {
                erratum_spr17: spr17,
                ad_timing: ad,
                nested_ss_ad: ss_ad,
                ss_permission_fault: ss_perm,
                non_snooped_ad: non_snooped,
                collapse_faults_by_sid: collapse,
                capability_reserved_fields: reserved,
            },
        )
}

fn config_spec() -> impl Strategy<Value = ConfigSpec> {
    let caches = prop_oneof![
        1 => Just(None),
        2 => (
            1usize..=4,
            1usize..=3,
            prop_oneof![
                Just(Replacement::Clock),
                Just(Replacement::Fifo),
                Just(Replacement::Random)
            ],
        )
            .prop_map(|(sets, ways, r)| Some((Geometry::new(sets, ways), r))),
    ];
    (
        prop_oneof![3 => Just(0u8), 2 => Just(1u8), 1 => 2u8..6],
        32u8..=52,
        switches(),
        caches,
        prop_oneof![2 => Just(0u32), 1 => any::<u32>()],
        prop_oneof![2 => Just(0u8), 1 => any::<u8>()],
        prop_oneof![3 => Just(None), 1 => (0u8..32).prop_map(Some)],
        prop_oneof![3 => Just(None), 1 => (0u8..16).prop_map(Some)],
    )
        .prop_map(
            |(preset, haw, switches, caches, ecap_flips, cap_flips, sagaw, sllps)| ConfigSpec {
                preset,
                haw,
                switches,
                caches,
                ecap_flips,
                cap_flips,
                sagaw,
                sllps,
            },
        )
}

/// Counts the MSIs a unit sends.
#[derive(Default)]
struct CountingSink(AtomicU64);

impl InterruptSink for CountingSink {
    fn deliver(&self, _kind: EventKind, _msi: Msi) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

fn unit(spec: &ConfigSpec, mem: SparseMem) -> Unit<SparseMem> {
    Unit::new(spec.config(), mem)
        .expect("every generated configuration is valid")
        .with_interrupt_sink(Arc::new(CountingSink::default()))
}

// ---------------------------------------------------------------------------------------
// Random requests
// ---------------------------------------------------------------------------------------

fn address() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => any::<u64>(),
        2 => 0u64..(1 << 32),
        2 => (0u64..512, 0u64..512, 0u64..512, 0u64..4096)
            .prop_map(|(a, b, c, o)| a << 39 | b << 30 | c << 21 | o),
        1 => (0u64..4096).prop_map(|o| u64::MAX - o),
        1 => (0u64..(1 << 20)).prop_map(|o| 0xFEE0_0000 + o),
        1 => (47u32..64).prop_map(|b| 1u64 << b),
    ]
}

fn request() -> impl Strategy<Value = Request> {
    (
        prop_oneof![3 => 0u16..0x80, 1 => 0u16..0x200, 1 => any::<u16>()],
        prop_oneof![
            5 => Just(None),
            2 => (0u32..256).prop_map(Some),
            1 => any::<u32>().prop_map(Some),
            1 => Just(Some(0xF_FFFF)),
        ],
        address(),
        prop_oneof![2 => 0u32..=8, 1 => any::<u32>()],
        prop_oneof![
            Just(Access::Read),
            Just(Access::Write),
            Just(Access::AtomicRmw)
        ],
        any::<bool>(),
        prop::bool::weighted(0.2),
        prop_oneof![
            4 => Just(AddressType::Untranslated),
            1 => Just(AddressType::TranslationRequest),
            1 => Just(AddressType::Translated)
        ],
    )
        .prop_map(
            |(sid, pasid, addr, len, access, privileged, execute, address_type)| Request {
                sid,
                pasid,
                addr,
                len,
                access,
                privileged,
                execute,
                address_type,
            },
        )
}

/// The entry points a DMA can take.
#[derive(Clone, Copy, Debug)]
enum Call {
    Translate,
    Ats,
    Explain,
    Traced,
}

fn call() -> impl Strategy<Value = Call> {
    prop_oneof![
        4 => Just(Call::Translate),
        1 => Just(Call::Ats),
        1 => Just(Call::Explain),
        1 => Just(Call::Traced),
    ]
}

/// Run `req` through `call`; a translation keeps the request's offset within its page.
fn dma(unit: &Unit<SparseMem>, call: Call, req: &Request) -> Result<(), TestCaseError> {
    let result = match call {
        Call::Translate => unit.translate(req),
        Call::Ats => unit.translate_ats(req),
        Call::Explain => unit.explain(req, &mut NoTrace),
        Call::Traced => unit.translate_traced(req, &mut WalkRecorder::default()),
    };
    if let Ok(t) = result {
        let mask = t.page_size.offset_mask();
        prop_assert_eq!(
            t.hpa & mask,
            req.addr & mask,
            "translation {:x?} of {:x?} moved the offset within the page",
            t,
            req
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Random register accesses
// ---------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum MmioOp {
    Write { offset: u64, size: u8, value: u64 },
    Read { offset: u64, size: u8 },
    Dma(Call, Request),
}

fn mmio_offset() -> impl Strategy<Value = u64> {
    prop_oneof![
        6 => (0u64..0x100).prop_map(|d| d * 4),
        2 => 0u64..0x1100,
        1 => (0u64..0x400).prop_map(|d| 0x1000 - 4 * d),
        1 => any::<u64>(),
        1 => (0u64..16).prop_map(|d| u64::MAX - d),
    ]
}

fn mmio_size() -> impl Strategy<Value = u8> {
    prop_oneof![
        4 => Just(4u8),
        4 => Just(8u8),
        1 => Just(1u8),
        1 => Just(2u8),
        1 => Just(16u8),
        1 => any::<u8>(),
    ]
}

fn mmio_value() -> impl Strategy<Value = u64> {
    let gcmd = prop::collection::vec(
        prop::sample::select(vec![
            GlobalCommand::TE,
            GlobalCommand::SRTP,
            GlobalCommand::SFL,
            GlobalCommand::EAFL,
            GlobalCommand::WBF,
            GlobalCommand::QIE,
            GlobalCommand::IRE,
            GlobalCommand::SIRTP,
            GlobalCommand::CFI,
        ]),
        0..4,
    )
    .prop_map(|bits| bits.iter().fold(0u64, |v, b| v | b.bits() as u64));
    prop_oneof![
        3 => any::<u64>(),
        2 => gcmd,
        1 => (0..POOL_PAGES, 0u64..4).prop_map(|(p, ttm)| p << 12 | ttm << 10),
        1 => Just(0u64),
        1 => Just(u64::MAX),
        1 => (0u32..32).prop_map(|b| 1u64 << b << 32),
    ]
}

fn mmio_op() -> impl Strategy<Value = MmioOp> {
    prop_oneof![
        4 => (mmio_offset(), mmio_size(), mmio_value())
            .prop_map(|(offset, size, value)| MmioOp::Write { offset, size, value }),
        2 => (mmio_offset(), mmio_size()).prop_map(|(offset, size)| MmioOp::Read { offset, size }),
        3 => (call(), request()).prop_map(|(c, r)| MmioOp::Dma(c, r)),
    ]
}

/// True when `mmio_read`/`mmio_write` must accept the access: 4 or 8 bytes, naturally
/// aligned, inside the window.
fn well_formed(unit: &Unit<SparseMem>, offset: u64, size: u8) -> bool {
    matches!(size, 4 | 8)
        && offset.is_multiple_of(size as u64)
        && offset
            .checked_add(size as u64)
            .is_some_and(|end| end <= unit.mmio_size())
}

// ---------------------------------------------------------------------------------------
// Random invalidation queues
// ---------------------------------------------------------------------------------------

/// One 256-bit queue slot (a 128-bit queue uses `lo` only).
#[derive(Clone, Copy, Debug)]
struct Desc {
    lo: u128,
    hi: u128,
}

/// A descriptor: noise, or a defined type with random granularity/flags, DID, upper
/// qword-0 bits and a qword 1 that is zero, a pool address or noise.
fn desc() -> impl Strategy<Value = Desc> {
    let structured = (
        prop_oneof![3 => 1u128..=10, 1 => Just(5u128)],
        0u128..16,
        prop_oneof![2 => Just(0u16), 1 => 0u16..16, 1 => any::<u16>()],
        prop_oneof![2 => Just(0u128), 1 => any::<u32>().prop_map(u128::from)],
        prop_oneof![
            2 => Just(0u128),
            3 => (0..POOL_PAGES as u128, 0u128..1024).prop_map(|(p, o)| p << 12 | o << 2),
            1 => any::<u64>().prop_map(u128::from),
        ],
        prop_oneof![9 => Just(0u128), 1 => any::<u128>()],
    )
        .prop_map(|(ty, flags, did, qw0_hi, qw1, hi)| Desc {
            lo: ty | flags << 4 | (did as u128) << 16 | qw0_hi << 32 | qw1 << 64,
            hi,
        });
    prop_oneof![
        1 => any::<(u128, u128)>().prop_map(|(lo, hi)| Desc { lo, hi }),
        4 => structured,
    ]
}

#[derive(Clone, Debug)]
struct QueueSpec {
    /// IQA base: the backed queue pages, a pool page, or anything.
    base: u64,
    dw: bool,
    qs: u8,
    /// Slot i of the queue holds `descs[i % len]`.
    descs: Vec<Desc>,
}

fn queue_spec() -> impl Strategy<Value = QueueSpec> {
    (
        prop_oneof![
            6 => Just(QUEUE_BASE),
            1 => (0..POOL_PAGES).prop_map(|p| p << 12),
            1 => any::<u64>().prop_map(|a| a & !0xFFF),
        ],
        any::<bool>(),
        prop_oneof![3 => 0u8..=1, 1 => 0u8..8],
        prop::collection::vec(desc(), 1..8),
    )
        .prop_map(|(base, dw, qs, descs)| QueueSpec {
            base,
            dw,
            qs,
            descs,
        })
}

impl QueueSpec {
    fn iqa(&self) -> u64 {
        self.base | (self.dw as u64) << 11 | self.qs as u64
    }

    /// Back and fill the first pages of the queue at [`QUEUE_BASE`].
    fn fill(&self, mem: &SparseMem) {
        let pages = (1u64 << self.qs).min(QUEUE_BACKED_PAGES);
        mem.back(QUEUE_BASE, pages * 4096);
        let slot = if self.dw { 32 } else { 16 };
        for i in 0..pages * 4096 / slot {
            let d = self.descs[i as usize % self.descs.len()];
            let at = QUEUE_BASE + i * slot;
            mem.write_u128(at, d.lo).expect("queue page");
            if self.dw {
                mem.write_u128(at + 16, d.hi).expect("queue page");
            }
        }
    }
}

#[derive(Clone, Debug)]
enum QueueOp {
    /// Write IQT with any value.
    Tail(u64),
    /// Write IQT with the offset of slot `n` (in 16-byte units: also odd for 256-bit).
    TailSlot(u16),
    /// Write 1s to FSTS (clears IQE and the other RW1C bits set in the value).
    ClearFsts(u32),
    /// Set or clear GCMD.QIE, keeping the other persistent bits.
    Qie(bool),
    /// Write IQA.
    Iqa(u64),
    Dma(Call, Request),
}

fn queue_op() -> impl Strategy<Value = QueueOp> {
    prop_oneof![
        1 => any::<u64>().prop_map(QueueOp::Tail),
        6 => prop_oneof![3 => 0u16..64, 1 => 0u16..600].prop_map(QueueOp::TailSlot),
        2 => prop_oneof![3 => Just(1u32 << 4), 1 => any::<u32>()].prop_map(QueueOp::ClearFsts),
        1 => any::<bool>().prop_map(QueueOp::Qie),
        1 => prop_oneof![
            (0u8..8, any::<bool>()).prop_map(|(qs, dw)| QUEUE_BASE | (dw as u64) << 11 | qs as u64),
            any::<u64>(),
        ]
        .prop_map(QueueOp::Iqa),
        1 => (call(), request()).prop_map(|(c, r)| QueueOp::Dma(c, r)),
    ]
}

fn set_qie(unit: &Unit<SparseMem>, on: bool) {
    let gsts =
        GlobalStatus::from_bits_retain(unit.mmio_read(offset::GSTS, 4).expect("GSTS") as u32);
    let mut cmd = (gsts & GlobalStatus::PERSISTENT).bits();
    cmd = if on {
        cmd | GlobalCommand::QIE.bits()
    } else {
        cmd & !GlobalCommand::QIE.bits()
    };
    unit.mmio_write(offset::GCMD, 4, cmd as u64).expect("GCMD");
}

/// FSTS.IQE set ⇒ IQERCD.IQEI is one of the codes §1.10 defines (0–7).
fn check_queue_error(unit: &Unit<SparseMem>) -> Result<(), TestCaseError> {
    let fsts = unit.mmio_read(offset::FSTS, 4).expect("FSTS");
    let iqercd = Iqercd::from_bits(unit.mmio_read(offset::IQERCD, 8).expect("IQERCD"));
    prop_assert!(
        fsts & (1 << 4) == 0 || !matches!(iqercd.iqei(), Iqei::Reserved(_)),
        "FSTS.IQE with undefined IQEI {:?} (IQERCD {:#x})",
        iqercd.iqei(),
        iqercd.into_bits()
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Noise as root, context, PASID and paging tables (either TTM), noise requests through
    /// every DMA entry point: a translation or a fault, never a panic.
    #[test]
    fn random_tables_never_panic(
        config in config_spec(),
        memory in memory(),
        dmas in prop::collection::vec((call(), request()), 1..24),
    ) {
        let unit = unit(&config, memory.build());
        build::enable_translation(&unit, RtAddr::from_bits(memory.rtaddr)).expect("enable translation");
        for (call, req) in &dmas {
            dma(&unit, *call, req)?;
        }
    }

    /// Random MMIO reads and writes (any offset, size and value) interleaved with DMA:
    /// never a panic, and an access is refused exactly when it is malformed.
    #[test]
    fn random_register_accesses_never_panic(
        config in config_spec(),
        memory in memory(),
        ops in prop::collection::vec(mmio_op(), 1..48),
    ) {
        let unit = unit(&config, memory.build());
        build::enable_translation(&unit, RtAddr::from_bits(memory.rtaddr)).expect("enable translation");
        for op in &ops {
            match *op {
                MmioOp::Write { offset, size, value } => {
                    let result = unit.mmio_write(offset, size, value);
                    prop_assert_eq!(result.is_ok(), well_formed(&unit, offset, size), "{:?}", result);
                }
                MmioOp::Read { offset, size } => {
                    let result = unit.mmio_read(offset, size);
                    prop_assert_eq!(result.is_ok(), well_formed(&unit, offset, size), "{:?}", result);
                }
                MmioOp::Dma(call, ref req) => dma(&unit, call, req)?,
            }
        }
    }

    /// Queued invalidation over random queue contents and random tails: never a panic, and
    /// whenever FSTS.IQE is set IQERCD.IQEI is a defined code.
    #[test]
    fn random_invalidation_queue_never_panics(
        config in config_spec(),
        memory in memory(),
        queue in queue_spec(),
        ops in prop::collection::vec(queue_op(), 1..32),
    ) {
        let mem = memory.build();
        queue.fill(&mem);
        let unit = unit(&config, mem);
        build::enable_translation(&unit, RtAddr::from_bits(memory.rtaddr)).expect("enable translation");
        unit.mmio_write(offset::IQT, 8, 0).expect("IQT");
        unit.mmio_write(offset::IQA, 8, queue.iqa()).expect("IQA");
        set_qie(&unit, true);
        check_queue_error(&unit)?;
        for op in &ops {
            match *op {
                QueueOp::Tail(v) => unit.mmio_write(offset::IQT, 8, v).expect("IQT"),
                QueueOp::TailSlot(n) => unit.mmio_write(offset::IQT, 8, (n as u64) << 4).expect("IQT"),
                QueueOp::ClearFsts(v) => unit.mmio_write(offset::FSTS, 4, v as u64).expect("FSTS"),
                QueueOp::Qie(on) => set_qie(&unit, on),
                QueueOp::Iqa(v) => unit.mmio_write(offset::IQA, 8, v).expect("IQA"),
                QueueOp::Dma(call, ref req) => dma(&unit, call, req)?,
            }
            check_queue_error(&unit)?;
        }
    }
}
