//! HTTPS (`--tls-cert`, `--tls-key`): the certificate chain and private key the server
//! presents, read from PEM files, and replaced by [`Tls::reload`] (on SIGHUP) without touching
//! open connections: each handshake takes the certificate current when it starts, and a
//! connection keeps the one it was made with. HTTP/1.1 only, as the server speaks it.
//!
//! A bad file at start is an error naming the file and what is wrong with it; a bad file at a
//! reload is logged and the certificate in use stays.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use axum::http::{header, HeaderValue};
use axum::response::Response;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;
use zeroize::Zeroizing;

/// `Strict-Transport-Security` of every answer of an HTTPS listener: a year, this host only
/// (other hosts of the domain may not serve HTTPS).
const HSTS: &str = "max-age=31536000";

/// Where the certificate chain and its private key are: PEM files (they may be one file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSettings {
    /// The certificate chain: PEM `CERTIFICATE` blocks, the server's own first, then the
    /// intermediates.
    pub cert: PathBuf,
    /// The private key of the server's certificate: PEM `PRIVATE KEY` (PKCS#8),
    /// `RSA PRIVATE KEY` or `EC PRIVATE KEY`; RSA, ECDSA P-256/P-384 or Ed25519.
    pub key: PathBuf,
}

/// Why a certificate and key can't be served. Each names the file and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file can't be read.
    #[error("cannot read the TLS {what} file {}: {error}", path.display())]
    Read {
        /// `certificate` or `key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        error: io::Error,
    },
    /// The file is not valid PEM.
    #[error("the TLS {what} file {} is not valid PEM: {error}", path.display())]
    Pem {
        /// `certificate` or `key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What the PEM reader found.
        error: pem::Error,
    },
    /// The certificate file holds no certificate.
    #[error(
        "the TLS certificate file {} holds no certificate (expected PEM blocks \
         `-----BEGIN CERTIFICATE-----`, the server's own first, then its intermediates)",
        path.display()
    )]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The key file holds no private key.
    #[error(
        "the TLS key file {} holds no private key (expected a PEM block `-----BEGIN PRIVATE \
         KEY-----`, `-----BEGIN RSA PRIVATE KEY-----` or `-----BEGIN EC PRIVATE KEY-----`)",
        path.display()
    )]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// The server's certificate can't be parsed.
    #[error("the TLS certificate in {} can't be used: {error}", path.display())]
    Certificate {
        /// The file.
        path: PathBuf,
        /// What rustls found.
        error: rustls::Error,
    },
    /// The private key can't be used.
    #[error(
        "the TLS private key in {} can't be used (RSA, ECDSA P-256/P-384 and Ed25519 keys \
         are supported): {error}",
        path.display()
    )]
    Key {
        /// The file.
        path: PathBuf,
        /// What rustls found.
        error: rustls::Error,
    },
    /// The key is not the key of the certificate.
    #[error(
        "the TLS private key in {} does not belong to the certificate in {} (the first \
         certificate of the chain must be the server's own)",
        key.display(),
        cert.display()
    )]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// rustls refused the configuration.
    #[error("TLS can't be set up: {0}")]
    Config(rustls::Error),
}

/// A loaded certificate and key, ready to serve, and the means to reload them. Cheap to
/// clone: clones share the certificate, so a reload through one is seen by every listener
/// and every server holding another.
#[derive(Clone)]
pub struct Tls {
    inner: Arc<Inner>,
}

struct Inner {
    settings: TlsSettings,
    provider: Arc<CryptoProvider>,
    current: Arc<Current>,
    acceptor: TlsAcceptor,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("cert", &self.inner.settings.cert)
            .field("key", &self.inner.settings.key)
            .finish()
    }
}

impl Tls {
    /// Reads and checks the certificate chain and key: a file that can't be read, isn't PEM,
    /// holds no certificate or key, or a key that isn't the certificate's, is an error
    /// naming the file.
    pub fn load(settings: TlsSettings) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certified = read_certified_key(&settings, &provider)?;
        let current = Arc::new(Current(RwLock::new(Arc::new(certified))));
        let mut config = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Config)?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        // The server speaks HTTP/1.1 only (hyper's `http1`); a client offering h2 and
        // http/1.1, as browsers do, gets http/1.1.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            inner: Arc::new(Inner {
                settings,
                provider,
                current,
                acceptor: TlsAcceptor::from(Arc::new(config)),
            }),
        })
    }

    /// Reads the files again and, if they are good, serves their certificate to every
    /// handshake from now on; open connections keep theirs. If they are not, the
    /// certificate in use stays and the error says why.
    pub fn reload(&self) -> Result<(), TlsError> {
        let certified = read_certified_key(&self.inner.settings, &self.inner.provider)?;
        *self
            .inner
            .current
            .0
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(certified);
        Ok(())
    }

    /// The files this was loaded from.
    pub fn settings(&self) -> &TlsSettings {
        &self.inner.settings
    }

    /// The handshake of a connection of an HTTPS listener.
    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        self.inner.acceptor.clone()
    }

    /// [`reload`](Tls::reload), logged: success at `INFO`, failure at `ERROR` (the
    /// certificate in use stays).
    pub(crate) fn reload_and_log(&self) {
        let settings = self.settings();
        match self.reload() {
            Ok(()) => tracing::info!(
                cert = %settings.cert.display(),
                key = %settings.key.display(),
                "TLS certificate reloaded; new connections get it, open ones keep theirs"
            ),
            Err(e) => tracing::error!(
                error = %e,
                "TLS certificate not reloaded; the one in use stays"
            ),
        }
    }
}

/// A task that reloads the certificate on every SIGHUP until it is aborted, or, without
/// TLS, logs that there is nothing to reload. The handler is installed before this returns,
/// so a SIGHUP sent once the server answers (`systemctl reload`) never ends the process.
/// `None` where there are no signals (not Unix).
pub(crate) fn reload_on_hangup(
    tls: Option<Tls>,
) -> io::Result<Option<tokio::task::JoinHandle<()>>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hangups = signal(SignalKind::hangup()).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot handle SIGHUP (TLS certificate reload): {e}"),
            )
        })?;
        Ok(Some(tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                match &tls {
                    Some(tls) => tls.reload_and_log(),
                    None => tracing::info!("SIGHUP: no TLS certificate to reload"),
                }
            }
        })))
    }
    #[cfg(not(unix))]
    {
        let _ = tls;
        Ok(None)
    }
}

/// The certificate every handshake gets: one, swapped whole by a reload.
#[derive(Debug)]
struct Current(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.0
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
    }
}

/// Reads the chain and the key and checks that they go together.
fn read_certified_key(
    settings: &TlsSettings,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let chain = read_chain(&settings.cert)?;
    let key = read_key(&settings.key)?;
    CertifiedKey::from_der(chain, key, provider).map_err(|error| match error {
        rustls::Error::InconsistentKeys(_) => TlsError::Mismatch {
            cert: settings.cert.clone(),
            key: settings.key.clone(),
        },
        rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => {
            TlsError::Certificate {
                path: settings.cert.clone(),
                error,
            }
        }
        error => TlsError::Key {
            path: settings.key.clone(),
            error,
        },
    })
}

/// Every certificate of a PEM file, in order.
fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    const WHAT: &str = "certificate";
    let bytes = std::fs::read(path).map_err(|error| TlsError::Read {
        what: WHAT,
        path: path.to_owned(),
        error,
    })?;
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsError::Pem {
            what: WHAT,
            path: path.to_owned(),
            error,
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(chain)
}

/// The first private key of a PEM file; the file's bytes are wiped once read.
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    const WHAT: &str = "key";
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|error| TlsError::Read {
        what: WHAT,
        path: path.to_owned(),
        error,
    })?);
    match PrivateKeyDer::from_pem_slice(&bytes) {
        Ok(key) => Ok(key),
        Err(pem::Error::NoItemsFound) => Err(TlsError::NoKey {
            path: path.to_owned(),
        }),
        Err(error) => Err(TlsError::Pem {
            what: WHAT,
            path: path.to_owned(),
            error,
        }),
    }
}

/// Adds `Strict-Transport-Security` to an answer of an HTTPS listener.
pub(crate) async fn hsts(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static(HSTS),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(dir: &Path, cert: &str, key: &str) -> TlsSettings {
        let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert_path, cert).expect("write cert");
        std::fs::write(&key_path, key).expect("write key");
        TlsSettings {
            cert: cert_path,
            key: key_path,
        }
    }

    #[test]
    fn missing_empty_and_garbled_files_are_errors_that_name_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = TlsSettings {
            cert: dir.path().join("nowhere.pem"),
            key: dir.path().join("nokey.pem"),
        };
        let e = Tls::load(missing).expect_err("a missing file");
        assert!(
            matches!(
                e,
                TlsError::Read {
                    what: "certificate",
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("nowhere.pem"), "{e}");

        let empty = settings(dir.path(), "", "");
        let e = Tls::load(empty).expect_err("an empty file");
        assert!(matches!(e, TlsError::NoCertificate { .. }), "{e}");
        assert!(e.to_string().contains("cert.pem"), "{e}");

        let garbled = settings(
            dir.path(),
            "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n",
            "",
        );
        let e = Tls::load(garbled).expect_err("garbled PEM");
        assert!(
            matches!(
                e,
                TlsError::Pem {
                    what: "certificate",
                    ..
                }
            ),
            "{e}"
        );
    }
}
