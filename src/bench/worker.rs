//! One worker process of a benchmark: publisher, subscriber, echo or pinger.

use std::io::BufRead;
use std::process::ExitCode;

use mycelium_client::Client;

use crate::output::outln;
use crate::socket::{client_runtime, Transport};

use super::args::{Role, WorkerArgs};
use super::{durable, request, shm, uds};

pub(crate) fn worker(args: WorkerArgs) -> anyhow::Result<ExitCode> {
    if args.transport == Transport::Shm {
        let result = shm::worker(&args)?;
        outln!("result {}", serde_json::to_string(&result)?);
        return Ok(ExitCode::SUCCESS);
    }
    let stop = stop_signal_from_stdin();
    let result = client_runtime()?.block_on(async {
        let client = Client::connect(&args.socket)
            .await
            .map_err(crate::report::connect_failed)?;
        let result = match args.role {
            Role::Publisher => uds::run_publisher(&client, &args).await?,
            Role::Subscriber => uds::run_subscriber(&client, &args, stop).await?,
            Role::Echo => uds::run_echo(&client, &args, stop).await?,
            Role::Pinger => uds::run_pinger(&client, &args).await?,
            Role::Requester => request::run_requester(&client, &args).await?,
            Role::Responder => request::run_responder(&client, &args, stop).await?,
            Role::DurablePublisher => durable::run_publisher(&client, &args, false).await?,
            Role::DurableConfirmer => durable::run_publisher(&client, &args, true).await?,
            Role::Replayer => durable::run_replayer(&client, &args).await?,
            Role::GroupMember => durable::run_group_member(&client, &args, stop).await?,
        };
        client.close().await?;
        anyhow::Ok(result)
    })?;
    outln!("result {}", serde_json::to_string(&result)?);
    Ok(ExitCode::SUCCESS)
}

/// Resolves when stdin reaches EOF or a line arrives: how the orchestrator says "stop".
fn stop_signal_from_stdin() -> tokio::sync::oneshot::Receiver<()> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::stdin().lock().read_line(&mut line);
        let _ = tx.send(());
    });
    rx
}
