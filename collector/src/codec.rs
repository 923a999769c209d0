//! The gRPC codec of both services: it does not decode. It hands the service the message's
//! bytes with their estimated decoded cost ([`crate::budget::Cost`], from the wire shape),
//! so the service charges the decoding budget first and decodes after: the access-log
//! stream waits for its share (backpressure on the stream, no entry lost), the OTLP
//! export is refused `UNAVAILABLE` when the budget is spent (exporters retry). A message
//! that is not protobuf at all is `INVALID_ARGUMENT`.

use std::marker::PhantomData;

use bytes::{Buf, Bytes};
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};

use crate::budget::Cost;
use crate::wire::Malformed;

/// Estimates a message's cost from its wire bytes.
pub type CostOf = fn(&[u8]) -> Result<Cost, Malformed>;

/// A received message, not yet decoded, and what decoding it will cost.
#[derive(Debug)]
pub struct Measured {
    pub bytes: Bytes,
    pub cost: Cost,
}

/// Measures incoming messages, encodes `Out` with prost.
pub struct MeasuringCodec<Out> {
    cost: CostOf,
    what: &'static str,
    _type: PhantomData<fn() -> Out>,
}

impl<Out> MeasuringCodec<Out> {
    /// A codec for messages named `what` in errors ("OTLP trace export request").
    pub fn new(cost: CostOf, what: &'static str) -> Self {
        MeasuringCodec {
            cost,
            what,
            _type: PhantomData,
        }
    }
}

/// The decoder half of [`MeasuringCodec`].
pub struct MeasuringDecoder {
    cost: CostOf,
    what: &'static str,
}

impl Decoder for MeasuringDecoder {
    type Item = Measured;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Status> {
        // Zero-copy: the frame is one contiguous buffer.
        let bytes = buf.copy_to_bytes(buf.remaining());
        let cost = (self.cost)(&bytes).map_err(|_| {
            Status::invalid_argument(format!("malformed {}: not a protobuf message", self.what))
        })?;
        Ok(Some(Measured { bytes, cost }))
    }
}

impl<Out> Codec for MeasuringCodec<Out>
where
    Out: prost::Message + Send + 'static,
{
    type Encode = Out;
    type Decode = Measured;
    type Encoder = tonic_prost::ProstEncoder<Out>;
    type Decoder = MeasuringDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        tonic_prost::ProstEncoder::new(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        MeasuringDecoder {
            cost: self.cost,
            what: self.what,
        }
    }
}
