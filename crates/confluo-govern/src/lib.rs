//! Governance: who may connect (users, groups, service principals), how their passwords
//! are kept (argon2id, plus the SCRAM-SHA-256 secret the Postgres wire asks for), and how
//! logins are judged (failures rate-limited per name and address, every attempt audited),
//! the personal access tokens of the HTTP API, and the encrypted secret store.
//! Grants, masks and lineage join this crate later; every endpoint already knows its
//! session's principal.

pub mod error;
pub mod identity;
pub mod login;
pub mod secrets;
pub mod tokens;

pub use error::{GovernError, Result};
pub use identity::{Identity, PrincipalKind, ScramSecret};
pub use login::{LoginGuard, LoginOutcome};
pub use secrets::{SecretRef, Secrets};
pub use tokens::{TOKEN_PREFIX, TokenRefusal, Tokens};
