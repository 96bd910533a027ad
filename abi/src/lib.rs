//! # o7s-abi: what the processes of o7s share
//!
//! o7sd, the data plane and the apps are separate programs. What crosses between them is
//! here, and only here: the messages between o7sd and the data plane ([`msg`]) and the
//! layout of a flow's shared memory ([`ring`]). [`ABI_VERSION`] names this contract: o7sd
//! hands it to the data plane it starts (`O7S_ABI_VERSION`), and a data plane built for
//! another version refuses to run (exit status [`EXIT_ABI_MISMATCH`]) rather than misread
//! messages or memory. Change it with any change to either module's meaning or layout.
//!
//! Keeping this small lets o7sd depend on it without linking the data plane's XDP, AF_XDP
//! and crypto libraries.

pub mod impair;
pub mod msg;
pub mod rate;
pub mod ring;

/// The version of the contract in this crate.
pub const ABI_VERSION: u32 = 6;
/// The environment variable that carries o7sd's [`ABI_VERSION`] to the data plane.
pub const ABI_ENV: &str = "O7S_ABI_VERSION";
/// The environment variable that names the data plane's own socket (mode 0600, in o7sd's
/// runtime directory): a new o7sd finds a data plane whose o7sd went away there.
pub const SOCK_ENV: &str = "O7S_DP_SOCK";
/// The data plane's socket's file name in the runtime directory.
pub const SOCK_NAME: &str = "dataplane.sock";
/// The data plane's exit status when its ABI is not o7sd's.
pub const EXIT_ABI_MISMATCH: u8 = 3;
/// Bytes an encrypted SDU takes beyond its plaintext: a 12-byte IV and a 16-byte AEAD tag.
pub const CRYPT_OVERHEAD: usize = 12 + 16;

/// Whether the ABI version `theirs` (as o7sd gave it) is this one; why not.
pub fn check_version(theirs: Option<&str>) -> Result<(), String> {
    match theirs.map(str::parse::<u32>) {
        Some(Ok(v)) if v == ABI_VERSION => Ok(()),
        Some(Ok(v)) => Err(format!(
            "this data plane speaks ABI {ABI_VERSION}, o7sd speaks {v}: install o7sd and o7s-dataplane from the same build"
        )),
        Some(Err(_)) => Err(format!("{ABI_ENV} is not a number")),
        None => Err(format!("{ABI_ENV} is not set (started by o7sd only)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_same_version_is_accepted() {
        assert_eq!(check_version(Some(&ABI_VERSION.to_string())), Ok(()));
        assert!(check_version(Some("999")).is_err_and(|e| e.contains("speaks 999")));
        assert!(check_version(Some("x")).is_err());
        assert!(check_version(None).is_err());
    }

    /// A message with a flow's key, logged with `{:?}` (the data plane's router does for a
    /// port no worker has), does not show the key.
    #[test]
    fn a_flows_key_is_not_shown_by_debug() {
        let m = msg::ToDp::AddFlow {
            flow: 1,
            port: 2,
            local: 3,
            remote: 4,
            peer: [0; 6],
            timeout_ms: 5,
            peer_addr: None,
            crypt: Some(msg::CryptSpec {
                cipher: 901,
                key: vec![0xAB; 32],
                rotation_bits: 20,
            }),
            pid: 6,
            record: String::new(),
            uni: None,
        };
        let s = format!("{m:?}");
        assert!(s.contains("cipher: 901") && s.contains("not shown"), "{s}");
        assert!(!s.contains("171"), "{s}");
    }
}
