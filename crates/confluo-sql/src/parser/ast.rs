//! The statements Confluo parses, as data.

use datafusion::sql::sqlparser::ast::{ColumnDef, Expr, Ident, ObjectName, Query, Statement};
use datafusion::sql::sqlparser::tokenizer::Location;

/// One parsed statement and where it is in the input.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// The statement.
    pub statement: ConfluoStatement,
    /// Where it starts (1-based line and column).
    pub start: Location,
    /// Its text.
    pub text: String,
}

/// A statement Confluo executes.
#[derive(Debug, Clone)]
pub enum ConfluoStatement {
    /// Anything DataFusion plans itself: queries, `EXPLAIN`, `VALUES`, ...
    Query(Box<Statement>),
    /// `CREATE CATALOG [IF NOT EXISTS] name [COMMENT '...']`
    CreateCatalog {
        /// Name.
        name: Ident,
        /// Skip when it exists.
        if_not_exists: bool,
        /// Description.
        comment: Option<String>,
    },
    /// `CREATE SCHEMA|DATABASE [IF NOT EXISTS] [catalog.]name [COMMENT '...']`
    CreateSchema {
        /// Name.
        name: ObjectName,
        /// Skip when it exists.
        if_not_exists: bool,
        /// Description.
        comment: Option<String>,
    },
    /// `CREATE [OR REPLACE] TABLE ...`
    CreateTable(Box<CreateTable>),
    /// `INSERT INTO|OVERWRITE t [(cols)] [BY NAME] query`
    Insert {
        /// Target.
        table: ObjectName,
        /// Replace the contents.
        overwrite: bool,
        /// Explicit target columns.
        columns: Vec<Ident>,
        /// Match columns by name instead of position.
        by_name: bool,
        /// The rows.
        source: Box<Query>,
    },
    /// `DROP TABLE|SCHEMA|CATALOG [IF EXISTS] name [CASCADE]`
    Drop {
        /// What kind of object.
        kind: ObjectKind,
        /// Its name.
        name: ObjectName,
        /// No error when missing.
        if_exists: bool,
        /// Drop what it contains too.
        cascade: bool,
    },
    /// `COMMENT ON TABLE|SCHEMA|CATALOG|COLUMN name IS 'text'|NULL`
    CommentOn {
        /// What kind of object.
        kind: ObjectKind,
        /// Its name (`table.column` for columns).
        name: ObjectName,
        /// The comment; `None` clears it.
        comment: Option<String>,
    },
    /// `ALTER TABLE t SET TBLPROPERTIES (...)` / `UNSET TBLPROPERTIES [IF EXISTS] (...)`
    AlterProperties {
        /// The table.
        table: ObjectName,
        /// Properties to set.
        set: Vec<(String, String)>,
        /// Properties to remove.
        unset: Vec<String>,
    },
    /// `SHOW CATALOGS|SCHEMAS|TABLES|TBLPROPERTIES|COLUMNS ...`
    Show {
        /// What to show.
        what: Show,
        /// `LIKE 'pattern'` (`*` and `%` wildcards).
        like: Option<String>,
    },
    /// `DESCRIBE [TABLE|HISTORY|DETAIL|EXTENDED] t`
    Describe {
        /// The table.
        table: ObjectName,
        /// Which description.
        kind: DescribeKind,
    },
    /// `VACUUM t [RETAIN n HOURS] [DRY RUN]`
    Vacuum {
        /// The table.
        table: ObjectName,
        /// Keep files needed by versions newer than this many hours.
        retain_hours: Option<f64>,
        /// Only list what would be deleted.
        dry_run: bool,
    },
    /// `OPTIMIZE t [WHERE partition predicate] [ZORDER BY (col, ...)]`
    Optimize {
        /// The table.
        table: ObjectName,
        /// Which partitions.
        predicate: Option<Box<Expr>>,
        /// Columns to Z-order the rewritten files by.
        zorder: Vec<Ident>,
    },
    /// `ANALYZE TABLE t COMPUTE STATISTICS [NOSCAN | FOR COLUMNS a, b | FOR ALL COLUMNS]`
    Analyze {
        /// The table.
        table: ObjectName,
        /// Column statistics asked for: `None` for the table's alone, `Some([])` for all
        /// columns.
        columns: Option<Vec<Ident>>,
    },
    /// `CREATE CONNECTION [IF NOT EXISTS] name TYPE t OPTIONS (key 'value', ...)`
    CreateConnection {
        /// Name.
        name: Ident,
        /// Skip when it exists.
        if_not_exists: bool,
        /// `postgresql`, `mysql` or `sqlite`.
        kind: String,
        /// Options; a `secret('scope','key')` value is kept as that text.
        options: Vec<(String, String)>,
        /// Description.
        comment: Option<String>,
    },
    /// `CREATE FOREIGN CATALOG [IF NOT EXISTS] name USING CONNECTION c [OPTIONS (...)]`
    CreateForeignCatalog {
        /// Name.
        name: Ident,
        /// Skip when it exists.
        if_not_exists: bool,
        /// The connection.
        connection: Ident,
        /// Options (`database`).
        options: Vec<(String, String)>,
        /// Description.
        comment: Option<String>,
    },
    /// `CREATE [OR REPLACE] VIEW [IF NOT EXISTS] name [COMMENT '...'] AS query`
    CreateView {
        /// Name.
        name: ObjectName,
        /// Replace one of the same name.
        or_replace: bool,
        /// Skip when it exists.
        if_not_exists: bool,
        /// The query, as text.
        query: Box<Query>,
        /// Description.
        comment: Option<String>,
    },
    /// `USE [CATALOG|SCHEMA] name`
    Use {
        /// `catalog` or `catalog.schema` or `schema`.
        name: ObjectName,
        /// Whether `CATALOG` was said.
        catalog: bool,
    },
}

/// `CREATE TABLE` in any of its forms.
#[derive(Debug, Clone)]
pub struct CreateTable {
    /// Name.
    pub name: ObjectName,
    /// `OR REPLACE`.
    pub or_replace: bool,
    /// `IF NOT EXISTS`.
    pub if_not_exists: bool,
    /// Declared columns.
    pub columns: Vec<ColumnDef>,
    /// `USING format` (only `delta` is stored).
    pub using: Option<String>,
    /// `PARTITIONED BY (...)`.
    pub partition_by: Vec<Ident>,
    /// `CLUSTER BY (...)`.
    pub cluster_by: Vec<Ident>,
    /// `LOCATION '...'`: an external table.
    pub location: Option<String>,
    /// `COMMENT '...'`.
    pub comment: Option<String>,
    /// `TBLPROPERTIES (...)`.
    pub properties: Vec<(String, String)>,
    /// `AS query`.
    pub query: Option<Box<Query>>,
}

impl CreateTable {
    /// A bare `CREATE TABLE name`.
    pub fn new(name: ObjectName) -> Self {
        CreateTable {
            name,
            or_replace: false,
            if_not_exists: false,
            columns: vec![],
            using: None,
            partition_by: vec![],
            cluster_by: vec![],
            location: None,
            comment: None,
            properties: vec![],
            query: None,
        }
    }
}

/// Kinds of catalog object named in DDL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// A catalog.
    Catalog,
    /// A schema.
    Schema,
    /// A table.
    Table,
    /// A column.
    Column,
    /// A view.
    View,
    /// A connection.
    Connection,
}

/// What `SHOW` lists.
#[derive(Debug, Clone)]
pub enum Show {
    /// Catalogs.
    Catalogs,
    /// Schemas, of one catalog or the current one.
    Schemas(Option<ObjectName>),
    /// Tables, of one schema or the current one.
    Tables(Option<ObjectName>),
    /// A table's properties.
    TblProperties(ObjectName),
    /// A table's columns (`SHOW COLUMNS IN t [IN schema]`: the schema already joined in).
    Columns(ObjectName),
    /// `SHOW CREATE TABLE t`: the DDL that recreates the table's definition.
    CreateTable(ObjectName),
    /// Connections.
    Connections,
    /// Views, of one schema or the current one.
    Views(Option<ObjectName>),
}

/// What `DESCRIBE` shows.
#[derive(Debug, Clone, PartialEq)]
pub enum DescribeKind {
    /// Columns and types.
    Columns,
    /// Columns plus table details.
    Extended,
    /// Commits, newest first, optionally only the last `n`.
    History(Option<usize>),
    /// One row of table details.
    Detail,
}
