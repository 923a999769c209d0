//! Reading rollups back: time windows, the one-call-once side rule, the source rule, entity
//! lists and time series. Backend-independent: everything here goes through
//! [`crate::Store::scan`], and every request reads through one [`Reader`].
//!
//! The side rule: a call seen by both sidecars is stored once per side. For each entity,
//! if any server-side row exists in the window the server side is used, otherwise the
//! client side. The choice is made over the whole window, never per minute, so a call
//! whose two reports straddle a minute boundary is still counted once.
//!
//! The source rule: a meshed service that is also instrumented reports each request twice,
//! through Envoy ALS (`mesh`) and as spans (`trace`). Every figure about calls *into* a
//! destination service — its service, instance and endpoint metrics and all its inbound
//! edges — comes from one source, chosen per destination over the whole window:
//! 1. the preferred source (default `mesh`, configurable per service) if it has
//!    server-side reports for the destination (the destination reports itself there);
//! 2. else the other source if it has server-side reports;
//! 3. else (only callers report it: databases, external hosts, uninstrumented unmeshed
//!    services) the preferred source if it has any report, else the other.
//!
//! A source that hears the destination itself sees every inbound call it reports (all of
//! them for a sidecar; for spans, all that were sampled and exported: sample before
//! meshscope and trace figures shrink with the rate); the side rule then applies within
//! the chosen source. Callers the chosen source cannot name stay `unknown` / `user`.
//!
//! - [`window`]: the minutes a request covers;
//! - [`source`]: the `[dedup]` preference and the per-destination choice;
//! - [`reader`]: one request's reads, with the choice made once.

mod reader;
mod source;
mod window;

pub use reader::{Entity, KeyMinutes, Read, Reader, RowMeter};
pub use source::{Dedup, SourceChoice};
pub use window::Window;
