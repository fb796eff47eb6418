// `orm.topic::<T>()` needs `#[derive(Topic)]` on `T`.
use kafka_orm::KafkaOrm;

struct Plain {
    id: i64,
}

fn handle(orm: KafkaOrm) {
    let _ = orm.topic::<Plain>();
}

fn main() {}
