//! The gRPC codec of both services: before prost decodes a message it estimates what the
//! message will cost ([`crate::budget::Cost`]) and charges the shared decoding budget, so
//! the decoded message arrives [`Charged`]. Undecodable messages are `INVALID_ARGUMENT`,
//! too costly ones `RESOURCE_EXHAUSTED`, ones that find the budget spent `UNAVAILABLE`.

use std::marker::PhantomData;

use bytes::Buf;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};

use crate::budget::{Charged, Cost, DecodeBudget};
use crate::wire::Malformed;

/// Estimates a message's cost from its wire bytes.
pub type CostOf = fn(&[u8]) -> Result<Cost, Malformed>;

/// Decodes `In` within the budget, encodes `Out` with prost.
pub struct ChargedCodec<In, Out> {
    budget: DecodeBudget,
    cost: CostOf,
    what: &'static str,
    _types: PhantomData<fn() -> (In, Out)>,
}

impl<In, Out> ChargedCodec<In, Out> {
    /// A codec for messages named `what` in errors ("OTLP trace export request").
    pub fn new(budget: DecodeBudget, cost: CostOf, what: &'static str) -> Self {
        ChargedCodec {
            budget,
            cost,
            what,
            _types: PhantomData,
        }
    }
}

pub struct ChargedDecoder<In> {
    budget: DecodeBudget,
    cost: CostOf,
    what: &'static str,
    _type: PhantomData<fn() -> In>,
}

impl<In: prost::Message + Default + 'static> Decoder for ChargedDecoder<In> {
    type Item = Charged<In>;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Status> {
        // Zero-copy: the frame is one contiguous buffer.
        let bytes = buf.copy_to_bytes(buf.remaining());
        let malformed = |e: &dyn std::fmt::Display| {
            Status::invalid_argument(format!("malformed {}: {e}", self.what))
        };
        let cost = (self.cost)(&bytes).map_err(|_| malformed(&"not a protobuf message"))?;
        let charge = self
            .budget
            .charge(cost, self.what)
            .map_err(|r| r.status())?;
        let message = In::decode(bytes).map_err(|e| malformed(&e))?;
        Ok(Some(DecodeBudget::attach(message, charge)))
    }
}

impl<In, Out> Codec for ChargedCodec<In, Out>
where
    In: prost::Message + Default + Send + 'static,
    Out: prost::Message + Send + 'static,
{
    type Encode = Out;
    type Decode = Charged<In>;
    type Encoder = tonic_prost::ProstEncoder<Out>;
    type Decoder = ChargedDecoder<In>;

    fn encoder(&mut self) -> Self::Encoder {
        tonic_prost::ProstEncoder::new(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ChargedDecoder {
            budget: self.budget.clone(),
            cost: self.cost,
            what: self.what,
            _type: PhantomData,
        }
    }
}
