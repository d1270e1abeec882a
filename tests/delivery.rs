//! Alert store + delivery with real peers: an axum HTTP receiver that dedups by `Idempotency-Key`
//! and can be switched to fail, a tokio-tungstenite WebSocket client, a temp SQLite file.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use futures::StreamExt;
use qianliyan::clock::{Clock, ManualClock};
use qianliyan::delivery::webhook::{sign, verify};
use qianliyan::delivery::{Delivery, DeliveryConfig, Endpoint, Secret};
use qianliyan::rules::{AlertType, Severity};
use qianliyan::store::{Alert, AlertState, AlertStore, OutboxState};
use qianliyan::web::alert_api::{self, AlertApi};
use tokio_tungstenite::tungstenite::Message;

const SECRET: &str = "s3cret-shared";

/// The case system: verifies signatures, processes each idempotency key once, counts duplicates.
#[derive(Default)]
struct Receiver {
    /// 0 = answer 200, 1 = answer 500.
    failing: AtomicUsize,
    /// Delay before answering (after processing), ms.
    delay_ms: AtomicU64,
    /// Process at the end of the delay, just before answering (a receiver that commits, then
    /// answers), instead of at its start.
    process_late: std::sync::atomic::AtomicBool,
    /// Extra delay per request already seen, ms: concurrent requests then finish one by one.
    stagger_ms: AtomicU64,
    processed: Mutex<Vec<String>>,
    deliveries: Mutex<HashMap<String, usize>>,
    bad_signatures: AtomicUsize,
    requests: AtomicUsize,
    /// The `clip_ready` messages processed.
    clips: Mutex<Vec<serde_json::Value>>,
}

impl Receiver {
    fn processed(&self) -> Vec<String> {
        self.processed.lock().unwrap().clone()
    }
    fn duplicates(&self) -> usize {
        self.deliveries
            .lock()
            .unwrap()
            .values()
            .map(|n| n - 1)
            .sum()
    }
}

async fn receive(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let seen = r.requests.fetch_add(1, Ordering::SeqCst) as u64;
    let sig = headers.get("x-signature").and_then(|h| h.to_str().ok());
    if !verify(&Secret::new(SECRET), &body, sig)
        || headers.get("content-type").and_then(|h| h.to_str().ok()) != Some("application/json")
    {
        r.bad_signatures.fetch_add(1, Ordering::SeqCst);
        return StatusCode::UNAUTHORIZED;
    }
    if r.failing.load(Ordering::SeqCst) == 1 {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    let key = headers["idempotency-key"].to_str().unwrap().to_owned();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let message = headers.get("x-message").and_then(|h| h.to_str().ok());
    if message == Some("clip_ready") {
        assert_eq!(body["message"], "clip_ready");
        assert_eq!(format!("{}:clip", body["alert_id"].as_str().unwrap()), key);
    } else {
        assert_eq!(message, Some("alert"));
        assert_eq!(body["id"], key.as_str());
    }
    let delay = r.delay_ms.load(Ordering::SeqCst) + seen * r.stagger_ms.load(Ordering::SeqCst);
    let late = r.process_late.load(Ordering::SeqCst);
    if late && delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    {
        let mut d = r.deliveries.lock().unwrap();
        let n = d.entry(key.clone()).or_insert(0);
        *n += 1;
        if *n == 1 {
            r.processed.lock().unwrap().push(key);
            if message == Some("clip_ready") {
                r.clips.lock().unwrap().push(body);
            }
        }
    }
    if !late && delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    StatusCode::OK
}

async fn serve_on(listener: tokio::net::TcpListener, app: Router) -> SocketAddr {
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    addr
}

async fn start_receiver(addr: Option<SocketAddr>) -> (Arc<Receiver>, SocketAddr) {
    let r = Arc::new(Receiver::default());
    let app = Router::new()
        .route("/case", post(receive))
        .route("/station", post(receive))
        .with_state(r.clone());
    let listener =
        tokio::net::TcpListener::bind(addr.unwrap_or_else(|| "127.0.0.1:0".parse().unwrap()))
            .await
            .unwrap();
    (r.clone(), serve_on(listener, app).await)
}

fn config(addr: SocketAddr, max_age: Duration) -> DeliveryConfig {
    DeliveryConfig {
        case: Some(Endpoint {
            url: format!("http://{addr}/case"),
            secret: Secret::new(SECRET),
        }),
        stations: [("east".to_owned(), vec![format!("http://{addr}/station")])].into(),
        stations_secret: Some(Secret::new(SECRET)),
        max_age,
        backoff_initial: Duration::from_millis(500),
        backoff_max: Duration::from_secs(5),
        request_timeout: Duration::from_secs(5),
        escalate_after: Duration::from_secs(60),
        ..DeliveryConfig::default()
    }
}

fn alert(dispatch: bool) -> Alert {
    // Distinct milliseconds keep the ULIDs in insertion order.
    std::thread::sleep(Duration::from_millis(2));
    let now = SystemTime::now();
    Alert {
        seq: 0,
        id: qianliyan::alert::board::ulid(now),
        camera: "cam-7".into(),
        camera_name: "东门广场".into(),
        rule_id: "zone-a".into(),
        source: qianliyan::rules::AlertSource::Rule,
        alert_type: AlertType::Intrusion,
        type_zh: "区域入侵".into(),
        type_en: "intrusion".into(),
        code: Some("06".into()),
        severity: Severity::High,
        time_ms: qianliyan::time::unix_ms(now),
        score: 0.87,
        boxes: vec![[10.0, 20.0, 30.0, 40.0]],
        track_ids: vec![3],
        message_zh: "有人进入禁区".into(),
        message_en: "person in forbidden zone".into(),
        dispatch,
        snapshot: None,
        latency_ms: 40,
        area_code: Some("330102001".into()),
        area_path: vec!["上城区".into()],
        jurisdiction: Some("east".into()),
        lat: Some(30.25),
        lon: Some(120.17),
        state: AlertState::New,
        case_id: None,
        escalated: false,
        incident_id: None,
        snapshot_error: None,
        clip: None,
    }
}

struct Fixture {
    dir: tempfile::TempDir,
    clock: ManualClock,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            dir: tempfile::tempdir().unwrap(),
            clock: ManualClock::default(),
        }
    }
    fn delivery(&self, cfg: DeliveryConfig) -> Arc<Delivery> {
        let store = AlertStore::open(
            &self.dir.path().join("alerts.db"),
            &self.dir.path().join("snapshots"),
        )
        .unwrap();
        Delivery::new(store, cfg, Arc::new(self.clock.clone()) as Arc<dyn Clock>)
    }
}

/// The alert API behind its real guard, with one operator (display name 王警官) logged in: the
/// answer is the address, a client that sends the operator's token, and the token.
async fn start_api(
    d: &Arc<Delivery>,
    dir: &std::path::Path,
) -> (SocketAddr, reqwest::Client, String) {
    start_api_as(d, dir, "operator").await
}

/// [`start_api`] with the one user in `role`.
async fn start_api_as(
    d: &Arc<Delivery>,
    dir: &std::path::Path,
    role: &str,
) -> (SocketAddr, reqwest::Client, String) {
    let password = format!("op-{}-pass", 7 * 6);
    let users = qianliyan::auth::RawAuth {
        users: vec![qianliyan::auth::RawUser {
            username: "wang".into(),
            display_name: Some("王警官".into()),
            role: role.into(),
            area: (role == "dispatcher").then(|| "上城区".to_owned()),
            password_env: Some("OP_PASSWORD".into()),
            ..Default::default()
        }],
        ..Default::default()
    };
    let cfg =
        qianliyan::auth::config::validate(&users, |_| Some(password.clone())).expect("auth config");
    let auth =
        qianliyan::auth::Auth::open(&dir.join("auth.db"), &cfg, d.clock.clone()).expect("auth db");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = alert_api::router(AlertApi::new(d.clone()), auth.clone())
        .merge(qianliyan::web::users_api::router(auth));
    let addr = serve_on(listener, app).await;
    let login: serde_json::Value = reqwest::Client::new()
        .post(format!("http://{addr}/api/auth/login"))
        .json(&serde_json::json!({"username": "wang", "password": password}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["token"].as_str().expect("logged in").to_owned();
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    let client = reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap();
    (addr, client, token)
}

/// Opens the feed WebSocket with the operator's token.
async fn ws_connect(
    url: String,
    token: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    tokio_tungstenite::connect_async(req)
        .await
        .expect("feed connects")
        .0
}

fn states(d: &Delivery) -> Vec<OutboxState> {
    d.store
        .outbox(None, 1000)
        .unwrap()
        .into_iter()
        .map(|r| r.state)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_case_system_down_then_back_every_alert_arrives_once() {
    let fx = Fixture::new();
    // A free port with nothing listening: connection refused.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let d = fx.delivery(config(addr, Duration::from_secs(3600)));
    let worker = d.worker().unwrap();
    let ids: Vec<String> = (0..6)
        .map(|_| d.insert(&alert(false)).unwrap().id)
        .collect();

    let r = worker.run_once().await.unwrap();
    assert_eq!((r.delivered, r.retrying), (0, 6), "connection refused");
    // Not due yet: nothing is attempted before the backoff passes.
    assert_eq!(worker.run_once().await.unwrap().retrying, 0);

    let (rx, _) = start_receiver(Some(addr)).await;
    rx.failing.store(1, Ordering::SeqCst);
    fx.clock.advance(Duration::from_secs(10));
    let r = worker.run_once().await.unwrap();
    assert_eq!((r.delivered, r.retrying), (0, 6), "HTTP 500");
    let row = &d.store.outbox(None, 10).unwrap()[0];
    assert_eq!(row.attempts, 2);
    assert_eq!(row.last_error.as_deref(), Some("HTTP 500"));

    rx.failing.store(0, Ordering::SeqCst);
    fx.clock.advance(Duration::from_secs(10));
    assert_eq!(worker.run_once().await.unwrap().delivered, 6);
    let (mut got, mut want) = (rx.processed(), ids.clone());
    got.sort();
    want.sort();
    assert_eq!(
        got, want,
        "every alert, once (delivered concurrently, so in any order)"
    );
    assert_eq!(rx.duplicates(), 0);
    assert_eq!(rx.bad_signatures.load(Ordering::SeqCst), 0);
    assert!(states(&d).iter().all(|s| *s == OutboxState::Delivered));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn b_reopen_mid_delivery_loses_nothing_and_processes_nothing_twice() {
    let fx = Fixture::new();
    let (rx, addr) = start_receiver(None).await;
    rx.delay_ms.store(400, Ordering::SeqCst);
    let d = fx.delivery(config(addr, Duration::from_secs(3600)));
    // Half ask for dispatch: case + station rows.
    let ids: Vec<String> = (0..40)
        .map(|i| d.insert(&alert(i % 2 == 0)).unwrap().id)
        .collect();
    let total_rows = d.store.outbox(None, 1000).unwrap().len();
    assert_eq!(total_rows, 60);

    let cancel = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(d.worker().unwrap().run(d.wake.clone(), cancel.clone()));
    // Wait until the receiver has processed some, while their 200s are still on the way.
    tokio::time::timeout(Duration::from_secs(10), async {
        while rx.processed().is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap();
    task.abort();
    let _ = task.await;
    drop(d);
    let in_flight = rx.processed().len();
    assert!(in_flight > 0);

    rx.delay_ms.store(0, Ordering::SeqCst);
    let d = fx.delivery(config(addr, Duration::from_secs(3600)));
    assert_eq!(
        d.store.list(&Default::default(), 1000).unwrap().len(),
        40,
        "no alert lost"
    );
    let pending = states(&d)
        .iter()
        .filter(|s| **s == OutboxState::Pending)
        .count();
    assert_eq!(pending, 60, "the killed worker never recorded the 200s");
    let worker = d.worker().unwrap();
    let mut delivered = 0;
    for _ in 0..10 {
        delivered += worker.run_once().await.unwrap().delivered;
        if delivered == 60 {
            break;
        }
        fx.clock.advance(Duration::from_secs(10));
    }
    assert_eq!(delivered, 60);
    let processed = rx.processed();
    let mut unique = processed.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), processed.len(), "each key processed once");
    let mut want = ids.clone();
    want.sort();
    assert_eq!(unique, want, "every alert arrived");
    assert!(
        rx.duplicates() >= in_flight,
        "redelivered (at-least-once), deduped by key"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn c_500_forever_dead_letters_after_max_age_and_manual_retry_delivers() {
    let fx = Fixture::new();
    let (rx, addr) = start_receiver(None).await;
    rx.failing.store(1, Ordering::SeqCst);
    let d = fx.delivery(config(addr, Duration::from_secs(60)));
    let (api, http, _token) = start_api_as(&d, fx.dir.path(), "engineer").await;
    let id = d.insert(&alert(false)).unwrap().id;
    let worker = d.worker().unwrap();
    let mut rounds = 0;
    while states(&d)[0] != OutboxState::Dead {
        worker.run_once().await.unwrap();
        fx.clock.advance(Duration::from_secs(6));
        rounds += 1;
        assert!(rounds < 30, "never dead-lettered");
    }
    // 60 s of max age at ≤ 5 s backoff: many attempts, none after the max age.
    let row = d.store.outbox(None, 1).unwrap().remove(0);
    assert!(row.attempts >= 10, "{}", row.attempts);
    assert!(row.first_at_ms.is_some());
    let dead: Vec<serde_json::Value> = http
        .get(format!("http://{api}/api/delivery/dead"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["alert_id"], id.as_str());
    assert!(dead[0].get("body").is_none());
    // Dead rows are not attempted.
    fx.clock.advance(Duration::from_secs(3600));
    assert_eq!(worker.run_once().await.unwrap(), Default::default());

    rx.failing.store(0, Ordering::SeqCst);
    let resp = http
        .post(format!("http://{api}/api/delivery/{}/retry", row.id))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(worker.run_once().await.unwrap().delivered, 1);
    assert_eq!(rx.processed(), vec![id]);
    let again = http
        .post(format!("http://{api}/api/delivery/{}/retry", row.id))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 409);
    let missing = http
        .post(format!("http://{api}/api/delivery/999/retry"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn d_case_callback_needs_a_valid_signature() {
    let fx = Fixture::new();
    let d = fx.delivery(config(
        "127.0.0.1:9".parse().unwrap(),
        Duration::from_secs(60),
    ));
    let (api, http, _token) = start_api(&d, fx.dir.path()).await;
    let id = d.insert(&alert(false)).unwrap().id;
    let body =
        serde_json::json!({"alert_id": id, "case_id": "AJ-2024-0001", "status": "dispatched"})
            .to_string();
    let url = format!("http://{api}/api/case-callback");
    let post = |sig: Option<String>| {
        let mut req = http
            .post(&url)
            .header("content-type", "application/json")
            .body(body.clone());
        if let Some(s) = sig {
            req = req.header("x-signature", s);
        }
        req.send()
    };
    for bad in [
        None,
        Some(sign(&Secret::new("wrong"), body.as_bytes())),
        Some("sha256=00".into()),
    ] {
        assert_eq!(post(bad).await.unwrap().status(), 401);
    }
    let a = d.store.get(&id).unwrap().unwrap();
    assert_eq!(
        (a.state, a.case_id),
        (AlertState::New, None),
        "a bad signature changes nothing"
    );
    assert_eq!(d.store.events(&id).unwrap().len(), 1);

    let ok = post(Some(sign(&Secret::new(SECRET), body.as_bytes())))
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let a = d.store.get(&id).unwrap().unwrap();
    assert_eq!(a.case_id.as_deref(), Some("AJ-2024-0001"));
    assert_eq!(a.state, AlertState::Dispatched);
    let ev = d.store.events(&id).unwrap();
    assert_eq!(
        (ev[1].kind.as_str(), ev[1].who.as_str()),
        ("case", "case-system")
    );
}

async fn next_alert_ids(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    n: usize,
) -> Vec<String> {
    let mut out = Vec::new();
    while out.len() < n {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Message::Text(t) = msg {
            let v: serde_json::Value = serde_json::from_str(&t).unwrap();
            // Each alert also updates its incident's card (live only).
            if v["kind"] == "incident" {
                continue;
            }
            assert_eq!(v["kind"], "alert", "{v}");
            out.push(v["id"].as_str().unwrap().to_owned());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn e_ws_reconnect_with_cursor_gets_exactly_what_it_missed() {
    let fx = Fixture::new();
    let mut cfg = config("127.0.0.1:9".parse().unwrap(), Duration::from_secs(60));
    cfg.case = None;
    cfg.stations.clear();
    let d = fx.delivery(cfg);
    let (api, _http, token) = start_api(&d, fx.dir.path()).await;
    let mut ws = ws_connect(format!("ws://{api}/api/alerts/feed"), &token).await;
    let first: Vec<String> = (0..3)
        .map(|_| d.insert(&alert(false)).unwrap().id)
        .collect();
    assert_eq!(next_alert_ids(&mut ws, 3).await, first);
    ws.close(None).await.unwrap();
    drop(ws);

    let missed: Vec<String> = (0..4)
        .map(|_| d.insert(&alert(false)).unwrap().id)
        .collect();
    let mut ws = ws_connect(
        format!("ws://{api}/api/alerts/feed?cursor={}", first[2]),
        &token,
    )
    .await;
    assert_eq!(
        next_alert_ids(&mut ws, 4).await,
        missed,
        "exactly the missed ones, in order"
    );
    let live = d.insert(&alert(false)).unwrap().id;
    assert_eq!(next_alert_ids(&mut ws, 1).await, vec![live]);
    // Nothing else (no duplicate of the replayed ones): at most the live alert's incident card.
    while let Ok(Some(Ok(msg))) = tokio::time::timeout(Duration::from_millis(300), ws.next()).await
    {
        if let Message::Text(t) = msg {
            let v: serde_json::Value = serde_json::from_str(&t).unwrap();
            assert_eq!(
                v["kind"], "incident",
                "nothing but the incident's card: {v}"
            );
        }
    }

    // Server-side filter: a fall alert in another area is not sent to an area-filtered client.
    let mut ws = ws_connect(
        format!("ws://{api}/api/alerts/feed?area=3301&severity=high"),
        &token,
    )
    .await;
    let mut other = alert(false);
    other.area_code = Some("440100".into());
    d.insert(&other).unwrap();
    let mine = d.insert(&alert(false)).unwrap().id;
    assert_eq!(next_alert_ids(&mut ws, 1).await, vec![mine]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn e2_slow_client_is_told_to_resync_and_pipeline_never_waits() {
    let fx = Fixture::new();
    let mut cfg = config("127.0.0.1:9".parse().unwrap(), Duration::from_secs(60));
    cfg.case = None;
    let d = fx.delivery(cfg);
    let (api, _http, token) = start_api(&d, fx.dir.path()).await;
    let mut ws = ws_connect(format!("ws://{api}/api/alerts/feed"), &token).await;
    // The client reads nothing while far more than the feed buffer is published.
    let big = alert(false);
    let t0 = std::time::Instant::now();
    for _ in 0..(qianliyan::delivery::FEED_CAPACITY * 3) {
        let _ = d
            .feed
            .send(Arc::new(qianliyan::delivery::FeedEvent::Alert(Box::new(
                Alert {
                    seq: i64::MAX,
                    ..big.clone()
                },
            ))));
    }
    assert!(
        t0.elapsed() < Duration::from_secs(1),
        "publishing never waits for a client"
    );
    let mut saw_resync = false;
    while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
        if let Message::Text(t) = m {
            let v: serde_json::Value = serde_json::from_str(&t).unwrap();
            if v["kind"] == "resync" {
                saw_resync = true;
            }
        }
    }
    assert!(saw_resync);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn f_transitions_409_422_and_the_recorded_chain() {
    let fx = Fixture::new();
    let (_rx, addr) = start_receiver(None).await;
    let d = fx.delivery(config(addr, Duration::from_secs(60)));
    let (api, http, _token) = start_api(&d, fx.dir.path()).await;
    let id = d.insert(&alert(false)).unwrap().id;
    let go = |to: serde_json::Value| {
        http.post(format!("http://{api}/api/alerts/{id}/transition"))
            .json(&serde_json::json!({"to": to, "note": "checked on camera"}))
            .send()
    };
    let r = go("resolved".into()).await.unwrap();
    assert_eq!(r.status(), 409);
    let msg = r.json::<serde_json::Value>().await.unwrap()["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        msg.contains("new → resolved") && msg.contains("acknowledged, dispatched, false_alarm"),
        "{msg}"
    );
    let r = go("bogus".into()).await.unwrap();
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("`to`"));
    assert_eq!(go(serde_json::json!(5)).await.unwrap().status(), 422);
    // A note (the operator's description) of more than 1,024 characters is refused, by name.
    let r = http
        .post(format!("http://{api}/api/alerts/{id}/transition"))
        .json(&serde_json::json!({"to": "acknowledged", "note": "长".repeat(1025)}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let body = r.text().await.unwrap();
    assert!(body.contains("note") && body.contains("1025"), "{body}");

    for to in ["acknowledged", "dispatched", "resolved"] {
        let r = go(to.into()).await.unwrap();
        assert_eq!(r.status(), 200, "{to}");
    }
    assert_eq!(
        go("false_alarm".into()).await.unwrap().status(),
        409,
        "terminal"
    );
    let v: serde_json::Value = http
        .get(format!("http://{api}/api/alerts/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["state"], "resolved");
    let ev = v["events"].as_array().unwrap();
    let chain: Vec<(&str, &str)> = ev
        .iter()
        .map(|e| (e["to"].as_str().unwrap(), e["who"].as_str().unwrap()))
        .collect();
    assert_eq!(
        chain,
        [
            ("new", "system"),
            ("acknowledged", "王警官"),
            ("dispatched", "王警官"),
            ("resolved", "王警官")
        ]
    );
    assert_eq!(ev[1]["note"], "checked on camera");
    // The operator's dispatch added the station route to the outbox.
    let sinks: Vec<String> = d
        .store
        .outbox(None, 10)
        .unwrap()
        .into_iter()
        .map(|r| r.sink)
        .collect();
    assert!(sinks.contains(&"dispatch:east".to_owned()), "{sinks:?}");

    let list: Vec<serde_json::Value> = http
        .get(format!(
            "http://{api}/api/alerts?state=resolved&area=3301&type=intrusion"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list.len(), 1);
    let bad = http
        .get(format!("http://{api}/api/alerts?since=yesterday"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422);
    assert!(bad.text().await.unwrap().contains("`since`"));
    assert_eq!(
        http.get(format!("http://{api}/api/alerts/{id}/snapshot.jpg"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escalation_raises_severity_once_with_an_explicit_clock() {
    let fx = Fixture::new();
    let mut cfg = config("127.0.0.1:9".parse().unwrap(), Duration::from_secs(60));
    cfg.case = None;
    let d = fx.delivery(cfg);
    let a = d.insert(&alert(false)).unwrap();
    assert!(d.escalate_due().unwrap().is_empty());
    fx.clock.advance(Duration::from_secs(61));
    let up = d.escalate_due().unwrap();
    assert_eq!(up.len(), 1);
    assert_eq!(up[0].severity, Severity::Critical);
    assert!(d.escalate_due().unwrap().is_empty());
    let ev = d.store.events(&a.id).unwrap();
    assert_eq!(ev.last().unwrap().kind, "escalated");
}

/// Polls `cond` every 100 ms for up to `limit`.
async fn eventually(limit: Duration, what: &str, cond: impl Fn() -> bool) {
    let t0 = std::time::Instant::now();
    while !cond() {
        assert!(t0.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The whole service as its own process (`qianliyan serve`), killed with SIGKILL while deliveries are
/// pending, then started again on the same data directory: every alert reaches the case system and
/// the receiver processes each idempotency key once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn g_sigkill_mid_delivery_then_restart_loses_nothing_and_processes_nothing_twice() {
    const ALERTS: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    let (rx, case_addr) = start_receiver(None).await;
    // Slow answers keep deliveries in flight when the kill comes; the receiver commits, then
    // answers at once, so only a row whose answer was on its way can be sent twice.
    rx.delay_ms.store(20, Ordering::SeqCst);
    rx.stagger_ms.store(40, Ordering::SeqCst);
    rx.process_late.store(true, Ordering::SeqCst);
    let data = dir.path().join("data");
    // Alerts the pipeline had stored with their outbox rows (one transaction each) before the run.
    let store = AlertStore::open(&data.join("alerts.db"), &data.join("snapshots")).unwrap();
    let route = qianliyan::store::Route {
        sink: "case".into(),
        url: format!("http://{case_addr}/case"),
    };
    let now = qianliyan::time::unix_ms(SystemTime::now());
    let ids: Vec<String> = (0..ALERTS)
        .map(|_| {
            store
                .insert(&alert(false), std::slice::from_ref(&route), now)
                .unwrap()
                .id
        })
        .collect();
    drop(store);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("service.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[node]
name = "kill-test"
data_dir = "{data}"
[web]
listen = "127.0.0.1:{port}"
[delivery]
case = {{ url = "http://{case_addr}/case", secret_env = "QLY_CASE_SECRET" }}
backoff_initial_ms = 100
backoff_max_s = 1
"#,
            data = data.display()
        ),
    )
    .unwrap();
    let start = |run: u32| {
        let log = std::fs::File::create(dir.path().join(format!("run{run}.log"))).unwrap();
        std::process::Command::new(env!("CARGO_BIN_EXE_qianliyan"))
            .args(["serve", "--config"])
            .arg(&config)
            .env("QLY_CASE_SECRET", SECRET)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start qianliyan serve")
    };

    let mut first = start(1);
    eventually(Duration::from_secs(60), "the first deliveries", || {
        rx.processed().len() >= 8
    })
    .await;
    first.kill().expect("SIGKILL"); // std's kill is SIGKILL on Unix
    first.wait().unwrap();
    let at_kill = rx.processed().len();
    assert!(
        at_kill < ALERTS,
        "the kill came too late to test anything ({at_kill})"
    );

    let mut second = start(2);
    let done = tokio::time::timeout(
        Duration::from_secs(90),
        eventually(
            Duration::from_secs(90),
            "every alert after the restart",
            || rx.processed().len() >= ALERTS,
        ),
    )
    .await;
    // Give a redelivery of an already-processed row time to show up before judging.
    tokio::time::sleep(Duration::from_millis(500)).await;
    second.kill().unwrap();
    second.wait().unwrap();
    assert!(
        done.is_ok(),
        "{} of {ALERTS} processed; logs in {}",
        rx.processed().len(),
        dir.path().display()
    );

    let mut got = rx.processed();
    got.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(got, want, "every alert processed exactly once");
    // At-least-once delivery: only a row whose answer was on its way at the kill may be sent
    // again (results are recorded one by one as they come), and the idempotency key absorbs it.
    let dups = rx.duplicates();
    eprintln!(
        "killed after {at_kill} of {ALERTS}; duplicate deliveries absorbed by the key: {dups}"
    );
    assert!(dups <= 2, "{dups} duplicate deliveries");
    assert_eq!(rx.bad_signatures.load(Ordering::SeqCst), 0);
    let store = AlertStore::open(&data.join("alerts.db"), &data.join("snapshots")).unwrap();
    let rows = store.outbox(None, 1000).unwrap();
    assert_eq!(rows.len(), ALERTS);
    assert!(
        rows.iter().all(|r| r.state == OutboxState::Delivered),
        "{rows:?}"
    );
}

/// A police station (dispatcher of 上城区) sees and moves only its own alerts: the list, one alert,
/// the feed (alerts and updates) and the transitions it may make (接警, 到场, 办结, not 确认).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn h_a_dispatcher_sees_and_moves_only_its_jurisdiction() {
    let fx = Fixture::new();
    let mut cfg = config("127.0.0.1:9".parse().unwrap(), Duration::from_secs(60));
    cfg.case = None;
    cfg.stations.clear();
    let d = fx.delivery(cfg);
    let (api, http, token) = start_api_as(&d, fx.dir.path(), "dispatcher").await;
    let mut ws = ws_connect(format!("ws://{api}/api/alerts/feed"), &token).await;
    let mine = d.insert(&alert(false)).unwrap().id;
    let mut other = alert(false);
    other.area_path = vec!["西湖区".into()];
    let other = d.insert(&other).unwrap().id;
    let mine2 = d.insert(&alert(false)).unwrap().id;
    // The feed carries only this station's alerts (the other one was published between them).
    assert_eq!(
        next_alert_ids(&mut ws, 2).await,
        [mine.clone(), mine2.clone()]
    );

    let list: Vec<serde_json::Value> = http
        .get(format!("http://{api}/api/alerts"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = list.iter().filter_map(|a| a["id"].as_str()).collect();
    assert!(
        ids.contains(&mine.as_str()) && !ids.contains(&other.as_str()),
        "{ids:?}"
    );
    assert!(
        list[0]["next_states"].is_array(),
        "list items say where they may go"
    );
    for path in [
        format!("/api/alerts/{other}"),
        format!("/api/alerts/{other}/snapshot.jpg"),
    ] {
        let r = http
            .get(format!("http://{api}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            404,
            "{path}: another station's alert is not shown"
        );
    }
    let go = |id: &str, to: &str| {
        http.post(format!("http://{api}/api/alerts/{id}/transition"))
            .json(&serde_json::json!({"to": to, "note": "城关所"}))
            .send()
    };
    // Judging is the command hall's: a station may not acknowledge.
    let r = go(&mine, "acknowledged").await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("dispatcher"));
    // Another station's alert cannot be moved, and its existence is not confirmed.
    d.store
        .transition(&other, AlertState::Dispatched, "值班员", "", &[], 1)
        .unwrap();
    assert_eq!(go(&other, "accepted").await.unwrap().status(), 404);
    d.store
        .transition(&mine, AlertState::Dispatched, "值班员", "", &[], 1)
        .unwrap();
    for to in ["accepted", "arrived", "resolved"] {
        let r = go(&mine, to).await.unwrap();
        assert_eq!(r.status(), 200, "{to}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["state"], to);
    }
    // Only this station's updates came on its feed.
    let mut updates = Vec::new();
    while let Ok(Some(Ok(Message::Text(t)))) =
        tokio::time::timeout(Duration::from_millis(500), ws.next()).await
    {
        let v: serde_json::Value = serde_json::from_str(&t).unwrap();
        if v["kind"] == "alert_update" {
            updates.push((
                v["id"].as_str().unwrap().to_owned(),
                v["state"].as_str().unwrap().to_owned(),
            ));
        }
    }
    assert_eq!(
        updates,
        [
            (mine.clone(), "accepted".to_owned()),
            (mine.clone(), "arrived".to_owned()),
            (mine.clone(), "resolved".to_owned())
        ]
    );
    let events = d.store.events(&mine).unwrap();
    assert!(
        events.iter().any(|e| e.who == "王警官"),
        "the station's user is recorded"
    );
}

/// A written clip follows its alert to the case system as a `clip_ready` message, once, with its own
/// idempotency key, signed like the alert, with the clip's URL under `public_url`, its SHA-256 and
/// duration; a clip that failed sends nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i_a_written_clip_follows_its_alert_once_as_clip_ready() {
    use qianliyan::rules::{AlertClip, ClipState};
    let fx = Fixture::new();
    let (rx, addr) = start_receiver(None).await;
    let mut cfg = config(addr, Duration::from_secs(3600));
    cfg.public_url = Some("https://hall.example.cn".into());
    let d = fx.delivery(cfg);
    let worker = d.worker().unwrap();
    let recording = |name: &str| AlertClip {
        name: name.into(),
        state: ClipState::Recording,
        start_ms: 1_000,
        duration_ms: 0,
        bytes: 0,
        sha256: None,
        error: None,
    };
    let mut a = alert(false);
    a.clip = Some(recording("A.mp4"));
    let id = d.insert(&a).unwrap().id;
    let mut b = alert(false);
    b.clip = Some(recording("B.mp4"));
    let other = d.insert(&b).unwrap().id;
    assert_eq!(worker.run_once().await.unwrap().delivered, 2);

    let ready = AlertClip {
        state: ClipState::Ready,
        duration_ms: 30_000,
        bytes: 123_456,
        sha256: Some("ab".repeat(32)),
        ..recording("A.mp4")
    };
    assert_eq!(d.clip_finished(&ready).unwrap(), 1);
    let failed = AlertClip {
        state: ClipState::Failed,
        error: Some("the clip writers are behind".into()),
        ..recording("B.mp4")
    };
    assert_eq!(d.clip_finished(&failed).unwrap(), 1);
    // The same state again (a retry from the clip stage) adds nothing.
    assert_eq!(d.clip_finished(&ready).unwrap(), 1);
    assert_eq!(worker.run_once().await.unwrap().delivered, 1);
    assert_eq!(worker.run_once().await.unwrap().delivered, 0);
    // The two alerts went out together (in any order), the clip's message after them.
    let mut got = rx.processed();
    got[..2].sort();
    let mut want = vec![id.clone(), other.clone()];
    want.sort();
    want.push(format!("{id}:clip"));
    assert_eq!(got, want);
    assert_eq!(rx.duplicates(), 0);
    assert_eq!(rx.bad_signatures.load(Ordering::SeqCst), 0);
    let clips = rx.clips.lock().unwrap().clone();
    let c = &clips[0];
    assert_eq!(
        c["url"],
        format!("https://hall.example.cn/api/alerts/{id}/clip.mp4")
    );
    assert_eq!(c["sha256"], "ab".repeat(32));
    assert_eq!(
        (c["duration_ms"].as_u64(), c["bytes"].as_u64()),
        (Some(30_000), Some(123_456))
    );
    // The alert itself says ready; the outbox lists the message with its kind.
    let stored = d.store.get(&id).unwrap().unwrap();
    assert_eq!(stored.clip.unwrap().state, ClipState::Ready);
    let kinds: Vec<String> = d
        .store
        .outbox(None, 10)
        .unwrap()
        .into_iter()
        .map(|r| r.kind)
        .collect();
    assert_eq!(kinds, ["clip_ready", "alert", "alert"]);
}

/// The alert stage measures an alert's latency (frame arrival → stored) to the clock it is given,
/// the same clock the delivery stage stamps with: with that clock an hour ahead of the machine and a
/// frame that arrived 1,234 ms before its now, the stored alert says 1,234 ms (the machine's clock
/// would give 0: the arrival lies in its future).
#[test]
fn the_alert_stage_measures_latency_to_its_clock() {
    use qianliyan::alert::board::{self, AlertBoard};
    use qianliyan::decode::{DecodedFrame, PixelFormat};
    use qianliyan::rules::runner::Candidate;

    let fx = Fixture::new();
    fx.clock.advance(Duration::from_secs(3600));
    let d = fx.delivery(DeliveryConfig::default());
    let (tx, rx) = crossbeam_channel::bounded(1);
    let stage = board::spawn(
        rx,
        AlertBoard::new(fx.dir.path().join("snapshots"), None),
        Arc::new(|_: &str| None),
        Some(d.clone()),
        None,
        Arc::new(std::sync::atomic::AtomicBool::new(false)),
        Arc::new(fx.clock.clone()) as Arc<dyn Clock>,
    )
    .unwrap();
    let arrival = fx.clock.wall() - Duration::from_millis(1234);
    let (w, h) = (64, 48);
    let frame = DecodedFrame {
        camera: "cam-7".into(),
        pts_90k: 0,
        arrival,
        decoded_at: arrival,
        width: w,
        height: h,
        stride: w as usize * 3,
        format: PixelFormat::Bgr,
        data: vec![128; w as usize * 3 * h as usize],
    };
    let raised = qianliyan::rules::Alert::raised(
        "zone-a",
        "cam-7",
        AlertType::Intrusion,
        Severity::High,
        qianliyan::time::unix_ms(arrival),
        0.9,
        false,
    );
    tx.send(Candidate {
        alert: raised,
        zone: None,
        frame: Arc::new(frame),
        tracks: vec![],
        arrival,
    })
    .unwrap();
    drop(tx);
    stage.join().unwrap();

    let stored = d.store.list(&Default::default(), 10).unwrap();
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0].latency_ms, 1234);
    assert_eq!(stored[0].time_ms, qianliyan::time::unix_ms(arrival));
}
