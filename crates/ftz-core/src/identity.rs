//! Who is calling: a zone id plus either "the zone's node" or "a user of the zone with a role".
//!
//! Identities travel in X.509 certificates as one SAN URI, `ftz://<zone>/node` or
//! `ftz://<zone>/<role>/<name>`, in the spirit of SPIFFE ids: one machine-readable name, no
//! parsing of free-text subject fields.

use std::{fmt, str::FromStr};

use thiserror::Error;

/// A zone id: `[a-z][a-z0-9-]{0,31}`, e.g. `shanghai`. Validated on construction, so holding a
/// `ZoneId` means holding a well-formed one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ZoneId(String);

#[derive(Debug, Error, PartialEq, Eq)]
pub enum IdentityError {
    #[error("zone id {0:?} is not of the form [a-z][a-z0-9-]{{0,31}}")]
    BadZoneId(String),
    #[error("role {0:?} is not one of issuer, enterprise, auditor, admin")]
    BadRole(String),
    #[error("user name {0:?} is not of the form [A-Za-z0-9._-]{{1,64}}")]
    BadUserName(String),
    #[error("identity URI {0:?} is not ftz://<zone>/node or ftz://<zone>/<role>/<name>")]
    BadUri(String),
}

impl ZoneId {
    pub const MAX_LEN: usize = 32;

    pub fn new(s: impl Into<String>) -> Result<Self, IdentityError> {
        let s = s.into();
        let b = s.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= Self::MAX_LEN
            && b[0].is_ascii_lowercase()
            && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-');
        if ok { Ok(Self(s)) } else { Err(IdentityError::BadZoneId(s)) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ZoneId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

impl FromStr for ZoneId {
    type Err = IdentityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

/// What a zone's own user may do; carried in the user's client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Issues and revokes certifications and inspection results.
    Issuer,
    /// Verifies credentials and results.
    Enterprise,
    /// Reads the audit log.
    Auditor,
    /// Runs the node: registry, agreements, policies.
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Issuer, Role::Enterprise, Role::Auditor, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Issuer => "issuer",
            Role::Enterprise => "enterprise",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for Role {
    type Err = IdentityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL.into_iter().find(|r| r.as_str() == s).ok_or_else(|| IdentityError::BadRole(s.to_string()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Principal {
    /// The zone's node (server, and client of other zones' nodes).
    Node,
    /// A person or system of the zone acting in one role.
    User { role: Role, name: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    pub zone: ZoneId,
    pub principal: Principal,
}

const SCHEME: &str = "ftz://";

impl Identity {
    pub fn node(zone: ZoneId) -> Self {
        Self { zone, principal: Principal::Node }
    }

    pub fn user(zone: ZoneId, role: Role, name: &str) -> Result<Self, IdentityError> {
        check_user_name(name)?;
        Ok(Self { zone, principal: Principal::User { role, name: name.to_string() } })
    }

    pub fn is_node(&self) -> bool {
        self.principal == Principal::Node
    }

    pub fn role(&self) -> Option<Role> {
        match &self.principal {
            Principal::Node => None,
            Principal::User { role, .. } => Some(*role),
        }
    }

    /// The SAN URI form.
    pub fn to_uri(&self) -> String {
        self.to_string()
    }

    pub fn parse_uri(uri: &str) -> Result<Self, IdentityError> {
        let bad = || IdentityError::BadUri(uri.chars().take(200).collect());
        let rest = uri.strip_prefix(SCHEME).ok_or_else(bad)?;
        let parts: Vec<&str> = rest.split('/').collect();
        match parts.as_slice() {
            [zone, "node"] => Ok(Identity::node(ZoneId::new(*zone)?)),
            [zone, role, name] => Identity::user(ZoneId::new(*zone)?, role.parse()?, name),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.principal {
            Principal::Node => write!(f, "{SCHEME}{}/node", self.zone),
            Principal::User { role, name } => write!(f, "{SCHEME}{}/{role}/{name}", self.zone),
        }
    }
}

fn check_user_name(name: &str) -> Result<(), IdentityError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'));
    if ok { Ok(()) } else { Err(IdentityError::BadUserName(name.to_string())) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_ids() {
        for ok in ["a", "shanghai", "hainan-2", "z0123456789012345678901234567890"] {
            assert!(ZoneId::new(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Shanghai", "1zone", "-a", "sh anghai", "a/b", "z01234567890123456789012345678901"] {
            assert!(ZoneId::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn uris_round_trip() {
        let zone = ZoneId::new("hainan").unwrap();
        let node = Identity::node(zone.clone());
        assert_eq!(node.to_uri(), "ftz://hainan/node");
        assert_eq!(Identity::parse_uri("ftz://hainan/node").unwrap(), node);

        let alice = Identity::user(zone, Role::Auditor, "alice").unwrap();
        assert_eq!(alice.to_uri(), "ftz://hainan/auditor/alice");
        assert_eq!(Identity::parse_uri(&alice.to_uri()).unwrap(), alice);
        assert_eq!(alice.role(), Some(Role::Auditor));
        assert!(!alice.is_node());
    }

    #[test]
    fn bad_uris_are_refused() {
        for bad in [
            "https://hainan/node",
            "ftz://hainan",
            "ftz://hainan/",
            "ftz://hainan/nodes",
            "ftz://hainan/root/alice",
            "ftz://hainan/admin/",
            "ftz://hainan/admin/al ice",
            "ftz://hainan/admin/alice/extra",
            "ftz://HAINAN/node",
        ] {
            assert!(Identity::parse_uri(bad).is_err(), "{bad}");
        }
    }
}
