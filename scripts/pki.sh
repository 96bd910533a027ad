#!/usr/bin/env bash
# Generates tutorial 06's PKI with openssl into DIR (default ./pki):
#   root CA ca.tut.o7s -> intermediate sign.tut.o7s (pathlen:0) -> server sec.oping.tut.o7s
# in P-384 (as the tutorial; keys made with `openssl ecparam -genkey`, SEC1 PEM) and, with
# CURVE=P-256, a P-256 variant. For the attack tests it also makes: a chain from another CA
# (other/), a server certificate with the wrong CN (wrongcn/), an expired one (expired/), and
# one under a sub-intermediate that violates pathlen:0 (pathlen/).
#   scripts/pki.sh [DIR]   (CURVE=P-256 for the P-256 variant)
set -euo pipefail
dir=${1:-pki}
curve=${CURVE:-P-384}
case "$curve" in
    P-384) ec=secp384r1; md=sha384 ;;
    P-256) ec=prime256v1; md=sha256 ;;
    *) echo "pki.sh: CURVE must be P-384 or P-256" >&2; exit 2 ;;
esac
name=${NAME:-sec.oping.tut.o7s}
mkdir -p "$dir"
cd "$dir"
cat > ext.cnf <<CNF
[ v3_ca ]
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always,issuer
basicConstraints = critical, CA:true
keyUsage = critical, digitalSignature, cRLSign, keyCertSign
[ v3_intermediate_ca ]
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always,issuer
basicConstraints = critical, CA:true, pathlen:0
keyUsage = critical, digitalSignature, cRLSign, keyCertSign
[ v3_sub_ca ]
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always,issuer
basicConstraints = critical, CA:true
keyUsage = critical, digitalSignature, cRLSign, keyCertSign
[ server_cert ]
basicConstraints = CA:FALSE
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid,issuer:always
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
CNF
key() { openssl ecparam -genkey -name "$ec" -out "$1" 2>/dev/null; }
# root CN KEY CRT
root() {
    key "$2"
    openssl req -new -x509 -"$md" -days 7300 -key "$2" -out "$3" -subj "/O=o7s/CN=$1" \
        -config ext.cnf -extensions v3_ca 2>/dev/null
}
# sign CN KEY CRT CA_KEY CA_CRT EXT [DAYS | dates]
sign() {
    key "$2"
    openssl req -new -"$md" -key "$2" -out "$2.csr" -subj "/O=o7s/CN=$1" 2>/dev/null
    if [ "${7:-}" = "expired" ]; then
        # Valid for one day, long ago (openssl ca sets explicit dates).
        mkdir -p ca-db
        : > ca-db/index.txt
        echo 1000 > ca-db/serial
        cat > ca-db/ca.cnf <<CNF
[ ca ]
default_ca = expired_ca
[ expired_ca ]
database = ca-db/index.txt
serial = ca-db/serial
new_certs_dir = ca-db
default_md = $md
policy = loose
copy_extensions = none
[ loose ]
commonName = supplied
organizationName = optional
CNF
        openssl ca -batch -config ca-db/ca.cnf -cert "$5" -keyfile "$4" -in "$2.csr" -out "$3" \
            -startdate 20200101000000Z -enddate 20200102000000Z \
            -extfile ext.cnf -extensions "$6" -notext 2>/dev/null
    else
        openssl x509 -req -"$md" -in "$2.csr" -CA "$5" -CAkey "$4" -CAcreateserial \
            -out "$3" -extfile ext.cnf -extensions "$6" -days "${7:-365}" 2>/dev/null
    fi
    rm -f "$2.csr"
}
mkdir -p root sign server other wrongcn expired pathlen
root ca.tut.o7s root/key.pem root/crt.pem
sign sign.tut.o7s sign/key.pem sign/crt.pem root/key.pem root/crt.pem v3_intermediate_ca 3650
sign "$name" server/key.pem server/crt.pem sign/key.pem sign/crt.pem server_cert 365
# Another CA, same names.
root ca.other.o7s other/ca.key.pem other/ca.crt.pem
sign sign.other.o7s other/sign.key.pem other/sign.crt.pem other/ca.key.pem other/ca.crt.pem v3_intermediate_ca 3650
sign "$name" other/key.pem other/crt.pem other/sign.key.pem other/sign.crt.pem server_cert 365
# Wrong CN, right CA.
sign "not.$name" wrongcn/key.pem wrongcn/crt.pem sign/key.pem sign/crt.pem server_cert 365
# Expired.
sign "$name" expired/key.pem expired/crt.pem sign/key.pem sign/crt.pem server_cert expired
# pathlen:0 violated: a CA under the intermediate, and a server under that.
sign sub.tut.o7s pathlen/sub.key.pem pathlen/sub.crt.pem sign/key.pem sign/crt.pem v3_sub_ca 3650
sign "$name" pathlen/key.pem pathlen/crt.pem pathlen/sub.key.pem pathlen/sub.crt.pem server_cert 365
# Layer members (issue 26, `member_ca`): MEMBERS="ua ub=oping-server,other" gives each
# IPCP name a certificate issued by the root itself, one under the other CA, and an expired
# one; the names after "=" are written as subjectAltName DNS names: the names that member
# may publish in the layer's directory (signed directory entries).
for spec in ${MEMBERS:-}; do
    m=${spec%%=*}
    ext=server_cert
    if [ "$spec" != "$m" ]; then
        ext="member_$m"
        san=$(echo "${spec#*=}" | tr ',' '\n' | sed 's/^/DNS:/' | paste -sd, -)
        { echo "[ $ext ]"; sed -n '/^\[ server_cert \]/,/^extendedKeyUsage/p' ext.cnf | tail -n +2
          echo "subjectAltName = $san"; } >> ext.cnf
    fi
    mkdir -p "members/$m" "members-other/$m" "members-expired/$m"
    sign "$m" "members/$m/key.pem" "members/$m/crt.pem" root/key.pem root/crt.pem "$ext" 365
    sign "$m" "members-other/$m/key.pem" "members-other/$m/crt.pem" other/ca.key.pem other/ca.crt.pem "$ext" 365
    sign "$m" "members-expired/$m/key.pem" "members-expired/$m/crt.pem" root/key.pem root/crt.pem "$ext" expired
done
openssl verify -CAfile root/crt.pem -untrusted sign/crt.pem server/crt.pem >/dev/null
echo "pki.sh: $curve PKI for $name in $(pwd)"
