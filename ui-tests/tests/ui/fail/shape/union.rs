use kafka_orm::Topic;

#[derive(Topic)]
pub union Bits {
    pub int: i64,
    pub float: f64,
}

fn main() {}
