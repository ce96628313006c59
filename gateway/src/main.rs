use std::{net::SocketAddr, process::ExitCode, time::Duration};

use canvaschat_gateway::{
    access::Access,
    auth,
    config::{Config, LogFormat},
    http,
    node::Node,
};
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// jemalloc rather than glibc's allocator: after a spike (10,000 connections closed) glibc
/// keeps the pages, so the pod's memory stays at its peak, while jemalloc's background
/// threads purge freed pages after its default decay (dirty pages 10 s, muzzy at once):
/// 44 MiB 15 s after 10,000 connections closed instead of 107 MiB, for about 0.3 KiB more
/// per open connection (bench/README.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}

#[derive(Parser)]
#[command(
    name = "canvaschat-gateway",
    version,
    about = "CanvasChat WebSocket gateway: canvas chat fan-out over Redis pub/sub, with presence"
)]
struct Cli {
    #[command(flatten)]
    config: Config,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Print an HS256 token signed with the secret in CANVASCHAT_JWT_HMAC_SECRET_FILE (for
    /// demos and tests).
    Token {
        /// The user id the token names.
        #[arg(long)]
        sub: String,
        /// The only channels the token may join (comma-separated; unset: any).
        #[arg(long, value_delimiter = ',')]
        channels: Option<Vec<String>>,
        /// Seconds the token stays valid.
        #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..=31_536_000))]
        ttl: u64,
    },
}

/// Prints a token for `canvaschat-gateway token`.
fn print_token(config: &Config, sub: &str, channels: Option<Vec<String>>, ttl: u64) -> ExitCode {
    let Some(secret_file) = config.auth_settings().hmac_secret_file else {
        eprintln!(
            "set CANVASCHAT_JWT_HMAC_SECRET_FILE (or --jwt-hmac-secret-file) to the secret to sign with"
        );
        return ExitCode::from(2);
    };
    match auth::mint(&secret_file, sub, channels, Duration::from_secs(ttl)) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("cannot mint a token: {error}");
            ExitCode::from(2)
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let Cli { config, command } = Cli::parse();
    if let Some(Command::Token { sub, channels, ttl }) = command {
        return print_token(&config, &sub, channels, ttl);
    }
    init_logging(config.log_format);
    let config = match config.validate() {
        Ok(config) => config,
        Err(error) => {
            tracing::error!(%error, "invalid configuration");
            return ExitCode::from(2);
        }
    };
    match serve(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "gateway failed");
            ExitCode::FAILURE
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Broker(#[from] canvaschat_gateway::broker::BrokerError),
    #[error(transparent)]
    Auth(#[from] canvaschat_gateway::auth::AuthConfigError),
    #[error("cannot install signal handler: {0}")]
    Signal(std::io::Error),
    #[error("server error: {0}")]
    Serve(std::io::Error),
}

async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, ServeError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })
}

async fn serve(config: Config) -> Result<(), ServeError> {
    let access = std::sync::Arc::new(Access::new(&config)?);
    let listener = bind(config.listen).await?;
    let admin_listener = bind(config.admin_listen).await?;
    let app = Node::new(config)?;
    app.spawn_background_tasks();
    let local = listener.local_addr().map_err(ServeError::Serve)?;
    let admin = admin_listener.local_addr().map_err(ServeError::Serve)?;
    tracing::info!(
        listen = %local,
        admin = %admin,
        auth = ?app.config.auth,
        broker = app.broker_name(),
        static_dir = ?app.config.static_dir,
        "canvaschat gateway listening; open http://{local}/ (metrics on http://{admin}/metrics)"
    );
    let admin_server = {
        let app = app.clone();
        // Metrics stay up through the drain and end with the process.
        tokio::spawn(async move {
            if let Err(error) = axum::serve(admin_listener, http::admin_router(app)).await {
                tracing::error!(%error, "admin listener failed");
            }
        })
    };

    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(ServeError::Signal)?;
    let drained = tokio_util::sync::CancellationToken::new();
    let drainer = {
        let app = app.clone();
        let drained = drained.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = sigterm.recv() => tracing::info!("SIGTERM received"),
                _ = tokio::signal::ctrl_c() => tracing::info!("interrupt received"),
            }
            app.drain().await;
            drained.cancel();
        })
    };
    // HTTP keeps answering during the drain so /ready can report 503 truthfully.
    axum::serve(
        listener,
        http::router(app, access).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(drained.cancelled_owned())
    .await
    .map_err(ServeError::Serve)?;
    let _ = drainer.await;
    admin_server.abort();
    tracing::info!("gateway stopped");
    Ok(())
}
