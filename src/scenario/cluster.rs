//! `qianliyan bench cluster`: several nodes on one private PostgreSQL, camsim's cameras spread over
//! them, and the faults a cluster must survive, each measured:
//!
//! 1. **kill -9** a node: time until the lease of every camera it ran names another node, and until
//!    all of them are online there (goal ≤ 20 s with the default 10 s lease);
//! 2. **SIGSTOP** a node for `--pause`, then SIGCONT: its cameras move once its leases end; when it
//!    wakes it stops them (lost) and every write it tries about that time is refused (fenced);
//! 3. **cut off from PostgreSQL** only (its connections go through a TCP proxy the bench stops): it
//!    fences itself before its leases end, the others take its cameras, and it takes cameras again
//!    once the database answers;
//! 4. **rolling restart by SIGTERM**: each node in turn hands its cameras over (goal ≤ 3 s to the
//!    leases held by others) and comes back.
//!
//! After all of them: no camera was held by two nodes over overlapping time (the holdings the
//! ledger keeps), and every camera is online. Health only (no models): the figures are the
//! leases'. Nodes run on 127.0.0.1 with their own ports, each reaching PostgreSQL through its own
//! proxy. The JSON report goes to `--out` (default `target/bench/cluster.json`), a Markdown
//! summary beside it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::ScenarioError;
use super::api::{Api, Camsim};
use super::child::{Child, free_port};
use crate::db::Db;

/// A duration argument (`10s`, `3m`).
pub fn duration(s: &str) -> Result<Duration, String> {
    crate::time::parse_duration(s)
}

/// `qianliyan bench cluster …`.
#[derive(Debug, Clone, clap::Args)]
pub struct ClusterArgs {
    /// Nodes (2–8).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(2..=8))]
    pub nodes: u32,
    /// Cameras in all (camsim serves them).
    #[arg(long, default_value_t = 450, value_parser = clap::value_parser!(u32).range(1..=5000))]
    pub cameras: u32,
    /// `[cluster] lease` of every node.
    #[arg(long, default_value = "10s", value_parser = duration)]
    pub lease: Duration,
    /// How long the SIGSTOP scenario keeps the node stopped.
    #[arg(long, default_value = "30s", value_parser = duration)]
    pub pause: Duration,
    /// How long the cameras may take to come online (at start and after each scenario).
    #[arg(long, default_value = "3m", value_parser = duration)]
    pub online_timeout: Duration,
    /// The JSON report (Markdown beside it; logs and configs under its stem).
    #[arg(long, default_value = "target/bench/cluster.json")]
    pub out: PathBuf,
    /// Video every camsim camera serves.
    #[arg(long, default_value = "assets/video/vtest_sub.mp4")]
    pub source: PathBuf,
}

/// One scenario's figures.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Outcome {
    /// kill9, sigstop, cut_off, sigterm:<node>.
    pub scenario: String,
    /// The node it was done to.
    pub node: String,
    /// Cameras that node ran.
    pub cameras: usize,
    /// Seconds until every one of their leases named another node.
    pub leases_moved_s: Option<f64>,
    /// Seconds until every one was online on another node.
    pub online_elsewhere_s: Option<f64>,
    /// What else was checked, with its result.
    pub checks: BTreeMap<String, String>,
    /// Every check held.
    pub pass: bool,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterReport {
    /// The command line.
    pub command: String,
    /// Nodes.
    pub nodes: u32,
    /// Cameras.
    pub cameras: u32,
    /// Lease, seconds.
    pub lease_s: f64,
    /// Seconds from start until every camera was online, spread over every node.
    pub spread_s: f64,
    /// Cameras per node once spread.
    pub spread: BTreeMap<String, usize>,
    /// Each scenario.
    pub scenarios: Vec<Outcome>,
    /// Pairs of holdings of one camera by two nodes over overlapping time (must be 0).
    pub double_holdings: u64,
    /// Every scenario passed and nothing was held twice.
    pub pass: bool,
}

/// A TCP proxy in front of PostgreSQL for one node; `cut` drops its connections and refuses new
/// ones until `restore`.
struct Proxy {
    port: u16,
    cut: Arc<AtomicBool>,
    generation: tokio::sync::watch::Sender<u64>,
}

impl Proxy {
    async fn start(target: u16) -> Result<Proxy, ScenarioError> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| ScenarioError::Setup(format!("proxy: {e}")))?;
        let port = listener
            .local_addr()
            .map_err(|e| ScenarioError::Setup(format!("proxy: {e}")))?
            .port();
        let cut = Arc::new(AtomicBool::new(false));
        let (generation, watch) = tokio::sync::watch::channel(0u64);
        let c = cut.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if c.load(Ordering::SeqCst) {
                    continue;
                }
                let mut watch = watch.clone();
                // Only a cut after this connection began ends it.
                watch.borrow_and_update();
                tokio::spawn(async move {
                    let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = watch.changed() => {}
                    }
                });
            }
        });
        Ok(Proxy {
            port,
            cut,
            generation,
        })
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

struct Node {
    id: String,
    port: u16,
    config: PathBuf,
    child: Option<Child>,
    api: Option<Api>,
    /// Its folder (a log per start: service-1.log, service-2.log …).
    dir: PathBuf,
    starts: u32,
}

const ADMIN: &str = "bench-admin";
const PASSWORD_ENV: &str = "QLY_BENCH_PASSWORD";
const URL_ENV: &str = "QLY_BENCH_DATABASE_URL";

struct Bench {
    bin: PathBuf,
    nodes: Vec<Node>,
    proxies: Vec<Proxy>,
    db: Arc<dyn Db>,
    password: String,
    all: BTreeSet<String>,
    online_timeout: Duration,
}

impl Bench {
    fn env(&self, i: usize) -> Vec<(String, String)> {
        vec![
            (PASSWORD_ENV.into(), self.password.clone()),
            (
                URL_ENV.into(),
                format!(
                    "postgres://qianliyan@127.0.0.1:{}/qianliyan",
                    self.proxies[i].port
                ),
            ),
            ("RUST_LOG".into(), "info".into()),
        ]
    }

    async fn start_node(&mut self, i: usize) -> Result<(), ScenarioError> {
        self.spawn_node(i)?;
        self.login_node(i).await
    }

    fn spawn_node(&mut self, i: usize) -> Result<(), ScenarioError> {
        let env = self.env(i);
        let node = &mut self.nodes[i];
        node.starts += 1;
        let log = node.dir.join(format!("service-{}.log", node.starts));
        let child = Child::spawn(
            &node.id,
            &self.bin,
            &[
                "serve".into(),
                "--config".into(),
                node.config.display().to_string(),
            ],
            &env,
            &log,
        )?;
        node.child = Some(child);
        Ok(())
    }

    /// Waits until node `i` answers, and logs in.
    async fn login_node(&mut self, i: usize) -> Result<(), ScenarioError> {
        let node = &mut self.nodes[i];
        let t0 = Instant::now();
        loop {
            if let Ok(api) = Api::login(node.port, ADMIN, &self.password).await {
                node.api = Some(api);
                return Ok(());
            }
            if let Some(c) = node.child.as_mut()
                && c.exited().is_some()
            {
                return Err(c.failure("exited at start"));
            }
            if t0.elapsed() > Duration::from_secs(60) {
                return Err(ScenarioError::Setup(format!("{} did not answer", node.id)));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The cameras node `i` runs and are online, from its own (live) list.
    async fn online_on(&self, i: usize) -> BTreeSet<String> {
        let node = &self.nodes[i];
        let Some(api) = &node.api else {
            return BTreeSet::new();
        };
        let Ok(list) = api.get_json("/api/cameras").await else {
            return BTreeSet::new();
        };
        list.as_array()
            .into_iter()
            .flatten()
            .filter(|c| {
                c["node"] == node.id.as_str() && c["stale"] == false && c["state"] == "online"
            })
            .filter_map(|c| c["id"].as_str().map(str::to_owned))
            .collect()
    }

    /// Online cameras by node, over the nodes in `among`.
    async fn online(&self, among: &[usize]) -> BTreeMap<usize, BTreeSet<String>> {
        let mut out = BTreeMap::new();
        for &i in among {
            out.insert(i, self.online_on(i).await);
        }
        out
    }

    /// Lease holders now: camera → node id (unexpired leases only).
    fn holders(&self) -> BTreeMap<String, String> {
        let rows = crate::db::query(
            self.db.as_ref(),
            "SELECT camera, node FROM camera_lease
             WHERE expires_ms > CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
            &[],
        )
        .unwrap_or_default();
        rows.iter()
            .filter_map(|r| Some((r.text(0).ok()?, r.text(1).ok()?)))
            .collect()
    }

    /// Waits until every camera is online on some live node (each on one), `live` being the nodes
    /// that count; the seconds it took.
    async fn wait_all_online(&self, live: &[usize], what: &str) -> Result<f64, ScenarioError> {
        let t0 = Instant::now();
        loop {
            let by = self.online(live).await;
            let union: BTreeSet<&String> = by.values().flatten().collect();
            if union.len() == self.all.len() {
                return Ok(t0.elapsed().as_secs_f64());
            }
            if t0.elapsed() > self.online_timeout {
                return Err(ScenarioError::Setup(format!(
                    "{what}: {} of {} cameras online after {:?}",
                    union.len(),
                    self.all.len(),
                    self.online_timeout
                )));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Waits until every camera is online on the node rendezvous hashing places it on (the
    /// rebalancing after a start or a restart has finished); the seconds it took.
    async fn wait_placed(&self, what: &str) -> Result<f64, ScenarioError> {
        let candidates: Vec<crate::cluster::rendezvous::Candidate<'_>> = self
            .nodes
            .iter()
            .map(|n| crate::cluster::rendezvous::Candidate {
                id: &n.id,
                weight: 1,
            })
            .collect();
        let expected: BTreeMap<&String, usize> = self
            .all
            .iter()
            .filter_map(|c| {
                let owner = crate::cluster::rendezvous::owner(c, &candidates)?;
                Some((c, self.nodes.iter().position(|n| n.id == owner)?))
            })
            .collect();
        let everyone: Vec<usize> = (0..self.nodes.len()).collect();
        let t0 = Instant::now();
        loop {
            let by = self.online(&everyone).await;
            let misplaced = expected
                .iter()
                .filter(|(c, i)| !by.get(i).is_some_and(|s| s.contains(**c)))
                .count();
            if misplaced == 0 {
                return Ok(t0.elapsed().as_secs_f64());
            }
            if t0.elapsed() > self.online_timeout {
                return Err(ScenarioError::Setup(format!(
                    "{what}: {misplaced} cameras not online on their node after {:?}",
                    self.online_timeout
                )));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// After a fault on node `k` at `t0`: seconds until every camera of `moved` is held by another
    /// node, and until every one is online on another node.
    async fn measure_move(
        &self,
        k: usize,
        moved: &BTreeSet<String>,
        t0: Instant,
        limit: Duration,
    ) -> (Option<f64>, Option<f64>) {
        let others: Vec<usize> = (0..self.nodes.len()).filter(|&i| i != k).collect();
        let me = self.nodes[k].id.clone();
        let (mut leases, mut online) = (None, None);
        while t0.elapsed() < limit && (leases.is_none() || online.is_none()) {
            if leases.is_none() {
                let h = self.holders();
                if moved.iter().all(|c| h.get(c).is_some_and(|n| *n != me)) {
                    leases = Some(t0.elapsed().as_secs_f64());
                }
            }
            if online.is_none() {
                let by = self.online(&others).await;
                let union: BTreeSet<&String> = by.values().flatten().collect();
                if moved.iter().all(|c| union.contains(c)) {
                    online = Some(t0.elapsed().as_secs_f64());
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        (leases, online)
    }

    /// Cameras node `i` stopped because it lost them, plus times it fenced itself.
    async fn stopped_count(&self, i: usize) -> f64 {
        use crate::telemetry::metrics as m;
        self.metric(i, m::CLUSTER_LEASE_CHANGES, &[("kind", "lost")])
            .await
            .unwrap_or(0.0)
            + self
                .metric(i, m::CLUSTER_SELF_FENCED, &[])
                .await
                .unwrap_or(0.0)
    }

    async fn metric(&self, i: usize, name: &str, filter: &[(&str, &str)]) -> Option<f64> {
        let m = self.nodes[i].api.as_ref()?.metrics().await.ok()?;
        Some(m.sum(name, filter))
    }

    /// Holdings of one camera by two nodes whose intervals overlap.
    fn double_holdings(&self) -> u64 {
        crate::db::query(
            self.db.as_ref(),
            "SELECT COUNT(*) FROM holding a JOIN holding b
               ON a.camera = b.camera AND a.id < b.id AND a.node <> b.node
             WHERE a.started_ms < b.alive_ms AND b.started_ms < a.alive_ms",
            &[],
        )
        .ok()
        .and_then(|r| r.first().and_then(|r| r.int(0).ok()))
        .map_or(u64::MAX, |n| n as u64)
    }
}

/// Runs the bench; the report says whether every criterion held.
pub async fn run(
    args: &ClusterArgs,
    command: String,
    cancel: tokio_util::sync::CancellationToken,
) -> Result<ClusterReport, ScenarioError> {
    let bin =
        std::env::current_exe().map_err(|e| ScenarioError::Setup(format!("this binary: {e}")))?;
    let source = args.source.canonicalize().map_err(|e| {
        ScenarioError::Setup(format!(
            "--source {}: {e} (run from the repository root after scripts/setup)",
            args.source.display()
        ))
    })?;
    let work = args.out.with_extension("");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| ScenarioError::io(&work, e))?;
    let pg = tokio::task::spawn_blocking(crate::db::server::PrivatePostgres::start)
        .await
        .map_err(|e| ScenarioError::Setup(e.to_string()))?
        .map_err(|e| ScenarioError::Setup(format!("a private PostgreSQL: {e}")))?;
    let pg_url = pg.url();
    let db: Arc<dyn Db> = {
        let url = pg_url.clone();
        Arc::new(
            tokio::task::spawn_blocking(move || crate::db::postgres::PgDb::connect(&url, 2))
                .await
                .map_err(|e| ScenarioError::Setup(e.to_string()))?
                .map_err(|e| ScenarioError::Setup(format!("PostgreSQL: {e}")))?,
        )
    };

    // camsim.
    let n = args.cameras;
    let (rtsp_port, control_port) = (free_port()?, free_port()?);
    let camsim_args: Vec<String> = [
        "camsim".to_string(),
        "--cameras".into(),
        n.to_string(),
        "--source".into(),
        source.display().to_string(),
        "--bind".into(),
        "127.0.0.1".into(),
        "--rtsp-port".into(),
        rtsp_port.to_string(),
        "--control-port".into(),
        control_port.to_string(),
    ]
    .to_vec();
    let mut camsim = Child::spawn(
        "camsim",
        &bin,
        &camsim_args,
        &[("RUST_LOG".into(), "warn".into())],
        &work.join("camsim.log"),
    )?;
    let sim = Camsim::new(control_port)?;
    let t = Instant::now();
    while sim.stats().await.is_err() {
        if camsim.exited().is_some() {
            return Err(camsim.failure("exited before it was ready"));
        }
        if t.elapsed() > Duration::from_secs(60) {
            return Err(camsim.failure("not ready in 60 s"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Nodes: one config each, the same cameras, each through its own proxy.
    let width = n.to_string().len().max(4);
    let mut cameras = String::new();
    let mut all = BTreeSet::new();
    for i in 1..=n {
        let id = format!("cam-{i:0width$}");
        cameras.push_str(&format!(
            "\n[[cameras]]\nid = \"{id}\"\nname = \"bench {i}\"\nurl = \"rtsp://127.0.0.1:{rtsp_port}/cam/{i:0width$}\"\n"
        ));
        all.insert(id);
    }
    let lease = args.lease;
    let renew = (lease / 10).max(Duration::from_secs(1));
    let password = hex::encode(rand::random::<[u8; 12]>());
    let mut nodes = Vec::new();
    let mut proxies = Vec::new();
    for i in 0..args.nodes {
        let id = format!("node-{i}");
        let port = free_port()?;
        let dir = work.join(&id);
        std::fs::create_dir_all(&dir).map_err(|e| ScenarioError::io(&dir, e))?;
        let config = dir.join("config.toml");
        let toml = format!(
            "[node]\nname = \"{id}\"\ndata_dir = \"{data}\"\ndatabase_url_env = \"{URL_ENV}\"\ndatabase_pool = 8\n\
             [web]\nlisten = \"127.0.0.1:{port}\"\n[health]\ngrace = \"3s\"\n\
             [cluster]\nnode_id = \"{id}\"\nlease = \"{lease}ms\"\nrenew = \"{renew}ms\"\n\
             [auth]\n[[auth.users]]\nusername = \"{ADMIN}\"\ndisplay_name = \"bench\"\nrole = \"admin\"\npassword_env = \"{PASSWORD_ENV}\"\n{cameras}",
            data = dir.join("data").display(),
            lease = lease.as_millis(),
            renew = renew.as_millis(),
        );
        std::fs::write(&config, toml).map_err(|e| ScenarioError::io(&config, e))?;
        proxies.push(Proxy::start(pg_port_of(&pg_url)?).await?);
        nodes.push(Node {
            id,
            port,
            config,
            child: None,
            api: None,
            dir,
            starts: 0,
        });
    }
    let mut b = Bench {
        bin,
        nodes,
        proxies,
        db,
        password,
        all,
        online_timeout: args.online_timeout,
    };
    let everyone: Vec<usize> = (0..b.nodes.len()).collect();
    let t0 = Instant::now();
    // All nodes at once, as a Deployment starts them: each waits two passes before it claims.
    for i in everyone.clone() {
        b.spawn_node(i)?;
    }
    for i in everyone.clone() {
        b.login_node(i).await?;
    }
    b.wait_placed("start").await?;
    let spread_s = t0.elapsed().as_secs_f64();
    let spread: BTreeMap<String, usize> = b
        .online(&everyone)
        .await
        .into_iter()
        .map(|(i, s)| (b.nodes[i].id.clone(), s.len()))
        .collect();
    tracing::info!(?spread, spread_s, "cameras spread over the nodes");
    let mut scenarios = Vec::new();
    let last = b.nodes.len() - 1;
    let failover_limit = lease * 3 + Duration::from_secs(30);

    // 1. kill -9.
    if cancel.is_cancelled() {
        return Err(ScenarioError::Cancelled);
    }
    {
        let k = last;
        let moved = b.online_on(k).await;
        let t = Instant::now();
        if let Some(c) = &b.nodes[k].child {
            c.signal("-KILL");
        }
        let (leases, online) = b.measure_move(k, &moved, t, failover_limit).await;
        b.nodes[k].child = None;
        b.nodes[k].api = None;
        let mut o = Outcome {
            scenario: "kill9".into(),
            node: b.nodes[k].id.clone(),
            cameras: moved.len(),
            leases_moved_s: leases,
            online_elsewhere_s: online,
            ..Default::default()
        };
        let goal = online.is_some_and(|s| s <= lease.as_secs_f64() + 10.0);
        o.checks.insert(
            "online elsewhere within lease + 10 s".into(),
            format!("{online:?} s"),
        );
        o.pass = goal;
        scenarios.push(o);
        b.start_node(k).await?;
        b.wait_all_online(&everyone, "after kill -9").await?;
    }

    // 2. SIGSTOP for --pause, then SIGCONT.
    {
        let k = last;
        // The restarted node has taken its share back.
        b.wait_placed("after the restart").await?;
        let moved = b.online_on(k).await;
        // Woken, it stops the cameras: as lost (its next beat shows them taken) or by fencing
        // itself (its connection was ended while it slept, so that beat fails first).
        let lost_before = b.stopped_count(k).await;
        let t = Instant::now();
        if let Some(c) = &b.nodes[k].child {
            c.signal("-STOP");
        }
        let (leases, online) = b
            .measure_move(k, &moved, t, failover_limit.max(args.pause))
            .await;
        let left = args.pause.saturating_sub(t.elapsed());
        tokio::time::sleep(left).await;
        if let Some(c) = &b.nodes[k].child {
            c.signal("-CONT");
        }
        let woke = Instant::now();
        let mut lost = 0.0;
        while woke.elapsed() < lease * 2 + Duration::from_secs(5) {
            lost = b.stopped_count(k).await - lost_before;
            if lost >= 1.0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let mut o = Outcome {
            scenario: "sigstop".into(),
            node: b.nodes[k].id.clone(),
            cameras: moved.len(),
            leases_moved_s: leases,
            online_elsewhere_s: online,
            ..Default::default()
        };
        let moved_ok = online.is_some();
        let lost_ok = moved.is_empty() || lost >= 1.0;
        o.checks.insert(
            "stopped its cameras when it woke (lost, or fenced itself)".into(),
            format!("{lost}"),
        );
        o.checks.insert(
            "online elsewhere while it was stopped".into(),
            format!("{online:?} s"),
        );
        o.pass = moved_ok && lost_ok;
        scenarios.push(o);
        b.wait_all_online(&everyone, "after SIGCONT").await?;
    }

    // 3. Cut off from PostgreSQL.
    {
        let k = 0;
        b.wait_placed("after SIGCONT").await?;
        let moved = b.online_on(k).await;
        let fenced_before = b
            .metric(k, crate::telemetry::metrics::CLUSTER_SELF_FENCED, &[])
            .await
            .unwrap_or(0.0);
        let t = Instant::now();
        b.proxies[k].cut();
        let (leases, online) = b.measure_move(k, &moved, t, failover_limit).await;
        // (Its API cannot answer while cut off: sessions are checked in the database.)
        b.proxies[k].restore();
        let t_back = Instant::now();
        let mut fenced = 0.0;
        while t_back.elapsed() < Duration::from_secs(30) {
            if let Some(v) = b
                .metric(k, crate::telemetry::metrics::CLUSTER_SELF_FENCED, &[])
                .await
            {
                fenced = v - fenced_before;
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let mut o = Outcome {
            scenario: "cut_off".into(),
            node: b.nodes[k].id.clone(),
            cameras: moved.len(),
            leases_moved_s: leases,
            online_elsewhere_s: online,
            ..Default::default()
        };
        o.checks
            .insert("fenced itself".into(), format!("{fenced} time(s)"));
        o.pass = online.is_some() && (moved.is_empty() || fenced >= 1.0);
        scenarios.push(o);
        b.wait_all_online(&everyone, "after the database came back")
            .await?;
    }

    // 4. Rolling restart by SIGTERM.
    for k in 0..b.nodes.len() {
        b.wait_placed("before the restart").await?;
        // Placed means the node runs its share; an empty answer is its API not answering in time
        // (a loaded machine), so ask again for a while.
        let mut moved = b.online_on(k).await;
        let asked = Instant::now();
        while moved.is_empty() && asked.elapsed() < Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(250)).await;
            moved = b.online_on(k).await;
        }
        let t = Instant::now();
        let stopping = b.nodes[k].child.take();
        let stopper = stopping.map(|mut c| std::thread::spawn(move || c.stop()));
        let (leases, online) = b.measure_move(k, &moved, t, failover_limit).await;
        let stopped = stopper.and_then(|h| h.join().ok());
        b.nodes[k].api = None;
        let mut o = Outcome {
            scenario: format!("sigterm:{}", b.nodes[k].id),
            node: b.nodes[k].id.clone(),
            cameras: moved.len(),
            leases_moved_s: leases,
            online_elsewhere_s: online,
            ..Default::default()
        };
        o.checks.insert(
            "leases held by others within 3 s".into(),
            format!("{leases:?} s"),
        );
        o.checks
            .insert("exited by itself (s)".into(), format!("{stopped:?}"));
        o.pass = leases.is_some_and(|s| s <= 3.0) && stopped.is_some_and(|(_, own)| own);
        scenarios.push(o);
        b.start_node(k).await?;
        b.wait_all_online(&everyone, "after the restart").await?;
    }

    let double_holdings = b.double_holdings();
    let pass = double_holdings == 0 && scenarios.iter().all(|s| s.pass);
    let report = ClusterReport {
        command,
        nodes: args.nodes,
        cameras: n,
        lease_s: lease.as_secs_f64(),
        spread_s,
        spread,
        scenarios,
        double_holdings,
        pass,
    };
    for node in &mut b.nodes {
        if let Some(mut c) = node.child.take() {
            c.stop();
        }
    }
    drop(camsim);
    write_report(&args.out, &report, &markdown(&report))?;
    Ok(report)
}

fn pg_port_of(url: &str) -> Result<u16, ScenarioError> {
    url.rsplit_once(':')
        .and_then(|(_, rest)| rest.split('/').next())
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| ScenarioError::Setup("the private PostgreSQL's port".into()))
}

/// The report as Markdown.
pub fn markdown(r: &ClusterReport) -> String {
    let mut s = format!(
        "# Cluster bench: {} nodes, {} cameras, lease {} s — {}\n\n`{}`\n\nSpread over every node in {:.1} s: {:?}\n\n\
         | scenario | node | cameras | leases moved (s) | online elsewhere (s) | checks | pass |\n|---|---|---|---|---|---|---|\n",
        r.nodes,
        r.cameras,
        r.lease_s,
        if r.pass { "PASS" } else { "FAIL" },
        r.command,
        r.spread_s,
        r.spread
    );
    let f = |v: Option<f64>| v.map_or("—".to_owned(), |v| format!("{v:.1}"));
    for o in &r.scenarios {
        let checks: Vec<String> = o.checks.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            o.scenario,
            o.node,
            o.cameras,
            f(o.leases_moved_s),
            f(o.online_elsewhere_s),
            checks.join("; "),
            if o.pass { "yes" } else { "NO" }
        ));
    }
    s.push_str(&format!(
        "\nHoldings of one camera by two nodes over overlapping time: {}\n",
        r.double_holdings
    ));
    s
}

/// Writes a bench's report: JSON at `out`, its Markdown `md` beside it.
pub fn write_report<T: Serialize>(out: &Path, r: &T, md: &str) -> Result<(), ScenarioError> {
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).map_err(|e| ScenarioError::io(dir, e))?;
    }
    let json = serde_json::to_string_pretty(r).unwrap_or_default();
    std::fs::write(out, json).map_err(|e| ScenarioError::io(out, e))?;
    let path = out.with_extension("md");
    std::fs::write(&path, md).map_err(|e| ScenarioError::io(&path, e))?;
    Ok(())
}
