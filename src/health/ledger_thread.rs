//! The ledger's thread and its handle. In: [`LedgerCmd`]s on a bounded queue that `app.rs` creates
//! (senders wait when it is full: transitions are the online-rate record and are never dropped).
//! Out: rows in the ledger; answers to availability and history queries on one-shot channels.

use std::time::SystemTime;

use tokio::sync::{mpsc, oneshot};

use super::{AvailabilityRow, GroupBy, Ledger, Transition};
use crate::config::Camera;

/// A request to the ledger thread (made by [`LedgerHandle`]; opaque to everyone else).
pub struct LedgerCmd(Cmd);

enum Cmd {
    Record(Box<Transition>),
    Heartbeat(SystemTime),
    Upsert(Box<Camera>),
    Remove(String),
    Availability {
        from: SystemTime,
        to: SystemTime,
        group_by: GroupBy,
        reply: oneshot::Sender<Result<Vec<AvailabilityRow>, String>>,
    },
    History {
        camera: String,
        limit: usize,
        reply: oneshot::Sender<Result<Vec<Transition>, String>>,
    },
}

/// A handle to the ledger thread.
#[derive(Clone)]
pub struct LedgerHandle {
    tx: mpsc::Sender<LedgerCmd>,
}

impl LedgerHandle {
    /// A handle sending to the ledger thread's queue (created by `app.rs`, bounded).
    pub fn new(tx: mpsc::Sender<LedgerCmd>) -> Self {
        Self { tx }
    }

    /// Marks the service alive at `now` (the ledger closes its runs at the last heartbeat).
    pub async fn heartbeat(&self, now: SystemTime) {
        self.send(Cmd::Heartbeat(now)).await;
    }

    async fn send(&self, cmd: Cmd) {
        if self.tx.send(LedgerCmd(cmd)).await.is_err() {
            tracing::error!("ledger thread is gone; a ledger write was lost");
        }
    }

    /// Persists a transition (waits if the ledger is behind).
    pub async fn record(&self, t: Transition) {
        self.send(Cmd::Record(Box::new(t))).await;
    }

    /// Stores a camera's descriptive fields (area, jurisdiction) for roll-ups.
    pub async fn upsert_camera(&self, c: &Camera) {
        self.send(Cmd::Upsert(Box::new(c.clone()))).await;
    }

    /// Marks a camera removed (its history stays).
    pub async fn remove_camera(&self, id: &str) {
        self.send(Cmd::Remove(id.to_owned())).await;
    }

    /// Time-weighted availability over `[from, to)`.
    pub async fn availability(
        &self,
        from: SystemTime,
        to: SystemTime,
        group_by: GroupBy,
    ) -> Result<Vec<AvailabilityRow>, String> {
        let (reply, rx) = oneshot::channel();
        self.send(Cmd::Availability {
            from,
            to,
            group_by,
            reply,
        })
        .await;
        rx.await.map_err(|_| "ledger thread stopped".to_owned())?
    }

    /// A camera's recent transitions, newest first.
    pub async fn history(&self, camera: &str, limit: usize) -> Result<Vec<Transition>, String> {
        let (reply, rx) = oneshot::channel();
        self.send(Cmd::History {
            camera: camera.to_owned(),
            limit,
            reply,
        })
        .await;
        rx.await.map_err(|_| "ledger thread stopped".to_owned())?
    }
}

/// Runs the ledger on its own thread (SQLite blocks), serving `rx` until every handle is dropped.
pub fn spawn_ledger(
    mut ledger: Ledger,
    mut rx: mpsc::Receiver<LedgerCmd>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("ledger".into())
        .spawn(move || {
            while let Some(LedgerCmd(cmd)) = rx.blocking_recv() {
                let result = match cmd {
                    Cmd::Record(t) => ledger.record(&t).map_err(|e| e.to_string()),
                    Cmd::Heartbeat(now) => ledger.heartbeat(now).map_err(|e| e.to_string()),
                    Cmd::Upsert(c) => ledger.upsert_camera(&c).map_err(|e| e.to_string()),
                    Cmd::Remove(id) => ledger.remove_camera(&id).map_err(|e| e.to_string()),
                    Cmd::Availability {
                        from,
                        to,
                        group_by,
                        reply,
                    } => {
                        let _ = reply.send(
                            ledger
                                .availability(from, to, group_by, SystemTime::now())
                                .map_err(|e| e.to_string()),
                        );
                        Ok(())
                    }
                    Cmd::History {
                        camera,
                        limit,
                        reply,
                    } => {
                        let _ =
                            reply.send(ledger.history(&camera, limit).map_err(|e| e.to_string()));
                        Ok(())
                    }
                };
                if let Err(e) = result {
                    tracing::error!(error = %e, "ledger write failed");
                }
            }
        })
}
