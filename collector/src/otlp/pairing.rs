//! Joining the caller's and the callee's halves of a call.
//!
//! A CLIENT (or PRODUCER) span and the SERVER (or CONSUMER) span whose `parent_span_id`
//! is its `span_id`, in the same trace, are one call: the pair gives the edge
//! `caller → callee` with both sides' reports. Halves wait for their partner in a store
//! bounded by a TTL and a size; a half that times out (or is pushed out by a full store)
//! is recorded unpaired — a CLIENT half as a call to its virtual peer, a SERVER half as a
//! call from `unknown` — and counted. Root SERVER spans (`user` calls them) and database
//! CLIENT spans (no server half will come) skip the store.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use foldhash::HashMap;
use proto::{Call, CallBatch, Node, Protocol, Side, Source, UNKNOWN, USER};

use super::metrics::OtlpMetrics;
use super::seen::Seen;
use super::spans::{ClientHalf, Half, PairKey, ServerHalf, View};

/// Bounds of the pairing store.
#[derive(Debug, Clone, Copy)]
pub struct PairingSettings {
    /// How long a half waits for its partner.
    pub ttl: Duration,
    /// Most halves waiting at once; past it the oldest is recorded unpaired early.
    pub max_waiting: usize,
    /// How long, and for how many spans, a span id is remembered so that a retried
    /// export counts once.
    pub dedup_window: Duration,
    pub dedup_max_spans: usize,
}

/// Most callee spans kept waiting under one caller span (a message fanned out to many
/// consumers); further ones are recorded at once, from `unknown`.
const MAX_FAN_OUT: usize = 64;

enum Waiting {
    Client(ClientHalf),
    Servers(Vec<ServerHalf>),
    /// A PRODUCER already answered: later CONSUMERs of the same message (fan-out) still
    /// learn their caller until the TTL passes.
    Answered(Node),
}

struct Entry {
    seq: u64,
    waiting: Waiting,
}

impl Waiting {
    /// Spans it holds, for the size bound.
    fn weight(&self) -> usize {
        match self {
            Waiting::Servers(list) => list.len(),
            Waiting::Client(_) | Waiting::Answered(_) => 1,
        }
    }
}

/// Why a half was recorded without its partner (the `reason` label).
#[derive(Debug, Clone, Copy)]
enum Unpaired {
    Expired,
    Evicted,
    Flushed,
}

impl Unpaired {
    fn as_str(self) -> &'static str {
        match self {
            Unpaired::Expired => "expired",
            Unpaired::Evicted => "evicted",
            Unpaired::Flushed => "flushed",
        }
    }
}

/// The pairing store. Not thread-safe on its own; the receiver wraps it in a mutex.
pub struct Pairing {
    settings: PairingSettings,
    waiting: HashMap<PairKey, Entry>,
    /// Spans held in `waiting` (a key can hold several callee spans).
    held: usize,
    /// Insertion order = expiry order (one TTL for all). Entries whose halves have paired
    /// meanwhile are skipped by their sequence number.
    order: VecDeque<(Instant, PairKey, u64)>,
    next_seq: u64,
    metrics: OtlpMetrics,
    user: Node,
    unknown: Node,
    seen: Seen,
}

fn call(
    view: &View,
    side: Side,
    client: Node,
    server: Node,
    endpoint: Option<Arc<str>>,
    protocol: Protocol,
) -> Call {
    Call {
        start_unix_nanos: view.start_unix_nanos,
        side,
        source: Source::Trace,
        client,
        server,
        endpoint,
        protocol,
        latency_nanos: view.latency_nanos,
        status_code: view.status_code,
        grpc_status: view.grpc_status,
        error: view.error,
        mtls: false,
        request_bytes: view.request_bytes,
        response_bytes: view.response_bytes,
    }
}

/// The callee's report of a call from `client`.
fn server_call(s: ServerHalf, client: Node) -> Call {
    call(
        &s.view,
        Side::Server,
        client,
        s.view.node.clone(),
        Some(s.endpoint),
        s.view.protocol,
    )
}

/// The caller's report of a call answered by `s` (endpoint and protocol from the callee,
/// so both reports land on the same edge and endpoint).
fn client_call(c: &ClientHalf, s: &ServerHalf) -> Call {
    call(
        &c.view,
        Side::Client,
        c.view.node.clone(),
        s.view.node.clone(),
        Some(s.endpoint.clone()),
        s.view.protocol,
    )
}

/// The caller's report of a call nobody answered: to its virtual peer.
fn unanswered_call(c: ClientHalf) -> Call {
    call(
        &c.view,
        Side::Client,
        c.view.node.clone(),
        c.peer,
        None,
        c.view.protocol,
    )
}

impl Pairing {
    /// An empty store.
    pub fn new(settings: PairingSettings, metrics: OtlpMetrics) -> Pairing {
        Pairing {
            settings,
            waiting: HashMap::default(),
            held: 0,
            order: VecDeque::new(),
            next_seq: 0,
            metrics,
            user: Node::virtual_node(Arc::from(USER)),
            unknown: Node::virtual_node(Arc::from(UNKNOWN)),
            seen: Seen::new(settings.dedup_window, settings.dedup_max_spans),
        }
    }

    /// Spans waiting for their partner.
    pub fn len(&self) -> usize {
        self.held
    }

    /// Whether no span is waiting.
    pub fn is_empty(&self) -> bool {
        self.held == 0
    }

    fn remove(&mut self, key: &PairKey) -> Option<Entry> {
        let e = self.waiting.remove(key)?;
        self.held -= e.waiting.weight();
        Some(e)
    }

    /// Takes one half received at `now`; calls it completes go to `out`.
    pub fn offer(&mut self, half: Half, now: Instant, out: &mut CallBatch) {
        let id = match &half {
            Half::Server(s) => (s.id, true),
            Half::Client(c) => (c.key, false),
        };
        if !self.seen.first_time(id, now) {
            // The same span again (an exporter retry): count it once.
            self.metrics.duplicates.inc();
            return;
        }
        match half {
            Half::Server(s) => match s.parent {
                None => {
                    // A trace root: the request came from outside the traced world.
                    let caller = if s.consumer {
                        self.unknown.clone()
                    } else {
                        self.user.clone()
                    };
                    out.push(server_call(s, caller));
                }
                Some(key) => self.offer_server(key, s, now, out),
            },
            Half::Client(c) if c.database => out.push(unanswered_call(c)),
            Half::Client(c) => self.offer_client(c, now, out),
        }
        self.metrics.waiting.set(self.held as i64);
    }

    fn offer_server(&mut self, key: PairKey, s: ServerHalf, now: Instant, out: &mut CallBatch) {
        match self.waiting.get_mut(&key).map(|e| &mut e.waiting) {
            Some(Waiting::Servers(_)) => {
                self.make_room(out);
                match self.waiting.get_mut(&key).map(|e| &mut e.waiting) {
                    Some(Waiting::Servers(list)) if list.len() < MAX_FAN_OUT => {
                        list.push(s);
                        self.held += 1;
                    }
                    Some(Waiting::Servers(_)) => {
                        self.metrics
                            .unpaired("server", Unpaired::Evicted.as_str(), 1);
                        out.push(server_call(s, self.unknown.clone()));
                    }
                    _ => self.insert(key, Waiting::Servers(vec![s]), now, out),
                }
            }
            Some(Waiting::Answered(client)) => {
                let client = client.clone();
                self.metrics.paired.inc();
                out.push(server_call(s, client));
            }
            Some(Waiting::Client(_)) => {
                let Some(Entry {
                    waiting: Waiting::Client(c),
                    ..
                }) = self.remove(&key)
                else {
                    return;
                };
                self.answer(key, c, vec![s], now, out);
            }
            None => self.insert(key, Waiting::Servers(vec![s]), now, out),
        }
    }

    /// Records a caller span and the callee spans that answered it: one caller report
    /// (against the first callee) and one callee report each. A producer stays known
    /// until its TTL so later consumers of the same message still find it.
    fn answer(
        &mut self,
        key: PairKey,
        c: ClientHalf,
        servers: Vec<ServerHalf>,
        now: Instant,
        out: &mut CallBatch,
    ) {
        self.metrics.paired.inc_by(servers.len() as u64);
        if let Some(first) = servers.first() {
            out.push(client_call(&c, first));
        }
        for s in servers {
            out.push(server_call(s, c.view.node.clone()));
        }
        if c.producer {
            self.insert(key, Waiting::Answered(c.view.node), now, out);
        }
    }

    fn offer_client(&mut self, c: ClientHalf, now: Instant, out: &mut CallBatch) {
        let key = c.key;
        match self.waiting.get(&key).map(|e| &e.waiting) {
            Some(Waiting::Client(_) | Waiting::Answered(_)) => {
                // The same span twice (an exporter retry): count it once.
                self.metrics.duplicates.inc();
            }
            Some(Waiting::Servers(_)) => {
                let Some(Entry {
                    waiting: Waiting::Servers(servers),
                    ..
                }) = self.remove(&key)
                else {
                    return;
                };
                self.answer(key, c, servers, now, out);
            }
            None => self.insert(key, Waiting::Client(c), now, out),
        }
    }

    /// Records the oldest spans early until one more fits.
    fn make_room(&mut self, out: &mut CallBatch) {
        while self.held >= self.settings.max_waiting.max(1) {
            if !self.pop_oldest(Unpaired::Evicted, out) {
                break;
            }
        }
    }

    fn insert(&mut self, key: PairKey, waiting: Waiting, now: Instant, out: &mut CallBatch) {
        self.make_room(out);
        let seq = self.next_seq;
        self.next_seq += 1;
        self.held += waiting.weight();
        self.waiting.insert(key, Entry { seq, waiting });
        self.order.push_back((now + self.settings.ttl, key, seq));
        // Entries of halves that paired stay queued until their deadline; drop them once
        // they outnumber the live ones, so the queue follows the store's bound, not the
        // span rate.
        if self.order.len() > 2 * self.waiting.len() + 1024 {
            let waiting = &self.waiting;
            self.order
                .retain(|(_, k, seq)| waiting.get(k).is_some_and(|e| e.seq == *seq));
        }
    }

    /// Removes the entry a queue item `(key, seq)` stands for, if it is still the live one
    /// (not paired or replaced since).
    fn take_live(&mut self, key: &PairKey, seq: u64) -> Option<Entry> {
        if self.waiting.get(key).is_some_and(|e| e.seq == seq) {
            self.remove(key)
        } else {
            None
        }
    }

    /// Records the oldest live entry unpaired; false when nothing is left.
    fn pop_oldest(&mut self, why: Unpaired, out: &mut CallBatch) -> bool {
        while let Some((_, key, seq)) = self.order.pop_front() {
            if let Some(e) = self.take_live(&key, seq) {
                self.unpaired(e.waiting, why, out);
                return true;
            }
        }
        false
    }

    fn unpaired(&mut self, waiting: Waiting, why: Unpaired, out: &mut CallBatch) {
        match waiting {
            Waiting::Client(c) => {
                self.metrics.unpaired("client", why.as_str(), 1);
                out.push(unanswered_call(c));
            }
            Waiting::Servers(list) => {
                self.metrics
                    .unpaired("server", why.as_str(), list.len() as u64);
                for s in list {
                    out.push(server_call(s, self.unknown.clone()));
                }
            }
            Waiting::Answered(_) => {}
        }
    }

    /// Records every half whose TTL has passed at `now` unpaired.
    pub fn expire(&mut self, now: Instant, out: &mut CallBatch) {
        while let Some(&(deadline, key, seq)) = self.order.front() {
            if deadline > now {
                break;
            }
            self.order.pop_front();
            if let Some(e) = self.take_live(&key, seq) {
                self.unpaired(e.waiting, Unpaired::Expired, out);
            }
        }
        self.metrics.waiting.set(self.held as i64);
    }

    /// Records every waiting half unpaired now (admin flush, shutdown).
    pub fn flush(&mut self, out: &mut CallBatch) {
        while self.pop_oldest(Unpaired::Flushed, out) {}
        self.order.clear();
        self.metrics.waiting.set(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;

    fn view(service: &str) -> View {
        View {
            node: Node::real(Arc::from(service), None),
            start_unix_nanos: 1,
            latency_nanos: Some(5),
            error: false,
            status_code: 200,
            grpc_status: None,
            protocol: Protocol::Http,
            request_bytes: 0,
            response_bytes: 0,
        }
    }

    fn client(span: u8, producer: bool) -> Half {
        Half::Client(ClientHalf {
            view: view("a"),
            key: ([1; 16], [span; 8]),
            peer: Node::virtual_node(Arc::from("b-peer")),
            database: false,
            producer,
        })
    }

    fn server(parent: Option<u8>, consumer: bool) -> Half {
        Half::Server(ServerHalf {
            view: view("b"),
            endpoint: Arc::from("GET /"),
            parent: parent.map(|p| ([1; 16], [p; 8])),
            id: ([1; 16], [parent.map_or(250, |p| p.wrapping_add(100)); 8]),
            consumer,
        })
    }

    fn store(max: usize) -> (Pairing, OtlpMetrics) {
        let m = OtlpMetrics::register(&mut Registry::default());
        let p = Pairing::new(
            PairingSettings {
                ttl: Duration::from_secs(10),
                max_waiting: max,
                dedup_window: Duration::ZERO,
                dedup_max_spans: 0,
            },
            m.clone(),
        );
        (p, m)
    }

    fn edges(out: &CallBatch) -> Vec<(Side, String, String)> {
        let mut v: Vec<_> = out
            .iter()
            .map(|c| {
                (
                    c.side,
                    c.client.service.to_string(),
                    c.server.service.to_string(),
                )
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn halves_pair_in_either_order() {
        let (mut p, _) = store(100);
        let now = Instant::now();
        let mut out = Vec::new();
        p.offer(client(1, false), now, &mut out);
        assert!(out.is_empty());
        p.offer(server(Some(1), false), now, &mut out);
        p.offer(server(Some(2), false), now, &mut out);
        p.offer(client(2, false), now, &mut out);
        let c = (Side::Client, "a".to_string(), "b".to_string());
        let sv = (Side::Server, "a".to_string(), "b".to_string());
        assert_eq!(edges(&out), vec![c.clone(), c, sv.clone(), sv]);
        assert!(p.is_empty());
    }

    /// An export retried after the first one paired (or was recorded) counts nothing
    /// more: both halves are known by their own span ids.
    #[test]
    fn a_retried_export_counts_once() {
        let (_, m) = store(100);
        let mut p = Pairing::new(
            PairingSettings {
                ttl: Duration::from_secs(10),
                max_waiting: 100,
                dedup_window: Duration::from_secs(300),
                dedup_max_spans: 1000,
            },
            m.clone(),
        );
        let now = Instant::now();
        let mut out = Vec::new();
        for _ in 0..3 {
            p.offer(client(1, false), now, &mut out);
            p.offer(server(Some(1), false), now, &mut out);
            p.offer(server(None, false), now + Duration::from_secs(1), &mut out);
        }
        // One pair (two reports) and one root call, once.
        assert_eq!(out.len(), 3, "{out:?}");
        assert_eq!(m.duplicates.get(), 6);
    }

    #[test]
    fn roots_databases_and_timeouts() {
        let (mut p, m) = store(100);
        let now = Instant::now();
        let mut out = Vec::new();
        p.offer(server(None, false), now, &mut out);
        assert_eq!(edges(&out), vec![(Side::Server, "user".into(), "b".into())]);
        out.clear();
        p.offer(client(1, false), now, &mut out);
        p.offer(server(Some(9), false), now, &mut out);
        p.expire(now + Duration::from_secs(9), &mut out);
        assert!(out.is_empty());
        p.expire(now + Duration::from_secs(10), &mut out);
        assert_eq!(
            edges(&out),
            vec![
                (Side::Client, "a".into(), "b-peer".into()),
                (Side::Server, "unknown".into(), "b".into())
            ]
        );
        assert!(p.is_empty());
        assert_eq!(m.unpaired_count("client", "expired"), 1);
        assert_eq!(m.unpaired_count("server", "expired"), 1);
    }

    #[test]
    fn a_full_store_records_its_oldest_half_early() {
        let (mut p, m) = store(2);
        let now = Instant::now();
        let mut out = Vec::new();
        for span in 1..=3 {
            p.offer(client(span, false), now, &mut out);
        }
        assert_eq!(p.len(), 2);
        assert_eq!(out.len(), 1);
        assert_eq!(m.unpaired_count("client", "evicted"), 1);
        p.flush(&mut out);
        assert_eq!(out.len(), 3);
        assert!(p.is_empty());
    }

    #[test]
    fn many_callee_spans_under_one_caller_stay_bounded() {
        let (mut p, m) = store(1000);
        let now = Instant::now();
        let mut out = Vec::new();
        for _ in 0..(MAX_FAN_OUT + 10) {
            p.offer(server(Some(7), false), now, &mut out);
        }
        assert_eq!(p.len(), MAX_FAN_OUT);
        assert_eq!(out.len(), 10);
        assert_eq!(m.unpaired_count("server", "evicted"), 10);
        // A full store counts spans, not keys: the key holding three is recorded early.
        out.clear();
        let (mut p, _) = store(3);
        for _ in 0..5 {
            p.offer(server(Some(7), false), now, &mut out);
        }
        assert_eq!((p.len(), out.len()), (2, 3));
    }

    #[test]
    fn the_deadline_queue_follows_the_live_halves() {
        let (mut p, _) = store(100);
        let now = Instant::now();
        let mut out = Vec::new();
        for span in 0..20_000u32 {
            let b = span.to_le_bytes();
            let key = [b[0], b[1], b[2], b[3], 1, 1, 1, 1];
            let Half::Client(mut c) = client(0, false) else {
                unreachable!()
            };
            c.key.1 = key;
            p.offer(Half::Client(c), now, &mut out);
            let Half::Server(mut s) = server(Some(0), false) else {
                unreachable!()
            };
            s.parent = Some((c_trace(), key));
            p.offer(Half::Server(s), now, &mut out);
        }
        assert!(p.is_empty());
        assert!(p.order.len() <= 1024 + 2, "{}", p.order.len());
    }

    fn c_trace() -> [u8; 16] {
        [1; 16]
    }

    #[test]
    fn duplicates_count_once_and_producers_fan_out() {
        let (mut p, m) = store(100);
        let now = Instant::now();
        let mut out = Vec::new();
        p.offer(client(1, false), now, &mut out);
        p.offer(client(1, false), now, &mut out);
        assert_eq!(m.duplicates.get(), 1);
        p.offer(client(2, true), now, &mut out);
        p.offer(server(Some(2), true), now, &mut out);
        p.offer(server(Some(2), true), now, &mut out);
        // One producer report, two consumer reports, all from `a`.
        assert_eq!(
            edges(&out),
            vec![
                (Side::Client, "a".into(), "b".into()),
                (Side::Server, "a".into(), "b".into()),
                (Side::Server, "a".into(), "b".into())
            ]
        );
    }
}
