#!/usr/bin/env bash
# Regenerates the seed corpus Fuzz/Corpus/<target>/ (docs/fuzzing.md): a handful of valid and near-valid inputs per
# target, made with openssl (a real third-party client) and written out by hand where the format is DevID's own.
# Crash reproducers (crash-*) in the corpus folders are kept. Run from anywhere; needs openssl and base64.
set -euo pipefail
cd "$(dirname "$0")/Corpus"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
seed() { mkdir -p "$1"; cat > "$1/$2"; }

# A small chain: root (P-384) -> issuing (P-256) -> device leaf, as DevID shapes it.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-384 -nodes -keyout "$work/root.key" -subj "/CN=Fuzz Root" \
    -days 3650 -addext basicConstraints=critical,CA:TRUE -out "$work/root.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/ca.key" -subj "/CN=Fuzz Issuing" \
    -out "$work/ca.csr" 2>/dev/null
printf 'basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n' > "$work/ca.ext"
openssl x509 -req -in "$work/ca.csr" -CA "$work/root.pem" -CAkey "$work/root.key" -CAcreateserial -days 3650 \
    -extfile "$work/ca.ext" -out "$work/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/dev.key" -subj "/CN=dev-1/O=acme" \
    -addext "subjectAltName=URI:spiffe://devid.test/tenant/acme/device/dev-1" -out "$work/dev.csr" 2>/dev/null
openssl x509 -req -in "$work/dev.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -CAcreateserial -days 30 \
    -copy_extensions copy -out "$work/dev.pem" 2>/dev/null

# csr: P-256 with the device's names, Ed25519, RSA 2048 (all verify), an empty subject, a truncated and a bad-signature one.
openssl req -in "$work/dev.csr" -outform DER -out "$work/p256.der"
openssl req -new -newkey ed25519 -nodes -keyout /dev/null -subj "/CN=dev-1" -outform DER -out "$work/ed.der" 2>/dev/null
openssl req -new -newkey rsa:2048 -nodes -keyout /dev/null -subj "/CN=dev-1/O=acme" -outform DER \
    -out "$work/rsa.der" 2>/dev/null
openssl req -new -key "$work/dev.key" -subj "/" -outform DER -out "$work/empty.der" 2>/dev/null
seed csr p256-device.der < "$work/p256.der"
seed csr ed25519.der < "$work/ed.der"
seed csr rsa2048.der < "$work/rsa.der"
seed csr empty-subject.der < "$work/empty.der"
head -c 100 "$work/p256.der" | seed csr truncated.der
python3 -c 'import sys; b=bytearray(open(sys.argv[1],"rb").read()); b[-5]^=1; sys.stdout.buffer.write(b)' \
    "$work/p256.der" | seed csr bad-signature.der

# cms: certs-only SignedData as openssl writes it (one certificate, the chain, none).
openssl crl2pkcs7 -nocrl -certfile "$work/dev.pem" -outform DER -out "$work/one.p7"
cat "$work/dev.pem" "$work/ca.pem" "$work/root.pem" > "$work/chain.pem"
openssl crl2pkcs7 -nocrl -certfile "$work/chain.pem" -outform DER -out "$work/chain.p7"
openssl crl2pkcs7 -nocrl -outform DER -out "$work/none.p7" < /dev/null 2>/dev/null || true
seed cms one-certificate.der < "$work/one.p7"
seed cms chain.der < "$work/chain.p7"
[ -s "$work/none.p7" ] && seed cms no-certificates.der < "$work/none.p7"

# est-body: base64 in 64-column CRLF lines (RFC 7030), one line, unpadded, PEM, and a certs-only response.
base64 -w 64 "$work/p256.der" | sed 's/$/\r/' | seed est-body csr-crlf.b64
base64 -w 0 "$work/ed.der" | seed est-body csr-one-line.b64
base64 -w 0 "$work/empty.der" | tr -d '=' | seed est-body csr-unpadded.b64
openssl req -in "$work/dev.csr" | seed est-body csr.pem
base64 -w 76 "$work/one.p7" | seed est-body certs-only.b64

# csrattrs: the RFC 7030 §4.5.2 example, an empty SEQUENCE, one bare OID.
echo 'MEEGCSqGSIb3DQEJBzASBgcqhkjOPQIBMQcGBSuBBAAiMBYGCSqGSIb3DQEJDjEJBgcrBgEBAQEWBggqhkjOPQQDAw==' | base64 -d \
    | seed csrattrs rfc7030-example.der
printf '\x30\x00' | seed csrattrs empty.der
printf '\x30\x0a\x06\x08\x2a\x86\x48\xce\x3d\x04\x03\x02' | seed csrattrs ecdsa-with-sha256.der

# ocsp-request: openssl ocsp -reqout, with and without a nonce, two certificates, SHA-256 CertIDs.
openssl ocsp -issuer "$work/ca.pem" -cert "$work/dev.pem" -reqout "$work/req.der" 2>/dev/null
openssl ocsp -issuer "$work/ca.pem" -cert "$work/dev.pem" -no_nonce -reqout "$work/req-nononce.der" 2>/dev/null
openssl ocsp -issuer "$work/ca.pem" -sha256 -cert "$work/dev.pem" -cert "$work/dev.pem" -reqout "$work/req-two.der" \
    2>/dev/null
seed ocsp-request nonce.der < "$work/req.der"
seed ocsp-request no-nonce.der < "$work/req-nononce.der"
seed ocsp-request two-sha256.der < "$work/req-two.der"

# ocsp-get: the GET path component as clients write it: base64, percent-encoded, URL-safe, unpadded.
base64 -w 0 "$work/req.der" | seed ocsp-get base64.txt
base64 -w 0 "$work/req.der" | sed 's/+/%2B/g; s/\//%2F/g; s/=/%3D/g' | seed ocsp-get percent-encoded.txt
base64 -w 0 "$work/req-nononce.der" | tr '+/' '-_' | tr -d '=' | seed ocsp-get url-safe-unpadded.txt

# pem-key and encrypted-pkcs8: the private-key seeds are not committed; Fuzz/make-key-seeds.sh makes them fresh for
# each run (scripts/fuzz, SeedCorpusDepthTests). Committed here: what is not a key.
cat "$work/ca.pem" "$work/root.pem" | seed pem-key certificate-bundle.pem
printf -- '-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n' | seed pem-key bad-base64.pem
openssl pkcs8 -topk8 -in "$work/dev.key" -v2 aes-256-cbc -v2prf hmacWithSHA256 -iter 1 -outform DER \
    -passout pass:fuzz-passphrase -out "$work/enc.der"
# The EncryptedPrivateKeyInfo header (PBES2 parameters, salt, IV) without the ciphertext: no key in it.
head -c 80 "$work/enc.der" | seed encrypted-pkcs8 truncated-header.der
printf '\x30\x00' | seed encrypted-pkcs8 empty-sequence.der

# lot-manifest: what `devid factory mint` writes (ISO 8601 dates), and near misses.
fingerprint=$(openssl x509 -in "$work/root.pem" -outform DER | sha256sum | cut -d' ' -f1)
seed lot-manifest two-devices.json <<JSON
{"lot":"lot-7","tenant":"acme","manufacturerCASHA256":"$fingerprint","createdAt":"2026-12-01T10:00:00Z","devices":[
{"deviceID":"dev-1","hardwareSerial":"SN-0001","idevidSHA256":"$fingerprint","idevidSerial":"0a1b2c"},
{"deviceID":"dev-2","hardwareSerial":"SN-0002","idevidSHA256":"$fingerprint","idevidSerial":"7f"}]}
JSON
seed lot-manifest empty.json <<JSON
{"lot":"lot-8","tenant":"acme","manufacturerCASHA256":"$fingerprint","createdAt":"2026-12-01T10:00:00Z","devices":[]}
JSON
seed lot-manifest dotted-device.json <<JSON
{"lot":"lot-9","tenant":"acme","manufacturerCASHA256":"00","createdAt":"2026-12-01T10:00:00Z","devices":[
{"deviceID":"dev.1","hardwareSerial":"SN 1","idevidSHA256":"00","idevidSerial":"zz"}]}
JSON

# topic-policy: the default, one with {lot} and scopes, and invalid ones.
seed topic-policy default.json <<'JSON'
{"rules":[{"action":"publish","topic":"tenants/{tenant}/devices/{device}/telemetry/#"},{"action":"subscribe","topic":"tenants/{tenant}/devices/{device}/commands/#"},{"action":"subscribe","topic":"tenants/{tenant}/broadcast"}]}
JSON
seed topic-policy lot-and-scopes.json <<'JSON'
{"rules":[{"action":"all","topic":"tenants/{tenant}/lots/{lot}/+/status"},{"action":"subscribe","topic":"tenants/{tenant}/#"}],"scopes":["telemetry:write","ota/read"]}
JSON
seed topic-policy escapes-tenant.json <<'JSON'
{"rules":[{"action":"publish","topic":"tenants/+/x"},{"action":"subscribe","topic":"#"}]}
JSON

# mqtt-topic: filter a, 0xFF, filter b, 0xFF, name.
printf 'a/+/c\xffa/#\xffa/b/c' | seed mqtt-topic plus-in-hash.bin
printf '#\xff+/#\xff$SYS/uptime' | seed mqtt-topic dollar.bin
printf 'tenants/acme/+/x\xfftenants/+/#\xfftenants/acme/devices/x' | seed mqtt-topic tenants.bin
printf '$share/g/a/#\xffa//b\xff/a/' | seed mqtt-topic shared-empty-levels.bin

# admin-json: a selector byte (AdminRequestBody.allCases order) and the body.
body() { printf "\\x$(printf %02x "$1")"; cat; }
echo '{"id":"acme","displayName":"Acme"}' | body 0 | seed admin-json tenant.bin
echo '{"tenant":"acme","device":"dev-1","ttlSeconds":600,"uses":1}' | body 1 | seed admin-json claim-token.bin
echo '{"tenant":"acme","ttlSeconds":3600,"uses":5,"lot":"lot-7","namePattern":"dev-*"}' | body 1 \
    | seed admin-json claim-token-unbound.bin
echo '{"name":"ops","role":"operator","tenants":["acme"],"expiresInSeconds":86400}' | body 2 | seed admin-json admin-token.bin
echo '{"autoRegister":true,"maxUnboundTokenUses":10,"maxUnboundTokenTTL":86400}' | body 4 | seed admin-json tenant-policy.bin
echo '{"rules":[{"action":"publish","topic":"tenants/{tenant}/x"}],"scopes":["a:b"]}' | body 5 | seed admin-json topic-policy.bin
echo '{"serial":"0a:1b:2c","reason":"keyCompromise","dryRun":true}' | body 6 | seed admin-json revoke.bin
echo '{"expiringBefore":"2026-12-31T00:00:00Z","dryRun":true}' | body 7 | seed admin-json rotate.bin
echo '{"directory":"/etc/mosquitto/devid","port":8883,"brokerNames":["localhost","127.0.0.1"]}' | body 8 \
    | seed admin-json mosquitto-export.bin
echo '{"device":"dev-1","tenant":"acme","action":"publish","topic":"tenants/acme/devices/dev-1/telemetry/t"}' | body 9 \
    | seed admin-json mqtt-decision.bin
echo '{"fingerprint":"00ff","scope":"telemetry:write"}' | body 10 | seed admin-json http-decision.bin

# http-date: IMF-fixdate, delay-seconds, a date relative to a Date header, DevID-Time stamps.
printf 'Sun, 06 Nov 1994 08:49:37 GMT' | seed http-date imf-fixdate.txt
printf '120' | seed http-date delay-seconds.txt
printf 'Sat, 06 Dec 2025 00:02:00 GMT\nSat, 06 Dec 2025 00:00:00 GMT' | seed http-date date-and-server-date.txt
printf '2026-11-25T15:40:00.125Z' | seed http-date devid-time.txt
