//! The W3C Trace Context headers (<https://www.w3.org/TR/trace-context/>) to and from an
//! OpenTelemetry [`SpanContext`].
//!
//! `traceparent` is `version-traceid-parentid-flags`: `00-` then 32, 16 and 2 lowercase hex
//! digits; `tracestate` is a list of vendor entries. Written here (as opentelemetry_sdk's
//! `TraceContextPropagator` does it) so the runtime needs the OpenTelemetry API only, not
//! its SDK.

use std::str::FromStr;

use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};

/// Length of the part every version shares after `version-`: `traceid-parentid-flags`.
const FIXED: usize = 32 + 1 + 16 + 1 + 2;

/// The `traceparent` of `cx` (version 00; of the flags only `sampled`, the one defined),
/// or `None` when `cx` is not a valid context.
pub(crate) fn traceparent(cx: &SpanContext) -> Option<String> {
    cx.is_valid().then(|| {
        let flags = cx.trace_flags() & TraceFlags::SAMPLED;
        format!(
            "00-{}-{}-{:02x}",
            cx.trace_id(),
            cx.span_id(),
            flags.to_u8()
        )
    })
}

/// The `tracestate` of `cx`, `None` when it has no entries.
pub(crate) fn tracestate(cx: &SpanContext) -> Option<String> {
    let header = cx.trace_state().header();
    (!header.is_empty()).then_some(header)
}

/// The remote context a `traceparent` (and `tracestate`) describe, `None` when the
/// `traceparent` is malformed, of the invalid version `ff`, or has all-zero ids. A
/// malformed `tracestate` is dropped (the parent still holds), as the spec asks.
pub(crate) fn parse(traceparent: &str, tracestate: Option<&str>) -> Option<SpanContext> {
    let (version, rest) = traceparent.trim().split_once('-')?;
    let version = hex(version, 2).and_then(|v| u8::from_str_radix(v, 16).ok())?;
    if version == 0xff {
        return None;
    }
    let fixed = rest.get(..FIXED)?;
    let tail = &rest[FIXED..];
    // Version 00 is exactly this long; a later version may append `-` and more fields.
    let tail_ok = if version == 0 {
        tail.is_empty()
    } else {
        tail.is_empty() || tail.starts_with('-')
    };
    if !tail_ok {
        return None;
    }
    let mut parts = fixed.split('-');
    let trace_id = TraceId::from_hex(hex(parts.next()?, 32)?).ok()?;
    let span_id = SpanId::from_hex(hex(parts.next()?, 16)?).ok()?;
    let flags = u8::from_str_radix(hex(parts.next()?, 2)?, 16).ok()?;
    let state = tracestate
        .and_then(|s| TraceState::from_str(s.trim()).ok())
        .unwrap_or_default();
    let flags = TraceFlags::new(flags) & TraceFlags::SAMPLED;
    let cx = SpanContext::new(trace_id, span_id, flags, true, state);
    cx.is_valid().then_some(cx)
}

/// `s` when it is exactly `len` lowercase hex digits.
fn hex(s: &str, len: usize) -> Option<&str> {
    let lower_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
    (s.len() == len && s.bytes().all(lower_hex)).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn a_traceparent_round_trips() {
        let cx = parse(TP, Some("congo=t61rcWkgMzE, rojo=00f067aa0ba902b7")).unwrap();
        assert_eq!(
            cx.trace_id(),
            TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap()
        );
        assert_eq!(cx.span_id(), SpanId::from_hex("b7ad6b7169203331").unwrap());
        assert!(cx.is_sampled() && cx.is_remote());
        assert_eq!(traceparent(&cx).as_deref(), Some(TP));
        assert_eq!(
            tracestate(&cx).as_deref(),
            Some("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")
        );
        let unsampled = parse(&TP.replace("-01", "-00"), None).unwrap();
        assert!(!unsampled.is_sampled());
        assert_eq!(tracestate(&unsampled), None);
    }

    #[test]
    fn unknown_flags_are_dropped_and_later_versions_may_grow() {
        let cx = parse(&TP.replace("-01", "-ff"), None).unwrap();
        assert_eq!(cx.trace_flags(), TraceFlags::SAMPLED);
        assert!(
            parse(
                &format!("{}-what-comes-next", TP.replacen("00", "01", 1)),
                None
            )
            .is_some()
        );
        assert!(
            parse(&format!("{TP}-more"), None).is_none(),
            "version 00 is exact"
        );
    }

    #[test]
    fn malformed_traceparents_give_no_parent() {
        for bad in [
            "",
            "00",
            "garbage",
            &TP.replacen("00", "ff", 1),
            &TP.to_uppercase(),
            &TP.replace("0af7", "0af"),
            &TP.replace("-01", "-1"),
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333g-01",
            "00-0af7651916cd43dd8448eb211c80319c_b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c8031é-b7ad6b7169203331-01",
        ] {
            assert!(parse(bad, None).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn a_malformed_tracestate_keeps_the_parent() {
        let cx = parse(TP, Some("not a list entry")).unwrap();
        assert_eq!(tracestate(&cx), None);
        assert!(cx.is_valid());
    }

    #[test]
    fn an_invalid_context_has_no_header() {
        assert_eq!(traceparent(&SpanContext::empty_context()), None);
    }
}
