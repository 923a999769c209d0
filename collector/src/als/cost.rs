//! The decoded size of a `StreamAccessLogsMessage`, estimated from its wire shape before it
//! is decoded (see [`crate::budget`]): its bytes (every string and byte field decodes into
//! at most its own length) plus the lists and maps its entries, headers, filter state and
//! certificate names become, at the capacity prost and hashbrown give them. The estimate
//! follows the fields [`proto::als`] declares; fields it does not declare are skipped by
//! prost and cost nothing.

use proto::als::{
    Any, HttpAccessLogEntry, StreamAccessLogsMessage, SubjectAltName, TcpAccessLogEntry,
};

use crate::budget::Cost;
use crate::wire::{Malformed, Value, each, fields};

/// Every byte of the identifier may become a `Struct` entry of a few dozen bytes (the
/// node metadata nests): charged at this multiple of its length. It comes once per stream.
const IDENTIFIER_FACTOR: usize = 32;

/// The estimated cost of the message in `buf`.
pub fn message_cost(buf: &[u8]) -> Result<Cost, Malformed> {
    let mut cost = Cost {
        bytes: buf.len(),
        items: 0,
    };
    cost.add::<StreamAccessLogsMessage>(1);
    let (mut http_entries, mut tcp_entries) = (0usize, 0usize);
    for f in fields(buf) {
        match f? {
            (1, Value::Bytes(id)) => {
                cost.bytes = cost
                    .bytes
                    .saturating_add(id.len().saturating_mul(IDENTIFIER_FACTOR));
            }
            (2, Value::Bytes(http)) => {
                for entry in each(http, 1) {
                    http_entries += 1;
                    http_entry(entry?, &mut cost)?;
                }
            }
            (3, Value::Bytes(tcp)) => {
                for entry in each(tcp, 1) {
                    tcp_entries += 1;
                    for f in fields(entry?) {
                        if let (1, Value::Bytes(common)) = f? {
                            common_properties(common, &mut cost)?;
                        }
                    }
                }
            }
            _ => {}
        }
    }
    // Repeated `http_logs` fields merge into one list.
    cost.list::<HttpAccessLogEntry>(http_entries);
    cost.list::<TcpAccessLogEntry>(tcp_entries);
    cost.items = http_entries.saturating_add(tcp_entries);
    Ok(cost)
}

fn http_entry(entry: &[u8], cost: &mut Cost) -> Result<(), Malformed> {
    for f in fields(entry) {
        match f? {
            (1, Value::Bytes(common)) => common_properties(common, cost)?,
            // Request headers (13); response headers (4) and trailers (5).
            (3, Value::Bytes(request)) => header_maps(request, &[13], cost)?,
            (4, Value::Bytes(response)) => header_maps(response, &[4, 5], cost)?,
            _ => {}
        }
    }
    Ok(())
}

/// The maps of fields `maps` (at most two) in `buf`, one map each.
fn header_maps(buf: &[u8], maps: &[u32], cost: &mut Cost) -> Result<(), Malformed> {
    let mut counts = [0usize; 2];
    for f in fields(buf) {
        if let (n, Value::Bytes(_)) = f?
            && let Some(i) = maps.iter().position(|m| *m == n)
            && let Some(c) = counts.get_mut(i)
        {
            *c += 1;
        }
    }
    for n in counts {
        cost.map::<String, String>(n);
    }
    Ok(())
}

fn common_properties(common: &[u8], cost: &mut Cost) -> Result<(), Malformed> {
    let mut filter_state = 0usize;
    for f in fields(common) {
        match f? {
            (21, Value::Bytes(_)) => filter_state += 1,
            // tls_properties.peer_certificate_properties.subject_alt_name
            (4, Value::Bytes(tls)) => {
                for cert in each(tls, 5) {
                    cost.list::<SubjectAltName>(each(cert?, 1).count());
                }
            }
            _ => {}
        }
    }
    cost.map::<String, Any>(filter_state);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use prost::Message;
    use proto::als::{
        AccessLogCommon, CertificateProperties, HttpAccessLogEntries, HttpRequestProperties,
        TlsProperties,
    };

    use super::*;

    /// The estimate is at least what the decoded message holds, for the shapes that
    /// amplify: many empty entries, many map entries, many names.
    #[test]
    fn the_estimate_covers_the_amplifying_shapes() {
        let empty_entries = StreamAccessLogsMessage {
            http_logs: Some(HttpAccessLogEntries {
                log_entry: vec![HttpAccessLogEntry::default(); 10_000],
            }),
            ..Default::default()
        };
        let wire = empty_entries.encode_to_vec();
        let cost = message_cost(&wire).expect("cost");
        assert_eq!(cost.items, 10_000);
        // prost's pushes leave a capacity of 16 384.
        assert!(cost.bytes >= 16_384 * std::mem::size_of::<HttpAccessLogEntry>());

        let headers: HashMap<String, String> =
            (0..5_000).map(|i| (i.to_string(), String::new())).collect();
        let sans = vec![SubjectAltName::default(); 5_000];
        let entry = HttpAccessLogEntry {
            common_properties: Some(AccessLogCommon {
                tls_properties: Some(TlsProperties {
                    peer_certificate_properties: Some(CertificateProperties {
                        subject_alt_name: sans,
                        subject: String::new(),
                    }),
                }),
                ..Default::default()
            }),
            request: Some(HttpRequestProperties {
                request_headers: headers,
                ..Default::default()
            }),
            ..Default::default()
        };
        let message = StreamAccessLogsMessage {
            http_logs: Some(HttpAccessLogEntries {
                log_entry: vec![entry],
            }),
            ..Default::default()
        };
        let wire = message.encode_to_vec();
        let cost = message_cost(&wire).expect("cost");
        let floor = 8_192 * std::mem::size_of::<SubjectAltName>()
            + 8_192 * std::mem::size_of::<(String, String)>();
        assert!(cost.bytes >= floor, "{} < {floor}", cost.bytes);
        assert!(message_cost(&[0x12, 0x05]).is_err());
    }

    /// One-element lists and maps cost their minimum capacity, not one element.
    #[test]
    fn small_lists_cost_their_first_allocation() {
        let mut one = Cost::default();
        one.list::<SubjectAltName>(1);
        assert_eq!(one.bytes, 4 * std::mem::size_of::<SubjectAltName>());
        let mut map = Cost::default();
        map.map::<String, String>(1);
        assert_eq!(map.bytes, 4 * (std::mem::size_of::<(String, String)>() + 1));
    }
}
