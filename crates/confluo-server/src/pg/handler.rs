//! Statements on the wire, simple and extended. Text is read with the Postgres dialect
//! (what clients send, with datafusion-pg-catalog's rewrites of catalog queries); what
//! that dialect cannot read is read as Confluo SQL (`OPTIMIZE`, `DESCRIBE HISTORY`, ...).
//! Queries are planned by the connection's Confluo session; `SET`/`SHOW`/`BEGIN`/`COMMIT`
//! go to datafusion-postgres's hooks; lakehouse statements run as they do in `confluo
//! query`, their message sent as a NOTICE.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion_pg_catalog::sql::PostgresCompatibilityParser;
use datafusion_postgres::QueryHook;
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;
use futures::Sink;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{FieldInfo, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::{MemPortalStore, PortalStore};
use pgwire::api::{ClientInfo, ClientPortalStore, Type};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;

use confluo_sql::parser::ConfluoStatement;
use confluo_sql::{SqlError, SqlOutput};

use super::Shared;
use super::answers::{
    before_hooks, command_tag, copy_out, format_options, is_savepoint, notices, publish_cursor,
    run_confluo, unsupported,
};
use super::cursor::{CursorOp, Cursors};
use super::encode::{self, sql_error, user_error};
use super::session::{self, ConnSession};

/// What the connection shares between its parser and its handlers.
pub(crate) struct State {
    shared: Arc<Shared>,
    session: tokio::sync::OnceCell<Arc<ConnSession>>,
    pg: PostgresCompatibilityParser,
    hooks: Vec<Arc<dyn QueryHook>>,
    cursors: Cursors,
}

impl State {
    /// The session, opened at the first statement (after login, as the user).
    async fn session<C: ClientInfo + Sync + ?Sized>(
        &self,
        client: &C,
    ) -> PgWireResult<Arc<ConnSession>> {
        self.session
            .get_or_try_init(|| session::open(&self.shared, client))
            .await
            .cloned()
    }

    /// Reads a script: Postgres dialect first, Confluo's when that fails.
    fn read(&self, session: &ConnSession, sql: &str) -> PgWireResult<Vec<Item>> {
        match self.pg.parse(sql).or_else(|e| match as_create_role(sql) {
            // The Postgres dialect reads `CREATE USER` Snowflake's way; PostgreSQL's
            // `CREATE USER` is `CREATE ROLE ... LOGIN`.
            Some(role) => self.pg.parse(&role),
            None => Err(e),
        }) {
            Ok(statements) => Ok(statements.into_iter().map(classify).collect()),
            Err(pg_error) => match session.sql.parse(sql) {
                Ok(parsed) => Ok(parsed
                    .into_iter()
                    .map(|p| match p.statement {
                        ConfluoStatement::Query(s) => Item::Query(*s),
                        other => Item::Confluo(other),
                    })
                    .collect()),
                Err(e) => {
                    let err = sql_error(&e, Some(sql));
                    tracing::debug!("postgres dialect: {pg_error}; Confluo: {e}");
                    Err(err)
                }
            },
        }
    }
}

/// `CREATE USER x ...` spelled `CREATE ROLE x LOGIN ...`, when `sql` is one.
fn as_create_role(sql: &str) -> Option<String> {
    let trimmed = sql.trim_start();
    let words: Vec<&str> = trimmed.splitn(4, char::is_whitespace).collect();
    if words.len() >= 3
        && words[0].eq_ignore_ascii_case("create")
        && words[1].eq_ignore_ascii_case("user")
    {
        let rest = words.get(3).copied().unwrap_or("");
        let rest = rest
            .trim_start()
            .strip_prefix("WITH ")
            .or_else(|| rest.trim_start().strip_prefix("with "))
            .unwrap_or(rest);
        Some(format!("CREATE ROLE {} WITH LOGIN {rest}", words[2]))
    } else {
        None
    }
}

/// A statement, by who runs it.
#[derive(Debug, Clone)]
pub(crate) enum Item {
    /// Planned by the session (SELECT, VALUES, EXPLAIN, WITH ...).
    Query(Statement),
    /// `SET`, `SHOW var`, transactions: the hooks.
    Hook(Statement),
    /// `COPY ... TO STDOUT`.
    Copy(Statement),
    /// `DECLARE ... CURSOR`, `FETCH`, `CLOSE`.
    Cursor(Statement),
    /// `CREATE USER`, `DROP USER`.
    Principal(Statement),
    /// A lakehouse statement.
    Confluo(ConfluoStatement),
}

fn classify(s: Statement) -> Item {
    match s {
        Statement::Query(_) | Statement::Explain { .. } => Item::Query(s),
        Statement::Set(_)
        | Statement::ShowVariable { .. }
        | Statement::ShowStatus { .. }
        | Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. }
        | Statement::Savepoint { .. }
        | Statement::ReleaseSavepoint { .. } => Item::Hook(s),
        Statement::Copy { .. } => Item::Copy(s),
        Statement::Declare { .. } | Statement::Fetch { .. } | Statement::Close { .. } => {
            Item::Cursor(s)
        }
        s if super::principals::is_principal_statement(&s) => Item::Principal(s),
        other => {
            // Lakehouse statements run through Confluo's own reading of them.
            match confluo_sql::parser::parse_sql(&other.to_string()) {
                Ok(mut p) if p.len() == 1 => match p.remove(0).statement {
                    ConfluoStatement::Query(s) => Item::Query(*s),
                    c => Item::Confluo(c),
                },
                _ => Item::Query(other),
            }
        }
    }
}

/// A prepared statement (extended protocol).
#[derive(Debug, Clone)]
pub(crate) enum Prepared {
    /// A query, planned with its parameters open.
    Query(LogicalPlan),
    /// A hook's statement and the plan it made.
    Hook(Statement, LogicalPlan),
    /// `COPY ... TO STDOUT`.
    Copy(Statement),
    /// `DECLARE`/`CLOSE`, or a `FETCH` with the cursor's row shape.
    Cursor(Statement, Option<SchemaRef>),
    /// `CREATE USER`, `DROP USER`.
    Principal(Statement),
    /// A lakehouse statement; `Some(schema)` when it returns rows (SHOW, DESCRIBE: run once
    /// at Parse to learn their shape, and again at Execute).
    Confluo(ConfluoStatement, Option<SchemaRef>),
}

/// The connection's query handlers.
pub(crate) struct Handler {
    state: Arc<State>,
    parser: Arc<Parser>,
}

impl Handler {
    pub fn new(shared: Arc<Shared>) -> Self {
        let state = Arc::new(State {
            shared,
            session: tokio::sync::OnceCell::new(),
            pg: PostgresCompatibilityParser::new(),
            hooks: vec![Arc::new(SetShowHook), Arc::new(TransactionStatementHook)],
            cursors: Cursors::default(),
        });
        Handler {
            parser: Arc::new(Parser {
                state: state.clone(),
            }),
            state,
        }
    }
}

#[async_trait]
impl SimpleQueryHandler for Handler {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = self.state.session(client).await?;
        let items = self.state.read(&session, query)?;
        if items.is_empty() {
            return Ok(vec![Response::EmptyQuery]);
        }
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            // A failing statement ends the script, as in PostgreSQL; what ran is answered.
            let limit = statement_timeout(client);
            session.begin_statement();
            let result = within(limit, self.simple_one(client, &session, item, query)).await;
            session.finished(&result);
            match result {
                Ok(r) => out.push(r),
                Err(PgWireError::UserError(info)) => {
                    out.push(Response::Error(info));
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}

impl Handler {
    async fn simple_one<C>(
        &self,
        client: &mut C,
        session: &ConnSession,
        item: Item,
        query: &str,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match item {
            Item::Query(s) => {
                let out = session
                    .sql
                    .execute(ConfluoStatement::Query(Box::new(s)))
                    .await
                    .map_err(|e| sql_error(&e, Some(query)))?;
                notices(client, session).await?;
                match out {
                    SqlOutput::Rows(rows) => Ok(Response::Query(
                        encode::response(
                            rows,
                            &Format::UnifiedText,
                            format_options(client),
                            session.timer(),
                        )
                        .await?,
                    )),
                    SqlOutput::Message(_) => Ok(Response::Execution(Tag::new("SELECT"))),
                }
            }
            Item::Hook(s) => {
                if let Some(r) = before_hooks(client, session, &s, &Format::UnifiedText).await? {
                    return Ok(r);
                }
                for hook in &self.state.hooks {
                    if let Some(r) = hook
                        .handle_simple_query(&s, session.sql.context(), client)
                        .await
                    {
                        return r;
                    }
                }
                Err(unsupported(&s))
            }
            Item::Copy(s) => copy_out(session, &s, Some(query)).await,
            Item::Cursor(s) => self.cursor(client, session, &s, &Format::UnifiedText).await,
            Item::Principal(s) => {
                super::principals::run(&self.state.shared, &session.user, &s).await
            }
            Item::Confluo(c) => run_confluo(client, session, c, &Format::UnifiedText).await,
        }
    }

    /// Runs `DECLARE`, `FETCH` or `CLOSE`.
    async fn cursor<C>(
        &self,
        client: &C,
        session: &ConnSession,
        statement: &Statement,
        format: &Format,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sync,
        C::PortalStore: PortalStore,
    {
        let op = CursorOp::of(statement).unwrap_or_else(|| Err(unsupported(statement)))?;
        let cursors = &self.state.cursors;
        match op {
            CursorOp::Declare(name, query) => {
                match session
                    .sql
                    .execute(ConfluoStatement::Query(Box::new(Statement::Query(query))))
                    .await
                    .map_err(|e| sql_error(&e, None))?
                {
                    SqlOutput::Rows(rows) => {
                        let schema = rows.schema();
                        cursors.declare(&name, rows)?;
                        publish_cursor(client, &name, schema, &self.state.pg)?;
                    }
                    SqlOutput::Message(_) => {
                        return Err(user_error(
                            "42P11",
                            "a cursor needs a query that returns rows",
                        ));
                    }
                }
                Ok(Response::Execution(Tag::new("DECLARE CURSOR")))
            }
            CursorOp::Fetch(name, count) => {
                let rows = cursors.fetch(&name, count).await?;
                let mut r =
                    encode::response(rows, format, format_options(client), session.timer()).await?;
                r.set_command_tag("FETCH");
                Ok(Response::Query(r))
            }
            CursorOp::Close(name) => {
                cursors.close(name.as_deref())?;
                if let Some(store) = client
                    .portal_store()
                    .as_any()
                    .downcast_ref::<MemPortalStore<Prepared>>()
                    && let Some(n) = &name
                {
                    store.rm_portal(n);
                }
                Ok(Response::Execution(Tag::new("CLOSE CURSOR")))
            }
        }
    }
}

/// Reads and plans statements for the extended protocol.
pub(crate) struct Parser {
    state: Arc<State>,
}

#[async_trait]
impl QueryParser for Parser {
    type Statement = Prepared;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let session = self.state.session(client).await?;
        let mut items = self.state.read(&session, sql)?;
        if items.len() > 1 {
            return Err(user_error(
                "42601",
                "cannot insert multiple commands into a prepared statement",
            ));
        }
        let Some(item) = items.pop() else {
            return Ok(None);
        };
        match item {
            Item::Query(s) => {
                session
                    .sql
                    .refresh()
                    .await
                    .map_err(|e| sql_error(&e, Some(sql)))?;
                let df = session
                    .sql
                    .plan_statement(s)
                    .await
                    .map_err(|e| sql_error(&e, Some(sql)))?;
                Ok(Some(Prepared::Query(df.logical_plan().clone())))
            }
            Item::Hook(s) => {
                if is_savepoint(&s) {
                    let nothing =
                        LogicalPlan::EmptyRelation(datafusion::logical_expr::EmptyRelation {
                            produce_one_row: false,
                            schema: Arc::new(datafusion::common::DFSchema::empty()),
                        });
                    return Ok(Some(Prepared::Hook(s, nothing)));
                }
                for hook in &self.state.hooks {
                    if let Some(plan) = hook
                        .handle_extended_parse_query(&s, session.sql.context(), client)
                        .await
                    {
                        return Ok(Some(Prepared::Hook(s, plan?)));
                    }
                }
                Err(unsupported(&s))
            }
            Item::Copy(s) => Ok(Some(Prepared::Copy(s))),
            Item::Cursor(s) => {
                let schema = match CursorOp::of(&s) {
                    Some(Ok(CursorOp::Fetch(name, _))) => Some(self.state.cursors.schema(&name)?),
                    Some(Err(e)) => return Err(e),
                    _ => None,
                };
                Ok(Some(Prepared::Cursor(s, schema)))
            }
            Item::Principal(s) => Ok(Some(Prepared::Principal(s))),
            Item::Confluo(c) => {
                let schema = match &c {
                    ConfluoStatement::Show { .. } | ConfluoStatement::Describe { .. } => {
                        match session
                            .sql
                            .execute(c.clone())
                            .await
                            .map_err(|e| sql_error(&e, Some(sql)))?
                        {
                            SqlOutput::Rows(rows) => Some(rows.schema()),
                            SqlOutput::Message(_) => None,
                        }
                    }
                    _ => None,
                };
                Ok(Some(Prepared::Confluo(c, schema)))
            }
        }
    }

    fn get_parameter_types(&self, stmt: &Prepared) -> PgWireResult<Vec<Type>> {
        match stmt {
            Prepared::Query(plan) | Prepared::Hook(_, plan) => parameter_types(plan)?
                .into_iter()
                .map(|t| match t {
                    Some(t) => arrow_pg::datatypes::into_pg_type(&t),
                    None => Ok(Type::UNKNOWN),
                })
                .collect(),
            _ => Ok(vec![]),
        }
    }

    fn get_result_schema(
        &self,
        stmt: &Prepared,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        let format = column_format.unwrap_or(&Format::UnifiedText);
        match stmt {
            Prepared::Query(plan) | Prepared::Hook(_, plan)
                if !matches!(plan, LogicalPlan::Ddl(_) | LogicalPlan::Dml(_)) =>
            {
                encode::fields(plan.schema().as_arrow(), format, None)
            }
            Prepared::Confluo(_, Some(schema)) | Prepared::Cursor(_, Some(schema)) => {
                encode::fields(schema, format, None)
            }
            _ => Ok(vec![]),
        }
    }
}

/// The values a portal binds to its plan's parameters, decoded by the client's types or,
/// where it sent none, the ones DataFusion inferred.
fn bound_parameters(
    portal: &Portal<Prepared>,
    plan: &LogicalPlan,
) -> PgWireResult<datafusion::common::ParamValues> {
    let types = parameter_types(plan)?;
    let refs: Vec<Option<&DataType>> = types.iter().map(|t| t.as_ref()).collect();
    arrow_pg::datatypes::df::deserialize_parameters(portal, &refs)
}

/// The plan's parameters `$1..$n`, in order, with the types DataFusion inferred.
fn parameter_types(plan: &LogicalPlan) -> PgWireResult<Vec<Option<DataType>>> {
    let types: HashMap<String, Option<DataType>> = plan
        .get_parameter_types()
        .map_err(|e| sql_error(&SqlError::from(e), None))?;
    let mut ordered: Vec<(usize, Option<DataType>)> = types
        .into_iter()
        .filter_map(|(k, v)| k.trim_start_matches('$').parse().ok().map(|n| (n, v)))
        .collect();
    ordered.sort_by_key(|(n, _)| *n);
    let count = ordered.last().map(|(n, _)| *n).unwrap_or(0);
    let mut out = vec![None; count];
    for (n, t) in ordered {
        if n >= 1 {
            out[n - 1] = t;
        }
    }
    Ok(out)
}

#[async_trait]
impl ExtendedQueryHandler for Handler {
    type Statement = Prepared;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Parser> {
        self.parser.clone()
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Prepared>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let limit = statement_timeout(client);
        let session = self.state.session(client).await?;
        session.begin_statement();
        let result = within(limit, self.extended_one(client, &session, portal)).await;
        session.finished(&result);
        result
    }
}

impl Handler {
    /// Executes a bound portal.
    async fn extended_one<C>(
        &self,
        client: &mut C,
        session: &ConnSession,
        portal: &Portal<Prepared>,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let format = &portal.result_column_format;
        match &portal.statement.statement {
            Prepared::Query(plan) => {
                let params = bound_parameters(portal, plan)?;
                let plan = plan
                    .clone()
                    .replace_params_with_values(&params)
                    .map_err(|e| sql_error(&SqlError::from(e), None))?;
                let ctx = session.sql.context();
                let rows = ctx
                    .execute_logical_plan(plan)
                    .await
                    .map_err(|e| sql_error(&SqlError::from(e), None))?
                    .execute_stream()
                    .await
                    .map_err(|e| sql_error(&SqlError::from(e), None))?;
                Ok(Response::Query(
                    encode::response(rows, format, format_options(client), session.timer()).await?,
                ))
            }
            Prepared::Hook(s, plan) => {
                let params = bound_parameters(portal, plan)?;
                if let Some(r) = before_hooks(client, session, s, format).await? {
                    return Ok(r);
                }
                for hook in &self.state.hooks {
                    if let Some(r) = hook
                        .handle_extended_query(s, plan, &params, session.sql.context(), client)
                        .await
                    {
                        return r;
                    }
                }
                Err(unsupported(s))
            }
            Prepared::Copy(s) => copy_out(session, s, None).await,
            Prepared::Cursor(s, _) => self.cursor(client, session, s, format).await,
            Prepared::Principal(s) => {
                super::principals::run(&self.state.shared, &session.user, s).await
            }
            Prepared::Confluo(c, schema) => {
                let r = run_confluo(client, session, c.clone(), format).await?;
                // A statement described as returning nothing must not send rows.
                match (r, schema) {
                    (Response::Query(_), None) => {
                        Ok(Response::Execution(Tag::new(&command_tag(c))))
                    }
                    (r, _) => Ok(r),
                }
            }
        }
    }
}

/// The client's `statement_timeout` (`SET statement_timeout = '5s'`), if any.
fn statement_timeout<C: ClientInfo>(client: &C) -> Option<std::time::Duration> {
    client
        .metadata()
        .get("statement_timeout_ms")
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|ms| *ms > 0)
        .map(std::time::Duration::from_millis)
}

/// Runs a statement within the client's statement timeout: past it, the statement is
/// dropped (nothing it wrote is committed unless its commit had happened) and the client
/// gets PostgreSQL's `57014`.
async fn within<T>(
    limit: Option<std::time::Duration>,
    statement: impl std::future::Future<Output = PgWireResult<T>>,
) -> PgWireResult<T> {
    match limit {
        None => statement.await,
        Some(d) => tokio::time::timeout(d, statement)
            .await
            .unwrap_or_else(|_| {
                Err(user_error(
                    "57014",
                    "canceling statement due to statement timeout",
                ))
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_go_to_their_runner() {
        let pg = PostgresCompatibilityParser::new();
        let kinds: Vec<&str> = [
            "SELECT 1",
            "SET search_path = sales",
            "BEGIN",
            "COPY t TO STDOUT",
            "CREATE TABLE t (a INT)",
            "SHOW TABLES",
        ]
        .iter()
        .map(|sql| match classify(pg.parse(sql).unwrap().remove(0)) {
            Item::Query(_) => "query",
            Item::Hook(_) => "hook",
            Item::Copy(_) => "copy",
            Item::Cursor(_) => "cursor",
            Item::Principal(_) => "principal",
            Item::Confluo(_) => "confluo",
        })
        .collect();
        assert_eq!(
            kinds,
            ["query", "hook", "hook", "copy", "confluo", "confluo"]
        );
    }
}
