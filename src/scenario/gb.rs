//! `qianliyan bench gb28181`: what GB/T 28181 signalling costs the service per device.
//!
//! The service runs with a `[gb28181]` section; camsim runs `--devices` simulated devices (each from a
//! socket of its own) that register, answer DeviceInfo and a catalog of several pages, and keep alive
//! every `--keepalive`. Measured from `/proc` of the service process:
//!
//! 1. **registration**: time until every device is online with its whole catalog, and the service's
//!    CPU for it per device (401 challenge, REGISTER with digest, DeviceInfo and catalog queries and
//!    their answers);
//! 2. **keeping alive**: over `--measure`, the service's CPU per keepalive and the share of one core
//!    that 1,000 devices at the default 60 s interval would take;
//! 3. memory: the service's RSS growth per device.
//!
//! With `--video FILE` every channel is also pulled (`video = "all"`: INVITE, PS over RTP, keyframes
//! decoded for VQD and snapshots as for RTSP cameras) from camsim sending that clip; the measuring
//! window then includes the video, and the report gives the streams flowing and the service's CPU
//! and RSS per stream.
//!
//! The JSON report goes to `--out` (default `target/bench/gb28181.json`), a Markdown summary beside it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::ScenarioError;
use super::api::Api;
use super::child::{Child, free_port};
use super::procfs;

use super::cluster::duration;

/// `qianliyan bench gb28181 …`.
#[derive(Debug, Clone, clap::Args)]
pub struct GbArgs {
    /// Simulated devices.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=20_000))]
    pub devices: u32,
    /// Keepalive interval of the devices (the service's `keepalive_interval` too).
    #[arg(long, default_value = "10s", value_parser = duration)]
    pub keepalive: Duration,
    /// How long keepalives are measured once every device is registered.
    #[arg(long, default_value = "60s", value_parser = duration)]
    pub measure: Duration,
    /// SIP transport of the devices.
    #[arg(long, value_enum, default_value = "udp")]
    pub transport: crate::camsim::gb::GbTransport,
    /// Cameras in each device's catalog (two per MESSAGE).
    #[arg(long, default_value_t = 4)]
    pub channels: usize,
    /// Pull every channel's video too, camsim sending this clip as PS over RTP.
    #[arg(long)]
    pub video: Option<PathBuf>,
    /// The JSON report (Markdown beside it; logs and the config under its stem).
    #[arg(long, default_value = "target/bench/gb28181.json")]
    pub out: PathBuf,
}

/// The figures.
#[derive(Debug, Clone, Serialize)]
pub struct GbReport {
    /// The command line.
    pub command: String,
    /// Devices.
    pub devices: u32,
    /// `udp` or `tcp`.
    pub transport: String,
    /// Keepalive interval, seconds.
    pub keepalive_s: f64,
    /// Seconds from camsim's start until every device was online with its whole catalog.
    pub registered_s: f64,
    /// Devices online at the end.
    pub online: u64,
    /// Service CPU per registration (with DeviceInfo and catalog), milliseconds.
    pub cpu_ms_per_registration: f64,
    /// Keepalives the service accepted while measuring.
    pub keepalives: u64,
    /// The idle service's CPU before any device, share of one core (taken off the keepalive
    /// figures).
    pub idle_cpu_share: f64,
    /// Service CPU per keepalive, microseconds.
    pub cpu_us_per_keepalive: f64,
    /// Service CPU while measuring, share of one core.
    pub cpu_share_keepalive: f64,
    /// What 1,000 devices at a 60 s interval would take, share of one core.
    pub cpu_share_per_1000_at_60s: f64,
    /// Service RSS growth per device, KiB (registered, catalog kept).
    pub rss_kib_per_device: f64,
    /// The simulator's CPU while measuring, share of one core (for comparison).
    pub camsim_cpu_share: f64,
    /// With `--video`: channels whose video flowed (> 1 frame/s) at the end of the window.
    pub streams: Option<u64>,
    /// With `--video`: service CPU per stream (everything in the window, keepalives included),
    /// share of one core.
    pub cpu_share_per_stream: Option<f64>,
    /// With `--video`: frames received per second over all streams.
    pub fps_in: Option<f64>,
    /// Every device registered with its catalog and none went offline while measuring (and with
    /// `--video`, every channel's video flowing).
    pub pass: bool,
}

const ADMIN: &str = "bench-admin";
const PASSWORD_ENV: &str = "QLY_BENCH_ADMIN_PASSWORD";
const GB_ENV: &str = "QLY_GB_PASSWORD";

/// Runs the bench and writes its report.
pub async fn run(
    args: &GbArgs,
    command: String,
    cancel: tokio_util::sync::CancellationToken,
) -> Result<GbReport, ScenarioError> {
    let bin =
        std::env::current_exe().map_err(|e| ScenarioError::Setup(format!("this binary: {e}")))?;
    let work = args.out.with_extension("");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| ScenarioError::io(&work, e))?;
    let (web_port, sip_port) = (free_port()?, free_port()?);
    let admin_password = hex::encode(rand::random::<[u8; 12]>());
    let gb_password = hex::encode(rand::random::<[u8; 12]>());
    let config = work.join("config.toml");
    let toml = format!(
        "[node]\nname = \"gb-bench\"\ndata_dir = \"{data}\"\n[web]\nlisten = \"127.0.0.1:{web_port}\"\n\
         [gb28181]\nsip_id = \"34020000002000000001\"\nlisten = \"127.0.0.1:{sip_port}\"\npassword_env = \"{GB_ENV}\"\n\
         auto_accept = true\nvideo = \"{video}\"\nmedia_ports = \"30000-{last_port}\"\nkeepalive_interval = \"{ka}ms\"\nkeepalive_misses = 10\nmax_devices = {max}\n\
         [auth]\n[[auth.users]]\nusername = \"{ADMIN}\"\ndisplay_name = \"bench\"\nrole = \"admin\"\npassword_env = \"{PASSWORD_ENV}\"\n",
        data = work.join("data").display(),
        ka = args.keepalive.as_millis(),
        max = args.devices.max(1),
        video = if args.video.is_some() { "all" } else { "off" },
        last_port = 30000 + (args.devices as usize * args.channels.max(1) * 2).min(35_000),
    );
    std::fs::write(&config, toml).map_err(|e| ScenarioError::io(&config, e))?;
    let mut service = Child::spawn(
        "service",
        &bin,
        &[
            "serve".into(),
            "--config".into(),
            config.display().to_string(),
        ],
        &[
            (PASSWORD_ENV.into(), admin_password.clone()),
            (GB_ENV.into(), gb_password.clone()),
            ("RUST_LOG".into(), "warn".into()),
        ],
        &work.join("service.log"),
    )?;
    let t = Instant::now();
    let api = loop {
        if let Ok(api) = Api::login(web_port, ADMIN, &admin_password).await {
            break api;
        }
        if let Some(why) = service.exited() {
            return Err(service.failure(&format!("exited before it answered ({why})")));
        }
        if t.elapsed() > Duration::from_secs(60) || cancel.is_cancelled() {
            return Err(service.failure("no API in 60 s"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let pid = service.pid();
    // The idle service's own CPU (health poller, timers), taken off the keepalive figure.
    let idle_window = (args.measure / 2).min(Duration::from_secs(10));
    let i0 = procfs::sample(pid).ok_or_else(|| service.failure("gone"))?;
    let it = Instant::now();
    tokio::time::sleep(idle_window).await;
    let i1 = procfs::sample(pid).ok_or_else(|| service.failure("gone"))?;
    let hz = procfs::clock_ticks();
    let idle_share = (i1.ticks - i0.ticks) as f64 / hz / it.elapsed().as_secs_f64();
    let before = i1;

    let transport = match args.transport {
        crate::camsim::gb::GbTransport::Udp => "udp",
        crate::camsim::gb::GbTransport::Tcp => "tcp",
    };
    let mut camsim_args: Vec<String> = vec![
        "camsim".into(),
        "--gb28181".into(),
        args.devices.to_string(),
        "--gb-platform".into(),
        format!("127.0.0.1:{sip_port}"),
        "--gb-transport".into(),
        transport.into(),
        "--gb-keepalive".into(),
        format!("{}ms", args.keepalive.as_millis()),
        "--gb-channels".into(),
        args.channels.to_string(),
    ];
    if let Some(video) = &args.video {
        camsim_args.extend(["--gb-video".into(), video.display().to_string()]);
    }
    let started = Instant::now();
    let mut camsim = Child::spawn(
        "camsim",
        &bin,
        &camsim_args,
        &[
            (GB_ENV.into(), gb_password),
            ("RUST_LOG".into(), "warn".into()),
        ],
        &work.join("camsim.log"),
    )?;
    let n = u64::from(args.devices);
    let complete = |v: &serde_json::Value| {
        v["items"].as_array().map_or(0, |items| {
            items
                .iter()
                .filter(|d| {
                    d["state"] == "online"
                        && d["catalog_entries"].as_u64() == Some(args.channels as u64)
                })
                .count() as u64
        })
    };
    let limit = Duration::from_secs(60) + Duration::from_millis(200) * args.devices;
    loop {
        if cancel.is_cancelled() {
            return Err(ScenarioError::Setup("cancelled".into()));
        }
        if let Some(why) = camsim.exited() {
            return Err(camsim.failure(&format!("exited ({why})")));
        }
        let v = api
            .get_json("/api/gb28181/devices")
            .await
            .unwrap_or_default();
        if complete(&v) == n {
            break;
        }
        if started.elapsed() > limit {
            return Err(service.failure(&format!(
                "{} of {n} devices registered with their catalog in {limit:?}",
                complete(&v)
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let registered_s = started.elapsed().as_secs_f64();
    let after_reg = procfs::sample(pid).ok_or_else(|| service.failure("gone"))?;
    let cpu_ms_per_registration = (after_reg.ticks - before.ticks) as f64 / hz * 1000.0 / n as f64;

    // Keepalives: skip one interval so registration's tail is not counted.
    tokio::time::sleep(args.keepalive).await;
    let kept = |m: &super::api::Metrics| {
        m.sum(
            crate::telemetry::metrics::GB_REQUESTS,
            &[("kind", "keepalive")],
        ) as u64
    };
    let m0 = api.metrics().await.map_err(ScenarioError::Http)?;
    let s0 = procfs::sample(pid).ok_or_else(|| service.failure("gone"))?;
    let c0 = procfs::sample(camsim.pid()).map_or(0, |s| s.ticks);
    let t0 = Instant::now();
    tokio::time::sleep(args.measure).await;
    let m1 = api.metrics().await.map_err(ScenarioError::Http)?;
    let s1 = procfs::sample(pid).ok_or_else(|| service.failure("gone"))?;
    // The channels' video, as the camera list has it at the end of the window.
    let (streams, fps_in) = if args.video.is_some() {
        let cams = api.get_json("/api/cameras").await.unwrap_or_default();
        let gb: Vec<f64> = cams
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|c| c["source"] == "gb28181")
                    .map(|c| c["fps_in"].as_f64().unwrap_or(0.0))
                    .collect()
            })
            .unwrap_or_default();
        (
            Some(gb.iter().filter(|f| **f > 1.0).count() as u64),
            Some(gb.iter().sum::<f64>()),
        )
    } else {
        (None, None)
    };
    let channels = n * args.channels as u64;
    let c1 = procfs::sample(camsim.pid()).map_or(0, |s| s.ticks);
    let secs = t0.elapsed().as_secs_f64();
    let keepalives = kept(&m1).saturating_sub(kept(&m0));
    let cpu_s = ((s1.ticks - s0.ticks) as f64 / hz - idle_share * secs).max(0.0);
    let cpu_us_per_keepalive = cpu_s * 1e6 / keepalives.max(1) as f64;
    let online = m1.sum(
        crate::telemetry::metrics::GB_DEVICES,
        &[("state", "online")],
    ) as u64;
    let report = GbReport {
        command,
        devices: args.devices,
        transport: transport.into(),
        keepalive_s: args.keepalive.as_secs_f64(),
        registered_s,
        online,
        cpu_ms_per_registration,
        keepalives,
        cpu_us_per_keepalive,
        idle_cpu_share: idle_share,
        cpu_share_keepalive: cpu_s / secs,
        cpu_share_per_1000_at_60s: cpu_us_per_keepalive * 1000.0 / 60.0 / 1e6,
        rss_kib_per_device: (s1.rss_kb as f64 - before.rss_kb as f64) / n as f64,
        camsim_cpu_share: (c1.saturating_sub(c0)) as f64 / hz / secs,
        streams,
        cpu_share_per_stream: streams.map(|s| cpu_s / secs / s.max(1) as f64),
        fps_in,
        pass: online == n
            && keepalives as f64 >= 0.8 * n as f64 * secs / args.keepalive.as_secs_f64()
            && streams.is_none_or(|s| s == channels),
    };
    camsim.stop();
    service.stop();
    super::cluster::write_report(&args.out, &report, &markdown(&report))?;
    Ok(report)
}

/// The report as Markdown.
pub fn markdown(r: &GbReport) -> String {
    let video = match (r.streams, r.cpu_share_per_stream, r.fps_in) {
        (Some(s), Some(c), Some(f)) => format!(
            "| video streams flowing (PS over RTP, keyframes decoded) | {s} ({f:.0} frames/s in all) |\n\
             | service CPU per stream (keepalives included) | {:.2} % of a core |\n",
            c * 100.0
        ),
        _ => String::new(),
    };
    let table = format!(
        "# GB/T 28181 signalling: {} devices over {}, keepalive {} s — {}\n\n`{}`\n\n\
         | what | figure |\n|---|---|\n\
         | every device online with its catalog | {:.1} s |\n\
         | service CPU per registration (401, REGISTER, DeviceInfo, catalog) | {:.2} ms |\n\
         | keepalives measured | {} |\n\
         | service CPU per keepalive (the idle service's {:.2} % of a core taken off) | {:.0} µs |\n\
         | service CPU while keeping alive | {:.1} % of a core |\n\
         | 1,000 devices at a 60 s interval | {:.2} % of a core |\n\
         | service RSS per device | {:.1} KiB |\n\
         | camsim CPU while keeping alive | {:.1} % of a core |\n",
        r.devices,
        r.transport,
        r.keepalive_s,
        if r.pass { "PASS" } else { "FAIL" },
        r.command,
        r.registered_s,
        r.cpu_ms_per_registration,
        r.keepalives,
        r.idle_cpu_share * 100.0,
        r.cpu_us_per_keepalive,
        r.cpu_share_keepalive * 100.0,
        r.cpu_share_per_1000_at_60s * 100.0,
        r.rss_kib_per_device,
        r.camsim_cpu_share * 100.0,
    );
    table + &video
}
