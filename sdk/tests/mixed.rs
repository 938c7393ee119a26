//! An embedded node and a sidecar node on the same NATS exchange messages in both
//! directions, each direction in order and once.

mod support;

use futures::StreamExt;
use rmds::{Node, Role, SubscribeOptions};
use rmds_scenarios::harness::TestNet;
use std::time::Duration;
use support::{embedded_config, wait_reader};

const N: u64 = 100;

async fn receive(node: &Node, from: &str) -> Vec<u64> {
    let chat = node.join("chat", Role::ReadWrite).await.unwrap();
    let mut sub = chat
        .subscribe(
            "in",
            SubscribeOptions {
                credit: 16,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut got = Vec::new();
    while got.len() < N as usize {
        let m = tokio::time::timeout(Duration::from_secs(30), sub.next())
            .await
            .expect("a message within 30 s")
            .unwrap()
            .unwrap();
        assert_eq!(m.sender, from);
        got.push(m.json::<u64>().unwrap());
        assert_eq!(m.ack().await.unwrap().applied, vec![m.id.clone()]);
    }
    // Nothing more arrives: no duplicate.
    let more = tokio::time::timeout(Duration::from_millis(700), sub.next()).await;
    assert!(more.is_err(), "a message after the last one: {more:?}");
    sub.unsubscribe().await;
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_and_sidecar_nodes_exchange_messages_in_order() {
    let net = TestNet::builder().agent("bob", &[]).start().await.unwrap();
    let alice = Node::embedded(embedded_config(&net, "alice"))
        .await
        .unwrap();
    let bob = Node::connect(net.agent("bob").client().base())
        .await
        .unwrap();
    assert!(alice.is_embedded() && !bob.is_embedded());
    let a = alice.join("chat", Role::ReadWrite).await.unwrap();
    let b = bob.join("chat", Role::ReadWrite).await.unwrap();
    wait_reader(&alice, "chat", "bob").await;
    wait_reader(&bob, "chat", "alice").await;
    let sending = tokio::spawn(async move {
        for n in 0..N {
            a.send(&n).await.unwrap();
            b.send(&n).await.unwrap();
        }
    });
    let (at_bob, at_alice) = tokio::join!(receive(&bob, "alice"), receive(&alice, "bob"));
    sending.await.unwrap();
    assert_eq!(
        at_bob,
        (0..N).collect::<Vec<_>>(),
        "alice -> bob in order, once"
    );
    assert_eq!(
        at_alice,
        (0..N).collect::<Vec<_>>(),
        "bob -> alice in order, once"
    );
    alice.shutdown().await;
}
