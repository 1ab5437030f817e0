#!/usr/bin/env bash
# Fuzz/make-key-seeds.sh DIR: writes the private-key seeds of the pem-key and encrypted-pkcs8 targets (docs/fuzzing.md)
# into DIR/pem-key/ and DIR/encrypted-pkcs8/, from keys made fresh with openssl on every run. They are not committed:
# a private key in git, even a throwaway one, is what secret scanners (rightly) flag, and a fresh key is as good a seed.
# PKCS#8, SEC1, P-384, and PBES2-encrypted keys with LOW iteration counts (the fuzz targets refuse more than 1,024)
# under the passphrase the targets use. scripts/fuzz and SeedCorpusDepthTests run it; needs openssl.
set -euo pipefail
[ "$#" -eq 1 ] || { echo "usage: Fuzz/make-key-seeds.sh DIR" >&2; exit 2; }
out="$1"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
umask 077
mkdir -p "$out/pem-key" "$out/encrypted-pkcs8"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/p256.key" 2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out "$work/p384.key" 2>/dev/null
openssl pkey -in "$work/p256.key" -out "$out/pem-key/pkcs8-p256.pem"
openssl ec -in "$work/p256.key" -out "$out/pem-key/sec1-p256.pem" 2>/dev/null
openssl pkey -in "$work/p384.key" -out "$out/pem-key/pkcs8-p384.pem"
openssl pkcs8 -topk8 -in "$work/p256.key" -v2 aes-256-cbc -v2prf hmacWithSHA256 -iter 1 \
    -passout pass:fuzz-passphrase -out "$out/pem-key/encrypted-p256.pem"
openssl pkcs8 -topk8 -in "$work/p256.key" -v2 aes-256-cbc -v2prf hmacWithSHA256 -iter 1 -outform DER \
    -passout pass:fuzz-passphrase -out "$out/encrypted-pkcs8/aes256-sha256-iter1.der"
openssl pkcs8 -topk8 -in "$work/p256.key" -v2 aes-128-cbc -v2prf hmacWithSHA1 -iter 2 -outform DER \
    -passout pass:fuzz-passphrase -out "$out/encrypted-pkcs8/aes128-sha1-iter2.der"
openssl pkcs8 -topk8 -in "$work/p384.key" -v2 aes-192-cbc -v2prf hmacWithSHA512 -iter 3 -outform DER \
    -passout pass:fuzz-passphrase -out "$out/encrypted-pkcs8/aes192-sha512-iter3.der"
openssl pkcs8 -topk8 -in "$work/p256.key" -v2 aes-256-cbc -v2prf hmacWithSHA256 -iter 1 -outform DER \
    -passout pass:another-passphrase -out "$out/encrypted-pkcs8/wrong-passphrase.der"
