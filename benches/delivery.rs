//! Delivery bench: alerts per second sustained through store + outbox + feed + webhook, and the
//! latency from an alert being recorded to (a) a command-hall WebSocket client and (b) the case
//! system's HTTP receiver, p50/p99. Everything real and local: SQLite file (WAL, synchronous=FULL),
//! the API behind its login guard, a tokio-tungstenite client, an axum receiver that verifies the
//! signature.
//!
//! `cargo bench --bench delivery -- [--alerts N] [--rate PER_SECOND] [--postgres]` (default 2000
//! alerts as fast as the store takes them, then 300 at 50/s for latency); writes
//! `target/bench/delivery.json`, or `delivery-postgres.json` with `--postgres` (the store on a private
//! PostgreSQL on this machine: initdb in a temporary directory, fsync on).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use futures::StreamExt;
use qianliyan::clock::{Clock, SystemClock};
use qianliyan::delivery::webhook::verify;
use qianliyan::delivery::{Delivery, DeliveryConfig, Endpoint, Secret};
use qianliyan::rules::{AlertType, Severity};
use qianliyan::store::{Alert, AlertState, AlertStore};
use serde_json::json;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

const SECRET: &str = "bench-secret";

/// Arrival time (ms since the epoch, fractional) of each alert id.
type Arrivals = Arc<Mutex<HashMap<String, f64>>>;

fn now_ms_f() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

async fn receive(State(r): State<Arrivals>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let sig = headers.get("x-signature").and_then(|h| h.to_str().ok());
    if !verify(&Secret::new(SECRET), &body, sig) {
        return StatusCode::UNAUTHORIZED;
    }
    let Some(key) = headers.get("idempotency-key").and_then(|h| h.to_str().ok()) else {
        return StatusCode::BAD_REQUEST;
    };
    r.lock()
        .unwrap()
        .entry(key.to_owned())
        .or_insert_with(now_ms_f);
    StatusCode::OK
}

fn alert(n: usize) -> Alert {
    let now = SystemTime::now();
    Alert {
        seq: 0,
        id: format!(
            "{}{:06}",
            qianliyan::alert::board::ulid(now)
                .get(..20)
                .unwrap_or("01BENCH"),
            n
        ),
        camera: "cam-0001".into(),
        camera_name: "东门广场".into(),
        rule_id: "gate-in".into(),
        source: qianliyan::rules::AlertSource::Rule,
        alert_type: AlertType::Intrusion,
        type_zh: "区域入侵".into(),
        type_en: "intrusion".into(),
        code: Some("06".into()),
        severity: Severity::High,
        time_ms: qianliyan::time::unix_ms(now),
        score: 0.8,
        boxes: vec![[10.0, 20.0, 30.0, 40.0]],
        track_ids: vec![n as u64],
        message_zh: "有人进入禁区".into(),
        message_en: "person in forbidden zone".into(),
        dispatch: false,
        snapshot: None,
        latency_ms: 0,
        area_code: Some("330102001".into()),
        area_path: vec!["示范县".into(), "城关镇".into()],
        jurisdiction: Some("城关派出所".into()),
        lat: None,
        lon: None,
        state: AlertState::New,
        case_id: None,
        escalated: false,
        incident_id: None,
        snapshot_error: None,
        clip: None,
    }
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

fn main() -> Res<()> {
    let mut alerts = 2000usize;
    let mut rate = 50.0f64;
    let mut postgres = false;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--alerts" => alerts = it.next().ok_or("--alerts N")?.parse()?,
            "--rate" => rate = it.next().ok_or("--rate PER_SECOND")?.parse()?,
            "--postgres" => postgres = true,
            "--bench" => {}
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run(alerts, rate, postgres))
}

async fn run(alerts: usize, rate: f64, postgres: bool) -> Res<()> {
    let dir = tempfile::tempdir()?;
    let arrivals: Arrivals = Arc::default();
    let receiver = axum::Router::new()
        .route("/case", axum::routing::post(receive))
        .with_state(arrivals.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let case_addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, receiver).await });

    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let server = if postgres {
        Some(
            tokio::task::spawn_blocking(qianliyan::db::server::PrivatePostgres::start_durable)
                .await??,
        )
    } else {
        None
    };
    let store = match &server {
        None => AlertStore::open(&dir.path().join("alerts.db"), &dir.path().join("snapshots"))?,
        Some(pg) => {
            let db = qianliyan::db::postgres::PgDb::connect(&pg.url(), 8)?;
            AlertStore::on(Arc::new(db), &dir.path().join("snapshots"))?
        }
    };
    let config = DeliveryConfig {
        case: Some(Endpoint {
            url: format!("http://{case_addr}/case"),
            secret: Secret::new(SECRET),
        }),
        backoff_initial: Duration::from_millis(200),
        backoff_max: Duration::from_secs(2),
        ..DeliveryConfig::default()
    };
    let delivery = Delivery::new(store, config, clock.clone());
    let worker = delivery.worker()?;
    let cancel = tokio_util::sync::CancellationToken::new();
    tokio::spawn(worker.run(delivery.wake.clone(), cancel.clone()));

    // The API with its guard, one operator logged in, a WebSocket client on the feed.
    let password = format!("bench-{}-pw", 6 * 7);
    let users = qianliyan::auth::RawAuth {
        users: vec![qianliyan::auth::RawUser {
            username: "op".into(),
            role: "operator".into(),
            password_env: Some("P".into()),
            ..Default::default()
        }],
        ..Default::default()
    };
    let auth_cfg = qianliyan::auth::config::validate(&users, |_| Some(password.clone()))
        .map_err(|e| format!("{e:?}"))?;
    let auth = qianliyan::auth::Auth::open(&dir.path().join("auth.db"), &auth_cfg, clock)?;
    let app = qianliyan::web::alert_api::router(
        qianliyan::web::alert_api::AlertApi::new(delivery.clone()),
        auth.clone(),
    )
    .merge(qianliyan::web::users_api::router(auth));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let api: SocketAddr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    let login: serde_json::Value = reqwest::Client::new()
        .post(format!("http://{api}/api/auth/login"))
        .json(&json!({"username": "op", "password": password}))
        .send()
        .await?
        .json()
        .await?;
    let token = login["token"].as_str().ok_or("login failed")?.to_owned();
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        format!("ws://{api}/api/alerts/feed"),
    )?;
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await?;
    let ws_arrivals: Arrivals = Arc::default();
    let wa = ws_arrivals.clone();
    tokio::spawn(async move {
        while let Some(Ok(msg)) = ws.next().await {
            if let tokio_tungstenite::tungstenite::Message::Text(t) = msg {
                let at = now_ms_f();
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&t)
                    && v["kind"] == "alert"
                    && let Some(id) = v["id"].as_str()
                {
                    wa.lock().unwrap().entry(id.to_owned()).or_insert(at);
                }
            }
        }
    });

    // Phase 1: throughput. Insert as fast as the store takes them; wait until all are delivered.
    let t0 = Instant::now();
    let d = delivery.clone();
    let insert_s = tokio::task::spawn_blocking(move || -> Result<f64, String> {
        let t = Instant::now();
        for n in 0..alerts {
            d.insert(&alert(n)).map_err(|e| e.to_string())?;
        }
        Ok(t.elapsed().as_secs_f64())
    })
    .await??;
    while arrivals.lock().unwrap().len() < alerts {
        if t0.elapsed() > Duration::from_secs(300) {
            return Err("deliveries did not finish in 300 s".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let total_s = t0.elapsed().as_secs_f64();
    let stored_per_s = alerts as f64 / insert_s;
    let delivered_per_s = alerts as f64 / total_s;

    // Phase 2: latency at a steady rate (what a county sees: bursts of tens per second at most).
    arrivals.lock().unwrap().clear();
    ws_arrivals.lock().unwrap().clear();
    let n2 = 300usize;
    let mut sent: Vec<(String, f64)> = Vec::with_capacity(n2);
    let period = Duration::from_secs_f64(1.0 / rate.max(0.1));
    let mut next = Instant::now();
    for n in 0..n2 {
        tokio::time::sleep_until(next.into()).await;
        next += period;
        let d = delivery.clone();
        let a = alert(alerts + n);
        let at = now_ms_f();
        let id = tokio::task::spawn_blocking(move || d.insert(&a).map(|s| s.id))
            .await?
            .map_err(|e| e.to_string())?;
        sent.push((id, at));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while (arrivals.lock().unwrap().len() < n2 || ws_arrivals.lock().unwrap().len() < n2)
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let lat = |m: &Arrivals| -> Vec<f64> {
        let m = m.lock().unwrap();
        sent.iter()
            .filter_map(|(id, at)| m.get(id).map(|got| got - at))
            .collect()
    };
    let (mut ws_lat, mut hook_lat) = (lat(&ws_arrivals), lat(&arrivals));
    cancel.cancel();
    let report = json!({
        "bench": "delivery",
        "store": if postgres { "postgresql" } else { "sqlite" },
        "throughput": {
            "alerts": alerts,
            "stored_per_s": stored_per_s,
            "delivered_per_s": delivered_per_s,
            "store_seconds": insert_s,
            "until_all_delivered_seconds": total_s,
        },
        "latency": {
            "alerts": n2,
            "rate_per_s": rate,
            "websocket_received": ws_lat.len(),
            "webhook_received": hook_lat.len(),
            "alert_to_websocket_ms": {"p50": percentile(&mut ws_lat, 0.5), "p99": percentile(&mut ws_lat, 0.99)},
            "alert_to_webhook_ms": {"p50": percentile(&mut hook_lat, 0.5), "p99": percentile(&mut hook_lat, 0.99)},
        },
        "machine": {"cores": std::thread::available_parallelism().map_or(0, |n| n.get())},
    });
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(
        out.join(if postgres {
            "delivery-postgres.json"
        } else {
            "delivery.json"
        }),
        serde_json::to_string_pretty(&report)?,
    )?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    println!(
        "| stored/s | delivered/s (store→outbox→webhook) | alert→WS p50/p99 ms | alert→webhook p50/p99 ms |\n|---|---|---|---|\n| {:.0} | {:.0} | {:.1} / {:.1} | {:.1} / {:.1} |",
        stored_per_s,
        delivered_per_s,
        report["latency"]["alert_to_websocket_ms"]["p50"]
            .as_f64()
            .unwrap_or(f64::NAN),
        report["latency"]["alert_to_websocket_ms"]["p99"]
            .as_f64()
            .unwrap_or(f64::NAN),
        report["latency"]["alert_to_webhook_ms"]["p50"]
            .as_f64()
            .unwrap_or(f64::NAN),
        report["latency"]["alert_to_webhook_ms"]["p99"]
            .as_f64()
            .unwrap_or(f64::NAN),
    );
    if ws_lat.len() < n2 || hook_lat.len() < n2 {
        return Err(format!(
            "lost: {} of {n2} on the WebSocket, {} at the webhook",
            n2 - ws_lat.len(),
            n2 - hook_lat.len()
        )
        .into());
    }
    Ok(())
}
