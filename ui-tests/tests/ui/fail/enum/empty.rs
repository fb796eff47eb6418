use kafka_orm::Topic;

#[derive(Topic)]
pub enum OrderEvent {}

fn main() {}
