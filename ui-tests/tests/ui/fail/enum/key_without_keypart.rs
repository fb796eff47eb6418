use kafka_orm::Topic;

#[derive(serde::Serialize, serde::Deserialize)]
pub struct PriceChanged {
    pub price: f64,
}

#[derive(Topic)]
#[topic(key = "price")]
pub enum PriceEvent {
    Changed(PriceChanged),
}

fn main() {}
