//! The session lock of a relay instance name (PostgreSQL): held on a dedicated connection
//! while the relay runs, so a restarted process of the same name knows its predecessor is
//! gone (and may reclaim its leases at once) and a live twin is detected.

use std::time::Duration;

use sea_orm::DatabaseConnection;
use tokio::sync::watch;

/// Holds the session-level advisory lock of an instance name on a dedicated connection
/// while the relay runs, re-taking it after connection losses. `true` on the channel
/// while held. PostgreSQL frees it when the holding process dies.
pub(crate) async fn hold_name_lock(
    db: DatabaseConnection,
    name: String,
    held: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
    check_every: Duration,
) {
    use sea_orm::sqlx::{self, Connection as _};
    let key = crate::util::stable_hash(&[b"kafka-orm relay instance", name.as_bytes()]) as i64;
    let mut warned = false;
    while !*stop.borrow() {
        let pool = db.get_postgres_connection_pool().clone();
        let conn = match pool.acquire().await {
            Ok(c) => c,
            Err(_) => {
                tokio::select! {
                    _ = tokio::time::sleep(check_every) => continue,
                    _ = stop.changed() => break,
                }
            }
        };
        // Off the pool: the lock lives as long as this connection, not a pooled one.
        let mut conn = conn.detach();
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(key)
            .fetch_one(&mut conn)
            .await
            .unwrap_or(false);
        held.send_replace(got);
        if !got && !warned {
            warned = true;
            tracing::warn!(instance = %name, "another live relay process uses this instance name; its unexpired leases are not reclaimed early");
        }
        // Not held: a crashed predecessor's session may end any moment; try again soon.
        let wait = if got {
            check_every
        } else {
            check_every.min(Duration::from_millis(200))
        };
        loop {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => {
                    let _ = conn.close().await;
                    held.send_replace(false);
                    return;
                }
            }
            let alive = sqlx::query_scalar::<_, i32>("SELECT 1")
                .fetch_one(&mut conn)
                .await
                .is_ok();
            if !alive {
                held.send_replace(false);
                break;
            }
            if !got {
                break; // try again: the other holder may be gone now
            }
        }
    }
    held.send_replace(false);
}
