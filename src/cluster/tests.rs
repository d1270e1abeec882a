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
    let mut a = Node::new(&db, "node-a", &clock, &inventory);
    let mut b = Node::new(&db, "node-b", &clock, &inventory);

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
