//! Cache keys: fixed 32-byte digests, so that no raw token is ever a key and every entry
//! costs the same.

use aws_lc_rs::{digest, hmac, rand::SystemRandom};

/// A cache key: HMAC-SHA256 or SHA-256 output.
pub(crate) type Key = [u8; 32];

/// Turns bearer tokens into cache keys without keeping them: HMAC-SHA256 under a key
/// drawn at startup, so keys mean nothing outside this process.
pub(crate) struct TokenHasher {
    key: hmac::Key,
}

impl TokenHasher {
    /// A hasher with a fresh random key.
    pub(crate) fn random() -> Result<Self, aws_lc_rs::error::Unspecified> {
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &SystemRandom::new())?;
        Ok(Self { key })
    }

    /// The cache key for a token.
    pub(crate) fn key(&self, token: &[u8]) -> Key {
        to_key(hmac::sign(&self.key, token).as_ref())
    }
}

/// A SHA-256 over length-prefixed fields, so ("ab","c") and ("a","bc") differ.
pub(crate) fn digest_fields<'a>(fields: impl IntoIterator<Item = &'a [u8]>) -> Key {
    let mut context = digest::Context::new(&digest::SHA256);
    for field in fields {
        context.update(&(field.len() as u64).to_le_bytes());
        context.update(field);
    }
    to_key(context.finish().as_ref())
}

fn to_key(bytes: &[u8]) -> Key {
    let mut key = [0u8; 32];
    key.copy_from_slice(&bytes[..32]);
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_keys_are_keyed_and_stable() {
        let hasher = TokenHasher::random().unwrap();
        assert_eq!(hasher.key(b"token"), hasher.key(b"token"));
        assert_ne!(hasher.key(b"token"), hasher.key(b"token2"));
        let other = TokenHasher::random().unwrap();
        assert_ne!(hasher.key(b"token"), other.key(b"token"), "per-process key");
        let plain = digest::digest(&digest::SHA256, b"token");
        assert_ne!(hasher.key(b"token").as_slice(), plain.as_ref());
    }

    #[test]
    fn field_digests_are_unambiguous() {
        let a = digest_fields([b"ab".as_slice(), b"c"]);
        let b = digest_fields([b"a".as_slice(), b"bc"]);
        assert_ne!(a, b);
    }
}
