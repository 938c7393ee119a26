//! Scenario reports: a table for the terminal, failure details naming the scenario,
//! the stream and the message numbers, and a Markdown document.

use crate::scenario::Outcome;

fn totals(o: &Outcome) -> (usize, usize, usize, usize) {
    let lost = o.streams.iter().map(|s| s.lost.len()).sum();
    let dup = o.streams.iter().map(|s| s.duplicated.len()).sum();
    let ooo = o.streams.iter().map(|s| s.out_of_order.len()).sum();
    let received = o.streams.iter().map(|s| s.received).sum();
    (lost, dup, ooo, received)
}

fn recovery(o: &Outcome) -> String {
    o.recoveries
        .iter()
        .filter(|r| r.fault != "none")
        .map(|r| format!("{:.1}s", r.recovery_ms as f64 / 1000.0))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One row per scenario.
pub fn table(outcomes: &[Outcome]) -> String {
    let mut out = format!(
        "{:<26} {:<9} {:<6} {:>7} {:>9} {:>5} {:>4} {:>9} {:>7} {:>10} {:>8} {:>7}\n",
        "scenario",
        "backend",
        "result",
        "streams",
        "received",
        "lost",
        "dup",
        "reordered",
        "expired",
        "recovery",
        "backlog",
        "time"
    );
    for o in outcomes {
        let (lost, dup, ooo, received) = totals(o);
        out.push_str(&format!(
            "{:<26} {:<9} {:<6} {:>7} {:>9} {:>5} {:>4} {:>9} {:>7} {:>10} {:>8} {:>6.1}s\n",
            o.scenario,
            format!("{:?}", o.backend).to_lowercase(),
            if o.passed { "pass" } else { "FAIL" },
            o.streams.len(),
            received,
            lost,
            dup,
            ooo,
            o.expired,
            recovery(o),
            o.peak_backlog,
            o.duration_ms as f64 / 1000.0
        ));
    }
    out
}

/// A line per problem: scenario, stream and the exact message numbers.
pub fn failures(outcomes: &[Outcome]) -> Vec<String> {
    let mut lines = Vec::new();
    for o in outcomes {
        if let Some(e) = &o.error {
            lines.push(format!("FAILED {}: {e}", o.scenario));
        }
        for s in o.streams.iter().filter(|s| !s.ok()) {
            lines.push(format!("FAILED {}: {}", o.scenario, s.describe()));
        }
        if !o.passed && o.error.is_none() && o.streams.is_empty() {
            lines.push(format!("FAILED {}: no stream was checked", o.scenario));
        }
    }
    lines
}

/// The report as Markdown, with the command that produced it.
pub fn markdown(outcomes: &[Outcome], command: &str) -> String {
    let mut md = String::from("# Scenario report\n\n");
    md.push_str(&format!("Produced by:\n\n```sh\n{command}\n```\n\n"));
    md.push_str("Every scenario runs real nats-server and rmds-agent processes (or containers); ");
    md.push_str(
        "alice (writer), bob (rw), lisa and andy (readers) on channel `chat`. Each reader's ",
    );
    md.push_str("application consumes through a consumer group; every (sender, reader) stream is ");
    md.push_str(
        "checked for lost, duplicated and reordered messages. Expired means the message's TTL ",
    );
    md.push_str("ran out before delivery (reported by the sender), which is not a loss.\n\n");
    md.push_str("| scenario | backend | result | streams | received | lost | duplicated | reordered | expired | recovery after fault | peak backlog | time |\n");
    md.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for o in outcomes {
        let (lost, dup, ooo, received) = totals(o);
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} s |\n",
            o.scenario,
            format!("{:?}", o.backend).to_lowercase(),
            if o.passed { "pass" } else { "**FAIL**" },
            o.streams.len(),
            received,
            lost,
            dup,
            ooo,
            o.expired,
            recovery(o),
            o.peak_backlog,
            o.duration_ms as f64 / 1000.0
        ));
    }
    let f = failures(outcomes);
    if !f.is_empty() {
        md.push_str("\n## Failures\n\n");
        for line in f {
            md.push_str(&format!("- {line}\n"));
        }
    }
    md.push_str("\n## Scenarios\n\n");
    for s in crate::catalogue::CATALOGUE {
        md.push_str(&format!("- **{}**: {}\n", s.name, s.about));
    }
    md
}
