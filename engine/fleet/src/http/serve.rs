//! The accept loop of the daemons' HTTP listeners (the master's API, every
//! daemon's `/metrics`): HTTP/1.1 connections (hyper) under a cap, with
//! timeouts, so no caller can hold more than its share of the daemon. The
//! numbers below are the API's defaults (`api_limits`); the metrics
//! listener has smaller fixed ones ([`crate::metrics`]).
//!
//! - **Cap** (`api_limits.max_connections`, default 512): the daemon holds
//!   no more connections than that, whatever a peer opens, so a listener
//!   cannot exhaust its file descriptors. (A connection evicted in the
//!   instant its request arrived finishes that request first, within the
//!   request timeout, outside the count.)
//! - **Over the cap, the oldest idle connection goes.** A connection is idle
//!   while no request of it is inside the service (it has sent nothing, or
//!   only part of its headers, or waits between keep-alive requests). Every
//!   new connection is accepted; if the cap is reached, the oldest idle
//!   connection is closed to make room, and only if every connection is busy
//!   with a request is the new one closed at once. Why this and not simply
//!   closing what comes over the cap: a peer that opens connections and
//!   sends nothing would then keep the listener to itself until the header
//!   timeout, and could open new ones as fast as old ones time out. With
//!   eviction, idle connections only push out other idle connections; a
//!   client that sends its request right after connecting (as every real
//!   client does) is busy within a round trip and is never pushed out, so a
//!   flood of idle connections cannot starve it. (The accept loop yields
//!   after each accept so that a new connection's request, if already sent,
//!   is read before the next connection is accepted.)
//! - **Header timeout** (`header_timeout_secs`, default 5 s): a connection
//!   has that long to send a request's headers; hyper starts the same timer
//!   again after each answer, so it is also the keep-alive idle timeout.
//! - **Request timeout** (`request_timeout_secs`, default 30 s): from the
//!   headers to the answer; past it the caller gets 503.
//! - **Head size** (`max_header_bytes`): hyper's read buffer; a longer head
//!   gets 431 and the connection is closed.
//!
//! What it does not do: TLS (the listeners are meant for loopback or a
//! trusted segment; put a TLS proxy in front otherwise), or HTTP/2.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};

use crate::common::Shutdown;
use crate::config::ApiLimits;

/// One open connection, as the accept loop sees it.
#[derive(Default)]
struct Conn {
    /// Requests of this connection inside the service right now.
    in_flight: AtomicUsize,
    /// Told when the accept loop needs its slot.
    evict: Notify,
}

/// Counts a request in flight for as long as it lives.
struct InFlight(Arc<Conn>);

impl InFlight {
    fn enter(conn: &Arc<Conn>) -> Self {
        conn.in_flight.fetch_add(1, Ordering::SeqCst);
        Self(Arc::clone(conn))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The open connections, oldest first.
#[derive(Default)]
struct Registry {
    next: u64,
    open: BTreeMap<u64, Arc<Conn>>,
}

/// What admitting a connection cost.
#[derive(Debug)]
enum Admission {
    /// Room was left.
    Admitted(u64, Arc<Conn>),
    /// The oldest idle connection was told to go.
    Evicted(u64, Arc<Conn>),
    /// Every connection is busy: the new one is closed.
    Refused,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Conn({} in flight)",
            self.in_flight.load(Ordering::SeqCst)
        )
    }
}

impl Registry {
    /// Makes room for one more connection under `cap` (see the module's
    /// docs), and registers it.
    fn admit(&mut self, cap: usize) -> Admission {
        let mut evicted = false;
        if self.open.len() >= cap {
            let idle = self
                .open
                .iter()
                .find(|(_, c)| c.in_flight.load(Ordering::SeqCst) == 0)
                .map(|(id, _)| *id);
            let Some(old) = idle.and_then(|id| self.open.remove(&id)) else {
                return Admission::Refused;
            };
            // The slot is free now; the connection's task closes it (or, if
            // a request arrived meanwhile, finishes that one first).
            old.evict.notify_one();
            evicted = true;
        }
        let id = self.next;
        self.next += 1;
        let conn = Arc::new(Conn::default());
        self.open.insert(id, Arc::clone(&conn));
        if evicted {
            Admission::Evicted(id, conn)
        } else {
            Admission::Admitted(id, conn)
        }
    }
}

/// Rarely-logged counts of what the cap did, so a flood makes one warning
/// every few seconds rather than a line per connection.
#[derive(Default)]
struct CapLog {
    /// The listener, in log lines (`api`, `metrics`).
    name: &'static str,
    evicted: u64,
    refused: u64,
    last: Option<Instant>,
}

impl CapLog {
    fn note(&mut self, a: &Admission, cap: usize) {
        match a {
            Admission::Admitted(..) => return,
            Admission::Evicted(..) => self.evicted += 1,
            Admission::Refused => self.refused += 1,
        }
        let now = Instant::now();
        if self
            .last
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(10))
        {
            tracing::warn!(
                cap,
                evicted_idle = self.evicted,
                refused = self.refused,
                "{}: connection cap reached",
                self.name
            );
            self.last = Some(now);
            self.evicted = 0;
            self.refused = 0;
        }
    }
}

/// Serves `app` on `listener` until `shutdown` is set, then lets requests in
/// flight finish (within the request timeout).
pub(crate) async fn serve(
    name: &'static str,
    listener: TcpListener,
    app: Router,
    limits: ApiLimits,
    shutdown: Shutdown,
) {
    let registry = Arc::new(Mutex::new(Registry::default()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopping = async {
        while !shutdown.is_set() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::pin!(stopping);
    let mut cap_log = CapLog {
        name,
        ..CapLog::default()
    };
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            () = &mut stopping => break,
        };
        let stream = match accepted {
            Ok((s, _)) => s,
            Err(e) => {
                // Out of descriptors, or the peer gave up before accept:
                // pause rather than spin, then carry on.
                tracing::warn!("{name}: accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let admission = registry
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .admit(limits.max_connections);
        cap_log.note(&admission, limits.max_connections);
        let (id, conn) = match admission {
            Admission::Admitted(id, c) | Admission::Evicted(id, c) => (id, c),
            Admission::Refused => {
                abort(stream);
                continue;
            }
        };
        let task = connection(
            name,
            stream,
            Arc::clone(&conn),
            app.clone(),
            &limits,
            stop_rx.clone(),
        );
        let registry = Arc::clone(&registry);
        tokio::spawn(async move {
            task.await;
            registry
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .open
                .remove(&id);
        });
        // Let the new connection's task run before the next accept: a
        // request already in its socket is read and counted in flight now,
        // so the connections queued behind it (a flood fills the accept
        // queue) cannot evict it as idle before it was ever looked at.
        tokio::task::yield_now().await;
    }
    let _ = stop_tx.send(true);
    let end = Instant::now() + Duration::from_secs(limits.request_timeout_secs);
    while Instant::now() < end
        && !registry
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .open
            .is_empty()
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Drives one connection until it ends, is evicted or the API stops.
fn connection(
    name: &'static str,
    stream: TcpStream,
    conn: Arc<Conn>,
    app: Router,
    limits: &ApiLimits,
    mut stop: watch::Receiver<bool>,
) -> impl Future<Output = ()> + use<> {
    let _ = stream.set_nodelay(true);
    let request_timeout = Duration::from_secs(limits.request_timeout_secs);
    let tower = TowerToHyperService::new(app);
    let counted = Arc::clone(&conn);
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        // Counted from the moment hyper has the whole head: from here on the
        // connection is busy and never evicted.
        let guard = InFlight::enter(&counted);
        let answer = hyper::service::Service::call(&tower, req);
        async move {
            let _guard = guard;
            match tokio::time::timeout(request_timeout, answer).await {
                Ok(r) => r,
                Err(_) => Ok(timed_out(request_timeout)),
            }
        }
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(limits.header_timeout_secs))
        // hyper asserts 8 KiB at least; config checks it, this keeps a panic
        // out of reach whatever it says.
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(true);
    let mut serving = http.serve_connection(TokioIo::new(stream), service);
    async move {
        let graceful = tokio::select! {
            r = &mut serving => {
                if let Err(e) = r {
                    // Timeouts, resets, malformed heads: the peer's doing.
                    tracing::debug!("{name}: connection: {e}");
                }
                return;
            }
            () = conn.evict.notified() => conn.in_flight.load(Ordering::SeqCst) > 0,
            _ = stop.changed() => true,
        };
        if graceful {
            // A request is being answered: finish it, then close.
            std::pin::Pin::new(&mut serving).graceful_shutdown();
            let _ = tokio::time::timeout(request_timeout, serving).await;
        } else {
            abort(serving.into_parts().io.into_inner());
        }
    }
}

/// Closes an idle connection with a reset. A plain close would leave the
/// daemon holding a TIME_WAIT entry per evicted connection for a minute
/// (60,000 after a flood like the load test's); this one never sent a
/// request, so there is no answer a reset could cut short.
fn abort(stream: TcpStream) {
    if let Err(e) = stream.set_zero_linger() {
        tracing::debug!("SO_LINGER: {e}");
    }
}

/// 503 with the API's error shape, `{"error": "…"}`.
fn timed_out(after: Duration) -> Response {
    let msg = format!("request took longer than {} s", after.as_secs());
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(serde_json::json!({ "error": msg })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(r: &Registry) -> Vec<u64> {
        r.open.keys().copied().collect()
    }

    #[test]
    fn over_the_cap_the_oldest_idle_connection_goes_and_busy_ones_stay() {
        let mut r = Registry::default();
        let mut conns = Vec::new();
        for _ in 0..3 {
            match r.admit(3) {
                Admission::Admitted(_, c) => conns.push(c),
                other => panic!("{other:?}"),
            }
        }
        // 0 is busy: 1 is the oldest idle one.
        let _busy = InFlight::enter(&conns[0]);
        assert!(matches!(r.admit(3), Admission::Evicted(3, _)));
        assert_eq!(ids(&r), [0, 2, 3]);
        // The evicted connection was told.
        let told = conns[1].evict.notified();
        tokio::pin!(told);
        assert!(told.as_mut().enable(), "a permit is waiting");

        // All busy: the newcomer is refused and nobody is pushed out.
        let _b2 = InFlight::enter(&conns[2]);
        let r3 = Arc::clone(&r.open[&3]);
        let _b3 = InFlight::enter(&r3);
        assert!(matches!(r.admit(3), Admission::Refused));
        assert_eq!(ids(&r), [0, 2, 3]);
    }
}
