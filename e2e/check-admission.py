#!/usr/bin/env python3
"""Check config/admission against what a 1.30+ API server would do with it.

The test control plane is Kubernetes 1.20: it has no ValidatingAdmissionPolicy.
So: validate the manifests against the 1.30 and 1.37 OpenAPI schemas
(kubernetes-validate, strict), and evaluate each validation's CEL expression
(cel-python) on Artifacts that must pass and must be refused.
Run with the validators venv's python (e2e/setup/install-validators.sh)."""
import pathlib
import subprocess
import sys

import celpy
import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "config/admission/require-verify.yaml"
BIN = pathlib.Path(sys.executable).parent

for version in ("1.30.0", "1.37.0"):
    subprocess.run([BIN / "kubernetes-validate", "--strict", "--quiet", "-k", version, MANIFEST], check=True)

KEYS = {"keys": {"secretRef": {"name": "cosign"}}}
CASES = [  # (spec, admitted)
    ({"url": "oci://r.io/app"}, False),
    ({"url": "oci://r.io/app", "verify": {}}, False),
    ({"url": "oci://r.io/app", "verify": {"predicateTypes": ["x"]}}, False),
    ({"url": "oci://r.io/app", "verify": KEYS}, True),
    ({"url": "oci://r.io/app", "verify": dict(KEYS, transparencyLog="Required")}, True),
    ({"url": "oci://r.io/app", "verify": {"keyless": {"identities": [{"issuer": "i", "subject": "s"}]}}}, True),
    ({"url": "oci://r.io/app", "verify": {"notation": {"secretRef": {"name": "trust"}}}}, True),
]
docs = list(yaml.safe_load_all(MANIFEST.read_text()))
policy = next(d for d in docs if d["kind"] == "ValidatingAdmissionPolicy")
binding = next(d for d in docs if d["kind"] == "ValidatingAdmissionPolicyBinding")
assert binding["spec"]["policyName"] == policy["metadata"]["name"], "the binding names the policy"
assert binding["spec"]["matchResources"]["namespaceSelector"]["matchLabels"] == {"ocisync.dev/require-verify": "true"}
env = celpy.Environment()
failed = 0
for v in policy["spec"]["validations"]:
    program = env.program(env.compile(v["expression"]))
    for spec, admitted in CASES:
        obj = {"apiVersion": "ocisync.dev/v1alpha1", "kind": "Artifact", "metadata": {"name": "a"}, "spec": spec}
        got = bool(program.evaluate({"object": celpy.json_to_cel(obj)}))
        if got != admitted:
            failed += 1
            print(f"FAIL {v['expression']!r} on {spec}: {got}, want {admitted}")
print(f"admission policy: schemas valid for 1.30 and 1.37, {len(CASES)} sample Artifacts, {failed} wrong")
sys.exit(1 if failed else 0)
