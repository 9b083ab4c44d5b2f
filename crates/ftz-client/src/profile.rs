//! Connecting to a node as one of its zone's users (ftzctl, tests): a client profile names the
//! node, its zone, the zone CA, and the user's certificate and key. Also the channel a node
//! itself opens to another zone's node.

use std::{path::PathBuf, sync::Arc, time::Duration};

use ftz_core::{Clock, SystemClock, ZoneId};
use ftz_pki::files::{self, FileError};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use tonic::transport::{Channel, Endpoint};

use crate::tls::{self, ExpectedServer, TlsConnector};

/// A user's connection settings, usually a small TOML file (`ftzctl --as FILE`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientProfile {
    /// The zone of the node (and of the user).
    pub zone: String,
    /// The node's address, "host:port".
    pub endpoint: String,
    /// The zone CA certificate (PEM) the node's certificate must chain to.
    pub ca: PathBuf,
    /// The user's certificate (PEM) and private key (PEM, mode 0600).
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot read profile {path}: {detail}")]
    Profile { path: PathBuf, detail: String },
    #[error(transparent)]
    File(#[from] FileError),
    #[error("profile: {0}")]
    Invalid(String),
    /// A file a profile setting names could not be used. `detail` names the file; the error is
    /// not kept as a source, so that a chain printed with `{:#}` says it once.
    #[error("{detail}, named by `{setting} = ...` in the profile")]
    Setting { setting: &'static str, detail: String },
    /// The profile's `key` is not the private key of its `cert` (rustls says only
    /// `InconsistentKeys(KeyMismatch)`).
    #[error(
        "the private key {key} does not belong to the certificate {cert} (`key = ...` and `cert = ...` in the profile): \
         give the key that was issued with that certificate"
    )]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    /// Not `#[from]`: the rustls error is in the message, not also a source printed again.
    #[error("TLS: {0}")]
    Tls(rustls::Error),
}

impl From<rustls::Error> for ClientError {
    fn from(e: rustls::Error) -> Self {
        ClientError::Tls(e)
    }
}

fn setting(setting: &'static str) -> impl FnOnce(FileError) -> ClientError {
    move |e| ClientError::Setting { setting, detail: e.to_string() }
}

impl ClientProfile {
    /// Reads a profile; relative paths are relative to the profile's directory.
    pub fn load(path: &std::path::Path) -> Result<Self, ClientError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ClientError::Profile { path: path.into(), detail: e.to_string() })?;
        let mut p: ClientProfile =
            toml::from_str(&text).map_err(|e| ClientError::Profile { path: path.into(), detail: e.to_string() })?;
        let base = path.parent().unwrap_or(std::path::Path::new("."));
        for f in [&mut p.ca, &mut p.cert, &mut p.key] {
            if f.is_relative() {
                *f = base.join(&*f);
            }
        }
        Ok(p)
    }

    /// A channel to the node; connects on first use. Calls time out after `timeout`.
    pub fn channel(&self, timeout: Duration) -> Result<Channel, ClientError> {
        self.channel_with_clock(timeout, Arc::new(SystemClock))
    }

    pub fn channel_with_clock(&self, timeout: Duration, clock: Arc<dyn Clock>) -> Result<Channel, ClientError> {
        let (expect, chain, key) = self.tls_parts(clock)?;
        channel(&self.endpoint, expect, Some((chain, key)), timeout).map_err(|e| self.named(e))
    }

    /// A key that does not match the certificate, said with the two files.
    fn named(&self, e: ClientError) -> ClientError {
        match e {
            ClientError::Tls(rustls::Error::InconsistentKeys(_)) => {
                ClientError::KeyMismatch { cert: self.cert.clone(), key: self.key.clone() }
            }
            e => e,
        }
    }

    /// A client of the node's JSON API at `http_endpoint` ("host:port"), with the same
    /// certificate and the same pinning of the node's certificate to its zone.
    pub fn https(&self, http_endpoint: &str, clock: Arc<dyn Clock>) -> Result<crate::https::Https, ClientError> {
        let (expect, chain, key) = self.tls_parts(clock)?;
        tls::install_crypto_provider();
        let cfg = tls::client_config(expect, chain, key).map_err(|e| self.named(e.into()))?;
        Ok(crate::https::Https::new(http_endpoint, self.zone.clone(), cfg))
    }

    #[allow(clippy::type_complexity)]
    fn tls_parts(
        &self,
        clock: Arc<dyn Clock>,
    ) -> Result<(ExpectedServer, Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), ClientError> {
        let zone = ZoneId::new(self.zone.clone()).map_err(|e| ClientError::Invalid(e.to_string()))?;
        let ca = files::read_cert_chain(&self.ca).map_err(setting("ca"))?;
        let chain = files::read_cert_chain(&self.cert).map_err(setting("cert"))?;
        let key = files::read_tls_key(&self.key).map_err(setting("key"))?;
        let ca_der =
            ca.first().ok_or_else(|| ClientError::Invalid(format!("{}: no certificate", self.ca.display())))?;
        Ok((ExpectedServer { zone, ca_der: ca_der.to_vec(), clock }, chain, key))
    }
}

/// A channel to the node of `expect.zone` at `endpoint`, presenting `identity` (or no client
/// certificate at all, which nodes refuse: for probes and tests). Connects on first use.
pub fn channel(
    endpoint: &str,
    expect: ExpectedServer,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    timeout: Duration,
) -> Result<Channel, ClientError> {
    tls::install_crypto_provider();
    let zone = expect.zone.clone();
    let cfg = match identity {
        Some((chain, key)) => tls::client_config(expect, chain, key)?,
        None => tls::client_config_without_certificate(expect)?,
    };
    let ep = Endpoint::from_shared(format!("http://{endpoint}"))
        .map_err(|e| ClientError::Invalid(format!("endpoint {endpoint:?}: {e}")))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(timeout)
        .tcp_nodelay(true);
    Ok(ep.connect_with_connector_lazy(TlsConnector::new(cfg, &zone)))
}
