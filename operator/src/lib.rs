//! canvaschat-operator: reconciles CanvasChat resources into running chats.

pub mod apply;
pub mod cli;
pub mod controller;
pub mod metrics;
pub mod operator;
pub mod optional;
pub mod render;
pub mod resources;
pub mod status;
pub mod stores;
pub mod telemetry;
pub mod yaml;

use std::process::ExitCode;

/// Entry point of `canvaschat-operator run`.
pub fn run(args: cli::RunArgs) -> ExitCode {
    telemetry::init(args.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(operator::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "canvaschat-operator stopped");
            ExitCode::FAILURE
        }
    }
}
