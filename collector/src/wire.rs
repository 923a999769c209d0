//! A protobuf wire walker: field numbers and lengths, read without decoding, so that what
//! a message will cost in memory is known before prost allocates it (see
//! [`crate::budget`]).

/// One field's value as it lies on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    /// A varint, fixed32 or fixed64: no allocation when decoded.
    Scalar,
    /// A length-delimited field: a string, bytes, a packed list or a submessage.
    Bytes(&'a [u8]),
}

/// The bytes are not a protobuf message (or use groups, which none of ours has).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

/// The fields of one message, in wire order.
pub struct Fields<'a> {
    buf: &'a [u8],
}

/// The fields of the message in `buf`.
pub fn fields(buf: &[u8]) -> Fields<'_> {
    Fields { buf }
}

fn varint(buf: &mut &[u8]) -> Result<u64, Malformed> {
    let mut value = 0u64;
    for i in 0..10 {
        let (&b, rest) = buf.split_first().ok_or(Malformed)?;
        *buf = rest;
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(Malformed)
}

fn skip<'a>(buf: &mut &'a [u8], n: usize) -> Result<&'a [u8], Malformed> {
    if buf.len() < n {
        return Err(Malformed);
    }
    let (head, rest) = buf.split_at(n);
    *buf = rest;
    Ok(head)
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u32, Value<'a>), Malformed>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.is_empty() {
            return None;
        }
        let field = (|| {
            let key = varint(&mut self.buf)?;
            let number = u32::try_from(key >> 3).map_err(|_| Malformed)?;
            if number == 0 {
                return Err(Malformed);
            }
            let value = match key & 7 {
                0 => varint(&mut self.buf).map(|_| Value::Scalar)?,
                1 => skip(&mut self.buf, 8).map(|_| Value::Scalar)?,
                5 => skip(&mut self.buf, 4).map(|_| Value::Scalar)?,
                2 => {
                    let len = usize::try_from(varint(&mut self.buf)?).map_err(|_| Malformed)?;
                    Value::Bytes(skip(&mut self.buf, len)?)
                }
                _ => return Err(Malformed),
            };
            Ok((number, value))
        })();
        if field.is_err() {
            // One error ends the walk.
            self.buf = &[];
        }
        Some(field)
    }
}

/// The submessages of field `number` in `buf`, in order.
pub fn each<'a>(
    buf: &'a [u8],
    number: u32,
) -> impl Iterator<Item = Result<&'a [u8], Malformed>> + 'a {
    fields(buf).filter_map(move |f| match f {
        Ok((n, Value::Bytes(b))) if n == number => Some(Ok(b)),
        Ok(_) => None,
        Err(e) => Some(Err(e)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_read_without_decoding() {
        // 1: varint 150; 2: "hi"; 3: fixed32; 4: fixed64; 2 again: empty.
        let buf = [
            0x08, 0x96, 0x01, 0x12, 0x02, b'h', b'i', 0x1d, 0, 0, 0, 0, 0x21, 0, 0, 0, 0, 0, 0, 0,
            0, 0x12, 0x00,
        ];
        let got: Vec<_> = fields(&buf).collect::<Result<_, _>>().expect("fields");
        assert_eq!(
            got,
            vec![
                (1, Value::Scalar),
                (2, Value::Bytes(b"hi")),
                (3, Value::Scalar),
                (4, Value::Scalar),
                (2, Value::Bytes(b"")),
            ]
        );
        assert_eq!(each(&buf, 2).count(), 2);
    }

    #[test]
    fn truncated_or_grouped_input_is_malformed() {
        for bad in [
            &[0x12, 0x05, b'a'][..],
            &[0x08, 0xff],
            &[0x0b],
            &[0x00, 0x00],
        ] {
            assert!(fields(bad).any(|f| f.is_err()), "{bad:?}");
        }
        // A length past the end of a huge varint.
        let huge = [
            0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ];
        assert!(fields(&huge).any(|f| f.is_err()));
    }
}
