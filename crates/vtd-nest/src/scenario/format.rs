//! The scenario file format (docs/SCENARIOS.md): what a `.toml` scenario may say, as serde
//! types. Unknown fields are errors everywhere, so a typo never passes silently.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

/// A 64-bit number written as a TOML integer (`0x4000_0000`) or a string (`"0xffff8000_00000000"`,
/// `"2M"`, `"1G"`), since TOML integers stop at 2^63.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Num(pub u64);

impl Num {
    /// Parse the string form: decimal or `0x` hex, `_` separators, optional K/M/G suffix
    /// (binary multiples).
    pub fn parse(text: &str) -> Option<u64> {
        let t: String = text.trim().chars().filter(|c| *c != '_').collect();
        let (digits, mult) = match t.chars().last()? {
            'K' | 'k' => (&t[..t.len() - 1], 1u64 << 10),
            'M' | 'm' => (&t[..t.len() - 1], 1 << 20),
            'G' | 'g' => (&t[..t.len() - 1], 1 << 30),
            _ => (t.as_str(), 1),
        };
        let v = if let Some(hex) = digits
            .strip_prefix("0x")
            .or_else(|| digits.strip_prefix("0X"))
        {
            u64::from_str_radix(hex, 16).ok()?
        } else {
            digits.parse::<u64>().ok()?
        };
        v.checked_mul(mult)
    }
}

impl<'de> Deserialize<'de> for Num {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Num;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a non-negative integer or a string such as \"0x1000\" or \"2M\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Num, E> {
                u64::try_from(v)
                    .map(Num)
                    .map_err(|_| E::custom(format!("{v} is negative")))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Num, E> {
                Ok(Num(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Num, E> {
                Num::parse(v).map(Num).ok_or_else(|| {
                    E::custom(format!(
                        "`{v}` is not a number (use decimal, 0x hex, or a K/M/G suffix)"
                    ))
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    /// One line saying what the scenario shows.
    #[serde(default)]
    pub name: Option<String>,
    /// Longer text, printed before the steps.
    #[serde(default)]
    pub description: Option<String>,
    /// The simulated machine.
    #[serde(default)]
    pub platform: PlatformSpec,
    /// The guest memory map.
    #[serde(default)]
    pub memory: MemorySpec,
    /// How the VMM sets up.
    #[serde(default)]
    pub vmm: VmmSpec,
    /// Devices the guest sees.
    #[serde(default)]
    pub device: Vec<DeviceSpec>,
    /// The steps; parsed one by one by the loader, so errors can point into each.
    #[serde(default)]
    pub step: Vec<toml::Spanned<toml::Table>>,
}

/// A unit preset.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    /// `UnitConfig::sapphire_rapids`: nesting, 5-level, 1 GiB pages, SPR17 on.
    #[default]
    SapphireRapids,
    /// The same without nesting (ECAP.NEST clear).
    WithoutNesting,
}

/// The hardware's SPR17 behaviour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErratumSpec {
    /// Architectural: a first-stage A/D update needs stage-2 write.
    Off,
    /// Only the top-level entry's update skips the check (the preset).
    TopLevel,
    /// Every level's update skips it.
    AllLevels,
}

/// The simulated machine.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlatformSpec {
    /// The unit preset (default sapphire-rapids).
    #[serde(default)]
    pub preset: Preset,
    /// Override the SPR17 switch of the hardware.
    #[serde(default)]
    pub erratum: Option<ErratumSpec>,
    /// Override CAP.FS5LP (5-level first stage).
    #[serde(default)]
    pub fs5lp: Option<bool>,
    /// Override CAP.FS1GP (1 GiB first-stage pages).
    #[serde(default)]
    pub fs1gp: Option<bool>,
    /// The kernel refuses read-only mappings in nest parents (the ERRATA_772415_SPR17
    /// workaround; default true). `false` uses the simulation's test hook.
    #[serde(default)]
    pub ro_refusal: Option<bool>,
    /// The host's PCI devices (default: nic0 at 00:03.0 and ssd0 at 00:04.0).
    #[serde(default)]
    pub devices: Option<Vec<HostDeviceSpec>>,
}

/// A host PCI device.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostDeviceSpec {
    /// Its name.
    pub name: String,
    /// bus:dev.fn on the host.
    pub bdf: String,
    /// PASID capability width (0: none).
    #[serde(default)]
    pub pasid_bits: u8,
    /// ATS capability.
    #[serde(default)]
    pub ats: bool,
}

/// RAM or ROM.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KindSpec {
    /// Read-write.
    #[default]
    Ram,
    /// Read-only to the guest (vBIOS, option ROM).
    Rom,
}

/// One region of the guest memory map.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionSpec {
    /// Its name.
    pub name: String,
    /// First GPA.
    pub gpa: Num,
    /// Bytes.
    pub size: Num,
    /// RAM (default) or ROM.
    #[serde(default)]
    pub kind: KindSpec,
}

/// A range of guest memory.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RangeSpec {
    /// First GPA.
    pub gpa: Num,
    /// Bytes.
    pub size: Num,
}

/// The guest memory map.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemorySpec {
    /// Explicit regions; without them, the PC map (`ram_top`).
    #[serde(default)]
    pub regions: Option<Vec<RegionSpec>>,
    /// Top of RAM of the built-in PC map (default 16M): low RAM, a 64 KiB vBIOS at
    /// 0xC0000, RAM from 1 MiB.
    #[serde(default)]
    pub ram_top: Option<Num>,
    /// Guest pages for the guest's IOMMU tables (default 1 MiB at 0xE00000).
    #[serde(default)]
    pub table_pool: Option<RangeSpec>,
}

/// How the VMM works.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VmmMode {
    /// vtd-viommu: stage 2 built from the map, guest PASID entries shadowed, guest
    /// invalidations forwarded, emulated devices behind the guest-facing unit.
    #[default]
    Viommu,
    /// Every iommufd call is a step (stage2, ioas_unmap, alloc, attach, detach,
    /// invalidate with hwpt, dirty_tracking, dirty_bitmap).
    Manual,
}

/// The VMM.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmmSpec {
    /// viommu (default) or manual.
    #[serde(default)]
    pub mode: VmmMode,
    /// viommu mode: the nest parent is allocated with DIRTY_TRACKING.
    #[serde(default)]
    pub dirty_tracking: bool,
}

/// Assigned or emulated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceKind {
    /// A host device through VFIO: DMA goes through the host unit.
    #[default]
    Assigned,
    /// A device model in the VMM: DMA is translated by the guest-facing unit.
    Emulated,
}

/// A device the guest sees.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceSpec {
    /// Name steps use.
    pub name: String,
    /// assigned (default) or emulated.
    #[serde(default)]
    pub kind: DeviceKind,
    /// Assigned: the host device's name (default: `name`).
    #[serde(default)]
    pub host: Option<String>,
    /// bus:dev.fn the guest sees.
    pub guest_bdf: String,
}

/// A page size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub enum SizeSpec {
    /// 4 KiB.
    #[default]
    #[serde(rename = "4K")]
    K4,
    /// 2 MiB.
    #[serde(rename = "2M")]
    M2,
    /// 1 GiB.
    #[serde(rename = "1G")]
    G1,
}

impl From<SizeSpec> for vtd_spec::addr::PageSize {
    fn from(size: SizeSpec) -> Self {
        match size {
            SizeSpec::K4 => Self::Size4K,
            SizeSpec::M2 => Self::Size2M,
            SizeSpec::G1 => Self::Size1G,
        }
    }
}

/// What the guest writes into a PASID entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PasidKindSpec {
    /// PGTT 001b with a stage-1 table.
    FirstStage,
    /// PGTT 100b.
    PassThrough,
    /// Not present.
    None,
}

/// Which HWPT to allocate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HwptKindSpec {
    /// A paging HWPT (stage 2 only).
    Paging,
    /// A paging HWPT with NEST_PARENT.
    NestParent,
    /// A nested HWPT: VTD_S1 data over a nest parent.
    Nested,
}

impl HwptKindSpec {
    /// The name a scenario gives the kind.
    pub fn name(self) -> &'static str {
        match self {
            HwptKindSpec::Paging => "paging",
            HwptKindSpec::NestParent => "nest-parent",
            HwptKindSpec::Nested => "nested",
        }
    }
}

/// read, write or atomic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AccessSpec {
    /// A read.
    #[default]
    Read,
    /// A write.
    Write,
    /// An atomic read-modify-write.
    Atomic,
}

/// An attachment as `expect` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttachmentSpec {
    /// DMA blocked.
    Blocked,
    /// The nest parent.
    Parent,
    /// A nested HWPT.
    Nested,
}

/// Which unit's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnitSpec {
    /// The host unit (assigned devices).
    #[default]
    Host,
    /// The guest-facing unit of the vIOMMU (emulated devices).
    Guest,
}

/// The outcome of a control step.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpExpect {
    /// The call fails with this errno (`"EINVAL"`).
    #[serde(default)]
    pub errno: Option<String>,
}

/// The outcome of a DMA.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DmaExpect {
    /// The DMA faults with this reason (`"SSS.2"` or `"0x79"`).
    #[serde(default)]
    pub fault: Option<String>,
    /// The guest-physical address the first byte reached.
    #[serde(default)]
    pub gpa: Option<Num>,
    /// How it was translated: nested, second-stage, first-stage, pass-through.
    #[serde(default)]
    pub kind: Option<String>,
    /// The page size of the translation.
    #[serde(default)]
    pub page_size: Option<SizeSpec>,
    /// The bytes a read returns.
    #[serde(default)]
    pub data: Option<String>,
    /// The translation came from the IOTLB.
    #[serde(default)]
    pub from_iotlb: Option<bool>,
}

/// The dirty pages a bitmap read must report.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirtyExpect {
    /// IOVAs of the dirty 4 KiB pages, exactly.
    #[serde(default)]
    pub dirty: Option<Vec<Num>>,
    /// The read fails with this errno.
    #[serde(default)]
    pub errno: Option<String>,
}

/// What hw_info must say.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HwInfoExpect {
    /// IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17.
    #[serde(default)]
    pub erratum: Option<bool>,
    /// Nesting supported.
    #[serde(default)]
    pub nesting: Option<bool>,
}

fn yes() -> bool {
    true
}

fn four() -> u8 {
    4
}

/// One step. `op` names the kind.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// The guest boots its IOMMU driver (root table, queued invalidation, TE).
    GuestBoot {},
    /// A new, empty stage-1 table in guest memory.
    Stage1 {
        /// Name other steps use.
        name: String,
        /// 4 or 5.
        #[serde(default = "four")]
        levels: u8,
        /// GPA of the top-level table page (default: from the table pool).
        #[serde(default)]
        root: Option<Num>,
    },
    /// Map in a stage-1 table.
    Map {
        /// The table.
        table: String,
        /// Input address.
        iova: Num,
        /// Output GPA.
        gpa: Num,
        /// 4K, 2M or 1G.
        #[serde(default)]
        size: SizeSpec,
        /// Writable (default true).
        #[serde(default = "yes")]
        write: bool,
        /// User-accessible (default true).
        #[serde(default = "yes")]
        user: bool,
        /// Leaf bits preset: A (bit 5) and D (bit 6).
        #[serde(default)]
        accessed: bool,
        /// D preset.
        #[serde(default)]
        dirty: bool,
    },
    /// Clear a stage-1 leaf.
    Unmap {
        /// The table.
        table: String,
        /// Input address.
        iova: Num,
    },
    /// The guest writes a PASID entry (and invalidates the PASID cache).
    Pasid {
        /// The device.
        device: String,
        /// The PASID (default 0, RID_PASID).
        #[serde(default)]
        pasid: u32,
        /// first-stage, pass-through or none.
        entry: PasidKindSpec,
        /// first-stage: the table.
        #[serde(default)]
        table: Option<String>,
        /// Guest domain id (default 1).
        #[serde(default)]
        did: Option<u16>,
        /// Supervisor requests enabled.
        #[serde(default)]
        sre: bool,
    },
    /// An invalidation: with `hwpt`, IOMMU_HWPT_INVALIDATE straight from the VMM; without,
    /// the guest's PASID-based IOTLB invalidation through its queue (forwarded by the
    /// vIOMMU).
    Invalidate {
        /// A nested HWPT (manual mode).
        #[serde(default)]
        hwpt: Option<String>,
        /// Guest domain id (guest invalidation; default 1).
        #[serde(default)]
        did: Option<u16>,
        /// PASID (guest invalidation; default 0).
        #[serde(default)]
        pasid: Option<u32>,
        /// First IOVA; absent: everything.
        #[serde(default)]
        iova: Option<Num>,
        /// Pages from `iova` (default 1; a power of two for a guest invalidation).
        #[serde(default)]
        pages: Option<u64>,
        /// Expected outcome.
        #[serde(default)]
        expect: Option<OpExpect>,
    },
    /// The VMM builds stage 2 from the guest memory map (vtd-viommu's builder): an IOAS,
    /// a paging HWPT for `device`, and every region mapped at IOVA = GPA.
    Stage2 {
        /// Name of the HWPT.
        name: String,
        /// Name of the IOAS (default `ioas`).
        #[serde(default)]
        ioas: Option<String>,
        /// The device whose dev_id allocates the HWPT.
        device: String,
        /// NEST_PARENT (default true).
        #[serde(default = "yes")]
        nest_parent: bool,
        /// Keep read-only regions out (default: what hw_info's erratum flag says).
        #[serde(default)]
        keep_ro_out: Option<bool>,
        /// DIRTY_TRACKING.
        #[serde(default)]
        dirty: bool,
        /// Expected outcome.
        #[serde(default)]
        expect: Option<OpExpect>,
    },
    /// IOMMU_IOAS_UNMAP.
    IoasUnmap {
        /// The IOAS.
        ioas: String,
        /// First IOVA.
        iova: Num,
        /// Bytes.
        size: Num,
        /// Expected outcome.
        #[serde(default)]
        expect: Option<OpExpect>,
    },
    /// IOMMU_HWPT_ALLOC.
    Alloc {
        /// Name.
        name: String,
        /// paging, nest-parent (on an IOAS a stage2 step made) or nested.
        kind: HwptKindSpec,
        /// The device (dev_id).
        device: String,
        /// paging/nest-parent: the IOAS.
        #[serde(default)]
        ioas: Option<String>,
        /// nested: the nest parent.
        #[serde(default)]
        parent: Option<String>,
        /// nested: the stage-1 table.
        #[serde(default)]
        table: Option<String>,
        /// DIRTY_TRACKING.
        #[serde(default)]
        dirty: bool,
        /// Expected outcome.
        #[serde(default)]
        expect: Option<OpExpect>,
    },
    /// VFIO_DEVICE_ATTACH_IOMMUFD_PT.
    Attach {
        /// The device.
        device: String,
        /// The HWPT.
        hwpt: String,
        /// Expected outcome.
        #[serde(default)]
        expect: Option<OpExpect>,
    },
    /// VFIO_DEVICE_DETACH_IOMMUFD_PT.
    Detach {
        /// The device.
        device: String,
        /// Expected outcome.
        #[serde(default)]
        expect: Option<OpExpect>,
    },
    /// A device DMA.
    Dma {
        /// The device.
        device: String,
        /// Address.
        iova: Num,
        /// read (default), write, atomic.
        #[serde(default)]
        access: AccessSpec,
        /// Bytes (default 4, or the length of `data`).
        #[serde(default)]
        len: Option<u32>,
        /// Request with this PASID.
        #[serde(default)]
        pasid: Option<u32>,
        /// Supervisor request (with a PASID).
        #[serde(default)]
        privileged: bool,
        /// Bytes a write stores.
        #[serde(default)]
        data: Option<String>,
        /// Expected outcome.
        #[serde(default)]
        expect: Option<DmaExpect>,
    },
    /// The VMM (or guest) writes guest memory.
    MemWrite {
        /// Where.
        gpa: Num,
        /// The bytes.
        data: String,
    },
    /// Guest memory must hold these bytes.
    MemCheck {
        /// Where.
        gpa: Num,
        /// The bytes.
        data: String,
    },
    /// IOMMU_HWPT_SET_DIRTY_TRACKING.
    DirtyTracking {
        /// The HWPT.
        hwpt: String,
        /// On or off.
        #[serde(default = "yes")]
        enable: bool,
        /// Expected outcome.
        #[serde(default)]
        expect: Option<OpExpect>,
    },
    /// IOMMU_HWPT_GET_DIRTY_BITMAP at 4 KiB granularity (clears what it reports).
    DirtyBitmap {
        /// The HWPT.
        hwpt: String,
        /// First IOVA.
        iova: Num,
        /// Bytes.
        length: Num,
        /// Expected outcome.
        #[serde(default)]
        expect: Option<DirtyExpect>,
    },
    /// IOMMU_GET_HW_INFO.
    HwInfo {
        /// The device.
        device: String,
        /// Expected outcome.
        #[serde(default)]
        expect: Option<HwInfoExpect>,
    },
    /// Check state: counters, attachments, the stage-2 plan.
    Expect {
        /// Whose counters (host by default).
        #[serde(default)]
        unit: UnitSpec,
        /// Counters since the start or the last reset_counters (names as `Stats`).
        #[serde(default)]
        counters: Option<BTreeMap<String, u64>>,
        /// Faults by reason (`"SSS.2" = 1`) since the same point; only those named.
        #[serde(default)]
        faults: Option<BTreeMap<String, u64>>,
        /// With `attachment`: the device.
        #[serde(default)]
        device: Option<String>,
        /// The device's host attachment (viommu mode).
        #[serde(default)]
        attachment: Option<AttachmentSpec>,
        /// Regions the vIOMMU kept out of stage 2, exactly.
        #[serde(default)]
        skipped: Option<Vec<String>>,
    },
    /// Counters start again from zero (for later `expect` steps).
    ResetCounters {},
}

impl Step {
    /// The `op` name.
    pub fn op(&self) -> &'static str {
        match self {
            Step::GuestBoot {} => "guest_boot",
            Step::Stage1 { .. } => "stage1",
            Step::Map { .. } => "map",
            Step::Unmap { .. } => "unmap",
            Step::Pasid { .. } => "pasid",
            Step::Invalidate { .. } => "invalidate",
            Step::Stage2 { .. } => "stage2",
            Step::IoasUnmap { .. } => "ioas_unmap",
            Step::Alloc { .. } => "alloc",
            Step::Attach { .. } => "attach",
            Step::Detach { .. } => "detach",
            Step::Dma { .. } => "dma",
            Step::MemWrite { .. } => "mem_write",
            Step::MemCheck { .. } => "mem_check",
            Step::DirtyTracking { .. } => "dirty_tracking",
            Step::DirtyBitmap { .. } => "dirty_bitmap",
            Step::HwInfo { .. } => "hw_info",
            Step::Expect { .. } => "expect",
            Step::ResetCounters {} => "reset_counters",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_take_hex_suffixes_and_separators() {
        assert_eq!(Num::parse("0x4000_0000"), Some(0x4000_0000));
        assert_eq!(Num::parse("2M"), Some(2 << 20));
        assert_eq!(
            Num::parse("0xffff_8000_0000_0000"),
            Some(0xffff_8000_0000_0000)
        );
        assert_eq!(Num::parse("12q"), None);
        assert_eq!(Num::parse("0xffffffffffffffffG"), None);
    }

    #[test]
    fn steps_refuse_unknown_fields_and_kinds() {
        let t: toml::Table =
            toml::from_str("op = \"map\"\ntable = \"s\"\niova = 0\ngpa = 0\nbogus = 1").unwrap();
        let e = t.try_into::<Step>().unwrap_err().to_string();
        assert!(e.contains("unknown field `bogus`"), "{e}");
        let t: toml::Table = toml::from_str("op = \"frob\"").unwrap();
        let e = t.try_into::<Step>().unwrap_err().to_string();
        assert!(e.contains("unknown variant `frob`"), "{e}");
    }
}
