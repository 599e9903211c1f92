#!/usr/bin/env python3
"""Lint and render charts/ocisync with the real Helm engine (Helm v4's
library, from PyPI's helm-python-sdk), then validate every rendered object
with kubernetes-validate --strict, with default values and with every
optional feature on. Also: every value in values.yaml has a comment, the
schema refuses bad values, and the chart's RBAC is what the e2e suite runs
the operator under (`render-rbac`).

Usage: check-chart.py                 run the checks
       check-chart.py render-rbac NS [VALUES-JSON]  print the chart's ServiceAccount and RBAC for
                                     release namespace NS (a "releaseName" key names the release)
       check-chart.py render-args NS  print the operator container's arguments, one a line
Run with the validators venv's python (e2e/setup/install-validators.sh)."""
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile

import helm_python as helm
import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
CHART = ROOT / "charts/ocisync"
BIN = pathlib.Path(sys.executable).parent
TOOLS = pathlib.Path(os.environ.get("OCISYNC_TOOLS", "/var/tmp/ocisync/tools")) / "bin"

ALL_ON = {
    "nameOverride": "syncer",
    "replicas": 2,
    "maxPerRegistry": 2,
    "watchLabelSelector": "shard=a",
    "imagePullSecrets": [{"name": "pull"}],
    "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}},
    "admissionPolicy": {"enabled": True},
    "serviceAccount": {"annotations": {"example.com/role": "ocisync"}},
    "podAnnotations": {"a": "b"},
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "priorityClassName": "system-cluster-critical",
    "volume": {"enabled": True, "storageClassName": "nfs"},
    "webhook": {"enabled": True},
    "mirrors": ["ghcr.io=oci://mirror.internal:5000/ghcr", "docker.io=oci://mirror.internal:5000/hub"],
    "mirrorInsecure": True,
    "agentRoles": [{"namespace": "team-a", "serviceAccount": "web", "artifacts": ["web-config"], "secrets": ["pull"],
                    "tokenServiceAccounts": ["web"]}],
    "credentialProviders": {
        "config": {"apiVersion": "kubelet.config.k8s.io/v1", "kind": "CredentialProviderConfig", "providers": [
            {"name": "ecr-credential-provider", "matchImages": ["*.dkr.ecr.*.amazonaws.com"],
             "defaultCacheDuration": "12h", "apiVersion": "credentialprovider.kubelet.k8s.io/v1"},
            {"name": "acr-credential-provider", "matchImages": ["*.azurecr.io"], "defaultCacheDuration": "10m",
             "apiVersion": "credentialprovider.kubelet.k8s.io/v1", "args": ["/etc/kubernetes/azure.json"],
             "tokenAttributes": {"serviceAccountTokenAudience": "api://AzureADTokenExchange",
                                 "requireServiceAccount": True, "cacheType": "ServiceAccount"}}]},
        "initContainers": [{"name": "plugins", "image": "example.com/plugins:1", "command": ["cp", "-r", "/plugins/.", "/var/lib/ocisync/credential-providers/"]}],
    },
    "env": [{"name": "AWS_REGION", "value": "eu-west-1"}],
    "extraVolumes": [{"name": "azure-json", "secret": {"secretName": "azure-json"}}],
    "extraVolumeMounts": [{"name": "azure-json", "mountPath": "/etc/kubernetes/azure.json", "subPath": "azure.json"}],
}
EXISTING_CLAIM = {"volume": {"enabled": True, "existingClaim": "shared-files"}}
NAMESPACED = {"namespaces": ["team-a", "team-b"]}
# kinds kubernetes-validate has no schema for (a CRD's), checked by shape here
FOREIGN = {"ServiceMonitor"}


def render(values, namespace="ocisync-system", name="ocisync"):
    chart = helm.Chart.load(str(CHART))
    out = chart.render(values, name=name, namespace=namespace, is_install=True)
    docs = []
    for path, text in sorted(out.items()):
        if path.endswith("NOTES.txt"):
            continue
        docs += [d for d in yaml.safe_load_all(text) if d]
    return docs


def validate(docs, versions):
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for i, d in enumerate(docs):
            if d["kind"] in FOREIGN:
                continue
            f = pathlib.Path(tmp) / f"{i:02}-{d['kind']}.yaml"
            f.write_text(yaml.safe_dump(d))
            files.append(str(f))
        for v in versions:
            subprocess.run([BIN / "kubernetes-validate", "--strict", "--quiet", "-k", v, *files], check=True)


def comments_on_every_value():
    """A value's line, or the mapping it sits in, has a comment above it."""
    missing = []
    lines = (CHART / "values.yaml").read_text().splitlines()
    stack = []  # (indent, commented)
    for n, line in enumerate(lines):
        m = re.match(r"^(\s*)([A-Za-z][\w.-]*):(.*)$", line)
        if not m:
            continue
        indent, key, rest = len(m.group(1)), m.group(2), m.group(3).strip()
        while stack and stack[-1][0] >= indent:
            stack.pop()
        commented = n > 0 and lines[n - 1].strip().startswith("#")
        inherited = any(c for _, c in stack)
        if rest and not (commented or inherited):
            missing.append(key)
        stack.append((indent, commented))
    return missing


def credential_provider_checks(default, all_on, all_on_pod):
    """The provider config reaches the operator as the kubelet's flags read
    it, the plugin volume is filled by the init containers, and the token
    permission exists only when a provider has tokenAttributes."""
    failures = []
    token_rule = {"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"]}
    rules_of = lambda docs: [r for d in docs if d["kind"] in ("ClusterRole", "Role") for r in d["rules"]]
    if any(d["kind"] == "ConfigMap" for d in default) or token_rule in rules_of(default):
        failures.append("credential providers are off by default")
    cm = next((d for d in all_on if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "ocisync-syncer-credential-providers"), None)
    if cm is None or yaml.safe_load(cm["data"]["config.yaml"]) != ALL_ON["credentialProviders"]["config"]:
        failures.append(f"the provider config is not passed as given: {cm}")
    c = all_on_pod["containers"][0]
    bin_dir = "/var/lib/ocisync/credential-providers"
    want_args = ["--image-credential-provider-config=/etc/ocisync/credential-providers/config.yaml",
                 f"--image-credential-provider-bin-dir={bin_dir}"]
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in all_on_pod["volumes"]}
    init = all_on_pod.get("initContainers", [])
    if not (set(want_args) <= set(c["args"])
            and mounts.get("credential-providers") == "/etc/ocisync/credential-providers"
            and volumes.get("credential-providers", {}).get("configMap", {}).get("name") == cm["metadata"]["name"]
            and mounts.get("credential-provider-bin") == bin_dir and "emptyDir" in volumes.get("credential-provider-bin", {})
            and [m for i in init for m in i["volumeMounts"]] == [{"name": "credential-provider-bin", "mountPath": bin_dir}]
            and mounts.get("azure-json") == "/etc/kubernetes/azure.json" and "azure-json" in volumes
            and {"name": "AWS_REGION", "value": "eu-west-1"} in c["env"]):
        failures.append(f"credential provider wiring: {c['args']}, {c['volumeMounts']}, {all_on_pod['volumes']}, {init}")
    if token_rule not in rules_of(all_on):
        failures.append("tokenAttributes without serviceaccounts/token create")
    # a provider without tokenAttributes: no token permission
    no_tokens = {"credentialProviders": {"config": {**ALL_ON["credentialProviders"]["config"],
                                                    "providers": ALL_ON["credentialProviders"]["config"]["providers"][:1]}}}
    plain = render(no_tokens)
    validate(plain, ["1.25.0", "1.37.0"])
    if token_rule in rules_of(plain):
        failures.append("serviceaccounts/token create without tokenAttributes")
    namespaced = render({**NAMESPACED, "credentialProviders": ALL_ON["credentialProviders"]})
    roles = [d for d in namespaced if d["kind"] == "Role" and d["metadata"]["name"] == "ocisync-manager"]
    if len(roles) != 2 or not all(token_rule in r["rules"] for r in roles):
        failures.append("namespaced mode: tokenAttributes without the token rule in each Role")
    return failures


def main():
    if sys.argv[1:2] == ["render-args"]:
        pod = next(d for d in render({}, namespace=sys.argv[2]) if d["kind"] == "Deployment")["spec"]["template"]["spec"]
        print("\n".join(pod["containers"][0]["args"]))
        return 0
    if sys.argv[1:2] == ["render-rbac"]:
        values = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
        docs = render(values, namespace=sys.argv[2], name=values.pop("releaseName", "ocisync"))
        keep = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
        print(yaml.safe_dump_all([d for d in docs if d["kind"] in keep]), end="")
        return 0
    failures = []
    for name, values in (("default", {}), ("all on", ALL_ON), ("namespaced", NAMESPACED)):
        report = helm.lint(str(CHART), values, strict=True, kube_version="v1.30.0")
        bad = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
        if bad:
            failures.append(f"lint ({name}): {bad}")
    default, all_on, namespaced = render({}), render(ALL_ON), render(NAMESPACED)
    validate(default, ["1.25.0", "1.37.0"])
    validate(all_on, ["1.30.0", "1.37.0"])
    validate(namespaced, ["1.25.0", "1.37.0"])
    # namespaced mode: nothing cluster-wide but the policy kind and a get of the listed namespaces
    cluster_rules = [r for d in namespaced if d["kind"] == "ClusterRole" for r in d["rules"]]
    want_cluster = [
        {"apiGroups": ["ocisync.dev"], "resources": ["clusterartifactpolicies"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["namespaces"], "resourceNames": ["team-a", "team-b"], "verbs": ["get"]},
    ]
    if cluster_rules != want_cluster:
        failures.append(f"namespaced mode's cluster-wide rules: {cluster_rules}")
    roles = sorted(d["metadata"]["namespace"] for d in namespaced if d["kind"] == "Role")
    if roles != ["ocisync-system", "team-a", "team-b"]:
        failures.append(f"namespaced mode's Roles: {roles}")
    ns_args = next(d for d in namespaced if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    if "--namespaces=team-a,team-b" not in ns_args:
        failures.append(f"namespaced mode's arguments: {ns_args}")
    kinds = lambda docs: sorted(d["kind"] for d in docs)
    # (the Pod is `helm test`'s hook)
    want_default = ["ClusterRole", "ClusterRoleBinding", "Deployment", "Pod", "Role", "RoleBinding", "Service",
                    "ServiceAccount"]
    if kinds(default) != want_default:
        failures.append(f"default objects: {kinds(default)}")
    extra = set(kinds(all_on)) - set(want_default)
    if extra != {"ConfigMap", "PersistentVolumeClaim", "ServiceMonitor", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}:
        failures.append(f"optional objects: {sorted(extra)}")
    deploy = next(d for d in default if d["kind"] == "Deployment")
    pod = deploy["spec"]["template"]["spec"]
    c = pod["containers"][0]
    sc = c["securityContext"]
    checks = {
        "non-root": pod["securityContext"]["runAsNonRoot"] is True,
        "seccomp": pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault",
        "read-only root": sc["readOnlyRootFilesystem"] is True,
        "no escalation": sc["allowPrivilegeEscalation"] is False,
        "caps dropped": sc["capabilities"]["drop"] == ["ALL"],
        "work dir on emptyDir": any(v["name"] == "work" and "emptyDir" in v for v in pod["volumes"]),
        "probes": c["livenessProbe"]["httpGet"]["path"] == "/healthz" and c["readinessProbe"]["httpGet"]["path"] == "/readyz",
        "leader election": "--leader-elect=true" in c["args"],
        "resources": "limits" in c["resources"],
    }
    failures += [f"deployment: {k}" for k, ok in checks.items() if not ok]
    # the shared volume: the claim, its mount and the operator's flags; an
    # existing claim is used, not created
    all_on_pod = next(d for d in all_on if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    claim = next(d for d in all_on if d["kind"] == "PersistentVolumeClaim")
    if (claim["spec"]["accessModes"], claim["spec"].get("storageClassName")) != (["ReadWriteMany"], "nfs"):
        failures.append(f"volume claim: {claim['spec']}")
    vol = next(v for v in all_on_pod["volumes"] if v["name"] == "volume")
    if vol["persistentVolumeClaim"]["claimName"] != claim["metadata"]["name"]:
        failures.append(f"the pod mounts {vol}, not the claim")
    hook_args = {"--webhook-addr=0.0.0.0:8443", "--webhook-token-file=/var/run/ocisync/webhook/token"}
    token_vol = next((v for v in all_on_pod["volumes"] if v["name"] == "webhook-token"), {})
    if not hook_args <= set(all_on_pod["containers"][0]["args"]) or token_vol.get("secret", {}).get("secretName") != "ocisync-webhook":
        failures.append(f"webhook: {all_on_pod['containers'][0]['args']}, {token_vol}")
    mirror_args = [a for a in all_on_pod["containers"][0]["args"] if a.startswith("--mirror")]
    if mirror_args != ["--mirror=ghcr.io=oci://mirror.internal:5000/ghcr", "--mirror=docker.io=oci://mirror.internal:5000/hub", "--mirror-insecure"]:
        failures.append(f"mirror flags, in order: {mirror_args}")
    if not {"--volume-root=/volume", "--volume-keep=2", "--volume-grace=5m"} <= set(all_on_pod["containers"][0]["args"]):
        failures.append(f"volume flags: {all_on_pod['containers'][0]['args']}")
    existing = render(EXISTING_CLAIM)
    validate(existing, ["1.25.0", "1.37.0"])
    ex_pod = next(d for d in existing if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    if any(d["kind"] == "PersistentVolumeClaim" for d in existing) or not any(
        v.get("persistentVolumeClaim", {}).get("claimName") == "shared-files" for v in ex_pod["volumes"]
    ):
        failures.append("an existing claim is mounted, not created")
    # the agent's Role: the named Artifacts, Secrets and token accounts, nothing else
    agent_role = next(d for d in all_on if d["kind"] == "Role" and d["metadata"]["name"] == "ocisync-syncer-agent-web")
    want_agent = [
        {"apiGroups": ["ocisync.dev"], "resources": ["artifacts"], "resourceNames": ["web-config"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["pull"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["serviceaccounts"], "resourceNames": ["web"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["serviceaccounts/token"], "resourceNames": ["web"], "verbs": ["create"]},
    ]
    if agent_role["rules"] != want_agent or agent_role["metadata"]["namespace"] != "team-a":
        failures.append(f"agent Role: {agent_role}")
    failures += credential_provider_checks(default, all_on, all_on_pod)
    sharded = all_on_pod["containers"][0]["args"]
    if "--watch-label-selector=shard=a" not in sharded or "--max-per-registry=2" not in sharded:
        failures.append(f"values do not reach the arguments: {sharded}")
    unnamed = [f"{d['kind']}/{d['metadata']['name']}" for d in all_on if not d["metadata"]["name"].startswith("ocisync-syncer")]
    if unnamed:
        failures.append(f"nameOverride does not reach: {unnamed}")
    missing = comments_on_every_value()
    if missing:
        failures.append(f"values without a comment: {missing}")
    chart = helm.Chart.load(str(CHART))
    for bad in ({"namespaces": ["Not_A_Namespace"]}, {"concurrency": 0}, {"volume": {"keep": 0}},
                {"agentRoles": [{"namespace": "a", "serviceAccount": "b"}]}, {"image": {"pullPolicy": "Sometimes"}}, {"replicaz": 1}, {"maxTimeout": "ten minutes"},
                {"credentialProviders": {"binDir": "relative"}}, {"credentialProviders": {"config": {"kind": "Pod"}}}):
        try:
            chart.validate_schema(bad)
            failures.append(f"the schema accepts {bad}")
        except Exception:
            pass
    chart.validate_schema(ALL_ON)
    for f in (ROOT / "crds").glob("*.ocisync.dev.yaml"):
        if (CHART / "crds" / f.name).read_bytes() != f.read_bytes():
            failures.append(f"charts/ocisync/crds/{f.name} differs from crds/: run `ocisync crd --dir charts/ocisync/crds`")
    # config/rbac (kustomize) must grant what the chart grants, no more
    built = subprocess.run([TOOLS / "kustomize", "build", ROOT / "config/rbac"], check=True, capture_output=True, text=True)
    rules = lambda docs: sorted((d["kind"], yaml.safe_dump(d["rules"])) for d in docs if d["kind"] in ("ClusterRole", "Role"))
    if rules(yaml.safe_load_all(built.stdout)) != rules(default):
        failures.append("config/rbac and the chart grant different rules")
    # config/default, the kustomize install: valid, and the same pod as the chart's
    built = subprocess.run([TOOLS / "kustomize", "build", ROOT / "config/default"], check=True, capture_output=True, text=True)
    kustomized = [d for d in yaml.safe_load_all(built.stdout) if d]
    validate(kustomized, ["1.25.0", "1.37.0"])
    pod_of = lambda docs: next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    if pod_of(kustomized) != pod_of(default):
        failures.append("config/manager's pod differs from the chart's default one")
    # config/volume: the install with the shared volume, the same pod as the
    # chart's with volume.enabled and the claim the overlay creates
    built = subprocess.run([TOOLS / "kustomize", "build", ROOT / "config/volume"], check=True, capture_output=True, text=True)
    with_volume = [d for d in yaml.safe_load_all(built.stdout) if d]
    validate(with_volume, ["1.25.0", "1.37.0"])
    chart_volume = render({"volume": {"enabled": True, "existingClaim": "ocisync-volume", "keep": 2, "grace": "5m"}})
    kpod, cpod = pod_of(with_volume), pod_of(chart_volume)
    if kpod["volumes"] != cpod["volumes"] or kpod["containers"][0]["volumeMounts"] != cpod["containers"][0]["volumeMounts"]:
        failures.append("config/volume mounts the claim differently from the chart")
    if "--volume-root=/volume" not in kpod["containers"][0]["args"]:
        failures.append("config/volume does not pass --volume-root")
    for f in failures:
        print("FAIL", f)
    print(
        f"chart: lint (strict) and kubernetes-validate on {len(default)} default and {len(all_on)} all-on objects; "
        f"config/default: {len(kustomized)} objects; {len(failures)} failures"
    )
    return 1 if failures else 0


sys.exit(main())
