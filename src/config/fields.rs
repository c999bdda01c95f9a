//! Reading one scalar of the YAML file: a size, a CPU amount, a whole number in a range, a
//! boolean, a name, an absolute path, a duration, one of a few words. Each reader returns a
//! `ConfigError` at the value's own line and column, worded `KEY: expected ..., found '...'`.

use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_saphyr::{Location, Spanned};

use super::duration::parse_duration;
use super::error::ConfigError;
use super::spec::check_name;
use super::units::{parse_cpus, parse_size};
use super::yaml::Text;

/// Makes errors about one file.
#[derive(Debug, Clone, Copy)]
pub struct Checker<'a> {
    pub file: &'a Path,
}

impl<'a> Checker<'a> {
    pub fn new(file: &'a Path) -> Self {
        Checker { file }
    }

    /// An error at a location.
    pub fn error(&self, location: &Location, message: impl Into<String>) -> ConfigError {
        ConfigError::at(self.file, location, message)
    }

    /// An error at a value.
    pub fn at<T>(&self, value: &Spanned<T>, message: impl Into<String>) -> ConfigError {
        self.error(&value.referenced, message)
    }

    /// A required key that is absent from the mapping at `parent`.
    pub fn missing<T>(&self, parent: &Spanned<T>, key: &str, hint: &str) -> ConfigError {
        self.at(parent, format!("missing key `{key}` ({hint})"))
    }

    /// A value that is not what `key` accepts.
    pub fn expected(&self, key: &str, value: &Text, expected: &str) -> ConfigError {
        self.at(
            value,
            format!("{key}: expected {expected}, found '{}'", value.value),
        )
    }

    /// A size in bytes: a plain number or binary units (`512MB` = 512 MiB).
    pub fn size(&self, key: &str, value: &Text) -> Result<u64, ConfigError> {
        parse_size(&value.value).map_err(|e| self.at(value, format!("{key}: {e}")))
    }

    /// A CPU amount (`0.5` = half of one CPU), in thousandths of a CPU.
    pub fn cpus(&self, key: &str, value: &Text) -> Result<u64, ConfigError> {
        parse_cpus(&value.value).map_err(|e| self.at(value, format!("{key}: {e}")))
    }

    /// A whole number in `range`; `expected` describes the range for the message.
    pub fn int(
        &self,
        key: &str,
        value: &Text,
        range: RangeInclusive<i64>,
        expected: &str,
    ) -> Result<i64, ConfigError> {
        match value.value.trim().parse::<i64>() {
            Ok(n) if range.contains(&n) => Ok(n),
            _ => Err(self.expected(key, value, expected)),
        }
    }

    /// A whole number of at least 1 that fits `T` (counts, pids, file numbers).
    pub fn positive<T: TryFrom<i64> + Bounded>(
        &self,
        key: &str,
        value: &Text,
    ) -> Result<T, ConfigError> {
        let n = self.int(key, value, 1..=i64::MAX, "a whole number of at least 1")?;
        T::try_from(n).map_err(|_| {
            self.expected(
                key,
                value,
                &format!("a whole number no larger than {}", T::LARGEST),
            )
        })
    }

    /// `true` or `false` (YAML 1.1's `yes`/`no`/`on`/`off` too).
    pub fn boolean(&self, key: &str, value: &Text) -> Result<bool, ConfigError> {
        match value.value.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" => Ok(true),
            "false" | "no" | "off" => Ok(false),
            _ => Err(self.expected(key, value, "true or false")),
        }
    }

    /// A container, process, volume, channel or network name (`spec::check_name`).
    pub fn name(&self, key: &str, value: &Text) -> Result<String, ConfigError> {
        check_name(&value.value)
            .map(|()| value.value.clone())
            .map_err(|e| self.at(value, format!("{key}: {e}")))
    }

    /// An absolute path inside the container.
    pub fn absolute(&self, key: &str, value: &Text) -> Result<String, ConfigError> {
        if value.value.starts_with('/') && !value.value.contains('\0') {
            Ok(value.value.clone())
        } else {
            Err(self.expected(key, value, "an absolute path"))
        }
    }

    /// A host path; relative paths are taken from `dir` (the YAML file's directory).
    pub fn host_path(&self, key: &str, value: &Text, dir: &Path) -> Result<PathBuf, ConfigError> {
        if value.value.is_empty() || value.value.contains('\0') {
            return Err(self.expected(key, value, "a path"));
        }
        Ok(resolve(dir, Path::new(&value.value)))
    }

    /// A duration greater than zero (`30s`, `500ms`, `1m30s`).
    pub fn duration(&self, key: &str, value: &Text) -> Result<Duration, ConfigError> {
        match parse_duration(&value.value) {
            Ok(d) if d.is_zero() => Err(self.expected(key, value, "a duration greater than zero")),
            Ok(d) => Ok(d),
            Err(e) => Err(self.at(value, format!("{key}: {e}"))),
        }
    }

    /// One of a few words, matched exactly.
    pub fn choice<T: Copy>(
        &self,
        key: &str,
        value: &Text,
        choices: &[(&str, T)],
    ) -> Result<T, ConfigError> {
        choices
            .iter()
            .find(|(word, _)| *word == value.value)
            .map(|&(_, v)| v)
            .ok_or_else(|| {
                let words: Vec<&str> = choices.iter().map(|(w, _)| *w).collect();
                self.expected(key, value, &format!("one of {}", words.join(", ")))
            })
    }
}

/// The largest value of an unsigned integer type, for messages.
pub trait Bounded {
    const LARGEST: u64;
}

impl Bounded for u32 {
    const LARGEST: u64 = u32::MAX as u64;
}

impl Bounded for u64 {
    const LARGEST: u64 = i64::MAX as u64;
}

/// `path` taken from `dir` unless absolute, without `.` components (`./rootfs` → `dir/rootfs`).
pub fn resolve(dir: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        return path.to_path_buf();
    }
    let mut out = dir.to_path_buf();
    for part in path.components() {
        if part != std::path::Component::CurDir {
            out.push(part);
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// "line L, column C" of a location, for messages that point at a second place.
pub fn place(location: &Location) -> String {
    format!("line {}, column {}", location.line(), location.column())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_against_the_file_directory() {
        let dir = Path::new("/srv/app");
        assert_eq!(
            resolve(dir, Path::new("./rootfs")),
            Path::new("/srv/app/rootfs")
        );
        assert_eq!(
            resolve(dir, Path::new("img/a.hcon")),
            Path::new("/srv/app/img/a.hcon")
        );
        assert_eq!(
            resolve(dir, Path::new("/abs/rootfs")),
            Path::new("/abs/rootfs")
        );
        assert_eq!(resolve(dir, Path::new("../x")), Path::new("/srv/app/../x"));
        assert_eq!(
            resolve(Path::new(""), Path::new("./rootfs")),
            Path::new("rootfs")
        );
        assert_eq!(resolve(Path::new(""), Path::new(".")), Path::new("."));
    }
}
