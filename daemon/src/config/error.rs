//! Configuration errors, each pointing at a file, a line and a key.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read: {error}", file.display())]
    Read { file: PathBuf, error: String },
    #[error("{}:{line}: {key}: {message}", file.display())]
    Invalid {
        file: PathBuf,
        line: usize,
        key: String,
        message: String,
    },
}

impl ConfigError {
    pub(super) fn at(
        text: &str,
        file: &Path,
        span: std::ops::Range<usize>,
        key: &str,
        message: String,
    ) -> Self {
        ConfigError::Invalid {
            file: file.to_owned(),
            line: line_of(text, span.start),
            key: key.to_owned(),
            message,
        }
    }

    /// Turns a TOML or serde error into one naming the key at the error's position.
    pub(super) fn from_toml(e: &toml::de::Error, text: &str, file: &Path) -> Self {
        let start = e.span().map_or(0, |s| s.start);
        let message = e.message().trim().to_owned();
        let key = key_at(text, start).unwrap_or_else(|| "(file)".to_owned());
        ConfigError::Invalid {
            file: file.to_owned(),
            line: line_of(text, start),
            key,
            message,
        }
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(1, |t| t.matches('\n').count() + 1)
}

/// The dotted key at `offset`: the last table header before it, plus the key on its line.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let before = text.get(..offset)?;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = text
        .get(line_start..)?
        .lines()
        .next()
        .unwrap_or_default()
        .trim();
    let table = before
        .get(..line_start)?
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|h| h.trim_matches(|c| c == '[' || c == ']').trim().to_owned());
    if line.starts_with('[') {
        return Some(
            line.trim_matches(|c| c == '[' || c == ']')
                .trim()
                .to_owned(),
        );
    }
    let key = line
        .split('=')
        .next()
        .map(str::trim)
        .filter(|k| !k.is_empty() && !k.starts_with('#'));
    match (table, key) {
        (Some(t), Some(k)) => Some(format!("{t}.{k}")),
        (None, Some(k)) => Some(k.to_owned()),
        (Some(t), None) => Some(t),
        (None, None) => None,
    }
}
