//! `POST /v1/channels/{ch}/messages:batch`: many messages in one request, validated
//! one by one, stored in one job, and handed to the streams once per receiver.

use super::error::from_rejection;
use super::messages::{
    channel, check_routable, check_writer, finish_publish, prepare, readers, ttl_of, Draft,
    Enqueue, PublishQuery,
};
use super::{ApiError, AppState};
use crate::names::NodeId;
use crate::store::{self, NewMessage, PublishOutcome};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use serde_json::value::RawValue;
use std::sync::Arc;

/// `POST /v1/channels/{ch}/messages:batch`: a JSON array or NDJSON of payloads.
pub async fn publish_batch(
    State(state): State<Arc<AppState>>,
    Path(ch): Path<String>,
    query: Result<Query<PublishQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    // With an Idempotency-Key, item i is stored under "{key}/{i}": a retried batch
    // stores each item once and answers with the same ids.
    let batch_key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let channel = channel(&ch)?;
    let Query(q) = query.map_err(|e| from_rejection(e.status(), e.body_text()))?;
    let body = body.map_err(|e| from_rejection(e.status(), e.body_text()))?;
    check_writer(&state, &channel)?;
    let ttl = ttl_of(&state, &channel, &q.ttl)?;
    // Items are kept as the bytes the client sent (checked to be JSON, never turned
    // into a tree of values).
    let items: Vec<&RawValue> = match serde_json::from_slice::<Vec<&RawValue>>(&body) {
        Ok(items) => items,
        _ => {
            let text = std::str::from_utf8(&body)
                .map_err(|_| ApiError::bad_request("batch body must be a JSON array or NDJSON"))?;
            let mut items = Vec::new();
            for (i, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                items.push(
                    serde_json::from_str::<&RawValue>(line).map_err(|e| {
                        ApiError::bad_request(format!("NDJSON line {}: {e}", i + 1))
                    })?,
                );
            }
            items
        }
    };
    if items.is_empty() {
        return Err(ApiError::bad_request("batch is empty"));
    }
    if items.len() > 10_000 {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "batch_too_large",
            format!("batch of {} items exceeds the limit of 10000", items.len()),
        ));
    }
    // Validate every item, then store all valid ones in one job (one transaction).
    let mut prepared: Vec<Result<NewMessage, ApiError>> = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let payload = item.get().as_bytes().to_vec();
        prepared.push(prepare(
            &state,
            &channel,
            Draft {
                payload,
                content_type: "application/json".into(),
                headers: Vec::new(),
                ttl,
                idempotency_key: batch_key.as_ref().map(|k| format!("{k}/{i}")),
            },
        ));
    }
    let msgs: Vec<Arc<NewMessage>> = prepared
        .iter()
        .filter_map(|p| p.as_ref().ok().cloned().map(Arc::new))
        .collect();
    let mut stored = msgs.clone().into_iter();
    let receivers = readers(&state, &channel);
    let policy = state.domains.effective(&channel);
    check_routable(&policy, &channel, &receivers)?;
    let (limit, overflow) = (policy.max_messages_per_receiver, policy.overflow);
    let started = std::time::Instant::now();
    let outcomes = state
        .store
        .writer
        .run(move |c| store::outbox::publish_batch(c, &msgs, &receivers, limit, overflow))
        .await?;
    let committed = outcomes
        .iter()
        .filter(|o| matches!(o, PublishOutcome::Accepted { .. }))
        .count();
    state
        .metrics
        .publish_commit
        .observe_n(started.elapsed(), committed as u64);
    let mut outcomes = outcomes.into_iter();
    let mut results = Vec::with_capacity(prepared.len());
    let mut accepted = 0usize;
    let mut enqueue = Enqueue::new();
    let mut dropped: std::collections::HashSet<(String, u64)> = Default::default();
    for p in prepared {
        let r = match p {
            Ok(_) => match (outcomes.next(), stored.next()) {
                (Some(outcome), Some(msg)) => {
                    if let PublishOutcome::Accepted { dropped: d, .. } = &outcome {
                        dropped.extend(d.iter().map(|(r, _, seq)| (r.clone(), *seq)));
                    }
                    finish_publish(&state, &channel, outcome, msg, Some(&mut enqueue)).await
                }
                _ => Err(ApiError::unavailable(
                    "store returned fewer results than items",
                )),
            },
            Err(e) => Err(e),
        };
        match r {
            Ok((status, v)) => {
                accepted += 1;
                let mut item = json!({"status": status.as_u16(), "id": v["id"], "receivers": v["receivers"]});
                if v["duplicate"] == true {
                    item["duplicate"] = json!(true);
                }
                results.push(item);
            }
            Err(e) => results.push(
                json!({"status": e.status.as_u16(), "error": {"code": e.code, "message": e.message}}),
            ),
        }
    }
    // A later item of the batch may have dropped an earlier one (drop_oldest): its
    // stream must not send it from memory.
    if !dropped.is_empty() {
        for (r, items) in enqueue.iter_mut() {
            items.retain(|(seq, _)| !dropped.contains(&(r.clone(), *seq)));
        }
    }
    for (r, items) in enqueue {
        if let Ok(r) = NodeId::new(r) {
            state
                .delivery
                .enqueued_many(r, channel.clone(), items)
                .await;
        }
    }
    let status = if accepted == results.len() {
        StatusCode::CREATED
    } else {
        StatusCode::MULTI_STATUS
    };
    Ok((
        status,
        Json(json!({"accepted": accepted, "results": results})),
    )
        .into_response())
}
