use super::*;

#[test]
fn match_images_as_the_kubelet_reads_them() {
    // (pattern, image, matches): the kubelet's documented examples and its
    // rules: parts one by one, the port exactly, the path as a prefix.
    for (pattern, image, want) in [
        ("*.dkr.ecr.*.amazonaws.com", "123456789012.dkr.ecr.eu-west-1.amazonaws.com/app", true),
        ("*.dkr.ecr.*.amazonaws.com", "123456789012.dkr.ecr.eu-west-1.amazonaws.com.cn/app", false),
        ("*.azurecr.io", "myreg.azurecr.io/team/app", true),
        ("*.azurecr.io", "azurecr.io/app", false),
        ("*-docker.pkg.dev", "europe-docker.pkg.dev/p/r/app", true),
        ("*.*", "registry.io/app", true),
        ("*.*", "a.registry.io/app", false),
        ("registry.io/team", "registry.io/team/app", true),
        ("registry.io/team", "registry.io/other/app", false),
        ("registry.io:5000", "registry.io:5000/app", true),
        ("registry.io:5000", "registry.io/app", false),
        ("registry.io", "registry.io:5000/app", false),
        ("https://Registry.IO", "registry.io/app", true),
        ("r?.io", "r1.io/x", true),
        ("r?.io", "r12.io/x", false),
    ] {
        let got = Pattern::parse(pattern).map(|p| p.matches(image));
        assert_eq!(got, Ok(want), "{pattern} ~ {image}");
    }
    for bad in ["", "*.io:port", "127.0.0.1:*", "a..io", "[ab].io", "a b.io"] {
        assert!(Pattern::parse(bad).is_err(), "{bad:?}");
    }
}

const GOOD: &str = r#"
apiVersion: kubelet.config.k8s.io/v1
kind: CredentialProviderConfig
providers:
  - name: ecr-credential-provider
    matchImages: ["*.dkr.ecr.*.amazonaws.com"]
    defaultCacheDuration: 12h
    apiVersion: credentialprovider.kubelet.k8s.io/v1
    args: [get-credentials]
    env: [{name: AWS_PROFILE, value: x}]
  - name: acr-credential-provider
    matchImages: ["*.azurecr.io"]
    defaultCacheDuration: 10m
    apiVersion: credentialprovider.kubelet.k8s.io/v1
    tokenAttributes:
      serviceAccountTokenAudience: api://AzureADTokenExchange
      requireServiceAccount: true
      requiredServiceAccountAnnotationKeys: [azure.workload.identity/client-id]
      cacheType: ServiceAccount
"#;

#[test]
fn configs_are_checked_as_the_kubelet_checks_them() {
    let p = Providers::parse(GOOD, Path::new("/bin")).unwrap();
    assert_eq!(p.providers.len(), 2);
    assert_eq!(p.providers[0].default_cache, Duration::from_secs(12 * 3600));
    assert!(p.wants_account("x.azurecr.io/app") && !p.wants_account("1.dkr.ecr.r.amazonaws.com/app"));
    assert_eq!(p.matching("ghcr.io/app").count(), 0);
    for (from, to, want) in [
        ("name: ecr-credential-provider", "name: ../bin/sh", "one file name"),
        ("name: acr-credential-provider", "name: ecr-credential-provider", "named twice"),
        ("defaultCacheDuration: 12h", "defaultCacheDuration: soon", "not a duration"),
        ("    defaultCacheDuration: 12h\n", "", "defaultCacheDuration is required"),
        ("matchImages: [\"*.azurecr.io\"]", "matchImages: []", "matchImages is required"),
        ("matchImages: [\"*.azurecr.io\"]", "matchImages: [\"a b\"]", "HOST[:PORT]"),
        ("cacheType: ServiceAccount", "cacheType: Sometimes", "cacheType"),
        ("requireServiceAccount: true", "requireServiceAccount: false", "needs requireServiceAccount"),
        ("api://AzureADTokenExchange", "\"\"", "serviceAccountTokenAudience is required"),
        ("kind: CredentialProviderConfig", "kind: KubeletConfiguration", "want kind"),
        ("args: [get-credentials]", "argz: [x]", "unknown field"),
        (
            "v1\n    tokenAttributes:",
            "v1beta1\n    tokenAttributes:",
            "tokenAttributes needs apiVersion credentialprovider.kubelet.k8s.io/v1",
        ),
        (
            "apiVersion: credentialprovider.kubelet.k8s.io/v1\n    args",
            "apiVersion: v1\n    args",
            "want credentialprovider",
        ),
    ] {
        assert!(GOOD.contains(from), "{from}");
        let text = GOOD.replacen(from, to, 1);
        let e = Providers::parse(&text, Path::new("/bin")).err().unwrap_or_default();
        assert!(e.contains(want), "{from} -> {to}: {e}");
    }
}

#[test]
fn answers_are_checked_and_the_most_specific_entry_wins() {
    let p = Providers::parse(GOOD, Path::new("/bin")).unwrap();
    let p = &p.providers[0];
    let ok = |auth: &str, key: &str, ttl: &str| {
        format!(
            r#"{{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderResponse",
                "cacheKeyType":"{key}"{ttl},"auth":{auth}}}"#
        )
    };
    let auth = r#"{"*.dkr.ecr.*.amazonaws.com":{"username":"AWS","password":"wide"},
                   "1.dkr.ecr.r.amazonaws.com/team":{"username":"AWS","password":"narrow"}}"#;
    let (kind, ttl, entries) = parse_response(p, ok(auth, "Registry", r#","cacheDuration":"6h""#).as_bytes()).unwrap();
    assert_eq!((kind, ttl), (KeyType::Registry, Duration::from_secs(6 * 3600)));
    let answer = Answer { auth: Arc::new(entries), until: Instant::now() };
    let password = |image: &str| match pick("p", &answer, image) {
        Ok(Credentials::Basic { password, .. }) => password,
        Ok(other) => format!("{other:?}"),
        Err(e) => e.to_string(),
    };
    assert_eq!(password("1.dkr.ecr.r.amazonaws.com/team/app"), "narrow");
    assert_eq!(password("1.dkr.ecr.r.amazonaws.com/other"), "wide");
    assert!(password("ghcr.io/x").contains("no credentials for ghcr.io/x"));
    let (_, ttl, _) = parse_response(p, ok("{}", "Global", "").as_bytes()).unwrap();
    assert_eq!(ttl, Duration::from_secs(12 * 3600), "no cacheDuration: the provider's default");
    let (_, ttl, _) = parse_response(p, ok("{}", "Image", r#","cacheDuration":"9999h""#).as_bytes()).unwrap();
    assert_eq!(ttl, MAX_CACHE_DURATION);
    for (body, want) in [
        ("hunter2".to_string(), "not JSON"),
        (ok(auth, "Forever", ""), "cacheKeyType"),
        (ok(auth, "Image", "").replace("CredentialProviderResponse", "X"), "kind"),
        (ok(auth, "Image", "").replace("k8s.io/v1", "k8s.io/v1beta1"), "apiVersion"),
        (ok(auth, "Image", r#","cacheDuration":"hunter2""#), "cacheDuration"),
        (r#"{"auth":{"x":{"password":["hunter2"]}}}"#.into(), "not JSON"),
        ("x".repeat(MAX_OUTPUT as usize + 1), "larger"),
    ] {
        let e = parse_response(p, body.as_bytes()).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains(want) && !e.contains("hunter2"), "{want}: {e}");
    }
}

#[test]
fn cache_keys_hold_the_account() {
    let a = Account { namespace: "t1".into(), name: "sa".into(), uid: "u1".into(), annotations: BTreeMap::new() };
    let mut b = a.clone();
    b.namespace = "t2".into();
    let notes = BTreeMap::from([("k".to_string(), "v".to_string())]);
    let keys = |who: &str| cache_keys("p", "r.io/app", who);
    assert_eq!(keys("")[1], "p\0registry\0r.io\0");
    let (ka, kb) = (account_key(&a, &notes), account_key(&b, &notes));
    assert_ne!(ka, kb, "two tenants");
    assert_ne!(ka, account_key(&a, &BTreeMap::new()), "other annotations");
    let mut recreated = a.clone();
    recreated.uid = "u2".into();
    assert_ne!(ka, account_key(&recreated, &notes), "a recreated account");
    assert!(keys(&ka).iter().all(|k| k.ends_with(&ka)));
}

/// The book's configs (the generic example and each cloud's chart
/// values) are ones the operator accepts, and match the registries their
/// page names.
#[test]
fn the_readmes_configs_are_valid() {
    let readme = include_str!("../../../../docs/src/guides/credentials.md");
    let blocks: Vec<&str> = readme
        .split("```yaml\n")
        .skip(1)
        .filter_map(|b| b.split_once("\n```").map(|(code, _)| code))
        .filter(|code| code.contains("kind: CredentialProviderConfig"))
        .collect();
    let want = [
        "my.registry.example.com/app",
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/app",
        "europe-west1-docker.pkg.dev/project/repo/app",
        "myregistry.azurecr.io/team/app",
    ];
    assert_eq!(blocks.len(), want.len(), "one config per cloud and the example");
    for (code, image) in blocks.iter().zip(want) {
        // Uncomment the example's optional fields: they must parse too.
        let code = code.replace("  # tokenAttributes:", "  tokenAttributes:").replace("  #   ", "    ");
        let doc: serde_json::Value = serde_saphyr::from_str(&code).unwrap();
        let config = doc.get("credentialProviders").map_or(&doc, |v| &v["config"]);
        let p = Providers::parse(&config.to_string(), Path::new("/bin")).unwrap_or_else(|e| panic!("{e}\n{code}"));
        assert_eq!(p.matching(image).count(), 1, "{image}\n{code}");
        assert_eq!(p.matching("docker.io/library/alpine").count(), 0, "{code}");
    }
}
