//! The gateway's life beside the broker: [`Gateway::bind`] listens where `[http] listen`
//! says (an error then stops the broker: the operator asked for it), [`Gateway::run`]
//! serves and follows each reload's `[http] listen`, and stops with the broker.
//!
//! - A reload that changes the address binds the new one first, then closes the old
//!   listener; if the new one cannot be bound the old one stays and a warning says why. A
//!   reload that removes `listen` stops the gateway; one that adds it starts it.
//! - Once the broker's graceful shutdown begins, every endpoint answers 503 (`/health`
//!   included) for [`SHUTDOWN_GRACE`], long polls under way end with 503, then the listener
//!   closes and requests in flight finish.
//! - Server-side subscriptions live across moves; their idle sweep runs here.

use std::net::SocketAddr;
use std::time::Duration;

use mycelium_broker::BrokerHandle;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::router::router;
use crate::state::AppState;

/// How long the gateway answers 503 after the shutdown began, before its listener closes,
/// so that a load balancer's health check sees the broker leave.
pub const SHUTDOWN_GRACE: Duration = Duration::from_millis(500);

/// Why the gateway could not listen.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// `[http] listen` is not an IP address and port (the config's validation prevents it).
    #[error("[http] listen = \"{listen}\" is not an IP address and port")]
    BadAddress {
        /// The configured text.
        listen: String,
    },
    /// The address could not be bound.
    #[error("the HTTP gateway cannot listen on {listen} ([http] listen): {source}")]
    Bind {
        /// The configured text.
        listen: String,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
}

/// The HTTP gateway of one broker run; see the module's contract.
#[derive(Debug)]
pub struct Gateway {
    state: AppState,
    /// The listener bound by [`Gateway::bind`], with the `listen` text it was bound for.
    listener: Option<(String, TcpListener)>,
}

/// A listener being served.
#[derive(Debug)]
struct Serving {
    listen: String,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Gateway {
    /// A gateway over `handle`, listening now where `[http] listen` says (not at all when
    /// unset). Call it on the runtime that will run it.
    pub async fn bind(handle: BrokerHandle) -> Result<Gateway, BindError> {
        let listen = handle.config().http.listen.clone();
        let listener = match listen {
            Some(listen) => Some((listen.clone(), bind(&listen).await?)),
            None => None,
        };
        Ok(Gateway {
            state: AppState::new(handle),
            listener,
        })
    }

    /// Where the gateway listens now, if it does (the port the system chose for `:0`).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener
            .as_ref()
            .and_then(|(_, listener)| listener.local_addr().ok())
    }

    /// The router alone, for serving it elsewhere (and for tests).
    pub fn router(&self) -> axum::Router {
        router(self.state.clone())
    }

    /// Serves until the broker stops, following `[http]` through every reload.
    pub async fn run(self) {
        let Gateway { state, listener } = self;
        let handle = state.handle.clone();
        let mut changes = handle.config_changes();
        changes.borrow_and_update();
        let mut serving = listener.map(|(listen, listener)| start(&state, listen, listener));
        let sweeper = tokio::spawn(sweep_idle_subscriptions(state.clone()));
        loop {
            tokio::select! {
                _ = handle.stopping() => break,
                changed = changes.changed() => {
                    if changed.is_err() {
                        // The broker is gone without a shutdown signal: nothing to follow.
                        handle.stopping().await;
                        break;
                    }
                    let listen = changes.borrow_and_update().http.listen.clone();
                    serving = follow(&state, serving, listen).await;
                }
            }
        }
        if serving.is_some() {
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        }
        sweeper.abort();
        if let Some(serving) = serving {
            stop(serving).await;
        }
    }
}

/// Binds `listen`.
async fn bind(listen: &str) -> Result<TcpListener, BindError> {
    let address: SocketAddr = listen.parse().map_err(|_| BindError::BadAddress {
        listen: listen.to_owned(),
    })?;
    TcpListener::bind(address)
        .await
        .map_err(|source| BindError::Bind {
            listen: listen.to_owned(),
            source,
        })
}

/// Serves `listener` in a task of its own.
fn start(state: &AppState, listen: String, listener: TcpListener) -> Serving {
    let address = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| listen.clone());
    tracing::info!(address = %address, "HTTP gateway listening on http://{address}");
    let stop = CancellationToken::new();
    let app = router(state.clone());
    let signal = stop.clone().cancelled_owned();
    let task = tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app)
            .with_graceful_shutdown(signal)
            .await
        {
            tracing::warn!(address = %address, %error, "the HTTP gateway stopped serving");
        }
    });
    Serving { listen, stop, task }
}

/// Stops serving, letting requests in flight finish (each is bounded by `max_wait_ms`).
async fn stop(serving: Serving) {
    serving.stop.cancel();
    let _ = serving.task.await;
}

/// Applies a reload's `[http] listen` to what is served.
async fn follow(
    state: &AppState,
    serving: Option<Serving>,
    listen: Option<String>,
) -> Option<Serving> {
    match (serving, listen) {
        (Some(serving), Some(listen)) if serving.listen == listen => Some(serving),
        (serving, Some(listen)) => match bind(&listen).await {
            Ok(listener) => {
                if let Some(old) = serving {
                    tracing::info!(from = %old.listen, to = %listen, "HTTP gateway moving");
                    // Requests in flight on the old listener finish in its task.
                    old.stop.cancel();
                }
                Some(start(state, listen, listener))
            }
            Err(error) => {
                match &serving {
                    Some(old) => {
                        tracing::warn!(%error, "keeping the HTTP gateway on {}", old.listen)
                    }
                    None => tracing::warn!(%error, "the HTTP gateway stays off"),
                }
                serving
            }
        },
        (Some(serving), None) => {
            tracing::info!(address = %serving.listen, "HTTP gateway stopped ([http] listen removed)");
            serving.stop.cancel();
            None
        }
        (None, None) => None,
    }
}

/// Removes the server-side subscriptions nobody consumes from, under the timeout in force
/// at each round.
async fn sweep_idle_subscriptions(state: AppState) {
    loop {
        let idle_ms = state.http().subscription_idle_timeout_ms.max(1);
        let period = Duration::from_millis((idle_ms / 4).max(1)).min(Duration::from_secs(1));
        tokio::time::sleep(period).await;
        let removed = state.subscriptions.sweep(idle_ms);
        if removed > 0 {
            tracing::info!(removed, idle_ms, "removed idle HTTP subscriptions");
        }
    }
}
