//! `GET /api/v1/cluster` (viewer): what `wyvern cluster status` shows — the nodes sharing this
//! node's store, who delivers which share of each destination, what waits, and the oldest
//! transaction open on the database. On the embedded store: `{"store": "embedded"}`.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use serde_json::{Value, json};
use wyvern_store::TokenRole;

use super::{ApiError, ApiState, Caller, auth};

pub async fn status(
    State(s): State<ApiState>,
    peer: Caller,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    auth::authorize(
        &s,
        &headers,
        peer.0,
        TokenRole::Viewer,
        "reading the cluster's state",
    )
    .await?;
    let Some(shared) = &s.shared else {
        return Ok(Json(json!({ "store": "embedded" })));
    };
    let c = shared.cluster_status().await?;
    let nodes: Vec<Value> = c
        .nodes
        .iter()
        .map(|n| {
            json!({
                "node": n.node, "version": n.version, "started_at": n.started_at,
                "silent_secs": n.silent_secs, "holds": n.holds,
            })
        })
        .collect();
    let destinations: Vec<Value> = c
        .lanes
        .iter()
        .map(|l| {
            json!({
                "route": l.route, "destination": l.destination, "partitions": l.partitions,
                "held": l.held.iter().map(|(node, n)| json!({ "node": node, "partitions": n }))
                    .collect::<Vec<_>>(),
                "pending": l.pending, "exceptions": l.exceptions,
            })
        })
        .collect();
    let oldest = c
        .oldest_transaction
        .map(|(seconds, who)| json!({ "seconds": seconds, "who": who }));
    Ok(Json(json!({
        "store": "shared",
        "nodes": nodes,
        "destinations": destinations,
        "oldest_transaction": oldest,
    })))
}
