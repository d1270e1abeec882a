//! GB/T 28181 devices for engineers: which devices are registered, from where, whether they keep
//! alive, and what their catalogs hold. In a cluster each node knows the devices registered to it:
//! the list asks every other live node too (with the caller's credentials) and each device says
//! its `node`; one device, and a catalog query, go to the node that has it.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use super::{ApiError, AppState};
use crate::gb28181::Gb28181;

fn stage(st: &AppState) -> Result<&Gb28181, ApiError> {
    st.gb28181.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "GB/T 28181 is not configured on this node: add a [gb28181] section",
        )
    })
}

fn unknown(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("GB/T 28181 device {id:?} has not registered since this node started"),
    )
}

/// A node that has not beaten for this long is not asked.
const LIVE_WITHIN_MS: i64 = 30_000;

/// `?local=1`: this node's devices only (what the other nodes ask each other).
#[derive(Debug, Default, serde::Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    local: Option<u8>,
}

/// The other live nodes' answers to `method path`, each `(node, status and JSON body, or why
/// none)`, asked at once with the caller's credentials (sessions and tokens are in the shared
/// database).
async fn ask_others(
    cluster: &super::ClusterView,
    method: reqwest::Method,
    path: &str,
    headers: &HeaderMap,
) -> Vec<(String, Result<(u16, Value), String>)> {
    let views = cluster.views.clone();
    let me = cluster.node.clone();
    let nodes = match tokio::task::spawn_blocking(move || views.other_nodes(&me, LIVE_WITHIN_MS))
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()))
    {
        Ok(nodes) => nodes,
        Err(e) => return vec![(String::new(), Err(format!("the nodes cannot be read: {e}")))],
    };
    let asks = nodes.into_iter().map(|(node, address)| {
        let (method, http) = (method.clone(), cluster.http.clone());
        async move {
            let Some(address) = address else {
                return (
                    node,
                    Err("its address is unknown ([cluster] advertise_url)".into()),
                );
            };
            let mut req = http.request(method, format!("{address}{path}"));
            for name in [
                axum::http::header::AUTHORIZATION,
                axum::http::header::COOKIE,
            ] {
                if let Some(v) = headers.get(&name) {
                    req = req.header(name.as_str(), v.as_bytes());
                }
            }
            let answer = match req.send().await {
                Ok(a) => a,
                Err(e) => return (node, Err(format!("no answer: {e}"))),
            };
            let status = answer.status().as_u16();
            let body = answer.json::<Value>().await.unwrap_or(Value::Null);
            (node, Ok((status, body)))
        }
    });
    futures::future::join_all(asks).await
}

/// `GET /api/gb28181/devices`: this node's devices, and in a cluster every other live node's
/// (unless `?local=1`), each with its `node`; a device listed by two nodes (it moved) once, as
/// the one that heard from it last has it. Nodes that did not answer are named in
/// `unanswered`.
pub async fn list(
    State(st): State<Arc<AppState>>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let gb = stage(&st)?;
    let local = q.local.unwrap_or(0) != 0;
    let me = st.cluster.as_ref().map(|c| c.node.clone());
    let mut items: Vec<Value> = gb
        .devices()
        .into_iter()
        .map(|d| {
            let mut v = serde_json::to_value(d).unwrap_or_default();
            if let Some(me) = &me {
                v["node"] = json!(me);
            }
            v
        })
        .collect();
    let mut unanswered = Vec::new();
    if let (Some(cluster), false) = (&st.cluster, local) {
        let path = "/api/gb28181/devices?local=1";
        for (node, answer) in ask_others(cluster, reqwest::Method::GET, path, &headers).await {
            match answer {
                Ok((200, body)) => {
                    for mut d in body["items"].as_array().cloned().unwrap_or_default() {
                        d["node"] = json!(node);
                        items.push(d);
                    }
                }
                Ok((status, body)) => unanswered.push(json!({
                    "node": node, "error": format!("{status}: {}", body["error"].as_str().unwrap_or(""))
                })),
                Err(e) => unanswered.push(json!({ "node": node, "error": e })),
            }
        }
        // Heard from last: the newest keepalive, else registration.
        let heard = |d: &Value| {
            d["keepalive_ms"]
                .as_i64()
                .max(d["registered_ms"].as_i64())
                .unwrap_or(0)
        };
        items.sort_by(|a, b| {
            a["id"]
                .as_str()
                .cmp(&b["id"].as_str())
                .then(heard(b).cmp(&heard(a)))
        });
        items.dedup_by(|later, first| later["id"] == first["id"]);
    }
    let online = items.iter().filter(|d| d["state"] == "online").count();
    Ok(Json(json!({
        "sip_port": gb.local_addr().port(),
        "devices": items.len(),
        "online": online,
        "items": items,
        "unanswered": unanswered,
    })))
}

/// Whether a request came from another node (`?local=1`): answered from this node only, never
/// passed on again.
fn forwarded(query: &Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>) -> bool {
    query.as_ref().is_ok_and(|q| q.local.unwrap_or(0) != 0)
}

/// `GET /api/gb28181/devices/{id}`: from this node while the device is online here, else (in a
/// cluster) from the node that has it online, else what this node last knew.
pub async fn one(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let gb = stage(&st)?;
    let here = gb.device(&id).map(|(device, catalog)| {
        let mut v = serde_json::to_value(device).unwrap_or_default();
        v["catalog"] = serde_json::to_value(catalog).unwrap_or_default();
        if let Some(c) = &st.cluster {
            v["node"] = json!(c.node);
        }
        v
    });
    if here.as_ref().is_some_and(|v| v["state"] == "online") || forwarded(&query) {
        return here.map(Json).ok_or_else(|| unknown(&id));
    }
    let path = format!("/api/gb28181/devices/{id}?local=1");
    match from_other(&st, reqwest::Method::GET, &path, &headers, &id).await {
        Ok((node, mut v)) if v["state"] == "online" || here.is_none() => {
            v["node"] = json!(node);
            Ok(Json(v))
        }
        other => here.map(Json).ok_or_else(|| match other {
            Err(e) => e,
            Ok(_) => unknown(&id),
        }),
    }
}

/// The answer of the other node that knows device `id` (404 when none does).
async fn from_other(
    st: &AppState,
    method: reqwest::Method,
    path: &str,
    headers: &HeaderMap,
    id: &str,
) -> Result<(String, Value), ApiError> {
    let Some(cluster) = &st.cluster else {
        return Err(unknown(id));
    };
    // Only a device id is passed on (20 digits: nothing that could make another path).
    if !crate::gb28181::config::valid_gb_id(id) {
        return Err(unknown(id));
    }
    let answers = ask_others(cluster, method, path, headers).await;
    // The node that has it (2xx), else one whose answer is not "unknown here" (a 404 is what the
    // others say).
    let found = answers.iter().any(|(_, a)| matches!(a, Ok((200..=299, _))));
    answers
        .into_iter()
        .find_map(|(node, a)| match a {
            Ok((status, body)) if (200..=299).contains(&status) || (!found && status != 404) => {
                Some((node, status, body))
            }
            _ => None,
        })
        .map_or_else(
            || Err(unknown(id)),
            |(node, status, body)| match status {
                200..=299 => Ok((node, body)),
                _ => Err(ApiError::new(
                    StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
                    format!(
                        "node {node}: {}",
                        body["error"].as_str().unwrap_or("refused")
                    ),
                )),
            },
        )
}

/// `POST /api/gb28181/devices/{id}/catalog`: ask the device for its catalog again (through the
/// node that has it, in a cluster).
pub async fn query_catalog(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let gb = stage(&st)?;
    if gb.device(&id).is_none() {
        if forwarded(&query) {
            return Err(unknown(&id));
        }
        let path = format!("/api/gb28181/devices/{id}/catalog?local=1");
        return from_other(&st, reqwest::Method::POST, &path, &headers, &id)
            .await
            .map(|_| StatusCode::ACCEPTED);
    }
    gb.query_catalog(&id).await.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            format!("GB/T 28181 device {id}: the catalog query failed: {e}"),
        )
    })?;
    Ok(StatusCode::ACCEPTED)
}
