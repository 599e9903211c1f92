//! RFC 3161 countersignatures: a timestamp token (CMS SignedData over a
//! TSTInfo) whose message imprint is the hash of the envelope's signature,
//! signed by a timestamp authority whose certificate, carried in the token,
//! chains to a root of the statement's `tsa:` stores. RSA (PKCS #1 v1.5 and
//! PSS) and ECDSA authorities alike: public ones mostly sign with RSA.

use cms::cert::CertificateChoices;
use cms::content_info::ContentInfo;
use cms::signed_data::{SignedData, SignerIdentifier};
use const_oid::ObjectIdentifier;
use const_oid::db::rfc5280::{ID_CE_EXT_KEY_USAGE, ID_CE_SUBJECT_KEY_IDENTIFIER, ID_KP_TIME_STAMPING};
use const_oid::db::rfc5912 as algs;
use der::asn1::{GeneralizedTime, OctetString};
use der::{Decode as _, Encode as _};
use sha2::Digest as _;
use x509_cert::ext::pkix::{ExtendedKeyUsage, SubjectKeyIdentifier};
use x509_cert::spki::AlgorithmIdentifierOwned;

use super::chain::Cert;

const ID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
const ID_CT_TST_INFO: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.1.4");
const ID_CONTENT_TYPE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.3");
const ID_MESSAGE_DIGEST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.4");
/// A token larger than this is not one (a token with a 3-certificate
/// chain is a few KiB); certificates in it at most.
const MAX_TOKEN: usize = 64 << 10;
const MAX_CERTS: usize = 10;

#[derive(der::Sequence)]
struct MessageImprint {
    hash_algorithm: AlgorithmIdentifierOwned,
    hashed_message: OctetString,
}

fn hash(alg: &ObjectIdentifier, data: &[u8]) -> Option<Vec<u8>> {
    Some(match *alg {
        algs::ID_SHA_256 => sha2::Sha256::digest(data).to_vec(),
        algs::ID_SHA_384 => sha2::Sha384::digest(data).to_vec(),
        algs::ID_SHA_512 => sha2::Sha512::digest(data).to_vec(),
        _ => return None,
    })
}

/// The authority's subject and the signed time (seconds).
pub(super) fn verify(token: &[u8], signature: &[u8], roots: &[&Cert]) -> Result<(String, i64), String> {
    if token.len() > MAX_TOKEN {
        return Err(format!("larger than {MAX_TOKEN} bytes"));
    }
    if roots.is_empty() {
        return Err("the tsa: trust stores hold no certificate".into());
    }
    let ci = ContentInfo::from_der(token).map_err(|e| format!("not a timestamp token: {e}"))?;
    if ci.content_type != ID_SIGNED_DATA {
        return Err("not CMS SignedData".into());
    }
    let sd = SignedData::from_der(&ci.content.to_der().map_err(|e| e.to_string())?)
        .map_err(|e| format!("not CMS SignedData: {e}"))?;
    if sd.encap_content_info.econtent_type != ID_CT_TST_INFO {
        return Err("the token holds no TSTInfo".into());
    }
    let tst_der = sd.encap_content_info.econtent.as_ref().ok_or("the token holds no TSTInfo")?.value();
    // TSTInfo's fields after the fifth (accuracy, ordering, nonce, the
    // authority's name, extensions) say nothing this check uses.
    let fields: Vec<der::Any> = Vec::from_der(tst_der).map_err(|e| format!("TSTInfo: {e}"))?;
    let (Some(imprint), Some(gen_time)) = (fields.get(2), fields.get(4)) else {
        return Err("TSTInfo is too short".into());
    };
    let imprint: MessageImprint = imprint.decode_as().map_err(|e| format!("TSTInfo's message imprint: {e}"))?;
    let gen_time: GeneralizedTime = gen_time.decode_as().map_err(|e| format!("TSTInfo's time: {e}"))?;
    let at = gen_time.to_unix_duration().as_secs() as i64;
    let want = hash(&imprint.hash_algorithm.oid, signature).ok_or("a message imprint hash other than SHA-2")?;
    if want != imprint.hashed_message.as_bytes() {
        return Err("it is a timestamp of another signature (message imprint)".into());
    }

    let embedded: Vec<Cert> = sd
        .certificates
        .iter()
        .flat_map(|s| s.0.iter())
        .take(MAX_CERTS)
        .filter_map(|c| match c {
            CertificateChoices::Certificate(c) => c.to_der().ok().and_then(|d| Cert::parse(&d).ok()),
            _ => None,
        })
        .collect();
    let [si] = sd.signer_infos.0.as_slice() else { return Err("a token with other than one signer".into()) };
    let signer =
        embedded.iter().find(|c| is_signer(c, &si.sid)).ok_or("the token does not carry its signer's certificate")?;
    let attrs = si.signed_attrs.as_ref().ok_or("the token has no signed attributes")?;
    let attr = |oid| attrs.iter().find(|a| a.oid == oid).and_then(|a| a.values.get(0));
    let content_type: Option<ObjectIdentifier> = attr(ID_CONTENT_TYPE).and_then(|v| v.decode_as().ok());
    if content_type != Some(ID_CT_TST_INFO) {
        return Err("the signed content-type attribute is not TSTInfo".into());
    }
    let digest: Option<OctetString> = attr(ID_MESSAGE_DIGEST).and_then(|v| v.decode_as().ok());
    let tst_hash = hash(&si.digest_alg.oid, tst_der).ok_or("a digest algorithm other than SHA-2")?;
    if digest.as_ref().map(OctetString::as_bytes) != Some(tst_hash.as_slice()) {
        return Err("the signed message-digest attribute is not the TSTInfo's".into());
    }
    let signed = attrs.to_der().map_err(|e| e.to_string())?;
    let alg = signature_alg(&si.signature_algorithm, &si.digest_alg.oid);
    let sig = der::asn1::BitString::from_bytes(si.signature.as_bytes()).map_err(|e| e.to_string())?;
    if !signer.signed(&signed, &alg, &sig, "the timestamp").map_err(|e| e.to_string())? {
        return Err("its signature does not verify with its signer's key".into());
    }
    match signer.extension::<ExtendedKeyUsage>(ID_CE_EXT_KEY_USAGE).map_err(|e| e.to_string())? {
        Some((_, eku)) if eku.0.contains(&ID_KP_TIME_STAMPING) => {}
        _ => return Err(format!("signer {:?} is not a timestamping certificate (extended key usage)", signer.subject)),
    }
    anchored(signer, &embedded, roots, at)?;
    Ok((signer.subject.clone(), at))
}

fn is_signer(c: &Cert, sid: &SignerIdentifier) -> bool {
    match sid {
        SignerIdentifier::IssuerAndSerialNumber(i) => {
            c.cert.tbs_certificate.serial_number == i.serial_number
                && i.issuer.to_der().ok().as_deref() == Some(&c.issuer_der[..])
        }
        SignerIdentifier::SubjectKeyIdentifier(ski) => matches!(
            c.extension::<SubjectKeyIdentifier>(ID_CE_SUBJECT_KEY_IDENTIFIER),
            Ok(Some((_, own))) if own == *ski
        ),
    }
}

/// CMS names `rsaEncryption` and the digest apart; certificates name them
/// together. The PSS and ECDSA identifiers already say both.
fn signature_alg(alg: &AlgorithmIdentifierOwned, digest: &ObjectIdentifier) -> AlgorithmIdentifierOwned {
    let oid = match (alg.oid, *digest) {
        (algs::RSA_ENCRYPTION, algs::ID_SHA_256) => algs::SHA_256_WITH_RSA_ENCRYPTION,
        (algs::RSA_ENCRYPTION, algs::ID_SHA_384) => algs::SHA_384_WITH_RSA_ENCRYPTION,
        (algs::RSA_ENCRYPTION, algs::ID_SHA_512) => algs::SHA_512_WITH_RSA_ENCRYPTION,
        (o, _) => o,
    };
    AlgorithmIdentifierOwned { oid, parameters: alg.parameters.clone() }
}

/// From the signer up through the token's certificates to a root of the
/// stores, each valid at the signed time and each issuer a CA.
fn anchored(signer: &Cert, embedded: &[Cert], roots: &[&Cert], at: i64) -> Result<(), String> {
    let mut current = signer;
    for _ in 0..=MAX_CERTS {
        if at < current.not_before || at > current.not_after {
            return Err(format!("certificate {:?} was not valid at the signed time", current.subject));
        }
        if roots.iter().any(|r| r.der == current.der) {
            return Ok(());
        }
        let issuer = roots
            .iter()
            .copied()
            .chain(embedded.iter())
            .filter(|c| c.der != current.der && c.is_ca())
            .find(|c| current.issued_by(c).unwrap_or(false));
        match issuer {
            Some(i) => current = i,
            None => {
                return Err(format!("the authority's chain from {:?} does not reach a tsa: store", signer.subject));
            }
        }
    }
    Err("the authority's chain is too long".into())
}
