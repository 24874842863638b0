//! HTTP basic authentication against `basic_auth_users` (bcrypt hashes), with exporter-toolkit's
//! protections: verified credentials are cached (a scraper pays for bcrypt once, not on every
//! scrape), only one bcrypt verification runs at a time (a flood of guesses costs one core, not
//! all of them), and an unknown user costs the same bcrypt work as a wrong password (the answer's
//! timing does not tell which users exist).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use base64::Engine;
use hyper::header::HeaderValue;

/// Credentials remembered at most; when full the cache starts again (a flood of wrong guesses
/// cannot grow it, and a scraper's one entry is verified again at most once per flood).
const CACHE_SIZE: usize = 100;

#[derive(Debug, Default)]
pub struct Auth {
    /// SHA-256 of (user, stored hash, password) → whether they matched. The stored hash is part of
    /// the key, so a changed password in the file is verified afresh; no password is kept.
    cache: Mutex<HashMap<[u8; 32], bool>>,
    bcrypt: Arc<tokio::sync::Mutex<()>>,
}

impl Auth {
    /// Whether the request's `Authorization` header names a user of `users` with its password.
    pub async fn allows(
        &self,
        users: &BTreeMap<String, String>,
        header: Option<&HeaderValue>,
    ) -> bool {
        let Some((user, password)) = header.and_then(basic_credentials) else {
            return false;
        };
        // An unknown user is checked against a real user's hash, so it costs the same, and is
        // refused whatever the result.
        let (known, hash) = match users.get(&user) {
            Some(hash) => (true, hash),
            None => match users.values().next() {
                Some(hash) => (false, hash),
                None => return false,
            },
        };
        let key = cache_key(&user, hash, &password);
        if let Some(&matched) = self.cache().get(&key) {
            return known && matched;
        }
        let matched = self.verify(password, hash.clone()).await;
        let mut cache = self.cache();
        if cache.len() >= CACHE_SIZE {
            // Room is made by forgetting refusals: a flood of guesses must not push out the
            // scrapes' verified credentials and send them back into the bcrypt queue.
            cache.retain(|_, matched| *matched);
            if cache.len() >= CACHE_SIZE {
                cache.clear();
            }
        }
        cache.insert(key, matched);
        known && matched
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], bool>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One bcrypt at a time, off the async workers. The lock moves into the blocking task, so a
    /// client that hangs up mid-check does not let a second verification start beside it.
    async fn verify(&self, password: Vec<u8>, hash: String) -> bool {
        let turn = self.bcrypt.clone().lock_owned().await;
        tokio::task::spawn_blocking(move || {
            let matched = bcrypt::verify(&password, &hash).unwrap_or(false);
            drop(turn);
            matched
        })
        .await
        .unwrap_or(false)
    }
}

/// User and password from `Basic base64(user:password)`.
fn basic_credentials(header: &HeaderValue) -> Option<(String, Vec<u8>)> {
    let value = header.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    let (user, password) = decoded.split_at(colon);
    let password = password.get(1..).unwrap_or_default().to_vec();
    Some((String::from_utf8(user.to_vec()).ok()?, password))
}

fn cache_key(user: &str, hash: &str, password: &[u8]) -> [u8; 32] {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    for part in [user.as_bytes(), hash.as_bytes(), password] {
        // Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
        context.update(&(part.len() as u64).to_le_bytes());
        context.update(part);
    }
    let mut key = [0; 32];
    key.copy_from_slice(context.finish().as_ref());
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(user: &str, password: &str) -> HeaderValue {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        HeaderValue::from_str(&format!("Basic {encoded}")).unwrap()
    }

    #[test]
    fn right_wrong_unknown_and_missing_credentials() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let users = BTreeMap::from([(
            "prometheus".to_string(),
            bcrypt::hash("s3cret:with colon", 4).unwrap(),
        )]);
        let auth = Auth::default();
        runtime.block_on(async {
            let right = header("prometheus", "s3cret:with colon");
            assert!(auth.allows(&users, Some(&right)).await);
            assert!(auth.allows(&users, Some(&right)).await, "from the cache");
            assert!(
                !auth
                    .allows(&users, Some(&header("prometheus", "nope")))
                    .await
            );
            assert!(
                !auth
                    .allows(&users, Some(&header("nobody", "s3cret:with colon")))
                    .await
            );
            assert!(!auth.allows(&users, None).await);
            let bearer = HeaderValue::from_static("Bearer abc");
            assert!(!auth.allows(&users, Some(&bearer)).await);
            assert!(!auth.allows(&BTreeMap::new(), Some(&right)).await);
        });
        assert_eq!(auth.cache().len(), 3, "right, wrong and unknown are cached");
    }

    #[test]
    fn a_flood_of_guesses_keeps_the_verified_credentials_cached() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let hash = bcrypt::hash("right", 4).unwrap();
        let users = BTreeMap::from([("prometheus".to_string(), hash.clone())]);
        let auth = Auth::default();
        runtime.block_on(async {
            assert!(
                auth.allows(&users, Some(&header("prometheus", "right")))
                    .await
            );
            for guess in 0..CACHE_SIZE * 2 {
                let wrong = header("prometheus", &format!("guess{guess}"));
                assert!(!auth.allows(&users, Some(&wrong)).await);
            }
        });
        let key = cache_key("prometheus", &hash, b"right");
        assert_eq!(
            auth.cache().get(&key),
            Some(&true),
            "the scrape's credentials survive the flood, so it skips the bcrypt queue"
        );
        assert!(auth.cache().len() <= CACHE_SIZE);
    }
}
