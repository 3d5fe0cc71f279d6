//! The encrypted secret store: values (passwords of connections, API keys) kept in the
//! metastore under `scope/key`, encrypted with AES-256-GCM. The key is the project's, never
//! stored with the values: `CONFLUO_MASTER_KEY` (base64 of 32 bytes) when set, else the file
//! `.confluo/master.key`, made (readable by its owner only) when the first secret is saved.
//! A metastore copied without the key reveals nothing; the scope and key are bound into
//! each value's authentication, so a value moved to another name fails to decrypt.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

use confluo_lakehouse::Lakehouse;
use confluo_lakehouse::metastore::StoredSecret;

use crate::error::{GovernError, Result};

/// The environment variable that holds the key (base64 of 32 bytes), overriding the file.
pub const MASTER_KEY_ENV: &str = "CONFLUO_MASTER_KEY";

/// A name of the store, as written in SQL: `secret('scope', 'key')`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRef {
    /// The scope.
    pub scope: String,
    /// The key within it.
    pub key: String,
}

impl SecretRef {
    /// Reads `secret('scope','key')` (quotes single or double, spaces allowed); `None` when
    /// `text` is not such a reference.
    pub fn parse(text: &str) -> Option<SecretRef> {
        let t = text.trim();
        let inner = t
            .strip_prefix("secret(")
            .or_else(|| t.strip_prefix("SECRET("))?
            .strip_suffix(')')?;
        let parts: Vec<String> = inner
            .split(',')
            .map(|p| {
                let p = p.trim();
                p.strip_prefix('\'')
                    .and_then(|p| p.strip_suffix('\''))
                    .or_else(|| p.strip_prefix('"').and_then(|p| p.strip_suffix('"')))
                    .unwrap_or(p)
                    .to_string()
            })
            .collect();
        match parts.as_slice() {
            [scope, key] if !scope.is_empty() && !key.is_empty() => Some(SecretRef {
                scope: scope.clone(),
                key: key.clone(),
            }),
            _ => None,
        }
    }
}

impl std::fmt::Display for SecretRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "secret('{}', '{}')", self.scope, self.key)
    }
}

/// The secret store of one project.
pub struct Secrets<'a> {
    lakehouse: &'a Lakehouse,
}

impl<'a> Secrets<'a> {
    /// The store of `lakehouse`'s project.
    pub fn new(lakehouse: &'a Lakehouse) -> Self {
        Secrets { lakehouse }
    }

    fn key_file(&self) -> PathBuf {
        self.lakehouse.state_dir().join("master.key")
    }

    /// The key; with `create`, a new one is made when there is none.
    fn key(&self, create: bool) -> Result<LessSafeKey> {
        let bytes = match std::env::var(MASTER_KEY_ENV) {
            Ok(v) => B64.decode(v.trim()).map_err(|_| {
                GovernError::Invalid(format!("{MASTER_KEY_ENV} is not base64 (of 32 bytes)"))
            })?,
            Err(_) => read_or_make_key(&self.key_file(), create)?,
        };
        let unbound = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| {
            GovernError::Invalid(format!(
                "the secret store's key must be 32 bytes (it is {})",
                bytes.len()
            ))
        })?;
        Ok(LessSafeKey::new(unbound))
    }

    /// Encrypts and saves `value` as `scope/key`, replacing what was there.
    pub async fn put(&self, scope: &str, key: &str, value: &str) -> Result<()> {
        for (what, v) in [("scope", scope), ("key", key)] {
            if v.is_empty() || v.chars().any(|c| c.is_control()) {
                return Err(GovernError::Invalid(format!(
                    "a secret's {what} must be non-empty text"
                )));
            }
        }
        let k = self.key(true)?;
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| GovernError::Hash("no random bytes for a nonce".into()))?;
        let mut data = value.as_bytes().to_vec();
        k.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad(scope, key)),
            &mut data,
        )
        .map_err(|_| GovernError::Hash("encryption failed".into()))?;
        self.lakehouse
            .metastore()
            .put_secret(&StoredSecret {
                scope: scope.into(),
                name: key.into(),
                nonce: B64.encode(nonce),
                ciphertext: B64.encode(&data),
                updated_ms: 0,
            })
            .await?;
        Ok(())
    }

    /// The value of `scope/key`. A missing secret, or one the key cannot open, is an error
    /// that says which and what to do.
    pub async fn get(&self, r: &SecretRef) -> Result<String> {
        let Some(s) = self
            .lakehouse
            .metastore()
            .get_secret(&r.scope, &r.key)
            .await?
        else {
            return Err(GovernError::Invalid(format!(
                "{r} does not exist\n  hint: confluo secrets put {} {}",
                r.scope, r.key
            )));
        };
        let k = self.key(false)?;
        let nonce: [u8; NONCE_LEN] = B64
            .decode(&s.nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or_else(|| GovernError::Invalid(format!("{r}: the stored nonce is damaged")))?;
        let mut data = B64
            .decode(&s.ciphertext)
            .map_err(|_| GovernError::Invalid(format!("{r}: the stored value is damaged")))?;
        let plain = k
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(&r.scope, &r.key)),
                &mut data,
            )
            .map_err(|_| {
                GovernError::Invalid(format!(
                    "{r} cannot be decrypted with this project's key\n  hint: the key ({MASTER_KEY_ENV} or .confluo/master.key) is not the one it was saved with; save it again with `confluo secrets put`"
                ))
            })?;
        String::from_utf8(plain.to_vec())
            .map_err(|_| GovernError::Invalid(format!("{r} is not UTF-8 text")))
    }

    /// `(scope, key, updated_ms)` of every secret (values are never listed).
    pub async fn list(&self, scope: Option<&str>) -> Result<Vec<(String, String, i64)>> {
        Ok(self
            .lakehouse
            .metastore()
            .list_secrets(scope)
            .await?
            .into_iter()
            .map(|s| (s.scope, s.name, s.updated_ms))
            .collect())
    }

    /// Removes `scope/key`; false when it did not exist.
    pub async fn delete(&self, scope: &str, key: &str) -> Result<bool> {
        Ok(self.lakehouse.metastore().delete_secret(scope, key).await?)
    }
}

fn aad(scope: &str, key: &str) -> Vec<u8> {
    format!("confluo-secret\0{scope}\0{key}").into_bytes()
}

fn read_or_make_key(path: &Path, create: bool) -> Result<Vec<u8>> {
    match std::fs::read(path) {
        Ok(text) => B64
            .decode(String::from_utf8_lossy(&text).trim())
            .map_err(|_| GovernError::Invalid(format!("{} is not base64", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
            let mut key = [0u8; 32];
            SystemRandom::new()
                .fill(&mut key)
                .map_err(|_| GovernError::Hash("no random bytes for a key".into()))?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| {
                    GovernError::Invalid(format!("cannot create {}: {e}", dir.display()))
                })?;
            }
            write_private(path, B64.encode(key).as_bytes())?;
            Ok(key.to_vec())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(GovernError::Invalid(format!(
            "the secret store has no key ({} is missing and {MASTER_KEY_ENV} is not set)\n  hint: restore the key file, or save the secrets again with `confluo secrets put`",
            path.display()
        ))),
        Err(e) => Err(GovernError::Invalid(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}

/// Writes a file only its owner can read.
fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .map_err(|e| GovernError::Invalid(format!("cannot create {}: {e}", path.display())))?;
    f.write_all(bytes)
        .map_err(|e| GovernError::Invalid(format!("cannot write {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        assert_eq!(
            SecretRef::parse("secret('shop', 'pg-password')"),
            Some(SecretRef {
                scope: "shop".into(),
                key: "pg-password".into()
            })
        );
        assert_eq!(SecretRef::parse("hunter2"), None);
        assert_eq!(SecretRef::parse("secret('only-one')"), None);
    }
}
