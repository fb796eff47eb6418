//! Testing a service without a broker (feature `testing`, for dev-dependencies): the
//! guide is the `kafka_orm::testing` chapter.
//!
//! - [`Recorder`]: a [`Produce`] and [`Publish`] that records what a service sent, for
//!   unit tests of service functions that take `impl Publish<T>` / `impl Produce<T>`;
//! - [`Delivery::for_test`](crate::Delivery::for_test): a delivery built by hand, to call
//!   a handler directly;
//! - [`TestHarness`]: the service's real handlers and the real outbox relay on the
//!   embedded broker and an SQLite file, with assertions
//!   ([`published`](TestHarness::published), [`consumed`](TestHarness::consumed),
//!   [`dead_lettered`](TestHarness::dead_lettered), [`wait_idle`](TestHarness::wait_idle))
//!   and [`Faults`].
//!
//! - `recorder`: [`Recorder`]; `delivery`: [`Delivery::for_test`](crate::Delivery::for_test);
//! - `harness`: [`TestHarness`] and its builder; `supervise`: its handlers and their
//!   restarts; `idle`: [`wait_idle`](TestHarness::wait_idle) and [`NotIdle`];
//! - `faults`: [`Faults`]; `log`: [`Message`], reading topics back;
//! - `hook`: the handler runner's hook (after a commit, before the offset is stored).

mod delivery;
mod faults;
mod harness;
pub(crate) mod hook;
mod idle;
mod log;
mod recorder;
mod supervise;

pub use crate::dlq::{DeadLetter, Payload};
pub use crate::service::{Produce, Publish};
pub use faults::Faults;
pub use harness::{TestHarness, TestHarnessBuilder};
pub use idle::{Busy, NotIdle};
pub use log::Message;
pub use recorder::{Recorded, Recorder, Sent};
