//! `POST /api/v1/query`: runs SQL as the caller and streams the last statement's rows as
//! they are produced — JSON (the default), NDJSON, CSV or an Arrow IPC stream — so a large
//! result is never held whole. The first batch is computed before the status is sent: a
//! statement that fails early gets a 400 with the error, one that fails later ends a JSON
//! document with `"error"` and cuts the other formats short (the client sees a truncated
//! transfer, never a silently short result).

use std::sync::Arc;
use std::time::Instant;

use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::error::ArrowError;
use datafusion::execution::SendableRecordBatchStream;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::json;

use confluo_sql::{SqlOutput, SqlSession};

use super::Shared;
use super::auth::User;
use super::reply::ApiError;
use crate::metrics::QueryTimer;

/// A query as JSON (`{"sql": ..., "catalog"?, "schema"?, "format"?}`); a body of another
/// content type is the SQL itself.
#[derive(Debug, Deserialize)]
pub(crate) struct QueryRequest {
    sql: String,
    catalog: Option<String>,
    schema: Option<String>,
    format: Option<String>,
    /// Longest the statement may run, rows sent included (`30s`, `500ms`).
    timeout: Option<String>,
}

/// Options in the query string.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct QueryParams {
    format: Option<String>,
    catalog: Option<String>,
    schema: Option<String>,
    timeout: Option<String>,
}

/// A session for one request, as its user.
pub(crate) async fn open_session(shared: &Shared, user: &User) -> Result<SqlSession, ApiError> {
    let session = SqlSession::new(shared.lakehouse.clone())
        .await
        .map_err(|e| ApiError::internal(format!("cannot open a session: {e}")))?;
    session.set_principal(&user.0);
    Ok(session)
}

/// How rows are written.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Format {
    Json,
    NdJson,
    Csv,
    Arrow,
}

impl Format {
    fn parse(text: &str) -> Result<Self, ApiError> {
        Ok(match text.to_ascii_lowercase().as_str() {
            "json" => Format::Json,
            "ndjson" | "jsonl" => Format::NdJson,
            "csv" => Format::Csv,
            "arrow" | "arrow-stream" | "ipc" => Format::Arrow,
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown format `{other}`: use json, ndjson, csv or arrow"
                )));
            }
        })
    }

    /// The format an `Accept` header asks for (JSON when it names none of ours).
    fn accepted(headers: &HeaderMap) -> Self {
        let accept = headers
            .get(header::ACCEPT)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        if accept.contains("application/vnd.apache.arrow.stream") {
            Format::Arrow
        } else if accept.contains("text/csv") {
            Format::Csv
        } else if accept.contains("application/x-ndjson") || accept.contains("application/jsonl") {
            Format::NdJson
        } else {
            Format::Json
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::NdJson => "application/x-ndjson",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Arrow => "application/vnd.apache.arrow.stream",
        }
    }
}

/// `POST /api/v1/query`.
pub(crate) async fn query(
    State(shared): State<Arc<Shared>>,
    Extension(user): Extension<User>,
    Query(params): Query<QueryParams>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut timer = QueryTimer::new(shared.metrics.clone(), "http", Instant::now());
    match run(&shared, &user, params, &headers, body).await {
        Ok(Answer::Done(r)) => r,
        Ok(Answer::Rows(r, producer)) => {
            tokio::spawn(producer.run(timer));
            r
        }
        Err(e) => {
            timer.outcome("error");
            e.into_response()
        }
    }
}

/// What a query answers: a whole response, or one whose rows a producer still has to send.
enum Answer {
    Done(Response),
    Rows(Response, Producer),
}

async fn run(
    shared: &Arc<Shared>,
    user: &User,
    params: QueryParams,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Answer, ApiError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"));
    let request = if is_json {
        serde_json::from_slice::<QueryRequest>(&body).map_err(|e| {
            ApiError::bad_request(format!(
                "the body is not a query request ({e}): send {{\"sql\": \"...\"}}"
            ))
        })?
    } else {
        QueryRequest {
            sql: String::from_utf8(body.to_vec())
                .map_err(|_| ApiError::bad_request("the SQL is not UTF-8"))?,
            catalog: None,
            schema: None,
            format: None,
            timeout: None,
        }
    };
    if request.sql.trim().is_empty() {
        return Err(ApiError::bad_request(
            "no SQL: send it as the body, or as {\"sql\": \"...\"} with content-type application/json",
        ));
    }
    let format = match request.format.as_deref().or(params.format.as_deref()) {
        Some(f) => Format::parse(f)?,
        None => Format::accepted(headers),
    };
    let limit = match request.timeout.as_deref().or(params.timeout.as_deref()) {
        Some(t) => Some(humantime::parse_duration(t).map_err(|e| {
            ApiError::bad_request(format!(
                "timeout `{t}`: {e} (write a duration such as 30s or 500ms)"
            ))
        })?),
        None => None,
    };
    let deadline = limit.map(|d| tokio::time::Instant::now() + d);
    let statement = start(
        shared,
        user,
        request.sql,
        request.catalog.or(params.catalog),
        request.schema.or(params.schema),
    );
    let started = match deadline {
        Some(at) => tokio::time::timeout_at(at, statement)
            .await
            .map_err(|_| timed_out(limit))?,
        None => statement.await,
    }?;
    let (stream, first) = match started {
        Started::Message(m) => return Ok(Answer::Done(m)),
        Started::Rows(stream, first) => (stream, first),
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let body =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
    let response = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, format.content_type())
        .body(Body::from_stream(body))
        .expect("a valid response");
    Ok(Answer::Rows(
        response,
        Producer {
            shared: shared.clone(),
            format,
            stream,
            first,
            tx,
            deadline: deadline.map(|d| (d, limit.unwrap_or_default())),
        },
    ))
}

/// The answer to a statement that ran past its timeout.
fn timed_out(limit: Option<std::time::Duration>) -> ApiError {
    ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "STATEMENT_TIMEOUT",
        format!(
            "canceling the statement: it ran past its timeout of {}",
            humantime::format_duration(limit.unwrap_or_default())
        ),
    )
}

/// How a statement started: a message, or rows with the first batch already computed.
enum Started {
    Message(Response),
    Rows(SendableRecordBatchStream, Option<RecordBatch>),
}

/// Opens the session, runs every statement but the last, starts the last and computes its
/// first batch (so a statement that fails early is a proper 400).
async fn start(
    shared: &Arc<Shared>,
    user: &User,
    sql: String,
    catalog: Option<String>,
    schema: Option<String>,
) -> Result<Started, ApiError> {
    let session = open_session(shared, user).await?;
    if catalog.is_some() || schema.is_some() {
        let (cur_catalog, cur_schema) = session.current();
        let catalog = catalog.unwrap_or(cur_catalog).to_ascii_lowercase();
        let schema = schema.unwrap_or(cur_schema).to_ascii_lowercase();
        // The session read the catalog names when it opened: no second trip to the metastore.
        if !crate::pg::session::has_schema(&session, &catalog, &schema) {
            return Err(ApiError::not_found(format!(
                "no schema named {catalog}.{schema}"
            )));
        }
        session.set_current(&catalog, &schema);
    }
    let last = session.run_script(&sql).await?;
    let mut stream = match last {
        SqlOutput::Message(m) => {
            let notices = session.notices();
            return Ok(Started::Message(
                axum::Json(json!({"message": m, "notices": notices})).into_response(),
            ));
        }
        SqlOutput::Rows(s) => s,
    };
    let first = match stream.next().await {
        Some(Ok(b)) => Some(b),
        Some(Err(e)) => return Err(ApiError::sql(&session.explain_error(e))),
        None => None,
    };
    Ok(Started::Rows(stream, first))
}

/// Sends a result's rows into the response body.
struct Producer {
    shared: Arc<Shared>,
    format: Format,
    stream: SendableRecordBatchStream,
    first: Option<RecordBatch>,
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    /// When the statement must end, and the timeout that set it.
    deadline: Option<(tokio::time::Instant, std::time::Duration)>,
}

impl Producer {
    /// Encodes the stream into the body until it ends, fails, or the client goes away
    /// (then the query is dropped, which stops it).
    async fn run(self, mut timer: QueryTimer) {
        let Producer {
            shared,
            format,
            mut stream,
            first,
            tx,
            deadline,
        } = self;
        let mut enc = match Encoder::new(format, stream.schema()) {
            Ok(e) => e,
            Err(e) => {
                timer.outcome("error");
                let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                return;
            }
        };
        let sent = produce(
            &mut enc,
            format,
            &mut stream,
            first,
            deadline,
            &tx,
            &mut timer,
        )
        .await;
        timer.rows(enc.rows);
        shared.metrics.bytes("http", sent);
    }
}

/// The encoding loop; returns the bytes sent.
async fn produce(
    enc: &mut Encoder,
    format: Format,
    stream: &mut SendableRecordBatchStream,
    first: Option<RecordBatch>,
    deadline: Option<(tokio::time::Instant, std::time::Duration)>,
    tx: &tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    timer: &mut QueryTimer,
) -> u64 {
    let mut sent = 0u64;
    let mut send = async |chunk: Bytes| {
        sent += chunk.len() as u64;
        tx.send(Ok(chunk)).await.is_ok()
    };
    let mut alive = send(enc.start()).await;
    let mut next = first;
    let mut failure: Option<String> = None;
    while alive {
        let batch = match next.take() {
            Some(b) => b,
            None => {
                let next = match deadline {
                    Some((at, limit)) => match tokio::time::timeout_at(at, stream.next()).await {
                        Ok(next) => next,
                        Err(_) => {
                            failure = Some(timed_out(Some(limit)).message);
                            break;
                        }
                    },
                    None => stream.next().await,
                };
                match next {
                    Some(Ok(b)) => b,
                    Some(Err(e)) => {
                        failure = Some(confluo_sql::error::clean_datafusion(&e));
                        break;
                    }
                    None => break,
                }
            }
        };
        match enc.batch(&batch) {
            Ok(chunk) => alive = send(chunk).await,
            Err(e) => {
                failure = Some(format!("cannot encode the rows: {e}"));
                break;
            }
        }
    }
    if !alive {
        timer.outcome("cancelled");
    } else if let Some(message) = failure {
        timer.outcome("error");
        match format {
            Format::Json => {
                let err = ApiError::new(StatusCode::BAD_REQUEST, "SQL_ERROR", message);
                let _ = send(enc.end(Some(err.body()))).await;
            }
            _ => {
                let _ = tx.send(Err(std::io::Error::other(message))).await;
            }
        }
    } else {
        let _ = send(enc.end(None)).await;
    }
    sent
}

/// Writes batches in one format, chunk by chunk.
struct Encoder {
    format: Format,
    schema: SchemaRef,
    arrow: Option<datafusion::arrow::ipc::writer::StreamWriter<Vec<u8>>>,
    rows: u64,
}

impl Encoder {
    fn new(format: Format, schema: SchemaRef) -> Result<Self, ArrowError> {
        let arrow = match format {
            Format::Arrow => Some(datafusion::arrow::ipc::writer::StreamWriter::try_new(
                Vec::new(),
                &schema,
            )?),
            _ => None,
        };
        Ok(Encoder {
            format,
            schema,
            arrow,
            rows: 0,
        })
    }

    /// What comes before the rows.
    fn start(&mut self) -> Bytes {
        match self.format {
            Format::Json => {
                let columns: Vec<_> = self
                    .schema
                    .fields()
                    .iter()
                    .map(|f| json!({"name": f.name(), "type": f.data_type().to_string()}))
                    .collect();
                let head = json!({ "columns": columns }).to_string();
                // `{"columns":[...]` then the rows array opens.
                Bytes::from(format!("{},\"rows\":[", &head[..head.len() - 1]))
            }
            Format::Csv => {
                let names: Vec<String> = self
                    .schema
                    .fields()
                    .iter()
                    .map(|f| csv_field(f.name()))
                    .collect();
                Bytes::from(format!("{}\n", names.join(",")))
            }
            Format::NdJson => Bytes::new(),
            Format::Arrow => self.drain(),
        }
    }

    fn batch(&mut self, b: &RecordBatch) -> Result<Bytes, ArrowError> {
        let first = self.rows == 0;
        self.rows += b.num_rows() as u64;
        match self.format {
            Format::Json | Format::NdJson => {
                let mut buf = Vec::with_capacity(b.get_array_memory_size());
                {
                    let mut w = arrow_json::WriterBuilder::new()
                        .with_explicit_nulls(true)
                        .build::<_, arrow_json::writer::LineDelimited>(&mut buf);
                    w.write(b)?;
                    w.finish()?;
                }
                if self.format == Format::Json {
                    // One object per line, no newline inside (JSON escapes them): the lines
                    // become array elements.
                    if buf.last() == Some(&b'\n') {
                        buf.pop();
                    }
                    for c in buf.iter_mut() {
                        if *c == b'\n' {
                            *c = b',';
                        }
                    }
                    if !first && !buf.is_empty() {
                        buf.insert(0, b',');
                    }
                }
                Ok(Bytes::from(buf))
            }
            Format::Csv => {
                let mut w = arrow_csv::WriterBuilder::new()
                    .with_header(false)
                    .build(Vec::new());
                w.write(b)?;
                Ok(Bytes::from(w.into_inner()))
            }
            Format::Arrow => {
                if let Some(w) = self.arrow.as_mut() {
                    w.write(b)?;
                }
                Ok(self.drain())
            }
        }
    }

    /// What closes the result (`error`: a JSON result that failed midway says so).
    fn end(&mut self, error: Option<serde_json::Value>) -> Bytes {
        match self.format {
            Format::Json => {
                let mut tail = format!("],\"row_count\":{}", self.rows);
                if let Some(e) = error {
                    tail.push_str(&format!(",\"error\":{e}"));
                }
                tail.push('}');
                Bytes::from(tail)
            }
            Format::Arrow => {
                if let Some(w) = self.arrow.as_mut() {
                    let _ = w.finish();
                }
                self.drain()
            }
            _ => Bytes::new(),
        }
    }

    fn drain(&mut self) -> Bytes {
        self.arrow
            .as_mut()
            .map(|w| Bytes::from(std::mem::take(w.get_mut())))
            .unwrap_or_default()
    }
}

/// A CSV header field, quoted when it must be.
fn csv_field(name: &str) -> String {
    if name.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", name.replace('"', "\"\""))
    } else {
        name.to_string()
    }
}
