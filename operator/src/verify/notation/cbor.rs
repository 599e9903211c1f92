//! Just enough CBOR (RFC 8949) to read a COSE_Sign1 envelope: definite
//! lengths only (COSE requires deterministic encoding of what is signed,
//! and notation writes nothing else), nesting and sizes bounded, every
//! read checked. Values borrow from the input, so a protected header's
//! bytes are the very bytes the signature covers.

/// Deeper than this is not a COSE header.
const MAX_DEPTH: usize = 8;
/// Items in one array or map: a certificate chain or a header has a few.
const MAX_ITEMS: u64 = 64;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value<'a> {
    Uint(u64),
    /// -1 - n, as CBOR writes it.
    Nint(u64),
    Bytes(&'a [u8]),
    Text(&'a str),
    Array(Vec<Value<'a>>),
    Map(Vec<(Value<'a>, Value<'a>)>),
    Tag(u64, Box<Value<'a>>),
    Bool(bool),
    Null,
    Float(f64),
}

impl<'a> Value<'a> {
    /// A map's entry by integer label (COSE's registered headers).
    pub(crate) fn by_int(&self, label: i64) -> Option<&Value<'a>> {
        self.entries().iter().find(|(k, _)| k.as_int() == Some(label)).map(|(_, v)| v)
    }

    /// A map's entry by text label (notation's own headers).
    pub(crate) fn by_text(&self, label: &str) -> Option<&Value<'a>> {
        self.entries().iter().find(|(k, _)| matches!(k, Value::Text(t) if *t == label)).map(|(_, v)| v)
    }

    pub(crate) fn entries(&self) -> &[(Value<'a>, Value<'a>)] {
        match self {
            Value::Map(m) => m,
            _ => &[],
        }
    }

    pub(crate) fn as_int(&self) -> Option<i64> {
        match *self {
            Value::Uint(n) => i64::try_from(n).ok(),
            Value::Nint(n) => i64::try_from(n).ok().map(|n| -1 - n),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CborError {
    #[error("CBOR ends early")]
    Truncated,
    #[error("CBOR nests deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("a CBOR array or map of more than {MAX_ITEMS} items")]
    TooMany,
    #[error("CBOR that COSE does not use here: {0}")]
    Unsupported(&'static str),
    #[error("CBOR text that is not UTF-8")]
    NotUtf8,
    #[error("{0} bytes after the CBOR item")]
    Trailing(usize),
}

/// One item that fills `input` exactly.
pub(crate) fn decode(input: &[u8]) -> Result<Value<'_>, CborError> {
    let mut r = Reader { input, pos: 0 };
    let v = r.item(0)?;
    match input.len() - r.pos {
        0 => Ok(v),
        n => Err(CborError::Trailing(n)),
    }
}

struct Reader<'a> {
    input: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CborError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.input.len()).ok_or(CborError::Truncated)?;
        let s = &self.input[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn argument(&mut self, info: u8) -> Result<u64, CborError> {
        Ok(match info {
            0..=23 => u64::from(info),
            24 => u64::from(self.take(1)?[0]),
            25 => u64::from(u16::from_be_bytes(self.take(2)?.try_into().map_err(|_| CborError::Truncated)?)),
            26 => u64::from(u32::from_be_bytes(self.take(4)?.try_into().map_err(|_| CborError::Truncated)?)),
            27 => u64::from_be_bytes(self.take(8)?.try_into().map_err(|_| CborError::Truncated)?),
            31 => return Err(CborError::Unsupported("indefinite length")),
            _ => return Err(CborError::Unsupported("reserved additional information")),
        })
    }

    fn len(&mut self, info: u8) -> Result<usize, CborError> {
        let n = self.argument(info)?;
        // No length can exceed what is left, so this bounds every allocation.
        usize::try_from(n).ok().filter(|&n| n <= self.input.len() - self.pos).ok_or(CborError::Truncated)
    }

    fn count(&mut self, info: u8) -> Result<u64, CborError> {
        let n = self.argument(info)?;
        if n > MAX_ITEMS {
            return Err(CborError::TooMany);
        }
        Ok(n)
    }

    fn item(&mut self, depth: usize) -> Result<Value<'a>, CborError> {
        if depth > MAX_DEPTH {
            return Err(CborError::TooDeep);
        }
        let head = self.take(1)?[0];
        let (major, info) = (head >> 5, head & 0x1f);
        Ok(match major {
            0 => Value::Uint(self.argument(info)?),
            1 => Value::Nint(self.argument(info)?),
            2 => {
                let n = self.len(info)?;
                Value::Bytes(self.take(n)?)
            }
            3 => {
                let n = self.len(info)?;
                Value::Text(std::str::from_utf8(self.take(n)?).map_err(|_| CborError::NotUtf8)?)
            }
            4 => {
                let n = self.count(info)?;
                let mut items = Vec::new();
                for _ in 0..n {
                    items.push(self.item(depth + 1)?);
                }
                Value::Array(items)
            }
            5 => {
                let n = self.count(info)?;
                let mut entries = Vec::new();
                for _ in 0..n {
                    let k = self.item(depth + 1)?;
                    let v = self.item(depth + 1)?;
                    entries.push((k, v));
                }
                Value::Map(entries)
            }
            6 => {
                let tag = self.argument(info)?;
                Value::Tag(tag, Box::new(self.item(depth + 1)?))
            }
            _ => match info {
                20 => Value::Bool(false),
                21 => Value::Bool(true),
                22 => Value::Null,
                25 => {
                    Value::Float(half(u16::from_be_bytes(self.take(2)?.try_into().map_err(|_| CborError::Truncated)?)))
                }
                26 => Value::Float(f64::from(f32::from_be_bytes(
                    self.take(4)?.try_into().map_err(|_| CborError::Truncated)?,
                ))),
                27 => Value::Float(f64::from_be_bytes(self.take(8)?.try_into().map_err(|_| CborError::Truncated)?)),
                _ => return Err(CborError::Unsupported("simple value")),
            },
        })
    }
}

fn half(h: u16) -> f64 {
    let exp = (h >> 10) & 0x1f;
    let mant = f64::from(h & 0x3ff);
    let v = match exp {
        0 => mant * 2f64.powi(-24),
        31 => f64::INFINITY,
        e => (mant + 1024.0) * 2f64.powi(i32::from(e) - 25),
    };
    if h & 0x8000 != 0 { -v } else { v }
}

/// Encoders for the one structure ocisync builds: COSE's `Sig_structure`.
pub(crate) fn head(major: u8, n: u64, out: &mut Vec<u8>) {
    let m = major << 5;
    match n {
        0..=23 => out.push(m | n as u8),
        24..=0xff => out.extend([m | 24, n as u8]),
        0x100..=0xffff => {
            out.push(m | 25);
            out.extend((n as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(m | 26);
            out.extend((n as u32).to_be_bytes());
        }
        _ => {
            out.push(m | 27);
            out.extend(n.to_be_bytes());
        }
    }
}

pub(crate) fn bytes(b: &[u8], out: &mut Vec<u8>) {
    head(2, b.len() as u64, out);
    out.extend_from_slice(b);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_cose_uses_and_refuses_the_rest() {
        let cases: &[(&[u8], Result<Value, CborError>)] = &[
            (&[0x18, 0x64], Ok(Value::Uint(100))),
            (&[0x38, 0x24], Ok(Value::Nint(36))), // -37: PS256
            (&[0x43, 1, 2, 3], Ok(Value::Bytes(&[1, 2, 3]))),
            (&[0x62, b'h', b'i'], Ok(Value::Text("hi"))),
            (&[0xc1, 0x1a, 0x65, 0, 0, 0], Ok(Value::Tag(1, Box::new(Value::Uint(0x6500_0000))))),
            (&[0xa1, 0x01, 0x26], Ok(Value::Map(vec![(Value::Uint(1), Value::Nint(6))]))),
            (&[0xf9, 0x3c, 0x00], Ok(Value::Float(1.0))),
            (&[0x5f], Err(CborError::Unsupported("indefinite length"))),
            (&[0x44, 1, 2], Err(CborError::Truncated)),
            // a length far past the input allocates nothing
            (&[0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], Err(CborError::Truncated)),
            (&[0x9b, 0, 0, 0, 1, 0, 0, 0, 0], Err(CborError::TooMany)),
            (&[0x62, 0xff, 0xfe], Err(CborError::NotUtf8)),
            (&[0x01, 0x02], Err(CborError::Trailing(1))),
            (&[0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x00], Err(CborError::TooDeep)),
            (&[0xf7], Err(CborError::Unsupported("simple value"))),
        ];
        for (input, want) in cases {
            assert_eq!(&decode(input), want, "{input:02x?}");
        }
    }

    #[test]
    fn heads_round_trip() {
        for n in [0u64, 23, 24, 255, 256, 65535, 65536, 1 << 32] {
            let mut out = Vec::new();
            head(0, n, &mut out);
            assert_eq!(decode(&out), Ok(Value::Uint(n)));
        }
        assert_eq!(Value::Nint(36).as_int(), Some(-37));
    }
}
