//! A bookinfo-like traffic simulator that speaks real Envoy ALS.
//!
//! [`Generator`] produces ground-truth [`Hop`]s (one per request or connection, with the
//! latency each side measured, in [`mesh`]); [`encode`] turns hops into the access-log
//! messages each proxy would stream ([`envoy`]); [`send_all`] streams them over real gRPC
//! ([`send`]). Tests compute expected figures from the hops, independently of meshscope's
//! pipeline.

pub mod envoy;
pub mod generator;
pub mod mesh;
pub mod peer;
pub mod send;

pub use envoy::{ENTRIES_PER_MESSAGE, ProxyLog, encode, entries, stream_messages};
pub use generator::{Generator, Rng};
pub use mesh::{Hop, Mesh, Proto, Target, Workload, bookinfo};
pub use peer::Peer;
pub use send::{RawCodec, announce, connect, send, send_all, send_on, send_raw};
