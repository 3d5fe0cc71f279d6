//! sqllogictest files (`tests/slt/*.slt`) run through the `confluo` binary.
//!
//! Each file gets its own project. Records are handled as a user would type them:
//! - pipeline definitions (`CREATE [OR REFRESH] STREAMING TABLE | MATERIALIZED VIEW | VIEW`,
//!   `CREATE FLOW`, `SET k = v`, legacy `LIVE TABLE` forms) are appended to the pipeline's
//!   SQL file, `pipelines/<n>.sql`;
//! - `RUN PIPELINE [args]` runs `confluo run [args]`, `VALIDATE PIPELINE` runs
//!   `confluo validate`; a failure's message (stderr) is the record's error;
//! - `NEW PIPELINE FILE` starts a new SQL file, `CLEAR PIPELINE` removes them all;
//! - `WRITE FILE path` followed by lines writes those lines to a data file;
//! - anything else is `confluo query SQL --format csv`.

use std::path::{Path, PathBuf};

use crate::common::{command_in, parse_csv};

#[derive(Debug)]
struct Failure(String);

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Failure {}

struct Confluo {
    dir: tempfile::TempDir,
    file: usize,
}

fn is_definition(sql: &str) -> bool {
    let words: Vec<String> = sql
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .flat_map(|l| l.split_whitespace())
        .take(6)
        .map(|w| w.to_ascii_uppercase())
        .collect();
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    match w.as_slice() {
        ["SET", ..] => true,
        ["APPLY", "CHANGES", ..] => true,
        ["CREATE", rest @ ..] => {
            let rest: Vec<&str> = rest
                .iter()
                .copied()
                .skip_while(|w| matches!(*w, "OR" | "REFRESH" | "PRIVATE" | "TEMPORARY"))
                .collect();
            matches!(
                rest.first().copied(),
                Some("STREAMING" | "MATERIALIZED" | "VIEW" | "FLOW" | "LIVE" | "INCREMENTAL")
            )
        }
        _ => false,
    }
}

impl Confluo {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("confluo.yaml"),
            "name: slt\npipelines:\n  p:\n    libraries: [\"pipelines/*.sql\"]\n    schema: p\n",
        )
        .unwrap();
        std::fs::create_dir_all(dir.path().join("pipelines")).unwrap();
        Confluo { dir, file: 1 }
    }

    fn pipeline_file(&self) -> PathBuf {
        self.dir
            .path()
            .join(format!("pipelines/{:02}.sql", self.file))
    }

    fn confluo(&self, args: &[&str]) -> Result<String, Failure> {
        // Relative paths in queries resolve against the project, as a user inside it types them.
        let out = command_in(self.dir.path(), args)
            .current_dir(self.dir.path())
            .output()
            .map_err(|e| Failure(e.to_string()))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(Failure(format!(
                "{}{}",
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&out.stdout)
            )))
        }
    }
}

fn done() -> sqllogictest::DBOutput<sqllogictest::DefaultColumnType> {
    sqllogictest::DBOutput::StatementComplete(0)
}

impl sqllogictest::DB for Confluo {
    type Error = Failure;
    type ColumnType = sqllogictest::DefaultColumnType;

    fn run(&mut self, sql: &str) -> Result<sqllogictest::DBOutput<Self::ColumnType>, Self::Error> {
        let trimmed = sql.trim();
        let upper = trimmed.to_ascii_uppercase();
        if upper.starts_with("WRITE FILE ") {
            let (first, body) = trimmed.split_once('\n').unwrap_or((trimmed, ""));
            let path = self.dir.path().join(first["WRITE FILE ".len()..].trim());
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, format!("{body}\n")).unwrap();
            return Ok(done());
        }
        if upper == "NEW PIPELINE FILE" {
            self.file += 1;
            return Ok(done());
        }
        if upper == "CLEAR PIPELINE" {
            for e in std::fs::read_dir(self.dir.path().join("pipelines")).unwrap() {
                std::fs::remove_file(e.unwrap().path()).unwrap();
            }
            self.file += 1;
            return Ok(done());
        }
        if upper.starts_with("RUN PIPELINE") || upper.starts_with("VALIDATE PIPELINE") {
            let mut args: Vec<&str> = trimmed.split_whitespace().skip(2).collect();
            args.insert(
                0,
                if upper.starts_with("RUN") {
                    "run"
                } else {
                    "validate"
                },
            );
            self.confluo(&args)?;
            return Ok(done());
        }
        if is_definition(trimmed) {
            let path = self.pipeline_file();
            let mut text = std::fs::read_to_string(&path).unwrap_or_default();
            text.push_str(trimmed);
            if !trimmed.ends_with(';') {
                text.push(';');
            }
            text.push('\n');
            std::fs::write(&path, text).unwrap();
            return Ok(done());
        }
        let out = self.confluo(&["query", trimmed, "--format", "csv"])?;
        let rows = parse_csv(&out);
        let Some(header) = rows.first() else {
            return Ok(done());
        };
        Ok(sqllogictest::DBOutput::Rows {
            types: vec![sqllogictest::DefaultColumnType::Any; header.len()],
            rows: rows
                .into_iter()
                .skip(1)
                .map(|r| {
                    r.into_iter()
                        .map(|v| if v.is_empty() { "NULL".into() } else { v })
                        .collect()
                })
                .collect(),
        })
    }

    fn engine_name(&self) -> &str {
        "confluo"
    }
}

fn run_file(name: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/slt")
        .join(name);
    let mut runner = sqllogictest::Runner::new(|| async { Ok(Confluo::new()) });
    if let Err(e) = runner.run_file(&path) {
        panic!("{}", e.display(true));
    }
}

#[test]
fn slt_pipeline_dialect() {
    run_file("pipeline_dialect.slt");
}

#[test]
fn slt_expectations() {
    run_file("expectations.slt");
}

#[test]
fn slt_pipeline_errors() {
    run_file("pipeline_errors.slt");
}

#[test]
fn slt_auto_cdc() {
    run_file("auto_cdc.slt");
}

#[test]
fn slt_sql_dialect() {
    run_file("sql_dialect.slt");
}

/// Lakeflow / Spark Declarative Pipelines constructs, one documented clause at a time.
#[test]
fn slt_lakeflow_corpus() {
    run_file("lakeflow_corpus.slt");
}

/// Databricks SQL statements and the Spark functions pipelines reach for.
#[test]
fn slt_databricks_sql() {
    run_file("databricks_sql.slt");
}
