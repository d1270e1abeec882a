use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Mutex;

use super::*;
use crate::clock::{Clock, ManualClock};
use crate::db::Db;

fn cameras(n: usize) -> Vec<Camera> {
    let mut toml = String::new();
    for i in 0..n {
        toml.push_str(&format!(
            "[[cameras]]\nid = \"cam-{i:02}\"\nname = \"c{i}\"\nurl = \"rtsp://127.0.0.1/{i}\"\n"
        ));
    }
    let env = crate::config::tests::FakeEnv::default();
    crate::config::tests::parse_str_with(&toml, Path::new("/x"), &env)
        .unwrap()
        .cameras
}

struct Node {
    keeper: Keeper,
    rx: tokio::sync::mpsc::Receiver<Holding>,
    fence: Arc<Fence>,
    /// What the fleet runs, as the messages say.
    runs: BTreeSet<String>,
    stops: Vec<(String, StopReason)>,
}

impl Node {
    fn new(
        db: &Arc<dyn Db>,
        id: &str,
        clock: &Arc<ManualClock>,
        inventory: &Arc<Mutex<Vec<Camera>>>,
        homes: Option<tokio::sync::mpsc::Receiver<String>>,
    ) -> Node {
        let leases = Leases::open(db.clone(), id, clock.clone()).unwrap();
        let fence = Fence::new(id, db.dialect());
        let inv = inventory.clone();
        let source: CameraSource = Arc::new(move || Ok((inv.lock().unwrap().clone(), Vec::new())));
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        let config = ClusterConfig {
            rebalance_per_pass: 4,
            ..ClusterConfig::default()
        };
        let (keeper, _nudge) = Keeper::new(
            leases,
            fence.clone(),
            source,
            config,
            tx,
            Arc::new(ClusterStats::default()),
        );
        let keeper = match homes {
            Some(homes) => keeper.with_homes(homes),
            None => keeper,
        };
        Node {
            keeper,
            rx,
            fence,
            runs: BTreeSet::new(),
            stops: Vec::new(),
        }
    }

    /// One pass; the inventory is read again every pass.
    fn pass(&mut self) {
        self.keeper.inventory_read = None;
        self.keeper.pass(true);
        while let Ok(h) = self.rx.try_recv() {
            match h {
                Holding::Start { camera, .. } => assert!(self.runs.insert(camera.id.clone())),
                Holding::Update { camera } => assert!(self.runs.contains(&camera.id)),
                Holding::Stop { camera, why } => {
                    assert!(self.runs.remove(&camera));
                    self.stops.push((camera, why));
                }
            }
        }
    }
}

/// Two keepers on one database: the first takes every camera; once the second beats, the first
/// hands it its share a few per pass; the two never run one camera at the same time; a camera
/// removed from the inventory is given up; when one node stops beating, the other takes its
/// cameras once the leases end, and the silent one, passing again, stops them as lost.
#[test]
fn two_keepers_share_the_cameras_hand_over_paced_and_take_over_after_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let db: Arc<dyn Db> =
        Arc::new(crate::db::sqlite::SqliteDb::open(&dir.path().join("c.db")).unwrap());
    let clock = Arc::new(ManualClock::default());
    let inventory = Arc::new(Mutex::new(cameras(24)));
    let mut a = Node::new(&db, "node-a", &clock, &inventory, None);
    let mut b = Node::new(&db, "node-b", &clock, &inventory, None);

    a.pass();
    assert_eq!(a.runs.len(), 24, "alone, A takes every camera");
    assert!(a.fence.epoch("cam-00").is_some());

    // B joins: it takes nothing A holds; A gives at most 4 per pass.
    b.pass();
    assert!(b.runs.is_empty());
    let mut passes = 0;
    let mut last = (0, 0);
    loop {
        clock.advance(Duration::from_secs(1));
        a.pass();
        b.pass();
        passes += 1;
        assert!(
            a.runs.is_disjoint(&b.runs),
            "one camera run by both: {:?}",
            a.runs.intersection(&b.runs).collect::<Vec<_>>()
        );
        let now = (a.stops.len(), b.runs.len());
        if a.runs.len() + b.runs.len() == 24 && now == last {
            break;
        }
        last = now;
        assert!(
            passes < 20,
            "no steady state: a {:?} b {:?}",
            a.runs,
            b.runs
        );
    }
    let moved = b.runs.len();
    assert!((4..=20).contains(&moved), "B holds {moved}");
    assert!(
        passes >= moved.div_ceil(4),
        "{moved} moved in {passes} passes: not paced"
    );
    assert!(a.stops.iter().all(|(_, w)| *w == StopReason::Rebalanced));
    // Steady: another pass moves nothing.
    clock.advance(Duration::from_secs(1));
    a.pass();
    b.pass();
    assert_eq!(a.runs.len() + b.runs.len(), 24);
    assert_eq!(a.stops.len(), moved);

    // A camera removed from the inventory: its holder gives it up.
    let gone = b.runs.iter().next().unwrap().clone();
    inventory.lock().unwrap().retain(|c| c.id != gone);
    b.pass();
    assert!(!b.runs.contains(&gone));
    assert_eq!(
        b.stops.last().unwrap(),
        &(gone.clone(), StopReason::Removed)
    );

    // B goes silent (paused): after the lease (10 s) A takes all of B's cameras.
    let b_had = b.runs.clone();
    clock.advance(Duration::from_secs(5));
    a.pass();
    assert!(a.runs.is_disjoint(&b_had), "taken before the lease ended");
    clock.advance(Duration::from_secs(6));
    a.pass();
    assert_eq!(a.runs.len(), 23);
    assert!(b_had.is_subset(&a.runs));
    // B wakes: its leases were taken, so it stops every camera as lost, and its fence refuses
    // writes about the time after its holding ended.
    let epoch_b = b.fence.epoch(b_had.iter().next().unwrap()).unwrap();
    b.pass();
    assert!(b.runs.is_empty());
    let lost: BTreeMap<&str, StopReason> = b.stops.iter().map(|(c, w)| (c.as_str(), *w)).collect();
    assert!(b_had.iter().all(|c| lost[c.as_str()] == StopReason::Lost));
    let cam = b_had.iter().next().unwrap();
    let now = crate::time::unix_ms(clock.wall());
    let refused = crate::db::transaction(db.as_ref(), |tx| b.fence.check(tx, cam, now)).unwrap();
    assert_eq!(refused, Err(crate::db::lease::Refusal::StaleEpoch));
    assert!(epoch_b >= 1);
}

fn gb_channels(devices: usize, per_device: usize) -> Vec<Camera> {
    let mut toml = String::new();
    for d in 0..devices {
        for c in 0..per_device {
            toml.push_str(&format!(
                "[[cameras]]\nid = \"3402000000131{d:03}{c:04}\"\nname = \"c\"\nurl = \"gb28181://34020000001180000{d:03}/3402000000131{d:03}{c:04}\"\n"
            ));
        }
    }
    let env = crate::config::tests::FakeEnv::default();
    crate::config::tests::parse_str_with(&toml, Path::new("/x"), &env)
        .unwrap()
        .cameras
}

/// A GB/T 28181 device's channels are one unit: placed together by the device's id, and all moved
/// at once (not paced) to the node the device registered to once that node writes the home.
#[test]
fn a_gb_devices_channels_are_placed_together_and_follow_its_home_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let db: Arc<dyn Db> =
        Arc::new(crate::db::sqlite::SqliteDb::open(&dir.path().join("c.db")).unwrap());
    let clock = Arc::new(ManualClock::default());
    let inventory = Arc::new(Mutex::new(gb_channels(6, 6)));
    let (homes_b, rx) = tokio::sync::mpsc::channel(16);
    let mut a = Node::new(&db, "node-a", &clock, &inventory, None);
    let mut b = Node::new(&db, "node-b", &clock, &inventory, Some(rx));
    let device_of = |id: &str| id[13..16].to_owned();
    let settle = |a: &mut Node, b: &mut Node| {
        for _ in 0..20 {
            clock.advance(Duration::from_secs(1));
            a.pass();
            b.pass();
            assert!(a.runs.is_disjoint(&b.runs));
        }
    };
    a.pass();
    b.pass();
    settle(&mut a, &mut b);
    assert_eq!(a.runs.len() + b.runs.len(), 36);
    // Every device's channels on one node.
    let on = |n: &Node| -> BTreeSet<String> { n.runs.iter().map(|c| device_of(c)).collect() };
    assert!(on(&a).is_disjoint(&on(&b)), "a {:?} b {:?}", on(&a), on(&b));
    // A device on A registers to B: all six channels move in one pass (the pacing is 4).
    let device = on(&a).into_iter().next().expect("a device on A");
    homes_b
        .try_send(format!("34020000001180000{device}"))
        .unwrap();
    let before = b.runs.len();
    clock.advance(Duration::from_secs(1));
    b.pass();
    a.pass();
    assert!(!on(&a).contains(&device), "given up by A at once");
    clock.advance(Duration::from_secs(1));
    b.pass();
    assert_eq!(b.runs.len(), before + 6, "taken by B at once");
    assert!(on(&b).contains(&device));
}
