//! Envoy access-log service v3: long-lived client streams of HTTP and TCP entries, each
//! entry turned into one [`proto::Call`].
//!
//! - [`server`]: the tonic service and the per-stream loop;
//! - [`identity`]: the reporter (from the stream's first message, cached for the stream)
//!   and peers from their metadata;
//! - [`address_book`]: pod IPs → workloads, announced by every stream, bounded and aged;
//! - [`flatnode`]: the FlatBuffers peer metadata of Istio < 1.24;
//! - [`cluster`]: direction and destination from `upstream_cluster`;
//! - [`message`]: one message into one batch of calls (decode, identify, entries);
//! - [`entry`]: entries into calls, with the peers resolved through the chain (peer
//!   metadata, then the address book, then the outbound cluster, else `unknown`) and cached
//!   per stream by the raw bytes of the peer metadata, so repeated peers cost a hash
//!   lookup, not a decode.

pub mod address_book;
mod cluster;
pub mod cost;
pub mod entry;
pub mod flatnode;
pub mod identity;
pub mod message;
pub mod server;

pub use address_book::{ADDRESS_BOOK_CAP, AddressBook};
pub use entry::{Skip, StreamDecoder};
pub use identity::{Reporter, Role};
pub use server::{AlsServer, SERVICE_NAME, StreamAccessLogsResponse};
