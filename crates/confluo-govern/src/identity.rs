//! Principals and their secrets. A password is never stored: `users add` keeps an argon2id
//! hash (checked by HTTP logins and `verify_password`) and the SCRAM-SHA-256 salted
//! password (what a Postgres-wire server needs to run SCRAM without seeing the password).

use std::num::NonZeroU32;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ring::rand::{SecureRandom, SystemRandom};

use confluo_lakehouse::metastore::{Metastore, Principal};

use crate::error::{GovernError, Result};

/// PBKDF2 rounds of the SCRAM secrets (PostgreSQL's default).
pub const SCRAM_ITERATIONS: u32 = 4096;

/// The shortest password `users add` accepts.
pub const MIN_PASSWORD_LEN: usize = 8;

/// What a principal is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalKind {
    /// A person.
    User,
    /// A job or an application: its secret is generated, never chosen.
    ServicePrincipal,
}

impl PrincipalKind {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::User => "user",
            PrincipalKind::ServicePrincipal => "service_principal",
        }
    }
}

/// What SCRAM-SHA-256 needs to check a client's proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramSecret {
    /// The salt.
    pub salt: Vec<u8>,
    /// PBKDF2 rounds.
    pub iterations: u32,
    /// `Hi(SASLprep(password), salt, iterations)`.
    pub salted_password: Vec<u8>,
}

/// Principals in a project's metastore.
#[derive(Debug, Clone)]
pub struct Identity {
    metastore: Metastore,
}

impl Identity {
    /// Principals kept in `metastore`.
    pub fn new(metastore: Metastore) -> Self {
        Identity { metastore }
    }

    /// Creates a principal, or sets a new password for an existing one (groups are
    /// added). Returns whether it was new.
    pub async fn add(
        &self,
        name: &str,
        kind: PrincipalKind,
        password: &str,
        groups: &[String],
    ) -> Result<bool> {
        validate_name(name, "user")?;
        for g in groups {
            validate_name(g, "group")?;
        }
        if password.chars().count() < MIN_PASSWORD_LEN {
            return Err(GovernError::Invalid(format!(
                "the password of `{name}` is too short: at least {MIN_PASSWORD_LEN} characters"
            )));
        }
        let (hash, scram) = derive(password)?;
        let principal = Principal {
            name: name.to_string(),
            kind: kind.as_str().to_string(),
            password_hash: Some(hash),
            scram_salt: Some(B64.encode(&scram.salt)),
            scram_iterations: Some(scram.iterations as i64),
            scram_salted_password: Some(B64.encode(&scram.salted_password)),
            groups: groups.to_vec(),
            ..Principal::default()
        };
        Ok(self.metastore.put_principal(&principal).await?)
    }

    /// Removes a principal.
    pub async fn remove(&self, name: &str) -> Result<()> {
        if self.metastore.remove_principal(name).await? {
            self.metastore.remove_tokens_of(name).await?;
            Ok(())
        } else {
            Err(GovernError::NotFound(name.to_string()))
        }
    }

    /// Every principal.
    pub async fn list(&self) -> Result<Vec<Principal>> {
        Ok(self.metastore.list_principals().await?)
    }

    /// One principal.
    pub async fn get(&self, name: &str) -> Result<Option<Principal>> {
        Ok(self.metastore.get_principal(name).await?)
    }

    /// Whether any principal exists (a fresh project has none: a server then refuses
    /// everyone unless anonymous access is allowed, and says how to add a user).
    pub async fn is_empty(&self) -> Result<bool> {
        Ok(!self.metastore.has_principals().await?)
    }

    /// Adds a member to a group, or removes it.
    pub async fn set_membership(&self, name: &str, group: &str, member: bool) -> Result<bool> {
        validate_name(group, "group")?;
        if self.metastore.get_principal(name).await?.is_none() {
            return Err(GovernError::NotFound(name.to_string()));
        }
        if member {
            self.metastore.add_to_group(name, group).await?;
            Ok(true)
        } else {
            Ok(self.metastore.remove_from_group(name, group).await?)
        }
    }

    /// The principal when `password` is its password (argon2 check); `None` otherwise,
    /// whether the name or the password was wrong (a client is not told which).
    pub async fn verify_password(&self, name: &str, password: &str) -> Result<Option<Principal>> {
        let Some(p) = self.metastore.get_principal(name).await? else {
            return Ok(None);
        };
        let Some(hash) = p.password_hash.as_deref() else {
            return Ok(None);
        };
        let parsed = PasswordHash::new(hash).map_err(|e| GovernError::Hash(e.to_string()))?;
        Ok(argon2::Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
            .then_some(p))
    }

    /// The SCRAM-SHA-256 secret of `name`, if it has one.
    pub async fn scram_secret(&self, name: &str) -> Result<Option<ScramSecret>> {
        let Some(p) = self.metastore.get_principal(name).await? else {
            return Ok(None);
        };
        let (Some(salt), Some(iterations), Some(salted)) = (
            p.scram_salt.as_deref(),
            p.scram_iterations,
            p.scram_salted_password.as_deref(),
        ) else {
            return Ok(None);
        };
        let decode = |s: &str| {
            B64.decode(s)
                .map_err(|e| GovernError::Hash(format!("stored secret of `{name}`: {e}")))
        };
        Ok(Some(ScramSecret {
            salt: decode(salt)?,
            iterations: iterations as u32,
            salted_password: decode(salted)?,
        }))
    }
}

/// A random secret for a service principal: 32 bytes, URL-safe base64.
pub fn generate_secret() -> Result<String> {
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random::<32>()?))
}

/// The argon2id hash and the SCRAM secret of a password.
fn derive(password: &str) -> Result<(String, ScramSecret)> {
    let salt =
        SaltString::encode_b64(&random::<16>()?).map_err(|e| GovernError::Hash(e.to_string()))?;
    let hash = argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| GovernError::Hash(e.to_string()))?
        .to_string();
    let scram_salt = random::<16>()?.to_vec();
    let salted_password = scram_salted_password(password, &scram_salt, SCRAM_ITERATIONS)?;
    Ok((
        hash,
        ScramSecret {
            salt: scram_salt,
            iterations: SCRAM_ITERATIONS,
            salted_password,
        },
    ))
}

/// SCRAM's `Hi()`: PBKDF2-HMAC-SHA-256 over the SASLprep'd password (RFC 5802, 7677).
/// A password SASLprep refuses is used as it is, as PostgreSQL does.
pub fn scram_salted_password(password: &str, salt: &[u8], iterations: u32) -> Result<Vec<u8>> {
    let prepared = stringprep::saslprep(password)
        .map(|c| c.into_owned())
        .unwrap_or_else(|_| password.to_string());
    let rounds = NonZeroU32::new(iterations)
        .ok_or_else(|| GovernError::Hash("zero SCRAM iterations".into()))?;
    let mut out = vec![0u8; 32];
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA256,
        rounds,
        salt,
        prepared.as_bytes(),
        &mut out,
    );
    Ok(out)
}

/// `N` bytes from the system's random source.
pub(crate) fn random<const N: usize>() -> Result<[u8; N]> {
    let mut bytes = [0u8; N];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| GovernError::Hash("the system's random source failed".into()))?;
    Ok(bytes)
}

/// Names of users and groups: what a Postgres client can send unquoted, so a login never
/// depends on quoting.
pub fn validate_name(name: &str, what: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@'));
    if ok {
        Ok(())
    } else {
        Err(GovernError::Invalid(format!(
            "`{name}` is not a valid {what} name: use up to 63 letters, digits, `_`, `-`, `.` or `@`, starting with a letter or `_`"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677's test vector: user "user", password "pencil".
    #[test]
    fn salted_password_matches_rfc_7677() {
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let salted = scram_salted_password("pencil", &salt, 4096).unwrap();
        // ClientKey = HMAC(SaltedPassword, "Client Key"); StoredKey = SHA256(ClientKey).
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &salted);
        let client_key = ring::hmac::sign(&key, b"Client Key");
        let stored = ring::digest::digest(&ring::digest::SHA256, client_key.as_ref());
        let server_key = ring::hmac::sign(&key, b"Server Key");
        // From the RFC's exchange: the server signature of its sample messages.
        let auth = "n=user,r=rOprNGfwEbeRWgbNEkqO,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let server_signature = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, server_key.as_ref()),
            auth.as_bytes(),
        );
        assert_eq!(
            B64.encode(server_signature.as_ref()),
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
        assert_eq!(stored.as_ref().len(), 32);
    }

    #[test]
    fn names_are_checked() {
        assert!(validate_name("alice", "user").is_ok());
        assert!(validate_name("etl-bot@prod", "user").is_ok());
        let e = validate_name("1x", "user").unwrap_err().to_string();
        assert!(e.contains("`1x` is not a valid user name"), "{e}");
        assert!(validate_name("a b", "group").is_err());
        assert!(validate_name("", "user").is_err());
    }

    #[test]
    fn hashes_verify() {
        let (hash, scram) = derive("correct horse").unwrap();
        let parsed = PasswordHash::new(&hash).unwrap();
        assert!(hash.starts_with("$argon2id$"));
        let a = argon2::Argon2::default();
        assert!(a.verify_password(b"correct horse", &parsed).is_ok());
        assert!(a.verify_password(b"wrong horse", &parsed).is_err());
        assert_eq!(
            scram.salted_password,
            scram_salted_password("correct horse", &scram.salt, 4096).unwrap()
        );
    }
}
