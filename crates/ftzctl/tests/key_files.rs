//! Key files standard tools read (issue 14, item 6): every private key `ftzctl dev init` writes
//! (zone CA, node and user TLS keys, authority, node-signing and issuing Ed25519 keys) loads in
//! OpenSSL 3 and in Python's `cryptography`, and the public key they derive is the one ftz
//! publishes; a key OpenSSL (or Python) generates loads in ftz and signs what OpenSSL verifies.
//!
//! Needs `openssl` (Debian: `apt-get install openssl`) and Python 3 with `cryptography`
//! (`python3 -m pip install 'cryptography==48.0.0'`; `.ci/run` installs it). Without them the
//! tests fail and say so.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use ftz_pki::files;

const OPENSSL_HINT: &str = "openssl is needed for this test: apt-get install -y openssl";
const PYTHON_HINT: &str = "Python 3 with the cryptography module is needed for this test: \
    python3 -m pip install 'cryptography==48.0.0' (.ci/run installs it)";

fn run(cmd: &mut Command, hint: &str) -> Output {
    match cmd.output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!("{hint} ({:?}: {e})", cmd.get_program()),
        Err(e) => panic!("{:?}: {e}", cmd.get_program()),
    }
}

fn ok(out: Output, what: &str) -> Vec<u8> {
    assert!(
        out.status.success(),
        "{what}: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn openssl(args: &[&str], what: &str) -> Vec<u8> {
    ok(run(Command::new("openssl").args(args), OPENSSL_HINT), what)
}

/// Runs a Python snippet with `cryptography`; a missing module fails with the install hint.
fn python(script: &str, args: &[&Path], what: &str) -> String {
    let out = run(Command::new("python3").arg("-c").arg(script).args(args), PYTHON_HINT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("No module named 'cryptography'"), "{PYTHON_HINT}\n{stderr}");
    String::from_utf8(ok(out, what)).unwrap()
}

/// Loads a PEM private key with `cryptography` and prints its public key: raw hex for Ed25519,
/// the curve of an EC key, the key's type otherwise.
const PY_LOAD: &str = r#"
import sys
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
with open(sys.argv[1], "rb") as f:
    key = serialization.load_pem_private_key(f.read(), password=None)
if isinstance(key, ed25519.Ed25519PrivateKey):
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    print("ed25519:" + raw.hex())
elif isinstance(key, ec.EllipticCurvePrivateKey):
    print("ec:" + key.curve.name)
else:
    print(type(key).__name__)
"#;

fn private_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// Every `*.key` file under `dir`.
fn key_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            key_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "key") {
            out.push(path);
        }
    }
}

#[test]
fn every_key_dev_init_writes_loads_in_openssl_and_python() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("fed");
    let out = Command::new(env!("CARGO_BIN_EXE_ftzctl"))
        .args(["dev", "init", "--zones", "shanghai,hainan", "--out"])
        .arg(&root)
        .output()
        .unwrap();
    ok(out, "ftzctl dev init");

    let mut keys = Vec::new();
    key_files(&root, &mut keys);
    keys.sort();
    let (mut ed25519, mut tls) = (0, 0);
    for key in &keys {
        let name = key.display().to_string();
        openssl(&["pkey", "-in", &name, "-noout"], &format!("openssl pkey -in {name} -noout"));
        let py = python(PY_LOAD, &[key], &format!("cryptography load_pem_private_key {name}"));
        let pub_file = key.with_extension("pub");
        if pub_file.exists() {
            // An Ed25519 key of the zone: ftz, OpenSSL and Python agree on its public key.
            ed25519 += 1;
            let published = fs::read_to_string(&pub_file).unwrap();
            assert_eq!(py.trim(), published.trim(), "{name}: Python's public key");
            let der = openssl(&["pkey", "-in", &name, "-pubout", "-outform", "DER"], "openssl pkey -pubout");
            assert_eq!(der.len(), 44, "{name}: an Ed25519 SubjectPublicKeyInfo");
            assert_eq!(
                format!("ed25519:{}", hex::encode(&der[12..])),
                published.trim(),
                "{name}: OpenSSL's public key"
            );
            let loaded = files::read_signing_key(key).unwrap();
            assert_eq!(files::public_key_line(&loaded.verifying_key()), published);
            // What ftz signs with the file, OpenSSL verifies with the public key it derived.
            openssl_verifies(tmp.path(), key, &loaded.sign(b"signed by ftz"), b"signed by ftz");
        } else {
            tls += 1;
            assert_eq!(py.trim(), "ec:secp256r1", "{name}: a P-256 TLS key");
            files::read_tls_key(key).unwrap();
        }
    }
    // Per zone: authority, node-signing, issuing; ca, node and one TLS key per role.
    assert_eq!(ed25519, 2 * 3, "{keys:?}");
    assert!(tls >= 2 * 3, "{keys:?}");
}

/// OpenSSL verifies `sig` over `msg` with the public key it derives from `key`.
fn openssl_verifies(dir: &Path, key: &Path, sig: &[u8], msg: &[u8]) {
    let (pub_pem, sig_file, msg_file) = (dir.join("v.pub.pem"), dir.join("v.sig"), dir.join("v.msg"));
    fs::write(&sig_file, sig).unwrap();
    fs::write(&msg_file, msg).unwrap();
    let s = |p: &Path| p.display().to_string();
    openssl(&["pkey", "-in", &s(key), "-pubout", "-out", &s(&pub_pem)], "openssl pkey -pubout");
    openssl(
        &[
            "pkeyutl",
            "-verify",
            "-pubin",
            "-inkey",
            &s(&pub_pem),
            "-rawin",
            "-in",
            &s(&msg_file),
            "-sigfile",
            &s(&sig_file),
        ],
        &format!("openssl pkeyutl -verify of a signature made with {}", key.display()),
    );
}

#[test]
fn a_key_openssl_generates_loads_and_signs() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("openssl.key");
    let name = key.display().to_string();
    openssl(&["genpkey", "-algorithm", "ed25519", "-out", &name], "openssl genpkey -algorithm ed25519");

    // Readable by others: refused as any key file is, whoever wrote it.
    private_mode(&key, 0o644);
    let err = files::read_signing_key(&key).unwrap_err();
    assert!(err.to_string().contains("chmod 600"), "{err}");

    private_mode(&key, 0o600);
    let loaded = files::read_signing_key(&key).unwrap();
    let der = openssl(&["pkey", "-in", &name, "-pubout", "-outform", "DER"], "openssl pkey -pubout");
    assert_eq!(loaded.verifying_key().as_bytes(), &der[12..], "the public key OpenSSL derives");
    let sig = loaded.sign(b"a record");
    assert!(loaded.verifying_key().verify(b"a record", &sig));
    assert!(!loaded.verifying_key().verify(b"a recorD", &sig));
    openssl_verifies(tmp.path(), &key, &sig, b"a record");
}

#[test]
fn a_key_python_generates_loads() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("python.key");
    let public = python(
        r#"
import os, sys
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
key = ed25519.Ed25519PrivateKey.generate()
pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
os.write(fd, pem)
os.close(fd)
print(key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex())
"#,
        &[&key],
        "generate an Ed25519 key with cryptography",
    );
    private_mode(&key, 0o600);
    let loaded = files::read_signing_key(&key).unwrap();
    assert_eq!(hex::encode(loaded.verifying_key().as_bytes()), public.trim());
}
