//! Throw-away certificates for TLS tests, made with the `openssl` command-line tool.
//!
//! [`TestCa::generate`] makes a CA; [`TestCa::server_files`] a server certificate it signed,
//! valid for `localhost` and `127.0.0.1` (so `sslmode=verify-full` works against a cluster),
//! or for other names with [`TestCa::server_files_for`],
//! packed as the [`SslFiles`] a [`ClusterBuilder::ssl`](crate::ClusterBuilder::ssl) takes;
//! [`TestCa::client_cert`] a client certificate for `cert` authentication. Keys are EC P-256:
//! quick to make.

use std::path::Path;

use crate::cluster::SslFiles;
use crate::error::{Error, Result};
use crate::fsutil;
use crate::process;

/// A throw-away certificate authority.
#[derive(Debug, Clone)]
pub struct TestCa {
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
}

/// A certificate and its private key, both PEM.
#[derive(Debug, Clone)]
pub struct CertifiedKey {
    /// The certificate.
    pub cert_pem: Vec<u8>,
    /// Its private key (unencrypted).
    pub key_pem: Vec<u8>,
}

impl TestCa {
    /// Makes a CA named `pgrepl test CA`, valid for ten years.
    ///
    /// # Errors
    /// When `openssl` is missing (install Debian's `openssl`) or fails.
    pub fn generate() -> Result<TestCa> {
        with_work_dir(|dir| {
            openssl(
                &[
                    "req",
                    "-x509",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:prime256v1",
                    "-nodes",
                    "-days",
                    "3650",
                    "-subj",
                    "/CN=pgrepl test CA",
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign,cRLSign",
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.crt",
                ],
                dir,
            )?;
            Ok(TestCa {
                cert_pem: read(dir, "ca.crt")?,
                key_pem: read(dir, "ca.key")?,
            })
        })
    }

    /// The CA certificate (PEM): what a client passes as `sslrootcert`.
    pub fn cert_pem(&self) -> &[u8] {
        &self.cert_pem
    }

    /// A server certificate for `localhost` and `127.0.0.1`, signed by this CA, with this CA
    /// as `ssl_ca_file` (so the server also verifies client certificates against it).
    ///
    /// # Errors
    /// When `openssl` fails.
    pub fn server_files(&self) -> Result<SslFiles> {
        self.server_files_for(&["localhost", "127.0.0.1"])
    }

    /// A server certificate valid only for `names` (DNS names or IP addresses; the first is
    /// also the common name), signed by this CA, with this CA as `ssl_ca_file`. Tests of
    /// `sslmode=verify-full` use it to serve a certificate for a name the client does not
    /// connect to.
    ///
    /// # Errors
    /// When `openssl` fails.
    pub fn server_files_for(&self, names: &[&str]) -> Result<SslFiles> {
        let alt_names: Vec<String> = names
            .iter()
            .map(|n| match n.parse::<std::net::IpAddr>() {
                Ok(_) => format!("IP:{n}"),
                Err(_) => format!("DNS:{n}"),
            })
            .collect();
        let server = self.sign(
            names.first().copied().unwrap_or("localhost"),
            &format!(
                "subjectAltName={}\nextendedKeyUsage=serverAuth\n",
                alt_names.join(",")
            ),
        )?;
        Ok(SslFiles {
            cert_pem: server.cert_pem,
            key_pem: server.key_pem,
            ca_pem: Some(self.cert_pem.clone()),
        })
    }

    /// A client certificate with common name `user` (the database user it authenticates as
    /// under `cert` authentication), signed by this CA.
    ///
    /// # Errors
    /// When `openssl` fails.
    pub fn client_cert(&self, user: &str) -> Result<CertifiedKey> {
        self.sign(user, "extendedKeyUsage=clientAuth\n")
    }

    fn sign(&self, common_name: &str, extensions: &str) -> Result<CertifiedKey> {
        with_work_dir(|dir| {
            fsutil::write_file(&dir.join("ca.crt"), &self.cert_pem, 0o600, None)?;
            fsutil::write_file(&dir.join("ca.key"), &self.key_pem, 0o600, None)?;
            let extensions = format!(
                "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n{extensions}"
            );
            fsutil::write_file(&dir.join("ext.cnf"), extensions.as_bytes(), 0o600, None)?;
            let subject = format!("/CN={common_name}");
            openssl(
                &[
                    "req",
                    "-new",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:prime256v1",
                    "-nodes",
                    "-subj",
                    &subject,
                    "-keyout",
                    "leaf.key",
                    "-out",
                    "leaf.csr",
                ],
                dir,
            )?;
            openssl(
                &[
                    "x509",
                    "-req",
                    "-in",
                    "leaf.csr",
                    "-CA",
                    "ca.crt",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-days",
                    "3650",
                    "-extfile",
                    "ext.cnf",
                    "-out",
                    "leaf.crt",
                ],
                dir,
            )?;
            Ok(CertifiedKey {
                cert_pem: read(dir, "leaf.crt")?,
                key_pem: read(dir, "leaf.key")?,
            })
        })
    }
}

fn with_work_dir<T>(work: impl FnOnce(&Path) -> Result<T>) -> Result<T> {
    let dir = fsutil::base_dir().join(format!("pgrepl-tls-{}", fsutil::unique_suffix()));
    fsutil::create_dir(&dir, 0o700, None)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let result = work(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn openssl(args: &[&str], dir: &Path) -> Result<()> {
    let mut cmd = process::clean_command("openssl");
    cmd.args(args).current_dir(dir);
    process::run(&mut cmd, None).map(drop)
}

fn read(dir: &Path, name: &str) -> Result<Vec<u8>> {
    let path = dir.join(name);
    std::fs::read(&path).map_err(|e| Error::io(format!("reading {}", path.display()), e))
}
