//! Memory grows with active work, not with history: idle sending streams release
//! their task and come back on demand.

use rmds_scenarios::harness::{drain, eventually, TestNet};
use serde_json::json;
use std::path::PathBuf;
use std::time::Duration;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rmds-agent"))
}

#[tokio::test]
async fn given_idle_streams_when_the_release_period_passes_then_they_are_released_and_the_next_message_flows(
) {
    let mut net = TestNet::builder()
        .binary(bin())
        .set("delivery", "stream_idle_release", "500ms")
        .agent("alice", &["a:writer", "b:writer", "c:writer"])
        .agent("bob", &["a:reader", "b:reader", "c:reader"])
        .start()
        .await
        .unwrap();
    for ch in ["a", "b", "c"] {
        net.wait_discovered("alice", ch, &["bob"]).await.unwrap();
    }
    let alice = net.client("alice");
    for ch in ["a", "b", "c"] {
        alice
            .publish_json(ch, &json!({"sender": "alice", "n": 1}))
            .await
            .unwrap();
    }
    eventually(Duration::from_secs(20), "three streams released", || {
        let c = alice.clone();
        async move { (c.stats().await.ok()?["streams_released"].as_u64()? >= 3).then_some(()) }
    })
    .await
    .unwrap();
    // A released stream starts again from the store, at the right sequence.
    for ch in ["a", "b", "c"] {
        alice
            .publish_json(ch, &json!({"sender": "alice", "n": 2}))
            .await
            .unwrap();
    }
    for ch in ["a", "b", "c"] {
        let got = drain(
            &net.client("bob"),
            ch,
            "default",
            2,
            Duration::from_secs(20),
            Duration::from_millis(300),
        )
        .await
        .unwrap();
        assert_eq!(got.numbers_from("alice"), vec![1, 2], "channel {ch}");
    }
    net.wait_drained("alice", Duration::from_secs(10))
        .await
        .unwrap();
    net.assert_healthy().unwrap();
}
