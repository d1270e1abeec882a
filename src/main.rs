//! The `qianliyan` command: `camsim`, `check-config`, and (as stages land) the service itself.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use qianliyan::camsim;
use qianliyan::telemetry::{self, LogFormat};

/// 千里眼 qianliyan — camera health, analysis and alerts for command centres.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Log format (level via RUST_LOG, e.g. RUST_LOG=qianliyan=debug).
    #[arg(long, value_enum, default_value = "human", global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start; boxing the larger argument sets would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum Command {
    /// Run the RTSP camera simulator: N cameras from one video file, with fault injection.
    Camsim(CamsimArgs),
    /// Run the service: ingest every camera, track health, serve the API.
    Serve(ServeArgs),
    /// Validate a configuration file: every error with its field path (exit 2), or a summary.
    CheckConfig {
        /// The TOML configuration file.
        file: PathBuf,
    },
    /// Run a detector on still images (JSON: per image, `[x1, y1, x2, y2, score, kind]` boxes in the
    /// image's pixels), through the service's own preprocessing, decoding and label filter.
    Detect(DetectArgs),
    /// Measure the whole service against camsim.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Subcommand, Debug)]
enum BenchCommand {
    /// Scale, soak or overload: camsim and the service as child processes, scripted faults,
    /// JSON + Markdown report with a verdict per criterion (exit 1 when one fails).
    Scenario(Box<qianliyan::scenario::Args>),
    /// Several nodes on one private PostgreSQL: kill -9, SIGSTOP, cut off from the database, a
    /// rolling restart by SIGTERM; failover and hand-over times, JSON + Markdown report (exit 1
    /// when a criterion fails).
    Cluster(qianliyan::scenario::cluster::ClusterArgs),
    /// GB/T 28181 signalling: camsim's simulated devices register to the service and keep alive;
    /// the service's CPU per registration and per keepalive and its memory per device.
    Gb28181(qianliyan::scenario::gb::GbArgs),
}

#[derive(clap::Args, Debug)]
#[command(group = clap::ArgGroup::new("detector").required(true).args(["config", "model"]))]
struct DetectArgs {
    /// Use the first detector of this service configuration (its ONNX Runtime and model).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Or this model manifest (e.g. models/yolox_nano.toml); its file resolves against --assets.
    #[arg(long)]
    model: Option<PathBuf>,
    /// With --model: the assets directory (default `assets`).
    #[arg(long, default_value = "assets")]
    assets: PathBuf,
    /// Shrink each image into a frame of this size first (centred, black bars), as a camera's
    /// sub-stream carries it, e.g. 384x288.
    #[arg(long, value_parser = qianliyan::infer::detect::parse_size)]
    as_substream: Option<(u32, u32)>,
    /// Threads for ONNX Runtime (0 = one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// The images.
    #[arg(required = true)]
    images: Vec<PathBuf>,
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// The TOML configuration file.
    #[arg(long, short)]
    config: PathBuf,
    /// Override `web.listen`.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Override `node.data_dir`.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Replace the configured cameras by this CSV inventory.
    #[arg(long)]
    cameras: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
struct CamsimArgs {
    /// Number of cameras, served as rtsp://HOST:PORT/cam/0001 …
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    cameras: u32,
    /// Main-stream video file (H.264 or H.265 in MP4/MKV/TS), e.g. assets/video/vtest_main.mp4.
    /// Without it (and with --gb28181) only GB/T 28181 devices run, no RTSP server.
    #[arg(long, required_unless_present = "gb28181")]
    source: Option<PathBuf>,
    /// Optional sub-stream file, served as rtsp://HOST:PORT/cam/0001/sub.
    #[arg(long)]
    sub_source: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    bind: IpAddr,
    /// RTSP port.
    #[arg(long, default_value_t = 8554)]
    rtsp_port: u16,
    /// Control API port (fault injection).
    #[arg(long, default_value_t = 8555)]
    control_port: u16,
    /// UDP port for RTP (RTCP on the next one); 0 picks free ports.
    #[arg(long, default_value_t = 0)]
    udp_port: u16,
    /// Require this user name (with --password).
    #[arg(long, requires = "password")]
    user: Option<String>,
    /// Password for --user; better given through the environment than on the command line.
    #[arg(
        long,
        env = "QLY_CAMSIM_PASSWORD",
        hide_env_values = true,
        requires = "user"
    )]
    password: Option<String>,
    /// Challenge clients with Digest (default) or Basic; credentials of either scheme are accepted.
    #[arg(long, value_enum, default_value = "digest")]
    auth: camsim::AuthScheme,
    /// RTP transports to accept (tcp-only or udp-only simulate picky cameras).
    #[arg(long, value_enum, default_value = "both")]
    transports: camsim::TransportPolicy,
    /// Share of cameras (0–1) showing a quiet view (the source's background with sensor noise)
    /// instead of the source; 0 (the default) shows the source on every camera.
    #[arg(long, default_value_t = 0.0, value_parser = parse_share)]
    quiet_share: f64,
    /// How many quiet cameras get scripted bursts: the source's people for 10 s every 60 s (onsets
    /// in GET /cameras of the control API).
    #[arg(long, default_value_t = 0, requires = "quiet_share")]
    bursts: u32,
    /// Rate control of the quiet and burst clips: vbr (constant quality, as many cameras) or cbr.
    #[arg(long, value_enum, default_value = "vbr")]
    scene_rate_control: camsim::RateControl,
    /// GB/T 28181 devices to simulate: each registers to --gb-platform from a socket of its own,
    /// keeps alive and answers DeviceInfo and catalog queries.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    gb28181: Option<u32>,
    /// The platform's SIP address.
    #[arg(long, default_value = "127.0.0.1:5060")]
    gb_platform: SocketAddr,
    /// The platform's 20-digit SIP id.
    #[arg(long, default_value = "34020000002000000001")]
    gb_platform_id: String,
    /// The first device's 20-digit id; the others follow it. An id of type 200
    /// (`34020000002000000101`) makes them lower platforms: catalogs with business groups,
    /// organisations and an NVR around the channels.
    #[arg(long, default_value = "34020000001180000001")]
    gb_first_id: String,
    /// Registration password of the devices.
    #[arg(long, env = "QLY_GB_PASSWORD", hide_env_values = true)]
    gb_password: Option<String>,
    /// SIP transport of the devices.
    #[arg(long, value_enum, default_value = "udp")]
    gb_transport: camsim::gb::GbTransport,
    /// Keepalive interval of the devices.
    #[arg(long, default_value = "60s", value_parser = qianliyan::time::parse_duration)]
    gb_keepalive: std::time::Duration,
    /// Cameras in each device's catalog.
    #[arg(long, default_value_t = 4)]
    gb_channels: usize,
    /// Catalog entries per MESSAGE (more channels: several pages).
    #[arg(long, default_value_t = 2)]
    gb_page_size: usize,
    /// The video the devices send when a channel is invited (PS over RTP); default: `--source`.
    /// Without either, INVITEs are refused (488).
    #[arg(long)]
    gb_video: Option<PathBuf>,
    /// Serve the devices' control API here (`GET /gb/devices`, `POST /gb/devices/{id}/fault`,
    /// `POST /gb/devices/{id}/alarm`).
    #[arg(long)]
    gb_control: Option<SocketAddr>,
}

/// A share between 0 and 1.
fn parse_share(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if (0.0..=1.0).contains(&x) => Ok(x),
        _ => Err(format!("{s:?} is not a share between 0 and 1")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    match cli.command {
        Command::Camsim(args) => run_camsim(args),
        Command::CheckConfig { file } => check_config(&file),
        Command::Detect(args) => detect(&args),
        Command::Serve(args) => serve(args),
        Command::Bench(BenchCommand::Scenario(args)) => bench_scenario(&args),
        Command::Bench(BenchCommand::Cluster(args)) => bench_cluster(&args),
        Command::Bench(BenchCommand::Gb28181(args)) => bench_gb(&args),
    }
}

fn bench_scenario(args: &qianliyan::scenario::Args) -> ExitCode {
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let result = runtime().and_then(|rt| {
        rt.block_on(async {
            let cancel = qianliyan::shutdown::install();
            Ok(qianliyan::scenario::run(args, command, cancel).await?)
        })
    });
    match result {
        Ok(report) => {
            let out = &report.settings.out;
            println!("{}", qianliyan::scenario::report::markdown(&report));
            println!(
                "wrote {} and {}",
                out.display(),
                out.with_extension("md").display()
            );
            if report.pass {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("bench scenario: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn bench_cluster(args: &qianliyan::scenario::cluster::ClusterArgs) -> ExitCode {
    use qianliyan::scenario::cluster as c;
    bench_report(
        "cluster",
        &args.out,
        |command, cancel| c::run(args, command, cancel),
        |r| (c::markdown(r), r.pass),
    )
}

fn bench_gb(args: &qianliyan::scenario::gb::GbArgs) -> ExitCode {
    use qianliyan::scenario::gb;
    bench_report(
        "gb28181",
        &args.out,
        |command, cancel| gb::run(args, command, cancel),
        |r| (gb::markdown(r), r.pass),
    )
}

/// Runs a bench that writes a report to `out`: prints its Markdown, exits 1 when it failed and 2
/// when it could not run.
fn bench_report<R, Fut>(
    name: &str,
    out: &std::path::Path,
    run: impl FnOnce(String, tokio_util::sync::CancellationToken) -> Fut,
    summary: impl Fn(&R) -> (String, bool),
) -> ExitCode
where
    Fut: std::future::Future<Output = Result<R, qianliyan::scenario::ScenarioError>>,
{
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let result = runtime().and_then(|rt| {
        rt.block_on(async {
            let cancel = qianliyan::shutdown::install();
            Ok(run(command, cancel).await?)
        })
    });
    match result {
        Ok(report) => {
            let (md, pass) = summary(&report);
            println!("{md}");
            println!(
                "wrote {} and {}",
                out.display(),
                out.with_extension("md").display()
            );
            if pass {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("bench {name}: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    let mut config = match qianliyan::settings::load(&args.config) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!(
                "{}: {} error(s)\n{errors}",
                args.config.display(),
                errors.len()
            );
            return ExitCode::from(2);
        }
    };
    if let Some(csv) = &args.cameras {
        let bytes = match std::fs::read(csv) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("--cameras {}: {e}", csv.display());
                return ExitCode::from(2);
            }
        };
        let label = csv.display().to_string();
        let (cameras, errors) =
            qianliyan::config::import_csv_cameras(&label, &bytes, &config.config);
        for e in &errors {
            eprintln!("{e}");
        }
        if !errors.is_empty() {
            return ExitCode::from(2);
        }
        config.config.cameras = cameras;
    }
    let overrides = qianliyan::app::Overrides {
        listen: args.listen,
        data_dir: args.data_dir,
    };
    let result = runtime().and_then(|rt| {
        rt.block_on(async {
            let cancel = qianliyan::shutdown::install();
            let service = qianliyan::app::start(config, overrides, cancel.clone()).await?;
            cancel.cancelled().await;
            service.stop().await;
            Ok(())
        })
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("serve: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("qly-rt")
        .build()?)
}

fn run_camsim(args: CamsimArgs) -> ExitCode {
    let gb = match (args.gb28181, &args.gb_password) {
        (Some(n), Some(password)) => Some((
            camsim::gb::GbDeviceOptions {
                platform: args.gb_platform,
                platform_id: args.gb_platform_id.clone(),
                id: args.gb_first_id.clone(),
                password: password.clone(),
                transport: args.gb_transport,
                keepalive: args.gb_keepalive,
                expires: 3600,
                channels: args.gb_channels,
                page_size: args.gb_page_size,
                media: None,
            },
            n as usize,
        )),
        (Some(_), None) => {
            eprintln!(
                "camsim: --gb28181 needs the devices' password: --gb-password or QLY_GB_PASSWORD"
            );
            return ExitCode::from(2);
        }
        (None, _) => None,
    };
    let Some(source) = args.source else {
        // GB/T 28181 devices only.
        let result = runtime().and_then(|rt| {
            rt.block_on(async {
                let cancel = qianliyan::shutdown::install();
                let (mut template, n) = gb.expect("clap requires --source or --gb28181");
                if let Some(video) = args.gb_video.clone() {
                    template.media = Some(camsim::prepare_video(video, &cancel).await?);
                }
                let devices = Arc::new(camsim::gb::run_devices(template, n, cancel.clone()).await?);
                if let Some(addr) = args.gb_control {
                    camsim::gb_control::serve(addr, devices.clone(), cancel.clone()).await?;
                }
                cancel.cancelled().await;
                Ok::<_, anyhow::Error>(())
            })
        });
        return match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("camsim: {e:#}");
                ExitCode::FAILURE
            }
        };
    };
    let opts = camsim::Options {
        cameras: args.cameras,
        source,
        sub_source: args.sub_source,
        rtsp_listen: SocketAddr::new(args.bind, args.rtsp_port),
        control_listen: SocketAddr::new(args.bind, args.control_port),
        udp_port: args.udp_port,
        auth: args
            .user
            .zip(args.password)
            .map(|(u, p)| camsim::Auth::new(u, p, args.auth)),
        transports: args.transports,
        scenes: camsim::Scenes {
            quiet_share: args.quiet_share,
            bursts: args.bursts,
            rate_control: args.scene_rate_control,
        },
    };
    let result = runtime().and_then(|rt| {
        rt.block_on(async {
            let cancel = qianliyan::shutdown::install();
            let _devices = match gb {
                Some((mut template, n)) => {
                    let video = args.gb_video.clone().unwrap_or(opts.source.clone());
                    template.media = Some(camsim::prepare_video(video, &cancel).await?);
                    let devices =
                        Arc::new(camsim::gb::run_devices(template, n, cancel.clone()).await?);
                    if let Some(addr) = args.gb_control {
                        camsim::gb_control::serve(addr, devices.clone(), cancel.clone()).await?;
                    }
                    Some(devices)
                }
                None => None,
            };
            camsim::run(opts, cancel).await.map_err(anyhow::Error::from)
        })
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("camsim: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn detect(args: &DetectArgs) -> ExitCode {
    use qianliyan::infer::{ModelManifest, ModelRunner, OrtRuntime, SessionConfig};
    let fail = |message: String| {
        eprintln!("qianliyan detect: {message}");
        ExitCode::from(2)
    };
    let (library, manifest) = if let Some(file) = &args.config {
        let settings = match qianliyan::settings::load(file) {
            Ok(s) => s,
            Err(errors) => return fail(format!("{}: {errors}", file.display())),
        };
        let Some(analysis) = settings.analysis else {
            return fail(format!("{}: no [inference] section", file.display()));
        };
        let Some(m) = analysis
            .manifests
            .iter()
            .find(|m| m.detector().is_some())
            .cloned()
        else {
            return fail(format!(
                "{}: no detector among inference.models",
                file.display()
            ));
        };
        (analysis.inference.ort_library.clone(), m)
    } else {
        let Some(path) = &args.model else {
            return fail("give --config or --model".into());
        };
        match ModelManifest::load(path, &args.assets) {
            Ok(m) if m.detector().is_some() => (
                args.assets.join("onnxruntime/libonnxruntime.so"),
                std::sync::Arc::new(m),
            ),
            Ok(m) => {
                return fail(format!(
                    "{}: model {} is not a detector",
                    path.display(),
                    m.name
                ));
            }
            Err(e) => return fail(e.to_string()),
        }
    };
    let runner = OrtRuntime::init(&library).and_then(|rt| {
        ModelRunner::new(
            rt,
            manifest,
            &SessionConfig {
                intra_threads: args.threads,
                ..SessionConfig::default()
            },
        )
    });
    let mut runner = match runner {
        Ok(r) => r,
        Err(e) => return fail(e.to_string()),
    };
    match qianliyan::infer::detect::detect_images(&mut runner, &args.images, args.as_substream) {
        Ok(found) => match serde_json::to_string_pretty(&found) {
            Ok(json) => {
                println!("{json}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(e.to_string()),
        },
        Err(e) => fail(e.to_string()),
    }
}

fn check_config(file: &std::path::Path) -> ExitCode {
    match qianliyan::settings::load(file) {
        Ok(cfg) => {
            println!("{}: OK", file.display());
            println!("{}", cfg.config.summary());
            if let Some(gb) = &cfg.gb28181 {
                println!("{}", gb.summary());
            }
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{}: {} error(s)", file.display(), errors.len());
            eprintln!("{errors}");
            ExitCode::from(2)
        }
    }
}
