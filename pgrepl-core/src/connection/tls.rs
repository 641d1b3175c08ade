//! TLS for connections, with rustls and its `ring` provider, following libpq's `sslmode`
//! (PostgreSQL documentation, "SSL Support" in the libpq chapter).
//!
//! | sslmode | TLS | chain checked | host name checked |
//! | --- | --- | --- | --- |
//! | `disable` | never | – | – |
//! | `prefer` | if the server offers it | no | no |
//! | `require` | always | only when `sslrootcert` is set (as libpq does) | no |
//! | `verify-ca` | always | yes | no |
//! | `verify-full` | always | yes | yes |
//!
//! Even where the certificate is not checked, the handshake signatures are, so the peer must
//! hold the key of the certificate it presents (which is what SCRAM channel binding relies on).
//! `sslrootcert=system` uses the operating system's trust store; with no `sslrootcert`, libpq's
//! default `~/.postgresql/root.crt` is used when it exists.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use sha2::Digest;

use super::config::{ConnectConfig, Host, SslMode};
use super::error::Error;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_error(cfg: &ConnectConfig, reason: impl Into<String>) -> Error {
    Error::Tls {
        endpoint: cfg.endpoint(),
        reason: reason.into(),
    }
}

/// Where trusted roots come from for this configuration, if anywhere.
fn root_source(cfg: &ConnectConfig) -> Option<PathBuf> {
    cfg.ssl_root_cert.clone().or_else(|| {
        let default = PathBuf::from(std::env::var_os("HOME")?).join(".postgresql/root.crt");
        default.is_file().then_some(default)
    })
}

fn load_roots(cfg: &ConnectConfig, path: &Path) -> Result<RootCertStore, Error> {
    let mut roots = RootCertStore::empty();
    if path == Path::new("system") {
        let found = rustls_native_certs::load_native_certs();
        let (added, _) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            return Err(tls_error(
                cfg,
                "sslrootcert=system, but the system trust store has no usable certificates",
            ));
        }
        return Ok(roots);
    }
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            tls_error(
                cfg,
                format!("could not read sslrootcert {}: {e}", path.display()),
            )
        })?;
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(tls_error(
            cfg,
            format!("sslrootcert {} holds no usable certificate", path.display()),
        ));
    }
    Ok(roots)
}

/// The rustls configuration for `cfg`, or `None` for `sslmode=disable` or a Unix socket.
pub(crate) fn client_config(cfg: &ConnectConfig) -> Result<Option<Arc<ClientConfig>>, Error> {
    if cfg.ssl_mode == SslMode::Disable || matches!(cfg.host, Host::Unix(_)) {
        return Ok(None);
    }
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(cfg, e.to_string()))?;
    let roots = match (cfg.ssl_mode, root_source(cfg)) {
        (SslMode::VerifyCa | SslMode::VerifyFull, None) => {
            return Err(tls_error(
                cfg,
                format!(
                    "sslmode={} needs trusted root certificates: set sslrootcert=/path/to/ca.pem \
                     (or sslrootcert=system), or create ~/.postgresql/root.crt",
                    cfg.ssl_mode.as_str()
                ),
            ));
        }
        (SslMode::VerifyCa | SslMode::VerifyFull, Some(path)) => Some(load_roots(cfg, &path)?),
        // libpq: with require, an explicitly given root certificate turns on chain checking.
        (SslMode::Require, Some(path)) if cfg.ssl_root_cert.is_some() => {
            Some(load_roots(cfg, &path)?)
        }
        _ => None,
    };
    let verifier: Arc<dyn ServerCertVerifier> = match roots {
        None => Arc::new(SignaturesOnly {
            provider: Arc::clone(&provider),
        }),
        Some(roots) => {
            let webpki =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                    .build()
                    .map_err(|e| tls_error(cfg, e.to_string()))?;
            if cfg.ssl_mode == SslMode::VerifyFull {
                webpki
            } else {
                Arc::new(ChainOnly { webpki })
            }
        }
    };
    let config = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Some(Arc::new(config)))
}

/// The name the certificate is checked against (and sent as SNI for host names).
pub(crate) fn server_name(cfg: &ConnectConfig) -> Result<ServerName<'static>, Error> {
    let host = match &cfg.host {
        Host::Tcp(h) => h.clone(),
        Host::Unix(_) => "localhost".to_owned(),
    };
    ServerName::try_from(host.clone())
        .map_err(|_| tls_error(cfg, format!("\"{host}\" is not a valid TLS server name")))
}

/// Explains a failed handshake in terms a user can act on.
pub(crate) fn describe_handshake_error(cfg: &ConnectConfig, err: &std::io::Error) -> Error {
    let inner = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>());
    let reason = match inner {
        // BadSignature: an issuer with the right name but another key (a different CA that
        // happens to share the name of a trusted one) — to the user, still an untrusted CA.
        Some(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature,
        )) => format!(
            "the server's certificate is not signed by a CA in sslrootcert ({}); check \
             sslrootcert or the server's ssl_cert_file",
            root_source(cfg)
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "none".into())
        ),
        Some(rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        )) => format!(
            "the server's certificate is not valid for the host name \"{}\" (sslmode=verify-full \
             checks it); connect using a name the certificate lists, or use sslmode=verify-ca",
            cfg.host
        ),
        Some(rustls::Error::InvalidCertificate(e)) => {
            format!("the server's certificate was refused: {e:?}")
        }
        Some(e) => e.to_string(),
        None => err.to_string(),
    };
    tls_error(cfg, reason)
}

/// The `tls-server-end-point` channel-binding data of RFC 5929: a hash of the server's
/// certificate, with the certificate's own signature hash (SHA-256 for MD5 and SHA-1).
/// `None` when the signature algorithm has no single hash (Ed25519, RSA-PSS) — then pgrepl does
/// not offer channel binding, as PostgreSQL cannot do it either for such certificates.
pub(crate) fn tls_server_end_point(cert: &[u8]) -> Option<Vec<u8>> {
    let oid = signature_algorithm_oid(cert)?;
    const SHA256_FAMILY: &[&[u8]] = &[
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x04], // md5WithRSAEncryption
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05], // sha1WithRSAEncryption
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b], // sha256WithRSAEncryption
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01],             // ecdsa-with-SHA1
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02],       // ecdsa-with-SHA256
    ];
    const SHA384: &[&[u8]] = &[
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c],
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03],
    ];
    const SHA512: &[&[u8]] = &[
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d],
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04],
    ];
    if SHA256_FAMILY.contains(&oid) {
        Some(sha2::Sha256::digest(cert).to_vec())
    } else if SHA384.contains(&oid) {
        Some(sha2::Sha384::digest(cert).to_vec())
    } else if SHA512.contains(&oid) {
        Some(sha2::Sha512::digest(cert).to_vec())
    } else {
        None
    }
}

/// Reads one DER TLV header at `pos`: (tag, start of contents, end of contents).
fn der_tlv(der: &[u8], pos: usize) -> Option<(u8, usize, usize)> {
    let tag = *der.get(pos)?;
    let first = *der.get(pos.checked_add(1)?)?;
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2usize)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | usize::from(*der.get(pos.checked_add(2)?.checked_add(i)?)?);
        }
        (len, n.checked_add(2)?)
    };
    let start = pos.checked_add(header)?;
    let end = start.checked_add(len)?;
    (end <= der.len()).then_some((tag, start, end))
}

/// The OID bytes of a certificate's outer `signatureAlgorithm`.
fn signature_algorithm_oid(cert: &[u8]) -> Option<&[u8]> {
    let (tag, start, _) = der_tlv(cert, 0)?; // Certificate ::= SEQUENCE
    if tag != 0x30 {
        return None;
    }
    let (_, _, tbs_end) = der_tlv(cert, start)?; // tbsCertificate
    let (tag, alg_start, _) = der_tlv(cert, tbs_end)?; // signatureAlgorithm ::= SEQUENCE
    if tag != 0x30 {
        return None;
    }
    let (tag, oid_start, oid_end) = der_tlv(cert, alg_start)?;
    (tag == 0x06).then(|| cert.get(oid_start..oid_end))?
}

/// `sslmode=prefer/require` without roots: the certificate is not checked, the handshake
/// signatures are.
#[derive(Debug)]
struct SignaturesOnly {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for SignaturesOnly {
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
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// `sslmode=verify-ca`: the chain must lead to a trusted root; the name is not checked.
#[derive(Debug)]
struct ChainOnly {
    webpki: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
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
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_walk_is_total() {
        for len in 0..64 {
            let junk: Vec<u8> = (0..len).map(|i| (i * 37 % 251) as u8).collect();
            let _ = signature_algorithm_oid(&junk);
            let _ = tls_server_end_point(&junk);
        }
        // SEQUENCE { SEQUENCE {} , SEQUENCE { OID 1.2.840.10045.4.3.2 } }
        let cert = [
            0x30, 0x0e, 0x30, 0x00, 0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04,
            0x03, 0x02,
        ];
        assert_eq!(
            signature_algorithm_oid(&cert),
            Some(&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02][..])
        );
        assert_eq!(tls_server_end_point(&cert).map(|h| h.len()), Some(32));
    }

    #[test]
    fn verify_modes_need_roots() {
        let cfg =
            ConnectConfig::parse_with_env("host=h user=u sslmode=verify-full", &|_| None).unwrap();
        if root_source(&cfg).is_none() {
            let err = client_config(&cfg).unwrap_err();
            assert!(err.to_string().contains("sslrootcert"), "{err}");
        }
        let cfg =
            ConnectConfig::parse_with_env("host=h user=u sslmode=disable", &|_| None).unwrap();
        assert!(client_config(&cfg).unwrap().is_none());
        let cfg =
            ConnectConfig::parse_with_env("host=h user=u sslmode=require", &|_| None).unwrap();
        assert!(client_config(&cfg).unwrap().is_some());
    }
}
