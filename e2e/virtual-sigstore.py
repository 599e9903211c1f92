#!/usr/bin/env python3
"""A test-only Sigstore: a CA issuing Fulcio-style leaf certificates (with
embedded SCTs from a CT log key), a Rekor-style log key signing SETs and
checkpoints over a small RFC 6962 Merkle tree, and the matching
trusted_root.json. It makes cosign-v3-shaped bundles (DSSE, in-toto
statement, dsse 0.0.1 log entry) for an OCI manifest digest, one per case,
including broken ones; `check` verifies a bundle with sigstore-python, an
independent verifier, so the generator and ocisync cannot share a mistake.

  virtual-sigstore.py init DIR
  virtual-sigstore.py sign DIR OUT --digest sha256:HEX --subject S --issuer I [case options]
  virtual-sigstore.py issue DIR OUT --public-key PEM --subject S --issuer I
      a certificate from the CA for an existing key, without SCT (a private
      PKI, for `cosign sign --certificate`)
  virtual-sigstore.py check DIR BUNDLE --digest sha256:HEX [--subject S --issuer I]
      exit 0: sigstore-python verifies it; 1: it refuses (the reason on stderr)

Needs `cryptography` (and `sigstore` for check): the validators venv.
"""
import argparse
import base64
import datetime as dt
import hashlib
import json
import os
import struct
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

ISSUER_V1 = ObjectIdentifier("1.3.6.1.4.1.57264.1.1")  # raw bytes, deprecated
ISSUER_V2 = ObjectIdentifier("1.3.6.1.4.1.57264.1.8")  # DER UTF8String
SCT_LIST = ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")
COSIGN_SIGN = "https://sigstore.dev/cosign/sign/v1"
IN_TOTO = "application/vnd.in-toto+json"
ORIGIN = "rekor.virtual.test - 1"

b64 = lambda b: base64.b64encode(b).decode()
now = lambda: dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def der(pub):
    return pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def key(path):
    if os.path.exists(path):
        return serialization.load_pem_private_key(open(path, "rb").read(), None)
    k = ec.generate_private_key(ec.SECP256R1())
    pem = k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    open(path, "wb").write(pem)
    return k


def ca_cert(k, name):
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ocisync tests"),
                         x509.NameAttribute(NameOID.COMMON_NAME, name)])
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(k.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now() - dt.timedelta(days=1)).not_valid_after(now() + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(k.public_key()), critical=False)
            .sign(k, hashes.SHA256()))


def init(d):
    os.makedirs(d, exist_ok=True)
    for name, cn in (("ca", "virtual-sigstore CA"), ("other-ca", "an untrusted CA")):
        k = key(f"{d}/{name}.key")
        if not os.path.exists(f"{d}/{name}.pem"):
            open(f"{d}/{name}.pem", "wb").write(ca_cert(k, cn).public_bytes(serialization.Encoding.PEM))
    log, ct = key(f"{d}/log.key"), key(f"{d}/ct.key")
    ca = x509.load_pem_x509_certificate(open(f"{d}/ca.pem", "rb").read())
    since = {"start": "2020-01-01T00:00:00Z"}
    pk = lambda k: {"rawBytes": b64(der(k.public_key())), "keyDetails": "PKIX_ECDSA_P256_SHA_256", "validFor": since}
    log_id = lambda k: {"keyId": b64(hashlib.sha256(der(k.public_key())).digest())}
    root = {
        "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
        "tlogs": [{"baseUrl": "https://rekor.virtual.test", "hashAlgorithm": "SHA2_256",
                   "publicKey": pk(log), "logId": log_id(log)}],
        "certificateAuthorities": [{
            "subject": {"organization": "ocisync tests", "commonName": "virtual-sigstore CA"},
            "uri": "https://fulcio.virtual.test",
            "certChain": {"certificates": [{"rawBytes": b64(ca.public_bytes(serialization.Encoding.DER))}]},
            "validFor": since}],
        "ctlogs": [{"baseUrl": "https://ctfe.virtual.test", "hashAlgorithm": "SHA2_256",
                    "publicKey": pk(ct), "logId": log_id(ct)}],
        "timestampAuthorities": [],
    }
    json.dump(root, open(f"{d}/trusted_root.json", "w"), indent=2)
    # The same CA with no CT log and no transparency log: a private PKI
    # that signs without Sigstore's services (cosign sign --certificate).
    json.dump({**root, "tlogs": [], "ctlogs": []}, open(f"{d}/ca-only-root.json", "w"), indent=2)


def leaf(d, a, signing_key):
    """A Fulcio-style certificate for `signing_key`, with an embedded SCT."""
    ca_name = "other-ca" if a.untrusted_ca else "ca"
    ca_key = key(f"{d}/{ca_name}.key")
    ca = x509.load_pem_x509_certificate(open(f"{d}/{ca_name}.pem", "rb").read())
    start = now() + dt.timedelta(seconds=a.not_before)
    san = x509.RFC822Name(a.subject) if "@" in a.subject and "://" not in a.subject \
        else x509.UniformResourceIdentifier(a.subject)
    b = (x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(ca.subject)
         .public_key(signing_key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(start).not_valid_after(start + dt.timedelta(seconds=a.lifetime))
         .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
         .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
         .add_extension(x509.SubjectAlternativeName([san]), critical=True)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False))
    if a.issuer_oid in ("v1", "both"):
        b = b.add_extension(x509.UnrecognizedExtension(ISSUER_V1, a.issuer.encode()), critical=False)
    if a.issuer_oid in ("v2", "both"):
        utf8 = a.issuer.encode()
        b = b.add_extension(x509.UnrecognizedExtension(ISSUER_V2, b"\x0c" + der_len(len(utf8)) + utf8), critical=False)
    if a.no_sct:
        return b.sign(ca_key, hashes.SHA256()), ca
    # RFC 6962 precertificate SCT: signed over the TBS without the SCT
    # extension, which is what this builder makes before adding it last.
    tbs = b.sign(ca_key, hashes.SHA256()).tbs_certificate_bytes
    ct = key(f"{d}/ct.key")
    ts = int(start.timestamp() * 1000)
    issuer_key_hash = hashlib.sha256(der(ca_key.public_key())).digest()
    signed = (struct.pack(">BBQH", 0, 0, ts, 1) + issuer_key_hash + struct.pack(">I", len(tbs))[1:] + tbs
              + struct.pack(">H", 0))
    sig = ct.sign(signed, ec.ECDSA(hashes.SHA256()))
    log_id = hashlib.sha256(der(ct.public_key())).digest()
    sct = struct.pack(">B", 0) + log_id + struct.pack(">QH", ts, 0) + struct.pack(">BBH", 4, 3, len(sig)) + sig
    sct_list = struct.pack(">H", len(sct) + 2) + struct.pack(">H", len(sct)) + sct
    ext = b"\x04" + der_len(len(sct_list)) + sct_list
    return b.add_extension(x509.UnrecognizedExtension(SCT_LIST, ext), critical=False).sign(ca_key, hashes.SHA256()), ca


def der_len(n):
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def leaf_hash(body):
    return hashlib.sha256(b"\x00" + body).digest()


def node(l, r):
    return hashlib.sha256(b"\x01" + l + r).digest()


def mth(leaves):
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return node(mth(leaves[:k]), mth(leaves[k:]))


def path(m, leaves):
    """RFC 6962 inclusion proof for leaf m."""
    if len(leaves) == 1:
        return []
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    if m < k:
        return path(m, leaves[:k]) + [mth(leaves[k:])]
    return path(m - k, leaves[k:]) + [mth(leaves[:k])]


def sign(d, a):
    digest = a.digest.split(":", 1)[1]
    signing_key = ec.generate_private_key(ec.SECP256R1())
    cert, _ = leaf(d, a, signing_key)
    statement = {"_type": "https://in-toto.io/Statement/v1",
                 "subject": [{"name": a.name, "digest": {"sha256": digest}}],
                 "predicateType": COSIGN_SIGN, "predicate": {}}
    payload = json.dumps(statement, separators=(",", ":")).encode()
    pae = b"DSSEv1 %d %s %d %s" % (len(IN_TOTO), IN_TOTO.encode(), len(payload), payload)
    sig = signing_key.sign(pae, ec.ECDSA(hashes.SHA256()))
    envelope = {"payload": b64(payload), "payloadType": IN_TOTO, "signatures": [{"sig": b64(sig)}]}
    cert_der = cert.public_bytes(serialization.Encoding.DER)
    bundle = {"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
              "verificationMaterial": {"certificate": {"rawBytes": b64(cert_der)}, "tlogEntries": []},
              "dsseEnvelope": envelope}
    if not a.no_tlog:
        bundle["verificationMaterial"]["tlogEntries"] = [log_entry(d, a, envelope, payload, sig, cert)]
    json.dump(bundle, open(a.out, "w"), indent=1)
    open(a.out + ".crt", "wb").write(cert.public_bytes(serialization.Encoding.PEM))


def log_entry(d, a, envelope, payload, sig, cert):
    pem = cert.public_bytes(serialization.Encoding.PEM)
    body = json.dumps({"apiVersion": "0.0.1", "kind": "dsse", "spec": {
        "envelopeHash": {"algorithm": "sha256",
                         "value": hashlib.sha256(json.dumps(envelope, separators=(",", ":")).encode()).hexdigest()},
        "payloadHash": {"algorithm": "sha256", "value": hashlib.sha256(payload).hexdigest()},
        "signatures": [{"signature": b64(sig), "verifier": b64(pem)}]}}, separators=(",", ":")).encode()
    log = key(f"{d}/log.key")
    log_id = hashlib.sha256(der(log.public_key())).digest()
    # A small log: a few other entries around ours.
    leaves = [leaf_hash(b"other entry %d" % i) for i in range(6)]
    index = 4
    leaves[index] = leaf_hash(body)
    root = mth(leaves)
    proof = path(index, leaves)
    if a.tamper == "proof":
        proof[0] = hashlib.sha256(b"not the sibling").digest()
    integrated = int((now() + dt.timedelta(seconds=a.integrated)).timestamp())
    set_payload = json.dumps({"body": b64(body), "integratedTime": integrated, "logID": log_id.hex(),
                              "logIndex": index}, sort_keys=True, separators=(",", ":")).encode()
    set_sig = bytearray(log.sign(set_payload, ec.ECDSA(hashes.SHA256())))
    if a.tamper == "set":
        set_sig[-1] ^= 1
    note = f"{ORIGIN}\n{len(leaves)}\n{b64(root)}\n"
    note_sig = log.sign(note.encode(), ec.ECDSA(hashes.SHA256()))
    checkpoint = note + "\n" + f"\u2014 {ORIGIN.split(' ')[0]} {b64(log_id[:4] + note_sig)}\n"
    return {"logIndex": str(index), "logId": {"keyId": b64(log_id)},
            "kindVersion": {"kind": "dsse", "version": "0.0.1"}, "integratedTime": str(integrated),
            "inclusionPromise": {"signedEntryTimestamp": b64(bytes(set_sig))},
            "inclusionProof": {"logIndex": str(index), "rootHash": b64(root), "treeSize": str(len(leaves)),
                               "hashes": [b64(h) for h in proof], "checkpoint": {"envelope": checkpoint}},
            "canonicalizedBody": b64(body)}


def issue(d, a):
    pub = serialization.load_pem_public_key(open(a.public_key, "rb").read())
    a.no_sct, a.untrusted_ca = True, False

    class Key:  # leaf() only asks for the public half
        def public_key(self):
            return pub
    cert, _ = leaf(d, a, Key())
    open(a.out, "wb").write(cert.public_bytes(serialization.Encoding.PEM))


def check(d, a):
    from sigstore.models import Bundle, TrustedRoot
    from sigstore.verify import Verifier, policy

    root = TrustedRoot.from_file(a.root or f"{d}/trusted_root.json")
    verifier = Verifier(trusted_root=root)
    pol = policy.Identity(identity=a.subject, issuer=a.issuer) if a.subject else policy.UnsafeNoOp()
    try:
        bundle = Bundle.from_json(open(a.bundle).read())
        kind, payload = verifier.verify_dsse(bundle, pol)
        statement = json.loads(payload)
        want = a.digest.split(":", 1)[1]
        if kind != IN_TOTO or not any(s["digest"].get("sha256") == want for s in statement["subject"]):
            raise ValueError("the statement is not about " + a.digest)
    except Exception as e:  # any refusal: print why, exit 1
        print(f"sigstore-python refuses: {e}", file=sys.stderr)
        sys.exit(1)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("init").add_argument("dir")
    s = sub.add_parser("sign")
    s.add_argument("dir")
    s.add_argument("out")
    s.add_argument("--digest", required=True)
    s.add_argument("--name", default="artifact")
    s.add_argument("--subject", required=True)
    s.add_argument("--issuer", required=True)
    s.add_argument("--issuer-oid", choices=["v1", "v2", "both"], default="both")
    s.add_argument("--not-before", type=int, default=-60, help="seconds from now")
    s.add_argument("--lifetime", type=int, default=600, help="seconds (Fulcio: 10 minutes)")
    s.add_argument("--integrated", type=int, default=-30, help="log time, seconds from now")
    s.add_argument("--untrusted-ca", action="store_true")
    s.add_argument("--no-sct", action="store_true")
    s.add_argument("--no-tlog", action="store_true")
    s.add_argument("--tamper", choices=["set", "proof"])
    i = sub.add_parser("issue")
    i.add_argument("dir")
    i.add_argument("out")
    i.add_argument("--public-key", required=True)
    i.add_argument("--subject", required=True)
    i.add_argument("--issuer", required=True)
    i.add_argument("--issuer-oid", choices=["v1", "v2", "both"], default="both")
    i.add_argument("--not-before", type=int, default=-60)
    i.add_argument("--lifetime", type=int, default=3600)
    c = sub.add_parser("check")
    c.add_argument("dir")
    c.add_argument("bundle")
    c.add_argument("--digest", required=True)
    c.add_argument("--subject")
    c.add_argument("--issuer")
    c.add_argument("--root")
    a = p.parse_args()
    {"init": lambda: init(a.dir), "sign": lambda: sign(a.dir, a), "issue": lambda: issue(a.dir, a),
     "check": lambda: check(a.dir, a)}[a.cmd]()


if __name__ == "__main__":
    main()
