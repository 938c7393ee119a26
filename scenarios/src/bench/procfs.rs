//! What `/proc` says about a process, and file sizes.

use std::path::Path;

/// A `kB` field of `/proc/PID/status` (`VmHWM`: peak RSS, `VmRSS`: current RSS).
pub fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    kb_field(&s, field)
}

/// A `kB` field of `/proc/meminfo`.
pub fn meminfo_kb(field: &str) -> Option<u64> {
    kb_field(&std::fs::read_to_string("/proc/meminfo").ok()?, field)
}

fn kb_field(text: &str, field: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// utime + stime of the whole process (all its threads) in clock ticks, from
/// `/proc/PID/stat` (fields 14 and 15; the command name may hold spaces, so fields
/// are counted after its closing parenthesis).
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After ")": field 3 (state) is f[0], so field n is f[n - 3].
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Clock ticks per second (`USER_HZ`).
pub fn clock_ticks() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map(|v| v as u64)
        .unwrap_or(100)
}

/// Every regular file directly in `dir` with its size, largest first.
pub fn files(dir: &Path) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| {
                    let m = e.metadata().ok()?;
                    m.is_file()
                        .then(|| (e.file_name().to_string_lossy().into_owned(), m.len()))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort_by_key(|f| std::cmp::Reverse(f.1));
    v
}

/// CPU time spent by a set of processes over a run, to report it per message.
/// Every process on the machine shares two cores, so CPU per message says what a
/// run costs better than its wall-clock rate, which the others' work skews.
pub struct CpuMeter {
    start: Vec<(String, u32, u64)>,
}

impl CpuMeter {
    /// Starts measuring the named processes and this one (`load generator`).
    pub fn start(procs: &[(&str, Option<u32>)]) -> CpuMeter {
        let mut start: Vec<(String, u32, u64)> = procs
            .iter()
            .filter_map(|(name, pid)| {
                let pid = (*pid)?;
                Some((name.to_string(), pid, cpu_ticks(pid)?))
            })
            .collect();
        let me = std::process::id();
        if let Some(t) = cpu_ticks(me) {
            start.push(("load generator".into(), me, t));
        }
        CpuMeter { start }
    }

    /// CPU microseconds per message of each process since [`CpuMeter::start`]
    /// (`USER_HZ` resolution: 10 ms per process over the run).
    pub fn per_message(&self, messages: u64) -> Vec<(String, f64)> {
        let us_per_tick = 1e6 / clock_ticks() as f64;
        self.start
            .iter()
            .filter_map(|(name, pid, t0)| {
                let t1 = cpu_ticks(*pid)?;
                let us = t1.saturating_sub(*t0) as f64 * us_per_tick;
                Some((name.clone(), us / messages.max(1) as f64))
            })
            .collect()
    }
}

/// `alice 7.1, bob 6.0, … = 25.3 µs CPU/msg`.
pub fn cpu_line(cpu: &[(String, f64)]) -> String {
    let parts: Vec<String> = cpu.iter().map(|(n, us)| format!("{n} {us:.1}")).collect();
    let total: f64 = cpu.iter().map(|(_, us)| us).sum();
    format!("{} = {total:.1} µs CPU/msg", parts.join(", "))
}

/// The same as JSON: `{"alice": 7.1, …, "total": 25.3}`.
pub fn cpu_json(cpu: &[(String, f64)]) -> serde_json::Value {
    let mut v = serde_json::Map::new();
    for (n, us) in cpu {
        v.insert(n.clone(), serde_json::json!((us * 10.0).round() / 10.0));
    }
    let total: f64 = cpu.iter().map(|(_, us)| us).sum();
    v.insert(
        "total".into(),
        serde_json::json!((total * 10.0).round() / 10.0),
    );
    serde_json::Value::Object(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        let pid = std::process::id();
        assert!(status_kb(pid, "VmHWM").unwrap() > 0);
        assert!(status_kb(pid, "VmRSS").unwrap() > 0);
        assert!(cpu_ticks(pid).is_some());
        assert!(clock_ticks() > 0);
    }

    #[test]
    fn parses_kb_fields() {
        let t = "Name:\tx\nVmHWM:\t   33000 kB\nVmRSS:\t  1200 kB\n";
        assert_eq!(kb_field(t, "VmHWM"), Some(33000));
        assert_eq!(kb_field(t, "VmRSS"), Some(1200));
        assert_eq!(kb_field(t, "VmPeak"), None);
    }

    #[test]
    fn cpu_per_message_is_summed_per_process_and_in_total() {
        let cpu = vec![("alice".to_string(), 12.34), ("bob".to_string(), 1.0)];
        assert_eq!(cpu_line(&cpu), "alice 12.3, bob 1.0 = 13.3 µs CPU/msg");
        let v = cpu_json(&cpu);
        assert_eq!(v["alice"], 12.3);
        assert_eq!(v["total"], 13.3);
        let m = CpuMeter::start(&[("gone", None)]);
        let got = m.per_message(10);
        assert_eq!(got.len(), 1, "only this process is measured: {got:?}");
        assert_eq!(got[0].0, "load generator");
    }
}
