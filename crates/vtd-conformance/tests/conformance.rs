//! The conformance cases on the host: always against the simulation, and against this
//! machine's real `/dev/iommu` when it has one (skipped otherwise, saying so). Guests with
//! a real kernel run the same cases through `scripts/real-kernel.sh`.

use vtd_conformance::{CaseResult, RealTarget, SimTarget, Suite, Target, run_suite};
use vtd_iommufd::Errno;
use vtd_iommufd::selftest::iommu_test_cmd;

fn failures(results: &[CaseResult]) -> Vec<String> {
    results
        .iter()
        .filter(|r| !r.passed())
        .map(CaseResult::line)
        .collect()
}

#[test]
fn every_selftest_case_passes_on_the_simulation() {
    let sim = SimTarget::new(Suite::Selftest).unwrap();
    let results = run_suite(&sim, Suite::Selftest, |_| {});
    assert_eq!(results.len(), Suite::Selftest.cases().len());
    assert_eq!(failures(&results), Vec::<String>::new());
}

#[test]
fn every_vtd_case_passes_on_the_simulation() {
    let sim = SimTarget::new(Suite::Vtd).unwrap();
    let results = run_suite(&sim, Suite::Vtd, |_| {});
    assert_eq!(failures(&results), Vec::<String>::new());
}

#[test]
fn test_cmd_is_enotty_without_the_selftest_option() {
    let platform = vtd_kernel::Platform::new(vtd_kernel::PlatformDesc::without_nesting()).unwrap();
    let ictx = vtd_iommufd::Iommufd::new(platform.open_iommufd());
    let mut cmd = iommu_test_cmd::new(0, 0);
    // SAFETY: no user pointers in the payload.
    let err = unsafe { ictx.test_cmd_raw(&mut cmd) }.unwrap_err();
    assert_eq!(err.errno(), Some(Errno::ENOTTY));
}

/// This host's kernel answers IOMMU_TEST_CMD (built with CONFIG_IOMMUFD_TEST).
fn real_has_selftest(real: &RealTarget) -> bool {
    let Ok(ictx) = real.iommufd() else {
        return false;
    };
    let mut cmd = iommu_test_cmd::new(0, 0);
    // SAFETY: op 0 takes no user pointers; a kernel with the selftest answers EOPNOTSUPP.
    let r = unsafe { ictx.test_cmd_raw(&mut cmd) };
    r.err().and_then(|e| e.errno()) == Some(Errno::EOPNOTSUPP)
}

/// A QEMU `edu` device is bound to vfio-pci on this host, with a cdev.
fn real_has_edu() -> bool {
    RealTarget::edu_cdev().is_some()
}

#[test]
fn cases_agree_with_a_real_dev_iommu_when_present() {
    if !RealTarget::available() {
        println!(
            "SKIPPED: no /dev/iommu on this machine (the QEMU guests of scripts/real-kernel.sh run these cases on a real kernel)"
        );
        return;
    }
    let real = RealTarget;
    let mut suites = Vec::new();
    if real_has_selftest(&real) {
        suites.push(Suite::Selftest);
    } else {
        println!(
            "SKIPPED selftest suite: /dev/iommu has no IOMMU_TEST_CMD (CONFIG_IOMMUFD_TEST off)"
        );
    }
    if real_has_edu() {
        suites.push(Suite::Vtd);
    } else {
        println!("SKIPPED vtd suite: no QEMU edu device on vfio-pci here");
    }
    for suite in suites {
        let sim = SimTarget::new(suite).unwrap();
        let on_real = run_suite(&real, suite, |_| {});
        let on_sim = run_suite(&sim, suite, |_| {});
        let disagree: Vec<String> = on_real
            .iter()
            .zip(&on_sim)
            .filter(|(r, s)| !(r.passed() && s.passed() && r.observed == s.observed))
            .map(|(r, s)| format!("real: {}\n sim: {}", r.line(), s.line()))
            .collect();
        assert_eq!(disagree, Vec::<String>::new(), "suite {}", suite.name());
    }
}
