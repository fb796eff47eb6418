//! The connect check of `build()`: does the cluster answer within the connect timeout, and
//! if not, why — a refused password or a failed TLS handshake is said at once and by name,
//! not as a timeout.
//!
//! librdkafka retries a failing connection forever and tells only its error callback why;
//! a metadata request just times out. So the check runs on a short-lived client of its
//! own whose context watches that callback: an authentication or TLS failure ends the
//! wait at once ([`Error::Authentication`], [`Error::Tls`]); anything else (connection
//! refused, name not resolved) keeps waiting for the broker to come up and, at the
//! timeout, becomes [`Error::Unreachable`] with the last reason seen.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::producer::{DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;

use crate::error::{Error, Result};

/// What a librdkafka error says about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Problem {
    /// The broker refused the credentials: waiting does not help.
    Authentication,
    /// TLS failed (untrusted certificate, name mismatch, not a TLS port).
    Tls,
    /// Anything else: the broker may still come up.
    Transient,
}

/// Classifies an error reported to the client's error callback.
pub(crate) fn classify(code: Option<RDKafkaErrorCode>, reason: &str) -> Problem {
    match code {
        Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed) => {
            Problem::Authentication
        }
        Some(RDKafkaErrorCode::SSL) => Problem::Tls,
        // Some handshake failures surface as transport failures; their text says so.
        _ if reason.contains("SSL handshake failed") => Problem::Tls,
        _ if reason.contains("SASL authentication error") => Problem::Authentication,
        _ => Problem::Transient,
    }
}

/// The error callback's reports, shared with the waiting task.
#[derive(Default)]
struct Seen {
    /// The first authentication or TLS failure.
    decisive: Option<(Problem, String)>,
    /// The last report of any kind.
    last: Option<String>,
}

struct ProbeContext {
    seen: Arc<Mutex<Seen>>,
    wake: Arc<tokio::sync::Notify>,
}

impl ClientContext for ProbeContext {
    fn error(&self, error: KafkaError, reason: &str) {
        let problem = classify(error.rdkafka_error_code(), reason);
        tracing::debug!(%error, reason, ?problem, "connect check: librdkafka error");
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        // "1/1 brokers are down" follows each failure; the failure itself says more.
        if error.rdkafka_error_code() != Some(RDKafkaErrorCode::AllBrokersDown)
            || seen.last.is_none()
        {
            seen.last = Some(reason.to_string());
        }
        if problem != Problem::Transient && seen.decisive.is_none() {
            seen.decisive = Some((problem, reason.to_string()));
            self.wake.notify_one();
        }
    }
}

impl ProducerContext for ProbeContext {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &DeliveryResult<'_>, _: ()) {}
}

/// How long the first metadata request of the check may wait; each next one twice as
/// long, up to [`MAX_SLICE`] (a distant cluster's round trip must fit).
const FIRST_SLICE: Duration = Duration::from_millis(250);
const MAX_SLICE: Duration = Duration::from_secs(2);

/// Fetches cluster metadata with `config` within `timeout`; see the module docs.
pub(crate) async fn wait_for_broker(
    config: &ClientConfig,
    bootstrap: &str,
    timeout: Duration,
) -> Result<()> {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let wake = Arc::new(tokio::sync::Notify::new());
    // A threaded producer: its poll thread serves the error callback while the metadata
    // request blocks another thread.
    let probe: ThreadedProducer<ProbeContext> = config
        .create_with_context(ProbeContext {
            seen: Arc::clone(&seen),
            wake: Arc::clone(&wake),
        })
        .map_err(|e| creation_error(bootstrap, "creating the connect check's client", e))?;
    let stop = Arc::clone(&seen);
    let fetch = tokio::task::spawn_blocking(move || {
        // Short requests, so the thread (and the probe, dropped with it) ends soon after a
        // decisive error: a runtime waits for its blocking threads when it shuts down.
        let deadline = Instant::now() + timeout;
        let mut slice = FIRST_SLICE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match probe.client().fetch_metadata(None, left.min(slice)) {
                Ok(m) => return Ok(m.brokers().len()),
                Err(e) => {
                    let decided = stop.lock().is_ok_and(|s| s.decisive.is_some());
                    if decided || Instant::now() >= deadline {
                        return Err(e);
                    }
                    slice = (slice * 2).min(MAX_SLICE);
                }
            }
        }
    });
    let security = security_of(config);
    tokio::select! {
        result = fetch => {
            let result = result.map_err(|_| Error::Shutdown)?;
            let seen = seen.lock().unwrap_or_else(|e| e.into_inner());
            match (result, &seen.decisive) {
                (Ok(n), _) if n > 0 => Ok(()),
                (_, Some((problem, reason))) => Err(decisive(*problem, reason, bootstrap, &security)),
                (Ok(_), None) => Err(Error::Unreachable {
                    bootstrap: bootstrap.to_string(),
                    timeout,
                    reason: "the cluster reported no brokers".into(),
                }),
                (Err(e), None) => Err(Error::Unreachable {
                    bootstrap: bootstrap.to_string(),
                    timeout,
                    reason: match &seen.last {
                        Some(last) => format!("{e}; last error: {last}"),
                        None => e.to_string(),
                    },
                }),
            }
        }
        () = wake.notified() => {
            let seen = seen.lock().unwrap_or_else(|e| e.into_inner());
            let (problem, reason) = seen.decisive.clone().expect("woken with a decisive error");
            Err(decisive(problem, &reason, bootstrap, &security))
        }
    }
}

/// The SASL mechanism and user name of a configuration, for error messages.
fn security_of(config: &ClientConfig) -> (String, Option<String>) {
    let mechanism = config
        .get("sasl.mechanism")
        .or_else(|| config.get("sasl.mechanisms"))
        .unwrap_or("GSSAPI") // librdkafka's default mechanism
        .to_string();
    let username = config.get("sasl.username").map(str::to_string);
    (mechanism, username)
}

fn decisive(
    problem: Problem,
    reason: &str,
    bootstrap: &str,
    (mechanism, username): &(String, Option<String>),
) -> Error {
    match problem {
        Problem::Authentication => Error::Authentication {
            bootstrap: bootstrap.to_string(),
            mechanism: mechanism.clone(),
            username: username.clone(),
            reason: reason.to_string(),
        },
        Problem::Tls | Problem::Transient => Error::Tls {
            bootstrap: bootstrap.to_string(),
            reason: reason.to_string(),
        },
    }
}

/// A client that cannot even be created: a TLS setting librdkafka rejects (an unreadable
/// or malformed CA) is a TLS error, anything else a Kafka error.
pub(crate) fn creation_error(bootstrap: &str, context: &str, e: KafkaError) -> Error {
    match &e {
        KafkaError::ClientCreation(msg) if msg.contains("ssl") || msg.contains("SSL") => {
            Error::Tls {
                bootstrap: bootstrap.to_string(),
                reason: msg.clone(),
            }
        }
        _ => Error::kafka(context, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authentication_and_tls_failures_are_decisive() {
        assert_eq!(
            classify(
                Some(RDKafkaErrorCode::Authentication),
                "127.0.0.1:39094/bootstrap: SASL authentication error: Authentication failed"
            ),
            Problem::Authentication
        );
        assert_eq!(
            classify(Some(RDKafkaErrorCode::SaslAuthenticationFailed), ""),
            Problem::Authentication
        );
        assert_eq!(
            classify(
                Some(RDKafkaErrorCode::SSL),
                "SSL handshake failed: certificate verify failed"
            ),
            Problem::Tls
        );
        assert_eq!(
            classify(
                Some(RDKafkaErrorCode::BrokerTransportFailure),
                "127.0.0.1:39092/bootstrap: SSL handshake failed: Disconnected: connecting to a PLAINTEXT broker listener?"
            ),
            Problem::Tls
        );
    }

    #[test]
    fn connection_failures_are_waited_out() {
        assert_eq!(
            classify(
                Some(RDKafkaErrorCode::BrokerTransportFailure),
                "127.0.0.1:39099/bootstrap: Connect to ipv4#127.0.0.1:39099 failed: Connection refused"
            ),
            Problem::Transient
        );
        assert_eq!(
            classify(
                Some(RDKafkaErrorCode::AllBrokersDown),
                "1/1 brokers are down"
            ),
            Problem::Transient
        );
    }

    #[test]
    fn creation_errors_about_ssl_are_tls_errors() {
        let e = creation_error(
            "b:9093",
            "creating the producer",
            KafkaError::ClientCreation("ssl.ca.location failed: No such file".into()),
        );
        assert!(matches!(e, Error::Tls { .. }), "{e}");
        let e = creation_error(
            "b:9093",
            "creating the producer",
            KafkaError::ClientCreation("No such configuration property: \"x\"".into()),
        );
        assert!(matches!(e, Error::Kafka { .. }), "{e}");
    }
}
