//! The `LISTEN` side of the wake-up: `publish` sends `NOTIFY` on commit (PostgreSQL);
//! this task wakes the table worker of the notified table at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sea_orm::DatabaseConnection;
use tokio::sync::{Notify, watch};

use super::NOTIFY_CHANNEL;
use super::relay::Shared;

/// Wakes the table workers when a publishing transaction commits (PostgreSQL
/// `LISTEN`); reconnects after failures, while the workers keep polling.
pub(crate) async fn listen(
    db: DatabaseConnection,
    wakers: HashMap<String, Arc<Notify>>,
    retry: Duration,
    mut stopped: watch::Receiver<bool>,
    shared: Arc<Shared>,
) {
    use sea_orm::sqlx::postgres::PgListener;
    use std::sync::atomic::Ordering::Relaxed;
    while !*stopped.borrow() {
        let pool = db.get_postgres_connection_pool().clone();
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                shared.error(format!("cannot LISTEN for outbox commits: {e}; polling"));
                tokio::select! {
                    _ = tokio::time::sleep(retry) => continue,
                    _ = stopped.changed() => break,
                }
            }
        };
        if let Err(e) = listener.listen(NOTIFY_CHANNEL).await {
            shared.error(format!("cannot LISTEN on `{NOTIFY_CHANNEL}`: {e}; polling"));
            tokio::time::sleep(retry).await;
            continue;
        }
        shared.listening.store(true, Relaxed);
        // Anything committed while we were not listening is picked up now.
        wakers.values().for_each(|w| w.notify_one());
        loop {
            tokio::select! {
                n = listener.recv() => match n {
                    Ok(n) => {
                        if let Some(w) = wakers.get(n.payload()) {
                            w.notify_one();
                        }
                    }
                    Err(e) => {
                        shared.error(format!("LISTEN connection lost: {e}; reconnecting"));
                        break;
                    }
                },
                _ = stopped.changed() => break,
            }
        }
        shared.listening.store(false, Relaxed);
    }
}
