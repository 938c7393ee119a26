//! `rmdsctl check`: one Nagios-style verdict from the agent's readiness, backlog,
//! dead letters and peers. Exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN; one line of
//! text with performance data after `|`.

use serde_json::Value;

/// Thresholds (a value at or above the threshold trips it).
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    /// Undelivered messages for a warning.
    pub warn_pending: u64,
    /// Undelivered messages for a critical.
    pub crit_pending: u64,
    /// Sender's dead letters for a warning.
    pub warn_dead: u64,
    /// Known peers offline for a warning.
    pub warn_offline: u64,
}

/// What the agent said, as the check reads it.
pub struct Observed {
    /// `/readyz` status and body.
    pub ready: (u16, Value),
    /// `/v1/stats`.
    pub stats: Value,
    /// Number of the sender's dead letters.
    pub dead: u64,
    /// Peers known and offline.
    pub offline: Vec<String>,
}

/// The verdict: exit code and the line to print.
pub fn verdict(o: &Observed, t: &Thresholds) -> (u8, String) {
    let pending = o.stats["pending_messages"].as_u64().unwrap_or(0);
    let mut crit = Vec::new();
    let mut warn = Vec::new();
    if o.ready.0 != 200 {
        let mut failing = Vec::new();
        if let Some(checks) = o.ready.1["checks"].as_object() {
            for (name, c) in checks {
                if c["ok"] != Value::Bool(true) {
                    let why = c["reason"].as_str().unwrap_or("not ok");
                    failing.push(format!("{name}: {why}"));
                }
            }
        }
        if failing.is_empty() {
            failing.push(format!("/readyz answered {}", o.ready.0));
        }
        crit.push(format!("unready ({})", failing.join("; ")));
    }
    if pending >= t.crit_pending {
        crit.push(format!(
            "{pending} messages undelivered (>= {})",
            t.crit_pending
        ));
    } else if pending >= t.warn_pending {
        warn.push(format!(
            "{pending} messages undelivered (>= {})",
            t.warn_pending
        ));
    }
    if o.dead >= t.warn_dead {
        warn.push(format!("{} dead letters", o.dead));
    }
    if o.offline.len() as u64 >= t.warn_offline {
        warn.push(format!("peers offline: {}", o.offline.join(",")));
    }
    let (code, word) = if !crit.is_empty() {
        (2, "CRITICAL")
    } else if !warn.is_empty() {
        (1, "WARNING")
    } else {
        (0, "OK")
    };
    let node = o.stats["node_id"].as_str().unwrap_or("?");
    let mut problems = crit;
    problems.extend(warn);
    let text = if problems.is_empty() {
        format!("node {node} ready")
    } else {
        format!("node {node}: {}", problems.join(", "))
    };
    let perf = format!(
        "pending={pending};{};{} dead_letters={};{} peers_offline={};{}",
        t.warn_pending,
        t.crit_pending,
        o.dead,
        t.warn_dead,
        o.offline.len(),
        t.warn_offline
    );
    (code, format!("RMDS {word} - {text} | {perf}"))
}

/// The line and code when the agent could not be asked at all.
pub fn unreachable(error: &str) -> (u8, String) {
    (
        2,
        format!("RMDS CRITICAL - cannot reach the agent: {error}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const T: Thresholds = Thresholds {
        warn_pending: 100,
        crit_pending: 1000,
        warn_dead: 1,
        warn_offline: 1,
    };

    fn ok() -> Observed {
        Observed {
            ready: (200, json!({"status": "ready"})),
            stats: json!({"node_id": "alice", "pending_messages": 3}),
            dead: 0,
            offline: vec![],
        }
    }

    #[test]
    fn given_a_ready_idle_agent_then_ok_with_perfdata() {
        let (code, line) = verdict(&ok(), &T);
        assert_eq!(code, 0);
        assert!(
            line.starts_with("RMDS OK - node alice ready | pending=3;100;1000"),
            "{line}"
        );
    }

    #[test]
    fn given_each_problem_then_its_level_and_its_words() {
        let mut o = ok();
        o.stats["pending_messages"] = json!(150);
        assert_eq!(verdict(&o, &T).0, 1);
        o.stats["pending_messages"] = json!(1000);
        assert_eq!(verdict(&o, &T).0, 2);
        let mut o = ok();
        o.dead = 2;
        let (code, line) = verdict(&o, &T);
        assert_eq!(code, 1);
        assert!(line.contains("2 dead letters"), "{line}");
        let mut o = ok();
        o.offline = vec!["bob".into()];
        assert!(verdict(&o, &T).1.contains("peers offline: bob"));
        let mut o = ok();
        o.ready = (
            503,
            json!({"checks": {"nats": {"ok": false, "reason": "not connected"}, "store": {"ok": true}}}),
        );
        let (code, line) = verdict(&o, &T);
        assert_eq!(code, 2);
        assert!(line.contains("unready (nats: not connected)"), "{line}");
        assert!(!line.contains("store"), "{line}");
        assert_eq!(unreachable("refused").0, 2);
    }
}
