//! Lakehouse statements Confluo executes itself.

mod analyze;
mod ddl;
mod describe;
mod dml;
mod federation;
mod optimize;
mod show_create;

pub use dml::{declared_columns, project_to_schema, write_frame};

use crate::error::Result;
use crate::parser::{ConfluoStatement, ObjectKind, Show};
use crate::session::{SqlOutput, SqlSession};

/// Executes a statement that is not a plain query.
pub async fn execute(session: &SqlSession, statement: ConfluoStatement) -> Result<SqlOutput> {
    match statement {
        ConfluoStatement::Query(_) => unreachable!("queries are planned by the session"),
        ConfluoStatement::CreateCatalog {
            name,
            if_not_exists,
            comment,
        } => ddl::create_catalog(session, name, if_not_exists, comment).await,
        ConfluoStatement::CreateSchema {
            name,
            if_not_exists,
            comment,
        } => ddl::create_schema(session, name, if_not_exists, comment).await,
        ConfluoStatement::CreateTable(ct) => dml::create_table(session, *ct).await,
        ConfluoStatement::Insert {
            table,
            overwrite,
            columns,
            by_name,
            source,
        } => dml::insert(session, table, overwrite, columns, by_name, source).await,
        ConfluoStatement::Drop {
            kind: ObjectKind::View,
            name,
            if_exists,
            ..
        } => federation::drop_view(session, name, if_exists).await,
        ConfluoStatement::Drop {
            kind: ObjectKind::Connection,
            name,
            if_exists,
            ..
        } => federation::drop_connection(session, name, if_exists).await,
        ConfluoStatement::Drop {
            kind: ObjectKind::Catalog,
            name,
            if_exists,
            cascade,
        } => {
            let n = crate::session::ident_parts(&name)?.join(".");
            match federation::drop_foreign_catalog(session, &n).await? {
                Some(out) => Ok(out),
                None => ddl::drop(session, ObjectKind::Catalog, name, if_exists, cascade).await,
            }
        }
        ConfluoStatement::Drop {
            kind,
            name,
            if_exists,
            cascade,
        } => ddl::drop(session, kind, name, if_exists, cascade).await,
        ConfluoStatement::CommentOn {
            kind,
            name,
            comment,
        } => ddl::comment_on(session, kind, name, comment).await,
        ConfluoStatement::AlterProperties { table, set, unset } => {
            ddl::alter_properties(session, table, set, unset).await
        }
        ConfluoStatement::Show {
            what: Show::Connections,
            like,
        } => federation::show_connections(session, like).await,
        ConfluoStatement::Show {
            what: Show::Views(schema),
            like,
        } => {
            let (c, s) = match &schema {
                Some(n) => {
                    let parts = crate::session::ident_parts(n)?;
                    match parts.as_slice() {
                        [s] => (session.current().0, s.clone()),
                        [c, s] => (c.clone(), s.clone()),
                        _ => {
                            return Err(crate::error::SqlError::plan(
                                format!("`{n}` is not a schema name"),
                                crate::session::location_of(n),
                            ));
                        }
                    }
                }
                None => session.current(),
            };
            federation::show_views(session, c, s, like).await
        }
        ConfluoStatement::Show {
            what: what @ (Show::Schemas(Some(_)) | Show::Tables(Some(_))),
            like,
        } => {
            let (name, tables) = match &what {
                Show::Schemas(Some(n)) => (n, false),
                Show::Tables(Some(n)) => (n, true),
                _ => unreachable!("matched above"),
            };
            let parts = crate::session::ident_parts(name)?;
            match federation::show_foreign(session, &parts, tables, like.as_deref()) {
                Some(out) => out,
                None => describe::show(session, what, like).await,
            }
        }
        ConfluoStatement::Show { what, like } => describe::show(session, what, like).await,
        ConfluoStatement::Analyze { table, columns } => {
            analyze::analyze(session, table, columns).await
        }
        ConfluoStatement::Describe { table, kind } => {
            describe::describe(session, table, kind).await
        }
        ConfluoStatement::Vacuum {
            table,
            retain_hours,
            dry_run,
        } => describe::vacuum(session, table, retain_hours, dry_run).await,
        ConfluoStatement::Optimize {
            table,
            predicate,
            zorder,
        } => optimize::optimize(session, table, predicate, zorder).await,
        ConfluoStatement::Use { name, catalog } => ddl::use_(session, name, catalog).await,
        ConfluoStatement::CreateConnection {
            name,
            if_not_exists,
            kind,
            options,
            comment,
        } => {
            federation::create_connection(session, name, if_not_exists, kind, options, comment)
                .await
        }
        ConfluoStatement::CreateForeignCatalog {
            name,
            if_not_exists,
            connection,
            options,
            comment,
        } => {
            federation::create_foreign_catalog(
                session,
                name,
                if_not_exists,
                connection,
                options,
                comment,
            )
            .await
        }
        ConfluoStatement::CreateView {
            name,
            or_replace,
            if_not_exists,
            query,
            comment,
        } => {
            federation::create_view(session, name, or_replace, if_not_exists, query, comment).await
        }
    }
}

/// Whether `name` matches a `SHOW ... LIKE` pattern (`*` or `%` wildcards, `|` alternatives,
/// case-insensitive).
pub fn like(pattern: &str, name: &str) -> bool {
    fn glob(p: &[u8], s: &[u8]) -> bool {
        match (p.first(), s.first()) {
            (None, None) => true,
            (Some(b'*') | Some(b'%'), _) => glob(&p[1..], s) || (!s.is_empty() && glob(p, &s[1..])),
            (Some(b'_'), Some(_)) => glob(&p[1..], &s[1..]),
            (Some(a), Some(b)) if a.eq_ignore_ascii_case(b) => glob(&p[1..], &s[1..]),
            _ => false,
        }
    }
    pattern
        .split('|')
        .any(|alt| glob(alt.trim().as_bytes(), name.as_bytes()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn like_patterns() {
        assert!(super::like("ord*", "orders"));
        assert!(super::like("%ers|cust*", "customers"));
        assert!(!super::like("ord*", "customers"));
    }
}
