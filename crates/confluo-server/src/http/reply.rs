//! How the API answers: errors as `{"error": {"code", "message", "line"?, "column"?}}` with
//! the status that fits, and small results (metadata, history, events) as JSON objects.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use datafusion::arrow::array::RecordBatch;
use serde_json::{Value, json};

/// An error answer.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Where in a statement's text (line, column), for SQL errors.
    pub at: Option<(u64, u64)>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            at: None,
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NOT_FOUND", message)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BAD_REQUEST", message)
    }

    pub fn internal(message: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            message.to_string(),
        )
    }

    /// A statement's error: a bad request, pointing into the text when it can.
    pub fn sql(e: &confluo_sql::SqlError) -> Self {
        let mut err = Self::new(StatusCode::BAD_REQUEST, "SQL_ERROR", e.to_string());
        err.at = e
            .location()
            .filter(|l| l.line > 0)
            .map(|l| (l.line, l.column));
        err
    }

    /// The JSON body (also the last word of a JSON result that failed while streaming).
    pub fn body(&self) -> Value {
        let mut e = json!({"code": self.code, "message": self.message});
        if let Some((line, column)) = self.at {
            e["line"] = json!(line);
            e["column"] = json!(column);
        }
        e
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, axum::Json(json!({"error": self.body()}))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                "www-authenticate",
                axum::http::HeaderValue::from_static("Bearer realm=\"confluo\""),
            );
        }
        r
    }
}

impl From<confluo_lakehouse::LakehouseError> for ApiError {
    fn from(e: confluo_lakehouse::LakehouseError) -> Self {
        ApiError::internal(e)
    }
}

impl From<confluo_sql::SqlError> for ApiError {
    fn from(e: confluo_sql::SqlError) -> Self {
        ApiError::sql(&e)
    }
}

/// What every handler returns.
pub(crate) type ApiResult<T = axum::Json<Value>> = Result<T, ApiError>;

/// Answer for paths that do not exist.
pub(crate) async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!(
        "no such path: {} (the API is described at /openapi.json)",
        uri.path()
    ))
}

/// Rows as JSON objects (column name → value; nulls kept).
pub(crate) fn objects(batches: &[RecordBatch]) -> Result<Vec<Value>, ApiError> {
    let mut buf = Vec::new();
    {
        let mut w = arrow_json::WriterBuilder::new()
            .with_explicit_nulls(true)
            .build::<_, arrow_json::writer::LineDelimited>(&mut buf);
        for b in batches {
            w.write(b).map_err(ApiError::internal)?;
        }
        w.finish().map_err(ApiError::internal)?;
    }
    buf.split(|&c| c == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).map_err(ApiError::internal))
        .collect()
}

/// Milliseconds since the epoch as RFC 3339 (UTC).
pub(crate) fn time(ms: i64) -> Value {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| json!(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)))
        .unwrap_or(Value::Null)
}
