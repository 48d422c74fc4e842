//! The node's libp2p identity: a secp256k1 key persisted as hex, like op-node's
//! `--p2p.priv.path` (`opnode_p2p_priv.txt`), so the peer id survives restarts.

use libp2p::identity::{secp256k1, Keypair};
use std::{io::Write, path::Path};

/// Why the node key could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading or writing the key file failed.
    #[error("node key file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file does not hold a 32-byte hex secp256k1 key.
    #[error("node key file {0} does not hold a hex secp256k1 private key")]
    Invalid(String),
}

/// Loads the key at `path`, or creates one there (mode 0600) when the file is missing.
pub fn load_or_create(path: &Path) -> Result<Keypair, KeyError> {
    let io = |source| KeyError::Io { path: path.display().to_string(), source };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let text = text.trim().trim_start_matches("0x");
            let mut bytes =
                hex::decode(text).map_err(|_| KeyError::Invalid(path.display().to_string()))?;
            let secret = secp256k1::SecretKey::try_from_bytes(&mut bytes)
                .map_err(|_| KeyError::Invalid(path.display().to_string()))?;
            Ok(secp256k1::Keypair::from(secret).into())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(io)?;
            }
            let pair = secp256k1::Keypair::generate();
            let hex = hex::encode(pair.secret().to_bytes());
            // Write to a temporary file and rename: a crash never leaves half a key.
            let tmp = path.with_extension("tmp");
            {
                let mut opts = std::fs::OpenOptions::new();
                opts.write(true).create(true).truncate(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
                let mut f = opts.open(&tmp).map_err(io)?;
                f.write_all(hex.as_bytes()).map_err(io)?;
                f.sync_all().map_err(io)?;
            }
            std::fs::rename(&tmp, path).map_err(io)?;
            Ok(pair.into())
        }
        Err(e) => Err(io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_created_0600_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/opnode_p2p_priv.txt");
        let a = load_or_create(&path).unwrap();
        let b = load_or_create(&path).unwrap();
        assert_eq!(a.public().to_peer_id(), b.public().to_peer_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        std::fs::write(&path, "zz").unwrap();
        assert!(matches!(load_or_create(&path), Err(KeyError::Invalid(_))));
    }
}
