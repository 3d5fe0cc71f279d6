//! Source positions of ingest entries: the typed offset of each entry's last committed and
//! acknowledged batch, as JSON, so every worker sharing the metastore (and `confluo sync
//! --status`) sees where each entry stands. The target table's Delta log stays the truth.

use sqlx::Row;

use super::{Metastore, now_ms};
use crate::error::Result;

/// One entry's position.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SourceOffset {
    /// The application id the entry commits under (`confluo:ingest:<entry>`).
    pub app_id: String,
    /// The ingest entry.
    pub entry: String,
    /// The target table.
    pub table: String,
    /// The typed offset, as JSON.
    pub offset: serde_json::Value,
    /// When it was recorded (milliseconds since the epoch).
    pub updated_ms: i64,
}

impl Metastore {
    /// Records where an entry stands.
    pub async fn set_source_offset(
        &self,
        app_id: &str,
        entry: &str,
        table: &str,
        offset: &serde_json::Value,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(Self::err("cannot begin"))?;
        sqlx::query("DELETE FROM source_offsets WHERE app_id = $1")
            .bind(app_id)
            .execute(&mut *tx)
            .await
            .map_err(Self::err("cannot update source offsets"))?;
        sqlx::query(
            "INSERT INTO source_offsets (app_id, entry, table_name, offset_json, updated_ms)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(app_id)
        .bind(entry)
        .bind(table)
        .bind(offset.to_string())
        .bind(now_ms())
        .execute(&mut *tx)
        .await
        .map_err(Self::err("cannot update source offsets"))?;
        tx.commit().await.map_err(Self::err("cannot commit"))?;
        Ok(())
    }

    /// Every entry's position, by application id.
    pub async fn source_offsets(&self) -> Result<Vec<SourceOffset>> {
        let rows = sqlx::query(
            "SELECT app_id, entry, table_name, offset_json, updated_ms FROM source_offsets
             ORDER BY app_id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(Self::err("cannot read source offsets"))?;
        Ok(rows
            .iter()
            .map(|r| SourceOffset {
                app_id: r.get(0),
                entry: r.get(1),
                table: r.get(2),
                offset: serde_json::from_str(&r.get::<String, _>(3))
                    .unwrap_or(serde_json::Value::Null),
                updated_ms: r.get(4),
            })
            .collect())
    }
}

impl Metastore {
    /// A change-capture entry's state (JSON), if it has any.
    pub async fn ingest_state(&self, entry: &str) -> Result<Option<serde_json::Value>> {
        let row = sqlx::query("SELECT state_json FROM ingest_state WHERE entry = $1")
            .bind(entry)
            .fetch_optional(&self.pool)
            .await
            .map_err(Self::err("cannot read ingest state"))?;
        row.map(|r| {
            let text: String = r.get(0);
            serde_json::from_str(&text).map_err(|e| {
                crate::error::LakehouseError::Invalid(format!(
                    "the state of ingest entry `{entry}` is unreadable ({e}); reset it with `confluo sync {entry} --reset`"
                ))
            })
        })
        .transpose()
    }

    /// Replaces a change-capture entry's state.
    pub async fn set_ingest_state(&self, entry: &str, state: &serde_json::Value) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(Self::err("cannot begin"))?;
        sqlx::query("DELETE FROM ingest_state WHERE entry = $1")
            .bind(entry)
            .execute(&mut *tx)
            .await
            .map_err(Self::err("cannot update ingest state"))?;
        sqlx::query("INSERT INTO ingest_state (entry, state_json, updated_ms) VALUES ($1, $2, $3)")
            .bind(entry)
            .bind(state.to_string())
            .bind(now_ms())
            .execute(&mut *tx)
            .await
            .map_err(Self::err("cannot update ingest state"))?;
        tx.commit().await.map_err(Self::err("cannot commit"))?;
        Ok(())
    }

    /// Forgets everything an entry recorded (its state and its source positions), so its
    /// next run starts afresh. Returns whether there was anything to forget.
    pub async fn forget_ingest_entry(&self, entry: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await.map_err(Self::err("cannot begin"))?;
        let a = sqlx::query("DELETE FROM ingest_state WHERE entry = $1")
            .bind(entry)
            .execute(&mut *tx)
            .await
            .map_err(Self::err("cannot reset ingest state"))?
            .rows_affected();
        let b = sqlx::query("DELETE FROM source_offsets WHERE entry = $1")
            .bind(entry)
            .execute(&mut *tx)
            .await
            .map_err(Self::err("cannot reset source offsets"))?
            .rows_affected();
        tx.commit().await.map_err(Self::err("cannot commit"))?;
        Ok(a + b > 0)
    }
}
