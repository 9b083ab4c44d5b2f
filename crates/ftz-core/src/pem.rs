//! PEM armour (RFC 7468) for key files, so private keys are text files an operator can recognise
//! and a secret scanner can find.

use base64::{Engine, engine::general_purpose::STANDARD};
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PemError {
    #[error("no PEM block labelled {0:?}")]
    Missing(String),
    #[error("PEM block {0:?} is not valid base64")]
    BadBase64(String),
}

pub fn encode(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The first block with this label.
pub fn decode(label: &str, text: &str) -> Result<Vec<u8>, PemError> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin).ok_or_else(|| PemError::Missing(label.into()))? + begin.len();
    let stop = text[start..].find(&end).ok_or_else(|| PemError::Missing(label.into()))? + start;
    let body: String = text[start..stop].chars().filter(|c| !c.is_ascii_whitespace()).collect();
    STANDARD.decode(body).map_err(|_| PemError::BadBase64(label.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let der: Vec<u8> = (0..=255).collect();
        let text = encode("PRIVATE KEY", &der);
        assert!(text.lines().all(|l| l.len() <= 64 || l.starts_with("-----")));
        assert_eq!(decode("PRIVATE KEY", &text).unwrap(), der);
        assert!(matches!(decode("CERTIFICATE", &text), Err(PemError::Missing(_))));
        assert!(decode("X", "-----BEGIN X-----\n!!!\n-----END X-----\n").is_err());
    }
}
