//! Reading TOML files so that every error names its file, line and column.
//!
//! Config, manifests and agent files all go through [`parse_toml`]; errors
//! found after parsing (a bad path, an unknown tool name) use
//! [`SourceFile::error_at`] with the span the parser kept, so the person fixing
//! the file is pointed at the exact place.

use std::ops::Range;
use std::path::{Path, PathBuf};

/// An error located in a source file.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{}:{line}:{column}: {message}", file.display())]
pub struct SourceError {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// A file's path and its text, kept to turn byte spans into line/column.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
}

impl SourceFile {
    /// Read a file; an I/O error is reported at line 1 with what to check.
    pub fn read(path: &Path) -> Result<Self, SourceError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(Self { path: path.to_owned(), text }),
            Err(e) => Err(SourceError {
                file: path.to_owned(),
                line: 0,
                column: 0,
                message: format!("cannot read file: {e}; check the path (relative paths are resolved against the referring file's directory)"),
            }),
        }
    }

    /// An error at a byte span of this file (or line 1 when no span is known).
    pub fn error_at(&self, span: Option<Range<usize>>, message: impl Into<String>) -> SourceError {
        let (line, column) = span.map(|s| line_col(&self.text, s.start)).unwrap_or((1, 1));
        SourceError { file: self.path.clone(), line, column, message: message.into() }
    }

    /// The directory relative paths in this file are resolved against.
    pub fn dir(&self) -> PathBuf {
        self.path.parent().map(Path::to_owned).unwrap_or_default()
    }

    /// Resolve `p` relative to this file's directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() { p.to_owned() } else { self.dir().join(p) }
    }
}

/// Parse TOML text into `T`, turning parser errors into located errors.
pub fn parse_toml<T: serde::de::DeserializeOwned>(file: &SourceFile) -> Result<T, SourceError> {
    toml::from_str(&file.text).map_err(|e| file.error_at(e.span(), e.message().trim().to_owned()))
}

/// 1-based line and column of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map(|l| l.chars().count()).unwrap_or(0) + 1;
    (line, column)
}

/// A list of located errors, printed one per line.
#[derive(Debug, Clone, Default, thiserror::Error)]
#[error("{}", self.0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct SourceErrors(pub Vec<SourceError>);

/// Durations in config files are written as "30s", "5m", "1h 30m".
pub mod duration {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(|e| {
            serde::de::Error::custom(format!("`{s}` is not a duration ({e}); write e.g. \"30s\", \"5m\" or \"1h\""))
        })
    }

    pub mod option {
        use super::*;
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            super::deserialize(d).map(Some)
        }
    }
}

/// The first ```toml block after `heading` in docs/reference.md, as a file
/// whose errors name that page and the block's own lines: the reference is
/// copied as is, so tests parse it with the types that read real files.
#[cfg(test)]
pub(crate) fn reference_toml_block(heading: &str) -> SourceFile {
    const REFERENCE: &str = include_str!("../docs/reference.md");
    let after = REFERENCE.split_once(heading).map(|(_, rest)| rest).unwrap_or_else(|| panic!("docs/reference.md has no heading {heading:?}"));
    let block = after.split_once("```toml\n").map(|(_, rest)| rest).unwrap_or_else(|| panic!("no ```toml block after {heading:?}"));
    let text = block.split_once("\n```").map(|(b, _)| b).unwrap_or_else(|| panic!("the block after {heading:?} does not end"));
    SourceFile { path: format!("docs/reference.md ({heading})").into(), text: text.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        let t = "a = 1\nbb = 2\n";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 6), (2, 1));
        assert_eq!(line_col(t, 9), (2, 4));
        assert_eq!(line_col(t, 999), (3, 1));
    }

    #[test]
    fn parse_error_points_at_line() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        struct T {
            #[allow(dead_code)]
            a: u32,
        }
        let f = SourceFile { path: "x.toml".into(), text: "a = 1\nb = 2\n".into() };
        let e = parse_toml::<T>(&f).unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        assert!(e.to_string().starts_with("x.toml:2:1: unknown field `b`"), "{e}");
    }
}
