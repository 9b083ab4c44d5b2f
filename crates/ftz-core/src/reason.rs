//! Stable reason codes. Every refusal a node makes carries exactly one of these (in a
//! `google.rpc.ErrorInfo`, domain [`DOMAIN`]) so scripts and auditors can act on the code while
//! humans read the message. Codes are never renamed or reused; docs/reason-codes.md lists them.

use std::fmt;

/// The `ErrorInfo.domain` every ftz reason code is reported under.
pub const DOMAIN: &str = "ftz.exchange";

macro_rules! reasons {
    ($( $(#[doc = $doc:literal])* $variant:ident => $code:literal ),+ $(,)?) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Reason {
            $( $(#[doc = $doc])* $variant, )+
        }

        impl Reason {
            pub const ALL: &'static [Reason] = &[ $( Reason::$variant, )+ ];

            /// The stable SCREAMING_SNAKE code.
            pub fn as_str(self) -> &'static str {
                match self { $( Reason::$variant => $code, )+ }
            }

            pub fn from_code(code: &str) -> Option<Reason> {
                match code { $( $code => Some(Reason::$variant), )+ _ => None }
            }

            /// What the code means, for people (the variant's documentation).
            pub fn description(self) -> String {
                let lines: &[&str] = match self { $( Reason::$variant => &[$($doc),*], )+ };
                lines.iter().map(|l| l.trim()).collect::<Vec<_>>().join(" ")
            }
        }
    };
}

reasons! {
    // --- transport identity (mTLS) ---
    /// The caller presented no client certificate.
    NoClientCertificate => "NO_CLIENT_CERTIFICATE",
    /// The certificate carries no `ftz://` identity, or a malformed one.
    BadCertificateIdentity => "BAD_CERTIFICATE_IDENTITY",
    /// The certificate names a zone the registry does not list.
    UnknownZone => "UNKNOWN_ZONE",
    /// The certificate does not chain to the CA the registry lists for the zone it names.
    UntrustedCertificate => "UNTRUSTED_CERTIFICATE",
    /// The zone's authority withdrew this certificate (its list of revoked user certificates).
    CertificateRevoked => "CERTIFICATE_REVOKED",
    /// A request names a zone the registry does not list.
    NoSuchZone => "NO_SUCH_ZONE",
    /// The zone named by the certificate is outside its validity in the registry.
    ZoneNotValid => "ZONE_NOT_VALID",
    /// A user certificate called the node-to-node service.
    NotAPeer => "NOT_A_PEER",
    /// A node certificate called a service meant for a zone's own users.
    NotAUser => "NOT_A_USER",
    /// A user of another zone called a service meant for this zone's own users.
    ForeignUser => "FOREIGN_USER",
    /// The caller's role may not call this method.
    RoleNotAllowed => "ROLE_NOT_ALLOWED",
    /// No rule allows anyone to call this method (deny by default).
    MethodNotAllowed => "METHOD_NOT_ALLOWED",

    // --- signed envelopes ---
    /// The envelope's payload type is not the one expected here.
    WrongPayloadType => "WRONG_PAYLOAD_TYPE",
    /// A signature is malformed (wrong key id or signature length).
    MalformedSignature => "MALFORMED_SIGNATURE",
    /// The same key signed twice.
    DuplicateSignature => "DUPLICATE_SIGNATURE",
    /// A signature by a known key does not verify.
    BadSignature => "BAD_SIGNATURE",
    /// No signature is by a key trusted for this purpose.
    NoTrustedSignature => "NO_TRUSTED_SIGNATURE",
    /// The payload does not decode, or a field is out of range.
    MalformedPayload => "MALFORMED_PAYLOAD",

    // --- federation registry ---
    /// The registry document breaks a structural rule.
    RegistryMalformed => "REGISTRY_MALFORMED",
    /// Fewer distinct zone authorities signed it than the quorum requires.
    RegistryUnderQuorum => "REGISTRY_UNDER_QUORUM",
    /// Its version is not newer than the installed one.
    RegistryOlderVersion => "REGISTRY_OLDER_VERSION",
    /// Same version as the installed registry, different content.
    RegistryVersionConflict => "REGISTRY_VERSION_CONFLICT",
    /// Its validity period has ended.
    RegistryExpired => "REGISTRY_EXPIRED",
    /// Its validity period has not begun.
    RegistryNotYetValid => "REGISTRY_NOT_YET_VALID",
    /// It belongs to another federation.
    RegistryWrongFederation => "REGISTRY_WRONG_FEDERATION",
    /// First install: not signed by the trust anchor the operator configured.
    RegistryAnchorMismatch => "REGISTRY_ANCHOR_MISMATCH",
    /// It no longer lists this node's own zone, or no longer its keys or CA.
    RegistryOmitsOwnZone => "REGISTRY_OMITS_OWN_ZONE",
    /// The node holds no registry yet.
    NoRegistry => "NO_REGISTRY",

    // --- peer exchange ---
    /// A signed message names a zone other than the caller's certificate.
    ZoneMismatch => "ZONE_MISMATCH",
    /// A request's time is outside the accepted window.
    StaleRequest => "STALE_REQUEST",
    /// A peer zone's node could not be reached.
    PeerUnavailable => "PEER_UNAVAILABLE",
    /// A peer zone's node refused this node's call (its reason is in the message).
    PeerRefused => "PEER_REFUSED",
    /// The request could not be decoded (not protobuf, a text field that is not UTF-8, a
    /// field of the wrong type); the message says where decoding stopped.
    MalformedRequest => "MALFORMED_REQUEST",
    /// A peer answered with something that does not verify.
    PeerAnswerInvalid => "PEER_ANSWER_INVALID",
    /// The node holds too many undelivered messages to other zones to take another; retry
    /// when `ftzctl admin outbox` shows fewer.
    OutboxFull => "OUTBOX_FULL",

    // --- records: issuing ---
    /// A record's field breaks a rule (the message names it).
    RecordMalformed => "RECORD_MALFORMED",
    /// The same record id was issued before with other content.
    RecordConflict => "RECORD_CONFLICT",
    /// No record with this id is known here.
    RecordNotFound => "RECORD_NOT_FOUND",
    /// The record was not issued by this zone (only the issuing zone revokes or pushes it).
    RecordNotOwn => "RECORD_NOT_OWN",
    /// This node has no issuing key configured.
    NoIssuingKey => "NO_ISSUING_KEY",
    /// This node's issuing key is not listed in the registry as a valid issuing key of its zone.
    IssuingKeyNotListed => "ISSUING_KEY_NOT_LISTED",

    // --- records: verification verdicts ---
    /// The record names an issuing zone the registry does not list.
    IssuingZoneUnknown => "ISSUING_ZONE_UNKNOWN",
    /// The record is signed by a key the registry does not list as an issuing key of its zone.
    IssuerKeyUnknown => "ISSUER_KEY_UNKNOWN",
    /// The issuing key is listed, but was not valid when the record says it was signed.
    IssuerKeyNotValid => "ISSUER_KEY_NOT_VALID",
    /// The record's validity has ended.
    RecordExpired => "RECORD_EXPIRED",
    /// The issuing zone revoked the record.
    RecordRevoked => "RECORD_REVOKED",
    /// The newest status known is older than the maximum status age: unknown, never valid.
    StatusStale => "STATUS_STALE",
    /// No status statement from the issuing zone could be obtained.
    StatusUnavailable => "STATUS_UNAVAILABLE",
    /// A status statement does not verify or does not match the record.
    StatusInvalid => "STATUS_INVALID",
    /// No recognition agreement exists from the issuing zone to the recognising zone.
    NoAgreement => "NO_AGREEMENT",
    /// Agreements exist, but none covers this record's type, scope, body or scheme.
    NotCovered => "NOT_COVERED",
    /// An agreement would cover the record, but it has expired (or has not begun).
    AgreementExpired => "AGREEMENT_EXPIRED",

    // --- recognition agreements ---
    /// The agreement document breaks a structural rule.
    AgreementMalformed => "AGREEMENT_MALFORMED",
    /// Not signed by the authorities of both zones.
    AgreementUnderSigned => "AGREEMENT_UNDER_SIGNED",
    /// It names a zone the registry does not list.
    AgreementUnknownZone => "AGREEMENT_UNKNOWN_ZONE",
    /// Neither of its zones is this node's zone.
    AgreementNotForThisZone => "AGREEMENT_NOT_FOR_THIS_ZONE",
    /// A newer or equal version of this agreement is installed.
    AgreementOlderVersion => "AGREEMENT_OLDER_VERSION",

    // --- exchange policies ---
    /// No exchange policy lets this data go from the provider to the consumer.
    NoPolicy => "NO_POLICY",
    /// The policy is outside its validity period.
    PolicyExpired => "POLICY_EXPIRED",
    /// A party to the policy revoked it.
    PolicyRevoked => "POLICY_REVOKED",
    /// The stated purpose is not one the policy allows.
    PurposeNotAllowed => "PURPOSE_NOT_ALLOWED",
    /// The provider zone's export negative list forbids this class or field.
    NegativeList => "NEGATIVE_LIST",
    /// A field asked for does not leave under the policy.
    FieldNotAllowed => "FIELD_NOT_ALLOWED",
    /// Every group of the answer had fewer enterprises than the policy's minimum.
    GroupTooSmall => "GROUP_TOO_SMALL",
    /// The consumer's privacy budget for this policy and period is spent.
    BudgetExhausted => "BUDGET_EXHAUSTED",
    /// More requests than the policy's rate allows; retry after the hint.
    RateLimited => "RATE_LIMITED",
    /// Data received from another zone may not be passed on to this zone.
    OnwardTransfer => "ONWARD_TRANSFER",
    /// The policy document breaks a structural rule.
    PolicyMalformed => "POLICY_MALFORMED",
    /// Not signed by the authorities of the provider and of every consumer.
    PolicyUnderSigned => "POLICY_UNDER_SIGNED",
    /// It names a zone the registry does not list.
    PolicyUnknownZone => "POLICY_UNKNOWN_ZONE",
    /// This node's zone is not a party to it.
    PolicyNotForThisZone => "POLICY_NOT_FOR_THIS_ZONE",
    /// A newer or equal version is installed.
    PolicyOlderVersion => "POLICY_OLDER_VERSION",
    /// The version does not follow the installed one, or names another predecessor digest.
    PolicyChainBroken => "POLICY_CHAIN_BROKEN",
    /// An industry data row breaks a rule (the message names the line and field).
    RowInvalid => "ROW_INVALID",

    // --- audit log ---
    /// A checkpoint (signed note) does not parse or verify.
    CheckpointInvalid => "CHECKPOINT_INVALID",
    /// The witness holds this log at another size than the caller assumed (it says which).
    WitnessConflict => "WITNESS_CONFLICT",
    /// Two validly signed checkpoints of a log cannot both be true; the evidence is kept.
    Equivocation => "EQUIVOCATION",
    /// A transfer intent or receipt does not verify, or does not match its payload.
    TransferInvalid => "TRANSFER_INVALID",
    /// No audit log entry at this index (or the size asked for is beyond the log).
    EntryNotFound => "ENTRY_NOT_FOUND",
    /// This node was restored from a backup and its audit log may be behind what the other
    /// zones' witnesses hold (or they have not all answered yet): it appends nothing and signs no
    /// checkpoint until that is resolved (`docs/operations.md`, "Back up and restore"). Reads
    /// keep working.
    LogBehindWitnesses => "LOG_BEHIND_WITNESSES",

    // --- offline bundles ---
    /// The bundle does not verify (its signature, or a part inside it).
    BundleInvalid => "BUNDLE_INVALID",
    /// The bundle's registry is not signed by the trust anchor the verifier gave.
    RegistryNotAnchored => "REGISTRY_NOT_ANCHORED",

    // --- general ---
    /// A required field is missing or out of range.
    InvalidArgument => "INVALID_ARGUMENT",
    /// The node failed internally; nothing was stored.
    Internal => "INTERNAL",
    /// The node's store failed; nothing was acknowledged.
    StoreFailure => "STORE_FAILURE",
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error that refuses a request for one stable reason. Each layer's own error type says its
/// reason here, so that the one mapping to wire statuses (`ftz-client`) can take any of them
/// without knowing the layer (the store, the policy engine, the registry rules, ...).
pub trait Refusal: fmt::Display {
    fn refusal_reason(&self) -> Reason;

    /// What the caller is told. The error's own text unless that would reveal the node's
    /// internals (a store failure says only that the store failed).
    fn public_message(&self) -> String {
        self.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_are_unique_and_round_trip() {
        let mut seen = HashSet::new();
        for r in Reason::ALL {
            assert!(seen.insert(r.as_str()), "duplicate code {r}");
            assert_eq!(Reason::from_code(r.as_str()), Some(*r));
            assert!(r.as_str().chars().all(|c| c.is_ascii_uppercase() || c == '_'), "{r} is not SCREAMING_SNAKE");
        }
        assert_eq!(Reason::from_code("NOPE"), None);
    }
}
