//! Trust policy v1.0 (`trustpolicy.json`, or `trustpolicy.oci.json` as
//! newer notation writes it): parsed and checked as notation checks it,
//! and the statement that applies to a repository picked as notation
//! picks it (an exact `registryScopes` entry first, else `*`).

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use super::identity::{self, Dn};

/// A trust policy document larger than this is not one.
pub(crate) const MAX_POLICY: usize = 256 << 10;
const MAX_STATEMENTS: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Check {
    Integrity,
    Authenticity,
    AuthenticTimestamp,
    Expiry,
    Revocation,
}

impl Check {
    const ALL: [Check; 5] =
        [Check::Integrity, Check::Authenticity, Check::AuthenticTimestamp, Check::Expiry, Check::Revocation];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Check::Integrity => "integrity",
            Check::Authenticity => "authenticity",
            Check::AuthenticTimestamp => "authenticTimestamp",
            Check::Expiry => "expiry",
            Check::Revocation => "revocation",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Enforce,
    Log,
    Skip,
}

impl Action {
    fn parse(s: &str) -> Option<Action> {
        Some(match s {
            "enforce" => Action::Enforce,
            "log" => Action::Log,
            "skip" => Action::Skip,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VerifyTimestamp {
    Always,
    AfterCertExpiry,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoreType {
    Ca,
    Tsa,
    SigningAuthority,
}

impl StoreType {
    pub(crate) fn parse(s: &str) -> Option<StoreType> {
        Some(match s {
            "ca" => StoreType::Ca,
            "tsa" => StoreType::Tsa,
            "signingAuthority" => StoreType::SigningAuthority,
            _ => return None,
        })
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            StoreType::Ca => "ca",
            StoreType::Tsa => "tsa",
            StoreType::SigningAuthority => "signingAuthority",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Identities {
    Any,
    Subjects(Vec<(String, Dn)>),
}

/// One statement, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Statement {
    pub(crate) name: String,
    pub(crate) scopes: Vec<String>,
    /// The level's name (`strict`, …), for evidence.
    pub(crate) level: String,
    pub(crate) actions: BTreeMap<Check, Action>,
    pub(crate) verify_timestamp: VerifyTimestamp,
    pub(crate) stores: Vec<(StoreType, String)>,
    pub(crate) identities: Identities,
}

impl Statement {
    pub(crate) fn action(&self, c: Check) -> Action {
        self.actions.get(&c).copied().unwrap_or(Action::Enforce)
    }

    pub(crate) fn skips_all(&self) -> bool {
        self.level == "skip"
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Policy {
    pub(crate) statements: Vec<Statement>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Doc {
    version: String,
    trust_policies: Vec<RawStatement>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawStatement {
    name: String,
    #[serde(default)]
    registry_scopes: Vec<String>,
    signature_verification: RawVerification,
    #[serde(default)]
    trust_stores: Vec<String>,
    #[serde(default)]
    trusted_identities: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawVerification {
    #[serde(default)]
    level: String,
    #[serde(default)]
    r#override: BTreeMap<String, String>,
    #[serde(default)]
    verify_timestamp: Option<String>,
}

fn level(name: &str) -> Option<[Action; 5]> {
    use Action::*;
    Some(match name {
        "strict" => [Enforce; 5],
        "permissive" => [Enforce, Enforce, Log, Log, Log],
        "audit" => [Enforce, Log, Log, Log, Log],
        "skip" => [Skip; 5],
        _ => return None,
    })
}

impl Policy {
    pub(crate) fn parse(bytes: &[u8]) -> Result<Policy, String> {
        if bytes.len() > MAX_POLICY {
            return Err(format!("larger than {MAX_POLICY} bytes"));
        }
        let doc: Doc = serde_json::from_slice(bytes).map_err(|e| format!("not a trust policy document: {e}"))?;
        if doc.version != "1.0" {
            return Err(format!("trust policy version {:?}; version \"1.0\" is supported", doc.version));
        }
        if doc.trust_policies.is_empty() {
            return Err("no trust policy statements".into());
        }
        if doc.trust_policies.len() > MAX_STATEMENTS {
            return Err(format!("more than {MAX_STATEMENTS} statements"));
        }
        let mut names = BTreeSet::new();
        let mut scopes = BTreeSet::new();
        let mut statements = Vec::new();
        for raw in doc.trust_policies {
            let s = statement(raw)?;
            if !names.insert(s.name.clone()) {
                return Err(format!("two statements are named {:?}", s.name));
            }
            for scope in &s.scopes {
                if !scopes.insert(scope.clone()) {
                    let what = if scope == "*" { "the wildcard scope \"*\"".to_string() } else { format!("{scope:?}") };
                    return Err(format!("{what} is in more than one statement"));
                }
            }
            statements.push(s);
        }
        Ok(Policy { statements })
    }

    /// The statement for `registry/repository`.
    pub(crate) fn applicable(&self, repository: &str) -> Option<&Statement> {
        self.statements
            .iter()
            .find(|s| s.scopes.iter().any(|x| x == repository))
            .or_else(|| self.statements.iter().find(|s| s.scopes.iter().any(|x| x == "*")))
    }
}

fn statement(raw: RawStatement) -> Result<Statement, String> {
    let name = raw.name;
    if name.is_empty() {
        return Err("a statement without a name".into());
    }
    let ctx = |m: String| format!("statement {name:?}: {m}");
    if raw.registry_scopes.is_empty() {
        return Err(ctx("no registryScopes".into()));
    }
    if raw.registry_scopes.len() > 1 && raw.registry_scopes.iter().any(|s| s == "*") {
        return Err(ctx("the wildcard scope \"*\" must stand alone".into()));
    }
    for s in &raw.registry_scopes {
        let tagged = s.rsplit('/').next().is_some_and(|last| last.contains(':'));
        if s != "*" && (s.is_empty() || s.contains(['@', ' ']) || tagged || !s.contains('/') || s.ends_with('/')) {
            return Err(ctx(format!("registry scope {s:?} is not a repository (registry/path, no tag or digest)")));
        }
    }
    let v = raw.signature_verification;
    let base = level(&v.level).ok_or_else(|| {
        ctx(format!("signatureVerification.level {:?} is not strict, permissive, audit or skip", v.level))
    })?;
    let mut actions: BTreeMap<Check, Action> = Check::ALL.into_iter().zip(base).collect();
    if !v.r#override.is_empty() && v.level == "skip" {
        return Err(ctx("level skip cannot be overridden".into()));
    }
    for (k, a) in &v.r#override {
        let check = Check::ALL
            .into_iter()
            .find(|c| c.name() == k)
            .ok_or_else(|| ctx(format!("override of {k:?}, which is not a check")))?;
        let action =
            Action::parse(a).ok_or_else(|| ctx(format!("override action {a:?} is not enforce, log or skip")))?;
        if check == Check::Integrity {
            return Err(ctx("integrity cannot be overridden".into()));
        }
        if action == Action::Skip && check != Check::Revocation {
            return Err(ctx(format!("{k} cannot be skipped (only revocation can)")));
        }
        actions.insert(check, action);
    }
    let verify_timestamp = match v.verify_timestamp.as_deref() {
        None | Some("") | Some("always") => VerifyTimestamp::Always,
        Some("afterCertExpiry") => VerifyTimestamp::AfterCertExpiry,
        Some(o) => return Err(ctx(format!("verifyTimestamp {o:?} is not always or afterCertExpiry"))),
    };
    let skip = v.level == "skip";
    if skip && (!raw.trust_stores.is_empty() || !raw.trusted_identities.is_empty()) {
        return Err(ctx("level skip takes no trustStores or trustedIdentities".into()));
    }
    if !skip && (raw.trust_stores.is_empty() || raw.trusted_identities.is_empty()) {
        return Err(ctx("both trustStores and trustedIdentities are needed".into()));
    }
    let mut stores = Vec::new();
    for s in &raw.trust_stores {
        let (t, n) = s.split_once(':').ok_or_else(|| ctx(format!("trust store {s:?} is not type:name")))?;
        let t = StoreType::parse(t)
            .ok_or_else(|| ctx(format!("trust store type {t:?} is not ca, tsa or signingAuthority")))?;
        if !valid_store_name(n) {
            return Err(ctx(format!("trust store name {n:?} is not [a-zA-Z0-9_.-]+")));
        }
        stores.push((t, n.to_string()));
    }
    let identities = if raw.trusted_identities.iter().any(|i| i == "*") {
        if raw.trusted_identities.len() > 1 {
            return Err(ctx("the wildcard identity \"*\" must stand alone".into()));
        }
        Identities::Any
    } else {
        let mut dns = Vec::new();
        for i in &raw.trusted_identities {
            let (prefix, value) =
                i.split_once(':').ok_or_else(|| ctx(format!("trusted identity {i:?} has no type: prefix")))?;
            if prefix != "x509.subject" {
                // notation leaves other prefixes to verification plugins
                continue;
            }
            dns.push((value.to_string(), identity::parse_dn(value).map_err(ctx)?));
        }
        Identities::Subjects(dns)
    };
    if skip {
        actions = Check::ALL.into_iter().map(|c| (c, Action::Skip)).collect();
    }
    Ok(Statement { name, scopes: raw.registry_scopes, level: v.level, actions, verify_timestamp, stores, identities })
}

pub(crate) fn valid_store_name(n: &str) -> bool {
    !n.is_empty() && n.len() <= 255 && n.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}
