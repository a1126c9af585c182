//! What one PostgreSQL instance says about itself: primary or standby, its timeline and how
//! much WAL it has received and replayed. Both instance-operation implementations ask this.
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection, Row};

use crate::failover::Lsn;
use crate::failover::decision::{Instance, Role};

/// An instance that does not answer within this is reported not alive.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Connects within [`PROBE_TIMEOUT`].
pub async fn connect(options: &PgConnectOptions) -> Result<PgConnection, sqlx::Error> {
    let options = options.clone().disable_statement_logging();
    tokio::time::timeout(PROBE_TIMEOUT, options.connect())
        .await
        .map_err(|_| sqlx::Error::PoolTimedOut)?
}

/// Probes the instance `name` at `options`; `None` when it does not answer.
pub async fn probe(name: &str, options: &PgConnectOptions) -> Option<Instance> {
    let mut c = connect(options).await.ok()?;
    let answer = tokio::time::timeout(PROBE_TIMEOUT, positions(&mut c)).await;
    let _ = c.close().await;
    let (role, received, replayed, timeline) = answer.ok()??;
    Some(Instance {
        name: name.to_owned(),
        alive: true,
        fenced: false,
        role,
        timeline,
        received,
        replayed,
    })
}

async fn positions(c: &mut PgConnection) -> Option<(Role, Lsn, Lsn, u32)> {
    let standby: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
        .fetch_one(&mut *c)
        .await
        .ok()?;
    if standby {
        // A standby whose receiver is down reports what it replayed, on the timeline of its
        // last restartpoint.
        let row = sqlx::query(
            "SELECT COALESCE(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::text AS received,
                    pg_last_wal_replay_lsn()::text AS replayed,
                    COALESCE((SELECT received_tli FROM pg_stat_wal_receiver),
                             (SELECT timeline_id FROM pg_control_checkpoint())) AS timeline",
        )
        .fetch_one(&mut *c)
        .await
        .ok()?;
        let received: String = row.try_get("received").ok()?;
        let replayed: String = row.try_get("replayed").ok()?;
        let timeline: i32 = row.try_get("timeline").ok()?;
        Some((
            Role::Standby,
            received.parse().ok()?,
            replayed.parse().ok()?,
            u32::try_from(timeline).ok()?,
        ))
    } else {
        let row = sqlx::query(
            "SELECT pg_current_wal_lsn()::text AS lsn,
                    pg_walfile_name(pg_current_wal_lsn()) AS walfile",
        )
        .fetch_one(&mut *c)
        .await
        .ok()?;
        let lsn: Lsn = row.try_get::<String, _>("lsn").ok()?.parse().ok()?;
        let walfile: String = row.try_get("walfile").ok()?;
        let timeline = u32::from_str_radix(walfile.get(..8)?, 16).ok()?;
        Some((Role::Primary, lsn, lsn, timeline))
    }
}

/// Ends recovery on the standby at `options` and waits until it accepts writes. The checkpoint
/// after it writes the new timeline to the control file, where pg_rewind reads it when a
/// former primary rejoins.
pub async fn promote(options: &PgConnectOptions) -> Result<(), String> {
    let mut c = connect(options).await.map_err(|e| e.to_string())?;
    let promoted: bool = sqlx::query_scalar("SELECT pg_promote(true, 60)")
        .fetch_one(&mut c)
        .await
        .map_err(|e| e.to_string())?;
    if !promoted {
        return Err("not promoted within 60 s".into());
    }
    sqlx::query("CHECKPOINT")
        .execute(&mut c)
        .await
        .map_err(|e| e.to_string())?;
    let _ = c.close().await;
    Ok(())
}
