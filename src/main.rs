//! The `qianliyan` command: `camsim`, `check-config`, and (as stages land) the service itself.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

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
    /// Measure the whole service against camsim.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Subcommand, Debug)]
enum BenchCommand {
    /// Scale, soak or overload: camsim and the service as child processes, scripted faults,
    /// JSON + Markdown report with a verdict per criterion (exit 1 when one fails).
    Scenario(qianliyan::scenario::Args),
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
    #[arg(long)]
    source: PathBuf,
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    match cli.command {
        Command::Camsim(args) => run_camsim(args),
        Command::CheckConfig { file } => check_config(&file),
        Command::Serve(args) => serve(args),
        Command::Bench(BenchCommand::Scenario(args)) => bench_scenario(&args),
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
    let opts = camsim::Options {
        cameras: args.cameras,
        source: args.source,
        sub_source: args.sub_source,
        rtsp_listen: SocketAddr::new(args.bind, args.rtsp_port),
        control_listen: SocketAddr::new(args.bind, args.control_port),
        udp_port: args.udp_port,
        auth: args
            .user
            .zip(args.password)
            .map(|(u, p)| camsim::Auth::new(u, p, args.auth)),
        transports: args.transports,
    };
    let result = runtime().and_then(|rt| {
        rt.block_on(async {
            let cancel = qianliyan::shutdown::install();
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

fn check_config(file: &std::path::Path) -> ExitCode {
    match qianliyan::settings::load(file) {
        Ok(cfg) => {
            println!("{}: OK", file.display());
            println!("{}", cfg.config.summary());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{}: {} error(s)", file.display(), errors.len());
            eprintln!("{errors}");
            ExitCode::from(2)
        }
    }
}
