//! Liveness is heard where it is needed: a node that writes no channel sends its
//! periodic keepalives to the writers only, and receives only the writers'. So what a
//! reader-only node receives does not grow with the number of other readers, while a
//! writer still follows (and times out) every reader it sends to.

use futures::StreamExt;
use rmds_agent::wire::{Codec, Packet};
use rmds_scenarios::harness::{eventually, TestNet};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

const READERS: [&str; 4] = ["lisa", "mike", "nora", "otto"];

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rmds-agent"))
}

/// `of` as `at` sees it in `/v1/nodes`.
async fn peer(at: &rmds::Client, of: &str) -> Option<Value> {
    let v = at.get_json("/v1/nodes").await.ok()?;
    v["nodes"]
        .as_array()?
        .iter()
        .find(|n| n["node_id"] == of)
        .cloned()
}

async fn received(c: &rmds::Client) -> u64 {
    c.stats().await.unwrap()["received_keepalives"]
        .as_u64()
        .unwrap()
}

#[tokio::test]
async fn given_one_writer_and_four_readers_when_idle_then_readers_hear_only_the_writer_and_the_writer_follows_every_reader(
) {
    let mut b = TestNet::builder()
        .binary(bin())
        .agent("alice", &["chat:writer"]);
    for r in READERS {
        b = b.agent(r, &["chat:reader"]);
    }
    let mut net = b.start().await.unwrap();
    net.wait_discovered("alice", "chat", &READERS)
        .await
        .unwrap();
    let alice = net.client("alice");
    let lisa = net.client("lisa");

    // Every reader knows every other reader (from hellos and the answers to its own),
    // online, but does not follow its keepalives; the writer is followed.
    for r in READERS.iter().filter(|r| **r != "lisa") {
        eventually(Duration::from_secs(10), "lisa to know the others", || {
            let l = lisa.clone();
            async move { (peer(&l, r).await?["online"] == true).then_some(()) }
        })
        .await
        .unwrap();
        assert_eq!(peer(&lisa, r).await.unwrap()["tracked"], false);
        assert_eq!(peer(&alice, r).await.unwrap()["tracked"], true);
    }
    assert_eq!(peer(&lisa, "alice").await.unwrap()["tracked"], true);

    // On the bus, over several intervals: readers' periodic keepalives go to the
    // reader subject only, the writer's to the common one.
    let nc = async_nats::connect(net.nats.url()).await.unwrap();
    let codec = Codec::new(None);
    let common = nc.subscribe("rmds.keepalive").await.unwrap();
    let readers = nc.subscribe("rmds.keepalive.reader").await.unwrap();
    let mut both = futures::stream::select(common, readers);
    let before = received(&lisa).await;
    let mut seen: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut alice_keepalives = 0u64;
    let window = tokio::time::sleep(Duration::from_secs(3));
    tokio::pin!(window);
    loop {
        tokio::select! {
            _ = &mut window => break,
            Some(msg) = both.next() => {
                if let Ok(Packet::Keepalive(a)) = codec.decode(&msg.payload) {
                    if a.node.as_str() == "alice" && msg.subject.as_str() == "rmds.keepalive" {
                        alice_keepalives += 1;
                    }
                    seen.entry(a.node.to_string()).or_default().insert(msg.subject.to_string());
                }
            }
        }
    }
    let after = received(&lisa).await;
    assert_eq!(
        seen["alice"],
        BTreeSet::from(["rmds.keepalive".to_string()]),
        "{seen:?}"
    );
    for r in READERS {
        assert_eq!(
            seen[r],
            BTreeSet::from(["rmds.keepalive.reader".to_string()]),
            "{seen:?}"
        );
    }
    // lisa applied alice's keepalives and nothing of the three other readers' (which
    // were four times as many): one more or less for the window's edges.
    assert!(
        alice_keepalives >= 8,
        "{alice_keepalives} keepalives of alice"
    );
    let heard = after - before;
    assert!(
        heard.abs_diff(alice_keepalives) <= 2,
        "lisa applied {heard} announces while alice sent {alice_keepalives} keepalives"
    );

    // The writer follows its readers: one killed is offline there, within the timeout
    // (1.5 s in the test net); at lisa it stays as last heard (online, untracked).
    net.node("otto").kill().await.unwrap();
    eventually(Duration::from_secs(10), "alice to see otto offline", || {
        let a = alice.clone();
        async move { (peer(&a, "otto").await?["online"] == false).then_some(()) }
    })
    .await
    .unwrap();

    // A reader that starts to write follows the readers from then on: it asks every
    // peer to answer and times out a reader that falls silent.
    lisa.join("chat", rmds::Role::Rw).await.unwrap();
    eventually(Duration::from_secs(10), "lisa to follow mike", || {
        let l = lisa.clone();
        async move {
            let p = peer(&l, "mike").await?;
            (p["tracked"] == true && p["online"] == true).then_some(())
        }
    })
    .await
    .unwrap();
    net.node("mike").kill().await.unwrap();
    eventually(Duration::from_secs(10), "lisa to see mike offline", || {
        let l = lisa.clone();
        async move { (peer(&l, "mike").await?["online"] == false).then_some(()) }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn given_a_reader_only_issuer_when_an_untracked_peer_missed_a_kick_then_it_gets_it_on_its_hello(
) {
    let mut net = TestNet::builder()
        .binary(bin())
        .agent("alice", &["chat:writer"])
        .agent("lisa", &["chat:reader"])
        .agent("mike", &["chat:reader"])
        .start()
        .await
        .unwrap();
    net.wait_discovered("alice", "chat", &["lisa", "mike"])
        .await
        .unwrap();
    let lisa = net.client("lisa");
    eventually(Duration::from_secs(10), "lisa to know mike", || {
        let l = lisa.clone();
        async move { (peer(&l, "mike").await?["online"] == true).then_some(()) }
    })
    .await
    .unwrap();
    // mike dies without a bye: lisa does not follow him, so he stays online there.
    net.node("mike").kill().await.unwrap();
    let out = lisa
        .post_json("/v1/nodes/mike/kick?wait=1s", &serde_json::json!({}))
        .await
        .unwrap();
    assert_eq!(out["not_answered"][0]["node"], "mike", "{out}");
    assert_eq!(out["not_answered"][0]["online"], true, "{out}");
    assert_eq!(peer(&lisa, "mike").await.unwrap()["tracked"], false);
    // When mike is back, his hello is what tells lisa to send the command again.
    net.node("mike").start().await.unwrap();
    let mike = net.client("mike");
    eventually(Duration::from_secs(20), "mike applies the kick", || {
        let m = mike.clone();
        async move { m.health().await.ok()?["kicked"].is_object().then_some(()) }
    })
    .await
    .unwrap();
}
