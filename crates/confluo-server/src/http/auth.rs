//! Who is calling: a personal access token in `Authorization: Bearer`, checked against the
//! metastore; failures are audited and rate-limited per token id and client address, the
//! same rule as Postgres logins.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use confluo_govern::{LoginOutcome, TOKEN_PREFIX};

use super::reply::{ApiError, ApiResult};
use super::{Peer, Shared};

/// The principal a request runs as.
#[derive(Debug, Clone)]
pub(crate) struct User(pub String);

/// The name anonymous requests run as, when the project allows them.
const ANONYMOUS: &str = "anonymous";

fn unauthorized(message: impl Into<String>) -> Response {
    ApiError::new(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", message).into_response()
}

/// Checks the token and puts the [`User`] on the request.
pub(crate) async fn authenticate(
    State(shared): State<Arc<Shared>>,
    mut req: Request,
    next: Next,
) -> Response {
    let client = req
        .extensions()
        .get::<Peer>()
        .map(|p| p.0.ip().to_string())
        .unwrap_or_default();
    let header = req
        .headers()
        .get(AUTHORIZATION)
        .map(|h| h.to_str().unwrap_or("").to_string());
    let user = match header {
        None if shared.allow_anonymous => ANONYMOUS.to_string(),
        None => {
            return unauthorized(
                "this endpoint needs a personal access token: send `Authorization: Bearer <token>` (make one with `confluo users token create NAME`)",
            );
        }
        Some(h) => {
            let Some(token) = h
                .split_once(' ')
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, t)| t.trim().to_string())
            else {
                return unauthorized(
                    "only bearer tokens are accepted: send `Authorization: Bearer <token>`",
                );
            };
            match check(&shared, &token, &client).await {
                Ok(user) => user,
                Err(r) => return r,
            }
        }
    };
    req.extensions_mut().insert(User(user));
    next.run(req).await
}

/// The token's principal, or the refusal to send.
async fn check(shared: &Shared, token: &str, client: &str) -> Result<String, Response> {
    // The public part of the token names it in the audit and the rate limit; a string that
    // is not a Confluo token is audited under a fixed name.
    let name = token
        .strip_prefix(TOKEN_PREFIX)
        .and_then(|rest| rest.split_once('_'))
        .map(|(id, _)| format!("token:{id}"))
        .unwrap_or_else(|| "token:?".to_string());
    let audit = |outcome: LoginOutcome, message: Option<String>| {
        shared.metrics.login("http", outcome.as_str());
        let guard = shared.guard.clone();
        let name = name.clone();
        let client = client.to_string();
        async move {
            if let Err(e) = guard
                .record(&name, &client, "http", outcome, message.as_deref())
                .await
            {
                tracing::warn!("http endpoint: cannot audit a login: {e}");
            }
        }
    };
    match shared.guard.admit(&name, client).await {
        Ok(Ok(())) => {}
        Ok(Err(why)) => {
            audit(LoginOutcome::Refused, Some(why.clone())).await;
            return Err(
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED", why).into_response(),
            );
        }
        Err(e) => return Err(ApiError::internal(e).into_response()),
    }
    match shared.tokens.verify(token).await {
        Ok(Ok(user)) => {
            shared.metrics.login("http", LoginOutcome::Success.as_str());
            Ok(user)
        }
        Ok(Err(refusal)) => {
            let message = refusal.to_string();
            audit(LoginOutcome::Failure, Some(message.clone())).await;
            Err(unauthorized(message))
        }
        Err(e) => Err(ApiError::internal(e).into_response()),
    }
}

/// `GET /api/v1/me`: who the token belongs to.
pub(crate) async fn me(
    State(shared): State<Arc<Shared>>,
    axum::Extension(User(user)): axum::Extension<User>,
) -> ApiResult {
    let p = shared.lakehouse.metastore().get_principal(&user).await?;
    Ok(axum::Json(json!({
        "name": user,
        "kind": p.as_ref().map(|p| p.kind.clone()).unwrap_or_else(|| ANONYMOUS.into()),
        "groups": p.map(|p| p.groups).unwrap_or_default(),
    })))
}
