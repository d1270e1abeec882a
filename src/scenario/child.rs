//! Child processes (camsim, the service): spawned with the open-file limit raised, stderr to a
//! log file, stopped with SIGTERM (then SIGKILL) however the runner leaves their scope.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::ScenarioError;

/// How long a child gets to exit after SIGTERM before it is killed (the service drains its
/// decoders and flushes the ledger).
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// A running child process.
pub struct Child {
    child: std::process::Child,
    name: String,
    log: PathBuf,
}

impl Child {
    /// Spawns `program args…` through bash with the soft open-file limit raised to the hard one
    /// (1,300 cameras need more than 1,024 descriptors); stderr goes to `log`.
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        env: &[(String, String)],
        log: &Path,
    ) -> Result<Child, ScenarioError> {
        let file = std::fs::File::create(log).map_err(|e| ScenarioError::io(log, e))?;
        let raise = r#"ulimit -Sn "$(ulimit -Hn)" 2>/dev/null; exec "$0" "$@""#;
        let mut cmd = Command::new("bash");
        cmd.args(["-c", raise]).arg(program).args(args);
        // The runner's camsim has no credentials; a password exported for the demo (the Makefile sets
        // one) would make camsim ask for --user.
        cmd.env_remove("QLY_CAMSIM_PASSWORD");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(file);
        let child = cmd.spawn().map_err(|e| ScenarioError::Child {
            name: name.to_owned(),
            detail: format!("cannot start {}: {e}", program.display()),
        })?;
        Ok(Child {
            child,
            name: name.to_owned(),
            log: log.to_owned(),
        })
    }

    /// Its process id (bash `exec`s the program, so this is the program's).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its stderr log.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// `Some(exit status)` once it has exited.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(e.to_string()),
        }
    }

    /// An error naming the child, its exit status and the tail of its log.
    pub fn failure(&mut self, what: &str) -> ScenarioError {
        let status = self.exited().unwrap_or_else(|| "still running".into());
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(12)..].join("\n");
        ScenarioError::Child {
            name: self.name.clone(),
            detail: format!("{what} ({status}); log {}:\n{tail}", self.log.display()),
        }
    }

    /// Sends `sig` (`-TERM`, …) without waiting; [`stop`](Self::stop) waits.
    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
    }

    /// SIGTERM, wait up to [`STOP_TIMEOUT`], then SIGKILL; returns seconds until it exited and
    /// whether it exited by itself.
    pub fn stop(&mut self) -> (f64, bool) {
        let t0 = Instant::now();
        if self.exited().is_some() {
            return (0.0, true);
        }
        self.signal("-TERM");
        while t0.elapsed() < STOP_TIMEOUT {
            if self.exited().is_some() {
                return (t0.elapsed().as_secs_f64(), true);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        tracing::warn!(child = %self.name, "did not exit {STOP_TIMEOUT:?} after SIGTERM; killing it");
        let _ = self.child.kill();
        let _ = self.child.wait();
        (t0.elapsed().as_secs_f64(), false)
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A local port that was free a moment ago (the child binds it right away).
pub fn free_port() -> Result<u16, ScenarioError> {
    std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| ScenarioError::Setup(format!("finding a free port: {e}")))
}
