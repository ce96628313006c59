//! `run`: connect, serve metrics and probes, take the leader lease, run the controller, and
//! shut down cleanly on SIGTERM/SIGINT.

use std::sync::Arc;
use std::time::Duration;

use canvaschat_crds::CanvasChat;
use kube::api::ListParams;
use kube::{Api, Client};
use kube_lease_manager::LeaseManagerBuilder;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::cli::RunArgs;
use crate::controller::{self, Settings};
use crate::metrics::{self, Metrics};

/// Seconds a lease stays valid without renewal, and how early the holder renews it.
const LEASE_DURATION_SECONDS: u64 = 15;
const LEASE_GRACE_SECONDS: u64 = 5;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot build a Kubernetes client from KUBECONFIG or the in-cluster config: {0}")]
    Client(#[source] kube::Error),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error(
        "the CanvasChat CRD is not installed (install the Helm chart, or run `canvaschat-operator crd | kubectl apply --server-side -f -`)"
    )]
    CrdMissing,
    #[error("cannot reach the API server to list CanvasChats: {0}")]
    Api(#[source] kube::Error),
    #[error("leader election failed: {0}")]
    Lease(#[from] kube_lease_manager::LeaseManagerError),
    #[error("lost the leader lease; exiting so a fresh process can campaign again")]
    LeadershipLost,
}

/// Cancel `stop` on SIGTERM or SIGINT.
fn stop_on_signals(stop: CancellationToken) {
    tokio::spawn(async move {
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(e) => {
                    warn!(error = %e, "cannot listen for SIGTERM");
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::select! {
            _ = terminate => info!("SIGTERM received, shutting down"),
            _ = tokio::signal::ctrl_c() => info!("SIGINT received, shutting down"),
            _ = stop.cancelled() => return,
        }
        stop.cancel();
    });
}

/// List CanvasChats once, in the watched scope (a namespaced install may not list
/// cluster-wide), so a missing CRD or missing permissions fail fast with a clear message.
async fn check_crd(client: &Client, namespace: Option<&str>) -> Result<(), RunError> {
    let chats: Api<CanvasChat> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    match chats.list(&ListParams::default().limit(1)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Err(RunError::CrdMissing),
        Err(e) => Err(RunError::Api(e)),
    }
}

pub async fn run(args: RunArgs) -> Result<(), RunError> {
    let stop = CancellationToken::new();
    stop_on_signals(stop.clone());
    let metrics = Arc::new(Metrics::new());
    let server = metrics::serve(args.metrics_addr, metrics.clone(), stop.clone())
        .await
        .map_err(|source| RunError::Listen {
            addr: args.metrics_addr,
            source,
        })?;

    let result = run_controller(&args, metrics, stop.clone()).await;
    stop.cancel();
    match server.await {
        Ok(Err(e)) => warn!(error = %e, "metrics server stopped with an error"),
        Err(e) => warn!(error = %e, "metrics server task failed"),
        Ok(Ok(())) => {}
    }
    result
}

async fn run_controller(
    args: &RunArgs,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) -> Result<(), RunError> {
    let client = Client::try_default().await.map_err(RunError::Client)?;
    check_crd(&client, args.namespace.as_deref()).await?;
    metrics.set_ready();
    let settings = Settings {
        resync: Duration::from_secs(args.resync_seconds),
        gateway_image: args.gateway_image.clone(),
    };
    let namespace = args.namespace.as_deref();
    info!(
        namespace = namespace.unwrap_or("<all>"),
        leader_election = args.leader_election,
        gateway_image = %args.gateway_image,
        "starting canvaschat-operator"
    );

    if !args.leader_election {
        metrics.set_leader(true);
        controller::run(client, metrics, settings, namespace, stop).await;
        return Ok(());
    }

    let mut builder = LeaseManagerBuilder::new(client.clone(), &args.lease_name)
        .with_namespace(&args.lease_namespace)
        .with_duration(LEASE_DURATION_SECONDS)
        .with_grace(LEASE_GRACE_SECONDS)
        .with_field_manager("canvaschat-operator-lease");
    if let Ok(pod) = std::env::var("POD_NAME") {
        builder = builder.with_identity(pod);
    }
    let manager = builder.build().await?;
    let (mut leader, lease_task) = manager.watch().await;
    info!(lease = %args.lease_name, namespace = %args.lease_namespace, "waiting for the leader lease");

    let acquired = loop {
        if *leader.borrow_and_update() {
            break true;
        }
        tokio::select! {
            changed = leader.changed() => if changed.is_err() { break false },
            _ = stop.cancelled() => break false,
        }
    };
    let mut lost = false;
    if acquired {
        info!("acquired the leader lease; reconciling");
        metrics.set_leader(true);
        // Stop the controller when the lease is lost or a signal arrives.
        let controller_stop = stop.child_token();
        let watch_stop = controller_stop.clone();
        let watcher = tokio::spawn(async move {
            loop {
                tokio::select! {
                    changed = leader.changed() => {
                        if changed.is_err() || !*leader.borrow_and_update() {
                            watch_stop.cancel();
                            return true;
                        }
                    }
                    _ = watch_stop.cancelled() => return false,
                }
            }
        });
        controller::run(
            client,
            metrics.clone(),
            settings,
            namespace,
            controller_stop.clone(),
        )
        .await;
        controller_stop.cancel();
        // Joining the watcher drops the last receiver, which makes the lease task release
        // the lease for the next replica.
        lost = watcher.await.unwrap_or(true);
        metrics.set_leader(false);
    } else {
        drop(leader);
    }
    match tokio::time::timeout(Duration::from_secs(5), lease_task).await {
        Ok(Ok(Ok(_))) => info!("released the leader lease"),
        Ok(Ok(Err(e))) => warn!(error = %e, "could not release the leader lease"),
        Ok(Err(e)) => warn!(error = %e, "lease task failed"),
        Err(_) => warn!("timed out releasing the leader lease"),
    }
    if lost {
        error!("lost the leader lease");
        return Err(RunError::LeadershipLost);
    }
    Ok(())
}
