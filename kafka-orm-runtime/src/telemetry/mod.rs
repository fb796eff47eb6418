#![doc = include_str!("telemetry.md")]
//!
//! The tables above are checked by this module's tests: every metric of [`METRICS`] is a
//! row with its type, unit and labels, and every span the runtime's sources open is a row
//! with its level and target.

pub(crate) mod lag;
pub mod metrics;
mod record;
pub mod trace;
#[cfg(feature = "opentelemetry")]
mod w3c;

pub use metrics::{METRICS, MetricKind, MetricSpec, describe};

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    use super::METRICS;

    const DOC: &str = include_str!("telemetry.md");

    /// The rows of the doc table whose header starts with `first`, as cells.
    fn rows(first: &str) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        let mut inside = false;
        for line in DOC.lines() {
            if line.starts_with(&format!("| {first} |")) {
                inside = true;
                continue;
            }
            if !line.starts_with('|') {
                inside = false;
            }
            if inside && !line.starts_with("| ---") {
                let cells = line.trim_matches('|').split(" | ");
                out.push(cells.map(|c| c.trim().to_string()).collect());
            }
        }
        out
    }

    fn unquoted(cell: &str) -> &str {
        cell.trim_matches('`')
    }

    #[test]
    fn the_metric_table_lists_every_metric_as_recorded() {
        let table = rows("name");
        let names: Vec<&str> = table.iter().map(|r| unquoted(&r[0])).collect();
        let specs: Vec<&str> = METRICS.iter().map(|m| m.name).collect();
        assert_eq!(
            names, specs,
            "the table and METRICS list the same metrics, in order"
        );
        for (row, m) in table.iter().zip(METRICS) {
            assert_eq!(row[1], m.kind.as_str(), "{}", m.name);
            assert_eq!(unquoted(&row[2]), m.unit, "{}", m.name);
            let labels: Vec<&str> = row[3]
                .split(", ")
                .map(|l| unquoted(l.split(" = ").next().unwrap_or(l)))
                .collect();
            assert_eq!(labels, m.labels, "labels of {}", m.name);
        }
    }

    /// `(name, level, target)` of every span opened in `dir` (recursively).
    fn spans_in(dir: &Path, module: &str, out: &mut BTreeMap<String, (String, String)>) {
        spans_with_kinds_in(dir, module, out, &mut BTreeSet::new());
    }

    /// [`spans_in`], and in `otel` the names of the spans declaring an `otel.kind` field.
    fn spans_with_kinds_in(
        dir: &Path,
        module: &str,
        out: &mut BTreeMap<String, (String, String)>,
        otel: &mut BTreeSet<String>,
    ) {
        let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().collect();
        entries.sort_by_key(|e| e.path());
        for entry in entries {
            let path = entry.path();
            let stem = path.file_stem().unwrap().to_string_lossy().to_string();
            if path.is_dir() {
                spans_with_kinds_in(&path, &format!("{module}::{stem}"), out, otel);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let target = match stem.as_str() {
                "mod" | "lib" => module.to_string(),
                _ => format!("{module}::{stem}"),
            };
            let source = std::fs::read_to_string(&path).unwrap();
            for level in ["trace", "debug", "info", "warn", "error"] {
                let opener = format!("{level}_span!(");
                for (at, _) in source.match_indices(&opener) {
                    let mut rest = source[at + opener.len()..].trim_start();
                    if let Some(after) = rest.strip_prefix("parent:") {
                        rest = after.split_once(',').map_or("", |(_, r)| r.trim_start());
                    }
                    let Some(name) = rest.strip_prefix('"').and_then(|r| r.split('"').next())
                    else {
                        continue;
                    };
                    out.insert(name.to_string(), (level.to_string(), target.clone()));
                    let args = rest.split(");").next().unwrap_or_default();
                    if args.contains("otel.kind") {
                        otel.insert(name.to_string());
                    }
                }
            }
        }
    }

    #[test]
    fn the_span_table_lists_every_span_with_its_level_and_target() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut opened = BTreeMap::new();
        spans_in(&src, "kafka_orm_runtime", &mut opened);
        // The test's own needle strings are not spans.
        opened.retain(|name, _| name.starts_with("kafka_orm."));
        assert!(opened.len() >= 4, "found the spans: {opened:?}");
        let documented: BTreeMap<String, (String, String)> = rows("span")
            .iter()
            .map(|r| {
                let name = unquoted(&r[0]).to_string();
                (name, (r[1].clone(), unquoted(&r[2]).to_string()))
            })
            .collect();
        assert_eq!(
            documented, opened,
            "the span table (telemetry.md) and the sources"
        );
    }

    #[test]
    fn the_opentelemetry_table_lists_every_span_with_a_kind() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut otel = BTreeSet::new();
        spans_with_kinds_in(&src, "kafka_orm_runtime", &mut BTreeMap::new(), &mut otel);
        let documented: BTreeSet<String> = rows("OpenTelemetry span")
            .iter()
            .map(|r| unquoted(&r[0]).to_string())
            .collect();
        assert!(documented.len() >= 6, "{documented:?}");
        assert_eq!(
            documented, otel,
            "the OpenTelemetry span table and the sources"
        );
        for row in rows("OpenTelemetry span") {
            assert!(
                ["producer", "consumer", "client"].contains(&row[1].as_str()),
                "{row:?}"
            );
        }
    }
}
