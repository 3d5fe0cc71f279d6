//! Check statuses and anomaly scores in Prometheus' text format, for node_exporter's
//! textfile collector (and, later, `confluo serve`'s `/metrics`).

use std::fmt::Write as _;
use std::path::Path;

use confluo_lakehouse::metastore::CheckState;

use crate::run::MonitorReport;

fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn status_code(s: &str) -> u8 {
    match s {
        "pass" => 0,
        "warn" => 1,
        "fail" => 2,
        _ => 3,
    }
}

/// Renders every check's latest status and value (`states`) and the anomaly scores of
/// `reports`.
pub fn render(states: &[CheckState], reports: &[MonitorReport]) -> String {
    let mut out = String::new();
    let labels = |s: &CheckState| {
        format!(
            "table=\"{}\",check=\"{}\",slice=\"{}\"",
            label(&s.monitor),
            label(&s.check),
            label(&s.slice)
        )
    };
    out.push_str("# HELP confluo_quality_check_status Latest status of a data quality check: 0 pass, 1 warn, 2 fail, 3 error.\n");
    out.push_str("# TYPE confluo_quality_check_status gauge\n");
    for s in states {
        let _ = writeln!(
            out,
            "confluo_quality_check_status{{{}}} {}",
            labels(s),
            status_code(&s.status)
        );
    }
    out.push_str(
        "# HELP confluo_quality_check_value The value a data quality check last measured.\n",
    );
    out.push_str("# TYPE confluo_quality_check_value gauge\n");
    for s in states {
        if let Some(v) = s.value.filter(|v| v.is_finite()) {
            let _ = writeln!(out, "confluo_quality_check_value{{{}}} {v}", labels(s));
        }
    }
    out.push_str(
        "# HELP confluo_quality_check_last_run_timestamp_seconds When the check last ran.\n",
    );
    out.push_str("# TYPE confluo_quality_check_last_run_timestamp_seconds gauge\n");
    for s in states {
        let _ = writeln!(
            out,
            "confluo_quality_check_last_run_timestamp_seconds{{{}}} {}",
            labels(s),
            s.checked_ms as f64 / 1000.0
        );
    }
    out.push_str("# HELP confluo_quality_anomaly_score Robust z score of an anomaly monitor's newest value.\n");
    out.push_str("# TYPE confluo_quality_anomaly_score gauge\n");
    for r in reports {
        for m in &r.metrics {
            if let (Some(name), Some(v)) = (m.metric.strip_prefix("anomaly_score:"), m.value) {
                let _ = writeln!(
                    out,
                    "confluo_quality_anomaly_score{{table=\"{}\",check=\"{}\"}} {v}",
                    label(&r.table),
                    label(name)
                );
            }
        }
    }
    out
}

/// Writes `text` to `path` whole (a temporary file renamed over it), as the textfile
/// collector needs: it never reads half a file.
pub fn write_textfile(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("prom.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped_and_statuses_coded() {
        let s = CheckState {
            monitor: "main.a.b".into(),
            check: "sql \"x\"".into(),
            slice: String::new(),
            status: "fail".into(),
            since_ms: 0,
            checked_ms: 1500,
            run_id: "r".into(),
            table_version: Some(1),
            value: Some(2.5),
            message: None,
            notified_status: None,
            notified_ms: None,
        };
        let text = render(&[s], &[]);
        assert!(
            text.contains(
                r#"confluo_quality_check_status{table="main.a.b",check="sql \"x\"",slice=""} 2"#
            ),
            "{text}"
        );
        assert!(
            text.contains("confluo_quality_check_value{") && text.contains("} 2.5"),
            "{text}"
        );
        assert!(
            text.contains("_timestamp_seconds{") && text.contains("} 1.5"),
            "{text}"
        );
    }
}
