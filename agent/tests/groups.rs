//! Consumer groups end to end: independent groups, competing consumers, leases,
//! max_deliveries and the group dead-letter queue, redrive, start positions, replay,
//! idle TTL, strict order with max_in_flight = 1, and the errors of the group API.

use rmds::{GroupOptions, GroupStart};
use rmds_scenarios::harness::{drain, eventually, wait_pending, TestNet};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rmds-agent"))
}

async fn pair() -> TestNet {
    let net = TestNet::builder()
        .binary(bin())
        .set("delivery", "sweep_interval", "200ms")
        .agent("alice", &["chat:writer"])
        .agent("bob", &["chat:rw"])
        .start()
        .await
        .unwrap();
    net.wait_discovered("alice", "chat", &["bob"])
        .await
        .unwrap();
    net
}

async fn publish_n(net: &TestNet, range: std::ops::RangeInclusive<u64>) {
    let alice = net.client("alice");
    for n in range {
        alice.publish_json("chat", &json!({"n": n})).await.unwrap();
    }
}

/// Waits until bob's log holds `n` entries (the default group's head).
async fn wait_log(net: &TestNet, n: u64) {
    let bob = net.client("bob");
    eventually(Duration::from_secs(20), "entries in bob's log", || {
        let b = bob.clone();
        async move {
            let v = b.get_json("/v1/channels/chat/groups/probe").await.ok()?;
            (v["log_head"].as_u64()? > n).then_some(())
        }
    })
    .await
    .unwrap();
}

fn numbers(msgs: &[rmds::Message]) -> Vec<u64> {
    msgs.iter()
        .map(|m| m.data.as_ref().and_then(|d| d["n"].as_u64()).unwrap_or(0))
        .collect()
}

#[tokio::test]
async fn given_two_groups_and_two_consumers_then_each_group_sees_everything_and_consumers_never_share_a_lease(
) {
    let mut net = pair().await;
    let bob = net.client("bob");
    let opts = GroupOptions {
        ack_wait: Some(Duration::from_secs(30)),
        ..Default::default()
    };
    bob.create_group("chat", "a", &opts).await.unwrap();
    bob.create_group("chat", "b", &opts).await.unwrap();
    publish_n(&net, 1..=50).await;
    // Two consumers of group a pull concurrently, acking nothing: no id twice.
    let mut seen = HashSet::new();
    let mut total = 0;
    for _ in 0..40 {
        let (x, y) = tokio::join!(
            bob.pull("chat", "a", 7, Duration::from_millis(300)),
            bob.pull("chat", "a", 7, Duration::from_millis(300)),
        );
        for m in x.unwrap().into_iter().chain(y.unwrap()) {
            assert!(seen.insert(m.id.clone()), "{} handed out twice", m.id);
            total += 1;
        }
        if total == 50 {
            break;
        }
    }
    assert_eq!(total, 50);
    // Group b is independent of a.
    let got = drain(
        &bob,
        "chat",
        "b",
        50,
        Duration::from_secs(20),
        Duration::from_millis(300),
    )
    .await
    .unwrap();
    assert_eq!(got.numbers_from("alice"), (1..=50).collect::<Vec<_>>());
    let info = bob.group("chat", "a").await.unwrap();
    assert_eq!(info["in_flight"], 50, "{info}");
    assert_eq!(info["pending"], 50, "{info}");
    let info = bob.group("chat", "b").await.unwrap();
    assert_eq!(info["pending"], 0, "{info}");
    assert_eq!(info["ack_floor"], 50, "{info}");
    net.assert_healthy().unwrap();
}

#[tokio::test]
async fn given_max_deliveries_when_a_message_is_never_acked_then_it_is_dead_lettered_and_redrive_brings_it_back_once(
) {
    let mut net = pair().await;
    let bob = net.client("bob");
    let opts = GroupOptions {
        ack_wait: Some(Duration::from_millis(300)),
        max_deliveries: Some(2),
        ..Default::default()
    };
    bob.create_group("chat", "g", &opts).await.unwrap();
    publish_n(&net, 1..=2).await;
    // Both in bob's log before the first pull: every pull counts a delivery.
    wait_pending(&bob, "chat", "g", 2, Duration::from_secs(10))
        .await
        .unwrap();
    let first = bob
        .pull("chat", "g", 10, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(first.len(), 2);
    // Message 2 is processed; message 1 fails every time.
    bob.ack("chat", "g", &[first[1].id.clone()]).await.unwrap();
    let poison = first[0].id.clone();
    let again = bob
        .pull("chat", "g", 10, Duration::from_secs(3))
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, poison);
    assert_eq!(again[0].deliveries, 2);
    bob.post_json(
        "/v1/channels/chat/nacks",
        &json!({"group": "g", "ids": [poison], "error": "cannot parse"}),
    )
    .await
    .unwrap();
    // The third delivery would exceed max_deliveries: it goes to the DLQ instead.
    assert!(bob
        .pull("chat", "g", 10, Duration::from_secs(1))
        .await
        .unwrap()
        .is_empty());
    let dead = bob.group_dead_letters("chat", "g").await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["id"], poison.as_str());
    assert_eq!(dead[0]["deliveries"], 2);
    assert_eq!(dead[0]["last_error"], "cannot parse");
    let one = bob
        .get_json(&format!("/v1/channels/chat/groups/g/dead-letters/{poison}"))
        .await
        .unwrap();
    assert_eq!(one["message"]["data"]["n"], 1, "{one}");
    assert_eq!(bob.group("chat", "g").await.unwrap()["dead_letters"], 1);
    // Redrive: delivered once more, acked, and gone for good.
    bob.redrive_group_dead_letter("chat", "g", &poison)
        .await
        .unwrap();
    let back = bob
        .pull("chat", "g", 10, Duration::from_secs(3))
        .await
        .unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].id, poison);
    let s = bob
        .ack("chat", "g", std::slice::from_ref(&poison))
        .await
        .unwrap();
    assert_eq!(s.applied, vec![poison.clone()]);
    assert!(bob
        .pull("chat", "g", 10, Duration::from_secs(1))
        .await
        .unwrap()
        .is_empty());
    assert!(bob
        .group_dead_letters("chat", "g")
        .await
        .unwrap()
        .is_empty());
    // The group's dead-letter state survives a restart (nothing comes back).
    net.node("bob").stop().await.unwrap();
    net.node("bob").start().await.unwrap();
    let bob = net.client("bob");
    assert!(bob
        .pull("chat", "g", 10, Duration::from_secs(1))
        .await
        .unwrap()
        .is_empty());
    net.assert_healthy().unwrap();
}

#[tokio::test]
async fn given_a_group_created_late_then_start_positions_replay_and_idle_ttl_work() {
    let mut net = pair().await;
    let bob = net.client("bob");
    bob.create_group("chat", "probe", &GroupOptions::default())
        .await
        .unwrap();
    publish_n(&net, 1..=100).await;
    wait_log(&net, 100).await;
    // Earliest: everything.
    bob.create_group("chat", "early", &GroupOptions::default())
        .await
        .unwrap();
    let got = drain(
        &bob,
        "chat",
        "early",
        100,
        Duration::from_secs(20),
        Duration::from_millis(200),
    )
    .await
    .unwrap();
    assert_eq!(got.numbers_from("alice"), (1..=100).collect::<Vec<_>>());
    // Latest: only what comes after.
    bob.create_group(
        "chat",
        "late",
        &GroupOptions {
            start: GroupStart::Latest,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    // An offset.
    bob.create_group(
        "chat",
        "from90",
        &GroupOptions {
            start: GroupStart::Offset(90),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    publish_n(&net, 101..=101).await;
    wait_log(&net, 101).await;
    let late = bob
        .pull("chat", "late", 100, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(numbers(&late), vec![101]);
    let from90 = bob
        .pull("chat", "from90", 100, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(numbers(&from90), (90..=101).collect::<Vec<_>>());
    // Reset replays what was acknowledged.
    let info = bob
        .reset_group("chat", "early", GroupStart::Offset(51))
        .await
        .unwrap();
    assert_eq!(info["ack_floor"], 50, "{info}");
    let replay = drain(
        &bob,
        "chat",
        "early",
        51,
        Duration::from_secs(20),
        Duration::from_millis(200),
    )
    .await
    .unwrap();
    assert_eq!(replay.numbers_from("alice"), (51..=101).collect::<Vec<_>>());
    bob.reset_group("chat", "early", GroupStart::Earliest)
        .await
        .unwrap();
    assert_eq!(bob.group("chat", "early").await.unwrap()["pending"], 101);
    // A time start: everything received from a minute ago.
    bob.create_group(
        "chat",
        "bytime",
        &GroupOptions {
            start: GroupStart::Time(std::time::SystemTime::now() - Duration::from_secs(60)),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(bob.group("chat", "bytime").await.unwrap()["pending"], 101);
    // Idle TTL: gone after a second without activity.
    bob.create_group(
        "chat",
        "brief",
        &GroupOptions {
            idle_ttl: Some(Duration::from_secs(1)),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    bob.pull("chat", "brief", 1, Duration::ZERO).await.unwrap();
    eventually(Duration::from_secs(10), "the idle group to expire", || {
        let b = bob.clone();
        async move {
            let e = b.group("chat", "brief").await.err()?;
            (e.status == Some(404)).then_some(())
        }
    })
    .await
    .unwrap();
    let e = bob
        .pull("chat", "brief", 1, Duration::ZERO)
        .await
        .unwrap_err();
    assert_eq!(e.status, Some(404));
    let stats = bob.stats().await.unwrap();
    assert_eq!(stats["groups_expired"], 1, "{stats}");
    let list = bob.get_json("/v1/channels/chat/groups").await.unwrap();
    let names: Vec<&str> = list["groups"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|g| g["name"].as_str())
        .collect();
    assert_eq!(names, vec!["bytime", "early", "from90", "late", "probe"]);
    net.assert_healthy().unwrap();
}

#[tokio::test]
async fn given_max_in_flight_one_then_messages_come_strictly_in_order_even_with_redelivery() {
    let mut net = pair().await;
    let bob = net.client("bob");
    bob.create_group(
        "chat",
        "strict",
        &GroupOptions {
            max_in_flight: Some(1),
            ack_wait: Some(Duration::from_millis(300)),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    publish_n(&net, 1..=5).await;
    let mut order = Vec::new();
    let mut failed_once = false;
    for _ in 0..50 {
        let m = bob
            .pull("chat", "strict", 10, Duration::from_secs(2))
            .await
            .unwrap();
        assert!(m.len() <= 1, "max_in_flight 1 handed out {}", m.len());
        let Some(m) = m.into_iter().next() else {
            continue;
        };
        let n = m.data.as_ref().unwrap()["n"].as_u64().unwrap();
        if n == 3 && !failed_once {
            failed_once = true; // let its lease run out: nothing may overtake it
            continue;
        }
        order.push(n);
        bob.ack("chat", "strict", std::slice::from_ref(&m.id))
            .await
            .unwrap();
        if order.len() == 5 {
            break;
        }
    }
    assert_eq!(order, vec![1, 2, 3, 4, 5]);
    net.assert_healthy().unwrap();
}

#[tokio::test]
async fn given_group_api_mistakes_then_errors_are_404_409_and_400() {
    let mut net = pair().await;
    let bob = net.client("bob");
    let status = |e: rmds::Error| e.status;
    bob.create_group("chat", "g", &GroupOptions::default())
        .await
        .unwrap();
    let dup = bob
        .create_group("chat", "g", &GroupOptions::default())
        .await
        .unwrap_err();
    assert_eq!(
        (dup.status, dup.code.as_deref()),
        (Some(409), Some("conflict"))
    );
    assert_eq!(
        status(bob.group("chat", "nope").await.unwrap_err()),
        Some(404)
    );
    assert_eq!(
        status(bob.delete_group("chat", "nope").await.unwrap_err()),
        Some(404)
    );
    assert_eq!(
        status(
            bob.pull("chat", "nope", 1, Duration::ZERO)
                .await
                .unwrap_err()
        ),
        Some(404)
    );
    assert_eq!(
        status(bob.ack("chat", "nope", &["x".into()]).await.unwrap_err()),
        Some(404)
    );
    assert_eq!(
        status(
            bob.reset_group("chat", "nope", GroupStart::Earliest)
                .await
                .unwrap_err()
        ),
        Some(404)
    );
    assert_eq!(
        status(
            bob.redrive_group_dead_letter("chat", "g", "nope")
                .await
                .unwrap_err()
        ),
        Some(404)
    );
    for bad in [
        json!({"name": "x", "start": "middle"}),
        json!({"name": "x", "offset": 0}),
        json!({"name": "x", "offset": 3, "start": "latest"}),
        json!({"name": "x", "time": "yesterday"}),
        json!({"name": "x", "ack_wait": "forever"}),
        json!({"name": "x", "colour": "red"}),
        json!({"name": "bad name!"}),
        json!({"nom": "x"}),
    ] {
        let e = bob
            .post_json("/v1/channels/chat/groups", &bad)
            .await
            .unwrap_err();
        assert_eq!(e.status, Some(400), "{bad}: {e:?}");
    }
    let v: Value = bob
        .post_json(
            "/v1/channels/chat/nacks",
            &json!({"group": "g", "ids": ["x"], "delay": "1s"}),
        )
        .await
        .unwrap();
    assert_eq!(v["not_found"], json!(["x"]));
    let e = bob
        .post_json(
            "/v1/channels/chat/acks",
            &json!({"group": "g", "ids": ["x"], "delay": "1s"}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.status, Some(400));
    bob.delete_group("chat", "g").await.unwrap();
    assert_eq!(status(bob.group("chat", "g").await.unwrap_err()), Some(404));
    net.assert_healthy().unwrap();
}
