//! The quick start, written with the SDK, in both modes: two nodes join a channel,
//! each sends typed lines, each receives the other's with `on_message`, and every
//! message is acknowledged exactly once (the groups' books and the agents' counters
//! say so).

mod support;

use rmds::Role;
use rmds_scenarios::harness::eventually;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{net, node, wait_reader, Mode};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Line {
    from: String,
    n: u32,
}

const N: u32 = 20;

async fn quick_start(mode: Mode) {
    let net = net(mode, &["alice", "bob"]).await;
    let alice = node(&net, mode, "alice").await;
    let bob = node(&net, mode, "bob").await;
    assert_eq!(alice.is_embedded(), mode == Mode::Embedded);
    assert_eq!(alice.id(), "alice");

    let a_chat = alice.join("chat", Role::ReadWrite).await.unwrap();
    let b_chat = bob.join("chat", Role::ReadWrite).await.unwrap();
    wait_reader(&alice, "chat", "bob").await;
    wait_reader(&bob, "chat", "alice").await;

    let got: Arc<Mutex<Vec<(String, Line)>>> = Arc::default();
    let mut handlers = Vec::new();
    for chat in [&a_chat, &b_chat] {
        let got = got.clone();
        let me = chat.node().id().to_string();
        handlers.push(
            chat.on_message("chat-ui", move |m| {
                let (got, me) = (got.clone(), me.clone());
                async move {
                    let line: Line = m.json()?;
                    got.lock().unwrap().push((me, line));
                    Ok::<_, rmds::Error>(())
                }
            })
            .await
            .unwrap(),
        );
    }
    for n in 0..N {
        let r = a_chat
            .send(&Line {
                from: "alice".into(),
                n,
            })
            .await
            .unwrap();
        assert_eq!(r.receivers, vec!["bob".to_string()]);
        b_chat
            .send(&Line {
                from: "bob".into(),
                n,
            })
            .await
            .unwrap();
    }
    eventually(Duration::from_secs(30), "every line handled", || {
        let n = got.lock().unwrap().len();
        async move { (n >= 2 * N as usize).then_some(()) }
    })
    .await
    .unwrap();
    // Give a stray duplicate time to show up, then look at what arrived.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = got.lock().unwrap().clone();
    for (me, other) in [("alice", "bob"), ("bob", "alice")] {
        let lines: Vec<u32> = got
            .iter()
            .filter(|(at, _)| at == me)
            .map(|(_, l)| {
                assert_eq!(l.from, other);
                l.n
            })
            .collect();
        assert_eq!(
            lines,
            (0..N).collect::<Vec<_>>(),
            "{me} got {other}'s lines once, in order"
        );
    }
    // Acknowledged once each: the group is settled and the agents counted N acks.
    for n in [&alice, &bob] {
        let mgmt = n.mgmt();
        let g = eventually(Duration::from_secs(10), "group settled", || {
            let mgmt = mgmt.clone();
            async move {
                let g = mgmt.group("chat", "chat-ui").await.ok()?;
                (g.pending == 0 && g.ack_floor == u64::from(N)).then_some(g)
            }
        })
        .await
        .unwrap();
        assert_eq!(g.in_flight, 0);
        let stats = mgmt.stats().await.unwrap();
        assert_eq!(
            stats.counters["group_acks"],
            i64::from(N),
            "{}: one ack per message",
            n.id()
        );
        assert_eq!(stats.counters["group_redeliveries"], 0);
    }
    for h in handlers {
        h.stop().await.unwrap();
    }
    alice.shutdown().await;
    bob.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_start_with_sidecar_agents() {
    quick_start(Mode::Sidecar).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_start_with_embedded_agents() {
    quick_start(Mode::Embedded).await;
}
