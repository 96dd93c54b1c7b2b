#!/usr/bin/env bash
# The test command of the README: every crate's unit, integration, property and doc tests.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --all-targets
cargo test --workspace --doc
