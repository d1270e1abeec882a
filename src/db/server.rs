//! A private PostgreSQL for tests and benches: `initdb` in a temporary directory, `postgres` on a
//! free port of 127.0.0.1, stopped (fast shutdown) and removed on drop. Never the system cluster.
//!
//! The binaries come from Debian's `postgresql` package (`/usr/lib/postgresql/<version>/bin`, the
//! newest there) or from `QLY_PG_BIN`. PostgreSQL refuses to run as root: as root, the directory is
//! handed to the `postgres` user and the commands run through `runuser`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running private PostgreSQL.
pub struct PrivatePostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    as_postgres: bool,
    child: Option<Child>,
    port: u16,
}

impl std::fmt::Debug for PrivatePostgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivatePostgres")
            .field("dir", &self.dir.path())
            .field("port", &self.port)
            .finish()
    }
}

/// The directory holding `initdb` and `postgres`.
pub fn find_bin() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("QLY_PG_BIN") {
        let dir = PathBuf::from(dir);
        return if dir.join("postgres").is_file() {
            Ok(dir)
        } else {
            Err(format!("QLY_PG_BIN={}: no postgres there", dir.display()))
        };
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|e| {
            format!("/usr/lib/postgresql: {e} (install Debian's postgresql: scripts/setup does)")
        })?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, b)| b)
        .ok_or_else(|| "no PostgreSQL under /usr/lib/postgresql (install Debian's postgresql: scripts/setup does)".into())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

impl PrivatePostgres {
    /// Creates and starts one; its database `qianliyan` is empty, its user `qianliyan` trusted
    /// from 127.0.0.1 (no password: nothing else can reach it).
    pub fn start() -> Result<PrivatePostgres, String> {
        Self::start_with(false)
    }

    /// The same with every commit flushed to disk (`fsync`, `synchronous_commit` on), as a
    /// production server runs: for benches that compare it with SQLite's `synchronous=FULL`.
    pub fn start_durable() -> Result<PrivatePostgres, String> {
        Self::start_with(true)
    }

    fn start_with(durable: bool) -> Result<PrivatePostgres, String> {
        let bin = find_bin()?;
        let dir = tempfile::Builder::new()
            .prefix("qly-pg-")
            .tempdir()
            .map_err(|e| format!("temporary directory: {e}"))?;
        let as_postgres = is_root();
        if as_postgres {
            let status = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(dir.path())
                .status()
                .map_err(|e| format!("chown: {e}"))?;
            if !status.success() {
                return Err(format!(
                    "chown postgres {}: {status} (is there a postgres user? install Debian's postgresql)",
                    dir.path().display()
                ));
            }
        }
        let mut server = PrivatePostgres {
            port: 0,
            dir,
            bin,
            as_postgres,
            child: None,
        };
        let data = server.data();
        let out = server
            .command("initdb")
            .arg("-D")
            .arg(&data)
            .args([
                "-A",
                "trust",
                "-U",
                "qianliyan",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        server.port = free_port()?;
        let child = server
            .command("postgres")
            .arg("-D")
            .arg(&data)
            .args([
                "-p",
                &server.port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
            ])
            .arg("-k")
            .arg(server.dir.path())
            .args(if durable {
                ["-c", "fsync=on", "-c", "synchronous_commit=on"]
            } else {
                ["-c", "fsync=off", "-c", "synchronous_commit=off"]
            })
            .args(["-c", "max_connections=200"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(server.dir.path().join("server.log"))
                    .map_err(|e| format!("server.log: {e}"))?,
            ))
            .spawn()
            .map_err(|e| format!("postgres: {e}"))?;
        server.child = Some(child);
        server.wait_ready(Duration::from_secs(30))?;
        let mut admin = postgres::Client::connect(&server.url_of("postgres"), postgres::NoTls)
            .map_err(|e| format!("connecting: {e}"))?;
        admin
            .batch_execute("CREATE DATABASE qianliyan")
            .map_err(|e| format!("CREATE DATABASE: {e}"))?;
        Ok(server)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, program: &str) -> Command {
        let exe = self.bin.join(program);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        }
    }

    fn url_of(&self, db: &str) -> String {
        format!("postgres://qianliyan@127.0.0.1:{}/{db}", self.port)
    }

    /// The connection URL of its `qianliyan` database.
    pub fn url(&self) -> String {
        self.url_of("qianliyan")
    }

    /// A fresh empty database on it (one per test), as a URL.
    pub fn database(&self, name: &str) -> Result<String, String> {
        let mut admin = postgres::Client::connect(&self.url_of("postgres"), postgres::NoTls)
            .map_err(|e| format!("connecting: {e}"))?;
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .map_err(|e| format!("CREATE DATABASE {name}: {e}"))?;
        Ok(self.url_of(name))
    }

    /// The server's log so far (for a failing test's message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    fn wait_ready(&mut self, limit: Duration) -> Result<(), String> {
        let t0 = Instant::now();
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(format!("postgres exited ({status}): {}", self.log()));
            }
            if postgres::Client::connect(&self.url_of("postgres"), postgres::NoTls).is_ok() {
                return Ok(());
            }
            if t0.elapsed() > limit {
                return Err(format!(
                    "postgres not ready after {limit:?}: {}",
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn postmaster_pid(&self) -> Option<i32> {
        let text = std::fs::read_to_string(self.data().join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("free port: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("free port: {e}"))
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        // Fast shutdown (SIGINT) of the postmaster itself (under runuser, the child is runuser).
        if let Some(pid) = self.postmaster_pid() {
            // SAFETY: kill with a pid read from the server's own pid file; at worst ESRCH.
            unsafe {
                libc::kill(pid, libc::SIGINT);
            }
        }
        if let Some(mut child) = self.child.take() {
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
