//! C2SP signed notes (c2sp.org/signed-note): Ed25519 signatures (type 0x01) and Ed25519
//! timestamped cosignatures (type 0x04, c2sp.org/tlog-cosignature), verifier keys ("vkeys").
//!
//! A note is its text (ending in a newline), a blank line, and signature lines
//! `— <name> <base64(key id || signature)>`. A verifier ignores signatures by keys it does not
//! know, rejects the whole note if a known key's signature fails, and rejects it if no known
//! key signed it.

use base64::{Engine, engine::general_purpose::STANDARD};
use ftz_core::{SigningKey, VerifyingKey};
use thiserror::Error;

/// Signature type: Ed25519 over the note text.
pub const TYPE_ED25519: u8 = 0x01;
/// Signature type: timestamped Ed25519 cosignature (c2sp.org/tlog-cosignature).
pub const TYPE_COSIGNATURE: u8 = 0x04;

/// Notes larger than this, or with more signature lines, are refused before any work.
pub const MAX_NOTE_BYTES: usize = 64 * 1024;
pub const MAX_SIGNATURES: usize = 100;

const DASH: &str = "\u{2014} ";

#[derive(Debug, Error, PartialEq, Eq)]
pub enum NoteError {
    #[error("malformed note: {0}")]
    Malformed(String),
    #[error("invalid signature for key {0}")]
    InvalidSignature(String),
    #[error("no signature by a known key")]
    Unverified,
    #[error("malformed verifier key: {0}")]
    BadKey(String),
}

fn malformed(m: impl Into<String>) -> NoteError {
    NoteError::Malformed(m.into())
}

/// Key names: non-empty, no Unicode spaces, no '+'.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

/// `SHA-256(name || 0x0A || type || public key)[:4]`, big-endian.
pub fn key_id(name: &str, sig_type: u8, public_key: &[u8]) -> u32 {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(name.as_bytes());
    ctx.update(b"\n");
    ctx.update(&[sig_type]);
    ctx.update(public_key);
    let d = ctx.finish();
    u32::from_be_bytes([d.as_ref()[0], d.as_ref()[1], d.as_ref()[2], d.as_ref()[3]])
}

/// A key that verifies notes: a name, a signature type and an Ed25519 public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verifier {
    pub name: String,
    pub sig_type: u8,
    pub key: VerifyingKey,
    pub id: u32,
}

impl Verifier {
    pub fn new(name: &str, sig_type: u8, key: VerifyingKey) -> Result<Self, NoteError> {
        if !valid_name(name) {
            return Err(NoteError::BadKey(format!("name {name:?}")));
        }
        if sig_type != TYPE_ED25519 && sig_type != TYPE_COSIGNATURE {
            return Err(NoteError::BadKey(format!("signature type {sig_type:#04x} is not supported")));
        }
        Ok(Self { id: key_id(name, sig_type, key.as_bytes()), name: name.to_string(), sig_type, key })
    }

    /// Parses `<name>+<8 hex key id>+<base64(type || public key)>`.
    pub fn from_vkey(vkey: &str) -> Result<Self, NoteError> {
        let bad = |m: &str| NoteError::BadKey(format!("{m}: {:?}", vkey.chars().take(120).collect::<String>()));
        let (name, rest) = vkey.split_once('+').ok_or_else(|| bad("no '+'"))?;
        let (hash, data) = rest.split_once('+').ok_or_else(|| bad("no key id"))?;
        if hash.len() != 8 {
            return Err(bad("key id is not 8 hex digits"));
        }
        let id = u32::from_str_radix(hash, 16).map_err(|_| bad("key id is not hex"))?;
        let raw = STANDARD.decode(data).map_err(|_| bad("key data is not base64"))?;
        let (&sig_type, pk) = raw.split_first().ok_or_else(|| bad("empty key data"))?;
        let key = VerifyingKey::from_bytes(pk).map_err(|_| bad("not a 32-byte Ed25519 key"))?;
        let v = Self::new(name, sig_type, key)?;
        if v.id != id {
            return Err(bad("key id does not match the key"));
        }
        Ok(v)
    }

    pub fn to_vkey(&self) -> String {
        let mut raw = vec![self.sig_type];
        raw.extend_from_slice(self.key.as_bytes());
        format!("{}+{:08x}+{}", self.name, self.id, STANDARD.encode(raw))
    }
}

/// One signature line of a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    pub name: String,
    pub id: u32,
    /// What follows the key id: the signature (type 0x01) or timestamp and signature (0x04).
    pub body: Vec<u8>,
}

impl NoteSignature {
    pub fn line(&self) -> String {
        let mut raw = self.id.to_be_bytes().to_vec();
        raw.extend_from_slice(&self.body);
        format!("{DASH}{} {}\n", self.name, STANDARD.encode(raw))
    }

    /// The timestamp of a cosignature (the first 8 bytes of its body).
    pub fn timestamp(&self) -> Option<u64> {
        self.body.get(..8).map(|b| u64::from_be_bytes(b.try_into().unwrap_or([0; 8])))
    }
}

/// A parsed (not yet verified) note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The text, ending in a newline, without the separating blank line.
    pub text: String,
    pub signatures: Vec<NoteSignature>,
}

impl Note {
    pub fn parse(msg: &str) -> Result<Self, NoteError> {
        if msg.len() > MAX_NOTE_BYTES {
            return Err(malformed(format!("{} bytes, more than {MAX_NOTE_BYTES}", msg.len())));
        }
        if msg.chars().any(|c| c < ' ' && c != '\n') {
            return Err(malformed("control character"));
        }
        let split = msg.rfind("\n\n").ok_or_else(|| malformed("no blank line before the signatures"))?;
        let (text, sigs) = (&msg[..split + 1], &msg[split + 2..]);
        if sigs.is_empty() || !sigs.ends_with('\n') {
            return Err(malformed("signatures must be non-empty lines ending in a newline"));
        }
        let mut signatures = Vec::new();
        for line in sigs[..sigs.len() - 1].split('\n') {
            if signatures.len() >= MAX_SIGNATURES {
                return Err(malformed(format!("more than {MAX_SIGNATURES} signatures")));
            }
            let rest =
                line.strip_prefix(DASH).ok_or_else(|| malformed("signature line does not start with an em dash"))?;
            let (name, b64) = rest.split_once(' ').ok_or_else(|| malformed("signature line has no signature"))?;
            if !valid_name(name) || b64.is_empty() {
                return Err(malformed("bad signature line"));
            }
            let raw = STANDARD.decode(b64).map_err(|_| malformed("signature is not base64"))?;
            if raw.len() < 5 {
                return Err(malformed("signature too short"));
            }
            let id = u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]);
            signatures.push(NoteSignature { name: name.to_string(), id, body: raw[4..].to_vec() });
        }
        Ok(Self { text: text.to_string(), signatures })
    }

    /// The note as text: text, blank line, signature lines.
    pub fn to_text(&self) -> String {
        let mut out = self.text.clone();
        out.push('\n');
        for s in &self.signatures {
            out.push_str(&s.line());
        }
        out
    }

    /// Verifies the signatures by `verifiers`: returns the verifiers that signed. Unknown keys
    /// are ignored; a known key's failing signature rejects the note; none verified rejects it.
    pub fn verify<'a>(&self, verifiers: &'a [Verifier]) -> Result<Vec<&'a Verifier>, NoteError> {
        let mut ok: Vec<&Verifier> = Vec::new();
        for s in &self.signatures {
            let Some(v) = verifiers.iter().find(|v| v.name == s.name && v.id == s.id) else { continue };
            if ok.iter().any(|o| std::ptr::eq(*o, v)) {
                continue;
            }
            let good = match v.sig_type {
                TYPE_ED25519 => v.key.verify(self.text.as_bytes(), &s.body),
                TYPE_COSIGNATURE => {
                    s.body.len() == 72 && {
                        let ts = s.timestamp().unwrap_or(0);
                        ts <= i64::MAX as u64 && v.key.verify(cosigned_message(ts, &self.text).as_bytes(), &s.body[8..])
                    }
                }
                _ => false,
            };
            if !good {
                return Err(NoteError::InvalidSignature(format!("{}+{:08x}", v.name, v.id)));
            }
            ok.push(v);
        }
        if ok.is_empty() { Err(NoteError::Unverified) } else { Ok(ok) }
    }

    /// Adds (or replaces) a signature line.
    pub fn push_signature(&mut self, s: NoteSignature) {
        self.signatures.retain(|o| !(o.name == s.name && o.id == s.id));
        self.signatures.push(s);
    }
}

/// The message a cosigner signs: `cosignature/v1`, `time <ts>`, then the checkpoint text.
pub fn cosigned_message(timestamp: u64, text: &str) -> String {
    format!("cosignature/v1\ntime {timestamp}\n{text}")
}

/// A key that signs notes (type 0x01) or cosigns checkpoints (type 0x04).
pub struct Signer<'a> {
    pub verifier: Verifier,
    key: &'a SigningKey,
}

impl<'a> Signer<'a> {
    pub fn new(name: &str, sig_type: u8, key: &'a SigningKey) -> Result<Self, NoteError> {
        Ok(Self { verifier: Verifier::new(name, sig_type, key.verifying_key())?, key })
    }

    /// The signature line for `text` (type 0x01).
    pub fn sign(&self, text: &str) -> NoteSignature {
        NoteSignature {
            name: self.verifier.name.clone(),
            id: self.verifier.id,
            body: self.key.sign(text.as_bytes()).to_vec(),
        }
    }

    /// The cosignature line for a checkpoint `text` at `timestamp` (type 0x04).
    pub fn cosign(&self, timestamp: u64, text: &str) -> NoteSignature {
        let mut body = timestamp.to_be_bytes().to_vec();
        body.extend_from_slice(&self.key.sign(cosigned_message(timestamp, text).as_bytes()));
        NoteSignature { name: self.verifier.name.clone(), id: self.verifier.id, body }
    }
}

impl std::fmt::Debug for Signer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("verifier", &self.verifier).finish_non_exhaustive()
    }
}

/// Signs `text` (which must end in a newline) into a note.
pub fn sign(text: &str, signer: &Signer<'_>) -> Result<String, NoteError> {
    if !text.ends_with('\n') {
        return Err(malformed("note text must end in a newline"));
    }
    Ok(Note { text: text.to_string(), signatures: vec![signer.sign(text)] }.to_text())
}

#[cfg(test)]
mod tests;
