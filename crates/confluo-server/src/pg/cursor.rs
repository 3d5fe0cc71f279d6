//! Server-side cursors: `DECLARE c CURSOR FOR query`, `FETCH [FORWARD] n|ALL FROM c`,
//! `CLOSE c|ALL`, what psycopg's named cursors and other clients that page a large result
//! use. A cursor holds the query's running stream: rows are produced as they are fetched,
//! never held whole. Forward-only, as PostgreSQL's default (NO SCROLL) cursors are.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::RecordBatch;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::sql::sqlparser::ast::{CloseCursor, FetchDirection, Statement, Value};
use futures::StreamExt;
use pgwire::error::PgWireResult;

use super::encode::user_error;

/// One open cursor: the stream and the part of a batch a FETCH did not take.
struct Cursor {
    rows: SendableRecordBatchStream,
    pending: Option<RecordBatch>,
}

/// A connection's cursors, by name.
#[derive(Default)]
pub(crate) struct Cursors {
    open: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Cursor>>>>,
}

/// What a cursor statement asks for.
pub(crate) enum CursorOp {
    /// Open `name` over the query.
    Declare(String, Box<datafusion::sql::sqlparser::ast::Query>),
    /// Up to `count` rows (`None`: all) from `name`.
    Fetch(String, Option<usize>),
    /// Close `name` (`None`: all).
    Close(Option<String>),
}

impl CursorOp {
    /// The cursor operation of a statement, if it is one; an error for the forms that
    /// need a scrollable cursor.
    pub fn of(statement: &Statement) -> Option<PgWireResult<CursorOp>> {
        match statement {
            Statement::Declare { stmts } => {
                let d = stmts.first()?;
                let query = d.for_query.clone()?;
                let name = d.names.first()?.value.clone();
                if d.scroll == Some(true) {
                    return Some(Err(user_error(
                        "0A000",
                        "SCROLL cursors are not supported: declare it NO SCROLL (the default)",
                    )));
                }
                Some(Ok(CursorOp::Declare(name, query)))
            }
            Statement::Fetch {
                name, direction, ..
            } => {
                let n = |v: &Value| match v {
                    Value::Number(n, _) => n.parse::<usize>().ok(),
                    _ => None,
                };
                let count = match direction {
                    FetchDirection::Next => Some(Some(1)),
                    FetchDirection::All | FetchDirection::ForwardAll => Some(None),
                    FetchDirection::Count { limit } => n(&limit.value).map(Some),
                    FetchDirection::Forward { limit: None } => Some(Some(1)),
                    FetchDirection::Forward { limit: Some(l) } => n(&l.value).map(Some),
                    _ => None,
                };
                Some(match count {
                    Some(c) => Ok(CursorOp::Fetch(name.value.clone(), c)),
                    None => Err(user_error(
                        "55000",
                        format!(
                            "cursor \"{}\" can only scan forward: use FETCH [FORWARD] n or ALL",
                            name.value
                        ),
                    )),
                })
            }
            Statement::Close { cursor } => Some(Ok(CursorOp::Close(match cursor {
                CloseCursor::All => None,
                CloseCursor::Specific { name } => Some(name.value.clone()),
            }))),
            _ => None,
        }
    }
}

impl Cursors {
    fn get(&self, name: &str) -> PgWireResult<Arc<tokio::sync::Mutex<Cursor>>> {
        self.open
            .lock()
            .expect("cursors lock")
            .get(name)
            .cloned()
            .ok_or_else(|| user_error("34000", format!("cursor \"{name}\" does not exist")))
    }

    /// Opens `name` over a running query.
    pub fn declare(&self, name: &str, rows: SendableRecordBatchStream) -> PgWireResult<()> {
        let mut open = self.open.lock().expect("cursors lock");
        if open.contains_key(name) {
            return Err(user_error(
                "42P03",
                format!("cursor \"{name}\" already exists"),
            ));
        }
        open.insert(
            name.to_string(),
            Arc::new(tokio::sync::Mutex::new(Cursor {
                rows,
                pending: None,
            })),
        );
        Ok(())
    }

    /// The next `count` rows of `name` (all that are left for `None`), as a stream of the
    /// batches holding them.
    pub async fn fetch(
        &self,
        name: &str,
        count: Option<usize>,
    ) -> PgWireResult<SendableRecordBatchStream> {
        let cursor = self.get(name)?;
        let mut c = cursor.lock().await;
        let schema = c.rows.schema();
        let mut out = Vec::new();
        let mut want = count.unwrap_or(usize::MAX);
        while want > 0 {
            let batch = match c.pending.take() {
                Some(b) => b,
                None => match c.rows.next().await {
                    Some(b) => b.map_err(|e| {
                        super::encode::sql_error(&confluo_sql::SqlError::from(e), None)
                    })?,
                    None => break,
                },
            };
            if batch.num_rows() <= want {
                want -= batch.num_rows();
                out.push(batch);
            } else {
                out.push(batch.slice(0, want));
                c.pending = Some(batch.slice(want, batch.num_rows() - want));
                want = 0;
            }
        }
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            schema,
            futures::stream::iter(out.into_iter().map(Ok)),
        )))
    }

    /// The row shape of `name`'s rows.
    pub fn schema(&self, name: &str) -> PgWireResult<datafusion::arrow::datatypes::SchemaRef> {
        let cursor = self.get(name)?;
        let c = cursor
            .try_lock()
            .map_err(|_| user_error("55006", format!("cursor \"{name}\" is in use")))?;
        Ok(c.rows.schema())
    }

    /// Closes `name`, or every cursor.
    pub fn close(&self, name: Option<&str>) -> PgWireResult<()> {
        let mut open = self.open.lock().expect("cursors lock");
        match name {
            None => open.clear(),
            Some(n) => {
                open.remove(n)
                    .ok_or_else(|| user_error("34000", format!("cursor \"{n}\" does not exist")))?;
            }
        }
        Ok(())
    }
}
