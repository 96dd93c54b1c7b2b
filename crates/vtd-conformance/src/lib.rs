//! One set of iommufd conformance cases, written once against `vtd-iommufd` over
//! [`vtd_iommufd::IoctlFd`], run against a real `/dev/iommu` and against the simulated
//! kernel of `vtd-kernel` — the proof that user-space code runs unchanged on both.
//!
//! Every case is a named function of a [`Target`] (where the files come from) and a
//! [`Log`] (what it observed). A case passes when every expectation holds; the two sides
//! *agree* on a case when both pass with the same observations (errnos, object ids,
//! IOVAs, decoded registers), so a behaviour the cases do not pin down still shows up as
//! a disagreement.
//!
//! The cases form two suites:
//! - [`Suite::Selftest`]: the generic iommufd contract with the kernel's selftest mock
//!   devices (`IOMMU_TEST_CMD`), for a kernel with `CONFIG_IOMMUFD_TEST` and no other
//!   IOMMU (a guest without an emulated IOMMU; the simulation with `iommufd_test`).
//! - [`Suite::Vtd`]: an Intel VT-d unit as QEMU emulates it (scalable mode, no nesting)
//!   with QEMU's `edu` device on vfio-pci: hw_info, allocation limits, attach and a real
//!   DMA round trip.

pub mod buffer;
mod cases_selftest;
mod cases_vtd;
pub mod report;
pub mod target;

use std::fmt;

pub use buffer::Buffer;
pub use target::{RealTarget, SimTarget, Target};

/// A group of cases that needs one kind of machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Suite {
    /// The generic contract with selftest mock devices.
    Selftest,
    /// QEMU's emulated VT-d with an `edu` device.
    Vtd,
}

impl Suite {
    /// The suite's name on command lines and in logs.
    pub fn name(self) -> &'static str {
        match self {
            Suite::Selftest => "selftest",
            Suite::Vtd => "vtd",
        }
    }

    /// Look a suite up by name.
    pub fn from_name(name: &str) -> Option<Suite> {
        match name {
            "selftest" => Some(Suite::Selftest),
            "vtd" => Some(Suite::Vtd),
            _ => None,
        }
    }

    /// Its cases, in run order.
    pub fn cases(self) -> &'static [Case] {
        match self {
            Suite::Selftest => cases_selftest::CASES,
            Suite::Vtd => cases_vtd::CASES,
        }
    }
}

/// Why a case failed: the expectation that did not hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure(pub String);

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<vtd_iommufd::Error> for Failure {
    fn from(e: vtd_iommufd::Error) -> Self {
        Failure(format!("unexpected error: {e}"))
    }
}

/// The result of a case body.
pub type Outcome = Result<(), Failure>;

/// One named case.
pub struct Case {
    /// `area.behaviour`, unique in its suite.
    pub name: &'static str,
    /// The body.
    pub run: fn(&dyn Target, &mut Log) -> Outcome,
}

/// What a case observed, in order, as `label=value` items.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Log {
    items: Vec<String>,
}

/// The short name of an errno, or of a typed call's failure.
fn error_name(e: &vtd_iommufd::Error) -> String {
    match e {
        vtd_iommufd::Error::Invalidate {
            errno, processed, ..
        } => format!("{errno:?}/{processed}"),
        other => match other.errno() {
            Some(errno) => format!("{errno:?}"),
            None => other.to_string(),
        },
    }
}

impl Log {
    /// The observations so far.
    pub fn items(&self) -> &[String] {
        &self.items
    }

    /// Record `label=value` without an expectation.
    pub fn note(&mut self, label: &str, value: impl fmt::Display) {
        self.items.push(format!("{label}={value}"));
    }

    /// Record `label=got` and require `got == want`.
    pub fn eq<T: fmt::Display + PartialEq>(&mut self, label: &str, got: T, want: T) -> Outcome {
        self.note(label, &got);
        if got == want {
            Ok(())
        } else {
            Err(Failure(format!("{label}: got {got}, want {want}")))
        }
    }

    /// Record `label=ok` and require success, returning the value.
    pub fn ok<T>(&mut self, label: &str, r: vtd_iommufd::Result<T>) -> Result<T, Failure> {
        match r {
            Ok(v) => {
                self.note(label, "ok");
                Ok(v)
            }
            Err(e) => {
                let name = error_name(&e);
                self.note(label, &name);
                Err(Failure(format!("{label}: got {name}, want success")))
            }
        }
    }

    /// Record `label=ERRNO` and require the call to fail with `want`.
    pub fn errno<T>(
        &mut self,
        label: &str,
        r: vtd_iommufd::Result<T>,
        want: vtd_iommufd::Errno,
    ) -> Outcome {
        let got = match &r {
            Ok(_) => "ok".to_string(),
            Err(e) => e
                .errno()
                .map_or_else(|| e.to_string(), |n| format!("{n:?}")),
        };
        self.note(label, &got);
        match r {
            Err(e) if e.errno() == Some(want) => Ok(()),
            _ => Err(Failure(format!("{label}: got {got}, want {want:?}"))),
        }
    }

    /// Record `label=ERRNO/processed` for an invalidation and require both.
    pub fn invalidate(
        &mut self,
        label: &str,
        r: vtd_iommufd::Result<u32>,
        want: Result<u32, (vtd_iommufd::Errno, u32)>,
    ) -> Outcome {
        let got = match &r {
            Ok(n) => Ok(*n),
            Err(vtd_iommufd::Error::Invalidate {
                errno, processed, ..
            }) => Err((*errno, *processed)),
            Err(e) => return Err(Failure(format!("{label}: {e}"))),
        };
        let text = |v: &Result<u32, (vtd_iommufd::Errno, u32)>| match v {
            Ok(n) => format!("ok/{n}"),
            Err((e, n)) => format!("{e:?}/{n}"),
        };
        self.note(label, text(&got));
        if got == want {
            Ok(())
        } else {
            Err(Failure(format!(
                "{label}: got {}, want {}",
                text(&got),
                text(&want)
            )))
        }
    }

    /// Record `label=true|false` and require `cond`.
    pub fn check(&mut self, label: &str, cond: bool) -> Outcome {
        self.note(label, cond);
        if cond {
            Ok(())
        } else {
            Err(Failure(format!("{label}: does not hold")))
        }
    }
}

/// The result of one case on one side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaseResult {
    /// `suite/name`.
    pub id: String,
    /// The failure, if any.
    pub failure: Option<String>,
    /// What it observed.
    pub observed: Vec<String>,
}

impl CaseResult {
    /// The case passed.
    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }

    /// The one-line form the binary prints and the report parses:
    /// `CASE <suite/name> PASS|FAIL <observations> [| <failure>]`.
    pub fn line(&self) -> String {
        let obs = if self.observed.is_empty() {
            "-".to_string()
        } else {
            self.observed.join(";")
        };
        match &self.failure {
            None => format!("CASE {} PASS {obs}", self.id),
            Some(f) => format!("CASE {} FAIL {obs} | {}", self.id, f.replace('\n', " ")),
        }
    }

    /// Parse a line made by [`CaseResult::line`] (serial noise before `CASE ` is skipped).
    pub fn parse(line: &str) -> Option<CaseResult> {
        let line = line.trim_end_matches(['\r', '\n']);
        let rest = &line[line.find("CASE ")? + 5..];
        let (id, rest) = rest.split_once(' ')?;
        let (verdict, rest) = rest.split_once(' ')?;
        let (obs, failure) = match verdict {
            "PASS" => (rest, None),
            "FAIL" => match rest.split_once(" | ") {
                Some((o, f)) => (o, Some(f.to_string())),
                None => (rest, Some(String::from("(no reason)"))),
            },
            _ => return None,
        };
        let observed = if obs == "-" {
            Vec::new()
        } else {
            obs.split(';').map(str::to_string).collect()
        };
        Some(CaseResult {
            id: id.to_string(),
            failure,
            observed,
        })
    }
}

/// Run one case. A panic inside it (a bug in the case, never input) is a failure too.
pub fn run_case(target: &dyn Target, suite: Suite, case: &Case) -> CaseResult {
    let mut log = Log::default();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        (case.run)(target, &mut log)
    }));
    let failure = match result {
        Ok(Ok(())) => None,
        Ok(Err(f)) => Some(f.0),
        Err(_) => Some("the case panicked".to_string()),
    };
    CaseResult {
        id: format!("{}/{}", suite.name(), case.name),
        failure,
        observed: log.items,
    }
}

/// Run every case of `suite`, calling `each` with each result as it comes.
pub fn run_suite(
    target: &dyn Target,
    suite: Suite,
    mut each: impl FnMut(&CaseResult),
) -> Vec<CaseResult> {
    suite
        .cases()
        .iter()
        .map(|case| {
            let r = run_case(target, suite, case);
            each(&r);
            r
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_parses_back_into_its_result() {
        let r = CaseResult {
            id: "selftest/objects.ids".into(),
            failure: Some("x: got 1, want 2".into()),
            observed: vec!["a=1".into(), "b=EBUSY".into()],
        };
        assert_eq!(CaseResult::parse(&format!("noise{}\r", r.line())), Some(r));
    }

    #[test]
    fn a_passing_line_without_observations_parses() {
        let r = CaseResult::parse("CASE vtd/x PASS -").unwrap();
        assert!(r.passed() && r.observed.is_empty());
    }
}
