//! kafka-orm's fault-injection suite: real processes, real brokers, real crashes.
//!
//! ```text
//! ./scripts/chaos [--quick] [--seed N] [--events N]
//! ```
//!
//! `scripts/chaos` builds this program in release mode, starts a private three-node KRaft
//! cluster and a private PostgreSQL, and runs `chaos run`, which starts the services as
//! separate OS processes of this same binary:
//!
//! | subcommand | what it is |
//! | --- | --- |
//! | `producer` | business row + `chaos_committed (key, seq)` + `publish` in ONE transaction, per-key sequence numbers, steady rate |
//! | `relay NAME` | `orm.outbox_relay().instance_id(NAME).spawn().await` until SIGTERM |
//! | `consumer NAME` | inbox handler inserting a `chaos_applied` row (no unique constraint) per event; rejects poison; `dlq` on the topic |
//! | `poison ..` | undecodable, handler-rejected and oversize messages, each recorded in `chaos_poison` |
//! | `check` | topic (read_committed, from the beginning) + DLQ + database → lost, applied twice, order, duplicates, concurrent relays, DLQ vs poison, outbox left |
//! | `run` | the driver: the seeded schedule of faults, recovery times, `check`, `target/chaos/latest.json` |
//!
//! The faults (seeded order and parameters): SIGKILL of a relay right after a burst
//! (mid-batch) and of consumers (one right after it dead-lettered a message), each
//! restarted under the same name; a consumer joining and leaving; SIGKILL + restart of the
//! broker leading most partitions; that broker frozen (SIGSTOP) past the relays' message
//! timeout; a relay frozen past its lease TTL (a zombie that wakes up); a PostgreSQL fast
//! restart; poison. Exit code 1 on any loss, double application, order violation among
//! first deliveries or applications, concurrent-relay violation (relay epoch header), DLQ
//! count different from the poison sent for it, or outbox rows left.

mod check;
mod common;
mod driver;
mod events;
mod procs;
mod services;

use std::path::PathBuf;

use common::{Env, Result, say};

fn usage() -> ! {
    eprintln!(
        "usage: chaos run [--quick] [--seed N] [--events N] [--out FILE]\n\
         \x20      chaos producer [--rate R] [--keys K] [--tasks T] [--events N] [--seed N]\n\
         \x20      chaos relay NAME | chaos consumer [--anonymous] NAME\n\
         \x20      chaos poison [--undecodable N] [--rejected N] [--oversize-outbox N] [--oversize-direct N] [--tag T]\n\
         \x20      chaos check [--out FILE]\n\
         needs KAFKA_BOOTSTRAP_SERVERS, DATABASE_URL (and CHAOS_NAMESPACE); ./scripts/chaos sets them"
    );
    std::process::exit(2)
}

#[derive(Default)]
struct Args {
    rest: Vec<String>,
}

impl Args {
    fn flag(&mut self, name: &str) -> bool {
        match self.rest.iter().position(|a| a == name) {
            Some(i) => {
                self.rest.remove(i);
                true
            }
            None => false,
        }
    }

    fn value(&mut self, name: &str) -> Option<String> {
        let prefix = format!("{name}=");
        if let Some(i) = self.rest.iter().position(|a| a.starts_with(&prefix)) {
            let v = self.rest.remove(i)[prefix.len()..].to_string();
            return Some(v);
        }
        let i = self.rest.iter().position(|a| a == name)?;
        if i + 1 >= self.rest.len() {
            eprintln!("chaos: `{name}` needs a value");
            usage()
        }
        self.rest.remove(i);
        Some(self.rest.remove(i))
    }

    fn number<T: std::str::FromStr>(&mut self, name: &str) -> Option<T> {
        self.value(name).map(|v| {
            v.parse().unwrap_or_else(|_| {
                eprintln!("chaos: `{name}` must be a number, got `{v}`");
                usage()
            })
        })
    }

    fn positional(&mut self) -> Option<String> {
        let i = self.rest.iter().position(|a| !a.starts_with("--"))?;
        Some(self.rest.remove(i))
    }

    fn done(self) {
        if let Some(a) = self.rest.first() {
            eprintln!("chaos: unknown argument `{a}`");
            usage()
        }
    }
}

fn main() {
    let mut all: Vec<String> = std::env::args().skip(1).collect();
    if all.is_empty() || all.iter().any(|a| a == "-h" || a == "--help") {
        usage()
    }
    let cmd = all.remove(0);
    let mut args = Args { rest: all };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("building the tokio runtime");
    let code = runtime.block_on(async move {
        match dispatch(&cmd, &mut args).await {
            Ok(code) => code,
            Err(e) => {
                say(&cmd, format!("error: {e}"));
                1
            }
        }
    });
    // Background tasks (librdkafka threads, pools) must not hold the exit up.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    std::process::exit(code)
}

async fn dispatch(cmd: &str, args: &mut Args) -> Result<i32> {
    match cmd {
        "run" => {
            let run = driver::RunArgs {
                quick: args.flag("--quick"),
                seed: args.number("--seed").unwrap_or(1),
                events: args.number("--events"),
                out: args.value("--out").map(PathBuf::from),
            };
            std::mem::take(args).done();
            common::logging::install("chaos");
            driver::run(run).await
        }
        "producer" => {
            let p = services::ProducerArgs {
                rate: args.number("--rate").unwrap_or(200.0),
                keys: args.number("--keys").unwrap_or(100),
                tasks: args.number("--tasks").unwrap_or(4),
                events: args.number("--events").unwrap_or(0),
                seed: args.number("--seed").unwrap_or(1),
            };
            std::mem::take(args).done();
            common::logging::install("producer");
            services::producer(Env::from_env()?, p).await?;
            Ok(0)
        }
        "relay" | "consumer" => {
            let anonymous = args.flag("--anonymous");
            let name = args.positional().unwrap_or_else(|| usage());
            std::mem::take(args).done();
            common::logging::install(&name);
            let env = Env::from_env()?;
            if cmd == "relay" {
                services::relay(env, name).await?;
            } else {
                services::consumer(env, name, !anonymous).await?;
            }
            Ok(0)
        }
        "poison" => {
            let p = services::PoisonArgs {
                tag: args.value("--tag").unwrap_or_default(),
                undecodable: args.number("--undecodable").unwrap_or(0),
                rejected: args.number("--rejected").unwrap_or(0),
                oversize_outbox: args.number("--oversize-outbox").unwrap_or(0),
                oversize_direct: args.number("--oversize-direct").unwrap_or(0),
            };
            std::mem::take(args).done();
            common::logging::install("poison");
            services::poison(Env::from_env()?, p).await?;
            Ok(0)
        }
        "check" => {
            let out = args.value("--out").map(PathBuf::from);
            std::mem::take(args).done();
            let env = Env::from_env()?;
            let db =
                common::connect(&env.database_url, 2, std::time::Duration::from_secs(30)).await?;
            let figures = check::check(&env, &db).await?;
            print!("{}", check::table(&figures));
            let failures = figures.failures();
            for f in &failures {
                println!("  FAILED: {f}");
            }
            if let Some(out) = out {
                let doc = serde_json::json!({
                    "figures": figures.to_json(),
                    "failures": failures,
                    "passed": failures.is_empty(),
                });
                std::fs::write(&out, serde_json::to_string_pretty(&doc)? + "\n")?;
            }
            Ok(if failures.is_empty() { 0 } else { 1 })
        }
        _ => usage(),
    }
}
