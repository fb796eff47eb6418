// A handler's future must be `Send` (handlers run on tokio's worker threads): an `Rc`
// held across an `.await` is refused, and the message says what a handler is.
use std::rc::Rc;

use kafka_orm::{KafkaOrm, Topic};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Topic)]
#[topic(name = "clicks", group = "counter")]
struct Click {
    id: i64,
}

fn handle(orm: KafkaOrm) {
    let _ = orm.topic::<Click>().handler_without_database(async |click| {
        let local = Rc::new(click.id);
        std::future::ready(()).await;
        drop(local);
        Ok(())
    });
}

fn main() {}
