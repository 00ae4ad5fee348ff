//! The key of the secrets' digest: 32 random bytes per service, kept on each
//! host at `/var/lib/ballast/<service>/digest.key` (mode 0600, root only).
//! A container's config digest (see [`crate::spec::RoleSpec::digest`])
//! takes each secret only as HMAC-SHA256(key, NAME, NUL, VALUE), so its
//! label cannot be checked against guessed values by anyone without the
//! key; and whoever can read the key is root on the host, who can read the
//! container's secrets anyway.
//!
//! Each host has its own key: digests are compared host by host, so a key
//! never has to travel from one host to another. The first deploy to a host
//! of a service with secrets makes the key (under the deploy lock); later
//! deploys read it back.
//! `ballast plan` only reads: on a host without a key, a role with secrets
//! shows as replaced, which the deploy then does (see
//! [`crate::spec::PENDING_DIGEST`]).
//!
//! The key leaves its host only into this process's memory: it is never
//! printed or logged (its `Debug` hides it, and its text is registered with
//! [`crate::redact`] all the same), and it travels on stdin, never in a
//! process's arguments.

use std::collections::HashMap;
use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::{Error, Result};
use crate::fleet::Fleet;
use crate::host::Host;

/// The key file's name in the service's state directory.
pub const FILE_NAME: &str = "digest.key";

/// Bytes of a key.
const LEN: usize = 32;

/// One service's digest key on one host.
#[derive(Clone, PartialEq, Eq)]
pub struct DigestKey([u8; LEN]);

/// Digest keys by host name.
pub type HostKeys = HashMap<String, DigestKey>;

impl fmt::Debug for DigestKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DigestKey([hidden])")
    }
}

impl DigestKey {
    /// A new key from the operating system's random source.
    pub fn generate() -> Result<DigestKey> {
        let mut bytes = [0u8; LEN];
        getrandom::fill(&mut bytes).map_err(|e| {
            Error::failed(
                "make the digest key",
                format_args!("the system gave no random bytes: {e}"),
            )
        })?;
        Ok(DigestKey(bytes))
    }

    /// A key from bytes (tests, and keys read back).
    pub fn from_bytes(bytes: [u8; LEN]) -> DigestKey {
        DigestKey(bytes)
    }

    /// The key as the file holds it: 64 lowercase hex digits.
    fn to_text(&self) -> String {
        hex(&self.0)
    }

    /// The key written as [`DigestKey::to_text`] writes it (surrounding
    /// whitespace allowed); `None` for anything else.
    fn from_text(text: &str) -> Option<DigestKey> {
        let text = text.trim();
        if text.len() != 2 * LEN || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let mut bytes = [0u8; LEN];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(DigestKey(bytes))
    }

    /// HMAC-SHA256 of the secret `name` with its `value`, in hex (the whole
    /// 256 bits). The NUL between them keeps `A`+`BC` apart from `AB`+`C`
    /// (a variable name never holds a NUL).
    pub fn mac(&self, name: &str, value: &str) -> String {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        mac.update(name.as_bytes());
        mac.update(&[0]);
        mac.update(value.as_bytes());
        hex(&mac.finalize().into_bytes())
    }
}

/// Where the key of `service` lives on a host.
pub fn path(service: &str) -> String {
    format!("{}/{service}/{FILE_NAME}", crate::state::STATE_ROOT)
}

/// The key of `service` on `host`, if it has one. Reads only.
pub async fn read(host: &Host, service: &str) -> Result<Option<DigestKey>> {
    let Some(text) = crate::state::read_private(host, service, FILE_NAME).await? else {
        return Ok(None);
    };
    // Hidden from every output, should anything ever show it.
    crate::redact::register([text.trim()]);
    match DigestKey::from_text(&text) {
        Some(key) => Ok(Some(key)),
        // Never quote the content: it may be a key written another way.
        None => Err(Error::failed(
            "read the digest key",
            format_args!("{} is not 64 hex digits", path(service)),
        )
        .on(host.name())
        .hint(format!(
            "remove {} on the host: the next deploy makes a new key (and replaces the containers that have secrets, once)",
            path(service)
        ))),
    }
}

/// The key of `service` on `host`, made first if the host has none. Call
/// only under the deploy lock; a key made meanwhile by another wins.
pub async fn ensure(host: &Host, service: &str) -> Result<DigestKey> {
    match read(host, service).await? {
        Some(key) => Ok(key),
        None => make(host, service).await,
    }
}

/// Makes the key of `service` on `host` (one made meanwhile is kept) and
/// returns the key the host holds.
async fn make(host: &Host, service: &str) -> Result<DigestKey> {
    let key = DigestKey::generate()?;
    let mut text = key.to_text();
    crate::redact::register([text.as_str()]);
    text.push('\n');
    crate::state::create_private(host, service, FILE_NAME, text.as_bytes()).await?;
    read(host, service).await?.ok_or_else(|| {
        Error::failed(
            "make the digest key",
            format_args!("{} is still missing after writing it", path(service)),
        )
        .on(host.name())
        .hint(format!(
            "ballast needs to write {} on the host: log in as root",
            crate::state::STATE_ROOT
        ))
    })
}

/// The keys of `service` on every connected host of `fleet`, and the hosts
/// that had none: when `make`, those get one now (under the deploy lock
/// only); otherwise they are left out of the keys. The first host that
/// fails (in name order) fails the whole.
pub async fn fleet_keys(
    fleet: &Fleet,
    service: &str,
    make: bool,
) -> Result<(HostKeys, Vec<String>)> {
    let answers = fleet
        .each(|h| async move {
            match read(h, service).await? {
                Some(key) => Ok((Some(key), false)),
                None if make => self::make(h, service).await.map(|k| (Some(k), true)),
                None => Ok((None, true)),
            }
        })
        .await;
    let mut keys = HostKeys::new();
    let mut lacked = Vec::new();
    for (name, answer) in answers {
        let (key, missing): (Option<DigestKey>, bool) = answer?;
        if missing {
            lacked.push(name.clone());
        }
        if let Some(key) = key {
            keys.insert(name, key);
        }
    }
    Ok((keys, lacked))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

    #[test]
    fn the_key_reads_back_as_written_and_nothing_else_reads() {
        let key = DigestKey::generate().unwrap();
        assert_ne!(key, DigestKey::generate().unwrap());
        let text = format!("{}\n", key.to_text());
        assert_eq!(text.len(), 65);
        assert_eq!(DigestKey::from_text(&text), Some(key.clone()));
        for bad in ["", "abc", &text[..63], &format!("{}zz", &text[..62])] {
            assert_eq!(DigestKey::from_text(bad), None, "{bad:?}");
        }
        assert_eq!(format!("{key:?}"), "DigestKey([hidden])");
        assert_eq!(path("shop"), "/var/lib/ballast/shop/digest.key");
    }

    #[test]
    fn the_mac_is_keyed_whole_and_hides_the_value() {
        let a = DigestKey::from_bytes([1; LEN]);
        let b = DigestKey::from_bytes([2; LEN]);
        let mac = a.mac("DB_PASSWORD", "hunter2");
        assert_eq!(mac.len(), 64, "all 256 bits");
        assert_eq!(mac, a.mac("DB_PASSWORD", "hunter2"));
        assert_ne!(mac, b.mac("DB_PASSWORD", "hunter2"), "another key");
        assert_ne!(mac, a.mac("DB_PASSWORD", "hunter3"), "another value");
        assert_ne!(mac, a.mac("DB_PASSWORDh", "unter2"), "name and value apart");
        assert!(!mac.contains("hunter2"));
        assert_ne!(mac, hex(&Sha256::digest("hunter2")), "not a bare hash");
        // The standard construction over NAME, NUL, VALUE, written out here
        // from SHA-256 (RFC 2104) to pin what the digest is made of.
        let pad = |byte: u8| -> Vec<u8> {
            let mut block = [0u8; 64];
            block[..LEN].copy_from_slice(&[1; LEN]);
            block.iter().map(|b| b ^ byte).collect()
        };
        let inner = Sha256::digest([pad(0x36), b"DB_PASSWORD\0hunter2".to_vec()].concat());
        let outer = Sha256::digest([pad(0x5c), inner.to_vec()].concat());
        assert_eq!(mac, hex(&outer));
    }
}
