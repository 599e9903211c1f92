//! Registry access for one Artifact: credentials from its `secretRef` or
//! its ServiceAccount's `imagePullSecrets`, CA and client certificate from
//! `certSecretRef`. Secrets are read only in the Artifact's own namespace.

use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::Api;

use crate::api::ArtifactSpec;
use crate::oci::{Credentials, DockerConfig};

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Access {
    pub credentials: Credentials,
    pub ca_pem: Option<Vec<u8>>,
    pub identity_pem: Option<Vec<u8>>,
}

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("{kind} {namespace}/{name} not found")]
    NotFound { kind: &'static str, namespace: String, name: String },
    #[error("Secret {namespace}/{name}: {reason}")]
    BadSecret { namespace: String, name: String, reason: String },
    #[error(transparent)]
    Kube(#[from] kube::Error),
}

pub async fn load(
    client: &kube::Client,
    namespace: &str,
    spec: &ArtifactSpec,
    registry: &str,
) -> Result<Access, AccessError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut access = Access::default();
    let mut pull_secrets = Vec::new();
    if let Some(r) = &spec.secret_ref {
        pull_secrets.push(r.name.clone());
    }
    if let Some(sa) = &spec.service_account_name {
        let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
        let sa = sas.get_opt(sa).await?.ok_or_else(|| AccessError::NotFound {
            kind: "ServiceAccount",
            namespace: namespace.into(),
            name: sa.clone(),
        })?;
        pull_secrets.extend(sa.image_pull_secrets.unwrap_or_default().into_iter().map(|r| r.name));
    }
    // The first pull secret with an entry for this registry wins, as kubelet does.
    for name in pull_secrets {
        let secret = get(&secrets, namespace, &name).await?;
        let bad = |reason: String| AccessError::BadSecret { namespace: namespace.into(), name: name.clone(), reason };
        let bytes = field(&secret, ".dockerconfigjson")
            .ok_or_else(|| bad("has no .dockerconfigjson (want type kubernetes.io/dockerconfigjson)".into()))?;
        let cfg = DockerConfig::parse(&bytes).map_err(|e| bad(e.to_string()))?;
        let creds = cfg.credentials_for(registry);
        if creds != Credentials::Anonymous {
            access.credentials = creds;
            break;
        }
    }
    if let Some(r) = &spec.cert_secret_ref {
        let secret = get(&secrets, namespace, &r.name).await?;
        access.ca_pem = field(&secret, "ca.crt");
        if let (Some(mut crt), Some(key)) = (field(&secret, "tls.crt"), field(&secret, "tls.key")) {
            crt.push(b'\n');
            crt.extend(key);
            access.identity_pem = Some(crt);
        }
        if access.ca_pem.is_none() && access.identity_pem.is_none() {
            return Err(AccessError::BadSecret {
                namespace: namespace.into(),
                name: r.name.clone(),
                reason: "has neither ca.crt nor tls.crt and tls.key".into(),
            });
        }
    }
    Ok(access)
}

async fn get(secrets: &Api<Secret>, namespace: &str, name: &str) -> Result<Secret, AccessError> {
    secrets.get_opt(name).await?.ok_or_else(|| AccessError::NotFound {
        kind: "Secret",
        namespace: namespace.into(),
        name: name.into(),
    })
}

fn field(secret: &Secret, key: &str) -> Option<Vec<u8>> {
    secret.data.as_ref().and_then(|d| d.get(key)).map(|b| b.0.clone())
}
