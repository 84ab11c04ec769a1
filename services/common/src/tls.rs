//! TLS (rustls, ring): server and client configurations from PEM files, and a small test CA for
//! local networks (`p2p-peer dev-certs`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};

/// `[tls]` of both services. Empty paths mean off.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// This process's certificate chain (PEM): served by listeners, and presented to servers
    /// that require client certificates.
    pub cert: PathBuf,
    /// Private key of `cert` (PEM).
    pub key: PathBuf,
    /// CA bundle (PEM) that the servers this process talks to must chain to. Setting it makes
    /// the peer fetch from other peers over https.
    pub ca: PathBuf,
    /// CA bundle (PEM) for client certificates: when set, listeners require one (mutual TLS).
    pub client_ca: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("TLS: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("tls.cert and tls.key must be set together")]
    Half,
    #[error("cannot make certificates: {0}")]
    Generate(#[from] rcgen::Error),
}

fn file_err(path: &Path, e: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Installs ring as the process-wide rustls provider (once; later calls are no-ops).
pub fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_err(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(path, e))?;
    if certs.is_empty() {
        return Err(file_err(path, "no certificate in the file"));
    }
    Ok(certs)
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| file_err(path, e))
}

fn roots(path: &Path) -> Result<rustls::RootCertStore, TlsError> {
    let mut store = rustls::RootCertStore::empty();
    for c in certs(path)? {
        store.add(c).map_err(|e| file_err(path, e))?;
    }
    Ok(store)
}

impl TlsConfig {
    /// Whether listeners serve TLS.
    pub fn serves(&self) -> bool {
        !self.cert.as_os_str().is_empty() || !self.key.as_os_str().is_empty()
    }

    /// Whether this process dials servers over TLS.
    pub fn dials(&self) -> bool {
        !self.ca.as_os_str().is_empty()
    }

    /// The listener's configuration, or None when TLS is off.
    pub fn server_config(&self) -> Result<Option<Arc<rustls::ServerConfig>>, TlsError> {
        if !self.serves() {
            return Ok(None);
        }
        if self.cert.as_os_str().is_empty() || self.key.as_os_str().is_empty() {
            return Err(TlsError::Half);
        }
        install_provider();
        let builder = rustls::ServerConfig::builder();
        let builder = if self.client_ca.as_os_str().is_empty() {
            builder.with_no_client_auth()
        } else {
            let verifier =
                rustls::server::WebPkiClientVerifier::builder(Arc::new(roots(&self.client_ca)?))
                    .build()
                    .map_err(|e| file_err(&self.client_ca, e))?;
            builder.with_client_cert_verifier(verifier)
        };
        let mut cfg = builder.with_single_cert(certs(&self.cert)?, key(&self.key)?)?;
        // gRPC needs h2; the file API speaks both.
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Some(Arc::new(cfg)))
    }

    /// A client configuration trusting `ca` (and presenting `cert` when set), or None when
    /// this process does not dial over TLS.
    pub fn client_config(&self) -> Result<Option<rustls::ClientConfig>, TlsError> {
        if !self.dials() {
            return Ok(None);
        }
        install_provider();
        let builder = rustls::ClientConfig::builder().with_root_certificates(roots(&self.ca)?);
        let mut cfg = if self.serves() {
            builder.with_client_auth_cert(certs(&self.cert)?, key(&self.key)?)?
        } else {
            builder.with_no_client_auth()
        };
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Some(cfg))
    }

    /// tonic's client TLS settings for the tracker channel.
    pub fn tonic_client(&self) -> Result<Option<tonic::transport::ClientTlsConfig>, TlsError> {
        if !self.dials() {
            return Ok(None);
        }
        install_provider();
        let ca = std::fs::read(&self.ca).map_err(|e| file_err(&self.ca, e))?;
        let mut tls = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(ca));
        if self.serves() {
            let cert = std::fs::read(&self.cert).map_err(|e| file_err(&self.cert, e))?;
            let key = std::fs::read(&self.key).map_err(|e| file_err(&self.key, e))?;
            tls = tls.identity(tonic::transport::Identity::from_pem(cert, key));
        }
        Ok(Some(tls))
    }
}

/// Writes a CA and one certificate (usable as server and client certificate) for `names` into
/// `dir`: `ca.pem`, `ca-key.pem`, `cert.pem`, `key.pem`. For local and test networks.
pub fn generate_dev_certs(dir: &Path, names: &[String]) -> Result<(), TlsError> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    std::fs::create_dir_all(dir).map_err(|e| file_err(dir, e))?;
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name
        .push(DnType::CommonName, "p2pshare development CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = rcgen::Issuer::new(ca, ca_key);

    let key = KeyPair::generate()?;
    let mut leaf = CertificateParams::new(names.to_vec())?;
    leaf.distinguished_name.push(DnType::CommonName, "p2pshare");
    leaf.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let leaf_cert = leaf.signed_by(&key, &issuer)?;

    let write = |name: &str, pem: String, private: bool| {
        let path = dir.join(name);
        write_pem(&path, pem.as_bytes(), private).map_err(|e| file_err(&path, e))
    };
    write("ca.pem", ca_cert.pem(), false)?;
    write("ca-key.pem", issuer.key().serialize_pem(), true)?;
    write("cert.pem", leaf_cert.pem(), false)?;
    write("key.pem", key.serialize_pem(), true)?;
    Ok(())
}

/// Writes `pem` to `path`; a private key is readable by its owner only (0600), from the moment
/// the file exists, and an older file's wider mode is narrowed before the key is written.
fn write_pem(path: &Path, pem: &[u8], private: bool) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    #[cfg(not(unix))]
    let _ = private;
    f.write_all(pem)?;
    f.sync_all()
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn dev_certs_keep_private_keys_private() {
        let dir = tempfile::tempdir().unwrap();
        let certs = dir.path().join("certs");
        // A key left world-readable by an older version is narrowed when rewritten.
        std::fs::create_dir_all(&certs).unwrap();
        std::fs::write(certs.join("key.pem"), "old").unwrap();
        std::fs::set_permissions(
            certs.join("key.pem"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        generate_dev_certs(&certs, &["localhost".into()]).unwrap();
        assert_eq!(mode(&certs.join("key.pem")), 0o600, "key.pem");
        assert_eq!(mode(&certs.join("ca-key.pem")), 0o600, "ca-key.pem");
        // Certificates are public; the services must still be able to load everything.
        assert_eq!(mode(&certs.join("cert.pem")) & 0o044, 0o044, "cert.pem");
        assert_eq!(mode(&certs.join("ca.pem")) & 0o044, 0o044, "ca.pem");
        let cfg = TlsConfig {
            cert: certs.join("cert.pem"),
            key: certs.join("key.pem"),
            ca: certs.join("ca.pem"),
            client_ca: Default::default(),
        };
        assert!(cfg.server_config().unwrap().is_some());
        assert!(cfg.client_config().unwrap().is_some());
    }
}

/// `error` and its sources as one line. A failed TLS handshake reaches the caller wrapped in
/// transport errors ("transport error", "error sending request") whose own text omits the
/// cause (unknown CA, certificate required, name mismatch); the cause is at the end of the
/// chain. Messages already contained in an earlier one are skipped.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(error);
    while let Some(e) = next {
        let msg = e.to_string();
        if !msg.is_empty() && !parts.iter().any(|p| p.contains(&msg)) {
            parts.push(msg);
        }
        next = e.source();
    }
    parts.join(": ")
}

/// Why a TLS server at `url` turns this client away, found by opening one session of our own
/// and sending the HTTP/2 preface; None when the session works or nothing answers. A server
/// that requires a client certificate says so (TLS 1.3 `CertificateRequired`) only after the
/// client's side of the handshake is done; hyper drops that alert with the connection, so a
/// failed call carries no cause. Meant for failure paths only: it costs a round trip.
pub async fn diagnose(url: &str, tls: &TlsConfig, timeout: std::time::Duration) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // The client preface and an empty SETTINGS frame; a server that accepts us answers.
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0";
    let uri: http::Uri = url.parse().ok()?;
    let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(443);
    let name = rustls::pki_types::ServerName::try_from(host.to_owned()).ok()?;
    let mut config = tls.client_config().ok()??;
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let attempt = async {
        let tcp = tokio::net::TcpStream::connect((host, port)).await.ok()?;
        let mut tls = match connector.connect(name, tcp).await {
            Ok(tls) => tls,
            Err(e) => return Some(error_chain(&e)),
        };
        if let Err(e) = tls.write_all(PREFACE).await {
            return Some(error_chain(&e));
        }
        let mut answer = [0u8; 64];
        match tls.read(&mut answer).await {
            Err(e) => Some(error_chain(&e)),
            Ok(_) => None,
        }
    };
    tokio::time::timeout(timeout, attempt).await.ok().flatten()
}

/// A gRPC status's message and the causes behind it (see [`error_chain`]).
pub fn status_chain(status: &tonic::Status) -> String {
    let message = status.message();
    let Some(source) = std::error::Error::source(status) else {
        return message.to_owned();
    };
    let causes = error_chain(source);
    if message.is_empty() || causes.contains(message) {
        causes
    } else {
        format!("{message}: {causes}")
    }
}
