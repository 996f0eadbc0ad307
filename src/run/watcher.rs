//! Watching a namespace that another process runs: no lock, nothing run,
//! nothing changed. The holder publishes its status snapshot in
//! PostgreSQL (see [`persist_status`]) and notifies; a watcher reads it on
//! each notification (so it is at most the holder's publishing interval
//! behind, about a second) and every few seconds regardless, to notice a
//! holder that went away.

use super::Services;
use crate::config::Config;
use crate::error::Result;
use crate::pipeline::PipelineStatus;
use crate::store::{Db, Published};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The holder publishes at most this often.
pub(crate) const PUBLISH_EVERY: Duration = Duration::from_secs(1);
/// A watcher reads the published state at least this often.
const READ_EVERY: Duration = Duration::from_secs(5);

/// Publishes the snapshot in PostgreSQL for watchers: on each change, at
/// most every [`PUBLISH_EVERY`]; nothing while nothing changes; the last
/// snapshot once the pipeline is gone.
pub(crate) async fn persist_status(db: Db, mut status: watch::Receiver<PipelineStatus>) {
    loop {
        let gone = status.changed().await.is_err();
        let s = status.borrow_and_update().clone();
        if let Err(e) = db.lock_held() {
            // Not while the lock is lost: another process may hold the
            // namespace and publish its own.
            tracing::debug!(error = %e, "status not published");
        } else if let Err(e) = db.publish_status(&s).await {
            tracing::debug!(error = %e, "could not publish the status for watchers");
        }
        if gone {
            return;
        }
        tokio::time::sleep(PUBLISH_EVERY).await;
    }
}

/// A watcher's view of a namespace.
pub(crate) struct Watch {
    pub(crate) services: Services,
    published: watch::Receiver<Published>,
    task: JoinHandle<()>,
}

impl Watch {
    /// Opens the namespace without its lock and starts following what its
    /// holder publishes.
    pub(crate) async fn attach(cfg: &Config) -> Result<Watch> {
        let services = Services::open_existing(cfg).await?;
        let first = services.db.published().await?;
        let (tx, published) = watch::channel(first);
        let db = services.db.clone();
        let task = tokio::spawn(follow(db, tx));
        Ok(Watch {
            services,
            published,
            task,
        })
    }

    /// What the holder published (snapshot, who, whether it still holds).
    pub(crate) fn published(&self) -> watch::Receiver<Published> {
        self.published.clone()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads the published state on each notification and every
/// [`READ_EVERY`], sending it on when it changed.
async fn follow(db: Db, tx: watch::Sender<Published>) {
    let mut listener = None;
    loop {
        if listener.is_none() {
            let l = async {
                let mut l = sqlx::postgres::PgListener::connect_with(&db.pool).await?;
                l.listen(&db.status_channel()).await?;
                Ok::<_, sqlx::Error>(l)
            };
            listener = l
                .await
                .inspect_err(|e| tracing::debug!(error = %e, "watch: cannot LISTEN"))
                .ok();
        }
        let woke = async {
            match listener.as_mut() {
                Some(l) => l.recv().await.map(|_| ()),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = woke => if r.is_err() { listener = None; },
            _ = tokio::time::sleep(READ_EVERY) => {}
            _ = tx.closed() => return,
        }
        match db.published().await {
            Ok(p) => {
                tx.send_if_modified(|cur| {
                    if *cur == p {
                        false
                    } else {
                        *cur = p;
                        true
                    }
                });
            }
            Err(e) => tracing::debug!(error = %e, "watch: cannot read the published status"),
        }
    }
}
