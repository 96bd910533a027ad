//! Security settings of flows (OAP, tutorial 06) as o7sd finds them: the security
//! directory and its `enc.conf` files. What they mean (groups, ciphers, KDFs, keys) lives
//! in `o7s_proto::oap::keys`.
//!
//! Layout: `<security>/{cacert,untrusted,server/<name>,client/<name>}`, where a name's
//! directory holds `enc.conf` (the tutorial's older `enc.cfg` too), `crt.pem`, `key.pem`.
//! A missing `enc.conf` means no encryption; an empty one means the defaults (P-256,
//! AES-256-GCM, SHA-256); `none` means no encryption.

pub use o7s_proto::oap::keys::{hkdf32, parse_enc, Cipher, EncConf, Ephemeral, Kdf, Kex};
use std::path::{Path, PathBuf};

/// Why an `enc.conf` is unusable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncFileError {
    /// It exists but cannot be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A line of it is wrong.
    #[error("{}: {why}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// Which line and why.
        why: o7s_proto::oap::keys::EncConfError,
    },
}

/// Reads the `enc.conf` (or `enc.cfg`) in `dir`, or the `file` given; a missing default
/// file means none, a missing `file` is an error ([`EncFileError::Read`]).
pub fn load_enc(
    dir: &Path,
    file: Option<&Path>,
) -> Result<Option<(EncConf, PathBuf)>, EncFileError> {
    let candidates: Vec<PathBuf> = match file {
        Some(f) => vec![f.to_path_buf()],
        None => vec![dir.join("enc.conf"), dir.join("enc.cfg")],
    };
    for p in candidates {
        match std::fs::read_to_string(&p) {
            Ok(t) => {
                return parse_enc(&t)
                    .map(|c| c.map(|c| (c, p.clone())))
                    .map_err(|why| EncFileError::Parse {
                        path: p.clone(),
                        why,
                    })
            }
            // Missing means none for the default names; a file the configuration names
            // must be there (refused, not taken as "no encryption").
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && file.is_none() => continue,
            Err(source) => return Err(EncFileError::Read { path: p, source }),
        }
    }
    Ok(None)
}

/// The security directory for a configuration file: `<its folder>/security`.
pub fn default_dir(config: Option<&Path>) -> PathBuf {
    config
        .and_then(|c| c.parent().map(|p| p.join("security")))
        .unwrap_or_else(|| PathBuf::from("/etc/o7s/security"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_missing_default_enc_conf_means_none_and_a_missing_named_one_is_an_error() {
        let dir = std::env::temp_dir().join(format!("o7s-enc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // Neither default file: no encryption asked.
        assert!(matches!(load_enc(&dir, None), Ok(None)));
        // A file the configuration names that is not there: refused.
        let named = dir.join("opng-enc.conf");
        match load_enc(&dir, Some(&named)) {
            Err(EncFileError::Read { path, source }) => {
                assert_eq!(path, named);
                assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
            }
            other => panic!("{other:?}"),
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
