//! The Postgres wire endpoint: psql, psycopg, JDBC and BI tools run SQL over the
//! lakehouse. The protocol is pgwire's; rows and types are arrow-pg's; `pg_catalog` is
//! datafusion-pg-catalog's, installed over the metastore's catalogs. What is ours: each
//! connection is a Confluo SQL session (the lakehouse statements, `read_files`, time
//! travel) running as the user who logged in, logins are checked against the metastore's
//! principals, and a `database` names a catalog.

mod answers;
mod auth;
mod copy;
mod cursor;
mod encode;
mod handler;
mod principals;
pub(crate) mod session;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pgwire::api::cancel::DefaultCancelHandler;
use pgwire::api::{ConnectionManager, PgWireServerHandlers};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use confluo_govern::{Identity, LoginGuard};
use confluo_lakehouse::Lakehouse;

use crate::error::Result;
use crate::metrics::Metrics;
use crate::tls::{self, TlsFiles};

/// How the endpoint listens and whom it lets in.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// `host:port` (port 0: any free port, see [`PgEndpoint::local_addr`]).
    pub listen: String,
    /// Certificate and key; without them TLS is not offered.
    pub tls: Option<TlsFiles>,
    /// Refuse clients that did not negotiate TLS.
    pub require_tls: bool,
    /// Let anyone in without a password, as the user they name (off unless the project
    /// says so).
    pub allow_anonymous: bool,
    /// Connections served at once; more are refused with `too many connections`.
    pub max_connections: usize,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            listen: "127.0.0.1:5433".into(),
            tls: None,
            require_tls: false,
            allow_anonymous: false,
            max_connections: 256,
        }
    }
}

/// What every connection shares.
pub(crate) struct Shared {
    pub lakehouse: Arc<Lakehouse>,
    pub identity: Identity,
    pub guard: LoginGuard,
    pub options: PgOptions,
    pub connections: Arc<ConnectionManager>,
    pub open: tokio::sync::Semaphore,
    pub metrics: Arc<Metrics>,
}

/// A bound Postgres endpoint.
pub struct PgEndpoint {
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    shared: Arc<Shared>,
}

impl PgEndpoint {
    /// Binds `options.listen` and loads the TLS files.
    pub async fn bind(
        lakehouse: Arc<Lakehouse>,
        metrics: Arc<Metrics>,
        options: PgOptions,
    ) -> Result<Self> {
        let (listener, tls) = tls::listen(
            &options.listen,
            options.tls.as_ref(),
            options.require_tls,
            &[],
        )
        .await?;
        let metastore = lakehouse.metastore().clone();
        Ok(PgEndpoint {
            listener,
            tls,
            shared: Arc::new(Shared {
                identity: Identity::new(metastore.clone()),
                guard: LoginGuard::new(metastore),
                open: tokio::sync::Semaphore::new(options.max_connections.max(1)),
                metrics,
                options,
                lakehouse,
                connections: Arc::new(ConnectionManager::new()),
            }),
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves; then stops accepting, lets running statements
    /// finish for a few seconds and closes what is left.
    pub async fn serve(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut tasks = JoinSet::new();
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((socket, peer)) => {
                        let _ = socket.set_nodelay(true);
                        let handlers = ConnectionHandlers::new(self.shared.clone());
                        let tls = self.tls.clone();
                        let shared = self.shared.clone();
                        tasks.spawn(async move {
                            let _open = shared.metrics.connection(auth::ENDPOINT);
                            let Ok(_permit) = shared.open.try_acquire() else {
                                tracing::warn!("postgres endpoint: refused {peer}: too many connections");
                                handlers.refuse_busy(socket).await;
                                return;
                            };
                            if let Err(e) = pgwire::tokio::process_socket(socket, tls, handlers).await {
                                tracing::debug!("postgres endpoint: connection from {peer}: {e}");
                            }
                        });
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: wait instead of spinning.
                        tracing::warn!("postgres endpoint: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        drop(self.listener);
        let grace = tokio::time::sleep(Duration::from_secs(5));
        tokio::pin!(grace);
        loop {
            tokio::select! {
                _ = &mut grace => break,
                next = tasks.join_next() => if next.is_none() { break },
            }
        }
        tasks.abort_all();
    }
}

/// One connection's handlers: pgwire asks for them when the connection opens, so each
/// connection has its own login state and SQL session.
struct ConnectionHandlers {
    query: Arc<handler::Handler>,
    startup: Arc<auth::Startup>,
    cancel: Arc<DefaultCancelHandler>,
}

impl ConnectionHandlers {
    fn new(shared: Arc<Shared>) -> Self {
        ConnectionHandlers {
            query: Arc::new(handler::Handler::new(shared.clone())),
            cancel: Arc::new(DefaultCancelHandler::new(shared.connections.clone())),
            startup: Arc::new(auth::Startup::new(shared)),
        }
    }

    /// Answers a connection past `max_connections` the way PostgreSQL does.
    async fn refuse_busy(&self, mut socket: tokio::net::TcpStream) {
        use tokio::io::AsyncWriteExt;
        let info = pgwire::error::ErrorInfo::new(
            "FATAL".into(),
            "53300".into(),
            "sorry, too many clients already".into(),
        );
        let mut buf = bytes::BytesMut::new();
        let msg = pgwire::messages::PgWireBackendMessage::ErrorResponse(info.into());
        if msg.encode(&mut buf).is_ok() {
            let _ = socket.write_all(&buf).await;
        }
    }
}

impl PgWireServerHandlers for ConnectionHandlers {
    fn simple_query_handler(&self) -> Arc<impl pgwire::api::query::SimpleQueryHandler> {
        self.query.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl pgwire::api::query::ExtendedQueryHandler> {
        self.query.clone()
    }

    fn startup_handler(&self) -> Arc<impl pgwire::api::auth::StartupHandler> {
        self.startup.clone()
    }

    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        self.cancel.clone()
    }
}
