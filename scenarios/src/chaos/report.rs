//! The chaos run's report: per stream (writer, reader, channel) what was accepted,
//! received, lost, duplicated, reordered, and what the policies explain (expired,
//! dropped by `drop_oldest`, dead-lettered and why); the seed, the schedule and the
//! fault history; as text, Markdown or JSON.

use super::faults::Applied;
use super::schedule::Step;
use serde::Serialize;
use std::collections::BTreeMap;

/// The verdict on one stream.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ChaosStream {
    /// Writer.
    pub writer: String,
    /// Reader.
    pub reader: String,
    /// Channel.
    pub channel: String,
    /// The channel's policy in a few words.
    pub policy: String,
    /// Publishes answered 201.
    pub accepted: usize,
    /// Messages the reader's application received (first sight by id).
    pub received: usize,
    /// Accepted, never received, and not explained by a policy.
    pub lost: Vec<u64>,
    /// Sender-side state of each lost message, counted.
    pub lost_states: BTreeMap<String, usize>,
    /// Received more than once.
    pub duplicated: Vec<u64>,
    /// (previous, next) where next was published before previous.
    pub reordered: Vec<(u64, u64)>,
    /// Received but never accepted nor ambiguous.
    pub unexpected: Vec<u64>,
    /// Expired by TTL on the short-TTL channel, at the sender or in the reader's log
    /// before the application pulled it (explained).
    pub expired: usize,
    /// Dropped by `drop_oldest` on the drop channel (explained).
    pub dropped: usize,
    /// Dead-lettered by the sender, by reason (explained unless listed below).
    pub dead_lettered: BTreeMap<String, usize>,
    /// In the reader group's dead-letter queue after `max_deliveries` (explained).
    pub group_dead: usize,
    /// Publishes with no answer before the run stopped (may or may not exist).
    pub ambiguous: usize,
    /// Not received, with a state no policy of this channel explains (dead while the
    /// receiver's store was full, dropped on a `reject` channel, expired without a
    /// short TTL): numbers with the reason.
    pub unexplained: Vec<(u64, String)>,
    /// Received, yet the sender reports it dead (ACK lost on the way, or a bug).
    pub dead_but_received: Vec<u64>,
}

impl ChaosStream {
    /// Nothing lost, duplicated, reordered, invented or unexplained.
    pub fn ok(&self) -> bool {
        self.lost.is_empty()
            && self.duplicated.is_empty()
            && self.reordered.is_empty()
            && self.unexpected.is_empty()
            && self.unexplained.is_empty()
    }

    /// One line naming the stream and its problems.
    pub fn describe(&self) -> String {
        let mut p = Vec::new();
        let few = |v: &[u64]| -> String {
            let s: Vec<String> = v.iter().take(12).map(u64::to_string).collect();
            let more = if v.len() > 12 {
                format!(" … ({} in all)", v.len())
            } else {
                String::new()
            };
            format!("[{}{more}]", s.join(", "))
        };
        if !self.lost.is_empty() {
            p.push(format!(
                "lost {} (sender says {:?})",
                few(&self.lost),
                self.lost_states
            ));
        }
        if !self.duplicated.is_empty() {
            p.push(format!("duplicated {}", few(&self.duplicated)));
        }
        if !self.reordered.is_empty() {
            let r: Vec<String> = self
                .reordered
                .iter()
                .take(8)
                .map(|(a, b)| format!("{a}>{b}"))
                .collect();
            p.push(format!(
                "reordered {} ({} pairs)",
                r.join(" "),
                self.reordered.len()
            ));
        }
        if !self.unexpected.is_empty() {
            p.push(format!("never accepted {}", few(&self.unexpected)));
        }
        if !self.unexplained.is_empty() {
            let r: Vec<String> = self
                .unexplained
                .iter()
                .take(6)
                .map(|(n, why)| format!("{n}: {why}"))
                .collect();
            p.push(format!(
                "unexplained {} ({} in all)",
                r.join("; "),
                self.unexplained.len()
            ));
        }
        format!(
            "{} -> {} on {} ({}): accepted {}, received {}: {}",
            self.writer,
            self.reader,
            self.channel,
            self.policy,
            self.accepted,
            self.received,
            if p.is_empty() {
                "ok".into()
            } else {
                p.join("; ")
            }
        )
    }
}

/// A whole run.
#[derive(Debug, Clone, Serialize)]
pub struct ChaosReport {
    /// The command line.
    pub command: String,
    /// The seed (replays the same schedule).
    pub seed: u64,
    /// Length of the fault phase (minutes).
    pub minutes: f64,
    /// Whether the nodes shared a `cluster_key`.
    pub cluster_key: bool,
    /// The private network namespace, if network faults ran.
    pub netns: Option<String>,
    /// The schedule as planned.
    pub schedule: Vec<Step>,
    /// What was done, when, and what went wrong doing it.
    pub history: Vec<Applied>,
    /// Faults carried out, by kind.
    pub fault_counts: BTreeMap<String, usize>,
    /// Per stream.
    pub streams: Vec<ChaosStream>,
    /// Findings outside the streams: settle timeouts, panics, agents that died.
    pub findings: Vec<String>,
    /// Observations that do not fail the run (e.g. phantom peers from forged frames
    /// without `cluster_key`).
    pub notes: Vec<String>,
    /// Frames captured on the bus.
    pub frames_captured: u64,
    /// Publishes refused for good, by (writer/channel) and code.
    pub refused: BTreeMap<String, BTreeMap<String, u64>>,
    /// Wall time (s).
    pub duration_s: f64,
    /// Every stream ok and no finding.
    pub passed: bool,
}

impl ChaosReport {
    /// The human summary printed at the end of a run.
    pub fn text(&self) -> String {
        let mut s = format!(
            "chaos seed {} ({} min, cluster_key {}, network faults {}): {}\n",
            self.seed,
            self.minutes,
            if self.cluster_key { "on" } else { "off" },
            if self.netns.is_some() { "on" } else { "off" },
            if self.passed { "PASSED" } else { "FAILED" }
        );
        s += &format!("faults: {:?}\n", self.fault_counts);
        for st in &self.streams {
            s += &format!("  {}\n", st.describe());
        }
        for f in &self.findings {
            s += &format!("  finding: {f}\n");
        }
        for n in &self.notes {
            s += &format!("  note: {n}\n");
        }
        s += &format!("reproduce: {}\n", self.command);
        s
    }

    /// The Markdown report.
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "# Chaos run, seed {}\n\n`{}`\n\n**{}** in {:.0} s; cluster_key {}; network faults {}; \
             {} frames captured on the bus.\n\n## Faults\n\n| t (s) | fault | hold (s) | note | error |\n| --- | --- | --- | --- | --- |\n",
            self.seed,
            self.command,
            if self.passed { "passed" } else { "FAILED" },
            self.duration_s,
            if self.cluster_key { "on" } else { "off" },
            self.netns.as_deref().unwrap_or("off"),
            self.frames_captured,
        );
        for a in &self.history {
            s += &format!(
                "| {:.1} | {} | {:.1} | {} | {} |\n",
                a.started_ms as f64 / 1000.0,
                a.step.fault,
                (a.healed_ms - a.started_ms.min(a.healed_ms)) as f64 / 1000.0,
                a.note.as_deref().unwrap_or(""),
                a.error.as_deref().unwrap_or("")
            );
        }
        s += "\n## Streams\n\n| writer | reader | channel | policy | accepted | received | lost | dup | reordered | expired | dropped | dead-lettered | group DLQ | ambiguous | unexplained | dead but received |\n";
        s += "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n";
        for t in &self.streams {
            s += &format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                t.writer,
                t.reader,
                t.channel,
                t.policy,
                t.accepted,
                t.received,
                t.lost.len(),
                t.duplicated.len(),
                t.reordered.len(),
                t.expired,
                t.dropped,
                t.dead_lettered.values().sum::<usize>(),
                t.group_dead,
                t.ambiguous,
                t.unexplained.len(),
                t.dead_but_received.len()
            );
        }
        s += "\n## Problems\n\n";
        let mut any = false;
        for t in self.streams.iter().filter(|t| !t.ok()) {
            s += &format!("- {}\n", t.describe());
            any = true;
        }
        for f in &self.findings {
            s += &format!("- {f}\n");
            any = true;
        }
        if !any {
            s += "None.\n";
        }
        if !self.notes.is_empty() {
            s += "\n## Notes\n\n";
            for n in &self.notes {
                s += &format!("- {n}\n");
            }
        }
        s
    }
}
