//! Authentication during start-up (PostgreSQL documentation, "Authentication Methods" and
//! "SASL Authentication"): trust, cleartext password, MD5 and SCRAM-SHA-256, with channel
//! binding (`SCRAM-SHA-256-PLUS`, `tls-server-end-point`) over TLS when the server offers it.
//!
//! The SCRAM state machine is postgres-protocol's; it caps the iteration count a server may
//! ask for, so a hostile server cannot make the client spin. The password is used to compute
//! the proofs and is never logged or put into an error.

use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{
    ChannelBinding, SCRAM_SHA_256, SCRAM_SHA_256_PLUS, ScramSha256,
};
use postgres_protocol::message::frontend;

use super::backend::{AuthRequest, BackendMessage};
use super::config::{ChannelBindingMode, ConnectConfig};
use super::error::{Error, Result};
use super::{Connection, tls};

fn auth_error(cfg: &ConnectConfig, reason: impl Into<String>) -> Error {
    Error::Auth {
        endpoint: cfg.endpoint(),
        user: cfg.user.clone(),
        reason: reason.into(),
    }
}

fn password<'a>(cfg: &'a ConnectConfig, method: &str) -> Result<&'a str> {
    cfg.password.as_deref().ok_or_else(|| {
        auth_error(
            cfg,
            format!(
                "the server asks for a password ({method}) and none was given; set password= \
                 in the DSN, PGPASSWORD, or an entry in the pgpass file"
            ),
        )
    })
}

fn refuse_without_binding(cfg: &ConnectConfig, method: &str) -> Result<()> {
    if cfg.channel_binding == ChannelBindingMode::Require {
        return Err(auth_error(
            cfg,
            format!(
                "channel_binding=require, but the server asked for {method}, which cannot be \
                 bound to the TLS channel; configure scram-sha-256 and TLS on the server"
            ),
        ));
    }
    Ok(())
}

/// Runs the authentication exchange until the server says AuthenticationOk.
pub(crate) async fn authenticate(conn: &mut Connection, cfg: &ConnectConfig) -> Result<()> {
    let mut channel_bound = false;
    loop {
        let msg = conn.recv().await?;
        let req = match msg {
            BackendMessage::Authentication(req) => req,
            BackendMessage::ErrorResponse(fields) => return Err(conn.db_error(fields)),
            BackendMessage::NegotiateProtocolVersion { .. } => continue,
            other => return Err(conn.unexpected(&other, "during authentication")),
        };
        match req {
            AuthRequest::Ok => {
                if cfg.channel_binding == ChannelBindingMode::Require && !channel_bound {
                    return Err(auth_error(
                        cfg,
                        "channel_binding=require, but the server accepted the connection \
                         without SCRAM channel binding",
                    ));
                }
                return Ok(());
            }
            AuthRequest::CleartextPassword => {
                refuse_without_binding(cfg, "a cleartext password")?;
                let pw = password(cfg, "password")?;
                frontend::password_message(pw.as_bytes(), conn.write_buffer())
                    .map_err(|_| auth_error(cfg, "the password contains a NUL byte"))?;
                conn.flush().await?;
            }
            AuthRequest::Md5Password { salt } => {
                refuse_without_binding(cfg, "an MD5 password")?;
                let pw = password(cfg, "md5")?;
                let hash = md5_hash(cfg.user.as_bytes(), pw.as_bytes(), salt);
                frontend::password_message(hash.as_bytes(), conn.write_buffer())
                    .map_err(|_| auth_error(cfg, "the user name contains a NUL byte"))?;
                conn.flush().await?;
            }
            AuthRequest::Sasl { mechanisms } => {
                channel_bound = scram(conn, cfg, &mechanisms).await?;
            }
            AuthRequest::SaslContinue(_) | AuthRequest::SaslFinal(_) => {
                return Err(auth_error(
                    cfg,
                    "the server sent a SASL message outside a SASL exchange",
                ));
            }
            AuthRequest::Unsupported(code) => {
                return Err(auth_error(
                    cfg,
                    format!(
                        "the server asks for an authentication method pgrepl does not support \
                         (code {code}: Kerberos, GSSAPI or SSPI); use scram-sha-256 in pg_hba.conf"
                    ),
                ));
            }
        }
    }
}

/// A SCRAM-SHA-256 exchange; returns whether it was bound to the TLS channel.
async fn scram(conn: &mut Connection, cfg: &ConnectConfig, mechanisms: &[String]) -> Result<bool> {
    let offers = |m: &str| mechanisms.iter().any(|x| x == m);
    let binding_data = if cfg.channel_binding == ChannelBindingMode::Disable {
        None
    } else {
        conn.peer_certificate().and_then(tls::tls_server_end_point)
    };
    let (mechanism, binding, bound) = match binding_data {
        Some(data) if offers(SCRAM_SHA_256_PLUS) => (
            SCRAM_SHA_256_PLUS,
            ChannelBinding::tls_server_end_point(data),
            true,
        ),
        _ if cfg.channel_binding == ChannelBindingMode::Require => {
            return Err(auth_error(
                cfg,
                "channel_binding=require, but channel binding is not possible here (it needs \
                 TLS, a certificate hashed with SHA-2 and a server offering SCRAM-SHA-256-PLUS)",
            ));
        }
        // We could bind but the server does not offer it: say so ("y"), so that a server that
        // does support it detects a downgrade.
        Some(_) if offers(SCRAM_SHA_256) => (SCRAM_SHA_256, ChannelBinding::unrequested(), false),
        _ if offers(SCRAM_SHA_256) => (SCRAM_SHA_256, ChannelBinding::unsupported(), false),
        _ => {
            return Err(auth_error(
                cfg,
                format!(
                    "the server offers only SASL mechanisms pgrepl does not support: {}",
                    mechanisms.join(", ")
                ),
            ));
        }
    };
    let pw = password(cfg, "scram-sha-256")?;
    let mut scram = ScramSha256::new(pw.as_bytes(), binding);
    frontend::sasl_initial_response(mechanism, scram.message(), conn.write_buffer())
        .map_err(|e| auth_error(cfg, format!("SASL initial response: {e}")))?;
    conn.flush().await?;
    let challenge = match conn.recv().await? {
        BackendMessage::Authentication(AuthRequest::SaslContinue(data)) => data,
        BackendMessage::ErrorResponse(fields) => return Err(conn.db_error(fields)),
        other => return Err(conn.unexpected(&other, "instead of the SCRAM challenge")),
    };
    scram
        .update(&challenge)
        .map_err(|e| auth_error(cfg, format!("the server's SCRAM challenge is invalid: {e}")))?;
    frontend::sasl_response(scram.message(), conn.write_buffer())
        .map_err(|e| auth_error(cfg, format!("SASL response: {e}")))?;
    conn.flush().await?;
    let outcome = match conn.recv().await? {
        BackendMessage::Authentication(AuthRequest::SaslFinal(data)) => data,
        BackendMessage::ErrorResponse(fields) => return Err(conn.db_error(fields)),
        other => return Err(conn.unexpected(&other, "instead of the SCRAM outcome")),
    };
    scram.finish(&outcome).map_err(|e| {
        auth_error(
            cfg,
            format!("the server could not prove it knows the password (SCRAM): {e}"),
        )
    })?;
    Ok(bound)
}
