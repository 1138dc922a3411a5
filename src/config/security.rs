//! How bigpipe authenticates to Kafka and protects the connection: the `kafka.security.protocol`,
//! `kafka.sasl.*` and `kafka.ssl.*` keys, named as in librdkafka and the Java client so a
//! managed service's "client properties" page can be copied over.
//!
//! Files (`ssl.*.location`) are read and parsed here, when the config loads, so that
//! check-config reports an unreadable or malformed PEM file instead of the first connection.

use std::fmt;
use std::path::{Path, PathBuf};

use figment::value::{Dict, Value};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use super::reader::{Checker, lookup};
use super::secret::{self, Secret};
use super::source::env_var_name;

/// The keys read here, for the validator's list of known keys.
pub(crate) const SECURITY_KEYS: &[&str] = &[
    "kafka.security.protocol",
    "kafka.sasl.mechanism",
    "kafka.sasl.username",
    "kafka.sasl.password",
    "kafka.sasl.password.file",
    "kafka.ssl.ca.location",
    "kafka.ssl.certificate.location",
    "kafka.ssl.key.location",
    "kafka.ssl.endpoint.identification.hostname",
];

/// `kafka.security.protocol`: Kafka's four listener kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityProtocol {
    /// No TLS, no authentication (the default).
    Plaintext,
    /// TLS; a client certificate when `ssl.certificate.location` is set (mTLS).
    Ssl,
    /// SASL authentication over plain TCP.
    SaslPlaintext,
    /// SASL authentication over TLS.
    SaslSsl,
}

impl SecurityProtocol {
    /// Whether connections use TLS.
    pub fn tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }

    /// Whether connections authenticate with SASL.
    pub fn sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
}

/// `kafka.sasl.mechanism`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslMechanism {
    /// `PLAIN` (RFC 4616): the password crosses the wire; use it over TLS only.
    Plain,
    /// `SCRAM-SHA-256` (RFC 7677).
    ScramSha256,
    /// `SCRAM-SHA-512`.
    ScramSha512,
}

impl SaslMechanism {
    /// The name Kafka uses in SaslHandshake.
    pub fn name(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// SASL credentials (`kafka.sasl.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslSettings {
    /// The mechanism.
    pub mechanism: SaslMechanism,
    /// `kafka.sasl.username`.
    pub username: String,
    /// `kafka.sasl.password` (a value or `${ENV}`) or `kafka.sasl.password.file`; never printed.
    pub password: Secret,
}

/// A PEM file as read when the config was loaded. `Debug` shows the path and size only: a
/// key file's content is a secret.
#[derive(Clone, PartialEq, Eq)]
pub struct PemFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// Its contents, checked to hold what the key needs.
    pub pem: Vec<u8>,
}

impl fmt::Debug for PemFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PemFile")
            .field("path", &self.path)
            .field("bytes", &self.pem.len())
            .finish()
    }
}

/// TLS towards the brokers (`kafka.ssl.*`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KafkaTlsSettings {
    /// Trust these CA certificates instead of the built-in (Mozilla) roots
    /// (`kafka.ssl.ca.location`).
    pub ca: Option<PemFile>,
    /// Client certificate chain for mTLS (`kafka.ssl.certificate.location`).
    pub certificate: Option<PemFile>,
    /// Private key of the client certificate (`kafka.ssl.key.location`).
    pub key: Option<PemFile>,
    /// Verify every broker's certificate against this name instead of the host it is reached
    /// at (`kafka.ssl.endpoint.identification.hostname`).
    pub server_name: Option<String>,
}

/// Everything about how connections to Kafka are secured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSecurity {
    /// `kafka.security.protocol`.
    pub protocol: SecurityProtocol,
    /// Present exactly when the protocol is `SASL_*`.
    pub sasl: Option<SaslSettings>,
    /// Present exactly when the protocol is `SSL` or `SASL_SSL`.
    pub tls: Option<KafkaTlsSettings>,
}

impl Default for KafkaSecurity {
    fn default() -> Self {
        Self {
            protocol: SecurityProtocol::Plaintext,
            sasl: None,
            tls: None,
        }
    }
}

const PROTOCOLS: &[(&str, SecurityProtocol)] = &[
    ("PLAINTEXT", SecurityProtocol::Plaintext),
    ("SSL", SecurityProtocol::Ssl),
    ("SASL_PLAINTEXT", SecurityProtocol::SaslPlaintext),
    ("SASL_SSL", SecurityProtocol::SaslSsl),
];

const MECHANISMS: &[(&str, SaslMechanism)] = &[
    ("PLAIN", SaslMechanism::Plain),
    ("SCRAM-SHA-256", SaslMechanism::ScramSha256),
    ("SCRAM-SHA-512", SaslMechanism::ScramSha512),
];

/// Reads the security keys. Keys that the protocol does not use are warned about (a `sasl.*`
/// key with `SSL` is likely a forgotten protocol change), not refused.
pub(crate) fn kafka_security(c: &mut Checker<'_>, root: &Dict) -> KafkaSecurity {
    let protocol = c.setting(
        root,
        "kafka.security.protocol",
        SecurityProtocol::Plaintext,
        |c, key, v| c.choice(key, v, PROTOCOLS),
    );
    let sasl = if protocol.sasl() {
        sasl(c, root)
    } else {
        unused(c, root, &SECURITY_KEYS[1..5], "SASL_PLAINTEXT or SASL_SSL");
        None
    };
    let tls = if protocol.tls() {
        Some(tls(c, root))
    } else {
        unused(c, root, &SECURITY_KEYS[5..], "SSL or SASL_SSL");
        None
    };
    KafkaSecurity { protocol, sasl, tls }
}

fn unused(c: &mut Checker<'_>, root: &Dict, keys: &[&str], needs: &str) {
    for key in keys {
        if let Some(value) = lookup(root, key).filter(|v| !matches!(v, Value::Dict(..))) {
            c.warn(
                key,
                Some(value),
                format!("{key} is ignored: kafka.security.protocol is not {needs}"),
            );
        }
    }
}

fn sasl(c: &mut Checker<'_>, root: &Dict) -> Option<SaslSettings> {
    let needed = "required when kafka.security.protocol is SASL_PLAINTEXT or SASL_SSL";
    let mechanism = match lookup(root, "kafka.sasl.mechanism") {
        Some(v) => c.choice("kafka.sasl.mechanism", v, MECHANISMS),
        None => {
            c.problem(
                "kafka.sasl.mechanism",
                None,
                format!("{needed} (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)"),
            );
            None
        }
    };
    let username = match lookup(root, "kafka.sasl.username") {
        Some(v) => raw_string(c, "kafka.sasl.username", v).and_then(|u| {
            if u.is_empty() {
                c.problem("kafka.sasl.username", Some(v), "must not be empty");
                None
            } else {
                Some(u)
            }
        }),
        None => {
            c.problem("kafka.sasl.username", None, needed);
            None
        }
    };
    let password = c.redacted(|c| password(c, root, needed));
    Some(SaslSettings {
        mechanism: mechanism?,
        username: username?,
        password: password?,
    })
}

/// `kafka.sasl.password` (a value, or `${NAME}` naming another variable) or
/// `kafka.sasl.password.file`, exactly one.
fn password(c: &mut Checker<'_>, root: &Dict, needed: &str) -> Option<Secret> {
    const KEY: &str = "kafka.sasl.password";
    const FILE_KEY: &str = "kafka.sasl.password.file";
    let (resolved, key, value) = match lookup(root, KEY) {
        None => {
            c.problem(
                KEY,
                None,
                format!("{needed} (or set {FILE_KEY} to a file holding it)"),
            );
            return None;
        }
        Some(Value::Dict(_, table)) => {
            let Some(value) = table.get("file") else {
                c.problem(
                    KEY,
                    None,
                    format!("{needed} (or set {FILE_KEY} to a file holding it)"),
                );
                return None;
            };
            let path = c.non_empty_string(FILE_KEY, value)?;
            (secret::from_file(Path::new(&path)), FILE_KEY, value)
        }
        Some(value) => {
            let raw = raw_string(c, KEY, value)?;
            if raw.is_empty() {
                c.problem(KEY, Some(value), "must not be empty");
                return None;
            }
            (secret::from_value(&raw, c.vars()), KEY, value)
        }
    };
    match resolved {
        Ok(secret) => Some(secret),
        Err(e) => {
            c.problem(key, Some(value), e.to_string());
            None
        }
    }
}

/// A string value; from the environment, the variable's text exactly as set (figment would
/// read `BIGPIPE_KAFKA_SASL_PASSWORD=0042` as the number 42).
fn raw_string(c: &mut Checker<'_>, key: &str, value: &Value) -> Option<String> {
    if c.is_from_env(value)
        && let Some(raw) = c.vars().get(&env_var_name(key))
    {
        return Some(raw.clone());
    }
    c.string(key, value)
}

fn tls(c: &mut Checker<'_>, root: &Dict) -> KafkaTlsSettings {
    let ca = c.setting(root, "kafka.ssl.ca.location", None, |c, key, v| {
        pem_file(c, key, v, certificates).map(Some)
    });
    let certificate = c.setting(root, "kafka.ssl.certificate.location", None, |c, key, v| {
        pem_file(c, key, v, certificates).map(Some)
    });
    let key = c.setting(root, "kafka.ssl.key.location", None, |c, key, v| {
        pem_file(c, key, v, private_key).map(Some)
    });
    // Pairing is checked against what is set, so an invalid file gets one problem, not two.
    let cert_set = lookup(root, "kafka.ssl.certificate.location").is_some();
    let key_set = lookup(root, "kafka.ssl.key.location").is_some();
    match (cert_set, key_set) {
        (true, false) => c.problem(
            "kafka.ssl.key.location",
            None,
            "required when kafka.ssl.certificate.location is set (the certificate's private key)",
        ),
        (false, true) => c.problem(
            "kafka.ssl.certificate.location",
            None,
            "required when kafka.ssl.key.location is set (the key's certificate)",
        ),
        _ => {}
    }
    let server_name = c.setting(
        root,
        "kafka.ssl.endpoint.identification.hostname",
        None,
        |c, key, v| {
            let name = c.non_empty_string(key, v)?;
            match ServerName::try_from(name.as_str()) {
                Ok(_) => Some(Some(name)),
                Err(_) => {
                    c.problem(key, Some(v), format!("'{name}' is not a DNS name or IP address"));
                    None
                }
            }
        },
    );
    KafkaTlsSettings {
        ca,
        certificate,
        key,
        server_name,
    }
}

/// Reads the file named by `key` and checks it with `check` (which says what is wrong).
fn pem_file(
    c: &mut Checker<'_>,
    key: &str,
    value: &Value,
    check: fn(&[u8]) -> Result<(), String>,
) -> Option<PemFile> {
    let path = c.non_empty_string(key, value)?;
    let pem = match std::fs::read(&path) {
        Ok(pem) => pem,
        Err(e) => {
            c.problem(key, Some(value), format!("cannot read '{path}': {e}"));
            return None;
        }
    };
    if let Err(why) = check(&pem) {
        c.problem(key, Some(value), format!("'{path}' {why}"));
        return None;
    }
    Some(PemFile {
        path: path.into(),
        pem,
    })
}

/// At least one certificate, and every certificate section well-formed.
pub(crate) fn certificates(pem: &[u8]) -> Result<(), String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("is not a valid PEM certificate file: {e}"))?;
    if certs.is_empty() {
        return Err("holds no PEM certificate (-----BEGIN CERTIFICATE-----)".to_owned());
    }
    Ok(())
}

/// One unencrypted private key (PKCS#8, PKCS#1 RSA or SEC1 EC).
pub(crate) fn private_key(pem: &[u8]) -> Result<(), String> {
    if pem
        .windows(b"ENCRYPTED PRIVATE KEY".len())
        .any(|w| w == b"ENCRYPTED PRIVATE KEY")
    {
        return Err(
            "holds an encrypted private key, which bigpipe cannot use; decrypt it with \
                    `openssl pkcs8 -in key.pem -out plain.pem` and protect the file instead"
                .to_owned(),
        );
    }
    match PrivateKeyDer::from_pem_slice(pem) {
        Ok(_) => Ok(()),
        Err(rustls::pki_types::pem::Error::NoItemsFound) => Err(
            "holds no PEM private key (-----BEGIN PRIVATE KEY-----, RSA PRIVATE KEY or EC PRIVATE KEY)"
                .to_owned(),
        ),
        Err(e) => Err(format!("is not a valid PEM private key file: {e}")),
    }
}
