//! Field transforms the provider applies before rows leave: keep, drop, keyed pseudonyms,
//! generalisation.

use ring::hmac;

/// The pseudonym key for one ordered zone pair, derived from the provider's secret: the same
/// consumer always sees the same pseudonym for a value (it can link rows), other consumers see
/// other ones, and nobody without the secret can reverse it.
pub fn pair_key(secret: &[u8; 32], provider: &str, consumer: &str) -> [u8; 32] {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let tag = hmac::sign(&key, format!("ftz-pseudonym-v1\0{provider}\0{consumer}").as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

/// `p:` and 32 hex digits of HMAC-SHA256(pair key, value).
pub fn pseudonymise(pair_key: &[u8; 32], value: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, pair_key);
    let tag = hmac::sign(&key, value.as_bytes());
    format!("p:{}", hex::encode(&tag.as_ref()[..16]))
}

/// A generalisation, parsed once when the policy is installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generalisation {
    /// Periods to their year.
    Year,
    /// Periods to their quarter.
    Quarter,
    /// Codes to their first N characters.
    Prefix(usize),
    /// Amounts to `[a, a+N)` ranges.
    Range(i64),
}

/// In words, for `policy show` and `policy explain`.
impl std::fmt::Display for Generalisation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Generalisation::Year => write!(f, "generalised to the year"),
            Generalisation::Quarter => write!(f, "generalised to the quarter"),
            Generalisation::Prefix(n) => write!(f, "generalised to its first {n} characters"),
            Generalisation::Range(n) => write!(f, "generalised to ranges of {n}"),
        }
    }
}

impl Generalisation {
    pub fn parse(field: &str, p: &str) -> Result<Self, String> {
        let g = match p.split_once(':') {
            None if p == "year" => Generalisation::Year,
            None if p == "quarter" => Generalisation::Quarter,
            Some(("prefix", n)) => Generalisation::Prefix(
                n.parse().ok().filter(|n| (1..=16).contains(n)).ok_or("prefix:N needs N from 1 to 16")?,
            ),
            Some(("range", n)) => {
                Generalisation::Range(n.parse().ok().filter(|n| *n >= 1).ok_or("range:N needs N of at least 1")?)
            }
            _ => return Err(format!("{p:?} is not year, quarter, prefix:N or range:N")),
        };
        let fits = match g {
            Generalisation::Year | Generalisation::Quarter => field == "period",
            Generalisation::Prefix(_) => matches!(field, "industry_code" | "region" | "enterprise_uscc"),
            Generalisation::Range(_) => crate::rows::is_metric(field),
        };
        if fits { Ok(g) } else { Err(format!("{p:?} does not apply to field {field}")) }
    }

    pub fn apply(self, value: &str) -> String {
        match self {
            Generalisation::Year => value.get(..4).unwrap_or(value).to_string(),
            Generalisation::Quarter => match value.len() {
                7 if value.as_bytes()[5] == b'Q' => value.to_string(),
                7 => match value[5..].parse::<u8>() {
                    Ok(m @ 1..=12) => format!("{}-Q{}", &value[..4], (m - 1) / 3 + 1),
                    _ => value.to_string(),
                },
                _ => value.to_string(),
            },
            Generalisation::Prefix(n) => value.chars().take(n).collect(),
            Generalisation::Range(n) => match value.parse::<i64>() {
                Ok(v) => {
                    let lo = v.div_euclid(n) * n;
                    format!("[{lo}, {})", lo.saturating_add(n))
                }
                Err(_) => value.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudonyms_link_within_a_pair_only() {
        let secret = [7u8; 32];
        let ab = pair_key(&secret, "shanghai", "hainan");
        let ac = pair_key(&secret, "shanghai", "guangdong");
        let x = pseudonymise(&ab, "91310115MA1H7XQ200");
        assert_eq!(x, pseudonymise(&ab, "91310115MA1H7XQ200"));
        assert_ne!(x, pseudonymise(&ac, "91310115MA1H7XQ200"));
        assert_ne!(x, pseudonymise(&ab, "91310115MA1H7XQ201"));
        assert!(x.starts_with("p:") && x.len() == 34);
        assert!(!x.contains("91310115"));
    }

    #[test]
    fn generalisations() {
        let g = |f, p| Generalisation::parse(f, p).unwrap();
        assert_eq!(g("period", "year").apply("2026-Q3"), "2026");
        assert_eq!(g("period", "quarter").apply("2026-08"), "2026-Q3");
        assert_eq!(g("period", "quarter").apply("2026-Q1"), "2026-Q1");
        assert_eq!(g("industry_code", "prefix:3").apply("C3841"), "C38");
        assert_eq!(g("output_value", "range:1000000").apply("12345678"), "[12000000, 13000000)");
        assert!(Generalisation::parse("period", "range:10").is_err());
        assert!(Generalisation::parse("region", "year").is_err());
        assert!(Generalisation::parse("region", "prefix:0").is_err());
        assert!(Generalisation::parse("region", "shuffle").is_err());
    }
}
