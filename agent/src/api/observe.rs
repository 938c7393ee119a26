//! Observability: `/metrics`, `/v1/stats` (with an optional time series) and the
//! agent's resources. Thin: the series comes from `stats::buckets`, the checks
//! from `stats::query`, the rows from `store::samples`.

use super::error::from_rejection;
use super::{ApiError, AppState};
use crate::metrics::scrape::Snapshot;
use crate::stats::buckets::{bucketize, totals, Bucket, Plan};
use crate::stats::{self, query, Sample, COUNTERS};
use crate::store::{self, now_ms};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

fn rfc3339(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

fn span(ms: i64) -> String {
    humantime::format_duration(Duration::from_millis(ms.max(0) as u64)).to_string()
}

/// `GET /metrics`: Prometheus text format 0.0.4.
pub async fn metrics(State(s): State<Arc<AppState>>) -> Response {
    refresh(&s).await;
    let streams = s.store.reads.read(store::outbox::stream_gauges).await;
    let st = s.stats.clone();
    let resources = tokio::task::spawn_blocking(move || st.read_resources(false))
        .await
        .unwrap_or_default();
    let snapshot = Snapshot {
        streams: streams.unwrap_or_default(),
        omitted: 0,
        now_ms: now_ms(),
        peers: s
            .discovery
            .peers()
            .into_iter()
            .map(|p| (p.node_id, p.online))
            .collect(),
        resources,
    };
    s.metrics
        .scrape
        .set(snapshot, s.stats.config().max_stream_series);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(),
    )
        .into_response()
}

async fn refresh(s: &AppState) {
    if let Ok((b, u)) = s
        .store
        .reads
        .read(|c| {
            Ok((
                store::outbox::backlogs(c)?,
                store::outbox::unrouted_count(c)?,
            ))
        })
        .await
    {
        s.metrics
            .pending_messages
            .set(b.iter().map(|(_, n)| *n as i64).sum());
        s.metrics.unrouted_messages.set(u as i64);
    }
    s.metrics
        .nats_connected
        .set(s.transport.is_connected() as i64);
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsQuery {
    period: Option<String>,
    granularity: Option<String>,
}

/// `GET /v1/stats`: the counters; with `?period=` (and optional `granularity=`)
/// also `series`, their history in buckets.
pub async fn stats(
    State(s): State<Arc<AppState>>,
    q: Result<Query<StatsQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q.map_err(|e| from_rejection(e.status(), e.body_text()))?;
    let series = query::series(
        q.period.as_deref(),
        q.granularity.as_deref(),
        &s.stats.limits(),
    )
    .map_err(ApiError::bad_request)?;
    refresh(&s).await;
    let mut v = s.metrics.stats();
    v["node_id"] = json!(s.discovery.me());
    if let Some(sq) = series {
        v["series"] = series_json(&s, sq).await?;
    }
    Ok(Json(v))
}

async fn series_json(s: &AppState, q: query::SeriesQuery) -> Result<Value, ApiError> {
    let now = now_ms();
    let plan = Plan::new(now, q.period, q.granularity);
    let rows = s
        .store
        .reads
        .read(move |c| store::samples::range(c, plan.start, plan.end()))
        .await?;
    let samples: Vec<Sample> = rows.iter().map(Sample::from_row).collect();
    let buckets = bucketize(&plan, COUNTERS, &samples);
    let restarts = samples
        .windows(2)
        .filter(|w| w[0].boot != w[1].boot)
        .count();
    Ok(json!({
        "period": span(q.period),
        "granularity": span(q.granularity),
        "period_seconds": q.period as f64 / 1000.0,
        "granularity_seconds": q.granularity as f64 / 1000.0,
        "sample_interval_seconds": s.stats.config().sample_interval.as_secs_f64(),
        "start": rfc3339(plan.start),
        "end": rfc3339(plan.end()),
        "now": rfc3339(now),
        "counters": COUNTERS,
        "samples": samples.len(),
        "restarts": restarts,
        "totals": totals(&buckets),
        "buckets": buckets.iter().map(bucket_json).collect::<Vec<_>>(),
    }))
}

fn bucket_json(b: &Bucket) -> Value {
    let receivers: Map<String, Value> = b
        .receivers
        .iter()
        .map(|(node, r)| {
            (
                node.clone(),
                json!({
                    "backlog": r.backlog,
                    "backlog_max": r.backlog_max,
                    "oldest_age_seconds": r.oldest_age_ms_max as f64 / 1000.0,
                }),
            )
        })
        .collect();
    json!({
        "start": rfc3339(b.start),
        "start_ms": b.start,
        "samples": b.samples,
        "counters": b.counters,
        "backlog": b.backlog,
        "backlog_max": b.backlog_max,
        "unrouted": b.unrouted,
        "receivers": receivers,
    })
}

fn with_time(at: i64, r: &stats::resources::Resources) -> Value {
    let mut v = serde_json::to_value(r).unwrap_or_else(|_| json!({}));
    v["at"] = json!(rfc3339(at));
    v["at_ms"] = json!(at);
    v
}

/// `GET /v1/resources/current`: read now.
pub async fn resources_current(State(s): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let st = s.stats.clone();
    let r = tokio::task::spawn_blocking(move || st.read_resources(false))
        .await
        .map_err(|e| ApiError::unavailable(format!("cannot read resources: {e}")))?;
    let mut v = with_time(now_ms(), &r);
    v["node_id"] = json!(s.discovery.me());
    Ok(Json(v))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    limit: Option<String>,
}

/// `GET /v1/resources/history?limit=N`: the newest N samples of the ring, oldest
/// first.
pub async fn resources_history(
    State(s): State<Arc<AppState>>,
    q: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q.map_err(|e| from_rejection(e.status(), e.body_text()))?;
    let limit = query::history_limit(q.limit.as_deref()).map_err(ApiError::bad_request)?;
    let rows = s
        .store
        .reads
        .read(move |c| store::samples::latest(c, limit))
        .await?;
    let c = s.stats.config();
    let samples: Vec<Value> = rows
        .iter()
        .map(|row| with_time(row.at, &stats::resources_of(row)))
        .collect();
    Ok(Json(json!({
        "node_id": s.discovery.me(),
        "limit": limit,
        "sample_interval_seconds": c.sample_interval.as_secs_f64(),
        "retention_seconds": c.retention.as_secs_f64(),
        "max_samples": c.max_samples(),
        "samples": samples,
    })))
}
