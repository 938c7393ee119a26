//! The WebSocket driver of a sidecar subscription: subscribes with credit, hands
//! messages out through the [`Hand`], carries settlements and their answers, and
//! reconnects (resubscribing, resending unanswered settlements) when the connection
//! or the agent goes away.

use crate::message::{Op, SettleReq};
use crate::subscription::{DriverIo, Hand};
use crate::{Client, Error, ErrorKind, Message, Result, Settled};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as Frame;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The subscription's name on each connection.
const NAME: &str = "sdk";
/// Lease assumed for a message whose frame does not say (an older agent).
const DEFAULT_LEASE: Duration = Duration::from_secs(30);

async fn connect(client: &Client) -> Result<Ws> {
    let url = client.ws_url("/v1/ws");
    let mut req = url.as_str().into_client_request().map_err(|e| {
        Error::new(
            ErrorKind::BadRequest,
            format!("bad WebSocket URL {url}: {e}"),
        )
        .with_source(e)
    })?;
    if let Some(k) = client.api_key() {
        if let Ok(v) = k.parse() {
            req.headers_mut().insert("x-api-key", v);
        }
    }
    let (ws, _) = tokio_tungstenite::connect_async(req).await.map_err(|e| {
        use tokio_tungstenite::tungstenite::Error as W;
        match &e {
            W::Http(resp) => {
                let status = resp.status().as_u16();
                let body = resp
                    .body()
                    .as_deref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                let v: Value = serde_json::from_str(&body).unwrap_or_default();
                Error::from_status(
                    status,
                    v["error"]["code"].as_str().map(String::from),
                    v["error"]["message"].as_str().unwrap_or(&body).to_string(),
                )
            }
            _ => Error::new(ErrorKind::Connect, format!("cannot open {url}: {e}")),
        }
        .with_source(e)
    })?;
    Ok(ws)
}

/// An error frame of the WebSocket API as an [`Error`].
fn frame_error(v: &Value) -> Error {
    let code = v["code"].as_str().unwrap_or("error").to_string();
    let status = match code.as_str() {
        "bad_request" => 400,
        "unauthorized" => 401,
        "forbidden" => 403,
        "not_found" => 404,
        "conflict" | "no_readers" => 409,
        "payload_too_large" => 413,
        "backlog_full" => 429,
        _ => 503,
    };
    Error::from_status(
        status,
        Some(code),
        v["message"].as_str().unwrap_or_default().to_string(),
    )
}

fn lease_until(v: &Value) -> Instant {
    let ms = v["lease_ms"]
        .as_u64()
        .map(Duration::from_millis)
        .unwrap_or(DEFAULT_LEASE);
    Instant::now() + ms
}

enum Ended {
    /// Connection lost: connect again.
    Lost,
    /// Stopped, or the subscription ended for good.
    Done,
}

/// Runs a subscription until it is stopped or ends for good.
pub(crate) async fn drive(
    client: Client,
    channel: String,
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
    let mut ready = Some(ready);
    let mut hand = Hand::new(credit);
    let mut inflight: BTreeMap<u64, SettleReq> = BTreeMap::new();
    let mut unsent: VecDeque<SettleReq> = VecDeque::new();
    let mut next_id: u64 = 1;
    let mut backoff = Duration::from_millis(50);
    loop {
        let conn = tokio::select! {
            _ = stop.changed() => return,
            c = subscribe(&client, &channel, &group, credit) => c,
        };
        let mut ws = match conn {
            Ok(ws) => ws,
            Err(e) => {
                let permanent = !matches!(e.kind, ErrorKind::Connect | ErrorKind::Server);
                if let Some(r) = ready.take() {
                    let _ = r.send(Err(e));
                    return;
                }
                if permanent {
                    let _ = out.send(Err(e));
                    return;
                }
                tokio::select! {
                    _ = stop.changed() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        if let Some(r) = ready.take() {
            let _ = r.send(Ok(()));
        }
        backoff = Duration::from_millis(50);
        // Settlements not answered on the lost connection go again, first.
        let mut again: VecDeque<SettleReq> = std::mem::take(&mut inflight).into_values().collect();
        again.extend(unsent.drain(..));
        unsent = again;
        let ended = 'conn: loop {
            while let Some(r) = unsent.pop_front() {
                let id = next_id;
                next_id += 1;
                let mut f = json!({
                    "op": r.op.name(), "request_id": id, "subscription": NAME, "ids": r.ids,
                });
                if let Some(d) = r.delay {
                    f["delay"] = json!(format!("{}ms", d.as_millis()));
                }
                if let Some(e) = &r.error {
                    f["error"] = json!(e);
                }
                inflight.insert(id, r);
                if ws.send(Frame::text(f.to_string())).await.is_err() {
                    break 'conn Ended::Lost;
                }
            }
            for mut m in hand.hand_out() {
                m.settler = Some(crate::message::Settler::Sub(settle_tx.clone()));
                if out.send(Ok(m)).is_err() {
                    break 'conn Ended::Done;
                }
            }
            let wake = hand
                .next_expiry()
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                _ = stop.changed() => break 'conn Ended::Done,
                r = reqs.recv() => match r {
                    Some(r) => unsent.push_back(r),
                    None => break 'conn Ended::Done,
                },
                _ = tokio::time::sleep_until(wake) => {}
                f = ws.next() => match f {
                    Some(Ok(Frame::Text(t))) => {
                        let v: Value = serde_json::from_str(t.as_str()).unwrap_or_default();
                        if let Some(e) = on_frame(&v, &mut hand, &mut inflight) {
                            let _ = out.send(Err(e));
                            break 'conn Ended::Done;
                        }
                    }
                    Some(Ok(Frame::Close(_))) | None | Some(Err(_)) => break 'conn Ended::Lost,
                    Some(Ok(_)) => {}
                },
            }
        };
        match ended {
            Ended::Done => {
                let _ = ws.close(None).await;
                return;
            }
            Ended::Lost => continue,
        }
    }
}

/// Opens a connection and subscribes on it.
async fn subscribe(client: &Client, channel: &str, group: &str, credit: usize) -> Result<Ws> {
    let mut ws = connect(client).await?;
    let req = json!({
        "op": "subscribe", "request_id": 0, "subscription": NAME,
        "channel": channel, "group": group, "credit": credit,
    });
    ws.send(Frame::text(req.to_string()))
        .await
        .map_err(|e| Error::new(ErrorKind::Connect, format!("subscribe: {e}")).with_source(e))?;
    loop {
        match tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
            Ok(Some(Ok(Frame::Text(t)))) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap_or_default();
                match v["type"].as_str() {
                    Some("subscribed") => return Ok(ws),
                    Some("error") => return Err(frame_error(&v)),
                    _ => {}
                }
            }
            Ok(Some(Ok(_))) => {}
            Ok(_) => {
                return Err(Error::new(
                    ErrorKind::Connect,
                    "connection closed while subscribing",
                ))
            }
            Err(_) => {
                return Err(Error::new(
                    ErrorKind::Connect,
                    "no answer to subscribe within 30s",
                ))
            }
        }
    }
}

/// Applies one frame; an error that ends the subscription is returned.
fn on_frame(v: &Value, hand: &mut Hand, inflight: &mut BTreeMap<u64, SettleReq>) -> Option<Error> {
    match v["type"].as_str() {
        Some("message") => match serde_json::from_value::<Message>(v["message"].clone()) {
            Ok(m) => hand.arrived(m, lease_until(v)),
            Err(e) => return Some(Error::decode(e)),
        },
        Some("acked" | "nacked" | "termed" | "extended") => {
            let r = v["request_id"]
                .as_u64()
                .and_then(|id| inflight.remove(&id))?;
            let settled: Settled = serde_json::from_value(v.clone()).unwrap_or_default();
            if r.op == Op::Extend {
                hand.extended(&settled.applied, lease_until(v));
            } else {
                hand.settled(&r.ids);
            }
            let _ = r.reply.send(Ok(settled));
        }
        Some("error") => match v["request_id"].as_u64() {
            Some(id) => {
                if let Some(r) = inflight.remove(&id) {
                    let _ = r.reply.send(Err(frame_error(v)));
                }
            }
            // Not an answer: the subscription itself ended (its group was deleted).
            None if v["subscription"].is_string() => return Some(frame_error(v)),
            None => {}
        },
        _ => {}
    }
    None
}
