//! The embedded mode: the agent runs in this process and the SDK calls its
//! application service directly (the same one its REST and WebSocket API call),
//! without HTTP. Management goes through the agent's own API on `config.listen`.

use crate::message::{Op, SettleReq};
use crate::subscription::{DriverIo, Hand};
use crate::{Error, ErrorKind, Message, Receipt, Result, Role, SendOptions, Settled};
use rmds_agent::names::{Channel, GroupName};
use rmds_agent::service::{Draft, Pull, Service, ServiceError};
use serde::Serialize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// An agent running in this process; stopped when the last handle goes.
#[derive(Clone)]
pub(crate) struct Embedded {
    inner: Arc<Running>,
}

struct Running {
    agent: Mutex<Option<rmds_agent::Agent>>,
    service: Service,
    addr: std::net::SocketAddr,
}

impl Drop for Running {
    fn drop(&mut self) {
        let agent = match self.agent.get_mut() {
            Ok(a) => a.take(),
            Err(p) => p.into_inner().take(),
        };
        if let (Some(agent), Ok(rt)) = (agent, tokio::runtime::Handle::try_current()) {
            // Dropped without shutdown(): stop in order in the background.
            rt.spawn(agent.shutdown());
        }
    }
}

fn service_error(e: ServiceError) -> Error {
    Error::from_status(
        e.status.as_u16(),
        Some(e.code.to_string()),
        e.message.clone(),
    )
    .with_source(e)
}

fn channel(name: &str) -> Result<Channel> {
    Channel::new(name).map_err(|e| Error::new(ErrorKind::BadRequest, e.to_string()))
}

fn role(r: Role) -> rmds_agent::names::Role {
    match r {
        Role::Reader => rmds_agent::names::Role::Reader,
        Role::Writer => rmds_agent::names::Role::Writer,
        Role::ReadWrite => rmds_agent::names::Role::Rw,
    }
}

fn receipt(p: rmds_agent::service::Published) -> Receipt {
    Receipt {
        id: p.id,
        receivers: p.receivers,
        unrouted: p.unrouted,
        duplicate: p.duplicate,
    }
}

impl Embedded {
    pub(crate) async fn start(config: rmds_agent::config::Config) -> Result<Embedded> {
        let agent = rmds_agent::Agent::start(config).await.map_err(|e| {
            Error::new(
                ErrorKind::BadRequest,
                format!("cannot start the embedded agent: {e}"),
            )
            .with_source(e)
        })?;
        Ok(Embedded {
            inner: Arc::new(Running {
                service: agent.service().clone(),
                addr: agent.local_addr(),
                agent: Mutex::new(Some(agent)),
            }),
        })
    }

    pub(crate) fn service(&self) -> &Service {
        &self.inner.service
    }

    pub(crate) fn api_addr(&self) -> std::net::SocketAddr {
        self.inner.addr
    }

    pub(crate) async fn shutdown(&self) {
        let agent = match self.inner.agent.lock() {
            Ok(mut a) => a.take(),
            Err(p) => p.into_inner().take(),
        };
        if let Some(a) = agent {
            a.shutdown().await;
        }
    }

    pub(crate) async fn join(&self, name: &str, r: Role) -> Result<()> {
        self.service()
            .join(&channel(name)?, role(r))
            .await
            .map(|_| ())
            .map_err(service_error)
    }

    pub(crate) async fn leave(&self, name: &str) -> Result<()> {
        self.service()
            .leave(&channel(name)?)
            .await
            .map_err(service_error)
    }

    fn draft(
        &self,
        ch: &Channel,
        payload: Vec<u8>,
        opts: &SendOptions,
        key: Option<String>,
    ) -> Result<Draft> {
        let ttl = match opts.ttl {
            Some(t) => self
                .service()
                .ttl_of(ch, Some(&format!("{}ms", t.as_millis())))
                .map_err(service_error)?,
            None => self.service().ttl_of(ch, None).map_err(service_error)?,
        };
        let mut headers = opts.headers.clone();
        headers.sort();
        Ok(Draft {
            payload,
            content_type: opts
                .content_type
                .clone()
                .unwrap_or_else(|| "application/octet-stream".into()),
            headers,
            ttl,
            idempotency_key: key,
        })
    }

    pub(crate) async fn publish(
        &self,
        name: &str,
        payload: Vec<u8>,
        opts: &SendOptions,
    ) -> Result<Receipt> {
        let ch = channel(name)?;
        let d = self.draft(&ch, payload, opts, opts.idempotency_key.clone())?;
        self.service()
            .publish(&ch, d)
            .await
            .map(receipt)
            .map_err(service_error)
    }

    pub(crate) async fn publish_batch<T: Serialize>(
        &self,
        name: &str,
        items: &[T],
    ) -> Result<Vec<Result<Receipt>>> {
        let ch = channel(name)?;
        let opts = SendOptions {
            content_type: Some("application/json".into()),
            ..SendOptions::default()
        };
        let mut drafts = Vec::with_capacity(items.len());
        for item in items {
            let body = serde_json::to_vec(item).map_err(|e| {
                Error::new(ErrorKind::BadRequest, format!("cannot encode as JSON: {e}"))
                    .with_source(e)
            })?;
            drafts.push(self.draft(&ch, body, &opts, None)?);
        }
        let results = self
            .service()
            .publish_batch(&ch, drafts)
            .await
            .map_err(service_error)?;
        Ok(results
            .into_iter()
            .map(|r| r.map(receipt).map_err(service_error))
            .collect())
    }
}

/// How long one pull waits for messages before it is asked again.
const PULL_WAIT: Duration = Duration::from_secs(5);

/// Feeds a subscription from the service: pulls while there is credit, settles
/// what the application settles.
pub(crate) async fn drive(
    service: Service,
    channel_name: String,
    group: String,
    credit: usize,
    io: DriverIo,
) {
    let DriverIo {
        out,
        mut reqs,
        settle_tx,
        mut stop,
        ready,
    } = io;
    let (ch, group) = match (channel(&channel_name), GroupName::new(group.clone())) {
        (Ok(c), Ok(g)) => (c, g),
        (Err(e), _) => {
            let _ = ready.send(Err(e));
            return;
        }
        (_, Err(e)) => {
            let _ = ready.send(Err(Error::new(ErrorKind::BadRequest, e.to_string())));
            return;
        }
    };
    if let Err(e) = rmds_agent::service::check_reader(&service, &ch) {
        let _ = ready.send(Err(service_error(e)));
        return;
    }
    let _ = ready.send(Ok(()));
    let consumer = format!("sdk:{}", ulid_like());
    let mut hand = Hand::new(credit);
    type Pulled = std::result::Result<Vec<rmds_agent::groups::Leased>, ServiceError>;
    let mut pulling: Option<std::pin::Pin<Box<dyn std::future::Future<Output = Pulled> + Send>>> =
        None;
    loop {
        for mut m in hand.hand_out() {
            m.settler = Some(crate::message::Settler::Sub(settle_tx.clone()));
            if out.send(Ok(m)).is_err() {
                return;
            }
        }
        let free = hand.free();
        if pulling.is_none() && free > 0 {
            let (s, c, g, who) = (service.clone(), ch.clone(), group.clone(), consumer.clone());
            let max = free.min(s.groups.max_batch());
            pulling = Some(Box::pin(async move {
                s.pull(
                    &c,
                    Pull {
                        group: &g,
                        consumer: Some(&who),
                        max,
                        wait: PULL_WAIT.min(s.groups.max_wait()),
                    },
                )
                .await
            }));
        }
        let wake = hand
            .next_expiry()
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            _ = stop.changed() => return,
            r = reqs.recv() => match r {
                Some(r) => settle(&service, &ch, &group, &mut hand, r).await,
                None => return,
            },
            _ = tokio::time::sleep_until(wake) => {}
            r = async { pulling.as_mut().expect("checked").await }, if pulling.is_some() => {
                pulling = None;
                match r {
                    Ok(leased) => {
                        for l in leased {
                            let v = rmds_agent::api::message_json(&ch, &l);
                            match serde_json::from_value::<Message>(v) {
                                Ok(m) => hand.arrived(m, l.until.into()),
                                Err(e) => {
                                    let _ = out.send(Err(Error::decode(e)));
                                    return;
                                }
                            }
                        }
                    }
                    Err(e) if e.status.is_server_error() => {
                        // The store is unavailable for now: try again shortly.
                        tokio::select! {
                            _ = stop.changed() => return,
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                    }
                    Err(e) => {
                        let _ = out.send(Err(service_error(e)));
                        return;
                    }
                }
            }
        }
    }
}

async fn settle(service: &Service, ch: &Channel, group: &GroupName, hand: &mut Hand, r: SettleReq) {
    use rmds_agent::groups::Settle;
    let how = match r.op {
        Op::Ack => Settle::Ack,
        Op::Term => Settle::Term,
        Op::Extend => Settle::Extend,
        Op::Nack => {
            let delay = r.delay.unwrap_or_default();
            let max = rmds_agent::durations::MAX_NACK_DELAY;
            if let Err(e) = rmds_agent::durations::check("delay", delay, max) {
                let _ = r.reply.send(Err(Error::new(ErrorKind::BadRequest, e)));
                return;
            }
            Settle::Nack(
                delay,
                r.error.clone().map(|e| e.chars().take(1024).collect()),
            )
        }
    };
    let res = service.settle(ch, group, &r.ids, how).await;
    let answer = match res {
        Ok(a) => {
            if r.op == Op::Extend {
                if let Some(u) = a.until {
                    hand.extended(&a.applied, u.into());
                }
            } else {
                hand.settled(&r.ids);
            }
            Ok(Settled {
                applied: a.applied,
                not_found: a.not_found,
            })
        }
        Err(e) => Err(service_error(e)),
    };
    let _ = r.reply.send(answer);
}

/// A name unique enough for a consumer of this process.
fn ulid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}
