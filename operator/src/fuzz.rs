//! Entry points for `cargo fuzz` (see `fuzz/` at the repository's root):
//! each takes arbitrary bytes and must neither panic nor hang, whatever
//! they are. Public only in fuzzing builds; in tests, the crashes the
//! fuzzers found (and a seed corpus) are replayed through them.

use std::time::{Duration, SystemTime};

use crate::oci::auth::Challenge;
use crate::oci::{DockerConfig, Manifest, Reference, retry};

pub fn reference(data: &[u8]) {
    if let Ok(s) = std::str::from_utf8(data)
        && let Ok(r) = Reference::parse(s)
    {
        let _ = (r.to_string(), r.manifest_ref());
    }
}

pub fn manifest(data: &[u8]) {
    for ct in [None, Some("application/vnd.oci.image.index.v1+json"), Some("application/json")] {
        if let Ok(Manifest::Index(i)) = Manifest::parse(data, ct) {
            let _ = i.select(&crate::oci::Platform::current());
        }
    }
}

pub fn docker_config(data: &[u8]) {
    if let Ok(c) = DockerConfig::parse(data) {
        let _ = c.credentials_for("registry.example.com:5000");
    }
}

pub fn auth_headers(data: &[u8]) {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = Challenge::parse(s);
        let _ = retry::parse_retry_after(s, SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000));
    }
}

/// The first byte picks the compression; the rest is a layer, unpacked
/// under small limits into a fresh directory, merged and checked.
pub fn unpack(data: &[u8]) {
    use crate::unpack::layer::{Compression, LayerKind};
    use crate::unpack::{Budget, Limits, Selection, Staging, unpack_layer};
    let Some((&first, layer)) = data.split_first() else { return };
    let compression = match first % 3 {
        0 => Compression::None,
        1 => Compression::Gzip,
        _ => Compression::Zstd,
    };
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let base = std::env::temp_dir().join(format!("ocisync-fuzz-{}-{n}", std::process::id()));
    let out = base.join("out");
    if let Ok(staging) = Staging::new(&out) {
        let budget = Budget::new(Limits {
            max_layer_bytes: 1 << 20,
            max_total_bytes: 1 << 20,
            max_files: 1000,
            max_selected_bytes: 1 << 19,
        });
        let digest = crate::oci::Digest::of(layer);
        let kind = LayerKind::Tar(compression);
        if let Ok(report) = unpack_layer(&kind, &digest, layer, &staging.layer_dir(0), &Selection::all(), &budget)
            && staging.merge(vec![(0, report)]).is_ok()
        {
            let _ = staging.commit();
        }
    }
    let _ = std::fs::remove_dir_all(&base);
}

/// Tar headers as a hostile archive may hold them: PAX records alone, then
/// the bytes as a whole archive, every entry read to its end.
pub fn tar_headers(data: &[u8]) {
    use crate::unpack::archive::{Archive, Pax};
    let _ = Pax::parse(data);
    let mut a = Archive::new(data);
    let mut sink = [0u8; 4096];
    for _ in 0..10_000 {
        match a.next_entry() {
            Ok(Some(_)) => while matches!(std::io::Read::read(&mut a, &mut sink), Ok(n) if n > 0) {},
            _ => break,
        }
    }
}

/// A layer's last bytes, a TOC region and a TOC JSON, as a registry could
/// serve them: footers, both TOC members, and the entries checked.
pub fn toc(data: &[u8]) {
    use crate::unpack::toc::{Format, footer, parse, toc_json};
    let _ = footer(data);
    for f in [Format::Estargz, Format::ZstdChunked] {
        if let Ok(json) = toc_json(f, data)
            && let Ok(entries) = parse(&json, u64::MAX)
        {
            planned(&entries, u64::MAX);
        }
    }
    // bounded by its own length, and as a TOC whose data could be anywhere
    for data_end in [data.len() as u64, u64::MAX] {
        if let Ok(entries) = parse(data, data_end) {
            planned(&entries, data_end);
        }
    }
    if let Ok(a) = serde_json::from_slice::<std::collections::BTreeMap<String, String>>(data) {
        let _ = crate::unpack::toc::declared(&a);
    }
}

/// What a ranged read of `entries` would fetch: sorted requests that do
/// not overlap, no more than allowed, covering every chunk of every file
/// chosen, whatever the TOC said; with every other selected file already
/// here, those and only those left out.
fn planned(entries: &[crate::unpack::toc::TocEntry], layer_size: u64) {
    use crate::fetch::partial::plan::{Choice, MAX_REQUESTS, choose, selected};
    use crate::unpack::Selection;
    use crate::unpack::toc::TocKind;
    let none: [&str; 0] = [];
    let selections = [Selection::new(&none, &none, &none), Selection::new(&["**/*.yaml"], &none, &none)];
    for (selection, delta) in selections.iter().flatten().flat_map(|s| [(s, false), (s, true)]) {
        let here: Vec<usize> = selected(entries, selection).filter(|i| delta && i % 2 == 0).collect();
        let Choice::Ranges(plan) = choose(entries, selection, &here, layer_size, 0) else { continue };
        assert_eq!(plan.reused, here, "reused");
        assert!(plan.files.iter().all(|i| here.binary_search(i).is_err()), "{:?} fetched and reused", plan.files);
        assert!(plan.spans.len() <= MAX_REQUESTS, "{} requests", plan.spans.len());
        assert!(plan.spans.windows(2).all(|w| w[0].end <= w[1].start), "{:?}", plan.spans);
        for &i in &plan.files {
            let TocKind::File { chunks, .. } = &entries[i].kind else { panic!("{i} is not a file") };
            for c in chunks {
                let covered = plan.spans.iter().any(|s| s.start <= c.offset && c.end <= s.end);
                assert!(covered, "chunk {}..{} of {} in none of {:?}", c.offset, c.end, entries[i].path, plan.spans);
            }
        }
    }
}

/// An Artifact spec as a tenant may write it, through to the plan.
pub fn spec(data: &[u8]) {
    if let Ok(spec) = serde_json::from_slice::<crate::api::ArtifactSpec>(data)
        && let Ok(plan) = crate::controller::plan::Plan::new("fuzz", &spec)
    {
        let _ = crate::controller::plan::jittered(plan.interval, u64::MAX);
    }
}

/// A signature blob as a registry could serve it: as a Sigstore bundle,
/// and as a legacy payload (the first line, if any, is its signature
/// annotation; a second, its Rekor bundle), checked with a real key.
pub fn signature(data: &[u8]) {
    use std::collections::BTreeMap;

    use crate::oci::Digest;
    use crate::oci::referrers::{
        Candidate, Discovered, Envelope, FoundBy, REKOR_BUNDLE_ANNOTATION, SIGNATURE_ANNOTATION,
    };
    use crate::verify::{Key, Requirement, check_all};

    const KEY: &[u8] = include_bytes!("../testdata/cosign-v3/cosign.pub");
    // the digest the fixtures sign, so that mutations reach the crypto
    let (Ok(key), Ok(digest)) = (
        Key::parse("cosign.pub", KEY),
        Digest::parse(include_str!("../testdata/cosign-v3/artifact/digest.txt").trim()),
    ) else {
        return;
    };
    let mut lines = data.splitn(3, |b| *b == b'\n');
    let (sig, set, payload) = (lines.next(), lines.next(), lines.next());
    let mut annotations = BTreeMap::new();
    if let Some(s) = sig.and_then(|s| std::str::from_utf8(s).ok()) {
        annotations.insert(SIGNATURE_ANNOTATION.to_string(), s.to_string());
    }
    if let Some(s) = set.and_then(|s| std::str::from_utf8(s).ok()) {
        annotations.insert(REKOR_BUNDLE_ANNOTATION.to_string(), s.to_string());
    }
    let candidate = |envelope| Candidate { found_by: FoundBy::ReferrersApi, manifest: Digest::of(data), envelope };
    let found = Discovered {
        candidates: vec![
            candidate(Envelope::Bundle(bytes::Bytes::copy_from_slice(data))),
            candidate(Envelope::SimpleSigning {
                payload: bytes::Bytes::copy_from_slice(payload.unwrap_or_default()),
                annotations,
            }),
        ],
        ..Default::default()
    };
    for tlog in [crate::api::TransparencyLog::IfPresent, crate::api::TransparencyLog::Required] {
        let req = Requirement::new("fuzz".into(), vec![key.clone()], &[], Some(tlog));
        let _ = check_all(&[req], &digest, &found);
    }
}

/// A keyless bundle as a referrer of the digest the public-good seed's
/// statement names (`a.txt`), against the embedded public-good root and a
/// Rekor v2 root, in every log mode: the identity rules, the timed chain
/// check through `sigstore-verify`, the untimed one through webpki, the
/// entry-kind peek and the evidence all see mutated input.
pub fn keyless(data: &[u8]) {
    use std::sync::{Arc, OnceLock};

    use crate::api::{Identity, TransparencyLog};
    use crate::oci::Digest;
    use crate::oci::referrers::{Candidate, Discovered, Envelope, FoundBy};
    use crate::verify::keyless::Rules;
    use crate::verify::{Requirement, Trust, check_all};

    static REKOR2: OnceLock<Option<Arc<Trust>>> = OnceLock::new();
    let rekor2 = REKOR2.get_or_init(|| {
        Trust::load("rekor2", include_bytes!("../testdata/public-good/keyless/rekor2-trusted_root.json"))
            .ok()
            .map(Arc::new)
    });
    let digest = Digest::of(include_bytes!("../testdata/public-good/a.txt"));
    let any = Identity { issuer_reg_exp: Some(".*".into()), subject_reg_exp: Some(".*".into()), ..Default::default() };
    let Ok(rules) = Rules::compile(&[any], false) else { return };
    let envelope = Envelope::Bundle(bytes::Bytes::copy_from_slice(data));
    let found = Discovered {
        candidates: vec![Candidate { found_by: FoundBy::ReferrersApi, manifest: Digest::of(data), envelope }],
        ..Default::default()
    };
    let types = ["https://slsa.dev/provenance/v1".to_string()];
    for tlog in [TransparencyLog::Required, TransparencyLog::IfPresent, TransparencyLog::Ignore] {
        let req = Requirement::new("fuzz".into(), vec![], &types, Some(tlog)).with_keyless(rules.clone(), Some(tlog));
        let _ = check_all(std::slice::from_ref(&req), &digest, &found);
        if let Some(root) = rekor2 {
            let _ = check_all(&[req.with_trust(root.clone())], &digest, &found);
        }
    }
}

/// What the Notation targets check against: notation's own fixtures'
/// trust policy, roots and CRL, a minute after they were signed.
fn notation_fixture() -> &'static (crate::verify::notation::Config, crate::verify::notation::Subject) {
    use std::sync::OnceLock;

    use crate::verify::notation::{Config, Subject};
    static F: OnceLock<(Config, Subject)> = OnceLock::new();
    F.get_or_init(|| {
        let manifest = include_bytes!("../testdata/notation/manifest.json");
        let policy = br#"{"version": "1.0", "trustPolicies": [{"name": "p", "registryScopes": ["*"],
            "signatureVerification": {"level": "strict"}, "trustStores": ["ca:acme", "tsa:tsa"],
            "trustedIdentities": ["x509.subject:C=US, ST=WA, O=acme"]}]}"#;
        let entries = [
            ("trustpolicy.json".to_string(), policy.to_vec()),
            ("root.crt".to_string(), include_bytes!("../testdata/notation/root.crt").to_vec()),
            ("tsa-root.crt".to_string(), include_bytes!("../testdata/notation/tsa-root.crt").to_vec()),
        ]
        .into();
        let cfg = Config::from_entries("fuzz", &entries).expect("the fixtures load");
        let subject = Subject {
            scope: "127.0.0.1:5077/app".into(),
            digest: crate::oci::Digest::of(manifest).to_string(),
            size: manifest.len() as u64,
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        };
        (cfg, subject)
    })
}

fn notation_envelope(media_type: &str, data: &[u8]) {
    use crate::verify::notation::{self, revocation::Crls};
    let (cfg, subject) = notation_fixture();
    let crls: Crls =
        [("http://127.0.0.1:5079/root.crl".to_string(), Ok(include_bytes!("../testdata/notation/root.crl").to_vec()))]
            .into();
    let Ok(st) = notation::statement(cfg, subject) else { return };
    let _ = notation::crl_urls(st, std::iter::once((media_type, data)));
    for now in [1_796_669_282, 1_796_669_282 + 8 * 86_400] {
        let _ = notation::verify(st, &cfg.stores, subject, media_type, data, &crls, now);
    }
}

/// A JWS envelope through the parser, then its payload and certificates
/// through theirs (no signature is checked: fast enough for tens of
/// millions of runs; `notation_verify` does the rest).
pub fn notation_jws(data: &[u8]) {
    crate::verify::notation::parse_all(crate::verify::notation::JWS, data);
}

/// A COSE_Sign1 envelope (the CBOR reader first), as `notation_jws`.
pub fn notation_cose(data: &[u8]) {
    crate::verify::notation::parse_all(crate::verify::notation::COSE, data);
}

/// The first byte picks the envelope; the rest goes through the whole
/// Notation check: the chain's rules, the signature, the timestamp token,
/// the CRL lookup, at two times.
pub fn notation_verify(data: &[u8]) {
    use crate::verify::notation::{COSE, JWS};
    if let Some((first, rest)) = data.split_first() {
        notation_envelope(if first & 1 == 0 { JWS } else { COSE }, rest);
    }
}

/// A trust policy document, a statement picked from it, and the bytes as
/// an `x509.subject` distinguished name.
pub fn trust_policy(data: &[u8]) {
    use crate::verify::notation::policy::Policy;
    if let Ok(p) = Policy::parse(data) {
        for scope in ["r.io/team/app", "127.0.0.1:5000/x"] {
            let _ = p
                .applicable(scope)
                .map(|s| (s.skips_all(), s.action(crate::verify::notation::policy::Check::Revocation)));
        }
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = crate::verify::notation::parse_dn(s);
    }
}

#[cfg(test)]
mod tests {
    /// Every file under `fuzz/regressions/<target>/` (crashes the fuzzers
    /// found, and seeds) goes through its target again.
    #[test]
    fn regressions_replay() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions");
        type Target = fn(&[u8]);
        let targets: [(&str, Target); 14] = [
            ("reference", super::reference),
            ("manifest", super::manifest),
            ("docker_config", super::docker_config),
            ("auth_headers", super::auth_headers),
            ("unpack", super::unpack),
            ("spec", super::spec),
            ("signature", super::signature),
            ("keyless", super::keyless),
            ("tar_headers", super::tar_headers),
            ("toc", super::toc),
            ("notation_jws", super::notation_jws),
            ("notation_cose", super::notation_cose),
            ("trust_policy", super::trust_policy),
            ("notation_verify", super::notation_verify),
        ];
        let mut replayed = 0;
        for (name, target) in targets {
            let dir = root.join(name);
            for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
                let path = entry.unwrap().path();
                target(&std::fs::read(&path).unwrap());
                replayed += 1;
            }
        }
        assert!(replayed >= 6, "every target has at least one case");
    }
}
