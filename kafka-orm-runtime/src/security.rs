//! TLS and SASL: the typed security section of [`KafkaOrmBuilder`], turned into the
//! librdkafka settings every client of the context gets.
//!
//! librdkafka is built with OpenSSL, so these work:
//!
//! | what | how |
//! | --- | --- |
//! | TLS, public CA (clouds) | [`KafkaOrmBuilder::tls_system_roots`] |
//! | TLS, own / self-signed CA | [`KafkaOrmBuilder::tls`] with [`Tls::ca_file`] or [`Tls::ca_pem`] |
//! | SASL `PLAIN` | [`KafkaOrmBuilder::sasl_plain`] (Confluent Cloud: API key and secret) |
//! | SASL `SCRAM-SHA-256` / `SCRAM-SHA-512` | [`KafkaOrmBuilder::sasl_scram`] (MSK, Aiven, self-hosted) |
//! | mutual TLS (client certificates) | raw settings: `.set("ssl.certificate.location", ..)`, `.set("ssl.key.location", ..)` |
//!
//! Not supported: `GSSAPI` (Kerberos; it would need Cyrus SASL and a Kerberos library on
//! every machine), and `OAUTHBEARER` with a real token provider — librdkafka has the
//! mechanism built in, but a token must come from a callback on each client, which
//! kafka-orm does not expose yet, and `sasl.oauthbearer.method=oidc` needs libcurl, which is
//! not built in. Hence no Amazon MSK IAM (port 9098) and no OAuth login to Confluent Cloud:
//! use SCRAM (MSK) or API keys (Confluent) instead.
//!
//! [`KafkaOrmBuilder`]: crate::context::KafkaOrmBuilder
//! [`KafkaOrmBuilder::tls`]: crate::context::KafkaOrmBuilder::tls
//! [`KafkaOrmBuilder::tls_system_roots`]: crate::context::KafkaOrmBuilder::tls_system_roots
//! [`KafkaOrmBuilder::sasl_plain`]: crate::context::KafkaOrmBuilder::sasl_plain
//! [`KafkaOrmBuilder::sasl_scram`]: crate::context::KafkaOrmBuilder::sasl_scram

use std::fmt;
use std::path::PathBuf;

/// How a client checks the broker's certificate: against which certificate authorities.
///
/// The broker's host name is always checked against its certificate
/// (`ssl.endpoint.identification.algorithm=https`); to turn that off for a certificate
/// without the right names, add `.set("ssl.endpoint.identification.algorithm", "none")`
/// (raw settings win over the typed ones).
///
/// ```
/// use kafka_orm_runtime::{KafkaOrm, Tls};
///
/// // Confluent Cloud, Amazon MSK, Aiven's public endpoints...: the system's CA store.
/// let cloud = KafkaOrm::builder().tls(Tls::system_roots());
/// // A self-signed or private CA (Aiven's project CA, your own PKI): its PEM file.
/// let private = KafkaOrm::builder().tls(Tls::ca_file("/etc/kafka/ca.pem"));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Tls {
    roots: Roots,
}

#[derive(Clone, PartialEq, Eq)]
enum Roots {
    System,
    File(PathBuf),
    Pem(String),
}

impl Tls {
    /// Trusts the certificate authorities of the operating system (OpenSSL's default
    /// store: `/etc/ssl/certs` from Debian's `ca-certificates`, honouring `SSL_CERT_FILE`
    /// and `SSL_CERT_DIR`). Right for managed clusters with public certificates:
    /// Confluent Cloud, Amazon MSK, Aiven, Redpanda Cloud.
    pub fn system_roots() -> Self {
        Tls {
            roots: Roots::System,
        }
    }

    /// Trusts only the certificate authorities in this PEM file (`ssl.ca.location`): a
    /// self-signed or private CA, e.g. the `ca.pem` of an Aiven project. `build()` fails
    /// with [`Error::Tls`](crate::Error::Tls) when the file cannot be read.
    pub fn ca_file(path: impl Into<PathBuf>) -> Self {
        Tls {
            roots: Roots::File(path.into()),
        }
    }

    /// Trusts only the certificate authorities in this PEM text (`ssl.ca.pem`), e.g. read
    /// from a secret store or an environment variable rather than a file.
    pub fn ca_pem(pem: impl Into<String>) -> Self {
        Tls {
            roots: Roots::Pem(pem.into()),
        }
    }
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.roots {
            Roots::System => f.write_str("Tls::system_roots()"),
            Roots::File(path) => write!(f, "Tls::ca_file({path:?})"),
            Roots::Pem(pem) => write!(f, "Tls::ca_pem(<{} bytes>)", pem.len()),
        }
    }
}

/// A SCRAM mechanism for [`KafkaOrmBuilder::sasl_scram`](crate::KafkaOrmBuilder::sasl_scram).
///
/// Amazon MSK supports `SCRAM-SHA-512` only; Aiven and Apache Kafka itself both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scram {
    /// `SCRAM-SHA-256`.
    Sha256,
    /// `SCRAM-SHA-512`.
    Sha512,
}

impl Scram {
    /// The mechanism's name as Kafka spells it (`SCRAM-SHA-256`, `SCRAM-SHA-512`).
    pub fn mechanism(self) -> &'static str {
        match self {
            Scram::Sha256 => "SCRAM-SHA-256",
            Scram::Sha512 => "SCRAM-SHA-512",
        }
    }
}

/// SASL credentials. The password never appears in `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Sasl {
    pub(crate) mechanism: &'static str,
    pub(crate) username: String,
    pub(crate) password: String,
}

impl fmt::Debug for Sasl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sasl")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// The security section of the builder: what `.tls(..)` and `.sasl_*(..)` asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Security {
    pub(crate) tls: Option<Tls>,
    pub(crate) sasl: Option<Sasl>,
}

impl Security {
    /// Whether anything was asked for (the embedded broker speaks plaintext only).
    pub(crate) fn is_set(&self) -> bool {
        self.tls.is_some() || self.sasl.is_some()
    }

    /// The librdkafka settings for every client. SASL without `.tls(..)` runs over TLS
    /// with the system's CAs: a password never crosses the network in the clear unless
    /// `security.protocol=SASL_PLAINTEXT` is set by hand.
    pub(crate) fn settings(&self) -> Vec<(&'static str, String)> {
        if !self.is_set() {
            return Vec::new();
        }
        let protocol = if self.sasl.is_some() {
            "SASL_SSL"
        } else {
            "SSL"
        };
        let mut out = vec![("security.protocol", protocol.to_string())];
        match self.tls.as_ref().map(|t| &t.roots) {
            None | Some(Roots::System) => {}
            Some(Roots::File(path)) => {
                out.push(("ssl.ca.location", path.to_string_lossy().into_owned()))
            }
            Some(Roots::Pem(pem)) => out.push(("ssl.ca.pem", pem.clone())),
        }
        out.push(("ssl.endpoint.identification.algorithm", "https".into()));
        if let Some(sasl) = &self.sasl {
            out.push(("sasl.mechanism", sasl.mechanism.into()));
            out.push(("sasl.username", sasl.username.clone()));
            out.push(("sasl.password", sasl.password.clone()));
        }
        out
    }

    /// Checks what can be checked before connecting: the CA file is readable.
    pub(crate) fn check(&self) -> Result<(), String> {
        if let Some(Tls {
            roots: Roots::File(path),
        }) = &self.tls
        {
            std::fs::File::open(path)
                .map_err(|e| format!("the CA file `{}` cannot be read: {e}", path.display()))?;
        }
        Ok(())
    }
}

/// Whether a librdkafka setting holds a secret (kept out of `Debug` output).
pub(crate) fn is_secret(key: &str) -> bool {
    key.contains("password") || key.contains("secret") || key.ends_with(".pem")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sasl(mechanism: &'static str) -> Sasl {
        Sasl {
            mechanism,
            username: "alice".into(),
            password: "s3cret".into(),
        }
    }

    #[test]
    fn librdkafka_is_built_with_tls_and_sasl() {
        let native = rdkafka::ClientConfig::new().create_native_config().unwrap();
        let features = native.get("builtin.features").unwrap();
        eprintln!("librdkafka builtin.features: {features}");
        for f in ["ssl", "sasl_plain", "sasl_scram", "sasl_oauthbearer"] {
            assert!(
                features.split(',').any(|x| x == f),
                "no `{f}` in {features}"
            );
        }
    }

    #[test]
    fn nothing_asked_nothing_set() {
        assert!(Security::default().settings().is_empty());
    }

    #[test]
    fn tls_alone_is_ssl_with_the_ca_and_hostname_check() {
        let s = Security {
            tls: Some(Tls::ca_file("/ca.pem")),
            sasl: None,
        };
        assert_eq!(
            s.settings(),
            vec![
                ("security.protocol", "SSL".to_string()),
                ("ssl.ca.location", "/ca.pem".into()),
                ("ssl.endpoint.identification.algorithm", "https".into()),
            ]
        );
        let pem = Security {
            tls: Some(Tls::ca_pem("-----BEGIN CERTIFICATE-----")),
            sasl: None,
        };
        assert!(
            pem.settings()
                .contains(&("ssl.ca.pem", "-----BEGIN CERTIFICATE-----".into()))
        );
    }

    #[test]
    fn sasl_without_tls_still_runs_over_tls_with_system_roots() {
        let s = Security {
            tls: None,
            sasl: Some(sasl("PLAIN")),
        };
        assert_eq!(
            s.settings(),
            vec![
                ("security.protocol", "SASL_SSL".to_string()),
                ("ssl.endpoint.identification.algorithm", "https".into()),
                ("sasl.mechanism", "PLAIN".into()),
                ("sasl.username", "alice".into()),
                ("sasl.password", "s3cret".into()),
            ]
        );
    }

    #[test]
    fn scram_names() {
        assert_eq!(Scram::Sha256.mechanism(), "SCRAM-SHA-256");
        assert_eq!(Scram::Sha512.mechanism(), "SCRAM-SHA-512");
    }

    #[test]
    fn debug_never_shows_the_password_or_the_pem() {
        let s = Security {
            tls: Some(Tls::ca_pem("PEM-CONTENT")),
            sasl: Some(sasl("SCRAM-SHA-256")),
        };
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("PEM-CONTENT"),
            "{shown}"
        );
        assert!(shown.contains("alice"), "{shown}");
        assert!(is_secret("sasl.password") && is_secret("ssl.ca.pem"));
        assert!(!is_secret("sasl.username"));
    }

    #[test]
    fn a_missing_ca_file_is_reported_before_connecting() {
        let s = Security {
            tls: Some(Tls::ca_file("/nonexistent/kafka-orm-ca.pem")),
            sasl: None,
        };
        let err = s.check().unwrap_err();
        assert!(err.contains("/nonexistent/kafka-orm-ca.pem"), "{err}");
    }
}
