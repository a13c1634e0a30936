//! Parsing a connection URL and choosing how its TLS is checked, with libpq's meaning of
//! `sslmode`: `disable` never encrypts; `prefer` (the default) and `require` encrypt without
//! checking the server's certificate; `verify-ca` checks it against the trusted roots and
//! `verify-full` checks the host name too. The trusted roots are the system's (or the
//! `SSL_CERT_FILE` / `SSL_CERT_DIR` the environment names).

use std::sync::Arc;

use contextd_core::store::StoreError;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres_rustls::MakeRustlsConnect;

/// How much of the server's certificate is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verify {
    /// Encryption only (libpq's `prefer` and `require`).
    Nothing,
    /// The chain up to a trusted root (`verify-ca`).
    Chain,
    /// The chain and the host name (`verify-full`).
    Full,
}

/// Parses `url` (a `postgres://` URL or a `key=value` string) into a driver configuration
/// and a TLS connector that applies its `sslmode`.
pub(crate) fn parse(url: &str) -> Result<(tokio_postgres::Config, MakeRustlsConnect), StoreError> {
    // The driver knows only disable, prefer and require: the two checking modes reach it as
    // `require`, and the checking is done here.
    let (url, verify) = if url.contains("sslmode=verify-full") {
        (
            url.replace("sslmode=verify-full", "sslmode=require"),
            Verify::Full,
        )
    } else if url.contains("sslmode=verify-ca") {
        (
            url.replace("sslmode=verify-ca", "sslmode=require"),
            Verify::Chain,
        )
    } else {
        (url.to_owned(), Verify::Nothing)
    };
    let config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| StoreError::Backend(format!("invalid PostgreSQL URL: {e}")))?;
    Ok((config, MakeRustlsConnect::new(client_config(verify)?)))
}

fn client_config(verify: Verify) -> Result<ClientConfig, StoreError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier: Arc<dyn ServerCertVerifier> = match verify {
        Verify::Nothing => Arc::new(EncryptionOnly(provider.clone())),
        Verify::Chain | Verify::Full => {
            let mut roots = RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(StoreError::Backend(
                    "sslmode asks to verify the server's certificate, but no trusted root certificate was found (set SSL_CERT_FILE)".into(),
                ));
            }
            let webpki =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| StoreError::Backend(format!("TLS set-up failed: {e}")))?;
            if verify == Verify::Full {
                webpki
            } else {
                Arc::new(AnyName(webpki))
            }
        }
    };
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Backend(format!("TLS set-up failed: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// Accepts any certificate but still checks that the server holds its key: encryption
/// against passive listeners, as libpq's `require`.
#[derive(Debug)]
struct EncryptionOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for EncryptionOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Checks the chain but not the host name, as libpq's `verify-ca`.
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssl_modes_are_read_as_libpq_reads_them() {
        for (url, mode) in [
            ("postgres://u@h/db", tokio_postgres::config::SslMode::Prefer),
            (
                "postgres://u@h/db?sslmode=disable",
                tokio_postgres::config::SslMode::Disable,
            ),
            (
                "postgres://u@h/db?sslmode=require",
                tokio_postgres::config::SslMode::Require,
            ),
            (
                "postgres://u@h/db?sslmode=verify-full",
                tokio_postgres::config::SslMode::Require,
            ),
            (
                "host=h user=u sslmode=verify-ca",
                tokio_postgres::config::SslMode::Require,
            ),
        ] {
            match parse(url) {
                Ok((config, _)) => assert_eq!(config.get_ssl_mode(), mode, "{url}"),
                // Without any trusted root the checking modes refuse to start, which is right.
                Err(e) => assert!(url.contains("verify"), "{url}: {e}"),
            }
        }
        assert!(parse("mysql://nope").is_err());
    }
}
