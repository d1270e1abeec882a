//! The API's access rules and input errors against the real service (camsim camera, real SQLite,
//! real HTTP): every endpoint in the endpoint table refuses a missing token (401) and a role without
//! its permission (403); malformed JSON and invalid values get 400/422 naming the field, and a
//! refused change leaves everything as it was; `/api/openapi.json` describes exactly the table.

mod common;

use std::time::Duration;

use common::{http, http_as, login, start_sim, test_password};
use qianliyan::auth::{Role, allows};
use qianliyan::camsim::TransportPolicy;
use qianliyan::web::routes::{Access, ENDPOINTS};
use serde_json::Value;

type Svc = common::Service;

const USERS: [(&str, Role, Option<&str>); 4] = [
    ("op", Role::Operator, None),
    ("pcs", Role::Dispatcher, Some("示范县/城关镇")),
    ("eng", Role::Engineer, None),
    ("adm", Role::Admin, None),
];

fn start(camera_url: &str) -> Svc {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("rules.toml"), "").expect("rules file");
    let users: String = USERS
        .iter()
        .map(|(name, role, area)| {
            format!(
                "[[auth.users]]\nusername = \"{name}\"\nrole = \"{role}\"\n{}password_env = \"{}\"\n",
                area.map(|a| format!("area = \"{a}\"\n")).unwrap_or_default(),
                common::TEST_PASSWORD_ENV
            )
        })
        .collect();
    let toml = format!(
        r#"
[node]
name = "api-test"
data_dir = "{data}"
[web]
listen = "127.0.0.1:0"
[[cameras]]
id = "cam-1"
name = "东门"
url = "{camera_url}"
area_path = "示范县/城关镇/东街社区"
[auth]
{users}
"#,
        data = dir.path().join("data").display(),
    );
    common::start_service(dir, &toml, &[])
}

/// A concrete path for a route pattern.
fn concrete(pattern: &str) -> String {
    pattern.replace("{username}", "op").replace("{id}", "cam-1")
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

#[test]
fn every_endpoint_refuses_missing_tokens_and_wrong_roles_and_bad_input_changes_nothing() {
    let sim = start_sim(1, None, TransportPolicy::Both);
    let svc = start(&sim.running.url(1));
    let addr = svc.addr;
    let token = |name: &str| login(addr, name, &test_password());
    let tokens: Vec<(Role, String)> = USERS.iter().map(|(n, r, _)| (*r, token(n))).collect();
    let token_of = |role: Role| {
        tokens
            .iter()
            .find(|(r, _)| *r == role)
            .map(|(_, t)| t.clone())
            .unwrap()
    };

    // 1. Missing, wrong and forbidden.
    let mut checked = 0;
    for e in ENDPOINTS {
        let path = concrete(e.path);
        let (status, body) = http(addr, e.method, &path, "{}");
        match e.access {
            Access::Public | Access::Signed => {
                assert_ne!(status, 403, "{} {} is public: {body}", e.method, e.path);
                continue;
            }
            _ => {}
        }
        assert_eq!(
            status, 401,
            "{} {} without a token: {body}",
            e.method, e.path
        );
        assert!(json(&body)["error"].as_str().is_some(), "{body}");
        let (status, _) = http_as(addr, "not-a-token", e.method, &path, "{}");
        assert_eq!(status, 401, "{} {} with a bogus token", e.method, e.path);
        if let Access::Perm(p) = e.access {
            for (role, t) in &tokens {
                if allows(*role, p) {
                    continue;
                }
                let (status, body) = http_as(addr, t, e.method, &path, "{}");
                assert_eq!(status, 403, "{} {} as {role}: {body}", e.method, e.path);
                let msg = json(&body)["error"].as_str().unwrap_or_default().to_owned();
                assert!(msg.contains(role.as_str()), "403 names the role: {msg}");
            }
        }
        checked += 1;
    }
    assert!(checked >= 25, "only {checked} guarded endpoints");

    // 2. The document describes exactly the table.
    let (status, body) = http(addr, "GET", "/api/openapi.json", "");
    assert_eq!(status, 200);
    let doc = json(&body);
    let mut documented = 0;
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        for method in ops.as_object().expect("operations").keys() {
            assert!(
                ENDPOINTS
                    .iter()
                    .any(|e| e.path == path && e.method.eq_ignore_ascii_case(method)),
                "{method} {path} documented but not in the table"
            );
            documented += 1;
        }
    }
    assert_eq!(documented, ENDPOINTS.len());
    assert_eq!(
        doc["paths"]["/api/rules"]["put"]["x-roles"],
        serde_json::json!(["admin"])
    );

    // 3. Malformed and out-of-range input: 400/422 naming the field; nothing half-applied.
    let admin = token_of(Role::Admin);
    let eng = token_of(Role::Engineer);
    // The inventory as configured (ids and names), not the live counters, which move meanwhile.
    let inventory = |body: &str| -> Vec<(String, String)> {
        json(body)
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| (c["id"].to_string(), c["name"].to_string()))
            .collect()
    };
    let cameras_before = inventory(&http_as(addr, &eng, "GET", "/api/cameras", "").1);
    let (status, body) = http_as(addr, &eng, "POST", "/api/cameras", "{\"id\": \"x\",");
    assert_eq!(status, 400, "{body}");
    let (status, body) = http_as(
        addr,
        &eng,
        "POST",
        "/api/cameras",
        r#"{"id": "new-1", "url": "rtsp://127.0.0.1:1/x", "lat": 123.0, "priority": 99}"#,
    );
    assert_eq!(status, 422, "{body}");
    let fields: Vec<String> = json(&body)["fields"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| f["field"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    assert!(fields.iter().any(|f| f.contains("lat")), "{fields:?}");
    assert!(fields.iter().any(|f| f.contains("priority")), "{fields:?}");
    assert_eq!(
        inventory(&http_as(addr, &eng, "GET", "/api/cameras", "").1),
        cameras_before,
        "the refused camera was not added"
    );

    // Length limits: a name over 128 characters, an import over 10,000 rows (413).
    let long = "长".repeat(129);
    let (status, body) = http_as(
        addr,
        &eng,
        "POST",
        "/api/cameras",
        &format!(r#"{{"id": "long-1", "name": "{long}", "url": "rtsp://127.0.0.1:1/x"}}"#),
    );
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("at most 128"), "{body}");
    let csv = format!(
        "id,name,url\n{}",
        "x,y,rtsp://127.0.0.1:1/x\n".repeat(10_001)
    );
    let (status, body) = http_as(addr, &eng, "POST", "/api/cameras/import", &csv);
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("10001 rows"), "{body}");
    assert_eq!(
        inventory(&http_as(addr, &eng, "GET", "/api/cameras", "").1),
        cameras_before,
        "nothing imported"
    );

    // Availability comes in pages of at most 500 rows.
    let (status, body) = http_as(addr, &eng, "GET", "/api/health/availability?limit=501", "");
    assert_eq!(status, 400, "{body}");
    let (status, body) = http_as(
        addr,
        &eng,
        "GET",
        "/api/health/availability?group_by=camera&camera=cam-1&limit=1",
        "",
    );
    assert_eq!(status, 200, "{body}");
    let rows = json(&body);
    assert_eq!(rows.as_array().map(Vec::len), Some(1), "{body}");
    assert_eq!(rows[0]["key"], "cam-1");

    // A camera id never known is 404, also for its history; a known camera's history answers.
    let (status, body) = http_as(addr, &eng, "GET", "/api/cameras/never-known/history", "");
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("never-known"), "{body}");
    assert_eq!(
        http_as(addr, &eng, "GET", "/api/cameras/cam-1/history", "").0,
        200
    );

    let rules_before = json(&http_as(addr, &admin, "GET", "/api/rules", "").1);
    let bad_rules = r#"{"zones": [{"id": "gate", "camera": "cam-1", "polygon": [[0, 0], [2, 0], [1, 1]]}],
        "rules": [{"id": "gate-in", "camera": "cam-9", "kind": "intrusion", "zone": "gate"},
                  {"id": "late", "camera": "cam-1", "kind": "loitering", "zone": "gate"}]}"#;
    let (status, body) = http_as(addr, &admin, "PUT", "/api/rules", bad_rules);
    assert_eq!(status, 422, "{body}");
    let fields: Vec<String> = json(&body)["fields"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["field"].as_str().map(str::to_owned))
        .collect();
    for want in ["zones[0].polygon", "rules[0].camera", "rules[1].dwell"] {
        assert!(
            fields.iter().any(|f| f.starts_with(want)),
            "{want} not named in {fields:?}"
        );
    }
    assert_eq!(
        json(&http_as(addr, &admin, "GET", "/api/rules", "").1),
        rules_before,
        "nothing saved"
    );
    let (status, _) = http_as(addr, &admin, "PUT", "/api/rules", "[1, 2]");
    assert_eq!(status, 400);
    let good_rules = r#"{"zones": [{"id": "gate", "camera": "cam-1", "name": "北门", "polygon": [[0.1, 0.1], [0.9, 0.1], [0.5, 0.9]]}],
        "rules": [{"id": "gate-in", "camera": "cam-1", "kind": "intrusion", "zone": "gate", "severity": "high"}]}"#;
    let (status, body) = http_as(addr, &admin, "PUT", "/api/rules", good_rules);
    assert_eq!(status, 200, "{body}");
    let saved = json(&http_as(addr, &admin, "GET", "/api/rules", "").1);
    assert_eq!(saved["zones"][0]["name"], "北门");
    // Operators may read the rules, not change them.
    let op = token_of(Role::Operator);
    assert_eq!(http_as(addr, &op, "GET", "/api/rules", "").0, 200);
    assert_eq!(http_as(addr, &op, "PUT", "/api/rules", good_rules).0, 403);

    // 4. The audit log names who changed what; reads are not audited.
    let (status, body) = http_as(addr, &admin, "GET", "/api/audit?limit=50", "");
    assert_eq!(status, 200, "{body}");
    let audit = json(&body);
    let rows = audit
        .as_array()
        .or_else(|| audit["rows"].as_array())
        .expect("audit rows");
    assert!(
        rows.iter().any(|r| r["username"] == "adm"
            && r["action"]
                .as_str()
                .is_some_and(|a| a.contains("PUT /api/rules"))),
        "{audit}"
    );
    assert!(
        !rows
            .iter()
            .any(|r| r["action"].as_str().is_some_and(|a| a.starts_with("GET"))),
        "{audit}"
    );

    // 5. The latest picture of a camera that streams, and a clear 404 for one that does not exist.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut got = (0, String::new());
    while std::time::Instant::now() < deadline {
        got = http_as(addr, &op, "GET", "/api/cameras/cam-1/frame.jpg", "");
        if got.0 == 200 {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(got.0, 200, "thumbnail: {}", got.1);
    let (status, body) = http_as(addr, &op, "GET", "/api/cameras/nope/frame.jpg", "");
    assert_eq!(status, 404);
    assert!(body.contains("nope"), "{body}");

    // 6. Secrets stay secret: no answer carries a password or a token.
    let me = http_as(addr, &admin, "GET", "/api/users", "").1;
    assert!(!me.contains(&test_password()), "{me}");
    assert!(!me.contains(&admin), "{me}");
}
