//! Competing consumers: one node publishes jobs, another runs several workers in one
//! consumer group; each job is done by exactly one worker, once.
//!
//! ```text
//! cargo run -p rmds --example worker -- PRODUCER_URL CONSUMER_URL [JOBS] [WORKERS]
//! cargo run -p rmds --example worker -- http://127.0.0.1:7701 http://127.0.0.1:7702 100 4
//! ```

use futures::StreamExt;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

#[derive(serde::Serialize, serde::Deserialize)]
struct Job {
    n: u32,
}

#[tokio::main]
async fn main() -> rmds::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        eprintln!("usage: worker PRODUCER_URL CONSUMER_URL [JOBS] [WORKERS]");
        std::process::exit(2);
    }
    let jobs: u32 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(100);
    let workers: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(4);
    let producer = rmds::Node::connect(&args[0]).await?;
    let consumer = rmds::Node::connect(&args[1]).await?;
    let out = producer.join("jobs", rmds::Role::Writer).await?;
    let inbox = consumer.join("jobs", rmds::Role::Reader).await?;

    // Every worker subscribes to the same group: they share its messages.
    let done: Arc<Mutex<BTreeMap<u32, Vec<usize>>>> = Arc::default();
    let mut tasks = Vec::new();
    for w in 0..workers {
        let opts = rmds::SubscribeOptions {
            credit: 8,
            ..Default::default()
        };
        let mut sub = inbox.subscribe("workers", opts).await?;
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(m) = sub.next().await {
                let m = m?;
                let job: Job = m.json()?;
                done.lock().expect("lock").entry(job.n).or_default().push(w);
                m.ack().await?;
                if done.lock().expect("lock").len() == jobs as usize {
                    break;
                }
            }
            Ok::<_, rmds::Error>(())
        }));
    }
    let batch: Vec<Job> = (0..jobs).map(|n| Job { n }).collect();
    for r in out.send_batch(&batch).await? {
        r?;
    }
    while done.lock().expect("lock").len() < jobs as usize {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    for t in tasks {
        t.abort();
    }
    let done = done.lock().expect("lock");
    let mut per_worker = vec![0usize; workers];
    for ws in done.values() {
        for w in ws {
            per_worker[*w] += 1;
        }
    }
    let twice = done.values().filter(|w| w.len() > 1).count();
    println!("jobs per worker: {per_worker:?}");
    println!("{} jobs done, {twice} more than once", done.len());
    Ok(())
}
