//! `load` and `parse`: a YAML file → a validated `AppSpec`, or one `ConfigError` naming the
//! file, line and column of the first problem.

use std::path::Path;

use serde_saphyr::Spanned;

use super::app::AppSpec;
use super::error::ConfigError;
use super::validate::validate;
use super::yaml::FileRaw;

/// Reads and validates the YAML file at `path`. Paths in it are resolved against its
/// directory; whether they exist is for the caller to check.
pub fn load(path: &Path) -> Result<AppSpec, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::whole_file(path, format!("cannot read the file: {e}")))?;
    parse(&text, path)
}

/// Validates YAML `text` as if read from `file` (used in errors and to resolve relative paths).
pub fn parse(text: &str, file: &Path) -> Result<AppSpec, ConfigError> {
    let raw: Option<Spanned<FileRaw>> =
        serde_saphyr::from_str(text).map_err(|e| ConfigError::from_yaml(file, &e))?;
    match raw {
        Some(raw) => validate(&raw, file),
        None => Err(ConfigError::new(
            file,
            1,
            1,
            "the file is empty (expected a mapping with at least `container` and `processes`)",
        )),
    }
}

#[cfg(test)]
mod tests;
