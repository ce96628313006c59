//! Command line of `canvaschat-operator`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{ArgAction, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "canvaschat-operator",
    version,
    about = "Kubernetes operator for CanvasChat resources",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Flags of `run`, also accepted without the subcommand (`run` is the default).
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the controller against the current kubeconfig or in-cluster config (default).
    Run(RunArgs),
    /// Print the CanvasChat CustomResourceDefinition as YAML.
    Crd,
    /// Print every object the operator would apply for the CanvasChat(s) in FILE, without a
    /// cluster.
    Render {
        /// File with one or more CanvasChat documents; `-` reads stdin.
        #[arg(short = 'f', long = "filename", value_name = "FILE")]
        file: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Watch CanvasChats in this namespace only. Default: all namespaces.
    #[arg(long, env = "CANVASCHAT_WATCH_NAMESPACE")]
    pub namespace: Option<String>,

    /// Take a coordination.k8s.io Lease before reconciling, so several replicas are safe
    /// (true/false, on/off; a bare `--leader-election` means on).
    #[arg(
        long,
        env = "CANVASCHAT_LEADER_ELECTION",
        default_value = "true",
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new(),
        action = ArgAction::Set
    )]
    pub leader_election: bool,

    /// Namespace of the leader-election Lease.
    #[arg(long, env = "CANVASCHAT_LEASE_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,

    /// Name of the leader-election Lease.
    #[arg(
        long,
        env = "CANVASCHAT_LEASE_NAME",
        default_value = "canvaschat-operator"
    )]
    pub lease_name: String,

    /// Address serving /metrics, /healthz and /readyz.
    #[arg(long, env = "CANVASCHAT_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,

    /// Log format; the level comes from RUST_LOG (default info).
    #[arg(
        long,
        env = "CANVASCHAT_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,

    /// Seconds between periodic re-reconciles of every CanvasChat.
    #[arg(long, env = "CANVASCHAT_RESYNC_SECONDS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(10..=86_400))]
    pub resync_seconds: u64,

    /// Gateway image of every CanvasChat that does not set spec.gateway.image. The chart sets
    /// the release matching the operator, so upgrading the operator rolls those chats.
    #[arg(long, env = "CANVASCHAT_GATEWAY_IMAGE", default_value_t = canvaschat_crds::defaults::gateway_image())]
    pub gateway_image: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_is_the_default_and_takes_flags() {
        let cli = Cli::try_parse_from([
            "canvaschat-operator",
            "--namespace",
            "chat",
            "--leader-election",
            "false",
        ])
        .expect("parses");
        assert!(cli.command.is_none());
        assert_eq!(cli.run.namespace.as_deref(), Some("chat"));
        assert!(!cli.run.leader_election);

        let cli = Cli::try_parse_from(["canvaschat-operator", "run", "--leader-election=off"])
            .expect("parses");
        let Some(Command::Run(args)) = cli.command else {
            panic!("expected run");
        };
        assert!(!args.leader_election);

        let cli = Cli::try_parse_from([
            "canvaschat-operator",
            "run",
            "--leader-election",
            "--lease-namespace",
            "ops",
            "--metrics-addr",
            "127.0.0.1:9090",
            "--log-format",
            "json",
        ])
        .expect("parses");
        let Some(Command::Run(args)) = cli.command else {
            panic!("expected run");
        };
        assert!(args.leader_election);
        assert_eq!(args.lease_namespace, "ops");
        assert_eq!(args.metrics_addr.port(), 9090);
        assert_eq!(args.log_format, LogFormat::Json);
    }

    #[test]
    fn render_needs_a_file() {
        assert!(Cli::try_parse_from(["canvaschat-operator", "render"]).is_err());
        let cli =
            Cli::try_parse_from(["canvaschat-operator", "render", "-f", "x.yaml"]).expect("parses");
        assert!(matches!(cli.command, Some(Command::Render { .. })));
    }
}
