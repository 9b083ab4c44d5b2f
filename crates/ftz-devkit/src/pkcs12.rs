//! PKCS#12 files of development user certificates, for importing into a browser (Chromium,
//! Firefox) or handing to a test harness (Playwright, Node.js, curl, OpenSSL 3).
//!
//! One file holds the user's certificate and private key and the zone CA's certificate. It is
//! written the way OpenSSL 3 writes one by default: certificates and key encrypted with PBES2
//! (AES-256-CBC, the key from PBKDF2-HMAC-SHA256), integrity by an HMAC-SHA256 MAC; never the
//! legacy RC2/3DES schemes that OpenSSL 3 only reads with `-legacy`.

use p12_keystore::{Certificate, KeyStore, KeyStoreEntry, PrivateKey, PrivateKeyChain};

/// The password of every PKCS#12 file `ftzctl dev init` writes. The files are development
/// credentials beside the unencrypted `.key` files they are made from (mode 0600 both): the
/// password protects nothing the directory does not, it is what browsers require to import.
pub const DEV_PASSWORD: &str = "ftz-dev";

/// PBKDF2 iterations for the encryption and the MAC (OpenSSL 3's default is 2048; ours costs a
/// few milliseconds more per file and per import).
const ITERATIONS: u32 = 10_000;

#[derive(Debug, thiserror::Error)]
#[error("PKCS#12: {0}")]
pub struct Pkcs12Error(String);

fn err(e: impl std::fmt::Display) -> Pkcs12Error {
    Pkcs12Error(e.to_string())
}

/// A PKCS#12 file (DER) with the key `key_pkcs8_der`, its certificate `cert_der` and the
/// issuing CA's certificate `ca_der`, under the name `friendly_name`, protected by `password`.
pub fn encode(
    friendly_name: &str,
    cert_der: &[u8],
    key_pkcs8_der: &[u8],
    ca_der: &[u8],
    password: &str,
) -> Result<Vec<u8>, Pkcs12Error> {
    let key = PrivateKey::from_der(key_pkcs8_der).map_err(err)?;
    let leaf = Certificate::from_der(cert_der).map_err(err)?;
    let ca = Certificate::from_der(ca_der).map_err(err)?;
    // The local key id ties the key bag to its certificate bag: the certificate's SHA-256, as
    // OpenSSL uses a digest of the certificate.
    let key_id = ftz_core::sha256(cert_der).to_vec();
    let mut store = KeyStore::new();
    store.add_entry(friendly_name, KeyStoreEntry::PrivateKeyChain(PrivateKeyChain::new(key_id, key, [leaf, ca])));
    store
        .writer(password)
        .encryption_algorithm(p12_keystore::EncryptionAlgorithm::PbeWithHmacSha256AndAes256)
        .encryption_iterations(ITERATIONS)
        .mac_algorithm(p12_keystore::MacAlgorithm::HmacSha256)
        .mac_iterations(ITERATIONS)
        .write()
        .map_err(err)
}

/// The same from the PEM files `ftz_pki` writes (a certificate, a PKCS#8 key).
pub fn encode_pem(
    friendly_name: &str,
    cert_der: &[u8],
    key_pem: &str,
    ca_der: &[u8],
    password: &str,
) -> Result<Vec<u8>, Pkcs12Error> {
    use rustls_pki_types::{PrivatePkcs8KeyDer, pem::PemObject};
    let key = PrivatePkcs8KeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| err(format!("private key: {e}")))?;
    encode(friendly_name, cert_der, key.secret_pkcs8_der(), ca_der, password)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ftz_core::{Identity, Role, ZoneId};
    use ftz_pki::issue::{Validity, ZoneCa};
    use p12_keystore::Pkcs12ImportPolicy;

    fn validity() -> Validity {
        let now = 1_760_000_000_000;
        Validity { not_before_ms: now - 3_600_000, not_after_ms: now + 86_400_000 }
    }

    #[test]
    fn a_written_file_reads_back_with_key_certificate_and_ca() {
        let zone = ZoneId::new("shanghai").expect("zone");
        let ca = ZoneCa::generate(&zone, validity()).expect("ca");
        let user = ca.issue_user(&Identity::user(zone, Role::Admin, "dev").expect("id"), validity()).expect("user");
        let der = encode_pem("shanghai admin", &user.cert_der, &user.key_pem, &ca.issued.cert_der, DEV_PASSWORD)
            .expect("encode");

        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("admin.p12");
        std::fs::write(&path, &der).expect("write");
        let back = std::fs::read(&path).expect("read");

        let store = KeyStore::from_pkcs12(&back, DEV_PASSWORD, Pkcs12ImportPolicy::Relaxed).expect("decode");
        let (alias, chain) = store.private_key_chain().expect("a key with its chain");
        assert_eq!(alias, "shanghai admin");
        let key: rustls_pki_types::PrivatePkcs8KeyDer<'_> =
            rustls_pki_types::pem::PemObject::from_pem_slice(user.key_pem.as_bytes()).expect("pem");
        assert_eq!(chain.key().as_der(), key.secret_pkcs8_der());
        let certs: Vec<&[u8]> = chain.certs().iter().map(Certificate::as_der).collect();
        assert_eq!(certs, [user.cert_der.as_slice(), ca.issued.cert_der.as_slice()]);

        assert!(KeyStore::from_pkcs12(&back, "wrong", Pkcs12ImportPolicy::Relaxed).is_err(), "the MAC holds");
    }

    #[test]
    fn the_file_uses_pbes2_aes_256_and_an_hmac_sha256_mac() {
        let zone = ZoneId::new("hainan").expect("zone");
        let ca = ZoneCa::generate(&zone, validity()).expect("ca");
        let user = ca.issue_user(&Identity::user(zone, Role::Auditor, "dev").expect("id"), validity()).expect("user");
        let der = encode_pem("hainan auditor", &user.cert_der, &user.key_pem, &ca.issued.cert_der, "pw").expect("der");
        let has = |oid: &[u8]| der.windows(oid.len()).any(|w| w == oid);
        // DER encodings of the object identifiers (tag, length, value).
        let pbes2 = [0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x05, 0x0d]; // 1.2.840.113549.1.5.13
        let aes256_cbc = [0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2a]; // 2.16.840.1.101.3.4.1.42
        let hmac_sha256 = [0x06, 0x08, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x02, 0x09]; // 1.2.840.113549.2.9
        let sha256 = [0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01]; // the MAC's digest
        let pbe_sha1_3des = [0x06, 0x0a, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x01, 0x03];
        let pbe_sha1_rc2_40 = [0x06, 0x0a, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x01, 0x06];
        assert!(has(&pbes2) && has(&aes256_cbc) && has(&hmac_sha256) && has(&sha256));
        assert!(!has(&pbe_sha1_3des) && !has(&pbe_sha1_rc2_40));
    }
}
