//! Where jobs are defined: `jobs:` in `confluo.yaml`, and jobs created with `confluo jobs
//! create`, kept in the metastore (so a team sharing a PostgreSQL metastore adds a job
//! without editing the project, and every worker runs it). One name, one place.

use std::collections::BTreeMap;

use confluo_core::Project;
use confluo_core::jobs::JobConfig;
use confluo_lakehouse::Metastore;

use crate::error::{JobError, Result};
use crate::spec::Job;

/// A job's YAML (what sits under its name in `jobs:`), read with line and column errors.
pub fn parse(name: &str, yaml: &str) -> Result<JobConfig> {
    serde_yaml_ng::from_str(yaml).map_err(|e| JobError::Invalid {
        job: name.into(),
        message: format!("its definition is not a job: {e}"),
    })
}

/// Every job's definition: the project's and the metastore's.
pub async fn all(project: &Project, ms: &Metastore) -> Result<BTreeMap<String, JobConfig>> {
    let mut jobs = project.config.jobs.clone();
    for (name, yaml) in ms.job_definitions().await? {
        if jobs.contains_key(&name) {
            return Err(JobError::Invalid {
                job: name.clone(),
                message: format!(
                    "it is defined both in confluo.yaml and in the metastore (`confluo jobs create`); remove one (`confluo jobs delete {name}` removes the metastore's)"
                ),
            });
        }
        jobs.insert(name.clone(), parse(&name, &yaml)?);
    }
    Ok(jobs)
}

/// Every job, checked whole and against the project.
pub async fn checked(project: &Project, ms: &Metastore) -> Result<BTreeMap<String, Job>> {
    let configs = all(project, ms).await?;
    let mut jobs = BTreeMap::new();
    for name in configs.keys() {
        let job = Job::check(name, &configs)?;
        job.check_targets(project)?;
        jobs.insert(name.clone(), job);
    }
    Ok(jobs)
}

/// Checks `yaml` as job `name` among the others, then stores it in the metastore; a name
/// `confluo.yaml` uses is refused, and one stored already is replaced only with `replace`.
/// Returns whether it replaced one.
pub async fn create(
    project: &Project,
    ms: &Metastore,
    name: &str,
    yaml: &str,
    replace: bool,
    by: &str,
) -> Result<bool> {
    confluo_core::Ident::parse(name).map_err(|e| JobError::Invalid {
        job: name.into(),
        message: format!("not a job name: {e}"),
    })?;
    if project.config.jobs.contains_key(name) {
        return Err(JobError::Invalid {
            job: name.into(),
            message: "confluo.yaml defines it already; edit it there".into(),
        });
    }
    let mut configs = all(project, ms).await?;
    if configs.contains_key(name) && !replace {
        return Err(JobError::Invalid {
            job: name.into(),
            message: "it exists already; give --replace to replace it".into(),
        });
    }
    configs.insert(name.into(), parse(name, yaml)?);
    let job = Job::check(name, &configs)?;
    job.check_targets(project)?;
    Ok(ms.put_job_definition(name, yaml, by).await?)
}
