//! The chains without a broker. What the consume chain costs: a counting allocator (per thread, so other tests running
//! at the same time do not count) shows that a chain without registered layers allocates
//! nothing per message, and each registered layer one box.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use serde::{Deserialize, Serialize};

use super::consume::{ConsumeLayers, DynConsumeLayer};
use super::{ConsumeContext, ConsumeLayer, Consumed, Next, Outcome};
use super::{ProduceContext, ProduceLayer, ProduceLayers, ProduceNext};
use crate::codec::Json;
use crate::consumer::Delivery;
use crate::error::{Error, Result};
use crate::key::{DedupValue, KeyBytes};
use crate::producer::{Headers, Outgoing, TYPE_HEADER};
use crate::topic::{Topic, TopicSpec};

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

struct Counting;

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

#[derive(Serialize, Deserialize)]
struct Tick;

impl Topic for Tick {
    const SPEC: &'static TopicSpec = &TopicSpec::new("tests::Tick", "ticks");
    type Codec = Json;
    fn key(&self) -> Option<KeyBytes> {
        None
    }
    fn dedup_key(&self) -> Vec<DedupValue> {
        Vec::new()
    }
}

fn delivery() -> Delivery<Tick> {
    Delivery {
        value: Tick,
        topic: "ticks".into(),
        partition: 0,
        offset: 7,
        key: None,
        headers: Headers::new().with("a", "b"),
        timestamp_ms: None,
        attempt: 1,
        span: tracing::Span::none(),
    }
}

/// Passes on.
struct Through;

impl ConsumeLayer for Through {
    async fn handle(&self, _ctx: &ConsumeContext<'_>, next: Next<'_>) -> Consumed {
        next.run().await
    }
}

/// Polls `fut` once (it is ready at once here).
fn ready<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("the chain waited on nothing"),
    }
}

/// Allocations of one invocation through `layers` behind the built-in (direct) layer.
fn one_invocation(layers: &[Arc<dyn DynConsumeLayer>], d: &Delivery<Tick>) -> (u64, Consumed) {
    let before = allocations();
    let ctx = ConsumeContext::one("group", d);
    let end = pin!(async { Ok(Outcome::Handled) });
    let consumed = ready(Through.handle(&ctx, Next::new(layers, &ctx, end)));
    (allocations() - before, consumed)
}

#[test]
fn no_registered_layer_allocates_nothing_and_each_layer_one_box() {
    let d = delivery();
    let none = ConsumeLayers::default();
    let mut two = ConsumeLayers::default();
    two.push(Through);
    two.push(Through);
    // Warm up whatever a first call sets up (thread locals of the runtime's crates).
    let _ = one_invocation(none.as_slice(), &d);
    let (allocs, consumed) = one_invocation(none.as_slice(), &d);
    assert_eq!(allocs, 0, "no layer: nothing boxed or allocated");
    assert!(matches!(consumed, Ok(Outcome::Handled)));
    let (allocs, consumed) = one_invocation(two.as_slice(), &d);
    assert_eq!(allocs, 2, "one boxed future per registered layer");
    assert!(matches!(consumed, Ok(Outcome::Handled)));
}

/// Adds a header, tampers with kafka-orm's own, and (when `skip`) returns without `next`.
struct Tamper {
    skip: bool,
}

impl ProduceLayer for Tamper {
    async fn produce(&self, ctx: &mut ProduceContext, next: ProduceNext<'_>) -> Result<()> {
        ctx.headers_mut().insert("x-tenant", "acme");
        ctx.headers_mut().insert(TYPE_HEADER, "Forged");
        if self.skip {
            return Ok(());
        }
        next.run(ctx).await
    }
}

fn outgoing() -> Outgoing {
    crate::producer::encode(&Tick, Headers::new()).expect("encoding a unit struct")
}

#[test]
fn a_publish_layer_adds_headers_and_cannot_forge_the_type_or_skip_silently() {
    let mut layers = ProduceLayers::default();
    layers.push(Tamper { skip: false });
    let msg = ready(layers.publish("ticks".into(), "Tick", outgoing())).unwrap();
    assert_eq!(msg.headers.get_str("x-tenant"), Some("acme"));
    assert_eq!(msg.headers.get_str(TYPE_HEADER), Some("Tick"), "restamped");
    assert_eq!(
        msg.headers
            .iter()
            .filter(|(n, _)| *n == TYPE_HEADER)
            .count(),
        1
    );

    let mut skipping = ProduceLayers::default();
    skipping.push(Tamper { skip: true });
    match ready(skipping.publish("ticks".into(), "Tick", outgoing())) {
        Err(Error::Rejected {
            topic,
            message_type,
            reason,
        }) => {
            assert_eq!((topic.as_str(), message_type), ("ticks", "Tick"));
            assert!(
                reason.to_string().contains("without calling `next.run`"),
                "{reason}"
            );
        }
        other => panic!("expected Error::Rejected, got {other:?}"),
    }
}
