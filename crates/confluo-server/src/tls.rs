//! TLS for the endpoints: a certificate and key from PEM files, or a self-signed pair made
//! at start (`--tls-self-signed`) and written beside the project's state so a client can
//! trust it (`sslrootcert=`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::error::{Result, ServerError};

/// A certificate chain and its key, as PEM files.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The certificate chain (PEM).
    pub cert: PathBuf,
    /// The private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// An acceptor for `files`, offering the `alpn` protocols, with errors that name the file
/// and what is wrong with it.
pub fn acceptor(files: &TlsFiles, alpn: &[&[u8]]) -> Result<TlsAcceptor> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| ServerError::Tls(format!("certificate {}: {e}", files.cert.display())))?
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| ServerError::Tls(format!("certificate {}: {e}", files.cert.display())))?;
    if certs.is_empty() {
        return Err(ServerError::Tls(format!(
            "certificate {}: no PEM certificate in it",
            files.cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| ServerError::Tls(format!("key {}: {e}", files.key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServerError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            ServerError::Tls(format!(
                "{} and {} do not make a usable pair: {e}",
                files.cert.display(),
                files.key.display()
            ))
        })?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Binds an endpoint's address and loads its TLS acceptor (offering `alpn`); a TLS
/// requirement without a certificate is refused before anything listens.
pub(crate) async fn listen(
    addr: &str,
    files: Option<&TlsFiles>,
    require_tls: bool,
    alpn: &[&[u8]],
) -> Result<(tokio::net::TcpListener, Option<TlsAcceptor>)> {
    if require_tls && files.is_none() {
        return Err(ServerError::Tls(
            "TLS is required but no certificate is configured: give --tls-cert and --tls-key, or --tls-self-signed".into(),
        ));
    }
    let tls = files.map(|t| acceptor(t, alpn)).transpose()?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind {
            addr: addr.to_string(),
            source,
        })?;
    Ok((listener, tls))
}

/// Makes a self-signed certificate for `localhost`, `127.0.0.1` and `hosts`, writing
/// `server.crt` and `server.key` into `dir` (kept across restarts: a client that trusts
/// it once keeps trusting it).
pub fn self_signed(dir: &Path, hosts: &[String]) -> Result<TlsFiles> {
    let files = TlsFiles {
        cert: dir.join("server.crt"),
        key: dir.join("server.key"),
    };
    if files.cert.exists() && files.key.exists() {
        return Ok(files);
    }
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    names.extend(hosts.iter().cloned());
    let cert = rcgen::generate_simple_self_signed(names)
        .map_err(|e| ServerError::Tls(format!("cannot make a self-signed certificate: {e}")))?;
    std::fs::create_dir_all(dir)
        .map_err(|e| ServerError::Tls(format!("cannot create {}: {e}", dir.display())))?;
    let write = |path: &Path, text: String| {
        std::fs::write(path, text)
            .map_err(|e| ServerError::Tls(format!("cannot write {}: {e}", path.display())))
    };
    write(&files.key, cert.key_pair.serialize_pem())?;
    write(&files.cert, cert.cert.pem())?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&files.key, std::fs::Permissions::from_mode(0o600));
    }
    Ok(files)
}
