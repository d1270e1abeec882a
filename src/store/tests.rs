use super::*;

pub(crate) fn alert(id: &str, time_ms: i64) -> Alert {
    Alert {
        seq: 0,
        id: id.into(),
        camera: "cam-1".into(),
        camera_name: "东门".into(),
        rule_id: "r1".into(),
        source: crate::rules::AlertSource::Rule,
        alert_type: AlertType::Intrusion,
        type_zh: "区域入侵".into(),
        type_en: "intrusion".into(),
        code: Some("06".into()),
        severity: Severity::High,
        time_ms,
        score: 0.9,
        boxes: vec![[1.0, 2.0, 3.0, 4.0]],
        track_ids: vec![7],
        message_zh: "入侵".into(),
        message_en: "intrusion".into(),
        dispatch: true,
        snapshot: None,
        latency_ms: 12,
        area_code: Some("330102001".into()),
        area_path: vec!["县".into()],
        jurisdiction: Some("east".into()),
        lat: Some(30.0),
        lon: Some(120.0),
        state: AlertState::New,
        case_id: None,
        escalated: false,
        incident_id: None,
        snapshot_error: None,
        clip: None,
    }
}

thread_local! {
    /// Set while [`postgres_passes_the_same_tests`] runs the tests again on PostgreSQL: the
    /// server and the database of each test folder.
    static POSTGRES: std::cell::RefCell<Option<(crate::db::server::PrivatePostgres, std::collections::HashMap<PathBuf, String>)>> =
        const { std::cell::RefCell::new(None) };
}

/// The store of a test folder: SQLite in it, or (under [`postgres_passes_the_same_tests`]) a
/// PostgreSQL database of its own, the same one when the folder is opened again.
fn open(dir: &tempfile::TempDir) -> AlertStore {
    let snapshots = dir.path().join("snapshots");
    let pg = POSTGRES.with(|p| {
        let mut p = p.borrow_mut();
        let (server, dbs) = p.as_mut()?;
        let n = dbs.len();
        let url = dbs
            .entry(dir.path().to_owned())
            .or_insert_with(|| server.database(&format!("t{n}")).unwrap())
            .clone();
        Some(url)
    });
    match pg {
        None => AlertStore::open(&dir.path().join("a.db"), &snapshots).unwrap(),
        Some(url) => {
            let db = crate::db::postgres::PgDb::connect(&url, 2).unwrap();
            AlertStore::on(Arc::new(db), &snapshots).unwrap()
        }
    }
}

/// Two nodes on one database: a claimed row goes to one worker until it is marked or its claim
/// ends; a job is held by one holder until its lease ends.
#[test]
fn claims_and_job_leases_keep_two_nodes_apart() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (open(&dir), open(&dir));
    for (i, id) in ["01C1", "01C2", "01C3"].iter().enumerate() {
        a.insert(&alert(id, 1000 + i as i64), &route(), 1000)
            .unwrap();
    }
    let first = a.claim_due(2000, 2, 10_000).unwrap();
    assert_eq!(
        first
            .iter()
            .map(|r| r.alert_id.as_str())
            .collect::<Vec<_>>(),
        ["01C1", "01C2"]
    );
    let second = b.claim_due(2000, 10, 10_000).unwrap();
    assert_eq!(
        second
            .iter()
            .map(|r| r.alert_id.as_str())
            .collect::<Vec<_>>(),
        ["01C3"]
    );
    assert!(
        b.claim_due(3000, 10, 10_000).unwrap().is_empty(),
        "all claimed"
    );
    assert_eq!(a.due(3000, 10).unwrap().len(), 3, "still pending");
    assert_eq!(
        a.next_due_ms().unwrap(),
        Some(12_000),
        "the worker waits for the claims"
    );
    a.mark_delivered(first[0].id, 3000).unwrap();
    // A's worker stopped: its other row goes to B once the claim ends.
    let taken = b.claim_due(12_000, 10, 10_000).unwrap();
    assert_eq!(
        taken
            .iter()
            .map(|r| r.alert_id.as_str())
            .collect::<Vec<_>>(),
        ["01C2", "01C3"]
    );
    assert_eq!(
        b.mark_failed(taken[0].id, 12_000, "503", 3_600_000, 13_000)
            .unwrap(),
        OutboxState::Pending
    );
    assert_eq!(
        a.claim_due(13_000, 10, 10_000).unwrap().len(),
        1,
        "a failure frees the row"
    );

    assert!(a.hold_job("retention", "node-a", 0, 60_000).unwrap());
    assert!(!b.hold_job("retention", "node-b", 30_000, 60_000).unwrap());
    assert!(
        a.hold_job("retention", "node-a", 50_000, 60_000).unwrap(),
        "renewed"
    );
    assert!(
        b.hold_job("escalation", "node-b", 50_000, 60_000).unwrap(),
        "another job"
    );
    assert!(!b.hold_job("retention", "node-b", 100_000, 60_000).unwrap());
    assert!(
        b.hold_job("retention", "node-b", 110_000, 60_000).unwrap(),
        "A's lease ended"
    );
    assert!(!a.hold_job("retention", "node-a", 110_001, 60_000).unwrap());
}

/// Escalation and alert retention run on the node that holds their jobs, and only there.
#[test]
fn housekeeping_runs_once_across_two_nodes_and_retention_deletes_old_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let clock = crate::clock::ManualClock::default();
    let now = crate::time::unix_ms(crate::clock::Clock::wall(&clock));
    let config = crate::delivery::DeliveryConfig {
        keep_alerts: Duration::from_secs(86_400),
        ..Default::default()
    };
    let node =
        |s: AlertStore| crate::delivery::Delivery::new(s, config.clone(), Arc::new(clock.clone()));
    let (a, b) = (node(open(&dir)), node(open(&dir)));
    let store = open(&dir);
    store
        .insert(&alert("01OLD", now - 2 * 86_400_000), &[], now)
        .unwrap();
    store
        .insert(&alert("01NEW", now - 600_000), &[], now)
        .unwrap();
    let done = a.housekeep(true).unwrap();
    assert!(done.escalation_ran && done.retention_ran, "{done:?}");
    assert_eq!((done.escalated, done.cleanup.alerts), (2, 1), "{done:?}");
    assert!(store.get("01OLD").unwrap().is_none());
    assert!(store.get("01NEW").unwrap().unwrap().escalated);
    let other = b.housekeep(true).unwrap();
    assert!(!other.escalation_ran && !other.retention_ran, "{other:?}");
}

/// A flood of one camera and rule folds into one incident; a gap longer than the window, another
/// rule or another camera opens a new one; acknowledging the incident acknowledges its alerts;
/// retention takes incidents whose alerts are all gone.
#[test]
fn alerts_fold_into_incidents_and_an_incident_is_handled_as_one() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir).with_incident_window(Duration::from_secs(60));
    let at = |i: i64| 1_000_000 + i * 10_000;
    let mut flood = Vec::new();
    for i in 0..5 {
        let mut a = alert(&format!("01F{i}"), at(i));
        if i == 3 {
            a.severity = Severity::Critical;
        }
        flood.push(s.insert(&a, &route(), at(i)).unwrap());
    }
    let incident = flood[0].incident_id.clone().expect("folded");
    assert_eq!(incident, "I01F0");
    // The latest alert of the rule on the camera (what a node taking the camera over checks).
    let (camera, rule) = (flood[0].camera.clone(), flood[0].rule_id.clone());
    assert_eq!(s.last_alert_ms(&camera, &rule).unwrap(), Some(at(4)));
    assert_eq!(s.last_alert_ms(&camera, "no-such-rule").unwrap(), None);
    assert!(
        flood
            .iter()
            .all(|a| a.incident_id.as_deref() == Some("I01F0"))
    );
    // The case system's message names the incident.
    let body = &s.outbox(None, 1).unwrap()[0].body;
    assert!(body.contains("\"incident_id\":\"I01F0\""), "{body}");
    let mut other_rule = alert("01G0", at(5));
    other_rule.rule_id = "r2".into();
    let mut other_camera = alert("01H0", at(5));
    other_camera.camera = "cam-2".into();
    let later = alert("01J0", at(4) + 61_000);
    for a in [&other_rule, &other_camera, &later] {
        s.insert(a, &[], at(6)).unwrap();
    }
    let all = s.incidents(&AlertFilter::default(), 10).unwrap();
    assert_eq!(all.len(), 4, "{all:?}");
    let (card, members) = s.incident("I01F0").unwrap().unwrap();
    assert_eq!(
        (card.count, card.unacknowledged, card.first_ms, card.last_ms),
        (5, 5, at(0), at(4))
    );
    assert_eq!(
        (card.first_alert.as_str(), card.last_alert.as_str()),
        ("01F0", "01F4")
    );
    assert_eq!(
        card.severity,
        Severity::Critical,
        "the highest of its alerts"
    );
    assert_eq!(card.type_zh, "区域入侵");
    assert_eq!(members.len(), 5);
    let mine = AlertFilter {
        camera: Some("cam-2".into()),
        ..Default::default()
    };
    assert_eq!(s.incidents(&mine, 10).unwrap()[0].id, "I01H0");

    s.transition("01F1", AlertState::FalseAlarm, "op", "", &[], at(7))
        .unwrap();
    let changed = s
        .transition_incident(
            "I01F0",
            AlertState::Acknowledged,
            "值班员",
            "一起处理",
            at(8),
        )
        .unwrap();
    assert_eq!(changed.len(), 4, "the false alarm stays as it is");
    let card = s.incident_card("I01F0").unwrap().unwrap();
    assert_eq!(card.unacknowledged, 0);
    let events = s.events("01F2").unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.note == "incident I01F0: 一起处理" && e.who == "值班员"),
        "{events:?}"
    );
    assert!(matches!(
        s.transition_incident("Inope", AlertState::Acknowledged, "op", "", at(8)),
        Err(StoreError::NotFound { .. })
    ));
    // Retention: the flood is old and delivered, its alerts go, and so does its incident.
    for row in s.outbox(None, 100).unwrap() {
        s.mark_delivered(row.id, at(9)).unwrap();
    }
    let report = s
        .cleanup(at(4) + 3_600_000, Duration::from_secs(1_800), u64::MAX)
        .unwrap();
    assert!(report.alerts >= 5, "{report:?}");
    assert!(s.incident_card("I01F0").unwrap().is_none());
    // Off: every alert stands alone.
    let off = open(&tempfile::tempdir().unwrap()).with_incident_window(Duration::ZERO);
    assert_eq!(
        off.insert(&alert("01K0", 1), &[], 1).unwrap().incident_id,
        None
    );
}

/// Every test above that opens its store through [`open`], again on PostgreSQL.
#[test]
fn postgres_passes_the_same_tests() {
    let server = crate::db::server::PrivatePostgres::start().expect("a private PostgreSQL");
    POSTGRES.with(|p| *p.borrow_mut() = Some((server, Default::default())));
    insert_round_trips_and_writes_outbox_in_the_same_transaction();
    filters_and_cursor();
    transitions_follow_the_table_and_escalation_raises_once();
    cleanup_keeps_undelivered_alerts_and_deletes_snapshots();
    outbox_dies_after_max_age_and_retry_revives();
    snapshot_names_cannot_escape_the_folder();
    area_path_and_scope_match_on_segment_boundaries_in_sql_and_in_memory();
    a_clip_state_reaches_every_alert_of_the_clip_and_retention_deletes_the_oldest_first();
    claims_and_job_leases_keep_two_nodes_apart();
    housekeeping_runs_once_across_two_nodes_and_retention_deletes_old_alerts();
    alerts_fold_into_incidents_and_an_incident_is_handled_as_one();
    let used = POSTGRES.with(|p| p.borrow_mut().take().map(|(_, dbs)| dbs.len()));
    assert_eq!(
        used,
        Some(12),
        "each test had a PostgreSQL database of its own"
    );
}

fn route() -> Vec<Route> {
    vec![Route {
        sink: "case".into(),
        url: "http://127.0.0.1:1/case".into(),
    }]
}

#[test]
fn insert_round_trips_and_writes_outbox_in_the_same_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let a = s.insert(&alert("01A", 1000), &route(), 1000).unwrap();
    assert_eq!(s.get("01A").unwrap().unwrap(), a);
    assert_eq!(s.due(1000, 10).unwrap().len(), 1);
    // A duplicate id fails the whole transaction: no second outbox row.
    assert!(s.insert(&alert("01A", 1000), &route(), 1000).is_err());
    assert_eq!(s.outbox(None, 10).unwrap().len(), 1);
    drop(s);
    let s = open(&dir);
    assert_eq!(s.get("01A").unwrap().unwrap(), a);
}

#[test]
fn filters_and_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    for (i, id) in ["01C", "01A", "01B"].iter().enumerate() {
        let mut a = alert(id, 1000 + i as i64);
        if i == 1 {
            a.area_code = Some("440000".into());
            a.alert_type = AlertType::Fall;
        }
        s.insert(&a, &[], 0).unwrap();
    }
    let f = AlertFilter::default();
    let ids = |v: Vec<Alert>| v.into_iter().map(|a| a.id).collect::<Vec<_>>();
    assert_eq!(ids(s.list(&f, 10).unwrap()), ["01B", "01A", "01C"]);
    // Insertion order, not ULID order: 01A was stored after 01C.
    assert_eq!(
        ids(s.after_cursor(Some("01C"), &f, 10).unwrap()),
        ["01A", "01B"]
    );
    let area = AlertFilter {
        area: Some("3301".into()),
        ..Default::default()
    };
    assert_eq!(ids(s.list(&area, 10).unwrap()), ["01B", "01C"]);
    let fall = AlertFilter {
        alert_type: Some(AlertType::Fall),
        ..Default::default()
    };
    assert_eq!(ids(s.list(&fall, 10).unwrap()), ["01A"]);
    let crit = AlertFilter {
        min_severity: Some(Severity::Critical),
        ..Default::default()
    };
    assert!(s.list(&crit, 10).unwrap().is_empty());
}

#[test]
fn transitions_follow_the_table_and_escalation_raises_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    s.insert(&alert("01A", 0), &[], 0).unwrap();
    let e = s
        .transition("01A", AlertState::Resolved, "op", "", &[], 1)
        .unwrap_err();
    assert!(matches!(e, StoreError::NotAllowed { .. }), "{e}");
    assert!(e.to_string().contains("new → resolved"), "{e}");
    let up = s.escalate_due(60_000, Duration::from_secs(60)).unwrap();
    assert_eq!(up.len(), 1);
    assert_eq!(up[0].severity, Severity::Critical);
    assert!(
        s.escalate_due(120_000, Duration::from_secs(60))
            .unwrap()
            .is_empty()
    );
    s.transition("01A", AlertState::Acknowledged, "op", "seen", &[], 2)
        .unwrap();
    assert!(
        s.escalate_due(999_999, Duration::from_secs(1))
            .unwrap()
            .is_empty()
    );
    let kinds: Vec<String> = s
        .events("01A")
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, ["created", "escalated", "transition"]);
}

#[test]
fn cleanup_keeps_undelivered_alerts_and_deletes_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    std::fs::create_dir_all(s.snapshot_dir()).unwrap();
    for id in ["01A", "01B"] {
        std::fs::write(s.snapshot_dir().join(format!("{id}.jpg")), [0u8; 100]).unwrap();
        let mut a = alert(id, 0);
        a.snapshot = Some(format!("{id}.jpg"));
        s.insert(&a, &route(), 0).unwrap();
    }
    let row = s
        .due(0, 10)
        .unwrap()
        .into_iter()
        .find(|r| r.alert_id == "01A")
        .unwrap();
    s.mark_delivered(row.id, 1).unwrap();
    let r = s.cleanup(10_000, Duration::from_secs(1), u64::MAX).unwrap();
    assert_eq!((r.alerts, r.bytes, r.kept_undelivered), (1, 100, 1));
    assert!(s.get("01A").unwrap().is_none());
    assert!(!s.snapshot_dir().join("01A.jpg").exists());
    assert!(s.get("01B").unwrap().is_some());
    assert!(s.snapshot_dir().join("01B.jpg").exists());
}

#[test]
fn outbox_dies_after_max_age_and_retry_revives() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    s.insert(&alert("01A", 0), &route(), 0).unwrap();
    let id = s.due(0, 1).unwrap()[0].id;
    assert_eq!(
        s.mark_failed(id, 0, "500", 1000, 10).unwrap(),
        OutboxState::Pending
    );
    assert_eq!(
        s.mark_failed(id, 999, "500", 1000, 1010).unwrap(),
        OutboxState::Pending
    );
    assert_eq!(
        s.mark_failed(id, 1000, "500", 1000, 2000).unwrap(),
        OutboxState::Dead
    );
    assert!(s.due(i64::MAX, 10).unwrap().is_empty());
    assert!(matches!(
        s.retry(id + 1, 0),
        Err(StoreError::NotFound { .. })
    ));
    let r = s.retry(id, 5000).unwrap();
    assert_eq!(r.state, OutboxState::Pending);
    assert!(matches!(s.retry(id, 0), Err(StoreError::NotDead { .. })));
    assert_eq!(s.due(5000, 1).unwrap().len(), 1);
}

#[test]
fn snapshot_names_cannot_escape_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    assert!(s.snapshot_path("../x").is_none());
    assert!(s.snapshot_path("a/b.jpg").is_none());
    assert!(s.snapshot_path("01A.jpg").is_some());
}

#[test]
fn area_path_and_scope_match_on_segment_boundaries_in_sql_and_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let paths: [&[&str]; 4] = [
        &["示范县", "城关镇", "东街社区"],
        &["示范县", "城关镇"],
        &["示范县", "城关镇二"],
        &["示范县", "桃源镇", "桃源社区"],
    ];
    let mut all = Vec::new();
    for (i, p) in paths.iter().enumerate() {
        let mut a = alert(&format!("01{i}"), 1000 + i as i64);
        a.area_path = p.iter().map(|s| s.to_string()).collect();
        s.insert(&a, &[], 0).unwrap();
        all.push(a);
    }
    let ids = |v: Vec<Alert>| {
        let mut v: Vec<String> = v.into_iter().map(|a| a.id).collect();
        v.sort();
        v
    };
    let check = |f: AlertFilter, want: &[&str]| {
        assert_eq!(ids(s.list(&f, 10).unwrap()), want, "SQL {f:?}");
        let mem: Vec<Alert> = all.iter().filter(|a| f.matches(a)).cloned().collect();
        assert_eq!(ids(mem), want, "in memory {f:?}");
    };
    let path = |p: &str| AlertFilter {
        area_path: Some(p.into()),
        ..Default::default()
    };
    check(path("示范县/城关镇"), &["010", "011"]);
    check(path("示范县"), &["010", "011", "012", "013"]);
    check(path("示范县/城关镇/东街社区"), &["010"]);
    // A dispatcher's scope narrows whatever the query asks for.
    check(
        AlertFilter {
            area_path: Some("示范县".into()),
            scope: Some("示范县/桃源镇".into()),
            ..Default::default()
        },
        &["013"],
    );
    check(
        AlertFilter {
            area_path: Some("示范县/城关镇".into()),
            scope: Some("示范县/桃源镇".into()),
            ..Default::default()
        },
        &[],
    );
}

fn recording(name: &str) -> AlertClip {
    AlertClip {
        name: name.into(),
        state: ClipState::Recording,
        start_ms: 1,
        duration_ms: 0,
        bytes: 0,
        sha256: None,
        error: None,
    }
}

#[test]
fn a_clip_state_reaches_every_alert_of_the_clip_and_retention_deletes_the_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let clips = dir.path().join("clips");
    std::fs::create_dir_all(&clips).unwrap();
    // Clips A (alerts 01A and 01B share it), C, D and E, 1,000 bytes each, oldest first; E's alert
    // still has a delivery pending.
    for (id, clip, t) in [
        ("01A", "01A.mp4", 1000),
        ("01B", "01A.mp4", 2000),
        ("01C", "01C.mp4", 3000),
        ("01D", "01D.mp4", 4000),
        ("01E", "01E.mp4", 5000),
    ] {
        let mut a = alert(id, t);
        a.clip = Some(recording(clip));
        let routes = if id == "01E" { route() } else { Vec::new() };
        let stored = s.insert(&a, &routes, t).unwrap();
        assert_eq!(stored.clip.as_ref().unwrap().state, ClipState::Recording);
    }
    for name in ["01A.mp4", "01C.mp4", "01D.mp4", "01E.mp4"] {
        std::fs::write(clips.join(name), [0u8; 1000]).unwrap();
        let ready = AlertClip {
            state: ClipState::Ready,
            bytes: 1000,
            duration_ms: 30_000,
            sha256: Some("ab".repeat(32)),
            ..recording(name)
        };
        // The clip's message goes where each alert's message went (only 01E's had a route).
        let message = |a: &Alert| Some(format!("{{\"clip_of\":\"{}\"}}", a.id));
        let updated = s.set_clip(&ready, 5500, &message).unwrap();
        assert_eq!(updated.len(), if name == "01A.mp4" { 2 } else { 1 });
        assert!(updated.iter().all(|a| a.clip.as_ref() == Some(&ready)));
    }
    let rows = s.outbox(None, 10).unwrap();
    let keys: Vec<(String, String)> = rows
        .iter()
        .map(|r| (r.kind.clone(), r.idempotency_key()))
        .collect();
    assert_eq!(
        keys,
        [
            ("clip_ready".to_owned(), "01E:clip".to_owned()),
            ("alert".to_owned(), "01E".to_owned())
        ]
    );
    assert_eq!(rows[0].body, "{\"clip_of\":\"01E\"}");
    assert_eq!((rows[0].sink.as_str(), rows[0].next_at_ms), ("case", 5500));
    let b = s.get("01B").unwrap().unwrap();
    assert_eq!(
        b.clip.as_ref().map(|c| (c.state, c.bytes)),
        Some((ClipState::Ready, 1000))
    );
    assert_eq!(s.clip_path("01A.mp4"), Some(clips.join("01A.mp4")));
    assert_eq!(s.clip_path("../alerts.db"), None);
    // Nothing old, 4,000 bytes within 4,000: nothing goes.
    assert_eq!(
        s.expire_clips(6000, Duration::from_secs(3600), 4000)
            .unwrap(),
        (0, 0)
    );
    // Over a 2,500-byte budget: A and C go (oldest first); D and E stay.
    assert_eq!(
        s.expire_clips(6000, Duration::from_secs(3600), 2500)
            .unwrap(),
        (2, 2000)
    );
    assert!(!clips.join("01A.mp4").exists() && !clips.join("01C.mp4").exists());
    assert!(clips.join("01D.mp4").exists());
    let a = s.get("01A").unwrap().unwrap();
    assert_eq!(
        a.clip.map(|c| (c.state, c.bytes)),
        Some((ClipState::Deleted, 0)),
        "the alert stays"
    );
    // By age: every clip is old now, but E's alert has a delivery pending: its clip is kept.
    assert_eq!(
        s.expire_clips(10_000_000, Duration::from_secs(60), u64::MAX)
            .unwrap(),
        (1, 1000)
    );
    assert!(clips.join("01E.mp4").exists());
    assert!(s.get("01D").unwrap().is_some());
}

/// A database written before clips (outbox v4) keeps its rows, ids and their idempotency keys.
#[test]
fn the_outbox_migration_keeps_rows_and_ids() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    {
        let mut conn = crate::sqlite::open(&path, crate::sqlite::Synchronous::Full).unwrap();
        crate::sqlite::migrate(&mut conn, &MIGRATIONS[..4]).unwrap();
        conn.execute(
            "INSERT INTO outbox (id, alert_id, sink, url, body, next_at_ms, state) \
             VALUES (41, '01OLD', 'case', 'http://127.0.0.1:1/case', '{}', 5, 'dead')",
            [],
        )
        .unwrap();
    }
    let s = AlertStore::open(&path, &dir.path().join("snapshots")).unwrap();
    let old = s.outbox_row(41).unwrap().unwrap();
    assert_eq!(
        (old.kind.as_str(), old.idempotency_key(), old.state),
        ("alert", "01OLD".to_owned(), OutboxState::Dead)
    );
    s.insert(&alert("01NEW", 10), &route(), 10).unwrap();
    let new = s.due(10, 10).unwrap();
    assert_eq!(new.len(), 1);
    assert!(
        new[0].id > 41,
        "ids go on after the old ones: {}",
        new[0].id
    );
}

/// Several nodes on one PostgreSQL database: an alert is stored only when its node held the
/// camera at the alert's time. A late alert of a node that handed the camera over is still taken;
/// one about a moment after the hand-over is refused as fenced (counted), never retried.
#[test]
fn alerts_are_stored_only_by_the_node_that_held_the_camera_at_their_time() {
    use crate::db::lease::{Fence, Leases, Refusal};
    let server = crate::db::server::PrivatePostgres::start().expect("a private PostgreSQL");
    let db: Arc<dyn Db> = Arc::new(crate::db::postgres::PgDb::connect(&server.url(), 2).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let clock: Arc<dyn crate::clock::Clock> = Arc::new(crate::clock::SystemClock);
    let a = Leases::open(db.clone(), "node-a", clock.clone()).unwrap();
    let b = Leases::open(db.clone(), "node-b", clock).unwrap();
    let camera = alert("x", 0).camera;
    let (fa, fb) = (
        Fence::new("node-a", db.dialect()),
        Fence::new("node-b", db.dialect()),
    );
    let store_a = AlertStore::on(db.clone(), &dir.path().join("s"))
        .unwrap()
        .with_fence(fa.clone());
    let store_b = AlertStore::on(db.clone(), &dir.path().join("s"))
        .unwrap()
        .with_fence(fb.clone());

    let now = || crate::time::unix_ms(std::time::SystemTime::now());
    // Nobody holds the camera: refused as not held.
    let refused = store_a.insert(&alert("a0", now()), &[], now()).unwrap_err();
    assert!(
        matches!(
            refused,
            StoreError::Fenced {
                reason: "not_held",
                ..
            }
        ),
        "{refused}"
    );
    let [(_, epoch)] = a.claim(std::slice::from_ref(&camera), 10_000).unwrap()[..] else {
        panic!("not taken")
    };
    fa.hold(&camera, epoch);
    let t1 = now();
    store_a.insert(&alert("a1", t1), &[], t1).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    a.release(&[(camera.clone(), epoch)]).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let [(_, epoch_b)] = b.claim(std::slice::from_ref(&camera), 10_000).unwrap()[..] else {
        panic!("not taken over")
    };
    fb.hold(&camera, epoch_b);
    // A's alert still in its pipeline from before the hand-over is taken; one from after is not.
    store_a.insert(&alert("a2", t1 + 5), &[], now()).unwrap();
    let late = now();
    let refused = store_a.insert(&alert("a3", late), &[], late).unwrap_err();
    assert!(
        matches!(
            refused,
            StoreError::Fenced {
                reason: "stale_epoch",
                ..
            }
        ),
        "{refused}"
    );
    assert_eq!(
        fa.refused(),
        [(Refusal::NotHeld, 1), (Refusal::StaleEpoch, 1)]
    );
    store_b.insert(&alert("b1", late), &[], late).unwrap();
    let ids: Vec<String> = store_a
        .list(&AlertFilter::default(), 10)
        .unwrap()
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(ids.len(), 3);
    for id in ["a1", "a2", "b1"] {
        assert!(ids.contains(&id.to_string()), "{id} missing from {ids:?}");
    }
}
