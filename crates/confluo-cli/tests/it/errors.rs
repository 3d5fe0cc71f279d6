//! Errors a user can cause say where: carets under bad SQL, near names, paths, options.

use crate::common::TestProject;

#[test]
fn bad_sql_shows_a_caret() {
    let p = TestProject::new();
    let e = p.fail(&["query", "SELECT 1;\nSELEC * FROM t"]);
    assert!(e.contains("syntax error"), "{e}");
    assert!(e.contains("query:2:1"), "{e}");
    assert!(
        e.contains(" 2 | SELEC * FROM t\n") && e.contains("| ^"),
        "{e}"
    );
    let e = p.fail(&["query", "SELECT (1 +"]);
    assert!(e.contains("query:1:"), "{e}");
}

#[test]
fn unknown_table_suggests_near_names() {
    let p = TestProject::new();
    p.ok(&[
        "query",
        "CREATE SCHEMA bronze; CREATE TABLE bronze.orders (id INT)",
    ]);
    let e = p.fail(&["query", "SELECT * FROM bronze.ordres"]);
    assert!(e.contains("main.bronze.ordres does not exist"), "{e}");
    assert!(e.contains("did you mean `main.bronze.orders`"), "{e}");
    assert!(e.contains("query:1:15"), "{e}");
    let e = p.fail(&["query", "SELECT * FROM orders"]);
    assert!(e.contains("main.bronze.orders"), "{e}");
    let e = p.fail(&["query", "SELECT nope FROM bronze.orders"]);
    assert!(e.contains("nope") && e.contains("query:1:8"), "{e}");
    let e = p.fail(&["query", "DESCRIBE HISTORY bronze.order"]);
    assert!(e.contains("did you mean"), "{e}");
    let e = p.fail(&["query", "SELECT * FROM bronze.orders VERSION AS OF 7"]);
    assert!(e.contains("version 7"), "{e}");
}

#[test]
fn missing_paths_bad_options_and_unreadable_folders_are_named() {
    let p = TestProject::new();
    let missing = p.path("no/such/dir");
    let e = p.fail(&["ingest", missing.to_str().unwrap(), "--into", "t"]);
    assert!(
        e.contains(missing.to_str().unwrap()) && e.contains("no such file"),
        "{e}"
    );
    let e = p.fail(&[
        "query",
        &format!("SELECT * FROM read_files('{}')", missing.display()),
    ]);
    assert!(e.contains("no such file"), "{e}");
    let f = p.write("in/a.csv", "a\n1\n");
    let e = p.fail(&[
        "query",
        &format!(
            "SELECT * FROM read_files('{}', hedaer => true)",
            f.display()
        ),
    ]);
    assert!(e.contains("hedaer") && e.contains("header"), "{e}");
    let e = p.fail(&[
        "ingest",
        f.to_str().unwrap(),
        "--into",
        "t",
        "-o",
        "multiLine=perhaps",
    ]);
    assert!(e.contains("multiLine") && e.contains("perhaps"), "{e}");
    let e = p.fail(&[
        "ingest",
        f.to_str().unwrap(),
        "--into",
        "t",
        "--format",
        "xml",
    ]);
    assert!(e.contains("xml"), "{e}");
    // A dangling link inside a folder cannot be read: the error names it.
    std::os::unix::fs::symlink(p.path("gone.csv"), p.path("in/link.csv")).unwrap();
    let e = p.fail(&["ingest", p.path("in").to_str().unwrap(), "--into", "t"]);
    assert!(e.contains("link.csv"), "{e}");
    // A file that is not what its name says.
    let bad = p.write("pq/bad.parquet", "this is not parquet");
    let e = p.fail(&["ingest", bad.to_str().unwrap(), "--into", "t"]);
    assert!(e.contains("bad.parquet") && e.contains("Parquet"), "{e}");
}

#[test]
fn project_is_found_or_explained() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(crate::common::bin())
        .current_dir(dir.path())
        .args(["query", "SELECT 1"])
        .env_remove("CONFLUO_PROJECT")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("no Confluo project found") && e.contains("confluo init"),
        "{e}"
    );
    let out = std::process::Command::new(crate::common::bin())
        .current_dir(dir.path())
        .args(["init", "proj"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let nested = dir.path().join("proj/sub/deeper");
    std::fs::create_dir_all(&nested).unwrap();
    let out = std::process::Command::new(crate::common::bin())
        .current_dir(&nested)
        .args(["query", "SELECT 41 + 1 AS answer", "--format", "csv"])
        .env_remove("CONFLUO_PROJECT")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "answer\n42\n");
    let yaml = dir.path().join("proj/confluo.yaml");
    std::fs::write(&yaml, "name: p\nstorage: ./lake\nbogus_key: 1\n").unwrap();
    let out = std::process::Command::new(crate::common::bin())
        .current_dir(&nested)
        .args(["query", "SELECT 1"])
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("confluo.yaml:3") && e.contains("bogus_key"),
        "{e}"
    );
}
