//! One access-log message into one batch of calls: decode it (its share of the decoding
//! budget already charged), identify the reporter from the stream's first message, and
//! turn every entry into calls through the stream's [`StreamDecoder`]. The server runs it
//! for every message of a stream; the fuzzing driver runs it on arbitrary bytes.

use bytes::Bytes;
use prost::Message;
use proto::CallBatch;
use proto::als::StreamAccessLogsMessage;
use tracing::{debug, warn};

use super::entry::StreamDecoder;
use crate::metrics::CollectorMetrics;
use crate::reject::Rejection;

/// Decodes one message of a stream into calls, counting entries in `metrics`. A message
/// with entries on a stream that has not identified itself is refused
/// ([`Rejection::NoIdentifier`], its entries counted as dropped).
pub fn decode_message(
    decoder: &mut StreamDecoder,
    bytes: Bytes,
    metrics: &CollectorMetrics,
) -> Result<CallBatch, Rejection> {
    let message = StreamAccessLogsMessage::decode(bytes)
        .map_err(|e| Rejection::Malformed(format!("malformed access-log message: {e}")))?;
    if let Some(id) = &message.identifier {
        let node = id.node.clone().unwrap_or_default();
        let reporter = decoder.identify(&node);
        debug!(reporter = %reporter.node.service, role = ?reporter.role,
            log_name = %id.log_name, "access-log stream identified");
    }
    decoder.keep_announced();
    if decoder.reporter().is_none() {
        let n = message.http_logs.as_ref().map_or(0, |h| h.log_entry.len())
            + message.tcp_logs.as_ref().map_or(0, |t| t.log_entry.len());
        metrics.entries_dropped(Rejection::NoIdentifier.reason(), n as u64);
        warn!(
            entries = n,
            "access-log stream sent entries before its identifier"
        );
        return Err(Rejection::NoIdentifier);
    }
    let mut batch = CallBatch::new();
    if let Some(http) = &message.http_logs {
        metrics.entries_received("http", http.log_entry.len() as u64);
        for e in &http.log_entry {
            match decoder.http_entry(e, &mut batch) {
                Ok(()) => {
                    metrics.entries_decoded.inc();
                }
                Err(skip) => metrics.entries_skipped(skip.reason()),
            };
        }
    }
    if let Some(tcp) = &message.tcp_logs {
        metrics.entries_received("tcp", tcp.log_entry.len() as u64);
        for e in &tcp.log_entry {
            match decoder.tcp_entry(e, &mut batch) {
                Ok(()) => {
                    metrics.entries_decoded.inc();
                }
                Err(skip) => metrics.entries_skipped(skip.reason()),
            };
        }
    }
    Ok(batch)
}
