//! [`TestHarness`]: a service's real handlers and the real outbox relay, on the embedded
//! broker (librdkafka's in-process mock cluster) and an SQLite file of its own (or the
//! test's database), with assertions and [`Faults`].

use std::marker::PhantomData;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::producer::FutureProducer;
use sea_orm::DatabaseConnection;
use tokio::sync::Mutex;

use super::faults::Faults;
use super::hook::{self, Observer};
use super::idle::{self, NotIdle};
use super::log::{self, Message};
use super::supervise::{self, Factory, Slots, Spawn};
use crate::context::{KafkaOrm, KafkaOrmBuilder};
use crate::dlq::{DeadLetter, DlqFilter, Page};
use crate::error::{Error, Result};
use crate::handler::{Apply, HandlerBuilder, HandlerStats};
use crate::outbox::relay::{OutboxRelay, OutboxRelayBuilder, RelayStats};
use crate::topic::{Consumable, Topic};

/// How long reading a topic back may take per broker call.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

type Configure<B> = Box<dyn FnOnce(B) -> B + Send>;

/// Configures a [`TestHarness`]; start with [`TestHarness::builder`].
#[must_use = "call `.spawn().await` to start the harness"]
pub struct TestHarnessBuilder {
    database: Option<DatabaseConnection>,
    context: Vec<Configure<KafkaOrmBuilder>>,
    relay: Option<Configure<OutboxRelayBuilder>>,
    handlers: Vec<Arc<dyn Spawn>>,
    idle_timeout: Duration,
}

/// A service's handlers and the outbox relay, running in this process on an in-memory
/// broker: no Kafka, no PostgreSQL, no setup. See the [module docs](super).
pub struct TestHarness {
    orm: KafkaOrm,
    relay: Option<OutboxRelay>,
    slots: Slots,
    observer: Arc<Observer>,
    faults: Faults,
    restarter: tokio::task::JoinHandle<()>,
    idle_timeout: Duration,
    /// The SQLite file the harness made, removed when it goes.
    file: Option<PathBuf>,
}

impl TestHarness {
    /// Starts configuring a harness: the embedded broker, an SQLite database in a
    /// temporary file, the relay (when a topic has an outbox), no handlers yet.
    pub fn builder() -> TestHarnessBuilder {
        TestHarnessBuilder {
            database: None,
            context: Vec::new(),
            relay: None,
            handlers: Vec::new(),
            idle_timeout: crate::defaults::TEST_IDLE_TIMEOUT,
        }
    }
}

impl TestHarnessBuilder {
    /// Uses `db` (e.g. the test's PostgreSQL) instead of a fresh SQLite file. The tables
    /// are created in it as `build()` creates them.
    pub fn database(mut self, db: DatabaseConnection) -> Self {
        self.database = Some(db);
        self
    }

    /// More context settings, as the service's `main` makes them (`.group(..)`,
    /// `.produces::<T>()`, `.consume_layer(..)`, `.consumer_set(..)`). The broker, the
    /// namespace and the database stay the harness's, whatever they set.
    pub fn context(
        mut self,
        configure: impl FnOnce(KafkaOrmBuilder) -> KafkaOrmBuilder + Send + 'static,
    ) -> Self {
        self.context.push(Box::new(configure));
        self
    }

    /// A handler of the service, as the service builds it: `make` gets the harness's
    /// context and returns the configured [`HandlerBuilder`] (the same function the
    /// service's `main` calls). It is called again to restart the handler after a
    /// planned crash ([`Faults::crash_after_commit`]).
    pub fn handler<T, H, F>(mut self, make: F) -> Self
    where
        T: Consumable,
        H: Apply<T>,
        F: Fn(&KafkaOrm) -> HandlerBuilder<T, H> + Send + Sync + 'static,
    {
        self.handlers.push(Arc::new(Factory(make, PhantomData)));
        self
    }

    /// Configures the outbox relay (the harness's defaults: polls every 10 ms, backs a
    /// failed row off 10 ms doubling to 200 ms).
    pub fn relay(
        mut self,
        configure: impl FnOnce(OutboxRelayBuilder) -> OutboxRelayBuilder + Send + 'static,
    ) -> Self {
        self.relay = Some(Box::new(configure));
        self
    }

    /// The default bound of [`TestHarness::wait_idle`] (default [`TEST_IDLE_TIMEOUT`](crate::defaults::TEST_IDLE_TIMEOUT)).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Starts the embedded broker (every registered topic created), opens the database
    /// (tables created), starts the relay when a registered topic has an outbox, then the
    /// handlers.
    pub async fn spawn(self) -> Result<TestHarness> {
        let namespace = format!("kafka-orm-test-{}.", uuid::Uuid::now_v7().simple());
        let (db, file) = match self.database {
            Some(db) => (db, None),
            None => temporary_sqlite(&namespace).await?,
        };
        // A crashed handler's partitions pass to its restart within the session timeout:
        // 6 s, the shortest the broker accepts (10 s by default).
        let mut builder = KafkaOrm::builder()
            .consumer_set("session.timeout.ms", "6000")
            .consumer_set("heartbeat.interval.ms", "500");
        for configure in self.context {
            builder = configure(builder);
        }
        // The harness's own, whatever the settings above said.
        let builder = builder
            .embedded()
            .database(db)
            .namespace(namespace.as_str());
        let orm = builder.build().await?;
        let (observer, crashed) = Observer::new();
        let relay = start_relay(&orm, self.relay).await?;
        let slots = supervise::start_all(&orm, &observer, self.handlers).await?;
        let slots: Slots = Arc::new(Mutex::new(slots));
        let restarter = tokio::spawn(supervise::restart_crashed(
            orm.clone(),
            Arc::clone(&observer),
            Arc::clone(&slots),
            crashed,
        ));
        let producer: FutureProducer = orm
            .client_config()
            .create()
            .map_err(|e| Error::kafka("creating the test harness's producer", e))?;
        let faults = Faults {
            orm: orm.clone(),
            observer: Arc::clone(&observer),
            producer,
        };
        Ok(TestHarness {
            orm,
            relay,
            slots,
            observer,
            faults,
            restarter,
            idle_timeout: self.idle_timeout,
            file,
        })
    }
}

/// A fresh SQLite database in a temporary file (WAL, as SQLite's writers then wait for
/// each other instead of failing).
async fn temporary_sqlite(namespace: &str) -> Result<(DatabaseConnection, Option<PathBuf>)> {
    let file = std::env::temp_dir().join(format!("{namespace}db"));
    let mut opts = sea_orm::ConnectOptions::new(format!("sqlite://{}?mode=rwc", file.display()));
    opts.sqlx_logging(false);
    let db = sea_orm::Database::connect(opts)
        .await
        .map_err(|e| Error::db(format!("opening the test database `{}`", file.display()), e))?;
    Ok((db, Some(file)))
}

/// The relay, when a registered topic has an outbox: quick to poll and to retry.
async fn start_relay(
    orm: &KafkaOrm,
    configure: Option<Configure<OutboxRelayBuilder>>,
) -> Result<Option<OutboxRelay>> {
    if !orm.topics().iter().any(|t| t.outbox.is_some()) {
        return Ok(None);
    }
    let mut relay = orm
        .outbox_relay()
        .poll_interval(Duration::from_millis(10))
        .backoff(Duration::from_millis(10), Duration::from_millis(200));
    if let Some(configure) = configure {
        relay = configure(relay);
    }
    Ok(Some(relay.spawn().await?))
}

impl TestHarness {
    /// The harness's context: publish, produce and build handles with it, as the service
    /// does with its own.
    pub fn orm(&self) -> &KafkaOrm {
        &self.orm
    }

    /// The database (the harness's SQLite file unless the builder was given one).
    pub fn database(&self) -> &DatabaseConnection {
        self.orm
            .database()
            .expect("the harness always has a database")
    }

    /// Fault injection.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// How often the handlers of `T`'s topic were restarted after a planned crash
    /// ([`Faults::crash_after_commit`]).
    pub async fn restarts<T: Topic>(&self) -> u32 {
        let topic = self.orm.topic_name(T::SPEC);
        let slots = self.slots.lock().await;
        slots
            .iter()
            .filter(|s| s.topic == topic)
            .map(|s| s.restarts)
            .sum()
    }

    /// The stats of the running handlers of `T`'s topic (after a restart, the restarted
    /// one's, counted from its start).
    pub async fn handler_stats<T: Topic>(&self) -> Vec<HandlerStats> {
        let topic = self.orm.topic_name(T::SPEC);
        let slots = self.slots.lock().await;
        slots
            .iter()
            .filter(|s| s.topic == topic)
            .filter_map(|s| s.running.as_ref().map(|r| r.stats()))
            .collect()
    }

    /// The relay's counters (`None` when no registered topic has an outbox).
    pub fn relay_stats(&self) -> Option<RelayStats> {
        self.relay.as_ref().map(OutboxRelay::stats)
    }

    /// Waits until the harness is idle, at most the builder's
    /// [`idle_timeout`](TestHarnessBuilder::idle_timeout).
    pub async fn wait_idle(&self) -> std::result::Result<(), NotIdle> {
        self.wait_idle_for(self.idle_timeout).await
    }

    /// Waits until the harness is idle, at most `timeout`: every outbox table empty, every
    /// handler assigned and its group's committed offsets at the end of every partition
    /// it reads, twice in a row with no message finished in between. Otherwise
    /// [`NotIdle`] names what is still busy; a handler that stopped ends the wait at once.
    pub async fn wait_idle_for(&self, timeout: Duration) -> std::result::Result<(), NotIdle> {
        let start = Instant::now();
        let mut idle_rounds = 0;
        let mut finished = usize::MAX;
        loop {
            let busy = idle::look(&self.orm, &mut self.slots.lock().await).await;
            let now_finished = self.observer.handled().len();
            idle_rounds = match (busy.is_empty(), now_finished == finished) {
                (true, true) => idle_rounds + 1,
                (true, false) => 1,
                (false, _) => 0,
            };
            finished = now_finished;
            let stopped = busy.iter().any(|b| matches!(b, idle::Busy::Stopped { .. }));
            if idle_rounds >= 2 {
                return Ok(());
            }
            if stopped || start.elapsed() >= timeout {
                return Err(NotIdle {
                    waited: start.elapsed(),
                    busy,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// What reached `T`'s topic, in partition, then offset order, decoded as `T` where
    /// it decodes (a poisoned record stays raw).
    pub async fn published<T: Topic>(&self) -> Result<Vec<Message<T>>> {
        let topic = self.orm.topic_name(T::SPEC);
        let records = log::read_topic(&self.orm, &topic, READ_TIMEOUT).await?;
        Ok(records
            .into_iter()
            .map(|r| Message::decode(r, None))
            .collect())
    }

    /// The values of [`published`](Self::published) that decode, in the same order.
    pub async fn published_values<T: Topic>(&self) -> Result<Vec<T>> {
        Ok(values(self.published::<T>().await?))
    }

    /// What the harness's handlers of `T`'s topic finished (the database transaction
    /// committed, or a handler without a database returned `Ok`), in the order they
    /// finished, each as it is on the topic (or the retry tier it was handled from) and
    /// with the group that handled it ([`Message::group`]). A message handled again (by a
    /// handler without a database, after a crash) is there twice; a duplicate the inbox
    /// skipped, a dead letter and a message a layer skipped are not. In batch mode, a
    /// batch is listed when the inbox found no duplicate in it.
    pub async fn consumed<T: Topic>(&self) -> Result<Vec<Message<T>>> {
        let topic = self.orm.topic_name(T::SPEC);
        let handled: Vec<_> = self
            .observer
            .handled()
            .into_iter()
            .filter(|h| hook::of_topic(&h.topic, &topic))
            .collect();
        let mut records = std::collections::HashMap::new();
        for read in handled
            .iter()
            .map(|h| h.topic.as_str())
            .collect::<std::collections::BTreeSet<_>>()
        {
            for r in log::read_topic(&self.orm, read, READ_TIMEOUT).await? {
                records.insert((r.topic.clone(), r.partition, r.offset), r);
            }
        }
        Ok(handled
            .into_iter()
            .filter_map(|h| {
                let record = records.get(&(h.topic, h.partition, h.offset))?.clone();
                Some(Message::decode(record, Some(h.group)))
            })
            .collect())
    }

    /// The values of [`consumed`](Self::consumed), in the same order.
    pub async fn consumed_values<T: Topic>(&self) -> Result<Vec<T>> {
        Ok(values(self.consumed::<T>().await?))
    }

    /// Every dead letter of `T` (its `dlq`), typed where the payload decodes, with the
    /// dead-letter headers parsed ([`crate::dlq`]).
    pub async fn dead_lettered<T: Topic>(&self) -> Result<Vec<DeadLetter<T>>> {
        let page = self
            .orm
            .dlq::<T>()
            .list(&DlqFilter::all(), Page::first(usize::MAX))
            .await?;
        Ok(page.letters)
    }

    /// Stops the handlers and the relay gracefully; the first error a handler stopped
    /// with, if one did.
    pub async fn shutdown(mut self) -> Result<()> {
        self.restarter.abort();
        let mut first_error = None;
        let mut slots = self.slots.lock().await;
        for slot in slots.iter_mut() {
            if let Some(running) = slot.running.take()
                && let Err(e) = running.shutdown().await
            {
                first_error.get_or_insert(e);
            }
        }
        drop(slots);
        if let Some(relay) = self.relay.take() {
            relay.shutdown().await?;
        }
        first_error.map_or(Ok(()), Err)
    }
}

fn values<T>(messages: Vec<Message<T>>) -> Vec<T> {
    messages
        .into_iter()
        .filter_map(|m| match m.payload {
            crate::dlq::Payload::Decoded(v) => Some(v),
            crate::dlq::Payload::Raw { .. } => None,
        })
        .collect()
}

impl Drop for TestHarness {
    fn drop(&mut self) {
        self.restarter.abort();
        if let Some(file) = &self.file {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
            }
        }
    }
}

impl std::fmt::Debug for TestHarness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestHarness")
            .field("orm", &self.orm)
            .field("relay", &self.relay.is_some())
            .finish_non_exhaustive()
    }
}
