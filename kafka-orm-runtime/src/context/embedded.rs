//! The embedded broker: librdkafka's in-process mock cluster, for demos and quick tests.

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

use crate::error::{Error, Result};
use crate::topic::TopicSpec;

use super::admin::wanted_topics;

/// The mock cluster as its thread owns it.
pub(crate) type Cluster = MockCluster<'static, DefaultProducerContext>;

/// Something to do to the cluster, on its thread; the reply says how it went.
type Job = Box<dyn FnOnce(&Cluster) -> Result<()> + Send>;

/// librdkafka's in-process mock cluster, owned by a dedicated thread: the cluster handle
/// is not `Send`, so it never leaves that thread; dropping this stops it.
pub(crate) struct EmbeddedBroker {
    pub(super) bootstrap: String,
    jobs: std::sync::mpsc::Sender<(Job, std::sync::mpsc::Sender<Result<()>>)>,
}

impl EmbeddedBroker {
    pub(super) fn start() -> Result<Self> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (jobs, job_rx) = std::sync::mpsc::channel::<(Job, std::sync::mpsc::Sender<_>)>();
        std::thread::Builder::new()
            .name("kafka-orm-embedded-broker".into())
            .spawn(move || {
                let cluster = match MockCluster::new(1) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready_tx.send(Err(Error::kafka("starting the embedded broker", e)));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(cluster.bootstrap_servers()));
                // Serve jobs (topic creations, test faults) until the context is dropped.
                for (job, reply) in job_rx {
                    let _ = reply.send(job(&cluster));
                }
            })
            .map_err(|e| Error::Config(format!("cannot start the embedded broker thread: {e}")))?;
        let bootstrap = ready_rx
            .recv()
            .map_err(|_| Error::Config("the embedded broker thread died".into()))??;
        Ok(EmbeddedBroker { bootstrap, jobs })
    }

    /// Runs `job` on the cluster's thread and waits for it.
    pub(crate) fn run(
        &self,
        job: impl FnOnce(&Cluster) -> Result<()> + Send + 'static,
    ) -> Result<()> {
        let stopped = || Error::Config("the embedded broker stopped".into());
        let (tx, rx) = std::sync::mpsc::channel();
        self.jobs.send((Box::new(job), tx)).map_err(|_| stopped())?;
        rx.recv().map_err(|_| stopped())?
    }

    pub(super) fn create_topics(
        &self,
        specs: &[&'static TopicSpec],
        namespace: &str,
    ) -> Result<()> {
        for (name, (partitions, _)) in wanted_topics(specs, namespace) {
            self.run(move |cluster| {
                cluster
                    .create_topic(&name, partitions.unwrap_or(1), 1)
                    .map_err(|e| Error::kafka(format!("creating topic `{name}`"), e))
            })?;
        }
        Ok(())
    }
}
