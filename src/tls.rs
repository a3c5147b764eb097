//! TLS on TCP listeners (`--tls-cert`, `--tls-key`, `--tls-client-ca`):
//! the server configurations built from PEM files, reloaded when the files
//! change, and the identity a client certificate carries.
//!
//! cert-manager and SPIRE rotate certificates hourly, so the files are
//! re-read on a timer and a new configuration is swapped in atomically:
//! new handshakes use it, established connections keep theirs. A rotation
//! that leaves the files unreadable or inconsistent (a key that does not
//! match its certificate, half-written PEM) is refused and the configuration
//! that works keeps serving.
//!
//! Secrets stay here: errors name files and what is wrong with them, never
//! key bytes.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};
use tokio_rustls::rustls::{
    self,
    crypto::CryptoProvider,
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer},
    server::WebPkiClientVerifier,
    RootCertStore, ServerConfig,
};

/// The PEM files a TLS listener is configured with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The server's certificate chain, leaf first.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// CA certificates client certificates must chain to. With it, every
    /// client must present one (mTLS), except on the metrics listener.
    pub client_ca: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{}: {message}", .path.display())]
    File { path: PathBuf, message: String },
    #[error("TLS configuration from {cert} and {key}: {message}")]
    Config {
        cert: String,
        key: String,
        message: String,
    },
}

/// What a listener serves decides its ALPN protocols and whether a client
/// certificate is required.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// gRPC: HTTP/2 only (gRPC clients insist on ALPN `h2`).
    Grpc,
    /// The HTTP/JSON API: HTTP/1.1.
    Http,
    /// Prometheus scrapes and probes: HTTP/1.1, a client certificate
    /// optional even in mTLS mode (scrapers rarely have one; nothing here
    /// names a subject).
    Metrics,
}

/// Whether clients must present a certificate that chains to the CA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// No CA configured: no client certificates asked for.
    None,
    /// Asked for and verified when presented.
    Optional,
    /// A handshake without a verified client certificate fails.
    Required,
}

/// The server configurations of one set of files, one per surface.
struct Loaded {
    grpc: Arc<ServerConfig>,
    http: Arc<ServerConfig>,
    metrics: Arc<ServerConfig>,
    /// Of the three files' bytes: a rotation changes it.
    digest: [u8; 32],
    /// The serving certificate's names.
    leaf: CertificateNames,
}

/// The live TLS configuration of every TCP listener, swapped on rotation.
pub struct ServerTls {
    files: TlsFiles,
    client_auth: ClientAuth,
    current: ArcSwap<Loaded>,
    /// The digest of the last files refused, so a broken rotation is
    /// reported once, not on every poll.
    refused: std::sync::Mutex<Option<[u8; 32]>>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("files", &self.files)
            .field("client_auth", &self.client_auth)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Reads and checks the files.
    pub fn load(files: TlsFiles) -> Result<ServerTls, TlsError> {
        let client_auth = match &files.client_ca {
            None => ClientAuth::None,
            Some(_) => ClientAuth::Required,
        };
        let loaded = Loaded::build(&files, &FileBytes::read(&files)?, client_auth)?;
        log_leaf(&files.cert, &loaded);
        Ok(ServerTls {
            files,
            client_auth,
            current: ArcSwap::from_pointee(loaded),
            refused: Default::default(),
        })
    }

    /// The configuration a new handshake on `surface` uses.
    pub fn config(&self, surface: Surface) -> Arc<ServerConfig> {
        let loaded = self.current.load();
        match surface {
            Surface::Grpc => loaded.grpc.clone(),
            Surface::Http => loaded.http.clone(),
            Surface::Metrics => loaded.metrics.clone(),
        }
    }

    /// Re-reads the files; swaps in a new configuration if they changed
    /// and are valid. `Ok(true)` when swapped. A refused change keeps the
    /// old configuration and is returned once per distinct content.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        // Read once: what is compared is what is built.
        let bytes = FileBytes::read(&self.files)?;
        let digest = bytes.digest();
        if digest == self.current.load().digest {
            return Ok(false);
        }
        match Loaded::build(&self.files, &bytes, self.client_auth) {
            Ok(loaded) => {
                log_leaf(&self.files.cert, &loaded);
                self.current.store(Arc::new(loaded));
                *self.refused.lock().unwrap_or_else(|e| e.into_inner()) = None;
                Ok(true)
            }
            Err(error) => {
                let mut refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
                if *refused == Some(digest) {
                    return Ok(false);
                }
                *refused = Some(digest);
                Err(error)
            }
        }
    }
}

/// Says which certificate now serves, so an operator sees a rotation land.
fn log_leaf(cert: &Path, loaded: &Loaded) {
    let names = &loaded.leaf;
    let name = names
        .dns_sans
        .first()
        .or(names.uri_sans.first())
        .or(names.common_name.as_ref())
        .map(String::as_str)
        .unwrap_or("(no name)");
    tracing::info!(cert = %cert.display(), name, "TLS certificate loaded");
}

fn read_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::File {
        path: path.to_owned(),
        message: format!("cannot read: {e}"),
    })
}

/// The contents of the configured files, read once per load.
struct FileBytes {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

impl FileBytes {
    fn read(files: &TlsFiles) -> Result<FileBytes, TlsError> {
        Ok(FileBytes {
            cert: read_file(&files.cert)?,
            key: read_file(&files.key)?,
            client_ca: files.client_ca.as_deref().map(read_file).transpose()?,
        })
    }

    /// Changes whenever any file does.
    fn digest(&self) -> [u8; 32] {
        let mut hasher = Sha256::new();
        for bytes in [Some(&self.cert), Some(&self.key), self.client_ca.as_ref()]
            .into_iter()
            .flatten()
        {
            hasher.update((bytes.len() as u64).to_be_bytes());
            hasher.update(bytes);
        }
        hasher.finalize().into()
    }
}

fn certificates(path: &Path, bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::File {
            path: path.to_owned(),
            message: format!("not PEM certificates: {e}"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::File {
            path: path.to_owned(),
            message: "holds no `BEGIN CERTIFICATE` block".to_owned(),
        });
    }
    Ok(certs)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Loaded {
    fn build(
        files: &TlsFiles,
        bytes: &FileBytes,
        client_auth: ClientAuth,
    ) -> Result<Loaded, TlsError> {
        let digest = bytes.digest();
        let chain = certificates(&files.cert, &bytes.cert)?;
        let key = PrivateKeyDer::from_pem_slice(&bytes.key).map_err(|_| TlsError::File {
            path: files.key.clone(),
            message: "holds no PEM private key (PKCS#8, PKCS#1 or SEC1)".to_owned(),
        })?;
        let roots = match (&files.client_ca, &bytes.client_ca) {
            (Some(path), Some(ca)) => {
                let mut roots = RootCertStore::empty();
                for cert in certificates(path, ca)? {
                    roots.add(cert).map_err(|e| TlsError::File {
                        path: path.clone(),
                        message: format!("not a usable CA certificate: {e}"),
                    })?;
                }
                Some(Arc::new(roots))
            }
            _ => None,
        };
        let build = |client_auth: ClientAuth, alpn: &[&[u8]]| {
            let fail = |message: String| TlsError::Config {
                cert: files.cert.display().to_string(),
                key: files.key.display().to_string(),
                message,
            };
            let builder = ServerConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .map_err(|e| fail(e.to_string()))?;
            let builder = match (&roots, client_auth) {
                (Some(roots), ClientAuth::Optional | ClientAuth::Required) => {
                    let verifier =
                        WebPkiClientVerifier::builder_with_provider(roots.clone(), provider());
                    let verifier = if client_auth == ClientAuth::Optional {
                        verifier.allow_unauthenticated()
                    } else {
                        verifier
                    };
                    builder.with_client_cert_verifier(
                        verifier.build().map_err(|e| fail(e.to_string()))?,
                    )
                }
                _ => builder.with_no_client_auth(),
            };
            let mut config = builder
                .with_single_cert(chain.clone(), key.clone_key())
                .map_err(|e| fail(format!("the key does not serve the certificate: {e}")))?;
            config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
            Ok::<_, TlsError>(Arc::new(config))
        };
        let optional = match client_auth {
            ClientAuth::None => ClientAuth::None,
            _ => ClientAuth::Optional,
        };
        Ok(Loaded {
            grpc: build(client_auth, &[b"h2"])?,
            http: build(client_auth, &[b"http/1.1"])?,
            metrics: build(optional, &[b"http/1.1"])?,
            digest,
            leaf: CertificateNames::from_der(&chain[0]).unwrap_or_default(),
        })
    }
}

/// The names a verified client certificate carries: what `--auth mtls`
/// takes a subject from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertificateNames {
    pub uri_sans: Vec<String>,
    pub dns_sans: Vec<String>,
    pub email_sans: Vec<String>,
    pub common_name: Option<String>,
}

/// Which name of a client certificate is the caller's subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SubjectName {
    /// The SPIFFE ID: the URI SAN with the `spiffe://` scheme (what SPIRE
    /// and Istio issue).
    Spiffe,
    /// The first URI SAN of any scheme.
    UriSan,
    /// The first DNS SAN.
    DnsSan,
    /// The first email (rfc822) SAN.
    EmailSan,
    /// The subject's common name (CN).
    Cn,
}

impl SubjectName {
    pub fn name(self) -> &'static str {
        match self {
            SubjectName::Spiffe => "spiffe",
            SubjectName::UriSan => "uri-san",
            SubjectName::DnsSan => "dns-san",
            SubjectName::EmailSan => "email-san",
            SubjectName::Cn => "cn",
        }
    }
}

impl CertificateNames {
    /// Reads the names of a DER certificate the handshake verified.
    pub fn from_der(der: &[u8]) -> Option<CertificateNames> {
        use x509_cert::{
            der::{oid::db::rfc4519::CN, oid::db::rfc5280::ID_CE_SUBJECT_ALT_NAME, Decode},
            ext::pkix::{name::GeneralName, SubjectAltName},
            Certificate,
        };
        let cert = Certificate::from_der(der).ok()?;
        let mut names = CertificateNames::default();
        for extension in cert.tbs_certificate.extensions.iter().flatten() {
            if extension.extn_id != ID_CE_SUBJECT_ALT_NAME {
                continue;
            }
            let Ok(SubjectAltName(general)) =
                SubjectAltName::from_der(extension.extn_value.as_bytes())
            else {
                continue;
            };
            for name in general {
                match name {
                    GeneralName::UniformResourceIdentifier(uri) => {
                        names.uri_sans.push(uri.to_string())
                    }
                    GeneralName::DnsName(dns) => names.dns_sans.push(dns.to_string()),
                    GeneralName::Rfc822Name(email) => names.email_sans.push(email.to_string()),
                    _ => {}
                }
            }
        }
        names.common_name = cert
            .tbs_certificate
            .subject
            .0
            .iter()
            .flat_map(|rdn| rdn.0.iter())
            .find(|atv| atv.oid == CN)
            .and_then(|atv| std::str::from_utf8(atv.value.value()).ok())
            .map(str::to_owned);
        Some(names)
    }

    /// The subject `rule` names, if the certificate carries it.
    pub fn subject(&self, rule: SubjectName) -> Option<&str> {
        match rule {
            SubjectName::Spiffe => self
                .uri_sans
                .iter()
                .find(|uri| uri.starts_with("spiffe://")),
            SubjectName::UriSan => self.uri_sans.first(),
            SubjectName::DnsSan => self.dns_sans.first(),
            SubjectName::EmailSan => self.email_sans.first(),
            SubjectName::Cn => self.common_name.as_ref(),
        }
        .map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(uris: &[&str]) -> (rcgen::Certificate, rcgen::KeyPair) {
        let mut params =
            rcgen::CertificateParams::new(vec!["vigil.example.org".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "vigil-test");
        for uri in uris {
            params
                .subject_alt_names
                .push(rcgen::SanType::URI(uri.to_string().try_into().unwrap()));
        }
        let key = rcgen::KeyPair::generate().unwrap();
        (params.self_signed(&key).unwrap(), key)
    }

    #[test]
    fn names_of_a_certificate() {
        let (cert, _) = leaf(&["https://example.org/x", "spiffe://example.org/ns/a/sa/b"]);
        let names = CertificateNames::from_der(cert.der()).unwrap();
        assert_eq!(names.common_name.as_deref(), Some("vigil-test"));
        assert_eq!(names.dns_sans, ["vigil.example.org"]);
        assert_eq!(
            names.subject(SubjectName::Spiffe),
            Some("spiffe://example.org/ns/a/sa/b")
        );
        assert_eq!(
            names.subject(SubjectName::UriSan),
            Some("https://example.org/x")
        );
        assert_eq!(names.subject(SubjectName::EmailSan), None);
    }

    #[test]
    fn a_broken_rotation_keeps_the_working_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let files = TlsFiles {
            cert: dir.path().join("tls.crt"),
            key: dir.path().join("tls.key"),
            client_ca: None,
        };
        let (cert, key) = leaf(&[]);
        std::fs::write(&files.cert, cert.pem()).unwrap();
        std::fs::write(&files.key, key.serialize_pem()).unwrap();
        let tls = ServerTls::load(files.clone()).unwrap();
        assert!(!tls.reload_if_changed().unwrap(), "nothing changed");
        let serving = tls.config(Surface::Grpc);

        // A new key beside the old certificate: refused once, then quiet.
        let (_, other_key) = leaf(&[]);
        std::fs::write(&files.key, other_key.serialize_pem()).unwrap();
        let refused = tls.reload_if_changed().unwrap_err().to_string();
        assert!(
            refused.contains("does not serve the certificate"),
            "{refused}"
        );
        assert!(!tls.reload_if_changed().unwrap());
        assert!(Arc::ptr_eq(&serving, &tls.config(Surface::Grpc)));

        // Half-written PEM names the file.
        std::fs::write(&files.cert, "-----BEGIN CERTIFICATE-----\nAAAA").unwrap();
        let refused = tls.reload_if_changed().unwrap_err().to_string();
        assert!(refused.contains("tls.crt"), "{refused}");

        // The matching certificate lands.
        let (new_cert, new_key) = leaf(&[]);
        std::fs::write(&files.cert, new_cert.pem()).unwrap();
        std::fs::write(&files.key, new_key.serialize_pem()).unwrap();
        assert!(tls.reload_if_changed().unwrap());
        assert!(!Arc::ptr_eq(&serving, &tls.config(Surface::Grpc)));
        assert_eq!(tls.config(Surface::Grpc).alpn_protocols, [b"h2".to_vec()]);
        assert_eq!(
            tls.config(Surface::Http).alpn_protocols,
            [b"http/1.1".to_vec()]
        );
    }
}
