use super::*;

fn one(sql: &str) -> ConfluoStatement {
    let mut v = parse_sql(sql).unwrap();
    assert_eq!(v.len(), 1);
    v.remove(0).statement
}

#[test]
fn lakehouse_statements() {
    assert!(matches!(
        one("SHOW CATALOGS"),
        ConfluoStatement::Show {
            what: Show::Catalogs,
            ..
        }
    ));
    assert!(matches!(
        one("show tables in main.bronze like 'ord*'"),
        ConfluoStatement::Show {
            what: Show::Tables(Some(_)),
            like: Some(_)
        }
    ));
    for sql in [
        "DESCRIBE TABLE EXTENDED t",
        "DESC EXTENDED t",
        "DESCRIBE TABLE FORMATTED s.t",
    ] {
        assert!(
            matches!(
                one(sql),
                ConfluoStatement::Describe {
                    kind: DescribeKind::Extended,
                    ..
                }
            ),
            "{sql}"
        );
    }
    assert!(matches!(
        one("DESCRIBE HISTORY t LIMIT 3"),
        ConfluoStatement::Describe {
            kind: DescribeKind::History(Some(3)),
            ..
        }
    ));
    assert!(matches!(
        one("CREATE CATALOG IF NOT EXISTS c COMMENT 'x'"),
        ConfluoStatement::CreateCatalog {
            if_not_exists: true,
            ..
        }
    ));
    match one(
        "CREATE OR REPLACE TABLE s.t (id BIGINT, v STRING) USING DELTA COMMENT 'c' PARTITIONED BY (v) TBLPROPERTIES ('delta.appendOnly' = 'false', owner.team = 'x')",
    ) {
        ConfluoStatement::CreateTable(ct) => {
            assert!(ct.or_replace);
            assert_eq!(ct.columns.len(), 2);
            assert_eq!(ct.partition_by.len(), 1);
            assert_eq!(ct.properties[1].0, "owner.team");
        }
        other => panic!("{other:?}"),
    }
    match one("CREATE TABLE t TBLPROPERTIES (a = 1) AS SELECT 1 AS x") {
        ConfluoStatement::CreateTable(ct) => assert!(ct.query.is_some()),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        one("INSERT INTO t (a, b) SELECT 1, 2"),
        ConfluoStatement::Insert { .. }
    ));
    assert!(matches!(
        one("INSERT OVERWRITE t VALUES (1)"),
        ConfluoStatement::Insert {
            overwrite: true,
            ..
        }
    ));
    assert!(matches!(
        one("INSERT INTO t BY NAME SELECT 1 AS a"),
        ConfluoStatement::Insert { by_name: true, .. }
    ));
    assert!(matches!(
        one("ALTER TABLE t SET TBLPROPERTIES ('k' = 'v')"),
        ConfluoStatement::AlterProperties { .. }
    ));
    assert!(matches!(
        one("COMMENT ON TABLE t IS 'hello'"),
        ConfluoStatement::CommentOn {
            kind: ObjectKind::Table,
            ..
        }
    ));
    assert!(matches!(
        one("VACUUM t RETAIN 0 HOURS DRY RUN"),
        ConfluoStatement::Vacuum { dry_run: true, .. }
    ));
    assert!(matches!(
        one("SELECT * FROM t VERSION AS OF 1"),
        ConfluoStatement::Query(_)
    ));
    assert!(matches!(
        one("DROP TABLE IF EXISTS t"),
        ConfluoStatement::Drop {
            if_exists: true,
            ..
        }
    ));
}

#[test]
fn errors_have_positions_and_statements_their_text() {
    let e = parse_sql("SELECT 1;\nSELEC * FROM t").unwrap_err();
    let l = e.location.unwrap();
    assert_eq!((l.line, l.column), (2, 1), "{e}");
    let v = parse_sql("SELECT 1;  SELECT 2 ;").unwrap();
    assert_eq!(v[1].text, "SELECT 2");
}

#[test]
fn optimize_takes_partitions_and_zorder_columns() {
    assert!(matches!(
        one("OPTIMIZE sales.events WHERE day = '2026-01-01' ZORDER BY (customer, ts)"),
        ConfluoStatement::Optimize { predicate: Some(_), ref zorder, .. } if zorder.len() == 2
    ));
    assert!(matches!(
        one("optimize t zorder by a"),
        ConfluoStatement::Optimize { predicate: None, ref zorder, .. } if zorder.len() == 1
    ));
    assert!(matches!(
        one("OPTIMIZE t"),
        ConfluoStatement::Optimize { predicate: None, ref zorder, .. } if zorder.is_empty()
    ));
}

#[test]
fn spark_inspection_forms() {
    assert!(matches!(
        one("SHOW CREATE TABLE s.t"),
        ConfluoStatement::Show {
            what: Show::CreateTable(_),
            ..
        }
    ));
    match one("SHOW COLUMNS IN t IN sales") {
        ConfluoStatement::Show {
            what: Show::Columns(name),
            ..
        } => assert_eq!(name.to_string(), "sales.t"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        one("ANALYZE TABLE t COMPUTE STATISTICS NOSCAN"),
        ConfluoStatement::Analyze { columns: None, .. }
    ));
    assert!(matches!(
        one("ANALYZE TABLE t COMPUTE STATISTICS FOR ALL COLUMNS"),
        ConfluoStatement::Analyze { columns: Some(ref c), .. } if c.is_empty()
    ));
    assert!(matches!(
        one("analyze table t compute statistics for columns a, b"),
        ConfluoStatement::Analyze { columns: Some(ref c), .. } if c.len() == 2
    ));
    let e = parse_sql("ANALYZE TABLE t PARTITION (d = 1) COMPUTE STATISTICS").unwrap_err();
    assert!(e.message.starts_with("not supported yet"), "{e}");
    assert_eq!(e.location.unwrap().column, 17, "{e}");
    assert!(matches!(one("SHOW FUNCTIONS"), ConfluoStatement::Query(_)));
}

#[test]
fn federation_statements() {
    match one(
        "CREATE CONNECTION IF NOT EXISTS pg TYPE postgresql OPTIONS (host 'db', port 5432, user = 'u', password secret('shop', 'pg')) COMMENT 'c'",
    ) {
        ConfluoStatement::CreateConnection {
            name,
            if_not_exists,
            kind,
            options,
            comment,
        } => {
            assert_eq!(name.value, "pg");
            assert!(if_not_exists);
            assert_eq!(kind, "postgresql");
            assert_eq!(
                options,
                vec![
                    ("host".to_string(), "db".to_string()),
                    ("port".to_string(), "5432".to_string()),
                    ("user".to_string(), "u".to_string()),
                    ("password".to_string(), "secret('shop', 'pg')".to_string()),
                ]
            );
            assert_eq!(comment.as_deref(), Some("c"));
        }
        other => panic!("{other:?}"),
    }
    match one("CREATE FOREIGN CATALOG shop USING CONNECTION pg OPTIONS (database 'shop')") {
        ConfluoStatement::CreateForeignCatalog {
            connection,
            options,
            ..
        } => {
            assert_eq!(connection.value, "pg");
            assert_eq!(options, vec![("database".to_string(), "shop".to_string())]);
        }
        other => panic!("{other:?}"),
    }
    match one("CREATE OR REPLACE VIEW s.v COMMENT 'big' AS SELECT a FROM t WHERE a > 1") {
        ConfluoStatement::CreateView {
            or_replace,
            comment,
            query,
            ..
        } => {
            assert!(or_replace);
            assert_eq!(comment.as_deref(), Some("big"));
            assert_eq!(query.to_string(), "SELECT a FROM t WHERE a > 1");
        }
        other => panic!("{other:?}"),
    }
    assert!(parse_sql("CREATE VIEW v (a, b) AS SELECT 1, 2").is_err());
    assert!(matches!(
        one("DROP VIEW IF EXISTS v"),
        ConfluoStatement::Drop {
            kind: ObjectKind::View,
            if_exists: true,
            ..
        }
    ));
    assert!(matches!(
        one("DROP CONNECTION pg"),
        ConfluoStatement::Drop {
            kind: ObjectKind::Connection,
            ..
        }
    ));
    assert!(matches!(
        one("SHOW CONNECTIONS"),
        ConfluoStatement::Show {
            what: Show::Connections,
            ..
        }
    ));
    assert!(matches!(
        one("SHOW VIEWS IN main.s"),
        ConfluoStatement::Show {
            what: Show::Views(Some(_)),
            ..
        }
    ));
}
