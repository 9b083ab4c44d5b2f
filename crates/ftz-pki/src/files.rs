//! Key and certificate files. Private keys are written with mode 0600 and refused at load time
//! when group or others can read them, as OpenSSH does: a key that leaked on disk is not a key.

use std::{
    fs,
    io::{self, Write},
    path::{Path, PathBuf},
};

use ftz_core::{SigningKey, VerifyingKey, pem};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum FileError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: {detail}")]
    Content { path: PathBuf, detail: String },
    #[error("{path}: private key is readable by group or others (mode {mode:o}); run: chmod 600 {path}")]
    Exposed { path: PathBuf, mode: u32 },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> FileError + '_ {
    move |source| FileError::Io { path: path.to_path_buf(), source }
}

fn content(path: &Path, detail: impl Into<String>) -> FileError {
    FileError::Content { path: path.to_path_buf(), detail: detail.into() }
}

/// Writes a secret with mode 0600 (set at creation, so it is never briefly world-readable).
pub fn write_secret(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(io_err(path))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(fs::Permissions::from_mode(0o600)).map_err(io_err(path))?;
    }
    f.write_all(bytes).map_err(io_err(path))?;
    f.sync_all().map_err(io_err(path))
}

pub fn write_public(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    fs::write(path, bytes).map_err(io_err(path))
}

fn read_secret(path: &Path) -> Result<Vec<u8>, FileError> {
    let meta = fs::metadata(path).map_err(io_err(path))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(FileError::Exposed { path: path.to_path_buf(), mode });
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    fs::read(path).map_err(io_err(path))
}

/// A secret file's text (a CA's or a TLS key's PEM), refused like every key file when others
/// can read it.
pub fn read_secret_text(path: &Path) -> Result<String, FileError> {
    String::from_utf8(read_secret(path)?).map_err(|_| content(path, "not a PEM text file"))
}

/// PEM text of an Ed25519 PKCS#8 key.
pub fn signing_key_pem(pkcs8: &[u8]) -> String {
    pem::encode("PRIVATE KEY", pkcs8)
}

/// Generates an Ed25519 key, writes it (0600) and returns it.
///
/// The file is PKCS#8 v1 (RFC 8410) in PEM, the form `openssl genpkey -algorithm ed25519`
/// writes, so OpenSSL and Python's `cryptography` read it (`openssl pkey -in FILE -pubout`).
/// Files written by earlier versions (PKCS#8 v2 as ring writes it) keep loading in
/// [`read_signing_key`].
pub fn generate_signing_key(path: &Path) -> Result<SigningKey, FileError> {
    let (key, pkcs8) = SigningKey::generate().map_err(|e| content(path, e.to_string()))?;
    write_secret(path, signing_key_pem(&pkcs8).as_bytes())?;
    Ok(key)
}

/// Reads an Ed25519 private key file: PEM `PRIVATE KEY`, PKCS#8 v1 (as this crate, OpenSSL and
/// Python's `cryptography` write it) or v2 (as ring wrote it). Refused when group or others can
/// read it.
pub fn read_signing_key(path: &Path) -> Result<SigningKey, FileError> {
    let bytes = read_secret(path)?;
    let text = String::from_utf8(bytes).map_err(|_| content(path, "not a PEM text file"))?;
    let der = pem::decode("PRIVATE KEY", &text).map_err(|e| content(path, e.to_string()))?;
    SigningKey::from_pkcs8(&der).map_err(|e| content(path, e.to_string()))
}

/// Public keys are one line: `ed25519:<hex of the 32 key bytes>`.
pub fn public_key_line(key: &VerifyingKey) -> String {
    format!("ed25519:{}\n", hex::encode(key.as_bytes()))
}

pub fn read_public_key(path: &Path) -> Result<VerifyingKey, FileError> {
    let text = fs::read_to_string(path).map_err(io_err(path))?;
    parse_public_key(text.trim()).map_err(|d| content(path, d))
}

pub fn parse_public_key(s: &str) -> Result<VerifyingKey, String> {
    let hex_digits = s.strip_prefix("ed25519:").ok_or("expected ed25519:<64 hex digits>")?;
    let bytes = hex::decode(hex_digits).map_err(|_| "expected ed25519:<64 hex digits>")?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| e.to_string())
}

/// All certificates of a PEM file, leaf first.
pub fn read_cert_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, FileError> {
    let bytes = fs::read(path).map_err(io_err(path))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| content(path, format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(content(path, "no certificate in file"));
    }
    Ok(certs)
}

/// The TLS private key (PKCS#8 PEM) of a node or user.
pub fn read_tls_key(path: &Path) -> Result<PrivateKeyDer<'static>, FileError> {
    let bytes = read_secret(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| content(path, format!("not a PEM private key: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signing_keys_round_trip_with_private_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        let key = generate_signing_key(&path).unwrap();
        let back = read_signing_key(&path).unwrap();
        assert_eq!(key.key_id(), back.key_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
            assert!(matches!(read_signing_key(&path), Err(FileError::Exposed { mode: 0o644, .. })));
        }
    }

    /// PKCS#8 v2 (RFC 5958) of the RFC 8032 test 1 key, laid out exactly as ring's
    /// `Ed25519KeyPair::generate_pkcs8` writes it (how key files were written before v1).
    const RING_V2_RFC8032: &str = concat!(
        "3051020101300506032b657004220420",
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "812100",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
    );

    #[test]
    fn generated_files_are_pkcs8_v1() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        generate_signing_key(&path).unwrap();
        let der = pem::decode("PRIVATE KEY", &fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(der.len(), 48);
        assert_eq!(der[..16], ftz_core::keys::PKCS8_V1_PREFIX);
    }

    #[test]
    fn v2_files_as_ring_wrote_them_still_load_and_are_still_refused_when_exposed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.key");
        write_secret(&path, signing_key_pem(&hex::decode(RING_V2_RFC8032).unwrap()).as_bytes()).unwrap();
        let key = read_signing_key(&path).unwrap();
        assert_eq!(
            hex::encode(key.verifying_key().as_bytes()),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
            let err = read_signing_key(&path).unwrap_err();
            assert!(matches!(err, FileError::Exposed { mode: 0o640, .. }), "{err}");
            assert!(err.to_string().contains("chmod 600"), "{err}");
        }
    }

    #[test]
    fn public_key_lines() {
        let (k, _) = SigningKey::generate().unwrap();
        let line = public_key_line(&k.verifying_key());
        assert_eq!(parse_public_key(line.trim()).unwrap(), k.verifying_key());
        assert!(parse_public_key("ed25519:zz").is_err());
        assert!(parse_public_key("rsa:00").is_err());
    }

    #[test]
    fn missing_files_name_the_path() {
        let err = read_cert_chain(Path::new("/nonexistent/ca.pem")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    }
}
