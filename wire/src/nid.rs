//! OpenSSL NIDs as carried in the OAP header's cipher, KDF, digest and key-exchange fields.

/// Names of the NIDs the reference uses (0 = none / default).
pub fn name(nid: u16) -> Option<&'static str> {
    Some(match nid {
        0 => "none",
        415 => "prime256v1",
        715 => "secp384r1",
        716 => "secp521r1",
        1034 => "X25519",
        1035 => "X448",
        1126 => "ffdhe2048",
        1127 => "ffdhe3072",
        1128 => "ffdhe4096",
        895 => "aes-128-gcm",
        898 => "aes-192-gcm",
        901 => "aes-256-gcm",
        904 => "aes-128-ctr",
        905 => "aes-192-ctr",
        906 => "aes-256-ctr",
        1018 => "chacha20-poly1305",
        672 => "sha256",
        673 => "sha384",
        674 => "sha512",
        675 => "sha224",
        1096 => "sha3-224",
        1097 => "sha3-256",
        1098 => "sha3-384",
        1099 => "sha3-512",
        1056 => "blake2b512",
        1057 => "blake2s256",
        _ => return None,
    })
}

/// `name(nid)` or `nid <n>` for unknown values.
pub fn describe(nid: u16) -> String {
    match name(nid) {
        Some(n) => format!("{n} ({nid})"),
        None => format!("unknown ({nid})"),
    }
}

/// Digest length of a digest NID; the reference hashes the request with SHA-384 when the
/// request's `md_nid` is 0.
pub fn digest_len(md_nid: u16) -> Option<usize> {
    Some(match md_nid {
        0 => 48,
        672 | 1097 => 32,
        673 | 1098 => 48,
        674 | 1099 | 1056 => 64,
        675 | 1096 => 28,
        1057 => 32,
        _ => return None,
    })
}

/// Well-known NIDs.
pub mod known {
    /// prime256v1 (P-256).
    pub const P256: u16 = 415;
    /// secp384r1 (P-384).
    pub const P384: u16 = 715;
    /// X25519.
    pub const X25519: u16 = 1034;
    /// AES-128-GCM.
    pub const AES_128_GCM: u16 = 895;
    /// AES-256-GCM.
    pub const AES_256_GCM: u16 = 901;
    /// ChaCha20-Poly1305.
    pub const CHACHA20_POLY1305: u16 = 1018;
    /// SHA-256.
    pub const SHA256: u16 = 672;
    /// SHA-384.
    pub const SHA384: u16 = 673;
    /// SHA-512.
    pub const SHA512: u16 = 674;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// OpenSSL's NIDs of the names the reference writes in OAP headers (obj_mac.h).
    #[test]
    fn every_nid_the_reference_uses_has_its_openssl_name() {
        let table = [
            (0, "none"),
            (415, "prime256v1"),
            (715, "secp384r1"),
            (716, "secp521r1"),
            (1034, "X25519"),
            (1035, "X448"),
            (1126, "ffdhe2048"),
            (1127, "ffdhe3072"),
            (1128, "ffdhe4096"),
            (895, "aes-128-gcm"),
            (898, "aes-192-gcm"),
            (901, "aes-256-gcm"),
            (904, "aes-128-ctr"),
            (905, "aes-192-ctr"),
            (906, "aes-256-ctr"),
            (1018, "chacha20-poly1305"),
            (672, "sha256"),
            (673, "sha384"),
            (674, "sha512"),
            (675, "sha224"),
            (1096, "sha3-224"),
            (1097, "sha3-256"),
            (1098, "sha3-384"),
            (1099, "sha3-512"),
            (1056, "blake2b512"),
            (1057, "blake2s256"),
        ];
        for (nid, n) in table {
            assert_eq!(name(nid), Some(n), "{nid}");
            assert_eq!(describe(nid), format!("{n} ({nid})"));
        }
        assert_eq!(name(1), None);
        assert_eq!(describe(1), "unknown (1)");
    }

    #[test]
    fn digest_lengths_follow_the_digest_and_md_nid_0_is_sha384() {
        let table = [
            (0, 48),
            (672, 32),
            (1097, 32),
            (673, 48),
            (1098, 48),
            (674, 64),
            (1099, 64),
            (1056, 64),
            (675, 28),
            (1096, 28),
            (1057, 32),
        ];
        for (nid, len) in table {
            assert_eq!(digest_len(nid), Some(len), "{nid}");
        }
        assert_eq!(digest_len(895), None, "a cipher is no digest");
    }
}
