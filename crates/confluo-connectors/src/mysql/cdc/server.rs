//! What change capture needs from the server, checked before anything starts: binary
//! logging on, row format with full row images, and the replication privileges. Each
//! failure says which setting to change and how.

use sqlx::Row;
use sqlx::mysql::MySqlConnection;

use super::{BinlogPosition, MysqlCdcError};
use crate::mysql::config::MysqlConfig;
use crate::mysql::error::MysqlError;

/// The server as change capture sees it.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    /// `SELECT VERSION()`.
    pub version: String,
    /// MariaDB rather than MySQL.
    pub mariadb: bool,
    /// Where the binary log ends now.
    pub position: BinlogPosition,
    /// Events carry checksums (`binlog_checksum` is not NONE).
    pub checksum: bool,
}

/// Rows of a statement as text columns.
async fn text_rows(
    cfg: &MysqlConfig,
    conn: &mut MySqlConnection,
    sql: &str,
) -> Result<Vec<Vec<Option<String>>>, MysqlError> {
    let rows = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_all(&mut *conn)
        .await
        .map_err(MysqlError::query(&cfg.name, format!("running `{sql}`")))?;
    Ok(rows
        .iter()
        .map(|r| {
            (0..r.len())
                .map(|i| {
                    r.try_get_unchecked::<Option<&[u8]>, _>(i)
                        .ok()
                        .flatten()
                        .map(|b| String::from_utf8_lossy(b).into_owned())
                })
                .collect()
        })
        .collect())
}

fn server_err(cfg: &MysqlConfig, message: String, hint: String) -> MysqlCdcError {
    MysqlCdcError::Server {
        connection: cfg.name.clone(),
        message,
        hint,
    }
}

/// Checks that the server can stream row changes to this user, and reads where its binary
/// log ends.
pub async fn check_server(
    cfg: &MysqlConfig,
    conn: &mut MySqlConnection,
) -> Result<ServerInfo, MysqlCdcError> {
    let rows = text_rows(
        cfg,
        conn,
        "SELECT VERSION(), @@GLOBAL.log_bin, @@GLOBAL.binlog_format, @@GLOBAL.binlog_row_image, @@GLOBAL.binlog_checksum",
    )
    .await?;
    let row = rows.into_iter().next().unwrap_or_default();
    let get = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
    let version = get(0);
    let mariadb = version.to_ascii_lowercase().contains("mariadb");
    check_settings(mariadb, &get(1), &get(2), &get(3))
        .map_err(|(message, hint)| server_err(cfg, message, hint))?;
    let checksum = !get(4).eq_ignore_ascii_case("NONE");
    check_privileges(cfg, conn, mariadb).await?;
    let position = current_position(cfg, conn).await?;
    Ok(ServerInfo {
        version,
        mariadb,
        position,
        checksum,
    })
}

/// Checks `log_bin`, `binlog_format` and `binlog_row_image`; the error is the message and
/// the hint.
pub fn check_settings(
    mariadb: bool,
    log_bin: &str,
    format: &str,
    row_image: &str,
) -> Result<(), (String, String)> {
    let config_file = if mariadb {
        "the [mariadb] section of the server's configuration (e.g. /etc/mysql/mariadb.conf.d/50-server.cnf)"
    } else {
        "the [mysqld] section of my.cnf"
    };
    if !matches!(log_bin, "1" | "ON") {
        return Err((
            "binary logging is off on the server, so there are no changes to capture".into(),
            format!(
                "set `log_bin = ON` (MySQL 8 has it on by default), `binlog_format = ROW` and `server_id = 1` in {config_file}, then restart the server"
            ),
        ));
    }
    let format = format.to_ascii_uppercase();
    if format != "ROW" {
        return Err((
            format!(
                "the binary log is in {format} format; change capture needs ROW format (statements cannot be replayed as row changes)"
            ),
            format!(
                "run `SET GLOBAL binlog_format = 'ROW'` (sessions opened before keep the old format) and set `binlog_format = ROW` in {config_file} so it survives a restart"
            ),
        ));
    }
    let image = row_image.to_ascii_uppercase();
    if image != "FULL" {
        return Err((
            format!(
                "binlog_row_image is {image}; change capture needs FULL row images (with {image} an update does not carry the whole row)"
            ),
            format!(
                "run `SET GLOBAL binlog_row_image = 'FULL'` and set `binlog_row_image = FULL` in {config_file}"
            ),
        ));
    }
    Ok(())
}

/// Whether the grants of the current user include what a replica needs.
async fn check_privileges(
    cfg: &MysqlConfig,
    conn: &mut MySqlConnection,
    mariadb: bool,
) -> Result<(), MysqlCdcError> {
    let grants: Vec<String> = text_rows(cfg, conn, "SHOW GRANTS")
        .await?
        .into_iter()
        .filter_map(|r| r.into_iter().next().flatten())
        .map(|g| g.to_ascii_uppercase())
        .collect();
    let global = |g: &&String| g.contains(" ON *.* ");
    let all = grants
        .iter()
        .filter(global)
        .any(|g| g.contains("ALL PRIVILEGES"));
    let has = |words: &[&str]| {
        all || grants
            .iter()
            .filter(global)
            .any(|g| words.iter().any(|w| g.contains(w)))
    };
    let mut missing = Vec::new();
    if !has(&["REPLICATION SLAVE", "REPLICATION REPLICA"]) {
        missing.push("REPLICATION SLAVE");
    }
    let monitor = if mariadb {
        "BINLOG MONITOR"
    } else {
        "REPLICATION CLIENT"
    };
    if !has(&["REPLICATION CLIENT", "BINLOG MONITOR", "SUPER"]) {
        missing.push(monitor);
    }
    if missing.is_empty() {
        return Ok(());
    }
    Err(server_err(
        cfg,
        format!(
            "user `{}` lacks {} (needed to read the binary log)",
            cfg.user,
            missing.join(" and ")
        ),
        format!(
            "as an administrator: GRANT REPLICATION SLAVE, {monitor} ON *.* TO '{}'@'%'; (and SELECT on the captured tables; RELOAD lets the snapshot take a consistent binlog position)",
            cfg.user
        ),
    ))
}

/// Where the binary log ends now (`SHOW MASTER STATUS`; `SHOW BINARY LOG STATUS` on MySQL
/// 8.4, which removed the former).
pub async fn current_position(
    cfg: &MysqlConfig,
    conn: &mut MySqlConnection,
) -> Result<BinlogPosition, MysqlCdcError> {
    let rows = match text_rows(cfg, conn, "SHOW MASTER STATUS").await {
        Ok(r) => r,
        Err(_) => text_rows(cfg, conn, "SHOW BINARY LOG STATUS").await?,
    };
    let row = rows.into_iter().next().ok_or_else(|| {
        server_err(
            cfg,
            "the server reports no binary log position".into(),
            "check that binary logging is on (`SHOW VARIABLES LIKE 'log_bin'`)".into(),
        )
    })?;
    let file = row.first().cloned().flatten().unwrap_or_default();
    let position = row
        .get(1)
        .cloned()
        .flatten()
        .and_then(|p| p.parse().ok())
        .unwrap_or(4);
    Ok(BinlogPosition { file, position })
}

/// The binary log files the server still has, with their sizes.
pub async fn binary_logs(
    cfg: &MysqlConfig,
    conn: &mut MySqlConnection,
) -> Result<Vec<(String, u64)>, MysqlCdcError> {
    Ok(text_rows(cfg, conn, "SHOW BINARY LOGS")
        .await?
        .into_iter()
        .filter_map(|r| {
            let name = r.first().cloned().flatten()?;
            let size = r.get(1).cloned().flatten()?.parse().ok()?;
            Some((name, size))
        })
        .collect())
}

/// Bytes of binary log after `at` (the lag of a reader standing there).
pub fn bytes_behind(logs: &[(String, u64)], at: &BinlogPosition) -> u64 {
    let mut behind = 0;
    let mut after = false;
    for (name, size) in logs {
        if after {
            behind += size;
        } else if name == &at.file {
            behind += size.saturating_sub(at.position);
            after = true;
        }
    }
    behind
}

/// MariaDB's GTID position equivalent to a binlog position (`BINLOG_GTID_POS`), recorded
/// with each checkpoint so a reader can move to another server of the same replication
/// topology; `None` on MySQL or when the server cannot say.
pub async fn gtid_at(
    cfg: &MysqlConfig,
    conn: &mut MySqlConnection,
    mariadb: bool,
    at: &BinlogPosition,
) -> Option<String> {
    if !mariadb {
        return None;
    }
    let sql = format!(
        "SELECT BINLOG_GTID_POS({}, {})",
        crate::mysql::types::quote_literal(&at.file),
        at.position
    );
    text_rows(cfg, conn, &sql)
        .await
        .ok()?
        .into_iter()
        .next()?
        .into_iter()
        .next()
        .flatten()
        .filter(|g| !g.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_that_cannot_be_captured_say_what_to_change() {
        assert!(check_settings(true, "1", "ROW", "FULL").is_ok());
        let (m, h) = check_settings(true, "0", "ROW", "FULL").unwrap_err();
        assert!(
            m.contains("binary logging is off") && h.contains("log_bin = ON"),
            "{m} {h}"
        );
        for format in ["STATEMENT", "MIXED"] {
            let (m, h) = check_settings(false, "ON", format, "FULL").unwrap_err();
            assert!(m.contains(&format!("{format} format")) && h.contains("binlog_format = 'ROW'"));
        }
        let (m, h) = check_settings(false, "ON", "ROW", "MINIMAL").unwrap_err();
        assert!(m.contains("binlog_row_image is MINIMAL") && h.contains("FULL"));
    }

    #[test]
    fn lag_counts_the_rest_of_this_file_and_every_later_one() {
        let logs = vec![
            ("b.000001".to_string(), 1000),
            ("b.000002".to_string(), 500),
            ("b.000003".to_string(), 300),
        ];
        let at = BinlogPosition {
            file: "b.000002".into(),
            position: 400,
        };
        assert_eq!(bytes_behind(&logs, &at), 100 + 300);
    }
}
