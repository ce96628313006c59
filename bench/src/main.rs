//! `canvaschat-bench`: the load generator behind `bench/run.sh`. Each subcommand runs one
//! scenario against servers on 127.0.0.1 and prints one JSON line; `table` turns those lines
//! into the comparison table. Every loop is bounded in count and in time.

mod client;
mod idle;
mod load;
mod protocol;
mod redis_ceiling;
mod report;
mod saturation;
mod stats;
mod storm;

use std::io::BufRead;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use protocol::Target;
use stats::Watched;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot connect to {url}: {source}")]
    Connect {
        url: String,
        source: Box<tokio_tungstenite::tungstenite::Error>,
    },
    #[error("WebSocket error on {url}: {source}")]
    WebSocket {
        url: String,
        source: Box<tokio_tungstenite::tungstenite::Error>,
    },
    #[error("{url} refused the client with error {code:?}")]
    Refused { url: String, code: String },
    #[error("{url} closed the connection before it was ready")]
    ClosedEarly { url: String },
    #[error("timed out {what}")]
    Timeout { what: String },
    #[error("process {pid} is gone; is the server running?")]
    Gone { pid: u32 },
    #[error("could not send SIGTERM to process {pid}")]
    Signal { pid: u32 },
    #[error("redis: {0}")]
    Redis(#[from] fred::error::Error),
    #[error("latency histogram: {0}")]
    Histogram(#[from] hdrhistogram::CreationError),
    #[error("a client task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{file}:{line}: not a result line: {source}")]
    BadResult {
        file: PathBuf,
        line: usize,
        source: serde_json::Error,
    },
    #[error("{0}")]
    Usage(String),
}

impl Error {
    fn ws(url: &str) -> impl Fn(tokio_tungstenite::tungstenite::Error) -> Error + '_ {
        move |source| Error::WebSocket {
            url: url.to_owned(),
            source: Box::new(source),
        }
    }
}

#[derive(Parser)]
#[command(version, about = "CanvasChat load generator (see bench/README.md)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Chat load: clients across replicas and channels, a fixed send rate, delivery latency.
    Load(LoadArgs),
    /// The load above with a SIGTERM to one replica part-way: drain time and lost messages.
    Drain {
        #[command(flatten)]
        load: LoadArgs,
        /// PID of the replica to stop.
        #[arg(long)]
        pid: u32,
        /// Which --url (0-based) that replica serves.
        #[arg(long, default_value_t = 1)]
        replica: u32,
        /// Seconds after the load starts.
        #[arg(long, default_value_t = 3.0)]
        after: f64,
    },
    /// Idle connections on one server and the memory each costs.
    Idle(IdleArgs),
    /// Connect/disconnect storm: joins per second.
    Storm(StormArgs),
    /// The same fan-out straight through Redis pub/sub (the ceiling).
    Redis(RedisArgs),
    /// The chat load at rising --rate (the start) until p99 or delivery leaves the limits.
    SaturateLoad {
        #[command(flatten)]
        load: LoadArgs,
        #[command(flatten)]
        ramp: RampArgs,
    },
    /// Storms with rising --workers (the start) until join p99 or success leaves the limits.
    SaturateStorm {
        #[command(flatten)]
        storm: StormArgs,
        #[command(flatten)]
        ramp: RampArgs,
    },
    /// Print the Markdown comparison table of result lines (files of JSON lines).
    Table { files: Vec<PathBuf> },
}

#[derive(Args, Clone)]
struct Common {
    /// Which protocol the servers speak.
    #[arg(long, value_enum)]
    target: Target,
    /// Server base URL, e.g. ws://127.0.0.1:8080; repeat once per replica.
    #[arg(long = "url", required = true)]
    urls: Vec<String>,
    /// Server processes to measure, NAME=PID; repeatable.
    #[arg(long = "watch")]
    watch: Vec<Watched>,
    /// Clock ticks per second of /proc/<pid>/stat (`getconf CLK_TCK`).
    #[arg(long, default_value_t = 100)]
    clock_ticks: u64,
    /// Seconds a client may take to connect and join its channel.
    #[arg(long, default_value_t = 10.0)]
    connect_timeout: f64,
    /// Connections opened at once while ramping up.
    #[arg(long, default_value_t = 64)]
    connect_concurrency: usize,
}

#[derive(Args, Clone)]
struct LoadArgs {
    #[command(flatten)]
    common: Common,
    /// Scenario name in the table.
    #[arg(long)]
    scenario: String,
    #[arg(long, default_value_t = 101)]
    clients: u32,
    #[arg(long, default_value_t = 1)]
    channels: usize,
    /// The first N clients send, in turn (default: all).
    #[arg(long)]
    senders: Option<u32>,
    /// Messages sent per second by all senders together.
    #[arg(long, default_value_t = 50.0)]
    rate: f64,
    /// Seconds of sending (at most 300).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Payload bytes of every message.
    #[arg(long, default_value_t = 100)]
    size: usize,
}

#[derive(Args, Clone)]
struct IdleArgs {
    #[command(flatten)]
    common: Common,
    /// Scenario name in the table.
    #[arg(long, default_value = "idle connections")]
    scenario: String,
    #[arg(long, default_value_t = 10_000)]
    connections: u32,
    #[arg(long, default_value_t = 100)]
    channels: usize,
    /// Seconds to hold the connections before reading memory.
    #[arg(long, default_value_t = 3.0)]
    hold: f64,
}

#[derive(Args, Clone)]
struct StormArgs {
    #[command(flatten)]
    common: Common,
    /// Scenario name in the table.
    #[arg(long, default_value = "connect/disconnect storm")]
    scenario: String,
    #[arg(long, default_value_t = 32)]
    workers: u32,
    #[arg(long, default_value_t = 10)]
    channels: usize,
    #[arg(long, default_value_t = 20_000)]
    max_joins: u64,
    /// Seconds (at most 300).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
}

#[derive(Args, Clone)]
struct RedisArgs {
    #[arg(long)]
    scenario: String,
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    #[arg(long, default_value_t = 1)]
    channels: usize,
    #[arg(long, default_value_t = 100)]
    subscribers_per_channel: u32,
    #[arg(long, default_value_t = 50.0)]
    rate: f64,
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    #[arg(long, default_value_t = 100)]
    size: usize,
    #[arg(long = "watch")]
    watch: Vec<Watched>,
    #[arg(long, default_value_t = 100)]
    clock_ticks: u64,
}

#[derive(Args, Clone)]
struct RampArgs {
    /// Each step offers this many times the load of the one before.
    #[arg(long, default_value_t = 1.5)]
    factor: f64,
    /// Steps at most (the ramp stops at the first step out of limits).
    #[arg(long, default_value_t = 8)]
    steps: u32,
    /// A step keeps up while its p99 latency stays at or under this.
    #[arg(long, default_value_t = 50.0)]
    max_p99_ms: f64,
    /// ... and while at least this percentage of expected deliveries (or joins) succeed.
    #[arg(long, default_value_t = 99.0)]
    min_success_percent: f64,
}

impl RampArgs {
    fn spec(&self, start: f64) -> Result<saturation::RampSpec, Error> {
        if !(self.factor.is_finite() && self.factor > 1.0 && self.factor <= 10.0) {
            return Err(Error::Usage("--factor must be in (1, 10]".to_owned()));
        }
        if !(1..=20).contains(&self.steps) {
            return Err(Error::Usage("--steps must be 1..=20".to_owned()));
        }
        Ok(saturation::RampSpec {
            start,
            factor: self.factor,
            steps: self.steps,
            limits: saturation::Limits {
                p99_ms: self.max_p99_ms,
                min_success_percent: self.min_success_percent,
            },
        })
    }
}

/// Durations from the command line, bounded so no run can go on for long.
fn bounded_seconds(seconds: f64) -> Result<Duration, Error> {
    if seconds.is_finite() && (0.0..=300.0).contains(&seconds) {
        Ok(Duration::from_secs_f64(seconds))
    } else {
        Err(Error::Usage(format!(
            "durations must be 0..=300 seconds, got {seconds}"
        )))
    }
}

fn load_spec(args: LoadArgs, drain: Option<load::DrainSpec>) -> Result<load::LoadSpec, Error> {
    if args.size < 32 {
        return Err(Error::Usage("--size must be at least 32 bytes".to_owned()));
    }
    if !(args.rate.is_finite() && args.rate >= 0.0 && args.rate <= 100_000.0) {
        return Err(Error::Usage("--rate must be 0..=100000".to_owned()));
    }
    Ok(load::LoadSpec {
        scenario: args.scenario,
        target: args.common.target,
        urls: args.common.urls,
        clients: args.clients,
        channels: args.channels,
        senders: args.senders.unwrap_or(args.clients),
        rate: args.rate,
        duration: bounded_seconds(args.duration)?,
        payload_size: args.size,
        connect_timeout: bounded_seconds(args.common.connect_timeout)?,
        connect_concurrency: args.common.connect_concurrency,
        watch: args.common.watch,
        clock_ticks: args.common.clock_ticks,
        drain,
    })
}

fn storm_spec(args: StormArgs) -> Result<storm::StormSpec, Error> {
    Ok(storm::StormSpec {
        scenario: args.scenario,
        target: args.common.target,
        urls: args.common.urls,
        workers: args.workers,
        channels: args.channels,
        max_joins: args.max_joins,
        duration: bounded_seconds(args.duration)?,
        connect_timeout: bounded_seconds(args.common.connect_timeout)?,
        watch: args.common.watch,
        clock_ticks: args.common.clock_ticks,
    })
}

async fn execute(command: Command) -> Result<Vec<report::Result>, Error> {
    let result = match command {
        Command::Load(args) => load::run(load_spec(args, None)?).await?,
        Command::Drain {
            load,
            pid,
            replica,
            after,
        } => {
            let drain = load::DrainSpec {
                pid,
                replica,
                after: bounded_seconds(after)?,
            };
            load::run(load_spec(load, Some(drain))?).await?
        }
        Command::Idle(args) => {
            let server = args.common.watch.first().cloned().ok_or_else(|| {
                Error::Usage("idle needs --watch NAME=PID of the server".to_owned())
            })?;
            idle::run(idle::IdleSpec {
                scenario: args.scenario,
                target: args.common.target,
                url: args.common.urls[0].clone(),
                connections: args.connections,
                channels: args.channels,
                hold: bounded_seconds(args.hold)?,
                connect_timeout: bounded_seconds(args.common.connect_timeout)?,
                connect_concurrency: args.common.connect_concurrency,
                server,
            })
            .await?
        }
        Command::Storm(args) => storm::run(storm_spec(args)?).await?,
        Command::SaturateLoad { load, ramp } => {
            let ramp = ramp.spec(load.rate)?;
            saturation::messages(load_spec(load, None)?, ramp).await?
        }
        Command::SaturateStorm { storm, ramp } => {
            let ramp = ramp.spec(f64::from(storm.workers))?;
            saturation::connects(storm_spec(storm)?, ramp).await?
        }
        Command::Redis(args) => {
            redis_ceiling::run(redis_ceiling::RedisSpec {
                scenario: args.scenario,
                url: args.redis_url,
                channels: args.channels,
                subscribers_per_channel: args.subscribers_per_channel,
                rate: args.rate,
                duration: bounded_seconds(args.duration)?,
                payload_size: args.size,
                watch: args.watch,
                clock_ticks: args.clock_ticks,
            })
            .await?
        }
        Command::Table { files } => {
            let mut results = Vec::new();
            for file in files {
                let reader = std::io::BufReader::new(std::fs::File::open(&file)?);
                for (number, line) in reader.lines().enumerate() {
                    let line = line?;
                    if line.trim().is_empty() {
                        continue;
                    }
                    results.push(serde_json::from_str(&line).map_err(|source| {
                        Error::BadResult {
                            file: file.clone(),
                            line: number + 1,
                            source,
                        }
                    })?);
                }
            }
            print!("{}", report::table(&results));
            return Ok(Vec::new());
        }
    };
    Ok(vec![result])
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match execute(cli.command).await {
        Ok(results) => {
            for result in results {
                match serde_json::to_string(&result) {
                    Ok(line) => println!("{line}"),
                    Err(error) => {
                        eprintln!("canvaschat-bench: {error}");
                        return std::process::ExitCode::FAILURE;
                    }
                }
            }
            std::process::ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("canvaschat-bench: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
