//! Auth tests (the store, the guard and the users API): real SQLite in a temporary folder, real HTTP through axum on a local socket.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::routing::{get, post, put};
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::guard::{self, require};
use super::users_api::router;
use crate::auth::config::{RawAuth, RawUser, validate};
use crate::auth::*;
use crate::clock::ManualClock;
use crate::config::Secret;

const PW: &str = "correct-horse-1";

fn seed(username: &str, role: Role, area: Option<&str>) -> SeedUser {
    SeedUser {
        username: username.to_owned(),
        display_name: format!("{username} 名"),
        role,
        area: area.map(str::to_owned),
        password: SeedPassword::Plain(Secret::new(PW)),
    }
}

fn demo_config() -> AuthConfig {
    AuthConfig {
        users: vec![
            seed("admin", Role::Admin, None),
            seed("duty", Role::Operator, None),
            seed("eng", Role::Engineer, None),
            seed("pcs", Role::Dispatcher, Some("示范县/城关镇")),
        ],
        ..AuthConfig::default()
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    db: PathBuf,
    auth: Arc<Auth>,
    clock: ManualClock,
    base: String,
    http: reqwest::Client,
}

async fn start(config: AuthConfig) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("auth.db");
    let clock = ManualClock::default();
    let auth = Auth::open(&db, &config, Arc::new(clock.clone())).unwrap();
    let app = router(auth.clone())
        .route(
            "/api/cameras",
            get(|| async { "cameras" }).route_layer(require(auth.clone(), Permission::ViewCameras)),
        )
        .route(
            "/api/cameras/{id}",
            put(|| async { "changed" })
                .route_layer(require(auth.clone(), Permission::ManageCameras)),
        )
        .route(
            "/api/alerts/{id}/transition",
            post(|Extension(p): Extension<Principal>| async move { p.username })
                .route_layer(require(auth.clone(), Permission::HandleAlerts)),
        );
    let addr = crate::web::serve_for_test(app).await;
    Fixture {
        _dir: dir,
        db,
        auth,
        clock,
        base: format!("http://{addr}"),
        http: reqwest::Client::builder().no_proxy().build().unwrap(),
    }
}

impl Fixture {
    async fn login(&self, username: &str, password: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/api/auth/login", self.base))
            .json(&json!({ "username": username, "password": password }))
            .send()
            .await
            .unwrap()
    }

    async fn token(&self, username: &str) -> String {
        let r = self.login(username, PW).await;
        assert_eq!(r.status(), StatusCode::OK);
        let v: Value = r.json().await.unwrap();
        v["token"].as_str().unwrap().to_owned()
    }

    fn req(&self, method: reqwest::Method, path: &str, token: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token)
    }

    async fn get(&self, path: &str, token: &str) -> reqwest::Response {
        self.req(reqwest::Method::GET, path, token)
            .send()
            .await
            .unwrap()
    }

    fn audit_rows(&self, action: &str) -> Vec<AuditRow> {
        let rows = self
            .auth
            .store()
            .audit_query(&AuditQuery {
                limit: 1000,
                ..AuditQuery::default()
            })
            .unwrap();
        rows.into_iter().filter(|r| r.action == action).collect()
    }
}

#[test]
fn password_hash_and_verify() {
    let h = hash_password("a good password").unwrap();
    assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
    assert!(verify_password("a good password", &h));
    assert!(!verify_password("a good passwore", &h));
    assert!(!verify_password("a good password", "not a hash"));
    assert!(check_phc(&h).is_ok());
    assert!(check_phc("$pbkdf2-sha256$i=1000$c2FsdA$aGFzaA").is_err());
    assert_ne!(h, hash_password("a good password").unwrap(), "salted");
}

#[test]
fn role_table() {
    use Permission as P;
    assert!(!allows(Role::Dispatcher, P::ManageCameras));
    assert!(!allows(Role::Engineer, P::ManageUsers));
    assert!(!allows(Role::Engineer, P::HandleAlerts));
    assert!(allows(Role::Dispatcher, P::PoliceActions));
    assert!(!allows(Role::Dispatcher, P::ViewRules));
    assert!(!allows(Role::Operator, P::Metrics));
    for p in Permission::ALL {
        assert!(allows(Role::Admin, p), "admin {p:?}");
    }
    for r in Role::ALL {
        for p in [P::ViewAlerts, P::ViewCameras, P::ViewHealth, P::ViewSystem] {
            assert!(allows(r, p), "{r} {p:?}");
        }
        assert_eq!(Role::parse(r.as_str()), Some(r));
        assert_eq!(serde_json::to_value(r).unwrap(), json!(r.as_str()));
    }
    assert_eq!(Role::Dispatcher.label_zh(), "派出所");
    assert_eq!(Role::parse("Admin"), None);
}

#[test]
fn sees_area_boundaries() {
    let p = |role, area: Option<&str>| Principal {
        username: "u".into(),
        display_name: "u".into(),
        role,
        area: area.map(str::to_owned),
        via: AuthVia::Session,
    };
    let pcs = p(Role::Dispatcher, Some("示范县/城关镇"));
    assert!(pcs.sees_area("示范县/城关镇"));
    assert!(pcs.sees_area("示范县/城关镇/东街村"));
    assert!(pcs.sees_area("示范县/城关镇/"));
    assert!(!pcs.sees_area("示范县/城关镇二"));
    assert!(!pcs.sees_area("示范县/城关镇二/东街村"));
    assert!(!pcs.sees_area("示范县"));
    assert!(!pcs.sees_area(""));
    assert!(!pcs.sees_area("示范县/河西镇/城关镇"));
    assert!(p(Role::Operator, None).sees_area("任何县/任何镇"));
    assert!(p(Role::Operator, None).sees_area(""));
    // Fail closed: a dispatcher without an area (or with an empty one) sees nothing.
    assert!(!p(Role::Dispatcher, None).sees_area("示范县/城关镇"));
    assert!(!p(Role::Dispatcher, Some(" / ")).sees_area("示范县"));
    let county = p(Role::Engineer, Some("示范县"));
    assert!(county.sees_area("示范县/河西镇/x"));
    assert!(!county.sees_area("示范县二/河西镇"));
}

#[test]
fn route_pattern_from_params() {
    let p = |k: &str, v: &str| (k.to_owned(), v.to_owned());
    assert_eq!(
        guard::pattern_of("/api/alerts/01HX/transition", &[p("id", "01HX")]),
        "/api/alerts/{id}/transition"
    );
    assert_eq!(
        guard::pattern_of(
            "/api/users/tokens/tokens/7",
            &[p("username", "tokens"), p("id", "7")]
        ),
        "/api/users/{username}/tokens/{id}"
    );
    assert_eq!(
        guard::pattern_of("/api/cameras/%E4%B8%9C%E8%A1%97", &[p("id", "东街")]),
        "/api/cameras/{id}"
    );
    assert_eq!(guard::pattern_of("/api/users", &[]), "/api/users");
}

#[test]
fn limiter_locks_a_user_from_one_address_and_an_address_at_its_own_ceiling() {
    let clock = ManualClock::default();
    let dir = tempfile::tempdir().unwrap();
    let store = AuthStore::open(
        &dir.path().join("auth.db"),
        Arc::new(clock.clone()),
        SessionPolicy::default(),
    )
    .unwrap();
    let lim = LoginLimiter::new(store.db(), Arc::new(clock.clone()));
    let begin = |u: &str, ip| lim.begin(u, ip).unwrap();
    let a: std::net::IpAddr = "10.0.0.1".parse().unwrap();
    let b: std::net::IpAddr = "10.0.0.2".parse().unwrap();
    for _ in 0..5 {
        begin("duty", Some(a)).unwrap();
    }
    // duty is locked from a only: from b, and for a colleague behind a, logins go on.
    assert_eq!(begin("duty", Some(a)).unwrap_err(), limit::WINDOW);
    let ok = begin("duty", Some(b)).unwrap();
    lim.succeeded(ok).unwrap();
    let colleague = begin("colleague", Some(a)).unwrap();
    lim.succeeded(colleague).unwrap();
    clock.advance(Duration::from_secs(60));
    assert_eq!(
        begin("duty", Some(a)).unwrap_err(),
        limit::WINDOW - Duration::from_secs(60)
    );
    // The address's own ceiling: 50 failures over any usernames lock everything from it.
    for i in 0..(limit::MAX_ADDRESS_FAILURES - 5) {
        begin(&format!("guess-{i}"), Some(a)).unwrap();
    }
    assert!(begin("colleague", Some(a)).is_err());
    assert!(begin("colleague", Some(b)).is_ok());
    clock.advance(limit::WINDOW);
    begin("duty", Some(a)).unwrap();
}

#[tokio::test]
async fn login_sets_cookie_and_token_works_as_bearer_and_cookie() {
    let f = start(demo_config()).await;
    let r = f.login("pcs", PW).await;
    assert_eq!(r.status(), StatusCode::OK);
    let cookie = r
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let v: Value = r.json().await.unwrap();
    let token = v["token"].as_str().unwrap();
    assert_eq!(token.len(), 64);
    assert_eq!(
        cookie,
        format!("qly_session={token}; HttpOnly; SameSite=Strict; Path=/")
    );
    assert_eq!(v["user"]["username"], "pcs");
    assert_eq!(v["user"]["role"], "dispatcher");
    assert_eq!(v["user"]["area"], "示范县/城关镇");
    let now = f.auth.store().now_ms();
    assert_eq!(v["expires_ms"], json!(now + 7 * 24 * 3600 * 1000));

    let r = f.get("/api/cameras", token).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap(), "cameras");
    let r = f
        .http
        .get(format!("{}/api/cameras", f.base))
        .header("cookie", format!("theme=dark; qly_session={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    let me: Value = f.get("/api/auth/me", token).await.json().await.unwrap();
    assert_eq!(me["username"], "pcs");
    assert_eq!(me["role_zh"], "派出所");
    assert_eq!(me["via"], "session");
    let perms = me["permissions"].as_array().unwrap();
    assert!(perms.contains(&json!("police_actions")));
    assert!(!perms.contains(&json!("manage_cameras")));

    for bad in [None, Some("nope"), Some(&token[..63])] {
        let mut rq = f.http.get(format!("{}/api/cameras", f.base));
        if let Some(t) = bad {
            rq = rq.bearer_auth(t);
        }
        let r = rq.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"], "login required");
    }
}

#[tokio::test]
async fn wrong_password_and_unknown_user_get_identical_401() {
    let f = start(demo_config()).await;
    let a = f.login("duty", "wrong-password").await;
    let b = f.login("nobody", "wrong-password").await;
    assert_eq!(a.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(b.status(), StatusCode::UNAUTHORIZED);
    assert!(a.headers().get("set-cookie").is_none());
    let (a, b) = (a.text().await.unwrap(), b.text().await.unwrap());
    assert_eq!(a, b);
    let v: Value = serde_json::from_str(&a).unwrap();
    assert_eq!(v["error"], "wrong username or password");
    let failed = f.audit_rows("login_failed");
    assert_eq!(failed.len(), 2);
    assert!(
        !failed
            .iter()
            .any(|r| r.detail.to_string().contains("wrong-password"))
    );
}

#[tokio::test]
async fn sixth_failure_is_refused_with_retry_after_until_the_window_passes() {
    let f = start(demo_config()).await;
    for i in 0..5 {
        let r = f.login("duty", "wrong-password").await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "attempt {}", i + 1);
    }
    f.clock.advance(Duration::from_secs(100));
    // Even the right password is refused, without being checked.
    let r = f.login("duty", PW).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers()["retry-after"], "800");
    let v: Value = r.json().await.unwrap();
    assert!(v["error"].as_str().unwrap().contains("retry in 800 s"));
    // A colleague at the same address is not locked out by duty's failures.
    assert_eq!(f.login("admin", PW).await.status(), StatusCode::OK);
    f.clock.advance(Duration::from_secs(799));
    assert_eq!(
        f.login("duty", PW).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    f.clock.advance(Duration::from_secs(1));
    assert_eq!(f.login("duty", PW).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn idle_and_absolute_session_expiry() {
    let config = AuthConfig {
        session_idle: Duration::from_secs(600),
        session_max: Duration::from_secs(3600),
        ..demo_config()
    };
    let f = start(config).await;
    let last_seen = |token: &str| -> i64 {
        let conn = rusqlite::Connection::open(&f.db).unwrap();
        conn.query_row(
            "SELECT last_seen_ms FROM sessions WHERE token_sha256 = ?1",
            [sha256_hex(token)],
            |r| r.get(0),
        )
        .unwrap()
    };

    // Idle: unused for 10 minutes ends it.
    let t = f.token("duty").await;
    f.clock.advance(Duration::from_secs(599));
    assert_eq!(f.get("/api/cameras", &t).await.status(), StatusCode::OK);
    f.clock.advance(Duration::from_secs(600));
    assert_eq!(
        f.get("/api/cameras", &t).await.status(),
        StatusCode::UNAUTHORIZED
    );

    // last_seen is written at most once a minute.
    let t = f.token("duty").await;
    let t0 = last_seen(&t);
    f.clock.advance(Duration::from_secs(30));
    assert_eq!(f.get("/api/cameras", &t).await.status(), StatusCode::OK);
    assert_eq!(last_seen(&t), t0);
    f.clock.advance(Duration::from_secs(31));
    assert_eq!(f.get("/api/cameras", &t).await.status(), StatusCode::OK);
    assert_eq!(last_seen(&t), t0 + 61_000);

    // Absolute: used every 9 minutes, it still ends an hour after login.
    let t = f.token("eng").await;
    for _ in 0..6 {
        f.clock.advance(Duration::from_secs(9 * 60));
        assert_eq!(f.get("/api/cameras", &t).await.status(), StatusCode::OK);
    }
    f.clock.advance(Duration::from_secs(6 * 60));
    assert_eq!(
        f.get("/api/cameras", &t).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn roles_are_enforced_by_the_guard() {
    let f = start(demo_config()).await;
    let pcs = f.token("pcs").await;
    let eng = f.token("eng").await;
    let admin = f.token("admin").await;

    let r = f
        .req(reqwest::Method::PUT, "/api/cameras/c1", &pcs)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["error"],
        "role dispatcher may not manage cameras (needs permission manage_cameras)"
    );

    let r = f.get("/api/users", &eng).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .starts_with("role engineer may not manage users")
    );
    assert_eq!(
        f.get("/api/audit", &eng).await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        f.req(reqwest::Method::PUT, "/api/cameras/c1", &eng)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );

    for (m, path) in [
        (reqwest::Method::PUT, "/api/cameras/c1"),
        (reqwest::Method::POST, "/api/alerts/a1/transition"),
        (reqwest::Method::GET, "/api/users"),
        (reqwest::Method::GET, "/api/audit"),
        (reqwest::Method::GET, "/api/cameras"),
    ] {
        let r = f.req(m.clone(), path, &admin).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "admin {m} {path}");
    }
}

#[tokio::test]
async fn state_change_writes_exactly_one_audit_row_and_get_none() {
    let f = start(demo_config()).await;
    let duty = f.token("duty").await;
    let before = f.auth.store().audit_query(&AuditQuery {
        limit: 1000,
        ..AuditQuery::default()
    });
    let before = before.unwrap().len();

    let r = f
        .req(reqwest::Method::POST, "/api/alerts/01HX9/transition", &duty)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap(), "duty");
    assert_eq!(f.get("/api/cameras", &duty).await.status(), StatusCode::OK);
    // Refused requests are not audited either.
    let r = f
        .req(reqwest::Method::PUT, "/api/cameras/c1", &duty)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    let all = f
        .auth
        .store()
        .audit_query(&AuditQuery {
            limit: 1000,
            ..AuditQuery::default()
        })
        .unwrap();
    assert_eq!(all.len(), before + 1);
    let row = &all[0];
    assert_eq!(row.username, "duty");
    assert_eq!(row.role, "operator");
    assert_eq!(row.action, "POST /api/alerts/{id}/transition");
    assert_eq!(row.target, "/api/alerts/01HX9/transition");
    assert_eq!(row.detail, json!({ "status": 200 }));
    assert_eq!(row.remote.as_deref(), Some("127.0.0.1"));

    // Admins read it over HTTP, filtered.
    let admin = f.token("admin").await;
    let rows: Value = f
        .get("/api/audit?username=duty&limit=10", &admin)
        .await
        .json()
        .await
        .unwrap();
    let actions: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["POST /api/alerts/{id}/transition", "login"]);
    let r = f.get("/api/audit?limit=0&bogus=1", &admin).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["fields"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn last_enabled_admin_cannot_be_removed() {
    let f = start(demo_config()).await;
    let admin = f.token("admin").await;
    let r = f
        .req(reqwest::Method::DELETE, "/api/users/admin", &admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    for change in [json!({ "role": "operator" }), json!({ "disabled": true })] {
        let r = f
            .req(reqwest::Method::PUT, "/api/users/admin", &admin)
            .json(&change)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CONFLICT, "{change}");
    }
    assert_eq!(
        f.auth.store().user("admin").unwrap().unwrap().role,
        Role::Admin
    );
    // With a second admin, the first may go; their sessions end with them.
    let r = f
        .req(reqwest::Method::PUT, "/api/users/eng", &admin)
        .json(&json!({ "role": "admin" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = f
        .req(reqwest::Method::DELETE, "/api/users/admin", &admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        f.get("/api/users", &admin).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let rows = f.audit_rows("DELETE /api/users/{username}");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].target, "/api/users/admin");
}

#[tokio::test]
async fn api_token_shown_once_stored_hashed_and_revocable() {
    let f = start(demo_config()).await;
    let admin = f.token("admin").await;
    let r = f
        .req(reqwest::Method::POST, "/api/users/eng/tokens", &admin)
        .json(&json!({ "name": "prometheus" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: Value = r.json().await.unwrap();
    let token = v["token"].as_str().unwrap().to_owned();
    let id = v["id"].as_i64().unwrap();
    assert!(
        token.starts_with("qly_") && token.len() == 4 + 64,
        "{token}"
    );

    let me: Value = f.get("/api/auth/me", &token).await.json().await.unwrap();
    assert_eq!(me["username"], "eng");
    assert_eq!(me["via"], json!({ "api_token": { "name": "prometheus" } }));

    let list = f
        .get("/api/users/eng/tokens", &admin)
        .await
        .text()
        .await
        .unwrap();
    assert!(list.contains("prometheus"));
    assert!(!list.contains(&token[4..]));
    let list: Value = serde_json::from_str(&list).unwrap();
    assert!(list[0]["last_used_ms"].is_i64());
    assert!(list[0].get("token").is_none());

    // Only the hash is on disk (database and write-ahead log).
    let mut on_disk = Vec::new();
    for ext in ["", "-wal"] {
        let p = PathBuf::from(format!("{}{ext}", f.db.display()));
        if let Ok(b) = std::fs::read(&p) {
            on_disk.extend(b);
        }
    }
    let contains = |needle: &[u8]| on_disk.windows(needle.len()).any(|w| w == needle);
    assert!(!contains(token.as_bytes()));
    assert!(!contains(&token.as_bytes()[4..]));
    assert!(contains(sha256_hex(&token).as_bytes()));
    assert!(!contains(admin.as_bytes()), "session tokens are hashed too");

    let r = f
        .req(
            reqwest::Method::DELETE,
            &format!("/api/users/eng/tokens/{id}"),
            &admin,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        f.get("/api/auth/me", &token).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let list: Value = f
        .get("/api/users/eng/tokens", &admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list[0]["revoked"], true);
    let r = f
        .req(reqwest::Method::DELETE, "/api/users/duty/tokens/1", &admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "another user's token id");
}

#[tokio::test]
async fn login_body_errors_name_the_field() {
    let f = start(demo_config()).await;
    let r = f
        .http
        .post(format!("{}/api/auth/login", f.base))
        .header("content-type", "application/json")
        .body("{\"username\": \"duty\", ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = f
        .http
        .post(format!("{}/api/auth/login", f.base))
        .json(&json!({ "username": "duty", "passwd": "x" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let v: Value = r.json().await.unwrap();
    let fields: Vec<&str> = v["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["passwd", "password"]);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("password: is required")
    );
    assert!(f.audit_rows("login_failed").is_empty());
}

#[tokio::test]
async fn logout_ends_the_session_and_clears_the_cookie() {
    let f = start(demo_config()).await;
    let t = f.token("duty").await;
    let r = f
        .req(reqwest::Method::POST, "/api/auth/logout", &t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let cookie = r.headers()["set-cookie"].to_str().unwrap();
    assert!(cookie.starts_with("qly_session=;") && cookie.contains("Max-Age=0"));
    assert_eq!(
        f.get("/api/auth/me", &t).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(f.audit_rows("POST /api/auth/logout").len(), 1);
}

#[tokio::test]
async fn user_admin_validates_everything_before_writing() {
    let f = start(demo_config()).await;
    let admin = f.token("admin").await;
    let post = |body: Value| {
        f.req(reqwest::Method::POST, "/api/users", &admin)
            .json(&body)
            .send()
    };
    let r = post(json!({ "username": "bad name", "role": "chief", "password": "short" }))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let text = r.text().await.unwrap();
    assert!(!text.contains("short\""), "password echoed: {text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    let fields: Vec<&str> = v["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["username", "role", "password"]);
    let r = post(json!({ "username": "pcs2", "role": "dispatcher", "password": PW }))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(f.auth.store().user("pcs2").unwrap().is_none());
    assert_eq!(f.audit_rows("POST /api/users").len(), 0);

    let r = post(json!({
        "username": "pcs-hexi", "display_name": "河西派出所", "role": "dispatcher",
        "area": "示范县/河西镇", "password": PW,
    }))
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let u: Value = r.json().await.unwrap();
    assert_eq!(u["area"], "示范县/河西镇");
    assert_eq!(u["role_zh"], "派出所");
    assert_eq!(
        post(json!({ "username": "pcs-hexi", "role": "operator", "password": PW }))
            .await
            .unwrap()
            .status(),
        StatusCode::CONFLICT
    );
    let rows = f.audit_rows("POST /api/users");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].detail["username"], "pcs-hexi");
    assert_eq!(rows[0].detail["status"], 201);

    // Clearing a dispatcher's area is refused; a new password ends their sessions.
    let hexi = f.token("pcs-hexi").await;
    let put = |body: Value| {
        f.req(reqwest::Method::PUT, "/api/users/pcs-hexi", &admin)
            .json(&body)
            .send()
    };
    assert_eq!(
        put(json!({ "area": null })).await.unwrap().status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let r = put(json!({ "password": "new-password-9", "display_name": "河西所" }))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        f.get("/api/auth/me", &hexi).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        f.login("pcs-hexi", PW).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        f.login("pcs-hexi", "new-password-9").await.status(),
        StatusCode::OK
    );
    let rows = f.audit_rows("PUT /api/users/{username}");
    assert_eq!(
        rows[0].detail["changed"],
        json!(["display_name", "password"])
    );
    assert!(
        !rows
            .iter()
            .any(|r| r.detail.to_string().contains("new-password-9"))
    );

    // Disabling ends sessions and refuses login with the usual answer.
    let duty = f.token("duty").await;
    assert_eq!(
        f.req(reqwest::Method::PUT, "/api/users/duty", &admin)
            .json(&json!({ "disabled": true }))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        f.get("/api/auth/me", &duty).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(f.login("duty", PW).await.status(), StatusCode::UNAUTHORIZED);
}

#[test]
fn seed_creates_missing_users_and_leaves_existing_alone() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sub/auth.db");
    let clock: Arc<dyn crate::clock::Clock> = Arc::new(ManualClock::default());
    let config = demo_config();
    let store = AuthStore::open(&db, clock.clone(), SessionPolicy::default()).unwrap();
    let created = store.seed(&config).unwrap();
    assert_eq!(created, ["admin", "duty", "eng", "pcs"]);
    let change = store::UserChange {
        role: Some(Role::Engineer),
        ..Default::default()
    };
    store.update_user("duty", &change, None).unwrap();
    drop(store);

    let store = AuthStore::open(&db, clock, SessionPolicy::default()).unwrap();
    assert!(store.seed(&config).unwrap().is_empty());
    assert_eq!(store.user("duty").unwrap().unwrap().role, Role::Engineer);
    let (_, hash) = store.user_with_hash("pcs").unwrap().unwrap();
    assert!(verify_password(PW, &hash));
}

fn raw_user(username: &str, role: &str) -> RawUser {
    RawUser {
        username: username.to_owned(),
        role: role.to_owned(),
        password_env: Some("QLY_TEST_PW".to_owned()),
        ..RawUser::default()
    }
}

#[test]
fn config_reports_every_error_at_once_and_never_a_password() {
    let good_hash = hash_password("hashed-secret-1").unwrap();
    let raw = RawAuth {
        session_idle: Some("8d".to_owned()),
        session_max: Some("7x".to_owned()),
        users: vec![
            raw_user("admin", "admin"),
            raw_user("bad name!", "operator"),
            raw_user("duty", "chief"),
            RawUser {
                area: None,
                ..raw_user("pcs", "dispatcher")
            },
            raw_user("admin", "engineer"),
            RawUser {
                password_hash: Some(good_hash.clone()),
                ..raw_user("both", "engineer")
            },
            RawUser {
                password_env: Some("QLY_SHORT".to_owned()),
                ..raw_user("short", "engineer")
            },
            RawUser {
                password_env: Some("QLY_UNSET".to_owned()),
                ..raw_user("unset", "engineer")
            },
            RawUser {
                password_env: None,
                password_hash: Some("$argon2id$oops-not-phc".to_owned()),
                ..raw_user("badhash", "engineer")
            },
        ],
    };
    let env = |k: &str| match k {
        "QLY_TEST_PW" => Some("env-secret-123".to_owned()),
        "QLY_SHORT" => Some("tiny-pw".to_owned()),
        _ => None,
    };
    let errors = validate(&raw, env).unwrap_err();
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "auth.session_max",
            "auth.users[1].username",
            "auth.users[2].role",
            "auth.users[3].area",
            "auth.users[4].username",
            "auth.users[5].password_env",
            "auth.users[6].password_env",
            "auth.users[7].password_env",
            "auth.users[8].password_hash",
        ],
        "{errors:#?}"
    );
    assert!(errors[4].message.contains("auth.users[0]"));
    assert!(errors[7].message.contains("QLY_UNSET is not set"));
    let all = format!("{errors:?} {raw:?}");
    for secret in [
        "env-secret-123",
        "tiny-pw",
        "hashed-secret-1",
        good_hash.as_str(),
    ] {
        assert!(!all.contains(secret), "{secret} leaked: {all}");
    }

    // The good entries validate, with defaults and days.
    let raw = RawAuth {
        session_idle: None,
        session_max: Some("1d12h".to_owned()),
        users: vec![
            raw_user("admin", "admin"),
            RawUser {
                area: Some(" 示范县 / 城关镇 ".to_owned()),
                display_name: Some("城关派出所".to_owned()),
                password_env: None,
                password_hash: Some(good_hash.clone()),
                ..raw_user("pcs-chengguan", "dispatcher")
            },
        ],
    };
    let cfg = validate(&raw, env).unwrap();
    assert_eq!(cfg.session_idle, Duration::from_secs(12 * 3600));
    assert_eq!(cfg.session_max, Duration::from_secs(36 * 3600));
    assert_eq!(cfg.users[0].display_name, "admin");
    assert_eq!(cfg.users[1].area.as_deref(), Some("示范县/城关镇"));
    assert_eq!(
        cfg.users[0].password,
        SeedPassword::Plain(Secret::new("env-secret-123"))
    );
    let dbg = format!("{cfg:?}");
    assert!(!dbg.contains("env-secret-123") && !dbg.contains(good_hash.as_str()));

    let idle_too_long = RawAuth {
        session_idle: Some("8d".to_owned()),
        ..RawAuth::default()
    };
    let errors = validate(&idle_too_long, env).unwrap_err();
    assert_eq!(errors[0].path, "auth.session_idle");
}

#[test]
fn demo_snippet_parses_and_validates() {
    let text = r#"
[auth]
session_idle = "12h"
session_max = "7d"

[[auth.users]]
username = "admin"
display_name = "系统管理员"
role = "admin"
password_env = "QLY_DEMO_PASSWORD"

[[auth.users]]
username = "duty"
display_name = "值班员"
role = "operator"
password_env = "QLY_DEMO_PASSWORD"

[[auth.users]]
username = "eng"
display_name = "运维工程师"
role = "engineer"
password_env = "QLY_DEMO_PASSWORD"

[[auth.users]]
username = "pcs-chengguan"
display_name = "城关派出所"
role = "dispatcher"
area = "示范县/城关镇"
password_env = "QLY_DEMO_PASSWORD"

[[auth.users]]
username = "pcs-hexi"
display_name = "河西派出所"
role = "dispatcher"
area = "示范县/河西镇"
password_env = "QLY_DEMO_PASSWORD"
"#;
    #[derive(serde::Deserialize)]
    struct Doc {
        auth: RawAuth,
    }
    let doc: Doc = toml::from_str(text).unwrap();
    let cfg = validate(&doc.auth, |k| {
        (k == "QLY_DEMO_PASSWORD").then(|| "demo-password".to_owned())
    })
    .unwrap();
    assert_eq!(cfg.users.len(), 5);
    assert_eq!(cfg.session_max, Duration::from_secs(7 * 24 * 3600));
    assert!(toml::from_str::<Doc>("[auth]\nsession_idel = \"1h\"").is_err());
}
