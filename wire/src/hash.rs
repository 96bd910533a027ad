//! Name hashing: the layer's directory hash (SHA3-224/256/384/512) and MD5 for UDP layers.
//!
//! The reference hashes the name's bytes without a terminating NUL (`str_hash`).

use md5::Md5;
use sha3::{Digest, Sha3_224, Sha3_256, Sha3_384, Sha3_512};

/// A directory hash algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum HashAlgo {
    /// SHA3-224 (28 bytes).
    Sha3_224,
    /// SHA3-256 (32 bytes), the default of eth, local and unicast layers.
    #[default]
    Sha3_256,
    /// SHA3-384 (48 bytes).
    Sha3_384,
    /// SHA3-512 (64 bytes).
    Sha3_512,
    /// MD5 (16 bytes), fixed for udp4/udp6 layers.
    Md5,
}

impl HashAlgo {
    /// Digest length in bytes.
    pub const fn len(self) -> usize {
        match self {
            Self::Sha3_224 => 28,
            Self::Sha3_256 => 32,
            Self::Sha3_384 => 48,
            Self::Sha3_512 => 64,
            Self::Md5 => 16,
        }
    }

    /// Always false: a digest is never empty (present for clippy's `len_without_is_empty`).
    pub const fn is_empty(self) -> bool {
        false
    }

    /// Hashes `name` (its UTF-8 bytes, no NUL).
    pub fn hash(self, name: &str) -> Vec<u8> {
        self.digest(name.as_bytes())
    }

    /// Hashes arbitrary bytes.
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha3_224 => Sha3_224::digest(data).to_vec(),
            Self::Sha3_256 => Sha3_256::digest(data).to_vec(),
            Self::Sha3_384 => Sha3_384::digest(data).to_vec(),
            Self::Sha3_512 => Sha3_512::digest(data).to_vec(),
            Self::Md5 => Md5::digest(data).to_vec(),
        }
    }

    /// Lower-case hex of the name's hash (the form UDP layers look up in DNS / `/etc/hosts`).
    pub fn hex(self, name: &str) -> String {
        hex::encode(self.hash(name))
    }

    /// The reference's config spelling (`SHA3_256`, ...).
    pub const fn config_name(self) -> &'static str {
        match self {
            Self::Sha3_224 => "SHA3_224",
            Self::Sha3_256 => "SHA3_256",
            Self::Sha3_384 => "SHA3_384",
            Self::Sha3_512 => "SHA3_512",
            Self::Md5 => "MD5",
        }
    }

    /// Parses the config spelling (case-insensitive, `-` or `_`).
    pub fn from_config_name(s: &str) -> Option<Self> {
        let n = s.to_ascii_uppercase().replace('-', "_");
        Some(match n.as_str() {
            "SHA3_224" => Self::Sha3_224,
            "SHA3_256" => Self::Sha3_256,
            "SHA3_384" => Self::Sha3_384,
            "SHA3_512" => Self::Sha3_512,
            "MD5" => Self::Md5,
            _ => return None,
        })
    }

    /// The SHA3 algorithm with this digest length, if any (used to guess a layer's hash).
    pub fn sha3_of_len(len: usize) -> Option<Self> {
        [
            Self::Sha3_224,
            Self::Sha3_256,
            Self::Sha3_384,
            Self::Sha3_512,
        ]
        .into_iter()
        .find(|a| a.len() == len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sha3_is_guessed_from_its_length_and_no_digest_is_empty() {
        for a in [
            HashAlgo::Sha3_224,
            HashAlgo::Sha3_256,
            HashAlgo::Sha3_384,
            HashAlgo::Sha3_512,
        ] {
            assert_eq!(HashAlgo::sha3_of_len(a.len()), Some(a));
            assert_eq!(a.hash("x").len(), a.len());
            assert!(!a.is_empty());
        }
        assert!(!HashAlgo::Md5.is_empty());
        // MD5's 16 bytes and other lengths are no SHA3's.
        for len in [0, 16, 31, 33] {
            assert_eq!(HashAlgo::sha3_of_len(len), None, "{len}");
        }
    }

    #[test]
    fn known_vectors() {
        assert_eq!(
            HashAlgo::Sha3_256.hex("sec.oping.tut.o7s"),
            "ecf815ad983df6bf81fdc7cb636eec15636e605a94b1ad66c1690c9e5f92828a"
        );
        assert_eq!(
            HashAlgo::Md5.hex("oping-server"),
            "6ae220aa6aae06c43878513c64db34b6"
        );
        assert_eq!(
            HashAlgo::Md5.hex("oping"),
            "7862c6fec5ecaef4aa2e3934725e23b3"
        );
        assert_eq!(
            HashAlgo::Sha3_256.hex("oping"),
            "42dee3b0415b4f690fd91cbd99876f1e9bd8d9745ef7fa32b142773af0349d54"
        );
        assert_eq!(HashAlgo::Md5.hex("abc"), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(
            HashAlgo::Sha3_224.hex("abc"),
            "e642824c3f8cf24ad09234ee7d3c766fc9a3a5168d0c94ad73b46fdf"
        );
        assert_eq!(
            hex::encode(HashAlgo::Sha3_512.digest(b"")),
            "a69f73cca23a9ac5c8b567dc185a756e97c982164fe25859e0d1dcc1475c80a6\
             15b2123af1f5f94c11e3e9402c3ac558f500199d95b6d3e301758586281dcd26"
        );
    }

    #[test]
    fn lengths_match_digests() {
        for a in [
            HashAlgo::Sha3_224,
            HashAlgo::Sha3_256,
            HashAlgo::Sha3_384,
            HashAlgo::Sha3_512,
            HashAlgo::Md5,
        ] {
            assert_eq!(a.hash("x").len(), a.len());
            assert_eq!(HashAlgo::from_config_name(a.config_name()), Some(a));
        }
    }
}
