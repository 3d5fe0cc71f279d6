//! Arrow Flight SQL, served on the HTTP API's port (gRPC over HTTP/2, with the same TLS):
//! ADBC, JDBC's Flight SQL driver and other Arrow-native clients get results as Arrow
//! record batches, with no row encoding in between. Queries (`CommandStatementQuery`),
//! statements without rows (`CommandStatementUpdate`), prepared statements without
//! parameters, and the catalog calls (catalogs, schemas, tables, table types, SQL info).
//!
//! A client logs in with the Flight handshake (HTTP Basic: a user's password or a personal
//! access token as the password) and gets a session token for its calls, or sends
//! `authorization: Bearer <personal access token>` on every call.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, Any, CommandGetCatalogs, CommandGetDbSchemas,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandPreparedStatementQuery,
    CommandStatementQuery, CommandStatementUpdate, ProstMessageExt, SqlInfo, TicketStatementQuery,
};
use arrow_flight::{
    Action, FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse,
    IpcMessage, SchemaAsIpc, Ticket,
};
use base64::Engine;
use datafusion::arrow::datatypes::Schema;
use datafusion::arrow::ipc::writer::IpcWriteOptions;
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;
use tonic::{Request, Response, Status, Streaming};

use confluo_govern::{Identity, LoginOutcome};
use confluo_sql::SqlOutput;
use confluo_sql::parser::ConfluoStatement;

mod metadata;

use super::Shared;
use super::auth::User;
use super::query::open_session;
use crate::metrics::QueryTimer;

/// The endpoint's name in the audit and the metrics.
const ENDPOINT: &str = "flight";

/// How long a handshake's session token is good for.
const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// The Flight SQL service.
pub(crate) struct FlightSql {
    shared: Arc<Shared>,
    identity: Identity,
    /// Handshake session tokens → (user, when they stop working).
    sessions: Mutex<HashMap<String, (String, Instant)>>,
}

/// The gRPC service, to be routed beside the HTTP API.
pub(crate) fn service(shared: Arc<Shared>) -> FlightServiceServer<FlightSql> {
    let identity = Identity::new(shared.lakehouse.metastore().clone());
    FlightServiceServer::new(FlightSql {
        shared,
        identity,
        sessions: Mutex::new(HashMap::new()),
    })
    // Results can be large; the client reads them as they come.
    .max_encoding_message_size(64 << 20)
    .max_decoding_message_size(64 << 20)
}

fn client_of<T>(req: &Request<T>) -> String {
    req.extensions()
        .get::<super::Peer>()
        .map(|p| p.0.ip().to_string())
        .or_else(|| req.remote_addr().map(|a| a.ip().to_string()))
        .unwrap_or_default()
}

/// A statement's error as a gRPC status.
fn sql_status(e: &confluo_sql::SqlError) -> Status {
    Status::invalid_argument(e.to_string())
}

/// A statement handle (in tickets and prepared statements) is the statement's text.
fn handle_sql(bytes: &[u8]) -> Result<String, Status> {
    std::str::from_utf8(bytes)
        .map(str::to_string)
        .map_err(|_| Status::invalid_argument("not a statement handle of this server"))
}

impl FlightSql {
    /// The caller: a handshake session token or a personal access token in `authorization`.
    async fn user<T>(&self, req: &Request<T>) -> Result<User, Status> {
        let header = req
            .metadata()
            .get("authorization")
            .and_then(|h| h.to_str().ok())
            .map(str::to_string);
        let Some(header) = header else {
            if self.shared.allow_anonymous {
                return Ok(User("anonymous".into()));
            }
            return Err(Status::unauthenticated(
                "log in with the Flight handshake (user and password) or send `authorization: Bearer <personal access token>`",
            ));
        };
        let Some(token) = header
            .split_once(' ')
            .filter(|(s, _)| s.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim().to_string())
        else {
            return Err(Status::unauthenticated(
                "send `authorization: Bearer <token>`, or log in with the handshake first",
            ));
        };
        if let Some((user, until)) = self.sessions.lock().expect("sessions").get(&token).cloned() {
            if until > Instant::now() {
                return Ok(User(user));
            }
            return Err(Status::unauthenticated(
                "the Flight session expired: log in again",
            ));
        }
        let client = client_of(req);
        match self.shared.tokens.verify(&token).await {
            Ok(Ok(user)) => {
                self.shared.metrics.login(ENDPOINT, "success");
                Ok(User(user))
            }
            Ok(Err(refusal)) => {
                self.audit(
                    "token",
                    &client,
                    LoginOutcome::Failure,
                    &refusal.to_string(),
                )
                .await;
                Err(Status::unauthenticated(refusal.to_string()))
            }
            Err(e) => Err(Status::internal(e.to_string())),
        }
    }

    async fn audit(&self, name: &str, client: &str, outcome: LoginOutcome, message: &str) {
        self.shared.metrics.login(ENDPOINT, outcome.as_str());
        if let Err(e) = self
            .shared
            .guard
            .record(name, client, ENDPOINT, outcome, Some(message))
            .await
        {
            tracing::warn!("flight endpoint: cannot audit a login: {e}");
        }
    }

    /// Checks a handshake's user and password (or a token given as the password).
    async fn login(&self, user: &str, secret: &str, client: &str) -> Result<(), Status> {
        match self.shared.guard.admit(user, client).await {
            Ok(Ok(())) => {}
            Ok(Err(why)) => {
                self.audit(user, client, LoginOutcome::Refused, &why).await;
                return Err(Status::resource_exhausted(why));
            }
            Err(e) => return Err(Status::internal(e.to_string())),
        }
        let ok = if secret.starts_with(confluo_govern::TOKEN_PREFIX) {
            matches!(self.shared.tokens.verify(secret).await, Ok(Ok(ref who)) if who == user)
        } else {
            matches!(
                self.identity.verify_password(user, secret).await,
                Ok(Some(_))
            )
        };
        if ok {
            self.audit(user, client, LoginOutcome::Success, "handshake")
                .await;
            Ok(())
        } else {
            let msg = format!("password authentication failed for user \"{user}\"");
            self.audit(user, client, LoginOutcome::Failure, &msg).await;
            Err(Status::unauthenticated(msg))
        }
    }

    /// The schema a query's rows will have (planned, not run).
    async fn schema_of(&self, user: &User, sql: &str) -> Result<Schema, Status> {
        let session = open_session(&self.shared, user)
            .await
            .map_err(|e| Status::internal(e.message))?;
        let mut parsed = session.parse(sql).map_err(|e| sql_status(&e))?;
        let Some(last) = parsed.pop() else {
            return Err(Status::invalid_argument("no SQL statement"));
        };
        match last.statement {
            ConfluoStatement::Query(q) => {
                session.refresh().await.map_err(|e| sql_status(&e))?;
                let df = session
                    .plan_statement(*q)
                    .await
                    .map_err(|e| sql_status(&e))?;
                Ok(df.schema().as_arrow().clone())
            }
            // Statements without rows answer nothing: an empty schema.
            _ => Ok(Schema::empty()),
        }
    }

    fn info(
        &self,
        schema: &Schema,
        ticket: Vec<u8>,
        descriptor: FlightDescriptor,
    ) -> Result<Response<FlightInfo>, Status> {
        let endpoint = FlightEndpoint::new().with_ticket(Ticket::new(ticket));
        let info = FlightInfo::new()
            .try_with_schema(schema)
            .map_err(|e| Status::internal(format!("cannot encode the schema: {e}")))?
            .with_endpoint(endpoint)
            .with_descriptor(descriptor);
        Ok(Response::new(info))
    }

    /// The answer to a catalog call's `GetFlightInfo`: its ticket is the command itself.
    async fn catalog_info(
        &self,
        request: Request<FlightDescriptor>,
        schema: &Schema,
        command: impl ProstMessageExt,
    ) -> Result<Response<FlightInfo>, Status> {
        self.user(&request).await?;
        self.info(
            schema,
            command.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    /// Runs SQL as `user` and streams the last statement's rows.
    async fn run(
        &self,
        user: &User,
        sql: &str,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let mut timer = QueryTimer::new(self.shared.metrics.clone(), ENDPOINT, Instant::now());
        let session = open_session(&self.shared, user)
            .await
            .map_err(|e| Status::internal(e.message))?;
        let out = match session.run_script(sql).await {
            Ok(out) => out,
            Err(e) => {
                timer.outcome("error");
                return Err(sql_status(&e));
            }
        };
        let rows = match out {
            SqlOutput::Rows(rows) => rows,
            SqlOutput::Message(_) => Box::pin(
                datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(
                    Arc::new(Schema::empty()),
                    futures::stream::empty(),
                ),
            ),
        };
        let schema = rows.schema();
        let counted = rows.map(move |b| {
            match &b {
                Ok(b) => timer.rows(b.num_rows() as u64),
                Err(_) => timer.outcome("error"),
            }
            b.map_err(|e| FlightError::ExternalError(Box::new(e)))
        });
        let stream = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(counted)
            .map_err(Status::from);
        Ok(Response::new(Box::pin(stream)))
    }

    /// Runs a statement without rows; the rows it changed when its message says so.
    async fn update(&self, user: &User, sql: &str) -> Result<i64, Status> {
        let _timer = QueryTimer::new(self.shared.metrics.clone(), ENDPOINT, Instant::now());
        let session = open_session(&self.shared, user)
            .await
            .map_err(|e| Status::internal(e.message))?;
        match session.run_script(sql).await.map_err(|e| sql_status(&e))? {
            SqlOutput::Message(m) => Ok(crate::rows_in(&m).map(|n| n as i64).unwrap_or(-1)),
            SqlOutput::Rows(mut s) => {
                while let Some(b) = s.next().await {
                    b.map_err(|e| Status::internal(e.to_string()))?;
                }
                Ok(-1)
            }
        }
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

fn one_batch(
    batch: Result<datafusion::arrow::array::RecordBatch, impl std::fmt::Display>,
) -> Result<Response<BoxStream<arrow_flight::FlightData>>, Status> {
    let batch = batch.map_err(|e| Status::internal(e.to_string()))?;
    let stream = FlightDataEncoderBuilder::new()
        .with_schema(batch.schema())
        .build(futures::stream::once(async { Ok(batch) }))
        .map_err(Status::from);
    Ok(Response::new(Box::pin(stream)))
}

#[tonic::async_trait]
impl FlightSqlService for FlightSql {
    type FlightService = FlightSql;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<BoxStream<HandshakeResponse>>, Status> {
        let client = client_of(&request);
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("")
            .to_string();
        let (user, token) = if let Some(b64) = header
            .split_once(' ')
            .filter(|(s, _)| s.eq_ignore_ascii_case("basic"))
            .map(|(_, v)| v.trim())
        {
            // With or without padding: Go's Flight client sends it without.
            let decoded = base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(b64.trim_end_matches('='))
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| {
                    Status::invalid_argument(
                        "the Basic credentials are not base64 of user:password",
                    )
                })?;
            let (user, secret) = decoded
                .split_once(':')
                .ok_or_else(|| Status::invalid_argument("the Basic credentials have no `:`"))?;
            self.login(user, secret, &client).await?;
            let token = confluo_govern::identity::generate_secret()
                .map_err(|e| Status::internal(e.to_string()))?;
            let now = Instant::now();
            let mut sessions = self.sessions.lock().expect("sessions");
            // Expired sessions go when a new one comes, so the map stays as large as the
            // sessions alive.
            sessions.retain(|_, (_, until)| *until > now);
            sessions.insert(token.clone(), (user.to_string(), now + SESSION_LIFETIME));
            drop(sessions);
            (user.to_string(), token)
        } else {
            // A bearer token already: it is the session.
            let user = self.user(&request).await?;
            let token = header
                .split_once(' ')
                .map(|(_, t)| t.trim().to_string())
                .unwrap_or_default();
            (user.0, token)
        };
        tracing::debug!("flight endpoint: {user} logged in from {client}");
        let reply = HandshakeResponse {
            protocol_version: 0,
            payload: token.clone().into(),
        };
        let mut response: Response<BoxStream<HandshakeResponse>> =
            Response::new(Box::pin(futures::stream::iter([Ok(reply)])));
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| Status::internal("a token that is not a header value"))?;
        response.metadata_mut().insert("authorization", value);
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let user = self.user(&request).await?;
        let schema = self.schema_of(&user, &query.query).await?;
        let ticket = TicketStatementQuery {
            statement_handle: query.query.clone().into_bytes().into(),
        };
        self.info(
            &schema,
            ticket.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let user = self.user(&request).await?;
        let sql = handle_sql(&ticket.statement_handle)?;
        self.run(&user, &sql).await
    }

    async fn do_put_statement_update(
        &self,
        command: CommandStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let user = self.user(&request).await?;
        self.update(&user, &command.query).await
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let user = self.user(&request).await?;
        let schema = self.schema_of(&user, &query.query).await?;
        let IpcMessage(schema_bytes) = SchemaAsIpc::new(&schema, &IpcWriteOptions::default())
            .try_into()
            .map_err(|e: datafusion::arrow::error::ArrowError| Status::internal(e.to_string()))?;
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: query.query.clone().into_bytes().into(),
            dataset_schema: schema_bytes,
            parameter_schema: Default::default(),
        })
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let user = self.user(&request).await?;
        let sql = handle_sql(&cmd.prepared_statement_handle)?;
        let schema = self.schema_of(&user, &sql).await?;
        self.info(&schema, cmd.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let user = self.user(&request).await?;
        let sql = handle_sql(&cmd.prepared_statement_handle)?;
        self.run(&user, &sql).await
    }

    async fn do_action_close_prepared_statement(
        &self,
        _query: ActionClosePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        // Handles hold the statement itself: nothing is kept to free.
        self.user(&request).await.map(|_| ())
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        self.catalog_info(request, &schema, query).await
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.user(&request).await?;
        one_batch(metadata::catalogs(&self.shared, query).await)
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        self.catalog_info(request, &schema, query).await
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.user(&request).await?;
        one_batch(metadata::schemas(&self.shared, query).await)
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        self.catalog_info(request, &schema, query).await
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let user = self.user(&request).await?;
        one_batch(metadata::tables(&self.shared, &user, query).await)
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = metadata::table_types_schema();
        self.catalog_info(request, &schema, query).await
    }

    async fn do_get_table_types(
        &self,
        _query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.user(&request).await?;
        one_batch(metadata::table_types())
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder(&metadata::SQL_INFO).schema();
        self.catalog_info(request, &schema, query).await
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.user(&request).await?;
        one_batch(query.into_builder(&metadata::SQL_INFO).build())
    }

    async fn do_get_fallback(
        &self,
        _request: Request<Ticket>,
        message: Any,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        Err(Status::unimplemented(format!(
            "this server does not answer {}",
            message.type_url
        )))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
