//! The server side of change capture: checks that logical replication can work, the
//! publication and the replication slot, reading changes from the slot without consuming
//! them, and confirming (advancing) the slot once the lakehouse has committed.
//!
//! Changes are read with `pg_logical_slot_peek_binary_changes` over an ordinary connection:
//! it returns whole transactions only, never moves the slot by itself, and so replays the
//! same changes until Confluo confirms them with `pg_replication_slot_advance` — exactly the
//! "acknowledge after commit" the exactly-once protocol needs.

use bytes::Bytes;
use futures::TryStreamExt;
use sqlx::{PgConnection, Row};

use super::CdcError;
use super::pgoutput::{format_lsn, parse_lsn};
use crate::postgres::config::PostgresConfig;

/// Where a slot stands.
#[derive(Debug, Clone, PartialEq)]
pub struct SlotState {
    /// Everything before this is confirmed (applied to the lakehouse).
    pub confirmed_lsn: u64,
    /// The oldest WAL the slot keeps.
    pub restart_lsn: u64,
    /// The server's current WAL position.
    pub current_lsn: u64,
    /// Another session is reading the slot.
    pub active: bool,
}

impl SlotState {
    /// Bytes of WAL not yet applied to the lakehouse.
    pub fn lag_bytes(&self) -> u64 {
        self.current_lsn.saturating_sub(self.confirmed_lsn)
    }
    /// Bytes of WAL the slot makes the server keep.
    pub fn retained_bytes(&self) -> u64 {
        self.current_lsn.saturating_sub(self.restart_lsn)
    }
}

fn query_err(cfg: &PostgresConfig, what: &str) -> impl FnOnce(sqlx::Error) -> CdcError {
    let connection = cfg.name.clone();
    let what = what.to_string();
    move |e| {
        if is_disconnect(&e) {
            CdcError::Disconnected {
                connection,
                doing: what,
                message: db_message(&e),
            }
        } else {
            CdcError::Server {
                connection,
                message: format!("{what}: {}", db_message(&e)),
                hint: hint_for(&e),
            }
        }
    }
}

/// Whether a driver error means the connection is gone (network failure, server shutdown or
/// restart) rather than a statement that failed.
pub fn is_disconnect(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::PoolTimedOut => true,
        sqlx::Error::Database(d) => d
            .code()
            .is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
        _ => false,
    }
}

fn db_message(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(d) => d.message().to_string(),
        other => other.to_string(),
    }
}

fn hint_for(e: &sqlx::Error) -> String {
    let text = db_message(e);
    if text.contains("is active for PID") {
        "another Confluo process is reading this slot; stop it, or give this entry its own `slot`"
            .into()
    } else if text.contains("must be superuser or replication role")
        || text.contains("permission denied")
        || text.contains("must be owner")
    {
        "the user needs the REPLICATION attribute (ALTER ROLE <user> REPLICATION) and ownership of the published tables (or a publication created by their owner)".into()
    } else if text.contains("all replication slots are in use") {
        "raise max_replication_slots, or drop unused slots (SELECT slot_name FROM pg_replication_slots)".into()
    } else {
        "see the server's log for details".into()
    }
}

fn lsn(cfg: &PostgresConfig, text: &str) -> Result<u64, CdcError> {
    parse_lsn(text).ok_or_else(|| CdcError::Server {
        connection: cfg.name.clone(),
        message: format!("unexpected LSN `{text}`"),
        hint: "report this as a bug".into(),
    })
}

/// Checks what logical replication needs before anything is created: `wal_level = logical`
/// and a role that may replicate. The errors say how to fix the server.
pub async fn check_server(cfg: &PostgresConfig, conn: &mut PgConnection) -> Result<(), CdcError> {
    let level: String = sqlx::query_scalar("SHOW wal_level")
        .fetch_one(&mut *conn)
        .await
        .map_err(query_err(cfg, "reading wal_level"))?;
    if level != "logical" {
        return Err(CdcError::Server {
            connection: cfg.name.clone(),
            message: format!(
                "{}:{} has wal_level = {level}; change data capture needs logical",
                cfg.host, cfg.port
            ),
            hint: "ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL".into(),
        });
    }
    let may: bool = sqlx::query_scalar(
        "SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user",
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(query_err(cfg, "reading the role's attributes"))?;
    if !may {
        return Err(CdcError::Server {
            connection: cfg.name.clone(),
            message: format!("user `{}` may not use logical replication", cfg.user),
            hint: format!("ALTER ROLE \"{}\" REPLICATION;", cfg.user),
        });
    }
    Ok(())
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Creates the publication for these tables, or adds the ones it lacks.
pub async fn ensure_publication(
    cfg: &PostgresConfig,
    conn: &mut PgConnection,
    name: &str,
    tables: &[(String, String)],
) -> Result<(), CdcError> {
    // Flows of one pipeline update start together and share a table's publication: one at
    // a time looks and creates, under a lock the transaction's end releases.
    use sqlx::Connection;
    let mut tx = conn
        .begin()
        .await
        .map_err(query_err(cfg, "reading publications"))?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
        .bind(name)
        .execute(&mut *tx)
        .await
        .map_err(query_err(cfg, "reading publications"))?;
    let existing: Vec<(String, String)> = sqlx::query_as(
        "SELECT schemaname::text, tablename::text FROM pg_publication_tables WHERE pubname = $1",
    )
    .bind(name)
    .fetch_all(&mut *tx)
    .await
    .map_err(query_err(cfg, "reading publications"))?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)")
            .bind(name)
            .fetch_one(&mut *tx)
            .await
            .map_err(query_err(cfg, "reading publications"))?;
    let missing: Vec<String> = tables
        .iter()
        .filter(|t| !existing.contains(t))
        .map(|(s, t)| format!("{}.{}", quote_ident(s), quote_ident(t)))
        .collect();
    if missing.is_empty() && exists {
        return Ok(());
    }
    let sql = if exists {
        format!(
            "ALTER PUBLICATION {} ADD TABLE {}",
            quote_ident(name),
            missing.join(", ")
        )
    } else {
        format!(
            "CREATE PUBLICATION {} FOR TABLE {}",
            quote_ident(name),
            missing.join(", ")
        )
    };
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(&mut *tx)
        .await
        .map_err(query_err(cfg, &format!("creating publication `{name}`")))?;
    tx.commit()
        .await
        .map_err(query_err(cfg, &format!("creating publication `{name}`")))?;
    Ok(())
}

/// The slot's state, or `None` when it does not exist.
pub async fn slot_state(
    cfg: &PostgresConfig,
    conn: &mut PgConnection,
    slot: &str,
) -> Result<Option<SlotState>, CdcError> {
    let row = sqlx::query(
        "SELECT confirmed_flush_lsn::text, restart_lsn::text, pg_current_wal_lsn()::text, active, plugin::text, database::text \
         FROM pg_replication_slots WHERE slot_name = $1",
    )
    .bind(slot)
    .fetch_optional(&mut *conn)
    .await
    .map_err(query_err(cfg, "reading replication slots"))?;
    let Some(row) = row else { return Ok(None) };
    let plugin: Option<String> = row.get(4);
    let database: Option<String> = row.get(5);
    if plugin.as_deref() != Some("pgoutput") || database.as_deref() != Some(&cfg.database) {
        return Err(CdcError::Server {
            connection: cfg.name.clone(),
            message: format!(
                "replication slot `{slot}` exists but is not a pgoutput slot of database `{}` (plugin {:?}, database {:?})",
                cfg.database, plugin, database
            ),
            hint: "set another `slot` name on the connection, or drop that slot".into(),
        });
    }
    let confirmed: Option<String> = row.get(0);
    let restart: Option<String> = row.get(1);
    let current: String = row.get(2);
    Ok(Some(SlotState {
        confirmed_lsn: lsn(cfg, confirmed.as_deref().unwrap_or("0/0"))?,
        restart_lsn: lsn(cfg, restart.as_deref().unwrap_or("0/0"))?,
        current_lsn: lsn(cfg, &current)?,
        active: row.get(3),
    }))
}

/// Creates the slot; returns its consistent point (changes committed after it are streamed).
pub async fn create_slot(
    cfg: &PostgresConfig,
    conn: &mut PgConnection,
    slot: &str,
) -> Result<u64, CdcError> {
    let at: String = sqlx::query_scalar(
        "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')",
    )
    .bind(slot)
    .fetch_one(&mut *conn)
    .await
    .map_err(query_err(
        cfg,
        &format!("creating replication slot `{slot}`"),
    ))?;
    lsn(cfg, &at)
}

/// Drops the slot if it exists.
pub async fn drop_slot(
    cfg: &PostgresConfig,
    conn: &mut PgConnection,
    slot: &str,
) -> Result<(), CdcError> {
    sqlx::query(
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1",
    )
    .bind(slot)
    .execute(&mut *conn)
    .await
    .map_err(query_err(
        cfg,
        &format!("dropping replication slot `{slot}`"),
    ))?;
    Ok(())
}

/// Reads up to about `max_changes` messages (whole transactions) after the slot's confirmed
/// position, without consuming them, and hands each message's bytes to `each`.
pub async fn peek(
    cfg: &PostgresConfig,
    conn: &mut PgConnection,
    slot: &str,
    publication: &str,
    max_changes: i32,
    mut each: impl FnMut(Bytes) -> Result<(), CdcError>,
) -> Result<u64, CdcError> {
    let mut rows = sqlx::query_scalar::<_, Vec<u8>>(
        "SELECT data FROM pg_logical_slot_peek_binary_changes($1, NULL, $2, \
         'proto_version', '1', 'publication_names', $3)",
    )
    .bind(slot)
    .bind(max_changes)
    .bind(publication)
    .fetch(&mut *conn);
    let mut n = 0u64;
    while let Some(data) = rows.try_next().await.map_err(query_err(
        cfg,
        &format!("reading changes from slot `{slot}`"),
    ))? {
        n += 1;
        each(Bytes::from(data))?;
    }
    Ok(n)
}

/// Waits up to `patience` for another session to let go of the slot. A Confluo process that
/// was killed leaves its server session reading the slot until the server notices, which
/// takes a moment; a second sync started right away would otherwise fail.
pub async fn wait_until_free(
    cfg: &PostgresConfig,
    conn: &mut PgConnection,
    slot: &str,
    patience: std::time::Duration,
) -> Result<(), CdcError> {
    let started = std::time::Instant::now();
    while let Some(state) = slot_state(cfg, conn, slot).await? {
        if !state.active || started.elapsed() >= patience {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    Ok(())
}

/// Confirms everything up to `lsn`: the server may recycle that WAL, and the next peek starts
/// after it. Called only after the lakehouse has committed those changes.
pub async fn advance(
    cfg: &PostgresConfig,
    conn: &mut PgConnection,
    slot: &str,
    lsn: u64,
) -> Result<(), CdcError> {
    sqlx::query("SELECT pg_replication_slot_advance($1, $2::pg_lsn)")
        .bind(slot)
        .bind(format_lsn(lsn))
        .execute(&mut *conn)
        .await
        .map_err(query_err(cfg, &format!("confirming slot `{slot}`")))?;
    Ok(())
}
