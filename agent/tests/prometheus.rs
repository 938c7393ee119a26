//! `/metrics` as Prometheus and its tools read it: `promtool check metrics` is clean
//! on live agents, the shipped alert rules pass `promtool check rules` and their unit
//! tests, every metric the rules and the Grafana dashboard use exists on a live
//! agent, and the per-stream gauges and latency histograms show real traffic.
//!
//! promtool comes from Debian's `prometheus` package (scripts/install-deps.sh). In
//! CI (`CI` set) a missing promtool fails the test; elsewhere it is skipped with
//! the reason printed.

use rmds_scenarios::harness::{drain, eventually, TestNet};
use serde_json::json;
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rmds-agent"))
}

fn docs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs")
}

/// promtool's path; `None` (skip) only outside CI.
fn promtool() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("promtool"))
            .find(|p| p.is_file())
    });
    match found {
        Some(p) => Some(p),
        None if std::env::var_os("CI").is_some() => panic!(
            "promtool is not installed but CI is set: install Debian's prometheus package \
             (scripts/install-deps.sh does)"
        ),
        None => {
            eprintln!("SKIPPED: promtool not found (apt-get install prometheus); in CI this fails");
            None
        }
    }
}

/// Runs promtool; (success, stdout + stderr).
fn run(promtool: &Path, args: &[&str], stdin: Option<&str>, dir: &Path) -> (bool, String) {
    let mut child = Command::new(promtool)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    {
        let mut input = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            input.write_all(s.as_bytes()).unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

async fn scrape(net: &TestNet, node: &str) -> String {
    let r = reqwest::get(format!("{}/metrics", net.client(node).base()))
        .await
        .unwrap();
    assert!(r.status().is_success());
    let ct = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    r.text().await.unwrap()
}

/// Two agents with traffic delivered and consumed.
async fn busy_pair() -> TestNet {
    let net = TestNet::builder()
        .binary(bin())
        .agent("alice", &["chat:writer"])
        .agent("bob", &["chat:rw"])
        .start()
        .await
        .unwrap();
    net.wait_discovered("alice", "chat", &["bob"])
        .await
        .unwrap();
    let alice = net.client("alice");
    for n in 1..=20 {
        alice
            .publish_json("chat", &json!({"sender": "alice", "n": n}))
            .await
            .unwrap();
    }
    alice
        .publish_batch("chat", &[json!({"sender": "alice", "n": 21})])
        .await
        .unwrap();
    let got = drain(
        &net.client("bob"),
        "chat",
        "default",
        21,
        Duration::from_secs(20),
        Duration::from_millis(200),
    )
    .await
    .unwrap();
    assert_eq!(got.numbers_from("alice").len(), 21);
    net.wait_drained("alice", Duration::from_secs(10))
        .await
        .unwrap();
    net
}

/// Sample names (`name{…} v` or `name v`) of an exposition.
fn sample_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(String::from)
        .collect()
}

/// Every `rmds_…` name a rules file or dashboard mentions.
fn mentioned(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("rmds_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        out.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

#[tokio::test]
async fn given_live_agents_then_promtool_check_metrics_is_clean() {
    let Some(promtool) = promtool() else { return };
    let mut net = busy_pair().await;
    for node in ["alice", "bob"] {
        let text = scrape(&net, node).await;
        let (ok, out) = run(&promtool, &["check", "metrics"], Some(&text), net.dir());
        assert!(
            ok,
            "promtool check metrics on {node}:\n{out}\n--- exposition ---\n{text}"
        );
        assert!(
            out.trim().is_empty(),
            "promtool complained on {node}: {out}"
        );
    }
    net.assert_healthy().unwrap();
}

#[test]
fn given_the_shipped_alert_rules_then_promtool_checks_and_their_unit_tests_pass() {
    let Some(promtool) = promtool() else { return };
    let dir = docs();
    let (ok, out) = run(
        &promtool,
        &["check", "rules", "prometheus-alerts.yml"],
        None,
        &dir,
    );
    assert!(ok, "promtool check rules:\n{out}");
    assert!(out.contains("SUCCESS"), "{out}");
    let (ok, out) = run(
        &promtool,
        &["test", "rules", "prometheus-alerts.test.yml"],
        None,
        &dir,
    );
    assert!(ok, "promtool test rules:\n{out}");
}

#[tokio::test]
async fn given_live_agents_then_every_metric_has_help_and_type_and_the_docs_use_only_real_names() {
    let mut net = busy_pair().await;
    let mut names = BTreeSet::new();
    for node in ["alice", "bob"] {
        let text = scrape(&net, node).await;
        let helps: BTreeSet<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# HELP "))
            .filter_map(|l| l.split(' ').next())
            .collect();
        for l in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
            let name = l.split(' ').next().unwrap();
            assert!(helps.contains(name), "{node}: {name} has no HELP");
        }
        assert!(
            !text.contains("# EOF"),
            "OpenMetrics terminator in text format"
        );
        names.extend(sample_names(&text));
    }
    for must in [
        "rmds_published_total",
        "rmds_publish_commit_seconds_bucket",
        "rmds_send_ack_seconds_count",
        "rmds_stream_backlog_messages",
        "rmds_stream_oldest_age_seconds",
        "rmds_stream_in_flight_messages",
        "rmds_peer_up",
        "rmds_process_cpu_seconds_total",
        "rmds_store_db_bytes",
        "rmds_disk_free_bytes",
    ] {
        assert!(names.contains(must), "{must} missing from /metrics");
    }
    for file in ["prometheus-alerts.yml", "grafana-dashboard.json"] {
        let text = std::fs::read_to_string(docs().join(file)).unwrap();
        let used = mentioned(&text);
        assert!(used.len() >= 5, "{file} mentions {used:?}");
        for name in used {
            assert!(
                names.contains(&name),
                "{file} uses {name}, which /metrics does not serve"
            );
        }
    }
    let dash: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(docs().join("grafana-dashboard.json")).unwrap(),
    )
    .unwrap();
    let panels = dash["panels"].as_array().unwrap();
    assert!(panels.iter().filter(|p| p["targets"].is_array()).count() >= 10);
    net.assert_healthy().unwrap();
}

fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test]
async fn given_a_frozen_receiver_then_its_stream_shows_backlog_in_flight_and_age_and_the_histograms_count(
) {
    let mut net = busy_pair().await;
    let text = scrape(&net, "alice").await;
    // 21 publishes committed and acknowledged so far.
    assert_eq!(
        value(&text, "rmds_publish_commit_seconds_count "),
        Some(21.0)
    );
    assert_eq!(value(&text, "rmds_send_ack_seconds_count "), Some(21.0));
    assert_eq!(
        value(&text, "rmds_send_ack_seconds_bucket{le=\"+Inf\"} "),
        Some(21.0)
    );
    let stream = "{receiver=\"bob\",channel=\"chat\"} ";
    assert_eq!(
        value(&text, &format!("rmds_stream_backlog_messages{stream}")),
        Some(0.0)
    );
    net.node("bob").pause().unwrap();
    let alice = net.client("alice");
    for n in 22..=26 {
        alice
            .publish_json("chat", &json!({"sender": "alice", "n": n}))
            .await
            .unwrap();
    }
    let text = eventually(Duration::from_secs(10), "a backlog one second old", || {
        let net = &net;
        async move {
            let t = scrape(net, "alice").await;
            let age = value(&t, &format!("rmds_stream_oldest_age_seconds{stream}"))?;
            (age >= 1.0).then_some(t)
        }
    })
    .await
    .unwrap();
    assert_eq!(
        value(&text, &format!("rmds_stream_backlog_messages{stream}")),
        Some(5.0)
    );
    let in_flight = value(&text, &format!("rmds_stream_in_flight_messages{stream}")).unwrap();
    assert!((1.0..=5.0).contains(&in_flight), "{in_flight}");
    assert_eq!(
        value(&text, "rmds_publish_commit_seconds_count "),
        Some(26.0)
    );
    assert_eq!(value(&text, "rmds_send_ack_seconds_count "), Some(21.0));
    net.node("bob").resume().unwrap();
    net.wait_drained("alice", Duration::from_secs(20))
        .await
        .unwrap();
    let text = scrape(&net, "alice").await;
    assert_eq!(
        value(&text, &format!("rmds_stream_backlog_messages{stream}")),
        Some(0.0)
    );
    assert_eq!(
        value(&text, &format!("rmds_stream_oldest_age_seconds{stream}")),
        Some(0.0)
    );
    assert_eq!(value(&text, "rmds_send_ack_seconds_count "), Some(26.0));
    net.assert_healthy().unwrap();
}
