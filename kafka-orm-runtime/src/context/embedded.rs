//! The embedded broker: librdkafka's in-process mock cluster, for demos and quick tests.

use crate::error::{Error, Result};
use crate::topic::TopicSpec;

use super::admin::wanted_topics;

/// librdkafka's in-process mock cluster, owned by a dedicated thread: the cluster handle
/// is not `Send`, so it never leaves that thread; dropping this stops it.
pub(super) struct EmbeddedBroker {
    pub(super) bootstrap: String,
    commands: std::sync::mpsc::Sender<EmbeddedCommand>,
}

type EmbeddedCommand = (String, i32, std::sync::mpsc::Sender<Result<()>>);

impl EmbeddedBroker {
    pub(super) fn start() -> Result<Self> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (commands, command_rx) = std::sync::mpsc::channel::<EmbeddedCommand>();
        std::thread::Builder::new()
            .name("kafka-orm-embedded-broker".into())
            .spawn(move || {
                let cluster = match rdkafka::mocking::MockCluster::new(1) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready_tx.send(Err(Error::kafka("starting the embedded broker", e)));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(cluster.bootstrap_servers()));
                // Serve topic creations until the context is dropped.
                for (topic, partitions, reply) in command_rx {
                    let result = cluster
                        .create_topic(&topic, partitions, 1)
                        .map_err(|e| Error::kafka(format!("creating topic `{topic}`"), e));
                    let _ = reply.send(result);
                }
            })
            .map_err(|e| Error::Config(format!("cannot start the embedded broker thread: {e}")))?;
        let bootstrap = ready_rx
            .recv()
            .map_err(|_| Error::Config("the embedded broker thread died".into()))??;
        Ok(EmbeddedBroker {
            bootstrap,
            commands,
        })
    }

    pub(super) fn create_topics(
        &self,
        specs: &[&'static TopicSpec],
        namespace: &str,
    ) -> Result<()> {
        for (name, (partitions, _)) in wanted_topics(specs, namespace) {
            let (tx, rx) = std::sync::mpsc::channel();
            self.commands
                .send((name, partitions.unwrap_or(1), tx))
                .map_err(|_| Error::Config("the embedded broker stopped".into()))?;
            rx.recv()
                .map_err(|_| Error::Config("the embedded broker stopped".into()))??;
        }
        Ok(())
    }
}
