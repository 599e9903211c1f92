#!/usr/bin/env bash
# Certificates for the Notation tests, made with OpenSSL in DIR:
#   root.crt        a CA (RSA 3072): C=US, ST=WA, O=ocisync-test, CN=Test Root
#   rsa.{key,crt}   RSA 2048 code-signing leaf of O=acme, CN=builder (signs PS256)
#   ec.{key,crt}    ECDSA P-256 leaf of O=acme, CN=builder-ec (ES256)
#   ec384.{key,crt} ECDSA P-384 leaf of O=acme, CN=builder-384 (ES384)
#   other.{key,crt} RSA 2048 leaf of another organisation, O=other (same root)
#   stranger-root.crt, stranger.{key,crt}  a second CA and its leaf
#   <leaf>.chain.pem the leaf, then its root: what notation's signingkeys.json points at
set -euo pipefail
dir=$1
cd "$dir"
ossl() { openssl "$@" 2>/dev/null; }
ca() { # name subject keyspec
  ossl req -x509 -new -newkey "$3" -nodes -keyout "$1.key" -out "$1.crt" -days 30 -subj "$2" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
}
leaf() { # name subject keyspec ca
  case $3 in
    rsa:*) ossl genpkey -algorithm RSA -pkeyopt "rsa_keygen_bits:${3#rsa:}" -out "$1.key" ;;
    ec:*) ossl genpkey -algorithm EC -pkeyopt "ec_paramgen_curve:${3#ec:}" -out "$1.key" ;;
  esac
  ossl req -new -key "$1.key" -subj "$2" -out "$1.csr"
  printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature" "extendedKeyUsage=codeSigning" >"$1.ext"
  ossl x509 -req -in "$1.csr" -CA "$4.crt" -CAkey "$4.key" -CAcreateserial -days 7 -sha256 -extfile "$1.ext" -out "$1.crt"
  cat "$1.crt" "$4.crt" >"$1.chain.pem"
  rm -f "$1.csr" "$1.ext"
}
ca root "/C=US/ST=WA/O=ocisync-test/CN=Test Root" rsa:3072
leaf rsa "/C=US/ST=WA/L=Seattle/O=acme/CN=builder" rsa:2048 root
leaf ec "/C=US/ST=WA/O=acme/CN=builder-ec" ec:P-256 root
leaf ec384 "/C=US/ST=WA/O=acme/CN=builder-384" ec:P-384 root
leaf other "/C=US/ST=WA/O=other/CN=builder" rsa:2048 root
ca stranger-root "/C=US/ST=WA/O=stranger/CN=Stranger Root" rsa:2048
leaf stranger "/C=US/ST=WA/O=acme/CN=builder" rsa:2048 stranger-root
