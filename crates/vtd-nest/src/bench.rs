//! Bench.
use crate::output::Report;
/// Run.
pub fn run(_q: bool, _rep: &mut Report<'_>) -> crate::Result<()> {
    Ok(())
}
