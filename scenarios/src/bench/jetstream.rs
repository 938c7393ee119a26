//! The JetStream side of the comparisons: a real nats-server with JetStream and file
//! storage on a loopback port (a fresh one per run), a stream `BENCH` on subject
//! `bench`, publishers that wait for publish acks, and a durable pull consumer that
//! acknowledges every message.

use super::procfs::CpuMeter;
use crate::harness::NatsServer;
use async_nats::jetstream::{self, consumer::pull, consumer::AckPolicy, stream};
use clap::ValueEnum;
use futures::stream::{FuturesUnordered, StreamExt};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The subject (and the stream's only one).
pub const SUBJECT: &str = "bench";

/// When JetStream fsyncs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum JsSync {
    /// The server's default: fsync on an interval (2 minutes), acks from the page cache.
    Default,
    /// `jetstream { sync_interval: always }`: fsync before every publish ack
    /// (nats-server 2.10 and newer).
    Always,
}

/// Checks that the installed server supports `sync`; returns what it means, in words.
pub fn check_sync(sync: JsSync, version: &str) -> anyhow::Result<String> {
    if sync == JsSync::Always {
        let conf =
            "jetstream {\n  store_dir: \"/tmp/rmds-js-sync-check\"\n  sync_interval: always\n}\n";
        anyhow::ensure!(
            NatsServer::config_valid(conf)?,
            "--js-sync always: the installed {version} does not know jetstream.sync_interval \
             (added in nats-server 2.10); install a newer nats-server (NATS_SERVER_BIN=…) \
             or run with --js-sync default"
        );
    }
    Ok(super::net::js_sync_words(sync, version))
}

/// One JetStream server with the bench stream.
pub struct JsNet {
    /// The server (killed on drop).
    pub server: NatsServer,
    /// A client connection.
    pub client: async_nats::Client,
    /// Its JetStream context.
    pub js: jetstream::Context,
    _dir: tempfile::TempDir,
}

impl JsNet {
    /// Starts a fresh server (its own temp dir) and creates the stream.
    pub async fn start(sync: JsSync) -> anyhow::Result<JsNet> {
        let dir = tempfile::Builder::new()
            .prefix("rmds-js-bench-")
            .tempdir()?;
        let mut server = NatsServer::new(dir.path(), "nats-js").jetstream(dir.path().join("js"));
        if sync == JsSync::Always {
            server = server.jetstream_sync("always");
        }
        server.start().await?;
        let client = async_nats::connect(server.url()).await?;
        let js = jetstream::new(client.clone());
        js.create_stream(stream::Config {
            name: "BENCH".into(),
            subjects: vec![SUBJECT.into()],
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await?;
        Ok(JsNet {
            server,
            client,
            js,
            _dir: dir,
        })
    }

    /// The durable pull consumer `app` (explicit acks).
    pub async fn consumer(&self) -> anyhow::Result<jetstream::consumer::PullConsumer> {
        Ok(self
            .js
            .get_stream("BENCH")
            .await?
            .create_consumer(pull::Config {
                durable_name: Some("app".into()),
                ack_policy: AckPolicy::Explicit,
                ..Default::default()
            })
            .await?)
    }

    /// The server's version as it reports it.
    pub fn version(&self) -> String {
        self.client.server_info().version
    }

    /// Stops the server.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.server.stop().await
    }
}

/// The batch workload: `messages` of `size` bytes, `publishers` tasks with up to
/// `in_flight` publish acks outstanding each.
#[derive(Clone, Copy, Debug)]
pub struct BatchOpts {
    /// Messages.
    pub messages: u64,
    /// Payload bytes.
    pub size: usize,
    /// Publisher tasks.
    pub publishers: u64,
    /// Publish acks outstanding per publisher.
    pub in_flight: usize,
    /// fsync policy.
    pub sync: JsSync,
}

/// What one batch run measured.
#[derive(Clone, Debug)]
pub struct BatchResult {
    /// Until the last publish ack.
    pub published: Duration,
    /// Until the consumer had acknowledged the last message.
    pub e2e: Duration,
    /// Server version.
    pub version: String,
    /// CPU microseconds per message of nats-server and the load generator.
    pub cpu: Vec<(String, f64)>,
}

/// One batch run on a fresh server.
pub async fn run_batch(o: BatchOpts) -> anyhow::Result<BatchResult> {
    let net = JsNet::start(o.sync).await?;
    let consumer = net.consumer().await?;
    let version = net.version();
    let n = o.messages;
    let meter = CpuMeter::start(&[("nats-server", net.server.pid())]);
    let start = Instant::now();
    let reader = tokio::spawn(async move {
        let mut got = 0u64;
        let mut msgs = consumer.messages().await?;
        while got < n {
            match tokio::time::timeout(Duration::from_secs(30), msgs.next()).await {
                Ok(Some(Ok(m))) => {
                    m.ack().await.map_err(|e| anyhow::anyhow!("ack: {e}"))?;
                    got += 1;
                }
                Ok(Some(Err(e))) => anyhow::bail!("consume: {e}"),
                Ok(None) | Err(_) => anyhow::bail!("consumer stalled after {got} messages"),
            }
        }
        Ok::<_, anyhow::Error>(Instant::now())
    });
    let publishers = o.publishers.max(1);
    let mut tasks = Vec::new();
    for p in 0..publishers {
        let js = net.js.clone();
        let payload = bytes::Bytes::from(vec![b'x'; o.size]);
        let share = n / publishers + u64::from(p < n % publishers);
        let window = o.in_flight.max(1);
        tasks.push(tokio::spawn(async move {
            let mut pending = FuturesUnordered::new();
            for _ in 0..share {
                if pending.len() >= window {
                    if let Some(r) = pending.next().await {
                        r?;
                    }
                }
                let ack = js.publish(SUBJECT, payload.clone()).await?;
                pending.push(std::future::IntoFuture::into_future(ack));
            }
            while let Some(r) = pending.next().await {
                r?;
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let published = start.elapsed();
    let done = reader.await??;
    let cpu = meter.per_message(n);
    net.stop().await?;
    Ok(BatchResult {
        published,
        e2e: done - start,
        version,
        cpu,
    })
}

/// Publishes one message and waits for its publish ack (stored by the server).
pub async fn publish_acked(js: &jetstream::Context, payload: bytes::Bytes) -> anyhow::Result<()> {
    js.publish(SUBJECT, payload)
        .await?
        .await
        .map_err(|e| anyhow::anyhow!("publish ack: {e}"))?;
    Ok(())
}

/// A consuming application on the pull consumer: hands each payload to `on` on
/// arrival, then acks it (a fire-and-forget ack, as the client sends it). Runs until
/// `done`; returns the messages seen.
pub async fn consume_loop(
    consumer: jetstream::consumer::PullConsumer,
    done: Arc<AtomicBool>,
    mut on: impl FnMut(&[u8]) + Send,
) -> anyhow::Result<u64> {
    let mut msgs = consumer.messages().await?;
    let mut seen = 0u64;
    while !done.load(Ordering::Relaxed) {
        match tokio::time::timeout(Duration::from_millis(100), msgs.next()).await {
            Ok(Some(Ok(m))) => {
                on(&m.payload);
                seen += 1;
                m.ack().await.map_err(|e| anyhow::anyhow!("ack: {e}"))?;
            }
            Ok(Some(Err(e))) => anyhow::bail!("consume: {e}"),
            Ok(None) => anyhow::bail!("consumer ended"),
            Err(_) => {}
        }
    }
    Ok(seen)
}
