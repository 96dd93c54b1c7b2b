//! Scenarios: a documented TOML format (docs/SCENARIOS.md), loaded with line:column
//! errors, run step by step with every expectation checked.

pub mod format;
pub mod load;
pub mod world;

pub use load::{Scenario, load, parse};
pub use world::{Base, Mismatch, World};
