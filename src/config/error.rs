//! `ConfigError`: one problem in a YAML file, with the file, line and column it is about, shown
//! as one line (`hydra.yaml:7:15: ...`) the way compilers report errors.

use std::fmt;
use std::path::{Path, PathBuf};

use serde_saphyr::{Error as YamlError, Location};

/// A YAML file that cannot be read, parsed or accepted.
///
/// `line` and `column` are 1-based; both are 0 when the error is about the file as a whole
/// (it cannot be read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl ConfigError {
    /// An error at `line:column` of `file`. Control characters in `message` (a multi-line value
    /// quoted back to the user, say) are escaped so the error stays one line.
    pub fn new(file: &Path, line: usize, column: usize, message: impl Into<String>) -> Self {
        ConfigError {
            file: file.to_path_buf(),
            line,
            column,
            message: one_line(&message.into()),
        }
    }

    /// An error at a location serde-saphyr recorded. An unknown location becomes 1:1 so that
    /// a parse error always names a place in the file.
    pub fn at(file: &Path, location: &Location, message: impl Into<String>) -> Self {
        let line = usize::try_from(location.line())
            .unwrap_or(usize::MAX)
            .max(1);
        let column = usize::try_from(location.column())
            .unwrap_or(usize::MAX)
            .max(1);
        Self::new(file, line, column, message)
    }

    /// An error about the whole file (it cannot be read): no line, no column.
    pub fn whole_file(file: &Path, message: impl Into<String>) -> Self {
        Self::new(file, 0, 0, message)
    }

    /// Converts a serde-saphyr error (syntax, wrong type, unknown or missing key) into one
    /// line that says what was expected.
    pub fn from_yaml(file: &Path, error: &YamlError) -> Self {
        let inner = innermost(error);
        let location = error
            .location()
            .or_else(|| inner.location())
            .unwrap_or(Location::UNKNOWN);
        Self::at(file, &location, yaml_message(inner))
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file.display(),
                self.line,
                self.column,
                self.message
            )
        }
    }
}

impl std::error::Error for ConfigError {}

/// The error itself, without the snippet and alias wrappers serde-saphyr puts around it.
fn innermost(mut error: &YamlError) -> &YamlError {
    loop {
        match error {
            YamlError::WithSnippet { error: inner, .. }
            | YamlError::AliasError { error: inner, .. } => error = inner,
            other => return other,
        }
    }
}

/// The message for a serde-saphyr error, worded for someone editing the YAML file.
fn yaml_message(error: &YamlError) -> String {
    match error {
        YamlError::SerdeUnknownField {
            field, expected, ..
        } => {
            if expected.is_empty() {
                format!("unknown key `{field}` (no keys are allowed here)")
            } else {
                format!(
                    "unknown key `{field}` (expected one of: {})",
                    expected.join(", ")
                )
            }
        }
        YamlError::SerdeMissingField { field, .. } => format!("missing key `{field}`"),
        YamlError::DuplicateMappingKey { key: Some(key), .. } => {
            format!("key `{key}` appears twice in this mapping")
        }
        YamlError::DuplicateMappingKey { key: None, .. } => {
            "a key appears twice in this mapping".to_string()
        }
        YamlError::NullIntoString { .. } => {
            "expected a value (a string or number), found nothing".to_string()
        }
        YamlError::Unexpected { expected, .. } => match *expected {
            "string scalar" => {
                "expected a single value (a string or number), not a list or mapping".to_string()
            }
            "sequence start" => "expected a list".to_string(),
            "mapping start" => "expected a mapping (key: value ...)".to_string(),
            other => format!("expected {other}"),
        },
        YamlError::SerdeInvalidType {
            unexpected,
            expected,
            ..
        } => format!("expected {expected}, found {unexpected}"),
        YamlError::MultipleDocuments { .. } => {
            "the file holds more than one YAML document (expected exactly one)".to_string()
        }
        other => {
            use serde_saphyr::MessageFormatter;
            serde_saphyr::DefaultMessageFormatter
                .format_message(other)
                .into_owned()
        }
    }
}

/// Escapes line breaks and other control characters so a message is one line.
fn one_line(message: &str) -> String {
    if !message.chars().any(char::is_control) {
        return message.to_string();
    }
    message
        .chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_one_line_with_position() {
        let e = ConfigError::new(Path::new("hydra.yaml"), 7, 15, "bad\nthing");
        assert_eq!(e.to_string(), "hydra.yaml:7:15: bad\\nthing");
        let e = ConfigError::whole_file(Path::new("/x/hydra.yaml"), "cannot read it");
        assert_eq!(e.to_string(), "/x/hydra.yaml: cannot read it");
    }
}
