//! SIGKILL during `confluo ingest`, then the same command again: every row exactly once.

use std::time::Duration;

use crate::common::{TestProject, orders_csv};

#[test]
fn sigkill_mid_ingest_then_rerun_loads_each_row_once() {
    let p = TestProject::new();
    let files = 24u64;
    let per_file = 20_000u64;
    for f in 0..files {
        p.write(
            &format!("in/part_{f:03}.csv"),
            orders_csv(f * per_file + 1, per_file),
        );
    }
    let input = p.path("in");
    let args = [
        "ingest",
        input.to_str().unwrap(),
        "--into",
        "bronze.orders",
        "--commit-every-mb",
        "3",
        "--workers",
        "2",
    ];
    // Kill at several moments: before the first commit, between commits, near the end.
    for delay_ms in [30u64, 120, 250, 400, 700, 1100] {
        let mut child = p.command(&args).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        let _ = child.wait();
        // Whatever was committed is whole and readable.
        let out = p.run(&[
            "query",
            "SELECT count(*), count(DISTINCT order_id) FROM bronze.orders",
            "--format",
            "csv",
        ]);
        if out.status.success() {
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            let row: Vec<&str> = text.lines().nth(1).unwrap().split(',').collect();
            assert_eq!(row[0], row[1], "duplicates after a kill at {delay_ms} ms");
            assert_eq!(
                row[0].parse::<u64>().unwrap() % per_file,
                0,
                "a partial file after a kill at {delay_ms} ms"
            );
        }
    }
    p.ok(&args);
    let total = files * per_file;
    assert_eq!(
        p.scalar("SELECT count(*) FROM bronze.orders"),
        total.to_string()
    );
    assert_eq!(
        p.scalar("SELECT count(DISTINCT order_id) FROM bronze.orders"),
        total.to_string()
    );
    assert_eq!(
        p.scalar("SELECT sum(order_id) FROM bronze.orders"),
        (total * (total + 1) / 2).to_string()
    );
    // And once more: nothing new.
    let s = p.ingest(&input, "bronze.orders", &[]);
    assert_eq!(s["files_ingested"], 0);
}
