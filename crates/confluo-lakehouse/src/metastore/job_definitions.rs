//! Jobs created with `confluo jobs create`: their YAML, kept in the metastore so every
//! worker sharing it runs them.

use sqlx::Row;

use super::{Metastore, now_ms};
use crate::error::Result;

impl Metastore {
    /// Stores job `job`'s YAML (checked by the caller), replacing an earlier one; returns
    /// whether it replaced one.
    pub async fn put_job_definition(&self, job: &str, yaml: &str, by: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await.map_err(Self::err("cannot begin"))?;
        let replaced = sqlx::query(
            "UPDATE job_definitions SET yaml = $1, created_by = $2, updated_ms = $3 WHERE job = $4",
        )
        .bind(yaml)
        .bind(by)
        .bind(now_ms())
        .bind(job)
        .execute(&mut *tx)
        .await
        .map_err(Self::err("cannot store the job"))?
        .rows_affected()
            == 1;
        if !replaced {
            sqlx::query(
                "INSERT INTO job_definitions (job, yaml, created_by, updated_ms) VALUES ($1, $2, $3, $4)",
            )
            .bind(job)
            .bind(yaml)
            .bind(by)
            .bind(now_ms())
            .execute(&mut *tx)
            .await
            .map_err(Self::err("cannot store the job"))?;
        }
        tx.commit().await.map_err(Self::err("cannot commit"))?;
        Ok(replaced)
    }

    /// Deletes job `job`'s definition; false when there was none.
    pub async fn delete_job_definition(&self, job: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM job_definitions WHERE job = $1")
            .bind(job)
            .execute(&self.pool)
            .await
            .map_err(Self::err("cannot delete the job"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Every stored job: (name, YAML).
    pub async fn job_definitions(&self) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query("SELECT job, yaml FROM job_definitions ORDER BY job")
            .fetch_all(&self.pool)
            .await
            .map_err(Self::err("cannot read the jobs"))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }
}
