#!/usr/bin/env bash
# Makes this directory's certificates (P-256, valid 2026-12-07 for 10 years), for
# control/tests/trust_names.rs. Run from this directory; needs openssl.
#   constrained/cacert/root.pem       a root CA
#   constrained/untrusted/team-a.pem  an intermediate under it, name constraints
#                                     permitted;DNS:team-a (team-a and its subdomains)
#   bank-cn-only.pem                  CN=bank, no subjectAltName, under the intermediate
#   bank-san.pem                      CN=bank, subjectAltName DNS:bank (outside the
#                                     constraints), under the intermediate
#   svc-team-a.pem                    CN=svc.team-a, subjectAltName DNS:svc.team-a
#   plain/cacert/root.pem             the same root CA alone (no constraints anywhere)
#   client-only.pem                   CN=alice, extendedKeyUsage clientAuth only, under
#                                     the root
set -euo pipefail
rm -rf constrained plain ./*.pem work
mkdir -p constrained/cacert constrained/untrusted plain/cacert work
cd work
key() { openssl ecparam -name prime256v1 -genkey -noout -out "$1"; }
key root.key; key inter.key; key leaf.key
cat > ext.cnf <<CNF
[ req ]
distinguished_name = dn
[ dn ]
[ root_ca ]
basicConstraints = critical, CA:true
keyUsage = critical, keyCertSign, cRLSign
[ inter ]
basicConstraints = critical, CA:true, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
nameConstraints = critical, permitted;DNS:team-a
[ cn_only ]
basicConstraints = CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
[ bank_san ]
basicConstraints = CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:bank
[ svc ]
basicConstraints = CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:svc.team-a
[ client ]
basicConstraints = CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
CNF
openssl req -new -x509 -key root.key -subj /CN=root.test -days 3650 -extensions root_ca -config ext.cnf -out root.pem
sign() { # CN KEY ISSUER_CRT ISSUER_KEY EXT OUT
    openssl req -new -key "$2" -subj "/CN=$1" -config ext.cnf -out req.csr
    openssl x509 -req -in req.csr -CA "$3" -CAkey "$4" -CAcreateserial -days 3650 -extfile ext.cnf -extensions "$5" -out "$6"
}
sign inter.test inter.key root.pem root.key inter inter.pem
sign bank leaf.key inter.pem inter.key cn_only ../bank-cn-only.pem
sign bank leaf.key inter.pem inter.key bank_san ../bank-san.pem
sign svc.team-a leaf.key inter.pem inter.key svc ../svc-team-a.pem
sign alice leaf.key root.pem root.key client ../client-only.pem
cp root.pem ../constrained/cacert/root.pem
cp root.pem ../plain/cacert/root.pem
cp inter.pem ../constrained/untrusted/team-a.pem
cd .. && rm -rf work
