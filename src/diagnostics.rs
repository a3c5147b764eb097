//! A problem in a configuration file, located for a person to fix:
//! `file:line: message`.

use std::fmt;

/// One problem in a policy or classification file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    /// 0 when the problem concerns the whole file.
    pub line: usize,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}:{}: {}", self.file, self.line, self.message)
        }
    }
}

/// The 1-based line of byte `offset` in `text`.
pub fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())]
        .bytes()
        .filter(|&b| b == b'\n')
        .count()
        + 1
}

/// A TOML file that does not parse, as a problem at the line where it
/// stops making sense.
pub fn toml_problem(file: &str, text: &str, error: &toml::de::Error) -> Problem {
    Problem {
        file: file.to_owned(),
        line: error.span().map(|s| line_of(text, s.start)).unwrap_or(0),
        message: error.message().trim().to_owned(),
    }
}
