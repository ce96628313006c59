use std::process::ExitCode;

use canvaschat_gateway::{
    config::{Config, LogFormat},
    http,
    node::Node,
};
use clap::Parser;
use tracing_subscriber::EnvFilter;

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
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
    #[error("cannot install signal handler: {0}")]
    Signal(std::io::Error),
    #[error("server error: {0}")]
    Serve(std::io::Error),
}

async fn serve(config: Config) -> Result<(), ServeError> {
    let addr = config.listen;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    let app = Node::new(config)?;
    app.spawn_background_tasks();
    let local = listener.local_addr().map_err(ServeError::Serve)?;
    tracing::info!(
        listen = %local,
        broker = app.broker_name(),
        static_dir = ?app.config.static_dir,
        "canvaschat gateway listening; open http://{local}/"
    );

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
    axum::serve(listener, http::router(app))
        .with_graceful_shutdown(drained.cancelled_owned())
        .await
        .map_err(ServeError::Serve)?;
    let _ = drainer.await;
    tracing::info!("gateway stopped");
    Ok(())
}
