//! `x509.subject:` identities: a distinguished name as RFC 4514 writes it,
//! matched as notation matches it (every attribute the identity names has
//! the same value in the signing certificate's subject; others may be
//! there too).

use std::collections::BTreeMap;

use x509_cert::name::Name;

/// A DN longer than this is not one anybody wrote.
const MAX_DN: usize = 4096;

pub(crate) type Dn = BTreeMap<String, String>;

fn short_name(oid: &const_oid::ObjectIdentifier) -> Option<&'static str> {
    use const_oid::db::rfc4519 as n;
    Some(match *oid {
        n::CN => "CN",
        n::C => "C",
        n::L => "L",
        n::ST => "ST",
        n::O => "O",
        n::OU => "OU",
        n::STREET => "STREET",
        n::POSTAL_CODE => "POSTALCODE",
        n::SERIAL_NUMBER => "SERIALNUMBER",
        _ => return None,
    })
}

/// A certificate's subject as attributes, most significant first in the
/// string form (`CN=…,O=…,C=…`, as Go and OpenSSL's RFC 2253 print it).
pub(crate) fn subject_string(name: &Name) -> String {
    let mut parts: Vec<String> = Vec::new();
    for rdn in name.0.iter().rev() {
        let attrs: Vec<String> = rdn
            .0
            .iter()
            .map(|a| {
                let t = short_name(&a.oid).map(str::to_string).unwrap_or_else(|| a.oid.to_string());
                format!("{t}={}", escape(&attribute_text(a)))
            })
            .collect();
        parts.push(attrs.join("+"));
    }
    parts.join(",")
}

fn attribute_text(a: &x509_cert::attr::AttributeTypeAndValue) -> String {
    use der::asn1::{Ia5StringRef, PrintableStringRef, TeletexStringRef, Utf8StringRef};
    a.value
        .decode_as::<Utf8StringRef>()
        .map(|s| s.as_str().to_string())
        .or_else(|_| a.value.decode_as::<PrintableStringRef>().map(|s| s.as_str().to_string()))
        .or_else(|_| a.value.decode_as::<Ia5StringRef>().map(|s| s.as_str().to_string()))
        .or_else(|_| a.value.decode_as::<TeletexStringRef>().map(|s| s.as_str().to_string()))
        .unwrap_or_else(|_| format!("#{}", hex::encode(a.value.value())))
}

fn escape(v: &str) -> String {
    let mut out = String::new();
    for (i, c) in v.chars().enumerate() {
        if matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';') || (i == 0 && matches!(c, '#' | ' ')) {
            out.push('\\');
        }
        out.push(c);
    }
    if out.ends_with(' ') {
        out.insert(out.len() - 1, '\\');
    }
    out
}

/// A certificate's subject as notation compares it; `None` when it has a
/// multi-valued or repeated attribute, which notation cannot match either.
pub(crate) fn subject_dn(name: &Name) -> Option<Dn> {
    let mut dn = Dn::new();
    for rdn in name.0.iter() {
        if rdn.0.len() != 1 {
            return None;
        }
        let a = rdn.0.get(0)?;
        let t = short_name(&a.oid).map(str::to_string).unwrap_or_else(|| a.oid.to_string());
        if dn.insert(t, attribute_text(a)).is_some() {
            return None;
        }
    }
    Some(dn)
}

/// Parse `C=US, ST=WA, O=Example, CN=signer` (RFC 4514): C, ST (or S) and
/// O are required, as notation requires them; no multi-valued or repeated
/// attributes, no `#` hex values.
pub(crate) fn parse_dn(s: &str) -> Result<Dn, String> {
    if s.len() > MAX_DN {
        return Err(format!("a distinguished name longer than {MAX_DN} bytes"));
    }
    if s.contains("=#") {
        return Err(format!("{s:?}: hex attribute values (=#) are not supported"));
    }
    let mut dn = Dn::new();
    for part in split_unescaped(s, ',')? {
        if split_unescaped(&part, '+')?.len() > 1 {
            return Err(format!("{s:?}: multi-valued attributes are not supported"));
        }
        let (t, v) = part.split_once('=').ok_or_else(|| format!("{s:?}: {part:?} is not type=value"))?;
        let mut t = t.trim().to_ascii_uppercase();
        if t == "S" {
            t = "ST".into();
        }
        if t.is_empty() {
            return Err(format!("{s:?}: an attribute with no type"));
        }
        let v = unescape(v.trim()).ok_or_else(|| format!("{s:?}: a bad escape in {v:?}"))?;
        if dn.insert(t.clone(), v).is_some() {
            return Err(format!("{s:?}: {t} appears twice"));
        }
    }
    for must in ["C", "ST", "O"] {
        if dn.get(must).is_none_or(|v| v.is_empty()) {
            return Err(format!("{s:?} has no {must}: an x509.subject identity names C, ST (or S) and O at least"));
        }
    }
    Ok(dn)
}

/// Split on `sep` where it is not escaped or quoted; the parts keep their escapes.
fn split_unescaped(s: &str, sep: char) -> Result<Vec<String>, String> {
    let mut parts = vec![String::new()];
    let (mut escaped, mut quoted) = (false, false);
    for c in s.chars() {
        let cur = parts.last_mut().expect("never empty");
        if escaped {
            cur.push(c);
            escaped = false;
        } else if c == '\\' {
            cur.push(c);
            escaped = true;
        } else if c == '"' {
            cur.push(c);
            quoted = !quoted;
        } else if c == sep && !quoted {
            parts.push(String::new());
        } else {
            cur.push(c);
        }
    }
    if escaped || quoted {
        return Err(format!("{s:?} ends inside an escape or a quote"));
    }
    Ok(parts)
}

fn unescape(v: &str) -> Option<String> {
    let v = match v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(q) => q,
        None => v,
    };
    let mut bytes = Vec::new();
    let mut it = v.bytes().peekable();
    while let Some(b) = it.next() {
        if b != b'\\' {
            bytes.push(b);
            continue;
        }
        let n = it.next()?;
        if n.is_ascii_hexdigit() && it.peek().is_some_and(u8::is_ascii_hexdigit) {
            let m = it.next()?;
            bytes.push(u8::from_str_radix(std::str::from_utf8(&[n, m]).ok()?, 16).ok()?);
        } else {
            bytes.push(n);
        }
    }
    String::from_utf8(bytes).ok()
}

/// Does every attribute of `identity` have the same value in `subject`?
pub(crate) fn is_subset(identity: &Dn, subject: &Dn) -> bool {
    identity.iter().all(|(k, v)| subject.get(k) == Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_parse_as_notation_parses_them() {
        let ok = parse_dn("C=US, ST=WA, L=Seattle, O=acme-rockets.io, OU=Finance, CN=SecureBuilder").unwrap();
        assert_eq!(ok["CN"], "SecureBuilder");
        assert_eq!(ok["ST"], "WA");
        assert_eq!(parse_dn("C=US,S=WA,O=a\\,b").unwrap()["O"], "a,b");
        assert_eq!(parse_dn("C=US,ST=WA,O=\"x, y\"").unwrap()["O"], "x, y");
        assert_eq!(parse_dn("C=US,ST=WA,O=\\41").unwrap()["O"], "A");
        let refused = [
            ("C=US, O=x", "no ST"),
            ("C=US,ST=WA", "no O"),
            ("C=US,ST=WA,O=x+OU=y", "multi-valued"),
            ("C=US,ST=WA,O=x,O=y", "twice"),
            ("C=US,ST=WA,O=#0403", "hex"),
            ("C=US,ST=WA,O=x\\", "ends inside"),
            ("C=US,ST=WA,Ox", "not type=value"),
        ];
        for (dn, why) in refused {
            let e = parse_dn(dn).unwrap_err();
            assert!(e.contains(why), "{dn}: {e}");
        }
    }

    #[test]
    fn a_subset_matches() {
        let subject = parse_dn("C=US,ST=WA,L=Seattle,O=acme,CN=builder").unwrap();
        assert!(is_subset(&parse_dn("C=US,ST=WA,O=acme").unwrap(), &subject));
        assert!(is_subset(&parse_dn("CN=builder,C=US,ST=WA,O=acme").unwrap(), &subject));
        assert!(!is_subset(&parse_dn("C=US,ST=WA,O=acme,CN=other").unwrap(), &subject));
        assert!(!is_subset(&parse_dn("C=US,ST=WA,O=acme,OU=x").unwrap(), &subject));
    }
}
