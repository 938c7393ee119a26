//! A subscription through a sidecar agent that is killed (`kill -9`) and restarted
//! while messages flow: every message is handled, none is acknowledged twice, and
//! what the application nacks comes back. Also: `on_message` nacks on `Err`.

mod support;

use futures::StreamExt;
use rmds::{Role, SubscribeOptions};
use rmds_scenarios::harness::{eventually, TestNet};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const N: u64 = 300;

async fn writer_and_reader() -> TestNet {
    let net = TestNet::builder()
        .agent("alice", &["chat:writer"])
        .agent("bob", &["chat:reader"])
        .start()
        .await
        .unwrap();
    net.wait_discovered("alice", "chat", &["bob"])
        .await
        .unwrap();
    net
}

async fn publish(net: &TestNet, from: u64, to: u64) {
    let items: Vec<serde_json::Value> = (from..to).map(|n| serde_json::json!({ "n": n })).collect();
    for chunk in items.chunks(100) {
        let r = net
            .client("alice")
            .publish_batch("chat", chunk)
            .await
            .unwrap();
        assert_eq!(r["accepted"], chunk.len());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_survives_kill_9_of_its_agent() {
    let mut net = writer_and_reader().await;
    let bob = rmds::Node::connect(net.agent("bob").client().base())
        .await
        .unwrap();
    let chat = bob.join("chat", Role::Reader).await.unwrap();
    let opts = SubscribeOptions {
        credit: 20,
        ..Default::default()
    };
    let mut sub = chat.subscribe("work", opts).await.unwrap();
    publish(&net, 0, N).await;

    let mut handled: BTreeMap<u64, u32> = BTreeMap::new();
    let mut applied: BTreeMap<String, usize> = BTreeMap::new();
    let mut ids: BTreeSet<String> = BTreeSet::new();
    let mut killed = false;
    while ids.len() < N as usize || handled.values().any(|c| *c == 0) {
        let m = tokio::time::timeout(Duration::from_secs(60), sub.next())
            .await
            .expect("a message within 60 s")
            .expect("the subscription goes on")
            .expect("no error");
        let n = m.json::<serde_json::Value>().unwrap()["n"]
            .as_u64()
            .unwrap();
        *handled.entry(n).or_default() += 1;
        if n % 10 == 0 && m.deliveries == 1 {
            // The application fails on these the first time: they must come back.
            let s = m.nack(Duration::ZERO).await.unwrap();
            assert_eq!(s.applied, vec![m.id.clone()]);
            continue;
        }
        let s = if ids.len() == 100 && !killed {
            // The agent freezes with this ack on its way, and dies without reading it:
            // the SDK sends it again to the restarted agent.
            killed = true;
            net.node("bob").pause().unwrap();
            let pending = tokio::spawn({
                let m = m.clone();
                async move { m.ack().await }
            });
            tokio::time::sleep(Duration::from_millis(300)).await;
            net.node("bob").kill().await.unwrap();
            net.node("bob").start().await.unwrap();
            let s = tokio::time::timeout(Duration::from_secs(30), pending)
                .await
                .expect("the ack is answered after the restart")
                .unwrap()
                .unwrap();
            assert_eq!(
                s.applied,
                vec![m.id.clone()],
                "applied by the restarted agent"
            );
            s
        } else {
            m.ack().await.unwrap()
        };
        for id in s.applied {
            *applied.entry(id).or_default() += 1;
        }
        ids.insert(m.id.clone());
    }
    assert!(killed);
    assert_eq!(
        handled.keys().copied().collect::<Vec<_>>(),
        (0..N).collect::<Vec<_>>(),
        "every message handled"
    );
    for n in (0..N).step_by(10) {
        assert!(
            handled[&n] >= 2,
            "nacked message {n} came back (handled {} times)",
            handled[&n]
        );
    }
    let twice: Vec<_> = applied.iter().filter(|(_, c)| **c > 1).collect();
    assert!(twice.is_empty(), "acknowledged twice: {twice:?}");
    let mgmt = bob.mgmt();
    let g = eventually(Duration::from_secs(10), "group settled", || {
        let mgmt = mgmt.clone();
        async move {
            let g = mgmt.group("chat", "work").await.ok()?;
            (g.pending == 0).then_some(g)
        }
    })
    .await
    .unwrap();
    assert_eq!(g.ack_floor, N, "every offset acknowledged");
    sub.unsubscribe().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_message_nacks_on_err_and_the_message_comes_back() {
    let net = writer_and_reader().await;
    let bob = rmds::Node::connect(net.agent("bob").client().base())
        .await
        .unwrap();
    let chat = bob.join("chat", Role::Reader).await.unwrap();
    let seen: Arc<Mutex<Vec<(u64, u32)>>> = Arc::default();
    let s = seen.clone();
    let h = chat
        .on_message("work", move |m| {
            let s = s.clone();
            async move {
                let n = m.json::<serde_json::Value>().map_err(|e| e.to_string())?["n"]
                    .as_u64()
                    .unwrap_or(0);
                s.lock().unwrap().push((n, m.deliveries));
                if m.deliveries == 1 {
                    return Err(format!("cannot handle {n} yet"));
                }
                Ok(())
            }
        })
        .await
        .unwrap();
    publish(&net, 0, 10).await;
    eventually(
        Duration::from_secs(30),
        "each message handled twice",
        || {
            let n = seen.lock().unwrap().len();
            async move { (n >= 20).then_some(()) }
        },
    )
    .await
    .unwrap();
    h.stop().await.unwrap();
    let seen = seen.lock().unwrap().clone();
    for n in 0..10 {
        let d: Vec<u32> = seen
            .iter()
            .filter(|(x, _)| *x == n)
            .map(|(_, d)| *d)
            .collect();
        assert_eq!(d, vec![1, 2], "message {n}: failed once, then handled");
    }
    let g = bob.mgmt().group("chat", "work").await.unwrap();
    assert_eq!((g.pending, g.ack_floor), (0, 10));
    // The nack carried the handler's error (kept for the dead-letter queue).
    let stats = bob.mgmt().stats().await.unwrap();
    assert_eq!(stats.counters["group_acks"], 10);
}
