//! Malformed records are kept, never dropped: good rows load, bad ones land in
//! `_rescued_data` with their file and line, and the counts reported match.

use crate::common::TestProject;

#[test]
fn broken_csv_rows_are_rescued_and_counted() {
    let p = TestProject::new();
    let mut csv: Vec<u8> = b"id,name,amount\n".to_vec();
    let mut good = 0;
    for i in 1..=200u32 {
        match i {
            20 => csv.extend_from_slice(b"20,too,many,fields\n"),
            40 => csv.extend_from_slice(b"40,short\n"),
            60 => csv.extend_from_slice(b"60,bad number,12.3.4\n"),
            80 => csv.extend_from_slice(b"80,\"unbalanced,5\n"),
            100 => csv.extend_from_slice(b"100,caf\xe9 latin1,7\n"),
            _ => {
                csv.extend_from_slice(format!("{i},\"name, {i}\",{i}.5\n").as_bytes());
                good += 1;
            }
        }
    }
    let f = p.write("in/broken.csv", &csv);
    let s = p.ingest(&f, "t", &[]);
    assert_eq!(s["rows"], 200, "{s}");
    assert_eq!(s["rescued_rows"], 5, "{s}");
    assert_eq!(
        p.scalar("SELECT count(*) FROM t WHERE _rescued_data IS NULL"),
        good.to_string()
    );
    assert_eq!(
        p.scalar("SELECT count(*) FROM t WHERE _rescued_data IS NOT NULL"),
        "5"
    );
    // Every good row is intact.
    assert_eq!(p.scalar("SELECT name FROM t WHERE id = 7"), "name, 7");
    assert_eq!(p.scalar("SELECT amount FROM t WHERE id = 199"), "199.5");
    // Bad values keep their raw text, file and line.
    let bad: Vec<Vec<String>> = p
        .rows("SELECT _rescued_data FROM t WHERE _rescued_data IS NOT NULL ORDER BY _rescued_data");
    let all: Vec<serde_json::Value> = bad
        .iter()
        .map(|r| serde_json::from_str(&r[0]).unwrap())
        .collect();
    let find = |line: u64| {
        all.iter()
            .find(|v| v["_line"] == line)
            .unwrap_or_else(|| panic!("line {line} not rescued: {all:?}"))
    };
    assert_eq!(find(21)["_raw"], "20,too,many,fields");
    assert!(
        find(21)["_error"]
            .as_str()
            .unwrap()
            .contains("expected 3 fields, found 4")
    );
    assert_eq!(find(41)["_raw"], "40,short");
    assert_eq!(find(61)["amount"], "12.3.4");
    assert_eq!(p.scalar("SELECT name FROM t WHERE id = 60"), "bad number");
    assert!(
        find(81)["_error"]
            .as_str()
            .unwrap()
            .contains("unbalanced quote")
    );
    assert_eq!(find(101)["name"], "caf\\xE9 latin1");
    assert_eq!(p.scalar("SELECT amount FROM t WHERE id = 100"), "7.0");
    for v in &all {
        assert!(v["_file_path"].as_str().unwrap().ends_with("broken.csv"));
    }
}

#[test]
fn broken_json_lines_are_rescued_and_counted() {
    let p = TestProject::new();
    let mut text = String::new();
    for i in 1..=100 {
        match i {
            10 => text.push_str("{\"id\": 10, \"name\": \n"),
            20 => text.push_str("not json at all\n"),
            30 => text.push_str("{\"id\": \"thirty\", \"name\": \"t\"}\n"),
            40 => text.push_str("[1, 2, 3]\n"),
            _ => text.push_str(&format!("{{\"id\": {i}, \"name\": \"n{i}\"}}\n")),
        }
    }
    let f = p.write("in/broken.json", text);
    let s = p.ingest(&f, "j", &[]);
    assert_eq!(s["rows"], 100, "{s}");
    assert_eq!(s["rescued_rows"], 4, "{s}");
    assert_eq!(
        p.scalar("SELECT count(*) FROM j WHERE _rescued_data IS NULL"),
        "96"
    );
    assert_eq!(
        p.scalar("SELECT name FROM j WHERE _rescued_data LIKE '%thirty%'"),
        "t"
    );
    assert_eq!(
        p.scalar("SELECT count(*) FROM j WHERE _rescued_data LIKE '%\"_line\":20%'"),
        "1"
    );
}

#[test]
fn read_files_reports_rescued_rows() {
    let p = TestProject::new();
    let f = p.write("in/x.csv", "a,b\n1,2\n3,x\n");
    let out = p.run(&[
        "query",
        &format!(
            "SELECT count(*) FROM read_files('{}', format => 'csv', schemaHints => 'b INT')",
            f.display()
        ),
        "--format",
        "csv",
    ]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("1 row had values that did not fit"), "{err}");
    // FAILFAST stops at the first bad value and says where.
    let e = p.fail(&[
        "query",
        &format!(
            "SELECT * FROM read_files('{}', mode => 'FAILFAST', schemaHints => 'b INT')",
            f.display()
        ),
    ]);
    assert!(e.contains("x.csv:3") && e.contains('b'), "{e}");
}
