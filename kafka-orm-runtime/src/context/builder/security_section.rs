//! The builder's security section: TLS and SASL, typed (the raw escape hatch is
//! [`KafkaOrmBuilder::set`]).

use super::KafkaOrmBuilder;
use crate::security::{Sasl, Scram, Tls};

impl KafkaOrmBuilder {
    /// Encrypts every connection with TLS and checks the broker's certificate against
    /// `tls`'s certificate authorities and its host name (`security.protocol=SSL`, or
    /// `SASL_SSL` with a `sasl_*` method; `ssl.ca.location` / `ssl.ca.pem`;
    /// `ssl.endpoint.identification.algorithm=https`). Applies to the producer, every
    /// consumer, handler and relay, the admin client and [`KafkaOrm::client_config`].
    ///
    /// * Confluent Cloud, Amazon MSK, Aiven and other clusters with public certificates:
    ///   [`tls_system_roots`](Self::tls_system_roots).
    /// * A self-signed or private CA (Aiven's project `ca.pem`, your own PKI, the test
    ///   broker of `scripts/kafka`): `.tls(Tls::ca_file("ca.pem"))`.
    /// * Client certificates (mutual TLS: Aiven's default, MSK on port 9094): add
    ///   `.set("ssl.certificate.location", "service.cert")` and
    ///   `.set("ssl.key.location", "service.key")`.
    ///
    /// An untrusted certificate, a wrong host name or a port that does not speak TLS makes
    /// `build()` fail at once with [`Error::Tls`].
    ///
    /// ```
    /// use kafka_orm_runtime::{KafkaOrm, Scram, Tls};
    ///
    /// // Aiven (SASL enabled on the service) or any cluster with its own CA:
    /// let builder = KafkaOrm::builder()
    ///     .bootstrap_servers("kafka-1234.aivencloud.com:12345")
    ///     .tls(Tls::ca_file("ca.pem"))
    ///     .sasl_scram(Scram::Sha256, "avnadmin", "password");
    /// ```
    pub fn tls(mut self, tls: Tls) -> Self {
        self.security.tls = Some(tls);
        self
    }

    /// TLS with the operating system's certificate authorities: `.tls(Tls::system_roots())`.
    /// Right for managed clusters (Confluent Cloud, Amazon MSK, Aiven); the machine needs
    /// its CA store (Debian and Ubuntu: the `ca-certificates` package).
    pub fn tls_system_roots(self) -> Self {
        self.tls(Tls::system_roots())
    }

    /// Authenticates with SASL `PLAIN` (`sasl.mechanism=PLAIN`, `sasl.username`,
    /// `sasl.password`), over TLS: with the system's CAs unless [`tls`](Self::tls) says
    /// otherwise (`security.protocol=SASL_SSL`).
    ///
    /// Confluent Cloud: the user name is the cluster API key, the password its secret:
    ///
    /// ```
    /// use kafka_orm_runtime::KafkaOrm;
    ///
    /// # fn f(api_key: String, api_secret: String) {
    /// let builder = KafkaOrm::builder()
    ///     .bootstrap_servers("pkc-12345.eu-west-1.aws.confluent.cloud:9092")
    ///     .tls_system_roots()
    ///     .sasl_plain(api_key, api_secret);
    /// # }
    /// ```
    ///
    /// A wrong user name or password makes `build()` fail at once with
    /// [`Error::Authentication`], naming the address, the mechanism and the user.
    pub fn sasl_plain(mut self, username: impl Into<String>, password: impl Into<String>) -> Self {
        self.security.sasl = Some(Sasl {
            mechanism: "PLAIN",
            username: username.into(),
            password: password.into(),
        });
        self
    }

    /// Authenticates with SASL `SCRAM-SHA-256` or `SCRAM-SHA-512`, over TLS like
    /// [`sasl_plain`](Self::sasl_plain) (the password itself never crosses the network).
    ///
    /// Amazon MSK: SCRAM-SHA-512 on port 9096, credentials from AWS Secrets Manager,
    /// Amazon's public CA. MSK's IAM authentication (port 9098) needs `OAUTHBEARER` with a
    /// token provider, which kafka-orm does not support (see [what is supported](crate::security)):
    ///
    /// ```
    /// use kafka_orm_runtime::{KafkaOrm, Scram};
    ///
    /// let builder = KafkaOrm::builder()
    ///     .bootstrap_servers("b-1.orders.abc123.c2.kafka.eu-west-1.amazonaws.com:9096")
    ///     .tls_system_roots()
    ///     .sasl_scram(Scram::Sha512, "billing", "from-secrets-manager");
    /// ```
    pub fn sasl_scram(
        mut self,
        mechanism: Scram,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.security.sasl = Some(Sasl {
            mechanism: mechanism.mechanism(),
            username: username.into(),
            password: password.into(),
        });
        self
    }
}
