#!/usr/bin/env bash
# Certificates for the Notation tests, made with OpenSSL in DIR:
#   root.crt        a CA (RSA 3072): C=US, ST=WA, O=ocisync-test, CN=Test Root
#   rsa.{key,crt}   RSA 2048 code-signing leaf of O=acme, CN=builder (signs PS256)
#   ec.{key,crt}    ECDSA P-256 leaf of O=acme, CN=builder-ec (ES256)
#   ec384.{key,crt} ECDSA P-384 leaf of O=acme, CN=builder-384 (ES384)
#   ec521.{key,crt} ECDSA P-521 leaf (ES512); rsa4096.{key,crt} RSA 4096 (PS512)
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
leaf ec521 "/C=US/ST=WA/O=acme/CN=builder-521" ec:P-521 root
leaf rsa4096 "/C=US/ST=WA/O=acme/CN=builder-4096" rsa:4096 root
ca stranger-root "/C=US/ST=WA/O=stranger/CN=Stranger Root" rsa:2048
leaf stranger "/C=US/ST=WA/O=acme/CN=builder" rsa:2048 stranger-root

# The root as an OpenSSL CA with a database, to issue with chosen dates and
# to revoke:
#   short.{key,crt}   a leaf of O=acme valid for $SHORT_LIFE seconds (default 20)
#   crl.{key,crt}     a leaf naming $CRL_URL/root.crl as its CRL distribution point
#   revoked.{key,crt} the same, revoked; root.crl (DER) lists it
#   crl-dead.{key,crt} a leaf whose CRL is at a port nothing listens on
#   tsa-root.crt, tsa.{key,crt}  a timestamp authority (ECDSA P-256,
#                     timeStamping only) and its own root; tsa.cnf for `openssl ts`
#   tsa-rsa.{key,crt}, tsa-rsa.cnf  a second authority, RSA 2048, same root
mkdir -p db
: >db/index.txt
echo 1000 >db/serial
echo 1000 >db/crlnumber
cat >ca.cnf <<CNF
[ca]
default_ca = root
[root]
database = $dir/db/index.txt
new_certs_dir = $dir/db
serial = $dir/db/serial
crlnumber = $dir/db/crlnumber
certificate = $dir/root.crt
private_key = $dir/root.key
default_md = sha256
default_crl_days = 7
policy = any
unique_subject = no
[any]
countryName = optional
stateOrProvinceName = optional
localityName = optional
organizationName = optional
commonName = supplied
CNF
stamp() { date -u -d "@$1" +%Y%m%d%H%M%SZ; }
issue() { # name subject not-after(epoch) [extra extension line]
  ossl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1.key"
  ossl req -new -key "$1.key" -subj "$2" -out "$1.csr"
  printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature" "extendedKeyUsage=codeSigning" ${4:+"$4"} >"$1.ext"
  ossl ca -batch -config ca.cnf -notext -in "$1.csr" -out "$1.crt" -extfile "$1.ext" \
    -startdate "$(stamp $(($(date +%s) - 3600)))" -enddate "$(stamp "$3")"
  cat "$1.crt" root.crt >"$1.chain.pem"
  rm -f "$1.csr" "$1.ext"
}
now=$(date +%s)
issue short "/C=US/ST=WA/O=acme/CN=short-lived" $((now + ${SHORT_LIFE:-20}))
crl_url=${CRL_URL:-http://127.0.0.1:9/}
issue crl "/C=US/ST=WA/O=acme/CN=revocable" $((now + 86400)) "crlDistributionPoints=URI:${crl_url%/}/root.crl"
issue revoked "/C=US/ST=WA/O=acme/CN=revoked" $((now + 86400)) "crlDistributionPoints=URI:${crl_url%/}/root.crl"
issue crl-dead "/C=US/ST=WA/O=acme/CN=unreachable-crl" $((now + 86400)) "crlDistributionPoints=URI:http://127.0.0.1:9/root.crl"
ossl ca -config ca.cnf -revoke revoked.crt -crl_reason keyCompromise
ossl ca -config ca.cnf -gencrl -out root.crl.pem
openssl crl -in root.crl.pem -outform DER -out root.crl

# the timestamp authority
ossl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout tsa-root.key -out tsa-root.crt -days 30 \
  -subj "/C=US/ST=WA/O=ocisync-test/CN=Test TSA Root" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
ossl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out tsa.key
ossl req -new -key tsa.key -subj "/C=US/ST=WA/O=ocisync-test/CN=Test TSA" -out tsa.csr
printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature" "extendedKeyUsage=critical,timeStamping" >tsa.ext
ossl x509 -req -in tsa.csr -CA tsa-root.crt -CAkey tsa-root.key -CAcreateserial -days 7 -sha256 -extfile tsa.ext -out tsa.crt
cat tsa.crt tsa-root.crt >tsa.chain.pem
rm -f tsa.csr tsa.ext
# a second authority with an RSA key, as most public ones have, under the same root
ossl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out tsa-rsa.key
ossl req -new -key tsa-rsa.key -subj "/C=US/ST=WA/O=ocisync-test/CN=Test TSA RSA" -out tsa-rsa.csr
printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature" "extendedKeyUsage=critical,timeStamping" >tsa-rsa.ext
ossl x509 -req -in tsa-rsa.csr -CA tsa-root.crt -CAkey tsa-root.key -CAcreateserial -days 7 -sha256 -extfile tsa-rsa.ext -out tsa-rsa.crt
rm -f tsa-rsa.csr tsa-rsa.ext
echo 01 >tsa-serial
for t in tsa tsa-rsa; do
  cat >"$t.cnf" <<CNF
[tsa]
default_tsa = tsa1
[tsa1]
serial = $dir/tsa-serial
crypto_device = builtin
signer_cert = $dir/$t.crt
certs = $dir/tsa-root.crt
signer_key = $dir/$t.key
signer_digest = sha256
default_policy = 1.2.3.4.1
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = yes
tsa_name = no
ess_cert_id_chain = no
ess_cert_id_alg = sha256
CNF
done

# Leaves no signer would use, which notation refuses to sign with (so the
# tests sign with them by hand): each breaks one rule of the Notary
# Project's certificate requirements. RSA 2048, O=acme, issued by the root.
bad() { # name extension-lines... (signed with sha256 unless BAD_MD is set)
  local name=$1
  shift
  ossl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$name.key"
  ossl req -new -key "$name.key" -subj "/C=US/ST=WA/O=acme/CN=$name" -out "$name.csr"
  printf '%s\n' "$@" >"$name.ext"
  ossl x509 -req -in "$name.csr" -CA root.crt -CAkey root.key -CAcreateserial -days 7 "-${BAD_MD:-sha256}" \
    -extfile "$name.ext" -out "$name.crt"
  cat "$name.crt" root.crt >"$name.chain.pem"
  rm -f "$name.csr" "$name.ext"
}
bad bad-ku "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=codeSigning"
bad bad-eku "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth"
bad ca-leaf "basicConstraints=critical,CA:TRUE" "keyUsage=critical,digitalSignature" "extendedKeyUsage=codeSigning"
bad no-ku "basicConstraints=CA:FALSE" "extendedKeyUsage=codeSigning"
BAD_MD=sha1 bad sha1 "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature" "extendedKeyUsage=codeSigning"
# an intermediate that is not a CA, issuing a good leaf: chain leaf, it, root
ossl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out not-ca.key
ossl req -new -key not-ca.key -subj "/C=US/ST=WA/O=acme/CN=not-a-ca" -out not-ca.csr
printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,keyCertSign" >not-ca.ext
ossl x509 -req -in not-ca.csr -CA root.crt -CAkey root.key -CAcreateserial -days 7 -sha256 -extfile not-ca.ext -out not-ca.crt
ossl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out under-not-ca.key
ossl req -new -key under-not-ca.key -subj "/C=US/ST=WA/O=acme/CN=under-not-a-ca" -out under-not-ca.csr
printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature" "extendedKeyUsage=codeSigning" >under-not-ca.ext
ossl x509 -req -in under-not-ca.csr -CA not-ca.crt -CAkey not-ca.key -CAcreateserial -days 7 -sha256 \
  -extfile under-not-ca.ext -out under-not-ca.crt
cat under-not-ca.crt not-ca.crt root.crt >under-not-ca.chain.pem
# a good leaf that is not valid yet
ossl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out future.key
ossl ca -batch -config ca.cnf -notext -in <(ossl req -new -key future.key -subj "/C=US/ST=WA/O=acme/CN=not-yet") \
  -out future.crt -extfile <(printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature" "extendedKeyUsage=codeSigning") \
  -startdate "$(stamp $((now + 86400)))" -enddate "$(stamp $((now + 2 * 86400)))"
cat future.crt root.crt >future.chain.pem
rm -f ./*.csr ./*.ext
