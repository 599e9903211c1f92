use super::*;

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(format!("{}/testdata/cosign-v3/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn index(path: &str) -> Vec<Descriptor> {
    match Manifest::parse(&fixture(path), None).unwrap() {
        Manifest::Index(i) => i.manifests,
        other => panic!("{path} is not an index: {other:?}"),
    }
}

fn image(path: &str) -> ImageManifest {
    match Manifest::parse(&fixture(path), None).unwrap() {
        Manifest::Image(m) => *m,
        other => panic!("{path} is not a manifest: {other:?}"),
    }
}

fn artifact() -> Digest {
    Digest::parse(String::from_utf8(fixture("artifact/digest.txt")).unwrap().trim()).unwrap()
}

#[test]
fn the_tag_fallback_reads_cosigns_mistyped_entries_and_skips_typed_others() {
    let entries = index("v3-bundle/referrers-tag-index-after-oras-attach.json");
    let (wanted, others) = worth_reading(&entries, FoundBy::ReferrersTag);
    assert_eq!(wanted.len(), 1, "cosign's entry says empty.v1+json: it must be read");
    assert_eq!(wanted[0].artifact_type.as_deref(), Some(EMPTY));
    assert_eq!(others, ["application/vnd.example.sbom.v1"]);
    // From the API the same mistyped entry would not be a signature: the
    // server derives the type from the manifest, so a wrong one is not ours.
    let (wanted, _) = worth_reading(&entries, FoundBy::ReferrersApi);
    assert!(wanted.is_empty());
}

#[test]
fn signature_types_are_read_first() {
    let mut entries = index("v3-bundle/referrers-tag-index-after-oras-attach.json");
    let mut typed = entries[0].clone();
    typed.artifact_type = Some(BUNDLE_V03.into());
    entries.push(typed);
    let legacy = index("legacy-oci11-referrer/referrers-tag-index.json");
    entries.extend(legacy);
    let (wanted, _) = worth_reading(&entries, FoundBy::ReferrersTag);
    let types: Vec<_> = wanted.iter().map(|d| d.artifact_type.as_deref().unwrap()).collect();
    assert_eq!(types, [BUNDLE_V03, COSIGN_SIG, EMPTY]);
}

#[test]
fn signature_layers_of_each_format() {
    let d = artifact();
    let v3 = image("v3-bundle/signature-manifest.json");
    let layers = signature_layers(&v3, Some(&d)).expect("a v3 bundle manifest is a signature");
    assert_eq!(layers.len(), 1);
    assert_eq!(layers[0].media_type, BUNDLE_V03);

    let legacy = image("legacy-sig-tag/signature-manifest.json");
    assert!(signature_layers(&legacy, Some(&d)).is_none(), "no subject: not a referrer of d");
    let layers = signature_layers(&legacy, None).expect("the .sig tag has no subject");
    assert_eq!(layers[0].media_type, SIMPLESIGNING);

    let oci11 = image("legacy-oci11-referrer/signature-manifest.json");
    let subject = oci11.subject.as_ref().unwrap().digest.clone();
    assert!(signature_layers(&oci11, Some(&subject)).is_some());
}

#[test]
fn a_referrer_of_another_digest_is_not_a_signature_of_this_one() {
    let v3 = image("v3-bundle/signature-manifest.json");
    let other = Digest::of(b"another artifact");
    assert!(signature_layers(&v3, Some(&other)).is_none());
}

#[test]
fn an_attachment_is_not_a_signature() {
    let mut m = image("v3-bundle/signature-manifest.json");
    m.artifact_type = Some("application/vnd.example.sbom.v1".into());
    m.layers[0].media_type = "application/json".into();
    assert!(signature_layers(&m, None).is_none());
    assert_eq!(kind_of(&m), "application/vnd.example.sbom.v1");
    // A simplesigning layer without its signature annotation is nothing.
    let mut legacy = image("legacy-sig-tag/signature-manifest.json");
    legacy.layers[0].annotations.clear();
    assert!(signature_layers(&legacy, None).is_none());
}
