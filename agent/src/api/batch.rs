//! `POST /v1/channels/{ch}/messages:batch`: many messages in one request, validated
//! one by one, stored in one job, and handed to the streams once per receiver.

use super::error::from_rejection;
use super::messages::{channel, ttl_of, Draft, PublishQuery};
use super::{ApiError, AppState};
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
    crate::service::check_writer(&state, &channel)?;
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
    // Every item is validated, then all valid ones are stored in one job.
    let drafts: Vec<Draft> = items
        .into_iter()
        .enumerate()
        .map(|(i, item)| Draft {
            payload: item.get().as_bytes().to_vec(),
            content_type: "application/json".into(),
            headers: Vec::new(),
            ttl,
            idempotency_key: batch_key.as_ref().map(|k| format!("{k}/{i}")),
        })
        .collect();
    let outcomes = state.publish_batch(&channel, drafts).await?;
    let accepted = outcomes.iter().filter(|r| r.is_ok()).count();
    let results: Vec<serde_json::Value> = outcomes
        .into_iter()
        .map(|r| match r {
            Ok(p) => {
                let mut item = json!({"status": p.status().as_u16(), "id": p.id, "receivers": p.receivers});
                if p.duplicate {
                    item["duplicate"] = json!(true);
                }
                item
            }
            Err(e) => json!({"status": e.status.as_u16(), "error": {"code": e.code, "message": e.message}}),
        })
        .collect();
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
