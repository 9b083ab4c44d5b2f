//! Signed documents on disk (registries, agreements, policies, negative lists): one protobuf
//! `Envelope` per file, read, written, and co-signed by each authority on its own machine.

use std::path::Path;

use anyhow::{Context, Result};
use ftz_core::envelope;
use ftz_proto::Envelope;
use prost::Message;
use serde_json::json;

use crate::output::{Format, emit};

pub fn read(path: &Path) -> Result<Envelope> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Envelope::decode(bytes.as_slice())
        .with_context(|| format!("{} is not a signed document (protobuf Envelope)", path.display()))
}

pub fn write(path: &Path, env: &Envelope) -> Result<()> {
    std::fs::write(path, env.encode_to_vec()).with_context(|| format!("cannot write {}", path.display()))
}

/// Adds (or replaces) the signature of the Ed25519 key in `key` to the document in `file`, after
/// `check` accepted the document, and writes it to `out` (default: in place).
pub fn sign(
    file: &Path,
    key: &Path,
    out: Option<&Path>,
    check: impl Fn(&Envelope) -> Result<()>,
    fmt: Format,
) -> Result<()> {
    let mut env = read(file)?;
    check(&env).with_context(|| format!("{} is not a valid document of its kind", file.display()))?;
    let key = ftz_pki::files::read_signing_key(key)?;
    envelope::add_signature(&mut env, &key);
    let dest = out.unwrap_or(file);
    write(dest, &env)?;
    emit(
        fmt,
        || format!("signed {} with key {} ({} signatures now)\n", dest.display(), key.key_id(), env.signatures.len()),
        || json!({"file": dest, "key_id": key.key_id().to_string(), "signatures": env.signatures.len()}),
    );
    Ok(())
}
