//! One shutdown tree: the first SIGINT/SIGTERM cancels the root token (stages drain and flush),
//! a second one exits at once.

use tokio_util::sync::CancellationToken;

/// Exit code used when a second signal cuts the drain short.
pub const FORCED_EXIT_CODE: i32 = 130;

/// Spawns the signal watcher and returns the root cancellation token.
pub fn install() -> CancellationToken {
    let root = CancellationToken::new();
    let token = root.clone();
    tokio::spawn(async move {
        wait_signal().await;
        tracing::info!("shutting down (send the signal again to exit at once)");
        token.cancel();
        wait_signal().await;
        tracing::warn!("second signal: exiting now");
        std::process::exit(FORCED_EXIT_CODE);
    });
    root
}

async fn wait_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
