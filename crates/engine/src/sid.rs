//! Session and socket ids: 20 characters of URL-safe base64 from a CSPRNG.

use base64::Engine as _;
use rand::RngCore as _;

/// Length of every id this server generates.
pub const SID_LEN: usize = 20;

/// A session id, also used for Socket.IO socket ids.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sid([u8; SID_LEN]);

impl Sid {
    /// A fresh random id (15 bytes from the OS-seeded CSPRNG, base64url).
    pub fn random() -> Self {
        let mut raw = [0u8; 15];
        rand::rng().fill_bytes(&mut raw);
        let mut out = [0u8; SID_LEN];
        // 15 bytes always encode to exactly 20 base64 characters without padding.
        let written = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode_slice(raw, &mut out)
            .unwrap_or(0);
        debug_assert_eq!(written, SID_LEN);
        Self(out)
    }

    /// Parses a client-supplied id; anything but 20 base64url characters is refused, so hostile
    /// values (`__proto__`, empty, huge, `../`) never reach a lookup.
    pub fn parse(s: &str) -> Option<Self> {
        let bytes = s.as_bytes();
        if bytes.len() != SID_LEN
            || !bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
        {
            return None;
        }
        let mut out = [0u8; SID_LEN];
        out.copy_from_slice(bytes);
        Some(Self(out))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        // Only ASCII bytes are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl std::fmt::Display for Sid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for Sid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sid({})", self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ids_are_valid_and_distinct() {
        let a = Sid::random();
        let b = Sid::random();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), SID_LEN);
        assert_eq!(Sid::parse(a.as_str()), Some(a));
    }

    #[test]
    fn hostile_ids_are_refused() {
        for bad in [
            "",
            "__proto__",
            "constructor",
            "../../../../../../etc",
            "%00%00%00%00%00%00%0",
            "aaaaaaaaaaaaaaaaaaa=",
            &"a".repeat(10_000),
        ] {
            assert_eq!(Sid::parse(bad), None, "{bad:?}");
        }
    }
}
