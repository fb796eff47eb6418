//! `kafka-orm dlq replay`: re-publish dead letters to their topic, once each, with a
//! progress bar.

use indicatif::{ProgressBar, ProgressStyle};
use kafka_orm::dlq::ReplayReport;

use crate::args::ReplayArgs;
use crate::cmd_dlq;
use crate::fail::{Fail, Outcome};
use crate::output::{Table, or_dash, print_json};
use crate::services::Services;

/// Replays what the flags select.
pub async fn run(services: &Services, args: &ReplayArgs, json: bool) -> Outcome {
    let resolved = services.resolve(&args.topic)?;
    if !resolved.from_file {
        // Only the file says whether the topic has an outbox to replay through.
        services.topics_file("`dlq replay`")?;
    }
    let dlq = cmd_dlq::open(services, &args.topic).await?;
    let mut filter = cmd_dlq::filter(&args.filter)?.include_replayed(args.again);
    for at in &args.at {
        filter = filter.at(*at);
    }
    let bar = ProgressBar::hidden();
    if !json && !args.dry_run {
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("replaying {bar:40} {pos}/{len} ({eta})")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
    }
    let replay = dlq.replay(filter).dry_run(args.dry_run).on_progress(|p| {
        bar.set_length(p.total as u64);
        bar.set_position(p.done as u64);
    });
    let report = replay.await.map_err(|e| match e {
        kafka_orm::Error::Admin { .. } => Fail::input(format!(
            "unknown topic: the cluster has no dead-letter topic `{}`",
            dlq.name()
        )),
        other => other.into(),
    })?;
    bar.finish_and_clear();
    print_report(&report, dlq.name(), json);
    Ok(())
}

fn print_report(report: &ReplayReport, dlq: &str, json: bool) {
    if json {
        print_json(&serde_json::to_value(report).unwrap_or_default());
        return;
    }
    let via = report
        .outbox
        .map(|t| format!(" through the outbox `{t}`"))
        .unwrap_or_default();
    let verb = if report.dry_run {
        "would replay"
    } else {
        "replayed"
    };
    crate::outln!(
        "{verb} {} of {} matching dead letter(s) of `{dlq}` to `{}`{via}; {} replayed before, left out",
        report.replayed.len(),
        report.matched,
        report.target,
        report.already_replayed,
    );
    if report.dry_run && !report.replayed.is_empty() {
        let mut table = Table::new(&["POSITION", "KEY", "MESSAGE ID"]);
        for r in &report.replayed {
            table.row(vec![
                r.from.to_string(),
                or_dash(r.key.as_ref()),
                r.message_id.clone(),
            ]);
        }
        table.print();
    }
}
