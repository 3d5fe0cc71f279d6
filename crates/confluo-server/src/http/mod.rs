//! The HTTP API: JSON over the lakehouse's catalogs, queries (JSON, NDJSON, CSV or an Arrow
//! IPC stream, streamed as they are produced), pipelines and their updates, jobs and their
//! runs, `/metrics` for Prometheus and `/openapi.json` describing it all — and Arrow Flight
//! SQL (gRPC) on the same port. Clients send a
//! personal access token as `Authorization: Bearer`; TLS is offered on the same port
//! (a plain request to a port that requires TLS is answered with a message saying so).
//! axum routes; hyper serves each connection.

mod auth;
mod catalog;
mod flight;
mod ops;
mod query;
mod reply;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use confluo_core::Project;
use confluo_govern::{LoginGuard, Tokens};
use confluo_lakehouse::Lakehouse;

use crate::error::Result;
use crate::metrics::Metrics;
use crate::tls::{self, TlsFiles};

/// How the HTTP endpoint listens and whom it lets in.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// `host:port` (port 0: any free port).
    pub listen: String,
    /// Certificate and key; without them the endpoint speaks plain HTTP.
    pub tls: Option<TlsFiles>,
    /// Answer plain-HTTP requests with an error instead of serving them.
    pub require_tls: bool,
    /// Serve requests without a token, as `anonymous`.
    pub allow_anonymous: bool,
}

/// What every request shares.
pub(crate) struct Shared {
    pub lakehouse: Arc<Lakehouse>,
    pub project: Arc<Project>,
    pub tokens: Tokens,
    pub guard: LoginGuard,
    pub metrics: Arc<Metrics>,
    pub allow_anonymous: bool,
}

/// The client's address, put on every request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peer(pub SocketAddr);

/// A bound HTTP endpoint.
pub struct HttpEndpoint {
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    require_tls: bool,
    router: Router,
    metrics: Arc<Metrics>,
}

impl HttpEndpoint {
    /// Binds `options.listen` and loads the TLS files.
    pub async fn bind(
        lakehouse: Arc<Lakehouse>,
        project: Arc<Project>,
        metrics: Arc<Metrics>,
        options: HttpOptions,
    ) -> Result<Self> {
        // HTTP/2 is offered for gRPC (Flight SQL); HTTP/1.1 for everything else.
        let (listener, tls) = tls::listen(
            &options.listen,
            options.tls.as_ref(),
            options.require_tls,
            &[b"h2", b"http/1.1"],
        )
        .await?;
        let metastore = lakehouse.metastore().clone();
        let shared = Arc::new(Shared {
            tokens: Tokens::new(metastore.clone()),
            guard: LoginGuard::new(metastore),
            lakehouse,
            project,
            metrics: metrics.clone(),
            allow_anonymous: options.allow_anonymous,
        });
        Ok(HttpEndpoint {
            listener,
            tls,
            require_tls: options.require_tls,
            router: router(shared),
            metrics,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves; then stops accepting, lets running requests finish
    /// for a few seconds and closes what is left.
    pub async fn serve(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let graceful = GracefulShutdown::new();
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((socket, peer)) => {
                        let _ = socket.set_nodelay(true);
                        let conn = Connection {
                            router: self.router.clone(),
                            tls: self.tls.clone(),
                            require_tls: self.require_tls,
                            peer,
                        };
                        let watcher = graceful.watcher();
                        let guard = self.metrics.connection("http");
                        tokio::spawn(async move {
                            conn.run(socket, watcher).await;
                            drop(guard);
                        });
                    }
                    Err(e) => {
                        tracing::warn!("http endpoint: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
        drop(self.listener);
        if tokio::time::timeout(Duration::from_secs(5), graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("http endpoint: requests still running after 5 s were cut off");
        }
    }
}

/// One accepted connection.
struct Connection {
    router: Router,
    tls: Option<TlsAcceptor>,
    require_tls: bool,
    peer: SocketAddr,
}

impl Connection {
    async fn run(self, mut socket: TcpStream, watcher: hyper_util::server::graceful::Watcher) {
        let peer = self.peer;
        let Some(acceptor) = self.tls.clone() else {
            return self.http(TokioIo::new(socket), watcher).await;
        };
        // A TLS client opens with a handshake record (0x16); anything else is plain HTTP.
        let mut first = [0u8; 1];
        let is_tls = matches!(socket.peek(&mut first).await, Ok(1) if first[0] == 0x16);
        if is_tls {
            match acceptor.accept(socket).await {
                Ok(stream) => self.http(TokioIo::new(stream), watcher).await,
                Err(e) => tracing::debug!("http endpoint: TLS handshake with {peer}: {e}"),
            }
        } else if self.require_tls {
            let body = "{\"error\":{\"code\":\"TLS_REQUIRED\",\"message\":\"this endpoint requires TLS: use https://\"}}";
            let reply = format!(
                "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(reply.as_bytes()).await;
            let _ = socket.shutdown().await;
        } else {
            self.http(TokioIo::new(socket), watcher).await
        }
    }

    async fn http<I>(self, io: TokioIo<I>, watcher: hyper_util::server::graceful::Watcher)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let router = self.router;
        let peer = self.peer;
        let service = hyper::service::service_fn(move |mut req: hyper::Request<_>| {
            req.extensions_mut().insert(Peer(peer));
            router.clone().oneshot(req.map(axum::body::Body::new))
        });
        let builder = Builder::new(TokioExecutor::new());
        let conn = builder.serve_connection_with_upgrades(io, service);
        if let Err(e) = watcher.watch(conn.into_owned()).await {
            tracing::debug!("http endpoint: connection from {peer}: {e}");
        }
    }
}

/// Every route. `/healthz` and `/openapi.json` are open; the rest needs a token.
fn router(shared: Arc<Shared>) -> Router {
    let api = Router::new()
        .route("/api/v1/me", get(auth::me))
        .route("/api/v1/catalogs", get(catalog::catalogs))
        .route("/api/v1/catalogs/{catalog}/schemas", get(catalog::schemas))
        .route(
            "/api/v1/catalogs/{catalog}/schemas/{schema}/tables",
            get(catalog::tables),
        )
        .route("/api/v1/tables/{table}", get(catalog::table))
        .route("/api/v1/tables/{table}/history", get(catalog::history))
        .route("/api/v1/query", post(query::query))
        .route("/api/v1/pipelines", get(ops::pipelines))
        .route("/api/v1/pipelines/{pipeline}/updates", get(ops::updates))
        .route("/api/v1/pipelines/{pipeline}/events", get(ops::events))
        .route("/api/v1/jobs", get(ops::jobs))
        .route("/api/v1/jobs/{job}/runs", get(ops::runs))
        .route("/api/v1/runs/{run}", get(ops::run))
        .route("/metrics", get(ops::metrics))
        .route_layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            auth::authenticate,
        ));
    // Flight SQL is gRPC: HTTP/2 POSTs to the service's paths, on the same port.
    let flight_path = format!(
        "/{}/{{*method}}",
        <arrow_flight::flight_service_server::FlightServiceServer<flight::FlightSql> as tonic::server::NamedService>::NAME
    );
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/openapi.json", get(openapi))
        .route_service(&flight_path, flight::service(shared.clone()))
        .merge(api)
        .fallback(reply::not_found)
        .with_state(shared)
}

/// The OpenAPI 3.1 document of this API.
pub const OPENAPI: &str = include_str!("openapi.json");

async fn openapi() -> impl axum::response::IntoResponse {
    ([("content-type", "application/json")], OPENAPI)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every route is in the OpenAPI document, and the document is valid JSON.
    #[test]
    fn openapi_lists_every_route() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        let source = include_str!("mod.rs");
        for line in source.lines() {
            let line = line.trim();
            let Some(rest) = line
                .strip_prefix(".route(\"")
                .or_else(|| line.strip_prefix("\""))
            else {
                continue;
            };
            let Some((path, _)) = rest.split_once('"') else {
                continue;
            };
            // (The Flight SQL service's gRPC paths are not HTTP API routes.)
            if path.starts_with('/') && path != "/openapi.json" && !path.contains("{}") {
                assert!(paths.contains_key(path), "{path} is not in openapi.json");
            }
        }
        assert!(paths.len() >= 15);
    }
}
