//! Telemetry: tracing initialisation (human or JSON lines, level from `RUST_LOG`).

pub mod metrics;

use tracing_subscriber::EnvFilter;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Installs the global subscriber; `RUST_LOG` overrides the default `info` level. The SIP stack
/// (`rsipstack`, which logs every message it receives at `info`) stays at `warn` unless `RUST_LOG`
/// names it.
pub fn init(format: LogFormat) {
    let named = std::env::var("RUST_LOG").is_ok_and(|v| v.contains("rsipstack"));
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // The SIP stack logs whole messages (digest answers included) at `info`: quiet unless asked for
    // by name.
    if !named && let Ok(d) = "rsipstack=warn".parse() {
        filter = filter.add_directive(d);
    }
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    // A second init (tests) is harmless: keep the first subscriber.
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
