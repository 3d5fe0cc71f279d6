//! Logins on the Postgres wire: SCRAM-SHA-256 against the metastore's principals (pgwire
//! runs the exchange), wrapped so that every attempt is audited, a name that failed too
//! often from one address is refused for a while, and TLS can be required.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::Sink;
use pgwire::api::auth::sasl::SASLAuthStartupHandler;
use pgwire::api::auth::sasl::scram::ScramAuth;
use pgwire::api::auth::{
    AuthSource, DefaultServerParameterProvider, LoginInfo, Password, ServerParameterProvider,
    StartupHandler,
};
use pgwire::api::{ClientInfo, PgWireConnectionState, PidSecretKeyGenerator};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};

use confluo_govern::LoginOutcome;
use confluo_govern::identity::SCRAM_ITERATIONS;

use super::Shared;

/// The endpoint's name in the login audit.
/// The endpoint's name in the audit and the metrics.
pub(crate) const ENDPOINT: &str = "postgres";

/// Answers SCRAM's question (the user's salt and salted password) from the metastore.
struct Secrets(Arc<Shared>);

impl Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets")
    }
}

#[async_trait]
impl AuthSource for Secrets {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        let user = login.user().ok_or(PgWireError::UserNameRequired)?;
        match self.0.identity.scram_secret(user).await {
            Ok(Some(s)) => Ok(Password::new(Some(s.salt), s.salted_password)),
            // An unknown name fails exactly as a wrong password does.
            Ok(None) => Err(PgWireError::InvalidPassword(user.to_string())),
            Err(e) => Err(fatal("XX000", format!("cannot read the users: {e}"))),
        }
    }
}

/// What the server tells a client after login.
pub(crate) struct Parameters;

impl ServerParameterProvider for Parameters {
    fn server_parameters<C>(&self, client: &C) -> Option<HashMap<String, String>>
    where
        C: ClientInfo,
    {
        let mut p = DefaultServerParameterProvider::default().server_parameters(client)?;
        // Clients parse this as a PostgreSQL version; the suffix says what they talk to.
        p.insert(
            "server_version".into(),
            format!("16.0 (Confluo {})", env!("CARGO_PKG_VERSION")),
        );
        p.insert("is_superuser".into(), "off".into());
        Some(p)
    }
}

/// One connection's login.
pub(crate) struct Startup {
    shared: Arc<Shared>,
    sasl: SASLAuthStartupHandler<Parameters>,
    /// The name the client gave, once the startup message arrived.
    user: Mutex<Option<(String, String)>>,
}

impl Startup {
    pub fn new(shared: Arc<Shared>) -> Self {
        let mut scram = ScramAuth::new(Arc::new(Secrets(shared.clone())));
        scram.set_iterations(SCRAM_ITERATIONS as usize);
        let sasl = SASLAuthStartupHandler::new(Arc::new(Parameters))
            .with_scram(scram)
            .with_connection_manager(shared.connections.clone());
        Startup {
            shared,
            sasl,
            user: Mutex::new(None),
        }
    }

    async fn audit(&self, user: &str, client: &str, outcome: LoginOutcome, message: Option<&str>) {
        self.shared.metrics.login(ENDPOINT, outcome.as_str());
        if let Err(e) = self
            .shared
            .guard
            .record(user, client, ENDPOINT, outcome, message)
            .await
        {
            tracing::warn!("postgres endpoint: cannot audit the login of {user}: {e}");
        }
    }

    /// Checks made before any password is asked for: TLS, the rate limit, a project
    /// without users.
    async fn admit(&self, user: &str, client: &str, secure: bool) -> PgWireResult<()> {
        let opts = &self.shared.options;
        let refuse = |code: &str, why: String| (code.to_string(), why);
        let refused = if opts.require_tls && !secure {
            Some(refuse(
                "28000",
                "this server requires TLS: connect with sslmode=require (or verify-full)".into(),
            ))
        } else if opts.allow_anonymous {
            None
        } else {
            match self.shared.guard.admit(user, client).await {
                Ok(Err(why)) => Some(refuse("28000", why)),
                Err(e) => Some(refuse("XX000", format!("cannot check the login: {e}"))),
                Ok(Ok(())) => match self.shared.identity.is_empty().await {
                    Ok(true) => Some(refuse(
                        "28000",
                        "this project has no users yet: add one with `confluo users add NAME`"
                            .into(),
                    )),
                    Ok(false) => None,
                    Err(e) => Some(refuse("XX000", format!("cannot read the users: {e}"))),
                },
            }
        };
        match refused {
            Some((code, why)) => {
                self.audit(user, client, LoginOutcome::Refused, Some(&why))
                    .await;
                Err(fatal(&code, why))
            }
            None => Ok(()),
        }
    }
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let peer = client.socket_addr().ip().to_string();
        if let PgWireFrontendMessage::Startup(startup) = &message {
            let user = startup
                .parameters
                .get("user")
                .cloned()
                .ok_or(PgWireError::UserNameRequired)?;
            *self.user.lock().expect("user lock") = Some((user.clone(), peer.clone()));
            self.admit(&user, &peer, client.is_secure()).await?;
            if self.shared.options.allow_anonymous {
                return anonymous(client, startup, &self.shared).await;
            }
            return self.sasl.on_startup(client, message).await;
        }
        let who = self.user.lock().expect("user lock").clone();
        let result = match self.sasl.on_startup(client, message).await {
            // PostgreSQL's words, with the name the client gave.
            Err(PgWireError::InvalidPassword(_)) => Err(fatal(
                "28P01",
                format!(
                    "password authentication failed for user \"{}\"",
                    who.as_ref().map(|(u, _)| u.as_str()).unwrap_or_default()
                ),
            )),
            other => other,
        };
        if let Some((user, peer)) = who {
            match &result {
                Err(e) => {
                    let msg = e.to_string();
                    self.audit(&user, &peer, LoginOutcome::Failure, Some(&msg))
                        .await
                }
                Ok(()) if matches!(client.state(), PgWireConnectionState::ReadyForQuery) => {
                    self.audit(&user, &peer, LoginOutcome::Success, None).await
                }
                Ok(()) => {}
            }
        }
        result
    }
}

/// Lets a client in without a password (the project allowed it): the same registration
/// for cancel requests as a login, and the same audit.
async fn anonymous<C>(
    client: &mut C,
    startup: &pgwire::messages::startup::Startup,
    shared: &Shared,
) -> PgWireResult<()>
where
    C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    pgwire::api::auth::protocol_negotiation(client, startup).await?;
    pgwire::api::auth::save_startup_parameters_to_metadata(client, startup);
    let (pid, key) = pgwire::api::RandomPidSecretKeyGenerator::default().generate(client);
    client.set_pid_and_secret_key(pid, key.clone());
    let (handle, guard) = shared.connections.register(pid, key);
    client.session_extensions().insert(handle);
    client.session_extensions().insert(guard);
    pgwire::api::auth::finish_authentication(client, &Parameters).await
}

/// A FATAL error: the client is told why and disconnected.
pub(crate) fn fatal(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".into(),
        code.into(),
        message,
    )))
}
