//! Credit is respected, in both modes: a subscription with credit 10 never hands out
//! an eleventh message while ten are unsettled (the agent's group agrees: ten in
//! flight), and `on_message` with more workers than credit never runs more than ten
//! handlers at once.

mod support;

use futures::StreamExt;
use rmds::{Role, SubscribeOptions};
use rmds_scenarios::harness::eventually;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::{net, node, wait_reader, Mode};

async fn credit(mode: Mode) {
    let net = net(mode, &["alice", "bob"]).await;
    let alice = node(&net, mode, "alice").await;
    let bob = node(&net, mode, "bob").await;
    let out = alice.join("jobs", Role::Writer).await.unwrap();
    let jobs = bob.join("jobs", Role::Reader).await.unwrap();
    wait_reader(&alice, "jobs", "bob").await;
    let items: Vec<u32> = (0..40).collect();
    assert!(out
        .send_batch(&items)
        .await
        .unwrap()
        .iter()
        .all(|r| r.is_ok()));
    let mgmt = bob.mgmt();
    mgmt.create_group("jobs", "slow", &Default::default())
        .await
        .unwrap();
    eventually(Duration::from_secs(20), "40 messages at bob", || {
        let mgmt = mgmt.clone();
        async move { (mgmt.group("jobs", "slow").await.ok()?.log_head >= 41).then_some(()) }
    })
    .await
    .unwrap();

    // A stream: ten unsettled, and nothing more comes until one is settled.
    let opts = SubscribeOptions {
        credit: 10,
        ..Default::default()
    };
    let mut sub = jobs.subscribe("slow", opts).await.unwrap();
    let mut held = Vec::new();
    for _ in 0..10 {
        held.push(sub.next().await.unwrap().unwrap());
    }
    let more = tokio::time::timeout(Duration::from_millis(1500), sub.next()).await;
    assert!(
        more.is_err(),
        "an eleventh message while ten are unsettled: {more:?}"
    );
    let g = mgmt.group("jobs", "slow").await.unwrap();
    assert_eq!(g.in_flight, 10, "the agent leased exactly the credit");
    held.remove(0).ack().await.unwrap();
    let next = tokio::time::timeout(Duration::from_secs(10), sub.next()).await;
    held.push(next.expect("one more after an ack").unwrap().unwrap());
    let more = tokio::time::timeout(Duration::from_millis(1000), sub.next()).await;
    assert!(more.is_err(), "only one more after one ack");
    for m in &held {
        m.ack().await.unwrap();
    }
    sub.unsubscribe().await;

    // A handler with 32 workers and credit 10: at most ten run at once.
    let (running, peak, done) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let opts = SubscribeOptions {
        credit: 10,
        concurrency: 32,
        ..Default::default()
    };
    let h = {
        let (running, peak, done) = (running.clone(), peak.clone(), done.clone());
        // Another group: the first one may still hold leases that the stream above
        // had received but never handed out (they run out after ack_wait).
        jobs.on_message_with("pool", opts, move |_m| {
            let (running, peak, done) = (running.clone(), peak.clone(), done.clone());
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                done.fetch_add(1, Ordering::SeqCst);
                Ok::<_, rmds::Error>(())
            }
        })
        .await
        .unwrap()
    };
    let mut in_flight_peak = 0;
    while done.load(Ordering::SeqCst) < 40 {
        let g = mgmt.group("jobs", "pool").await.unwrap();
        in_flight_peak = in_flight_peak.max(g.in_flight);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    h.stop().await.unwrap();
    assert!(
        peak.load(Ordering::SeqCst) <= 10,
        "{} handlers at once",
        peak.load(Ordering::SeqCst)
    );
    assert!(
        peak.load(Ordering::SeqCst) > 1,
        "the handlers did run in parallel"
    );
    assert!(
        in_flight_peak <= 10,
        "{in_flight_peak} in flight at the agent"
    );
    let g = mgmt.group("jobs", "pool").await.unwrap();
    assert_eq!((g.pending, g.ack_floor), (0, 40));
    alice.shutdown().await;
    bob.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credit_is_respected_with_a_sidecar_agent() {
    credit(Mode::Sidecar).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credit_is_respected_with_an_embedded_agent() {
    credit(Mode::Embedded).await;
}
