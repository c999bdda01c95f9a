//! Process output: each virtual process's stdout and stderr go to `logs/<process>.log` in the
//! container's state directory, bounded (one rotation to `.log.1` at 1 MiB), and, when `up` runs
//! in the foreground, to hydra's stdout prefixed with the process name, as Compose does.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Size at which a log is rotated; at most twice this is kept per process.
pub const MAX_LOG_BYTES: u64 = 1 << 20;

/// One process's log file.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    file: Option<File>,
    size: u64,
}

impl LogFile {
    /// Creates the (empty) log at once, so `hydra logs` finds a process that printed nothing yet.
    pub fn new(dir: &Path, process: &str) -> Self {
        let mut log = LogFile {
            path: dir.join(format!("{process}.log")),
            file: None,
            size: 0,
        };
        log.write(b"");
        log
    }

    /// Appends `bytes`, rotating first when the file would pass the bound. A log that cannot be
    /// written (disk full) drops output rather than stopping the supervisor.
    pub fn write(&mut self, bytes: &[u8]) {
        if self.size + bytes.len() as u64 > MAX_LOG_BYTES {
            let _ = std::fs::rename(&self.path, self.path.with_extension("log.1"));
            self.file = None;
            self.size = 0;
        }
        if self.file.is_none() {
            self.file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .ok();
            self.size = self
                .file
                .as_ref()
                .and_then(|f| f.metadata().ok())
                .map_or(0, |m| m.len());
        }
        if let Some(f) = self.file.as_mut() {
            if f.write_all(bytes).is_ok() {
                self.size += bytes.len() as u64;
            }
        }
    }
}

/// Splits `pending + chunk` into complete lines (returned) and a remainder (kept in `pending`).
/// A line longer than 64 KiB is cut so one process cannot grow the supervisor without bound.
pub fn complete_lines(pending: &mut Vec<u8>, chunk: &[u8]) -> Vec<Vec<u8>> {
    pending.extend_from_slice(chunk);
    let mut lines = Vec::new();
    while let Some(pos) = pending.iter().position(|&b| b == b'\n') {
        let rest = pending.split_off(pos + 1);
        lines.push(std::mem::replace(pending, rest));
    }
    if pending.len() > 64 * 1024 {
        let mut cut = std::mem::take(pending);
        cut.push(b'\n');
        lines.push(cut);
    }
    lines
}

/// The log files of a process, oldest first.
pub fn files(dir: &Path, process: &str) -> Vec<PathBuf> {
    let current = dir.join(format!("{process}.log"));
    [current.with_extension("log.1"), current]
        .into_iter()
        .filter(|p| p.exists())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_and_remainders_kept() {
        let mut pending = Vec::new();
        assert!(complete_lines(&mut pending, b"hel").is_empty());
        let lines = complete_lines(&mut pending, b"lo\nwor");
        assert_eq!(lines, vec![b"hello\n".to_vec()]);
        let lines = complete_lines(&mut pending, b"ld\n\n");
        assert_eq!(lines, vec![b"world\n".to_vec(), b"\n".to_vec()]);
        assert!(pending.is_empty());
    }

    #[test]
    fn logs_rotate_at_the_bound() {
        let dir = std::env::temp_dir().join(format!("hydra-logs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let mut log = LogFile::new(&dir, "p");
        let chunk = vec![b'x'; 300 * 1024];
        for _ in 0..5 {
            log.write(&chunk);
        }
        let current = std::fs::metadata(dir.join("p.log")).expect("log").len();
        let old = std::fs::metadata(dir.join("p.log.1"))
            .expect("rotated")
            .len();
        assert!(current <= MAX_LOG_BYTES && old <= MAX_LOG_BYTES);
        assert_eq!(files(&dir, "p").len(), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
