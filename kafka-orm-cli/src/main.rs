//! `kafka-orm`, the operators' command line: a service's topics, its outboxes (status,
//! retry), its dead letters (list, show, replay) and consumer lag, against the real Kafka
//! and database. See `kafka-orm --help` and kafka-orm's operations chapter.

mod args;
mod cmd_dlq;
mod cmd_lag;
mod cmd_outbox;
mod cmd_replay;
mod cmd_topics;
mod fail;
mod output;
mod services;

use clap::Parser;

use args::{Cli, Command, DlqCommand, OutboxCommand};
use fail::Outcome;
use services::Services;

fn main() {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let outcome = runtime.block_on(run(&cli));
    // librdkafka threads may still be closing clients; nothing of theirs is waited for.
    runtime.shutdown_background();
    if let Err(fail) = outcome {
        eprintln!("error: {fail}");
        std::process::exit(fail.code());
    }
}

async fn run(cli: &Cli) -> Outcome {
    let services = Services::new(cli)?;
    let json = cli.json;
    match &cli.command {
        Command::Topics => cmd_topics::run(&services, json),
        Command::Outbox(OutboxCommand::Status) => cmd_outbox::status(&services, json).await,
        Command::Outbox(OutboxCommand::Retry(args)) => {
            cmd_outbox::retry(&services, args, json).await
        }
        Command::Dlq(DlqCommand::List(args)) => cmd_dlq::list(&services, args, json).await,
        Command::Dlq(DlqCommand::Show(args)) => cmd_dlq::show(&services, args, json).await,
        Command::Dlq(DlqCommand::Replay(args)) => cmd_replay::run(&services, args, json).await,
        Command::Lag(args) => cmd_lag::run(&services, args, json).await,
    }
}
