//! What a connection's session answers itself, beside the queries it plans: lakehouse
//! statements (their message as a NOTICE, their tag with a row count), `COPY ... TO STDOUT`,
//! savepoints, `search_path`, and declared cursors published as protocol portals.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::sql::sqlparser::ast::{Expr, Set, Statement, Value};
use datafusion_pg_catalog::sql::PostgresCompatibilityParser;
use futures::{Sink, SinkExt};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::results::{Response, Tag};
use pgwire::api::store::{MemPortalStore, PortalStore};
use pgwire::api::{ClientInfo, ClientPortalStore};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::types::format::FormatOptions;

use confluo_sql::SqlOutput;
use confluo_sql::parser::ConfluoStatement;

use super::encode::{self, sql_error, user_error};
use super::handler::Prepared;
use super::session::ConnSession;

/// Runs a lakehouse statement; its message goes to the client as a NOTICE.
pub(super) async fn run_confluo<C>(
    client: &mut C,
    session: &ConnSession,
    statement: ConfluoStatement,
    format: &Format,
) -> PgWireResult<Response>
where
    C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let tag = command_tag(&statement);
    let out = session
        .sql
        .execute(statement)
        .await
        .map_err(|e| sql_error(&e, None))?;
    notices(client, session).await?;
    match out {
        SqlOutput::Rows(rows) => Ok(Response::Query(
            encode::response(rows, format, format_options(client), session.timer()).await?,
        )),
        SqlOutput::Message(m) => {
            if !m.is_empty() {
                notice(client, &m).await?;
            }
            let n = crate::rows_in(&m);
            Ok(Response::Execution(match tag.as_str() {
                "INSERT" => Tag::new("INSERT").with_oid(0).with_rows(n.unwrap_or(0)),
                _ => match n {
                    Some(n) if tag == "CREATE TABLE" => Tag::new("SELECT").with_rows(n),
                    _ => Tag::new(&tag),
                },
            }))
        }
    }
}

/// The session's notices about the last statement (rows `read_files` rescued).
pub(super) async fn notices<C>(client: &mut C, session: &ConnSession) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    for n in session.sql.notices() {
        notice(client, &n).await?;
    }
    Ok(())
}

pub(super) async fn notice<C>(client: &mut C, message: &str) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let info = ErrorInfo::new("NOTICE".into(), "00000".into(), message.to_string());
    client
        .feed(PgWireBackendMessage::NoticeResponse(info.into()))
        .await?;
    Ok(())
}

pub(super) fn format_options<C: ClientInfo>(client: &C) -> Arc<FormatOptions> {
    Arc::new(FormatOptions::from_client_metadata(client.metadata()))
}

/// The command tag Postgres would send for a statement.
pub(super) fn command_tag(s: &ConfluoStatement) -> String {
    use ConfluoStatement as C;
    match s {
        C::Query(_) => "SELECT",
        C::CreateCatalog { .. } => "CREATE CATALOG",
        C::CreateSchema { .. } => "CREATE SCHEMA",
        C::CreateTable(_) => "CREATE TABLE",
        C::Insert { .. } => "INSERT",
        C::Drop { kind, .. } => match kind {
            confluo_sql::parser::ObjectKind::Catalog => "DROP CATALOG",
            confluo_sql::parser::ObjectKind::Schema => "DROP SCHEMA",
            confluo_sql::parser::ObjectKind::View => "DROP VIEW",
            confluo_sql::parser::ObjectKind::Connection => "DROP CONNECTION",
            _ => "DROP TABLE",
        },
        C::CommentOn { .. } => "COMMENT",
        C::AlterProperties { .. } => "ALTER TABLE",
        C::Vacuum { .. } => "VACUUM",
        C::Optimize { .. } => "OPTIMIZE",
        C::Analyze { .. } => "ANALYZE",
        C::Use { .. } => "SET",
        C::CreateView { .. } => "CREATE VIEW",
        C::CreateConnection { .. } => "CREATE CONNECTION",
        C::CreateForeignCatalog { .. } => "CREATE FOREIGN CATALOG",
        _ => "OK",
    }
    .to_string()
}

/// `COPY ... TO STDOUT`: the rows of the statement's query, streamed.
pub(super) async fn copy_out(
    session: &ConnSession,
    statement: &Statement,
    sql: Option<&str>,
) -> PgWireResult<Response> {
    let (query, format) = super::copy::plan(statement)?;
    match session
        .sql
        .execute(ConfluoStatement::Query(Box::new(query)))
        .await
        .map_err(|e| sql_error(&e, sql))?
    {
        SqlOutput::Rows(rows) => Ok(super::copy::response(rows, format)),
        SqlOutput::Message(_) => Err(user_error("XX000", "COPY: the query returned no rows")),
    }
}

pub(super) fn unsupported(statement: &Statement) -> PgWireError {
    user_error(
        "0A000",
        format!("`{statement}` is not supported by this server"),
    )
}

/// What the session answers before the hooks do: savepoints and `SHOW search_path`; and
/// what `SET search_path` changes in it (the hook then records the setting).
pub(super) async fn before_hooks<C>(
    client: &mut C,
    session: &ConnSession,
    statement: &Statement,
    format: &Format,
) -> PgWireResult<Option<Response>>
where
    C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    if let Some(r) = savepoint(client, statement).await? {
        return Ok(Some(r));
    }
    if let Some(r) = show_search_path(client, session, statement, format).await? {
        return Ok(Some(r));
    }
    apply_search_path(session, statement);
    Ok(None)
}

/// Makes a declared cursor a protocol portal of the same name, as PostgreSQL does:
/// drivers describe it (`Describe Portal`) to learn the rows' shape before they FETCH, and
/// may execute it to read it.
pub(super) fn publish_cursor<C>(
    client: &C,
    name: &str,
    schema: SchemaRef,
    pg: &PostgresCompatibilityParser,
) -> PgWireResult<()>
where
    C: ClientPortalStore,
    C::PortalStore: PortalStore,
{
    let Some(store) = client
        .portal_store()
        .as_any()
        .downcast_ref::<MemPortalStore<Prepared>>()
    else {
        return Ok(());
    };
    let fetch = pg
        .parse(&format!("FETCH ALL FROM \"{}\"", name.replace('"', "\"\"")))
        .map_err(|e| user_error("XX000", e.to_string()))?
        .pop()
        .ok_or_else(|| user_error("XX000", "cannot describe the cursor"))?;
    let statement = Arc::new(pgwire::api::stmt::StoredStatement::new(
        name.to_string(),
        Prepared::Cursor(fetch, Some(schema)),
        vec![],
    ));
    store.put_portal(Arc::new(Portal::new_cursor(name.to_string(), statement)));
    Ok(())
}

/// `SAVEPOINT`, `RELEASE` and `ROLLBACK TO`: accepted inside a transaction block, as
/// drivers send them (psycopg's nested `transaction()`). Each statement has committed on its
/// own, so a rollback undoes nothing, and the client is told so.
pub(super) async fn savepoint<C>(
    client: &mut C,
    statement: &Statement,
) -> PgWireResult<Option<Response>>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    Ok(match statement {
        Statement::Savepoint { .. } => Some(Response::Execution(Tag::new("SAVEPOINT"))),
        Statement::ReleaseSavepoint { .. } => Some(Response::Execution(Tag::new("RELEASE"))),
        Statement::Rollback {
            savepoint: Some(_), ..
        } => {
            notice(
                client,
                "nothing was rolled back: each statement commits on its own here",
            )
            .await?;
            Some(Response::Execution(Tag::new("ROLLBACK")))
        }
        _ => None,
    })
}

pub(super) fn is_savepoint(s: &Statement) -> bool {
    matches!(
        s,
        Statement::Savepoint { .. }
            | Statement::ReleaseSavepoint { .. }
            | Statement::Rollback {
                savepoint: Some(_),
                ..
            }
    )
}

/// `SHOW search_path`: the schema unqualified names resolve in (the session's own, which
/// `SET search_path`, `USE` and `options=-c search_path=` change).
pub(super) async fn show_search_path<C: ClientInfo>(
    client: &C,
    session: &ConnSession,
    statement: &Statement,
    format: &Format,
) -> PgWireResult<Option<Response>> {
    let Statement::ShowVariable { variable } = statement else {
        return Ok(None);
    };
    if variable.len() != 1 || !variable[0].value.eq_ignore_ascii_case("search_path") {
        return Ok(None);
    }
    use datafusion::arrow::array::StringArray;
    use datafusion::arrow::datatypes::{Field, Schema};
    let (_, schema_name) = session.sql.current();
    let schema = Arc::new(Schema::new(vec![Field::new(
        "search_path",
        DataType::Utf8,
        false,
    )]));
    let batch = datafusion::arrow::array::RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(StringArray::from(vec![schema_name]))],
    )
    .map_err(|e| user_error("XX000", e.to_string()))?;
    let rows = Box::pin(
        datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(
            schema,
            futures::stream::iter([Ok(batch)]),
        ),
    );
    let mut r = encode::response(rows, format, format_options(client), session.timer()).await?;
    r.set_command_tag("SHOW");
    Ok(Some(Response::Query(r)))
}

/// `SET search_path = s` makes `s` the schema unqualified names resolve in, when the
/// current catalog has it (Postgres' `public` and unknown names are left to the hook).
pub(super) fn apply_search_path(session: &ConnSession, statement: &Statement) {
    let Statement::Set(Set::SingleAssignment {
        variable, values, ..
    }) = statement
    else {
        return;
    };
    if !variable.to_string().eq_ignore_ascii_case("search_path") {
        return;
    }
    let first = match values.first() {
        Some(Expr::Identifier(i)) => i.value.clone(),
        Some(Expr::Value(v)) => match &v.value {
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => {
                super::session::first_schema(s).to_string()
            }
            _ => return,
        },
        _ => return,
    };
    let (catalog, _) = session.sql.current();
    if super::session::has_schema(&session.sql, &catalog, &first) {
        session.sql.set_current(&catalog, &first);
    }
}
