//! TLS 1.3 session tickets that outlive a coordinator restart.
//!
//! After a restart the whole fleet reconnects at once, and each full
//! handshake costs the coordinator a P-256 signature and two verifications
//! (BENCHMARKS.md, coordinator scale). A host holding a ticket from this
//! coordinator resumes instead: no certificates, no signatures, still a
//! fresh X25519 exchange (rustls resumes only with `psk_dhe_ke`, so a
//! session's traffic keeps forward secrecy).
//!
//! The ticket keys are on disk (`pki/session-ticket.keys`, mode 0600, next
//! to the CA key) so that tickets issued before a restart still open after
//! it. They are as powerful as the CA key: whoever holds them can make a
//! ticket for any identity. A resumed session carries the identity of the
//! certificate of its first handshake, which is checked again after the
//! handshake like any other (expiry here, revocation and roles per call).
//!
//! Keys roll by time, as rustls asks ("lifetime must be implemented by key
//! rolling and erasure"): a key seals tickets for one `lifetime`, then
//! only opens them for one more, then is erased from the file. So a ticket
//! opens for at least `lifetime` and at most twice that.

use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

/// The key file's name in the PKI directory.
pub const TICKET_KEYS: &str = "session-ticket.keys";

const ID_LEN: usize = 8;
const SECRET_LEN: usize = 32;
/// A key dated this far ahead of the clock is not trusted (the clock went
/// back, or the file was edited).
const FUTURE_SLACK_SECS: u64 = 300;

/// Reading, checking or storing the ticket keys failed.
#[derive(Debug, thiserror::Error)]
pub enum TicketError {
    #[error("reading session-ticket keys from {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing session-ticket keys to {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a session-ticket key file: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("the system's random number generator failed")]
    Random,
}

#[derive(Serialize, Deserialize)]
struct KeyFile {
    /// The fingerprint of the CA these keys serve: after `ca init` made a
    /// new CA, tickets from the old one must not resume (a resumed
    /// session's chain is not checked again).
    ca: String,
    /// Newest first.
    keys: Vec<StoredKey>,
}

#[derive(Serialize, Deserialize)]
struct StoredKey {
    /// Unix seconds.
    created: u64,
    /// Hex.
    secret: String,
}

struct Key {
    created: u64,
    id: [u8; ID_LEN],
    secret: [u8; SECRET_LEN],
    aead: LessSafeKey,
}

impl Key {
    fn new(created: u64, secret: [u8; SECRET_LEN]) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, &secret);
        let mut id = [0; ID_LEN];
        id.copy_from_slice(&digest.as_ref()[..ID_LEN]);
        let aead =
            LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &secret).expect("32-byte key"));
        Self {
            created,
            id,
            secret,
            aead,
        }
    }
}

/// The coordinator's ticket keys: rustls's [`ProducesTickets`] over keys
/// kept in a file.
///
/// [`ProducesTickets`]: rustls::server::ProducesTickets
pub struct Ticketer {
    path: PathBuf,
    ca: String,
    lifetime: u64,
    /// Newest first; at most two.
    keys: RwLock<Vec<Key>>,
    rng: SystemRandom,
}

impl std::fmt::Debug for Ticketer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secrets.
        f.debug_struct("Ticketer")
            .field("path", &self.path)
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Ticketer {
    /// Loads the keys at `path` and rolls them if due, writing the file
    /// when anything changed. A file that cannot be read as keys is
    /// replaced, with a warning: it holds nothing but tickets' keys, and
    /// losing them costs one full handshake per host. `lifetime` is at
    /// least a minute (the config checks it).
    /// Keys made for another CA (`ca_fingerprint`) are dropped. The file
    /// must not be readable by group or others, like the CA key.
    pub fn open(
        path: &Path,
        lifetime: Duration,
        ca_fingerprint: &str,
    ) -> Result<Self, TicketError> {
        Self::open_at(path, lifetime, ca_fingerprint, unix_now())
    }

    fn open_at(
        path: &Path,
        lifetime: Duration,
        ca_fingerprint: &str,
        now: u64,
    ) -> Result<Self, TicketError> {
        let t = Ticketer {
            path: path.to_path_buf(),
            ca: ca_fingerprint.to_string(),
            lifetime: lifetime.as_secs().max(1),
            keys: RwLock::new(Vec::new()),
            rng: SystemRandom::new(),
        };
        let loaded = match read_keys(path) {
            Ok((ca, keys)) if ca == ca_fingerprint => keys,
            // No file yet (the first start): nothing to say.
            Ok((ca, keys)) if ca.is_empty() && keys.is_empty() => keys,
            Ok(_) => {
                tracing::info!(path = %path.display(), "session-ticket keys were made for another CA; starting new ones");
                Vec::new()
            }
            Err(e @ TicketError::Invalid { .. }) => {
                tracing::warn!(error = %e, "replacing the session-ticket keys: hosts holding tickets make a full handshake once");
                Vec::new()
            }
            Err(e) => return Err(e),
        };
        let stored = loaded.len();
        let kept: Vec<Key> = loaded
            .into_iter()
            .filter(|k| t.opens_at(k, now))
            .take(2)
            .collect();
        let changed = kept.len() != stored;
        if changed {
            t.save(&kept)?;
        }
        *t.keys.write().expect("not poisoned") = kept;
        t.roll_at(now)?;
        Ok(t)
    }

    /// Starts a new sealing key when the current one has sealed for a
    /// whole lifetime, and erases the one before it. Returns whether it
    /// rolled. Called at start and every minute. The file is written
    /// before the new key is used, so a failed write leaves everything as
    /// it was and the next call tries again.
    pub fn roll_if_due(&self) -> Result<bool, TicketError> {
        self.roll_at(unix_now())
    }

    fn roll_at(&self, now: u64) -> Result<bool, TicketError> {
        {
            let keys = self.keys.read().expect("not poisoned");
            if keys.first().is_some_and(|k| self.seals_at(k, now)) {
                return Ok(false);
            }
        }
        let mut secret = [0u8; SECRET_LEN];
        self.rng
            .fill(&mut secret)
            .map_err(|_| TicketError::Random)?;
        let mut keys = self.keys.write().expect("not poisoned");
        let mut next = vec![Key::new(now, secret)];
        next.extend(
            keys.iter()
                .filter(|k| self.opens_at(k, now))
                .take(1)
                .map(|k| Key::new(k.created, k.secret)),
        );
        self.save(&next)?;
        *keys = next;
        Ok(true)
    }

    fn seals_at(&self, k: &Key, now: u64) -> bool {
        k.created <= now + FUTURE_SLACK_SECS && now < k.created.saturating_add(self.lifetime)
    }

    fn opens_at(&self, k: &Key, now: u64) -> bool {
        k.created <= now + FUTURE_SLACK_SECS && now < k.created.saturating_add(2 * self.lifetime)
    }

    fn save(&self, keys: &[Key]) -> Result<(), TicketError> {
        let file = KeyFile {
            ca: self.ca.clone(),
            keys: keys
                .iter()
                .map(|k| StoredKey {
                    created: k.created,
                    secret: hex::encode(k.secret),
                })
                .collect(),
        };
        let body = serde_json::to_vec_pretty(&file).expect("serializable");
        cutover_common::fsutil::write_atomic(&self.path, &body, cutover_common::fsutil::SECRET_MODE)
            .map_err(|source| TicketError::Write {
                path: self.path.clone(),
                source,
            })
    }

    fn encrypt_at(&self, plain: &[u8], now: u64) -> Option<Vec<u8>> {
        let keys = self.keys.read().ok()?;
        // A key past its sealing time seals nothing, even if rolling
        // failed: no ticket is sent, and the connection goes on.
        let key = keys.first().filter(|k| self.seals_at(k, now))?;
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).ok()?;
        let mut out = Vec::with_capacity(ID_LEN + NONCE_LEN + plain.len() + 16);
        out.extend_from_slice(&key.id);
        out.extend_from_slice(&nonce);
        let mut sealed = plain.to_vec();
        key.aead
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(key.id),
                &mut sealed,
            )
            .ok()?;
        out.extend_from_slice(&sealed);
        Some(out)
    }

    fn decrypt_at(&self, ticket: &[u8], now: u64) -> Option<Vec<u8>> {
        if ticket.len() < ID_LEN + NONCE_LEN {
            return None;
        }
        let (id, rest) = ticket.split_at(ID_LEN);
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let keys = self.keys.read().ok()?;
        let key = keys.iter().find(|k| k.id == id && self.opens_at(k, now))?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = sealed.to_vec();
        let plain = key
            .aead
            .open_in_place(nonce, Aad::from(key.id), &mut buf)
            .ok()?;
        let n = plain.len();
        buf.truncate(n);
        Some(buf)
    }
}

impl rustls::server::ProducesTickets for Ticketer {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        u32::try_from(self.lifetime).unwrap_or(u32::MAX)
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.encrypt_at(plain, unix_now())
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        self.decrypt_at(cipher, unix_now())
    }
}

/// The CA fingerprint and keys stored at `path`, newest first (none when
/// there is no file).
fn read_keys(path: &Path) -> Result<(String, Vec<Key>), TicketError> {
    let body = match cutover_common::fsutil::read_secret(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok((String::new(), Vec::new()));
        }
        Err(source) => {
            return Err(TicketError::Read {
                path: path.into(),
                source,
            });
        }
    };
    let invalid = |reason: String| TicketError::Invalid {
        path: path.into(),
        reason,
    };
    let file: KeyFile = serde_json::from_slice(&body).map_err(|e| invalid(e.to_string()))?;
    let mut keys = Vec::with_capacity(file.keys.len());
    for (i, k) in file.keys.iter().enumerate() {
        let bytes =
            hex::decode(&k.secret).map_err(|e| invalid(format!("keys[{i}].secret: {e}")))?;
        let secret: [u8; SECRET_LEN] = bytes.try_into().map_err(|b: Vec<u8>| {
            invalid(format!(
                "keys[{i}].secret: {} bytes, expected {SECRET_LEN}",
                b.len()
            ))
        })?;
        keys.push(Key::new(k.created, secret));
    }
    keys.sort_by_key(|k| std::cmp::Reverse(k.created));
    Ok((file.ca, keys))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const HOUR: Duration = Duration::from_secs(3600);
    const T0: u64 = 1_800_000_000;
    const CA: &str = "ca-fingerprint";

    #[test]
    fn a_ticket_opens_after_a_restart_and_not_after_two_lifetimes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(TICKET_KEYS);
        let t = Ticketer::open_at(&path, HOUR, CA, T0).unwrap();
        let ticket = t.encrypt_at(b"session state", T0 + 10).unwrap();
        assert_eq!(
            t.decrypt_at(&ticket, T0 + 20).as_deref(),
            Some(&b"session state"[..])
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the keys are secret");

        // A restart half an hour later: the same key, the ticket opens.
        let again = Ticketer::open_at(&path, HOUR, CA, T0 + 1800).unwrap();
        assert_eq!(
            again.decrypt_at(&ticket, T0 + 1800).as_deref(),
            Some(&b"session state"[..])
        );

        // After one lifetime a new key seals; the old one still opens.
        assert!(again.roll_at(T0 + 3600).unwrap());
        let newer = again.encrypt_at(b"newer", T0 + 3600).unwrap();
        assert_ne!(newer[..ID_LEN], ticket[..ID_LEN]);
        assert!(again.decrypt_at(&ticket, T0 + 3601).is_some());
        assert!(again.decrypt_at(&newer, T0 + 3601).is_some());

        // Two lifetimes after its key was made, the ticket no longer opens,
        // and after the next roll its key is gone from the file.
        assert!(again.decrypt_at(&ticket, T0 + 7200).is_none());
        assert!(again.roll_at(T0 + 7200).unwrap());
        let body = std::fs::read_to_string(&path).unwrap();
        let file: KeyFile = serde_json::from_str(&body).unwrap();
        assert_eq!(file.keys.len(), 2);
        assert_eq!(file.ca, CA);
        assert!(file.keys.iter().all(|k| k.created >= T0 + 3600), "{body}");
    }

    #[test]
    fn a_forged_or_damaged_ticket_opens_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let t = Ticketer::open_at(&dir.path().join(TICKET_KEYS), HOUR, CA, T0).unwrap();
        let ticket = t.encrypt_at(b"state", T0).unwrap();
        for i in 0..ticket.len() {
            let mut bad = ticket.clone();
            bad[i] ^= 1;
            assert!(t.decrypt_at(&bad, T0).is_none(), "byte {i} flipped");
        }
        assert!(t.decrypt_at(&ticket[..ticket.len() - 1], T0).is_none());
        assert!(t.decrypt_at(&[], T0).is_none());
        let other = Ticketer::open_at(&dir.path().join("other"), HOUR, CA, T0).unwrap();
        assert!(other.decrypt_at(&ticket, T0).is_none(), "another key");
    }

    #[test]
    fn a_key_past_its_sealing_time_seals_nothing_even_if_rolling_failed() {
        let dir = tempfile::tempdir().unwrap();
        let t = Ticketer::open_at(&dir.path().join(TICKET_KEYS), HOUR, CA, T0).unwrap();
        assert!(t.encrypt_at(b"state", T0 + 3599).is_some());
        assert!(t.encrypt_at(b"state", T0 + 3600).is_none());
    }

    #[test]
    fn a_damaged_key_file_is_replaced_and_an_unreadable_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(TICKET_KEYS);
        std::fs::write(
            &path,
            "{\"ca\":\"x\",\"keys\":[{\"created\":1,\"secret\":\"abcd\"}]}",
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = read_keys(&path).err().expect("a damaged file").to_string();
        assert!(
            err.contains("keys[0].secret: 2 bytes, expected 32"),
            "{err}"
        );
        assert!(err.contains(TICKET_KEYS), "{err}");
        let t = Ticketer::open_at(&path, HOUR, CA, T0).unwrap();
        assert!(t.encrypt_at(b"x", T0).is_some());
        assert_eq!(read_keys(&path).unwrap().1.len(), 1);

        // Readable by others: refused, like the CA key, and left alone.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let before = std::fs::read(&path).unwrap();
        let err = Ticketer::open_at(&path, HOUR, CA, T0).unwrap_err();
        assert!(matches!(err, TicketError::Read { .. }), "{err}");
        assert!(
            cutover_common::error_chain(&err).contains("chmod 600"),
            "{err}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), before);

        let dir_in_the_way = dir.path().join("a-directory");
        std::fs::create_dir(&dir_in_the_way).unwrap();
        let err = Ticketer::open_at(&dir_in_the_way, HOUR, CA, T0).unwrap_err();
        assert!(matches!(err, TicketError::Read { .. }), "{err}");
    }

    #[test]
    fn a_roll_that_cannot_write_its_file_changes_nothing_and_is_tried_again() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("pki");
        std::fs::create_dir(&sub).unwrap();
        let t = Ticketer::open_at(&sub.join(TICKET_KEYS), HOUR, CA, T0).unwrap();
        let ticket = t.encrypt_at(b"x", T0).unwrap();
        std::fs::remove_dir_all(&sub).unwrap();
        assert!(matches!(
            t.roll_at(T0 + 3600),
            Err(TicketError::Write { .. })
        ));
        // No unsaved key seals (its tickets would not survive a restart);
        // the old one still opens.
        assert!(t.encrypt_at(b"x", T0 + 3600).is_none());
        assert!(t.decrypt_at(&ticket, T0 + 3600).is_some());
        std::fs::create_dir(&sub).unwrap();
        assert!(t.roll_at(T0 + 3660).unwrap());
        assert!(t.encrypt_at(b"x", T0 + 3660).is_some());
        assert_eq!(read_keys(&sub.join(TICKET_KEYS)).unwrap().1.len(), 2);
    }

    #[test]
    fn keys_made_for_another_ca_open_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(TICKET_KEYS);
        let old = Ticketer::open_at(&path, HOUR, CA, T0).unwrap();
        let ticket = old.encrypt_at(b"x", T0).unwrap();
        let new_ca = Ticketer::open_at(&path, HOUR, "another CA", T0 + 1).unwrap();
        assert!(new_ca.decrypt_at(&ticket, T0 + 1).is_none());
        assert!(new_ca.encrypt_at(b"x", T0 + 1).is_some());
    }

    #[test]
    fn a_key_dated_in_the_future_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(TICKET_KEYS);
        let ahead = Ticketer::open_at(&path, HOUR, CA, T0 + 86_400).unwrap();
        let ticket = ahead.encrypt_at(b"x", T0 + 86_400).unwrap();
        // The clock is a day behind the file.
        let t = Ticketer::open_at(&path, HOUR, CA, T0).unwrap();
        assert!(t.decrypt_at(&ticket, T0).is_none());
        assert!(t.encrypt_at(b"x", T0).is_some());
    }
}
