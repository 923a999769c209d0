//! The read routes' middleware: each read waits for a slot among
//! `api.query_max_concurrency`, runs with a [`Budget`] in its extensions, and is answered
//! 503 when its deadline passes first (in Prometheus' shape under `/prometheus`).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::limits::{Budget, Limits, Stop};
use crate::prom::PromError;
use crate::state::ApiState;

/// Raises the cancel flag when dropped, so blocking work stops; a request dropped before
/// its answer (the client went away) is counted as cancelled, one that finished is
/// counted by the stop its budget met, if any.
struct Guard {
    budget: Budget,
    limits: Arc<Limits>,
    finished: bool,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.budget.cancel();
        let stop = if self.finished {
            self.budget.stopped()
        } else {
            Some(self.budget.stop(Stop::Cancelled))
        };
        if let Some(stop) = stop {
            self.limits.count(stop);
        }
    }
}

/// One read holding a slot, counted in `meshscope_api_queries_in_flight` until dropped.
struct InFlight(prometheus_client::metrics::gauge::Gauge);

impl InFlight {
    fn enter(gauge: prometheus_client::metrics::gauge::Gauge) -> InFlight {
        gauge.inc();
        InFlight(gauge)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Middleware of the read routes: waits for a slot, runs the handler with a [`Budget`] in
/// its extensions, and answers 503 when the deadline passes first. A handler's blocking
/// work sees the cancel flag once the client disconnects or the deadline passes.
pub async fn bounded(State(state): State<ApiState>, mut req: Request, next: Next) -> Response {
    let budget = Budget::new(state.limits.config());
    let prometheus = req.uri().path().starts_with("/prometheus");
    req.extensions_mut().insert(budget.clone());
    let mut guard = Guard {
        budget: budget.clone(),
        limits: state.limits.clone(),
        finished: false,
    };
    let deadline = tokio::time::Instant::from_std(budget.deadline());
    let slots = state.limits.slots.clone();
    let in_flight = state.limits.in_flight.clone();
    let admitted = budget.clone();
    let run = async move {
        // The semaphore is never closed, so acquiring only waits.
        let _slot = slots.acquire().await;
        let _counted = InFlight::enter(in_flight);
        // A read whose deadline passed while it waited does not start.
        admitted.check().ok()?;
        Some(next.run(req).await)
    };
    let response = match tokio::time::timeout_at(deadline, run).await {
        Ok(Some(response)) => response,
        Ok(None) | Err(_) => {
            budget.stop(Stop::Timeout);
            let message = budget.message(Stop::Timeout);
            if prometheus {
                PromError::timeout(message).into_response()
            } else {
                ApiError::Timeout(message).into_response()
            }
        }
    };
    guard.finished = true;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropping_the_request_cancels_its_work() {
        let b = Budget::with_samples(10);
        let limits = Arc::new(Limits::default());
        drop(Guard {
            budget: b.clone(),
            limits: limits.clone(),
            finished: false,
        });
        assert_eq!(b.check(), Err(Stop::Cancelled));
        assert_eq!(limits.refused("cancelled"), 1);
    }
}
