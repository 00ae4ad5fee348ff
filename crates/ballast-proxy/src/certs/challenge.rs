//! ACME HTTP-01 challenges the proxy answers on plain HTTP: set through the
//! admin API (`challenge`), answered at `/.well-known/acme-challenge/<token>`
//! whatever the host name.
//!
//! They live in memory only: a challenge matters for the minute a CA takes
//! to check it, so a restart losing them costs at most a retried order. So
//! that forgotten ones cannot pile up, there are at most
//! [`MAX_CHALLENGES`] and each expires [`CHALLENGE_TTL`] after it was set.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The path under which challenges are answered.
pub const CHALLENGE_PATH: &str = "/.well-known/acme-challenge/";

/// Challenges answered at most at once.
pub const MAX_CHALLENGES: usize = 1000;

/// How long a challenge is answered after it was set.
pub const CHALLENGE_TTL: Duration = Duration::from_secs(3600);

/// The challenges answered now.
#[derive(Debug, Default)]
pub struct Challenges {
    /// Token → key authorization and when it stops being answered.
    tokens: Mutex<HashMap<String, (String, Instant)>>,
}

impl Challenges {
    /// Answers `token` with `key_authorization` (replacing an earlier
    /// answer), or stops answering it when `None`.
    pub fn set(&self, token: &str, key_authorization: Option<&str>) -> Result<(), String> {
        if !is_token(token) {
            return Err(format!(
                "challenge token `{token}` must be 1–256 letters, digits, `-` or `_` \
                 (base64url, as ACME gives it); nothing was changed"
            ));
        }
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        tokens.retain(|_, (_, until)| *until > now);
        let Some(answer) = key_authorization else {
            tokens.remove(token);
            return Ok(());
        };
        let answer_ok = answer.len() <= 1024
            && answer.starts_with(token)
            && answer[token.len()..].starts_with('.')
            && is_token(&answer[token.len() + 1..]);
        if !answer_ok {
            return Err(format!(
                "the key authorization for challenge token `{token}` must be \
                 `{token}.<account key thumbprint>` (RFC 8555, 8.1); nothing was changed"
            ));
        }
        if !tokens.contains_key(token) && tokens.len() >= MAX_CHALLENGES {
            return Err(format!(
                "the proxy already answers {MAX_CHALLENGES} ACME challenges; hint: clear \
                 finished ones (`challenge` without key_authorization) or wait for them to \
                 expire, an hour after they were set"
            ));
        }
        tokens.insert(token.to_string(), (answer.to_string(), now + CHALLENGE_TTL));
        Ok(())
    }

    /// The key authorization for `token`, while it is answered.
    pub fn answer(&self, token: &str) -> Option<String> {
        let tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        tokens
            .get(token)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(answer, _)| answer.clone())
    }
}

/// An ACME token: base64url without padding.
fn is_token(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= 256
        && token
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn challenges_are_answered_until_cleared_or_expired() {
        let c = Challenges::default();
        c.set("tok-1", Some("tok-1.thumb")).unwrap();
        assert_eq!(c.answer("tok-1").as_deref(), Some("tok-1.thumb"));
        assert_eq!(c.answer("tok-2"), None);
        c.set("tok-1", None).unwrap();
        assert_eq!(c.answer("tok-1"), None);

        c.set("tok-1", Some("tok-1.thumb")).unwrap();
        tokio::time::advance(CHALLENGE_TTL).await;
        assert_eq!(c.answer("tok-1"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn bad_tokens_and_too_many_challenges_are_refused() {
        let c = Challenges::default();
        let err = c.set("../etc", Some("x")).unwrap_err();
        assert!(err.starts_with("challenge token `../etc` must be"), "{err}");
        let err = c.set("tok", Some("other.thumb")).unwrap_err();
        assert!(
            err.contains("must be `tok.<account key thumbprint>`"),
            "{err}"
        );
        for i in 0..MAX_CHALLENGES {
            c.set(&format!("t{i}"), Some(&format!("t{i}.k"))).unwrap();
        }
        let err = c.set("one-more", Some("one-more.k")).unwrap_err();
        assert!(
            err.contains("already answers 1000 ACME challenges"),
            "{err}"
        );
        // Replacing one is not one more; expired ones make room.
        c.set("t0", Some("t0.k2")).unwrap();
        tokio::time::advance(CHALLENGE_TTL).await;
        c.set("one-more", Some("one-more.k")).unwrap();
    }
}
