//! A service host (`orm.host()`): its handlers start together and stop together, and one
//! that gives up is reported, by the host's future, its health and an error-level log,
//! while the others keep running. On the real broker, without a database.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use kafka_orm::handler::Apply;
use kafka_orm::{Error, HandlerBuilder, HealthState, KafkaOrm, OnExhausted, Reason, Topic};
use kafka_orm_tests::{real_kafka, within};
use serde::{Deserialize, Serialize};
use tracing_subscriber::layer::SubscriberExt;

/// No `dlq`: a job that fails both attempts stops its handler.
#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(
    name = "host.jobs",
    partitions = 1,
    group = "host-jobs",
    retry(attempts = 2, backoff = "10ms", max_backoff = "10ms")
)]
struct Job {
    id: i64,
    poison: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(name = "host.pings", key = "id", partitions = 2, group = "host-pings")]
struct Ping {
    id: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(name = "host.deduped", inbox, group = "host-deduped")]
struct Deduped {
    id: i64,
}

/// Error-level events, as `"<message> <fields>"`, from every test of this binary.
fn errors() -> &'static Mutex<Vec<String>> {
    static ERRORS: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    ERRORS.get_or_init(|| {
        let subscriber = tracing_subscriber::registry().with(ErrorLog);
        tracing::subscriber::set_global_default(subscriber).expect("one subscriber");
        Mutex::default()
    })
}

struct ErrorLog;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for ErrorLog {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if *event.metadata().level() != tracing::Level::ERROR {
            return;
        }
        struct Fields(String);
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.push_str(&format!(" {}={value:?}", field.name()));
            }
        }
        let mut fields = Fields(String::new());
        event.record(&mut fields);
        errors().lock().unwrap().push(fields.0);
    }
}

async fn context(test: &str) -> Option<KafkaOrm> {
    errors();
    Some(real_kafka(test)?.build().await.unwrap())
}

/// `(topic, ids)`: what each handler saw.
type Seen = Arc<Mutex<Vec<(&'static str, i64)>>>;

/// A handler of jobs that gives up on a poison one.
fn jobs(orm: &KafkaOrm, seen: &Seen) -> HandlerBuilder<Job, impl Apply<Job>> {
    let seen = Arc::clone(seen);
    orm.topic::<Job>()
        .handler_without_database(async move |job| {
            seen.lock().unwrap().push(("jobs", job.id));
            if job.poison {
                return Err(format!("job {} cannot be done", job.id).into());
            }
            Ok(())
        })
        .on_exhausted(OnExhausted::Stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_gives_up_resolves_the_hosts_future_with_its_error() {
    let Some(orm) = context("host_failed").await else {
        return;
    };
    let seen = Seen::default();
    let pings = Arc::clone(&seen);
    let mut host = orm
        .host()
        .handler(jobs(&orm, &seen))
        .handler(
            orm.topic::<Ping>()
                .handler_without_database(async move |ping| {
                    pings.lock().unwrap().push(("pings", ping.id));
                    Ok(())
                }),
        )
        .spawn()
        .await
        .unwrap();
    orm.topic::<Job>()
        .produce(&Job {
            id: 7,
            poison: true,
        })
        .await
        .unwrap();
    let error = within(
        60,
        "the host reporting the handler that gave up",
        host.failed(),
    )
    .await;
    let jobs_topic = orm.topic_name(Job::SPEC);
    match &error {
        Error::HandlerFailed {
            topic,
            offset,
            attempts,
            ..
        } => assert_eq!((topic, *offset, *attempts), (&jobs_topic, 0, 2)),
        other => panic!("expected HandlerFailed, got {other}"),
    }
    assert!(
        error.to_string().contains("job 7 cannot be done"),
        "{error}"
    );
    assert!(
        errors()
            .lock()
            .unwrap()
            .iter()
            .any(|e| e.contains("handler stopped")
                && e.contains(&jobs_topic)
                && e.contains("job 7 cannot be done")),
        "an error-level log names the topic and the error: {:?}",
        errors().lock().unwrap()
    );

    // The other handler keeps running.
    assert!(host.handlers()[0].is_finished() && !host.handlers()[1].is_finished());
    orm.topic::<Ping>().produce(&Ping { id: 1 }).await.unwrap();
    within(
        60,
        "the ping handled after the jobs handler stopped",
        async {
            while !seen.lock().unwrap().contains(&("pings", 1)) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        },
    )
    .await;
    let stats = host.shutdown().await.unwrap();
    assert_eq!(stats.len(), 2);
    assert_eq!((stats[0].handled, stats[1].handled), (0, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hosts_health_is_every_handlers_and_names_the_one_that_stopped() {
    let Some(orm) = context("host_health").await else {
        return;
    };
    let seen = Seen::default();
    let host = orm
        .host()
        .handler(jobs(&orm, &seen))
        .handler(
            orm.topic::<Ping>()
                .handler_without_database(async |_| Ok(())),
        )
        .spawn()
        .await
        .unwrap();
    let health = host.health().await;
    assert_eq!(health.state, HealthState::Ready, "all running: {health}");
    assert!(health.is_live() && health.is_ready() && health.reasons.is_empty());

    orm.topic::<Job>()
        .produce(&Job {
            id: 5,
            poison: true,
        })
        .await
        .unwrap();
    let health = within(
        60,
        "the host's health reporting the stopped handler",
        async {
            loop {
                let health = host.health().await;
                if !health.is_live() {
                    return health;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        },
    )
    .await;
    let jobs_topic = orm.topic_name(Job::SPEC);
    assert_eq!(health.state, HealthState::Down, "{health}");
    assert!(!health.is_ready(), "{health}");
    match health.reasons.as_slice() {
        [Reason::HandlerFailed { topic, error }] => {
            assert_eq!(topic, &jobs_topic);
            assert!(error.contains("job 5 cannot be done"), "{error}");
        }
        other => panic!("only the jobs handler's failure, got {other:?}"),
    }
    assert!(
        health
            .to_string()
            .starts_with(&format!("down: handler of `{jobs_topic}` failed: ")),
        "{health}"
    );
    // Each handler's own health says the same: the pings handler runs on.
    assert!(!host.handlers()[0].health().await.is_live());
    assert_eq!(host.handlers()[1].health().await.state, HealthState::Ready);
    let stopped = host.shutdown().await;
    assert!(
        matches!(stopped, Err(Error::HandlerFailed { .. })),
        "{stopped:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_until_returns_the_error_of_a_handler_that_stops() {
    let Some(orm) = context("host_run_until").await else {
        return;
    };
    orm.topic::<Job>()
        .produce(&Job {
            id: 1,
            poison: true,
        })
        .await
        .unwrap();
    let seen = Seen::default();
    let ran = orm
        .host()
        .handler(jobs(&orm, &seen))
        .handler(
            orm.topic::<Ping>()
                .handler_without_database(async |_| Ok(())),
        )
        .run_until(std::future::pending());
    let result = within(60, "run_until returning the failure", ran).await;
    assert!(
        matches!(result, Err(Error::HandlerFailed { .. })),
        "{result:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spawned_handler_that_gives_up_is_reported_by_stopped() {
    let Some(orm) = context("host_stopped").await else {
        return;
    };
    let seen = Seen::default();
    let mut handler = jobs(&orm, &seen).spawn().await.unwrap();
    orm.topic::<Job>()
        .produce(&Job {
            id: 3,
            poison: true,
        })
        .await
        .unwrap();
    let error = within(60, "stopped() resolving", handler.stopped()).await;
    assert!(
        matches!(error, Error::HandlerFailed { offset: 0, .. }),
        "{error}"
    );
    // The error was handed out; shutdown then only tidies up.
    handler.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_cannot_start_stops_the_ones_that_did() {
    let Some(orm) = context("host_start").await else {
        return;
    };
    let seen = Seen::default();
    let (old, new) = (Arc::clone(&seen), Arc::clone(&seen));
    let refused = orm
        .host()
        .handler(
            orm.topic::<Ping>()
                .handler_without_database(async move |ping| {
                    old.lock().unwrap().push(("old", ping.id));
                    Ok(())
                }),
        )
        .handler(
            orm.topic::<Deduped>()
                .handler_without_database(async |_| Ok(())),
        )
        .spawn()
        .await;
    assert!(
        matches!(&refused, Err(Error::Config(m)) if m.contains("has an inbox")),
        "{refused:?}"
    );
    // The pings handler that did start left the group: a new one gets every ping, of both
    // partitions.
    let pings = orm
        .topic::<Ping>()
        .handler_without_database(async move |ping| {
            new.lock().unwrap().push(("new", ping.id));
            Ok(())
        })
        .spawn()
        .await
        .unwrap();
    let all: Vec<Ping> = (0..20).map(|id| Ping { id }).collect();
    orm.topic::<Ping>().produce_all(&all).await.unwrap();
    within(60, "the pings handled", async {
        while seen.lock().unwrap().len() < all.len() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    pings.shutdown().await.unwrap();
    let seen = seen.lock().unwrap();
    assert!(seen.iter().all(|(who, _)| *who == "new"), "{seen:?}");
}
