//! The certificates a Notary Project envelope carries, checked as the
//! spec says (and notation-core-go's `ValidateCodeSigningCertChain` does):
//! the signing certificate first, each issued by the next, the last a
//! self-signed root; a lone certificate may be self-signed. Key usages,
//! CA constraints, key sizes and signature algorithms are checked here;
//! validity times and trust are the caller's, since when they apply
//! depends on the trust policy and on a timestamp.

use aws_lc_rs::signature::{self as sig, UnparsedPublicKey, VerificationAlgorithm};
use const_oid::ObjectIdentifier;
use const_oid::db::rfc5280 as oids;
use const_oid::db::rfc5912 as algs;
use der::{Decode as _, Encode as _};
use x509_cert::Certificate;
use x509_cert::ext::pkix::{BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages};
use x509_cert::spki::AlgorithmIdentifierOwned;

use super::envelope::Alg;

/// One parsed certificate, with what the checks read kept at hand.
#[derive(Debug, Clone)]
pub(crate) struct Cert {
    pub(crate) der: Vec<u8>,
    pub(crate) cert: Certificate,
    pub(crate) subject: String,
    subject_der: Vec<u8>,
    pub(crate) issuer_der: Vec<u8>,
    tbs_der: Vec<u8>,
    spki_der: Vec<u8>,
    pub(crate) not_before: i64,
    pub(crate) not_after: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct ChainError(pub(crate) String);

fn bad(m: impl Into<String>) -> ChainError {
    ChainError(m.into())
}

impl Cert {
    pub(crate) fn parse(der_bytes: &[u8]) -> Result<Cert, ChainError> {
        let cert =
            Certificate::from_der(der_bytes).map_err(|e| bad(format!("a certificate that does not parse: {e}")))?;
        let tbs = &cert.tbs_certificate;
        let enc = |r: der::Result<Vec<u8>>| r.map_err(|e| bad(format!("a certificate that does not encode: {e}")));
        let subject = super::identity::subject_string(&tbs.subject);
        Ok(Cert {
            subject_der: enc(tbs.subject.to_der())?,
            issuer_der: enc(tbs.issuer.to_der())?,
            tbs_der: enc(tbs.to_der())?,
            spki_der: enc(tbs.subject_public_key_info.to_der())?,
            not_before: tbs.validity.not_before.to_unix_duration().as_secs() as i64,
            not_after: tbs.validity.not_after.to_unix_duration().as_secs() as i64,
            der: der_bytes.to_vec(),
            subject,
            cert,
        })
    }

    pub(crate) fn extension<T: for<'a> der::Decode<'a>>(
        &self,
        oid: ObjectIdentifier,
    ) -> Result<Option<(bool, T)>, ChainError> {
        let Some(exts) = &self.cert.tbs_certificate.extensions else { return Ok(None) };
        let mut found = exts.iter().filter(|e| e.extn_id == oid);
        let Some(e) = found.next() else { return Ok(None) };
        if found.next().is_some() {
            return Err(bad(format!("certificate {:?} repeats extension {oid}", self.subject)));
        }
        let v = T::from_der(e.extn_value.as_bytes())
            .map_err(|err| bad(format!("certificate {:?}: extension {oid} does not parse: {err}", self.subject)))?;
        Ok(Some((e.critical, v)))
    }

    fn self_issued(&self) -> bool {
        self.subject_der == self.issuer_der
    }

    /// Is this a CA certificate (basic constraints `cA`)?
    pub(crate) fn is_ca(&self) -> bool {
        matches!(self.extension::<BasicConstraints>(oids::ID_CE_BASIC_CONSTRAINTS), Ok(Some((_, bc))) if bc.ca)
    }

    /// Did `issuer`'s key sign this certificate (and is it named as its issuer)?
    pub(crate) fn issued_by(&self, issuer: &Cert) -> Result<bool, ChainError> {
        if self.issuer_der != issuer.subject_der {
            return Ok(false);
        }
        issuer.signed(&self.tbs_der, &self.cert.signature_algorithm, &self.cert.signature, &self.subject)
    }

    /// Did this certificate's key make `signature` over `tbs` (a
    /// certificate's or a CRL's), with the algorithm it names?
    pub(crate) fn signed(
        &self,
        tbs: &[u8],
        alg: &AlgorithmIdentifierOwned,
        signature: &der::asn1::BitString,
        what: &str,
    ) -> Result<bool, ChainError> {
        let v = signature_alg(alg, self, what)?;
        let signature = signature.as_bytes().ok_or_else(|| bad(format!("{what}: a signature with unused bits")))?;
        Ok(UnparsedPublicKey::new(v, &self.spki_der).verify(tbs, signature).is_ok())
    }

    /// The envelope algorithm this certificate's key must sign with.
    pub(crate) fn key_alg(&self) -> Result<Alg, ChainError> {
        let spki = &self.cert.tbs_certificate.subject_public_key_info;
        let key = spki.subject_public_key.raw_bytes();
        match spki.algorithm.oid {
            algs::RSA_ENCRYPTION => {
                let bits = rsa_bits(key).ok_or_else(|| bad("an RSA key that does not parse"))?;
                match bits {
                    2048 => Ok(Alg::Ps256),
                    3072 => Ok(Alg::Ps384),
                    4096 => Ok(Alg::Ps512),
                    n => Err(bad(format!("certificate {:?}: RSA key of {n} bits (2048, 3072 or 4096)", self.subject))),
                }
            }
            algs::ID_EC_PUBLIC_KEY => {
                let curve = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.decode_as::<ObjectIdentifier>().ok())
                    .ok_or_else(|| bad("an EC key without a named curve"))?;
                match curve {
                    algs::SECP_256_R_1 => Ok(Alg::Es256),
                    algs::SECP_384_R_1 => Ok(Alg::Es384),
                    algs::SECP_521_R_1 => Ok(Alg::Es512),
                    c => Err(bad(format!("certificate {:?}: EC curve {c} (P-256, P-384 or P-521)", self.subject))),
                }
            }
            o => Err(bad(format!("certificate {:?}: key algorithm {o} (RSA or ECDSA)", self.subject))),
        }
    }

    /// Does the signature over `signed` verify with this certificate's key?
    pub(crate) fn verifies(&self, alg: Alg, signed: &[u8], signature: &[u8]) -> bool {
        let v: &'static dyn VerificationAlgorithm = match alg {
            Alg::Ps256 => &sig::RSA_PSS_2048_8192_SHA256,
            Alg::Ps384 => &sig::RSA_PSS_2048_8192_SHA384,
            Alg::Ps512 => &sig::RSA_PSS_2048_8192_SHA512,
            Alg::Es256 => &sig::ECDSA_P256_SHA256_FIXED,
            Alg::Es384 => &sig::ECDSA_P384_SHA384_FIXED,
            Alg::Es512 => &sig::ECDSA_P521_SHA512_FIXED,
        };
        UnparsedPublicKey::new(v, &self.spki_der).verify(signed, signature).is_ok()
    }

    /// sha256 of the DER certificate, as `openssl x509 -fingerprint -sha256` prints it without colons.
    pub(crate) fn thumbprint(&self) -> String {
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&self.der))
    }
}

/// The modulus size of a PKCS#1 RSAPublicKey.
fn rsa_bits(key: &[u8]) -> Option<usize> {
    #[derive(der::Sequence)]
    struct RsaPublicKey<'a> {
        modulus: der::asn1::UintRef<'a>,
        _exponent: der::asn1::UintRef<'a>,
    }
    let k = RsaPublicKey::from_der(key).ok()?;
    let m = k.modulus.as_bytes();
    let lead = m.first()?;
    Some((m.len() - 1) * 8 + (8 - lead.leading_zeros() as usize))
}

/// ecdsa-with-SHA1 (RFC 3279), which const-oid's database lacks.
const ECDSA_WITH_SHA_1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.1");

/// Which algorithm a signature by `issuer` claims. SHA-1 is refused, as
/// the spec says.
fn signature_alg(
    alg: &AlgorithmIdentifierOwned,
    issuer: &Cert,
    what: &str,
) -> Result<&'static dyn VerificationAlgorithm, ChainError> {
    let curve = issuer.key_alg().ok();
    let oid = alg.oid;
    Ok(match (oid, curve) {
        (algs::SHA_256_WITH_RSA_ENCRYPTION, _) => &sig::RSA_PKCS1_2048_8192_SHA256,
        (algs::SHA_384_WITH_RSA_ENCRYPTION, _) => &sig::RSA_PKCS1_2048_8192_SHA384,
        (algs::SHA_512_WITH_RSA_ENCRYPTION, _) => &sig::RSA_PKCS1_2048_8192_SHA512,
        (algs::ID_RSASSA_PSS, _) => pss(alg)?,
        (algs::ECDSA_WITH_SHA_256, Some(Alg::Es256)) => &sig::ECDSA_P256_SHA256_ASN1,
        (algs::ECDSA_WITH_SHA_384, Some(Alg::Es256)) => &sig::ECDSA_P256_SHA384_ASN1,
        (algs::ECDSA_WITH_SHA_512, Some(Alg::Es256)) => &sig::ECDSA_P256_SHA512_ASN1,
        (algs::ECDSA_WITH_SHA_256, Some(Alg::Es384)) => &sig::ECDSA_P384_SHA256_ASN1,
        (algs::ECDSA_WITH_SHA_384, Some(Alg::Es384)) => &sig::ECDSA_P384_SHA384_ASN1,
        (algs::ECDSA_WITH_SHA_512, Some(Alg::Es384)) => &sig::ECDSA_P384_SHA512_ASN1,
        (algs::ECDSA_WITH_SHA_256, Some(Alg::Es512)) => &sig::ECDSA_P521_SHA256_ASN1,
        (algs::ECDSA_WITH_SHA_384, Some(Alg::Es512)) => &sig::ECDSA_P521_SHA384_ASN1,
        (algs::ECDSA_WITH_SHA_512, Some(Alg::Es512)) => &sig::ECDSA_P521_SHA512_ASN1,
        (algs::SHA_1_WITH_RSA_ENCRYPTION | ECDSA_WITH_SHA_1, _) => {
            return Err(bad(format!("{what} is signed with SHA-1, which the Notary Project does not accept")));
        }
        (o, _) => return Err(bad(format!("{what}: signature algorithm {o} is not supported"))),
    })
}

/// RSASSA-PSS in a certificate: the hash named by its parameters, with
/// MGF1 of the same hash and a salt of the hash's length (what aws-lc
/// verifies, and what every CA writes).
fn pss(alg: &AlgorithmIdentifierOwned) -> Result<&'static dyn VerificationAlgorithm, ChainError> {
    let der = alg.parameters.as_ref().and_then(|p| p.to_der().ok()).unwrap_or_default();
    match pss_hash(&der).map(|a| a.oid) {
        Some(algs::ID_SHA_256) => Ok(&sig::RSA_PSS_2048_8192_SHA256),
        Some(algs::ID_SHA_384) => Ok(&sig::RSA_PSS_2048_8192_SHA384),
        Some(algs::ID_SHA_512) => Ok(&sig::RSA_PSS_2048_8192_SHA512),
        _ => Err(bad("an RSA-PSS certificate signature with a hash other than SHA-256/384/512")),
    }
}

fn pss_hash(params: &[u8]) -> Option<AlgorithmIdentifierOwned> {
    #[derive(der::Sequence)]
    struct PssParams {
        #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
        hash: Option<AlgorithmIdentifierOwned>,
        #[asn1(context_specific = "1", tag_mode = "EXPLICIT", optional = "true")]
        _mgf: Option<AlgorithmIdentifierOwned>,
        #[asn1(context_specific = "2", tag_mode = "EXPLICIT", optional = "true")]
        _salt: Option<u32>,
        #[asn1(context_specific = "3", tag_mode = "EXPLICIT", optional = "true")]
        _trailer: Option<u32>,
    }
    PssParams::from_der(params).ok()?.hash
}

/// Parse an envelope's chain and check its shape; returns the parsed
/// certificates, the signing certificate first.
pub(crate) fn validate(chain: &[Vec<u8>]) -> Result<Vec<Cert>, ChainError> {
    let certs: Vec<Cert> = chain.iter().map(|d| Cert::parse(d)).collect::<Result<_, _>>()?;
    let Some(leaf) = certs.first() else { return Err(bad("the certificate chain is empty")) };
    if certs.len() == 1 {
        if !leaf.self_issued() || !leaf.issued_by(leaf)? {
            return Err(bad(format!(
                "certificate {:?} stands alone but is not self-signed: the chain must end in its root",
                leaf.subject
            )));
        }
        leaf_rules(leaf)?;
        return Ok(certs);
    }
    for (i, c) in certs.iter().enumerate() {
        if i == certs.len() - 1 {
            if !c.self_issued() || !c.issued_by(c)? {
                return Err(bad(format!("root certificate {:?} is not self-signed", c.subject)));
            }
        } else {
            if c.self_issued() && c.issued_by(c).unwrap_or(false) {
                let what = if i == 0 { "signing" } else { "intermediate" };
                return Err(bad(format!("{what} certificate {:?} is self-signed", c.subject)));
            }
            if !c.issued_by(&certs[i + 1])? {
                return Err(bad(format!("certificate {:?} is not issued by {:?}", c.subject, certs[i + 1].subject)));
            }
        }
        if i == 0 {
            leaf_rules(c)?;
        } else {
            ca_rules(c, i - 1)?;
        }
    }
    Ok(certs)
}

fn key_usage(c: &Cert) -> Result<KeyUsage, ChainError> {
    match c.extension::<KeyUsage>(oids::ID_CE_KEY_USAGE)? {
        Some((true, ku)) => Ok(ku),
        Some((false, _)) => Err(bad(format!("certificate {:?}: the key usage extension must be critical", c.subject))),
        None => Err(bad(format!("certificate {:?}: the key usage extension must be present", c.subject))),
    }
}

fn leaf_rules(c: &Cert) -> Result<(), ChainError> {
    if let Some((_, bc)) = c.extension::<BasicConstraints>(oids::ID_CE_BASIC_CONSTRAINTS)?
        && bc.ca
    {
        return Err(bad(format!("signing certificate {:?} is a CA (basic constraints ca=true)", c.subject)));
    }
    let ku = key_usage(c)?;
    if !ku.digital_signature() {
        return Err(bad(format!("signing certificate {:?}: key usage lacks digitalSignature", c.subject)));
    }
    let others = [
        (KeyUsages::KeyEncipherment, "keyEncipherment"),
        (KeyUsages::DataEncipherment, "dataEncipherment"),
        (KeyUsages::KeyAgreement, "keyAgreement"),
        (KeyUsages::KeyCertSign, "keyCertSign"),
        (KeyUsages::CRLSign, "cRLSign"),
        (KeyUsages::EncipherOnly, "encipherOnly"),
        (KeyUsages::DecipherOnly, "decipherOnly"),
    ];
    let extra: Vec<&str> = others.iter().filter(|(u, _)| ku.0.contains(*u)).map(|(_, n)| *n).collect();
    if !extra.is_empty() {
        return Err(bad(format!(
            "signing certificate {:?}: key usage must be digitalSignature only, not {}",
            c.subject,
            extra.join(", ")
        )));
    }
    if let Some((_, eku)) = c.extension::<ExtendedKeyUsage>(oids::ID_CE_EXT_KEY_USAGE)? {
        let refused = [
            (oids::ID_KP_SERVER_AUTH, "serverAuth"),
            (oids::ID_KP_CLIENT_AUTH, "clientAuth"),
            (oids::ID_KP_EMAIL_PROTECTION, "emailProtection"),
            (oids::ID_KP_TIME_STAMPING, "timeStamping"),
            (oids::ID_KP_OCSP_SIGNING, "OCSPSigning"),
        ];
        if let Some((_, n)) = refused.iter().find(|(o, _)| eku.0.contains(o)) {
            return Err(bad(format!(
                "signing certificate {:?}: extended key usage {n} is not for code signing",
                c.subject
            )));
        }
    }
    c.key_alg().map(|_| ())
}

fn ca_rules(c: &Cert, below: usize) -> Result<(), ChainError> {
    match c.extension::<BasicConstraints>(oids::ID_CE_BASIC_CONSTRAINTS)? {
        Some((_, bc)) if bc.ca => {
            if let Some(n) = bc.path_len_constraint
                && usize::from(n) < below
            {
                return Err(bad(format!("CA certificate {:?} allows a path of {n} below it, not {below}", c.subject)));
            }
        }
        _ => return Err(bad(format!("certificate {:?} issues others but is not a CA (basic constraints)", c.subject))),
    }
    if !key_usage(c)?.key_cert_sign() {
        return Err(bad(format!("CA certificate {:?}: key usage lacks keyCertSign", c.subject)));
    }
    Ok(())
}
