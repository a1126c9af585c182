//! Short-lived signed URLs for chunk objects served by the API (embedded mode).
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::keys::SecretKey;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("the signed URL has expired")]
    Expired,
    #[error("the URL signature is not valid")]
    Invalid,
}

#[derive(Debug, Clone)]
pub struct UrlSigner {
    secret: SecretKey,
}

impl UrlSigner {
    pub fn new(secret: SecretKey) -> Self {
        Self { secret }
    }

    fn mac(&self, resource: &str, expires: u64) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.secret.as_bytes())
            .unwrap_or_else(|_| unreachable!());
        mac.update(resource.as_bytes());
        mac.update(b"\n");
        mac.update(expires.to_string().as_bytes());
        mac
    }

    /// Hex signature over `resource` valid until `expires` (unix seconds).
    pub fn sign(&self, resource: &str, expires: u64) -> String {
        hex::encode(self.mac(resource, expires).finalize().into_bytes())
    }

    pub fn verify(
        &self,
        resource: &str,
        expires: u64,
        signature: &str,
        now: u64,
    ) -> Result<(), SignatureError> {
        let sig = hex::decode(signature).map_err(|_| SignatureError::Invalid)?;
        self.mac(resource, expires)
            .verify_slice(&sig)
            .map_err(|_| SignatureError::Invalid)?;
        if now > expires {
            return Err(SignatureError::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> UrlSigner {
        UrlSigner::new(SecretKey::from_bytes(&[3; 32]).unwrap())
    }

    #[test]
    fn a_signature_is_valid_until_it_expires() {
        let s = signer();
        let sig = s.sign("chunks/ab", 100);
        assert_eq!(s.verify("chunks/ab", 100, &sig, 100), Ok(()));
        assert_eq!(
            s.verify("chunks/ab", 100, &sig, 101),
            Err(SignatureError::Expired)
        );
    }

    #[test]
    fn a_signature_covers_the_resource_and_the_expiry() {
        let s = signer();
        let sig = s.sign("chunks/ab", 100);
        assert_eq!(
            s.verify("chunks/cd", 100, &sig, 0),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            s.verify("chunks/ab", 999, &sig, 0),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            s.verify("chunks/ab", 100, "nothex", 0),
            Err(SignatureError::Invalid)
        );
    }
}
