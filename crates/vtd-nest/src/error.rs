//! The CLI's errors: bad input (usage, files that do not parse, impossible configurations)
//! as one line each. An expectation that does not hold is not an error but a scenario
//! outcome (see [`crate::run_scenario`]).

use std::io;

/// Exit status for bad input (usage, unreadable or malformed files, impossible setups).
pub const EXIT_BAD_INPUT: i32 = 2;
/// Exit status when a scenario's expectation does not hold.
pub const EXIT_MISMATCH: i32 = 1;

/// Bad input, reported as one line.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: String,
        /// Why.
        source: io::Error,
    },
    /// A scenario does not parse, at a place in the file.
    #[error("{path}:{line}:{col}: {msg}")]
    Syntax {
        /// The file.
        path: String,
        /// 1-based line.
        line: usize,
        /// 1-based column (in characters).
        col: usize,
        /// What is wrong.
        msg: String,
    },
    /// A scenario parses but asks for something impossible.
    #[error("{path}: {msg}")]
    Config {
        /// The file.
        path: String,
        /// What is impossible (with the line of the step when a step is at fault).
        msg: String,
    },
    /// A trace line does not parse.
    #[error("{path}:{line}: {msg}")]
    Trace {
        /// The file.
        path: String,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        msg: String,
    },
    /// A bad command-line value.
    #[error("{0}")]
    Usage(String),
    /// The simulated machine could not be set up.
    #[error("{0}")]
    Setup(String),
    /// Writing the output failed.
    #[error("output: {0}")]
    Output(#[from] io::Error),
}

/// Result with the CLI's error.
pub type Result<T> = std::result::Result<T, Error>;

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

/// Open `path` for reading if it is a regular file. Anything else (a FIFO, a device, a
/// directory) is refused before opening: opening a FIFO blocks until a writer comes, and a
/// device such as `/dev/zero` never ends.
pub fn open_input(path: &std::path::Path) -> io::Result<std::fs::File> {
    if !std::fs::metadata(path)?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    std::fs::File::open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        let text = "a = 1\nbb = [\n  x\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 6), (2, 1));
        assert_eq!(line_col(text, 15), (3, 3));
        assert_eq!(line_col(text, 999), (4, 1));
    }
}
