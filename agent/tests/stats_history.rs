//! `/v1/stats?period=&granularity=` and `/v1/resources/*` on real agents: the
//! series has the right number of buckets and its sums equal the counters (also
//! across a restart); bad queries are clear 400s; the resource history is bounded
//! by `stats.retention`.

use rmds_scenarios::harness::{drain, eventually, TestNet};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rmds-agent"))
}

async fn pair(interval: &str, retention: &str) -> TestNet {
    let net = TestNet::builder()
        .binary(bin())
        .set("stats", "sample_interval", interval)
        .set("stats", "retention", retention)
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

async fn publish(net: &TestNet, from: u64, n: u64) {
    let alice = net.client("alice");
    for i in from..from + n {
        alice
            .publish_json("chat", &json!({"sender": "alice", "n": i}))
            .await
            .unwrap();
    }
}

/// Waits until the series of `node` over `query` sums to the counters named (the
/// last sample came after the last change), and returns it.
async fn settled_series(net: &TestNet, node: &str, query: &str, keys: &[(&str, u64)]) -> Value {
    let c = net.client(node);
    let keys: Vec<(String, u64)> = keys.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    eventually(
        Duration::from_secs(20),
        "series totals to reach the counters",
        || {
            let (c, keys) = (c.clone(), keys.clone());
            let path = format!("/v1/stats?{query}");
            async move {
                let v = c.get_json(&path).await.ok()?;
                let s = &v["series"];
                keys.iter()
                    .all(|(k, want)| s["totals"][k].as_u64() == Some(*want))
                    .then(|| v.clone())
            }
        },
    )
    .await
    .unwrap()
}

fn bucket_sum(series: &Value, counter: &str) -> u64 {
    series["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["counters"][counter].as_u64().unwrap())
        .sum()
}

#[tokio::test]
async fn given_traffic_when_stats_are_asked_for_a_period_then_the_buckets_count_right_and_sum_to_the_counters(
) {
    let mut net = pair("200ms", "10m").await;
    // Three rounds, far enough apart to land in different one-second buckets.
    publish(&net, 1, 5).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    publish(&net, 6, 7).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    publish(&net, 13, 4).await;
    let got = drain(
        &net.client("bob"),
        "chat",
        "default",
        16,
        Duration::from_secs(20),
        Duration::from_millis(200),
    )
    .await
    .unwrap();
    assert_eq!(got.numbers_from("alice"), (1..=16).collect::<Vec<u64>>());
    net.wait_drained("alice", Duration::from_secs(10))
        .await
        .unwrap();

    let alice = settled_series(
        &net,
        "alice",
        "period=1m&granularity=1s",
        &[("published", 16), ("delivered", 16)],
    )
    .await;
    // The counters themselves are in the same answer, unchanged.
    assert_eq!(alice["published"], 16);
    assert_eq!(alice["delivered"], 16);
    let s = &alice["series"];
    let buckets = s["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 60, "1m at 1s");
    assert_eq!(s["granularity_seconds"], 1.0);
    for w in buckets.windows(2) {
        assert_eq!(
            w[1]["start_ms"].as_i64().unwrap() - w[0]["start_ms"].as_i64().unwrap(),
            1000
        );
    }
    for counter in s["counters"].as_array().unwrap() {
        let c = counter.as_str().unwrap();
        assert_eq!(bucket_sum(s, c), s["totals"][c].as_u64().unwrap(), "{c}");
    }
    let busy = buckets
        .iter()
        .filter(|b| b["counters"]["published"].as_u64().unwrap() > 0)
        .count();
    // Three rounds 1.2 s apart: at least two buckets (a sample delayed by a busy
    // machine may take two rounds at once).
    assert!(
        busy >= 2,
        "three rounds, {busy} buckets with publishes: {s}"
    );
    // bob is the receiver whose backlog the series follows.
    assert!(
        buckets.iter().any(|b| b["receivers"]["bob"].is_object()),
        "{s}"
    );

    // Another granularity: ceil(60 / 7) buckets, same sums.
    let v = net
        .client("alice")
        .get_json("/v1/stats?period=1m&granularity=7s")
        .await
        .unwrap();
    assert_eq!(v["series"]["buckets"].as_array().unwrap().len(), 9);
    assert_eq!(bucket_sum(&v["series"], "published"), 16);
    // Without granularity: period / 60.
    let v = net
        .client("alice")
        .get_json("/v1/stats?period=2m")
        .await
        .unwrap();
    assert_eq!(v["series"]["granularity"], "2s");
    assert_eq!(v["series"]["buckets"].as_array().unwrap().len(), 60);

    // The reader's side: received and acknowledged by its group.
    let bob = settled_series(
        &net,
        "bob",
        "period=1m&granularity=10s",
        &[("processed", 16), ("acked", 16)],
    )
    .await;
    assert_eq!(bob["series"]["buckets"].as_array().unwrap().len(), 6);
    assert_eq!(bob["processed"], 16);

    // Without parameters: exactly the counters, no series.
    let plain = net.client("alice").get_json("/v1/stats").await.unwrap();
    assert!(plain.get("series").is_none());
    for key in [
        "delivered",
        "queued",
        "pending_messages",
        "nats_connected",
        "uptime_seconds",
    ] {
        assert!(plain.get(key).is_some(), "{key}");
    }

    // A clean restart: the counters start again, the series keeps the history and
    // still sums to everything counted.
    net.node("alice").stop().await.unwrap();
    net.node("alice").start().await.unwrap();
    net.wait_discovered("alice", "chat", &["bob"])
        .await
        .unwrap();
    publish(&net, 17, 3).await;
    let after = settled_series(
        &net,
        "alice",
        "period=1m&granularity=5s",
        &[("published", 19)],
    )
    .await;
    assert_eq!(after["published"], 3, "counters restart with the process");
    assert_eq!(bucket_sum(&after["series"], "published"), 19);
    assert!(after["series"]["restarts"].as_u64().unwrap() >= 1);
    net.assert_healthy().unwrap();
}

#[tokio::test]
async fn given_bad_stats_queries_then_400_with_a_message_that_says_why() {
    let mut net = TestNet::builder()
        .binary(bin())
        .set("stats", "sample_interval", "1s")
        .set("stats", "retention", "1h")
        .agent("alice", &["chat:rw"])
        .start()
        .await
        .unwrap();
    let base = net.client("alice").base().to_string();
    let http = reqwest::Client::new();
    let cases = [
        ("/v1/stats?granularity=1m", "needs a period"),
        (
            "/v1/stats?period=soon",
            "cannot read \"soon\" as a duration",
        ),
        ("/v1/stats?period=60", "cannot read \"60\""),
        (
            "/v1/stats?period=1h&granularity=0s",
            "granularity must be at least",
        ),
        (
            "/v1/stats?period=1m&granularity=5m",
            "longer than the period",
        ),
        (
            "/v1/stats?period=1h&granularity=1s",
            "3600 buckets; at most 1440",
        ),
        (
            "/v1/stats?period=10m&granularity=100ms",
            "finer than stats.sample_interval",
        ),
        ("/v1/stats?period=2h", "longer than stats.retention"),
        ("/v1/stats?perod=1h", "unknown field"),
        ("/v1/resources/history?limit=0", "limit must be"),
        ("/v1/resources/history?limit=lots", "limit must be"),
        ("/v1/resources/history?limit=10001", "limit must be"),
    ];
    for (path, want) in cases {
        let r = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 400, "{path}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "bad_request", "{path}: {v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(want), "{path}: {msg}");
    }
    net.assert_healthy().unwrap();
}

#[tokio::test]
async fn given_a_short_retention_then_the_resource_history_stays_bounded_and_reads_real_values() {
    let mut net = TestNet::builder()
        .binary(bin())
        .set("stats", "sample_interval", "100ms")
        .set("stats", "retention", "1s")
        .agent("alice", &["chat:rw"])
        .start()
        .await
        .unwrap();
    let alice = net.client("alice");
    let now = alice.get_json("/v1/resources/current").await.unwrap();
    assert_eq!(now["node_id"], "alice");
    for key in [
        "rss_bytes",
        "open_files",
        "max_open_files",
        "db_bytes",
        "disk_free_bytes",
        "disk_total_bytes",
        "threads",
    ] {
        assert!(now[key].as_u64().unwrap() > 0, "{key}: {now}");
    }
    assert!(now["wal_bytes"].is_u64(), "{now}");
    assert!(now["cpu_seconds"].as_f64().unwrap() > 0.0, "{now}");
    // Far more intervals than the retention holds.
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let h = alice
        .get_json("/v1/resources/history?limit=10000")
        .await
        .unwrap();
    assert_eq!(h["max_samples"], 11, "1s of 100ms samples");
    let samples = h["samples"].as_array().unwrap();
    assert!(
        (1..=11).contains(&samples.len()),
        "{} samples kept: {h}",
        samples.len()
    );
    let at: Vec<i64> = samples
        .iter()
        .map(|s| s["at_ms"].as_i64().unwrap())
        .collect();
    assert!(at.windows(2).all(|w| w[0] <= w[1]), "oldest first: {at:?}");
    // The samples of the first seconds (one was taken at start) are gone.
    assert!(
        at[0] > now["at_ms"].as_i64().unwrap(),
        "the oldest sample {} is from before {now}",
        at[0]
    );
    let span = at.last().unwrap() - at.first().unwrap();
    assert!(span <= 1100, "history spans {span} ms with a 1s retention");
    for s in samples {
        assert!(s["rss_bytes"].as_u64().unwrap() > 0, "{s}");
        assert!(s["db_bytes"].as_u64().unwrap() > 0, "{s}");
    }
    assert!(samples.iter().any(|s| s["cpu_percent"].is_number()), "{h}");
    let three = alice
        .get_json("/v1/resources/history?limit=3")
        .await
        .unwrap();
    let three = three["samples"].as_array().unwrap();
    assert_eq!(three.len(), 3);
    // The newest three.
    assert!(three[2]["at_ms"].as_i64().unwrap() >= *at.last().unwrap());
    // The stats series reads the same bounded ring.
    let v = alice
        .get_json("/v1/stats?period=1s&granularity=100ms")
        .await
        .unwrap();
    let buckets = v["series"]["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 10);
    net.assert_healthy().unwrap();
}
