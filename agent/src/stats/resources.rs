//! The agent's own resources: CPU time (getrusage), resident memory and threads
//! (`/proc/self/status`), open files (`/proc/self/fd`) and their limit, the SQLite
//! database and WAL sizes, and free space on the data directory's file system
//! (statvfs). A value that cannot be read (another OS, a missing file) is `None`,
//! never an error: resources are observed, not required.

use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;

/// One reading.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    /// User plus system CPU time since the process started, in seconds.
    pub cpu_seconds: Option<f64>,
    /// CPU used since the previous reading, in percent of one core.
    pub cpu_percent: Option<f64>,
    /// Resident memory in bytes.
    pub rss_bytes: Option<u64>,
    /// Threads.
    pub threads: Option<u64>,
    /// Open file descriptors.
    pub open_files: Option<u64>,
    /// The soft limit on open file descriptors.
    pub max_open_files: Option<u64>,
    /// `rmds.db` size in bytes.
    pub db_bytes: Option<u64>,
    /// `rmds.db-wal` size in bytes (0 when there is none).
    pub wal_bytes: Option<u64>,
    /// Bytes available to unprivileged users on the data directory's file system.
    pub disk_free_bytes: Option<u64>,
    /// Size of that file system in bytes.
    pub disk_total_bytes: Option<u64>,
}

/// Reads everything except `cpu_percent` (which needs an earlier reading, see
/// [`cpu_percent`]). Blocking: a few small file reads and two syscalls.
pub fn read(data_dir: &Path) -> Resources {
    let (rss_bytes, threads) = std::fs::read_to_string("/proc/self/status")
        .map(|s| parse_status(&s))
        .unwrap_or((None, None));
    let file_size = |name: &str| match std::fs::metadata(data_dir.join(name)) {
        Ok(m) => Some(m.len()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(0),
        Err(_) => None,
    };
    let disk = nix::sys::statvfs::statvfs(data_dir).ok();
    // fsblkcnt_t and c_ulong are u64 here but narrower elsewhere.
    #[allow(clippy::unnecessary_cast)]
    let space = |d: &nix::sys::statvfs::Statvfs, blocks: fn(&nix::sys::statvfs::Statvfs) -> _| {
        (blocks(d) as u64).saturating_mul(d.fragment_size() as u64)
    };
    Resources {
        cpu_seconds: cpu_seconds(),
        cpu_percent: None,
        rss_bytes,
        threads,
        open_files: open_files(),
        max_open_files: nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .ok()
            .map(|(soft, _)| soft),
        db_bytes: file_size("rmds.db"),
        wal_bytes: file_size("rmds.db-wal"),
        disk_free_bytes: disk.as_ref().map(|d| space(d, |d| d.blocks_available())),
        disk_total_bytes: disk.as_ref().map(|d| space(d, |d| d.blocks())),
    }
}

fn cpu_seconds() -> Option<f64> {
    let u = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF).ok()?;
    let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    let total = secs(u.user_time()) + secs(u.system_time());
    Some((total * 1e6).round() / 1e6)
}

fn open_files() -> Option<u64> {
    // The directory being listed is itself an open descriptor while we count.
    let n = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
    Some(n.saturating_sub(1))
}

/// (resident bytes, threads) from the text of `/proc/self/status`.
pub fn parse_status(text: &str) -> (Option<u64>, Option<u64>) {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
    };
    (field("VmRSS:").map(|kb| kb * 1024), field("Threads:"))
}

/// CPU use in percent of one core between two readings `elapsed` apart; `None`
/// when they are too close together to say.
pub fn cpu_percent(before: f64, after: f64, elapsed: Duration) -> Option<f64> {
    if elapsed < Duration::from_millis(50) {
        return None;
    }
    let pct = (after - before).max(0.0) / elapsed.as_secs_f64() * 100.0;
    Some((pct * 100.0).round() / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_proc_status_text_then_rss_and_threads_are_read() {
        let text = "Name:\trmds-agent\nVmPeak:\t  123 kB\nVmRSS:\t   2048 kB\nThreads:\t7\n";
        assert_eq!(parse_status(text), (Some(2048 * 1024), Some(7)));
        assert_eq!(parse_status("garbage"), (None, None));
    }

    #[test]
    fn given_two_cpu_readings_then_the_percent_of_one_core_is_their_rate() {
        assert_eq!(cpu_percent(1.0, 1.5, Duration::from_secs(1)), Some(50.0));
        assert_eq!(cpu_percent(1.0, 0.5, Duration::from_secs(1)), Some(0.0));
        assert_eq!(cpu_percent(1.0, 2.0, Duration::from_millis(10)), None);
    }

    #[test]
    fn given_this_process_then_every_linux_value_is_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("rmds.db"), vec![0u8; 4096]).unwrap();
        let r = read(dir.path());
        assert_eq!(r.db_bytes, Some(4096));
        assert_eq!(r.wal_bytes, Some(0));
        assert!(r.cpu_seconds.unwrap() > 0.0);
        assert!(r.rss_bytes.unwrap() > 0);
        assert!(r.threads.unwrap() >= 1);
        assert!(r.open_files.unwrap() >= 3);
        assert!(r.max_open_files.unwrap() >= r.open_files.unwrap());
        assert!(r.disk_total_bytes.unwrap() >= r.disk_free_bytes.unwrap());
        assert!(r.disk_total_bytes.unwrap() > 0);
    }
}
