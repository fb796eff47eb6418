//! Values and policies: the format, partition and replication counts, the inbox
//! retention, the retry policy, and the settings that contradict each other.
//!
//! The runtime's defaults are not known here (`kafka_orm::defaults` is their one
//! source): a `backoff` set without `max_backoff`, or the other way round, is checked
//! against the default by an assertion in the expansion (`expand/topic_impl.rs`).

use syn::{LitInt, LitStr, Path};

use crate::attr::{self, Attrs, Setting};
use crate::ctxt::Ctxt;
use crate::duration;
use crate::model::{Direction, Retry, RetryDuration};
use crate::symbol::*;

use super::optional;

/// `format = ".."` against `codec`, and its value; `None` after an error.
pub fn format(cx: &Ctxt, attrs: &Attrs) -> Option<()> {
    let Some(format) = &attrs.format else {
        return Some(());
    };
    let mut ok = true;
    if let Some(codec) = &attrs.codec {
        cx.error_spanned_by(
            later((format.order, &format.path), (codec.order, &codec.path)),
            "`format` and `codec` contradict each other: a `codec` replaces the format; keep one of them",
        );
        ok = false;
    }
    let value = format.value.value();
    if value != "json" {
        cx.error_spanned_by(
            &format.value,
            format!(
                "unknown format `{value}`; the built-in format is `json`; for another encoding implement `kafka_orm::Codec` and write `codec = \"path::to::YourCodec\"`"
            ),
        );
        ok = false;
    }
    ok.then_some(())
}

pub fn partitions(cx: &Ctxt, lit: &LitInt) -> Option<i32> {
    let n = positive_int(cx, lit, PARTITIONS, i32::MAX as u64)?;
    Some(n as i32)
}

pub fn replication(cx: &Ctxt, lit: &LitInt) -> Option<i32> {
    let n = positive_int(cx, lit, REPLICATION, i16::MAX as u64)?;
    Some(n as i32)
}

/// An integer setting in `1..=max`.
fn positive_int(cx: &Ctxt, lit: &LitInt, key: Symbol, max: u64) -> Option<u64> {
    let value: Option<i128> = lit.base10_parse().ok();
    let msg = match value {
        Some(value) if value < 1 => {
            let why = if key == ATTEMPTS {
                " (the first attempt counts)"
            } else {
                ""
            };
            format!("`{key}` must be at least 1{why}")
        }
        Some(value) if value <= i128::from(max) => return Some(value as u64),
        _ => format!("`{key}` must be at most {max}"),
    };
    cx.error_spanned_by(lit, msg);
    None
}

/// A duration setting, in milliseconds.
fn duration_ms(cx: &Ctxt, lit: &LitStr) -> Option<u64> {
    let text = lit.value();
    match duration::parse_ms(&text) {
        Ok(ms) => Some(ms),
        Err(err) => {
            let msg = format!("invalid duration `{text}`: {err}; {}", duration::EXPECTED);
            cx.error_spanned_by(lit, msg);
            None
        }
    }
}

/// The inbox retention, in whole seconds, at least one.
pub fn retention_secs(cx: &Ctxt, lit: &LitStr) -> Option<u64> {
    let ms = duration_ms(cx, lit)?;
    let msg = if ms < 1000 {
        "`retention` must be at least 1s".to_owned()
    } else if ms % 1000 != 0 {
        format!(
            "`retention` is kept in whole seconds, and `{}` is not",
            lit.value()
        )
    } else {
        return Some(ms / 1000);
    };
    cx.error_spanned_by(lit, msg);
    None
}

/// The settings of `retry(..)`; `Some(None)` for a bare `retry`, which is the default
/// policy as much as no `retry` is.
pub fn retry(cx: &Ctxt, retry: &attr::Retry) -> Option<Option<Retry>> {
    let attempts = optional(&retry.attempts, |a| {
        let n = positive_int(cx, &a.value, ATTEMPTS, u64::from(u32::MAX))?;
        Some(n as u32)
    });
    let duration = |s: &Setting<LitStr>| {
        let ms = duration_ms(cx, &s.value)?;
        Some(RetryDuration {
            ms,
            lit: s.value.clone(),
        })
    };
    let backoff = optional(&retry.backoff, duration);
    let max_backoff = optional(&retry.max_backoff, duration);
    let retry = Retry {
        attempts: attempts?,
        backoff: backoff?,
        max_backoff: max_backoff?,
    };
    if let (Some(b), Some(m)) = (&retry.backoff, &retry.max_backoff)
        && b.ms > m.ms
    {
        cx.error_spanned_by(
            &m.lit,
            format!(
                "`backoff` (`{}`) is longer than `max_backoff` (`{}`); the backoff starts at `backoff` and doubles up to `max_backoff`, so `backoff` cannot exceed it",
                b.lit.value(),
                m.lit.value(),
            ),
        );
        return None;
    }
    let set = retry.attempts.is_some() || retry.backoff.is_some() || retry.max_backoff.is_some();
    Some(set.then_some(retry))
}

/// `(order, path)` of a setting, whatever its value type.
fn at<T>(setting: &Option<Setting<T>>) -> Option<(usize, &Path)> {
    setting.as_ref().map(|s| (s.order, &s.path))
}

/// The path of the later of two settings, which the error about both points at.
fn later<'a>(a: (usize, &'a Path), b: (usize, &'a Path)) -> &'a Path {
    if a.0 > b.0 { a.1 } else { b.1 }
}

/// `produce_only` / `consume_only` against each other and the settings of the other
/// side; the direction when nothing contradicts.
pub fn direction(cx: &Ctxt, attrs: &Attrs) -> Option<Direction> {
    let produce_only = at(&attrs.produce_only);
    let consume_only = at(&attrs.consume_only);
    let mut ok = true;
    let mut contradiction = |a, b, msg: String| {
        cx.error_spanned_by(later(a, b), msg);
        ok = false;
    };
    if let (Some(p), Some(c)) = (produce_only, consume_only) {
        contradiction(p, c, "`produce_only` and `consume_only` contradict each other: the topic would be neither produced nor consumed; remove one of them".into());
    }
    if let Some(p) = produce_only {
        let consumer_side = [
            (INBOX, at(&attrs.inbox)),
            (GROUP, at(&attrs.group)),
            (RETRY, at(&attrs.retry)),
            (RETRY_TOPICS, at(&attrs.retry_topics)),
            (DLQ, at(&attrs.dlq)),
        ];
        for (key, setting) in consumer_side {
            if let Some(s) = setting {
                contradiction(
                    p,
                    s,
                    format!(
                        "`{key}` contradicts `produce_only`: `{key}` is a consumer setting and a `produce_only` topic is never consumed; remove one of them"
                    ),
                );
            }
        }
    }
    if let (Some(c), Some(o)) = (consume_only, at(&attrs.outbox)) {
        contradiction(c, o, "`outbox` contradicts `consume_only`: the outbox produces to the topic and a `consume_only` topic is never produced; remove one of them".into());
    }
    let direction = match (produce_only, consume_only) {
        (Some(_), _) => Direction::ProduceOnly,
        (_, Some(_)) => Direction::ConsumeOnly,
        _ => Direction::Both,
    };
    ok.then_some(direction)
}
