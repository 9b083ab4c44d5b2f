//! C2SP checkpoints (c2sp.org/tlog-checkpoint) and proofs (c2sp.org/tlog-proof).

use base64::{Engine, engine::general_purpose::STANDARD};
use thiserror::Error;

use crate::merkle::Hash;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum FormatError {
    #[error("malformed checkpoint: {0}")]
    Checkpoint(String),
    #[error("malformed tlog-proof: {0}")]
    Proof(String),
}

/// The signed statement of a log's size and root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

/// The origin of a zone's audit log.
pub fn origin(zone: &str) -> String {
    format!("ftz/{zone}/audit")
}

/// Decimal with no leading zeroes (but `0`).
fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || (s.len() > 1 && s.starts_with('0')) || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

impl Checkpoint {
    /// The note text: origin, size, base64 root, each line ending in a newline.
    pub fn to_text(&self) -> String {
        format!("{}\n{}\n{}\n", self.origin, self.size, STANDARD.encode(self.root))
    }

    /// Parses a note text. Extension lines (any after the third) are refused: this project
    /// writes none, and an auditor should not have to trust unauditable lines.
    pub fn parse(text: &str) -> Result<Self, FormatError> {
        let bad = |m: &str| FormatError::Checkpoint(m.to_string());
        let body = text.strip_suffix('\n').ok_or_else(|| bad("text must end in a newline"))?;
        let lines: Vec<&str> = body.split('\n').collect();
        let [origin, size, root] = lines.as_slice() else {
            return Err(bad("expected exactly three lines: origin, tree size, root hash"));
        };
        if origin.is_empty() || origin.chars().any(|c| c.is_whitespace() || c == '+') {
            return Err(bad("origin must be non-empty, without spaces or '+'"));
        }
        let size = parse_decimal(size).ok_or_else(|| bad("tree size must be a decimal without leading zeroes"))?;
        let raw = STANDARD.decode(root).map_err(|_| bad("root hash is not base64"))?;
        let root: Hash = raw.try_into().map_err(|_| bad("root hash is not 32 bytes"))?;
        Ok(Self { origin: origin.to_string(), size, root })
    }
}

pub const PROOF_HEADER: &str = "c2sp.org/tlog-proof@v1";
/// More hashes than any tree of 2^64 leaves needs is not a proof.
const MAX_PROOF_HASHES: usize = 64;

/// An offline inclusion proof: the entry's index, its inclusion proof, and the signed
/// (cosigned) checkpoint it leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlogProof {
    pub extra: Option<Vec<u8>>,
    pub index: u64,
    pub hashes: Vec<Hash>,
    /// The checkpoint note, verbatim, with its signature lines.
    pub checkpoint: String,
}

impl TlogProof {
    pub fn to_text(&self) -> String {
        let mut out = format!("{PROOF_HEADER}\n");
        if let Some(extra) = &self.extra {
            out.push_str(&format!("extra {}\n", STANDARD.encode(extra)));
        }
        out.push_str(&format!("index {}\n", self.index));
        for h in &self.hashes {
            out.push_str(&STANDARD.encode(h));
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&self.checkpoint);
        out
    }

    pub fn parse(text: &str) -> Result<Self, FormatError> {
        let bad = |m: &str| FormatError::Proof(m.to_string());
        let rest = text
            .strip_prefix(PROOF_HEADER)
            .and_then(|r| r.strip_prefix('\n'))
            .ok_or_else(|| bad("first line must be c2sp.org/tlog-proof@v1"))?;
        let (mut line, mut rest) = rest.split_once('\n').ok_or_else(|| bad("truncated"))?;
        let mut extra = None;
        if let Some(e) = line.strip_prefix("extra ") {
            extra = Some(STANDARD.decode(e).map_err(|_| bad("extra is not base64"))?);
            (line, rest) = rest.split_once('\n').ok_or_else(|| bad("truncated"))?;
        }
        let index = line.strip_prefix("index ").and_then(parse_decimal).ok_or_else(|| bad("expected index N"))?;
        let mut hashes = Vec::new();
        loop {
            let (l, r) = rest.split_once('\n').ok_or_else(|| bad("no blank line before the checkpoint"))?;
            rest = r;
            if l.is_empty() {
                break;
            }
            if hashes.len() >= MAX_PROOF_HASHES {
                return Err(bad("too many proof hashes"));
            }
            let raw = STANDARD.decode(l).map_err(|_| bad("proof hash is not base64"))?;
            hashes.push(raw.try_into().map_err(|_| bad("proof hash is not 32 bytes"))?);
        }
        if rest.is_empty() {
            return Err(bad("no checkpoint"));
        }
        Ok(Self { extra, index, hashes, checkpoint: rest.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_round_trip_and_are_strict() {
        let c = Checkpoint { origin: origin("shanghai"), size: 20_852_163, root: [7; 32] };
        let text = c.to_text();
        assert_eq!(text, "ftz/shanghai/audit\n20852163\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n");
        assert_eq!(Checkpoint::parse(&text).unwrap(), c);
        // The spec's example parses.
        let spec = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
        assert_eq!(Checkpoint::parse(spec).unwrap().size, 20_852_163);
        for bad in [
            "ftz/x/audit\n7\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=",
            "ftz/x/audit\n07\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n",
            "ftz/x/audit\n-7\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n",
            "ftz/x/audit\n7\nBwcH\n",
            "ftz x\n7\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n",
            "ftz/x/audit\n7\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\nextension\n",
            "ftz/x/audit\n7\n",
        ] {
            assert!(Checkpoint::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(Checkpoint::parse("o\n0\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n").unwrap().size, 0);
    }

    #[test]
    fn proofs_round_trip_in_the_c2sp_layout() {
        let p = TlogProof {
            extra: None,
            index: 10,
            hashes: vec![[1; 32], [2; 32]],
            checkpoint: "cp\n7\nAQ==\n\n\u{2014} k AAAA\n".into(),
        };
        let text = p.to_text();
        assert!(text.starts_with("c2sp.org/tlog-proof@v1\nindex 10\nAQEB"));
        assert_eq!(TlogProof::parse(&text).unwrap(), p);
        let with_extra = TlogProof { extra: Some(b"x".to_vec()), ..p.clone() };
        assert_eq!(TlogProof::parse(&with_extra.to_text()).unwrap(), with_extra);
        // Go's shape for an empty proof.
        let empty = TlogProof::parse("c2sp.org/tlog-proof@v1\nindex 0\n\ncheckpoint\n").unwrap();
        assert_eq!((empty.index, empty.hashes.len(), empty.checkpoint.as_str()), (0, 0, "checkpoint\n"));
        for bad in [
            "c2sp.org/tlog-proof@v2\nindex 0\n\ncp\n",
            "c2sp.org/tlog-proof@v1\nindex 01\n\ncp\n",
            "c2sp.org/tlog-proof@v1\nindex 0\nAQ==\n\ncp\n",
            "c2sp.org/tlog-proof@v1\nindex 0\n",
            "c2sp.org/tlog-proof@v1\nindex 0\n\n",
        ] {
            assert!(TlogProof::parse(bad).is_err(), "{bad:?}");
        }
    }
}
