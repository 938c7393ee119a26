//! The invariant checker catches a deliberately faulty consumer: messages received
//! from real agents, then skipped, repeated and swapped by the consumer, are reported
//! with the exact message numbers, and a failing report names scenario and stream.

use rmds_scenarios::checker::check_stream;
use rmds_scenarios::harness::{drain, TestNet};
use rmds_scenarios::report;
use rmds_scenarios::scenario::{Backend, Outcome};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn given_a_consumer_that_skips_repeats_and_swaps_then_the_checker_names_each_message() {
    let mut net = TestNet::builder()
        .agent("alice", &["chat:writer"])
        .agent("bob", &["chat:reader"])
        .start()
        .await
        .unwrap();
    net.wait_discovered("alice", "chat", &["bob"])
        .await
        .unwrap();
    let alice = net.client("alice");
    for n in 1..=20u64 {
        alice
            .publish_json("chat", &json!({"sender": "alice", "n": n}))
            .await
            .unwrap();
    }
    let got = drain(
        &net.client("bob"),
        "chat",
        "default",
        20,
        Duration::from_secs(20),
        Duration::from_millis(200),
    )
    .await
    .unwrap();
    let honest = got.numbers_from("alice");
    let sent: Vec<u64> = (1..=20).collect();
    assert!(check_stream("alice", "bob", "chat", &sent, &honest).ok());
    // The faulty application: drops 5, processes 7 twice, handles 11 before 10.
    let mut faulty: Vec<u64> = Vec::new();
    for &n in &honest {
        match n {
            5 => {}
            7 => faulty.extend([7, 7]),
            10 => {}
            11 => faulty.extend([11, 10]),
            n => faulty.push(n),
        }
    }
    let r = check_stream("alice", "bob", "chat", &sent, &faulty);
    assert!(!r.ok());
    assert_eq!(r.lost, vec![5]);
    assert_eq!(r.duplicated, vec![7]);
    assert_eq!(r.out_of_order, vec![(11, 10)]);
    let outcome = Outcome {
        scenario: "faulty-consumer".into(),
        backend: Backend::Processes,
        passed: false,
        error: None,
        duration_ms: 1,
        streams: vec![r],
        expired: 0,
        recoveries: Vec::new(),
        peak_backlog: 0,
    };
    let lines = report::failures(std::slice::from_ref(&outcome));
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0];
    for needle in ["faulty-consumer", "alice", "bob", "chat", "5", "7", "11"] {
        assert!(line.contains(needle), "{needle} missing from {line}");
    }
    assert!(report::table(&[outcome]).contains("FAIL"));
    net.assert_healthy().unwrap();
}
