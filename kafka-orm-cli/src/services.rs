//! Where the CLI's inputs come from: the topics file, Kafka and the database, each
//! opened when a command needs it, within the `--timeout`.

use std::time::Duration;

use kafka_orm::deps::sea_orm::{ConnectOptions, Database, DatabaseConnection};
use kafka_orm::ops::{TopicEntry, TopicsFile};
use kafka_orm::{DlqSpec, KafkaOrm, TopicSpec};

use crate::args::Cli;
use crate::fail::{Fail, Outcome};

/// The connection settings and the topics file, read once.
pub struct Services {
    bootstrap: Option<String>,
    database_url: Option<String>,
    topics: Option<TopicsFile>,
    timeout: Duration,
}

/// A topic the command works on.
pub struct Resolved {
    /// Its spec (from the topics file, or made up for a topic the file does not list).
    pub spec: &'static TopicSpec,
    /// Whether it came from the topics file.
    pub from_file: bool,
}

impl Services {
    /// The settings of `cli`, and its topics file (read and checked now).
    pub fn new(cli: &Cli) -> Outcome<Self> {
        let topics = match &cli.topics {
            None => None,
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    Fail::input(format!(
                        "cannot read the topics file `{}`: {e}",
                        path.display()
                    ))
                })?;
                let file = TopicsFile::from_json(&text).map_err(|e| {
                    Fail::input(format!(
                        "the topics file `{}` is not valid: {e}",
                        path.display()
                    ))
                })?;
                Some(file)
            }
        };
        Ok(Services {
            bootstrap: cli
                .bootstrap_servers
                .clone()
                .filter(|s| !s.trim().is_empty()),
            database_url: cli.database_url.clone().filter(|s| !s.trim().is_empty()),
            topics,
            timeout: Duration::from_secs(cli.timeout.max(1)),
        })
    }

    /// How long a broker or database call may take.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The topics file, which `what` needs.
    pub fn topics_file(&self, what: &str) -> Outcome<&TopicsFile> {
        self.topics.as_ref().ok_or_else(|| {
            Fail::input(format!(
                "{what} needs the service's topics file: pass --topics FILE or set KAFKA_ORM_TOPICS \
                 (write it from the service with `orm.registry_json()`)"
            ))
        })
    }

    /// A context on Kafka (and the database, when one is configured), checked to answer
    /// within the timeout; it creates no topic and no table.
    pub async fn kafka(&self) -> Outcome<KafkaOrm> {
        let Some(bootstrap) = &self.bootstrap else {
            return Err(Fail::input(
                "no Kafka: pass --bootstrap-servers HOST:PORT or set KAFKA_BOOTSTRAP_SERVERS",
            ));
        };
        let namespace = self
            .topics
            .as_ref()
            .map(|f| f.namespace.clone())
            .unwrap_or_default();
        let mut builder = KafkaOrm::builder()
            .bootstrap_servers(bootstrap.clone())
            .namespace(namespace)
            .create_topics(false)
            .migrate(false)
            .connect_timeout(self.timeout)
            .shutdown_timeout(self.timeout);
        if self.database_url.is_some() {
            builder = builder.database(self.database().await?);
        }
        Ok(builder.build().await?)
    }

    /// The database, connected within the timeout.
    pub async fn database(&self) -> Outcome<DatabaseConnection> {
        let Some(url) = &self.database_url else {
            return Err(Fail::input(
                "no database: pass --database-url URL or set DATABASE_URL",
            ));
        };
        let mut opts = ConnectOptions::new(url.clone());
        opts.connect_timeout(self.timeout)
            .acquire_timeout(self.timeout)
            .max_connections(2)
            .sqlx_logging(false);
        Database::connect(opts).await.map_err(|e| Fail {
            bad_input: false,
            message: format!(
                "cannot connect to the database within {:?}: {e}",
                self.timeout
            ),
        })
    }

    /// The topics of the file, as specs.
    pub fn specs(&self, what: &str) -> Outcome<Vec<&'static TopicSpec>> {
        Ok(self
            .topics_file(what)?
            .topics
            .iter()
            .map(TopicEntry::leak_spec)
            .collect())
    }

    /// The topic `name` names: a topic of the file (by name, Kafka name, type or
    /// dead-letter topic), or, without a file, the Kafka topic `name` with the dead-letter
    /// topic `<name>.dlq`.
    pub fn resolve(&self, name: &str) -> Outcome<Resolved> {
        let Some(file) = &self.topics else {
            let topic = name.strip_suffix(".dlq").unwrap_or(name);
            let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
            let spec = TopicSpec::new("(not in a topics file)", leak(topic.to_string()))
                .dlq(DlqSpec::new(leak(format!("{topic}.dlq"))));
            let spec: &'static TopicSpec = Box::leak(Box::new(spec));
            return Ok(Resolved {
                spec,
                from_file: false,
            });
        };
        let found = file.topics.iter().find(|t| {
            let short = t.type_name.rsplit("::").next().unwrap_or(&t.type_name);
            [
                Some(&t.name),
                Some(&t.kafka_topic),
                Some(&t.type_name),
                t.kafka_dlq.as_ref(),
                t.dlq.as_ref(),
            ]
            .into_iter()
            .flatten()
            .any(|n| n == name)
                || short == name
        });
        match found {
            Some(entry) => Ok(Resolved {
                spec: entry.leak_spec(),
                from_file: true,
            }),
            None => {
                let known: Vec<&str> = file.topics.iter().map(|t| t.name.as_str()).collect();
                Err(Fail::input(format!(
                    "unknown topic `{name}`: the topics file has {}",
                    if known.is_empty() {
                        "no topics".to_string()
                    } else {
                        format!("`{}`", known.join("`, `"))
                    }
                )))
            }
        }
    }
}
