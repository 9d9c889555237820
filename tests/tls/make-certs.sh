#!/usr/bin/env bash
# Test certificates for the TLS tests, made fresh each run (keys are never
# committed):
#   tests/tls/make-certs.sh DIR
# writes into DIR
#   ca.pem ca.key          a test CA ("rtsync test CA 1")
#   server.pem server.key  a server certificate it signed, for localhost and 127.0.0.1
#   ca2.pem, server2.pem server2.key   the same from a second CA (rotation tests)
#   self.pem self.key      a self-signed server certificate for localhost and 127.0.0.1
#   other.pem other.key    signed by CA 1 for another name only (host name mismatch)
#   cadir/                 CA 1 in a directory with OpenSSL's hashed names (-CApath)
set -euo pipefail
dir=${1:?usage: make-certs.sh DIR}
mkdir -p "$dir"
cd "$dir"
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
ext() { printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n' "$1"; }
ca() { # NAME N
	key "ca$2.key"
	openssl req -x509 -new -key "ca$2.key" -out "ca$2.pem" -days 3 -subj "/CN=$1" \
		-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
}
leaf() { # OUT CA-SUFFIX SANS
	key "$1.key"
	openssl req -new -key "$1.key" -out "$1.csr" -subj "/CN=rtsync test server" 2>/dev/null
	ext "$3" > "$1.ext"
	openssl x509 -req -in "$1.csr" -CA "ca$2.pem" -CAkey "ca$2.key" -CAcreateserial -out "$1.pem" \
		-days 3 -extfile "$1.ext" 2>/dev/null
	rm -f "$1.csr" "$1.ext"
}
ca "rtsync test CA 1" ""
ca "rtsync test CA 2" 2
leaf server "" "DNS:localhost,IP:127.0.0.1"
leaf server2 2 "DNS:localhost,IP:127.0.0.1"
leaf other "" "DNS:elsewhere.invalid"
key self.key
openssl req -x509 -new -key self.key -out self.pem -days 3 -subj "/CN=localhost" \
	-addext subjectAltName=DNS:localhost,IP:127.0.0.1 2>/dev/null
mkdir -p cadir
cp ca.pem cadir/
openssl rehash cadir 2>/dev/null || c_rehash cadir >/dev/null
