//! Traces.
use crate::output::Report;
/// Generate.
pub fn generate(
    _k: crate::TraceKind,
    _n: u64,
    _p: &str,
    _o: &mut dyn std::io::Write,
) -> crate::Result<()> {
    Ok(())
}
/// Replay.
pub fn replay(_p: &str, _r: u32, _rep: &mut Report<'_>) -> crate::Result<()> {
    Ok(())
}
