//! Sealed session ids of the aggregated `/mcp` (legacy era): the downstream `Mcp-Session-Id`
//! is the session itself, sealed with AES-256-GCM under `proxy.session_key`, so any replica
//! holding the key serves any request of the session with no shared store and no sticky
//! sessions.
//!
//! ```text
//!  id = "pcs1." base64url( nonce[12] | AES-256-GCM( plaintext ) | tag[16] )   AAD "portcullis/session/1"
//!  plaintext = version 1 | created (unix s, u64) | principal (16 bytes of SHA-256(issuer NUL subject))
//!              | protocol version (u8 len) | upstreams: count (u8), each server (u8 len) + upstream
//!              session id (u16 len) + the version it negotiated (u8 len)
//! ```
//!
//! The key is prepared once per config load (no derivation per request); a random 96-bit nonce
//! is drawn per session. An id that does not open (tampered, another key, truncated), is older
//! than [`MAX_AGE`], or belongs to another principal is refused, and the client gets 404 (it
//! then initializes a new session).

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};

use crate::auth::Principal;

/// How long a session id is honoured after it was made.
pub const MAX_AGE: Duration = Duration::from_secs(24 * 3600);
const PREFIX: &str = "pcs1.";
const AAD: &[u8] = b"portcullis/session/1";
const VERSION: u8 = 1;
/// Longest id accepted (a longer header is refused before base64 decoding).
const MAX_ID: usize = 8 * 1024;

/// One client's session on `/mcp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// When it was made (unix seconds).
    pub created: u64,
    /// Whose it is ([`principal_tag`]).
    pub principal: [u8; 16],
    /// The protocol version negotiated with the client.
    pub protocol: String,
    /// Each upstream in the session, in config order.
    pub upstreams: Vec<Held>,
}

/// One upstream's part of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// The server's name.
    pub server: String,
    /// Its session id there (empty for a server that runs without sessions).
    pub session: String,
    /// The protocol version it negotiated (its requests carry it in `MCP-Protocol-Version`).
    pub version: String,
}

impl Session {
    /// What the session holds for `server`, if the server is part of it.
    pub fn upstream(&self, server: &str) -> Option<&Held> {
        self.upstreams.iter().find(|h| h.server == server)
    }
}

/// Why an id was refused (all answered 404; the reason is logged).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Not an id this key sealed (tampered, another key, not ours at all).
    #[error("the session id does not authenticate")]
    Forged,
    /// Older than [`MAX_AGE`].
    #[error("the session has expired")]
    Expired,
    /// Sealed for another caller.
    #[error("the session belongs to another caller")]
    OtherPrincipal,
}

/// The 16-byte tag of a principal a session is bound to ([`Principal::tag`]).
pub fn principal_tag(p: &Principal) -> [u8; 16] {
    p.tag()
}

/// A session key, ready to seal and open.
pub struct SessionKey {
    key: LessSafeKey,
    /// Authenticates the task ids `/mcp` hands out ([`crate::mcp::tasks`]), derived from the
    /// same secret.
    task: ring::hmac::Key,
    /// Tells this key's opened sessions apart from another key's in [`OPENED`].
    generation: u64,
}

/// How many opened sessions each thread remembers.
const REMEMBERED: usize = 16;

/// Sessions opened by this thread: (key generation, id, session), most recent first.
type Opened = std::cell::RefCell<std::collections::VecDeque<(u64, Box<[u8]>, Arc<Session>)>>;

thread_local! {
    /// The sessions this thread opened last, by key generation and id: a client sends the same
    /// id with every request, and opening it again would decrypt it again. Only ids that
    /// authenticated are here; expiry and the caller are checked on every use.
    static OPENED: Opened = std::cell::RefCell::new(std::collections::VecDeque::with_capacity(REMEMBERED));
}

impl SessionKey {
    /// The configured key, else one random key for the life of this process (sessions then
    /// last only as long as the process, and replicas do not share them: logged at start).
    pub fn new(configured: Option<&[u8; 32]>) -> SessionKey {
        static PROCESS_KEY: OnceLock<[u8; 32]> = OnceLock::new();
        let bytes = configured.unwrap_or_else(|| {
            PROCESS_KEY.get_or_init(|| {
                let mut k = [0u8; 32];
                // Without randomness the key is still secret-free zeros only in theory: a
                // platform with no random source cannot run rustls either.
                let _ = getrandom::fill(&mut k);
                k
            })
        });
        let key = match UnboundKey::new(&AES_256_GCM, bytes) {
            Ok(k) => LessSafeKey::new(k),
            // 32 bytes is AES-256's key length: cannot fail.
            Err(_) => unreachable_key(),
        };
        static GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let generation = GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // A key of its own for task ids, so the one secret never serves two algorithms.
        let derive = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, bytes);
        let task_secret = ring::hmac::sign(&derive, b"portcullis/task-id/1");
        let task = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, task_secret.as_ref());
        SessionKey {
            key,
            task,
            generation,
        }
    }

    /// 16 bytes authenticating `data` as a task id this gateway (or a replica sharing its key)
    /// handed out.
    pub fn task_tag(&self, data: &[u8]) -> [u8; 16] {
        let tag = ring::hmac::sign(&self.task, data);
        let mut out = [0u8; 16];
        out.copy_from_slice(&tag.as_ref()[..16]);
        out
    }

    /// Seal `s` into a session id.
    pub fn seal(&self, s: &Session) -> Option<String> {
        let mut plain = Vec::with_capacity(64 + s.upstreams.len() * 48);
        plain.push(VERSION);
        plain.extend_from_slice(&s.created.to_be_bytes());
        plain.extend_from_slice(&s.principal);
        put8(&mut plain, s.protocol.as_bytes())?;
        plain.push(u8::try_from(s.upstreams.len()).ok()?);
        for h in &s.upstreams {
            put8(&mut plain, h.server.as_bytes())?;
            let len = u16::try_from(h.session.len()).ok()?;
            plain.extend_from_slice(&len.to_be_bytes());
            plain.extend_from_slice(h.session.as_bytes());
            put8(&mut plain, h.version.as_bytes())?;
        }
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).ok()?;
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(AAD),
                &mut plain,
            )
            .ok()?;
        let mut blob = Vec::with_capacity(NONCE_LEN + plain.len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&plain);
        Some(format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(blob)))
    }

    /// Open a session id for `principal` at `now`.
    pub fn open(&self, id: &[u8], principal: &[u8; 16], now: u64) -> Result<Arc<Session>, Refused> {
        let remembered = OPENED.with(|o| {
            let mut o = o.borrow_mut();
            let i = o
                .iter()
                .position(|(g, k, _)| *g == self.generation && **k == *id)?;
            let hit = o.remove(i)?;
            let s = hit.2.clone();
            o.push_front(hit);
            Some(s)
        });
        let s = match remembered {
            Some(s) => s,
            None => {
                let s = Arc::new(self.unseal(id)?);
                OPENED.with(|o| {
                    let mut o = o.borrow_mut();
                    if o.len() == REMEMBERED {
                        o.pop_back();
                    }
                    o.push_front((self.generation, id.into(), s.clone()));
                });
                s
            }
        };
        if now.saturating_sub(s.created) > MAX_AGE.as_secs() || s.created > now + 300 {
            return Err(Refused::Expired);
        }
        if &s.principal != principal {
            return Err(Refused::OtherPrincipal);
        }
        Ok(s)
    }

    /// Decrypt and decode an id.
    fn unseal(&self, id: &[u8]) -> Result<Session, Refused> {
        let rest = id
            .strip_prefix(PREFIX.as_bytes())
            .filter(|r| r.len() <= MAX_ID)
            .ok_or(Refused::Forged)?;
        let mut blob = URL_SAFE_NO_PAD.decode(rest).map_err(|_| Refused::Forged)?;
        if blob.len() < NONCE_LEN {
            return Err(Refused::Forged);
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&blob[..NONCE_LEN]);
        let plain = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(AAD),
                &mut blob[NONCE_LEN..],
            )
            .map_err(|_| Refused::Forged)?;
        decode(plain).ok_or(Refused::Forged)
    }
}

#[cold]
fn unreachable_key() -> LessSafeKey {
    // AES_256_GCM accepts any 32-byte key; this is never reached.
    #[allow(clippy::expect_used)]
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7u8; 32]).expect("a 32-byte AES-256 key"))
}

/// Now, in unix seconds.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn put8(out: &mut Vec<u8>, bytes: &[u8]) -> Option<()> {
    out.push(u8::try_from(bytes.len()).ok()?);
    out.extend_from_slice(bytes);
    Some(())
}

/// A reader over the plaintext.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn str8(&mut self) -> Option<String> {
        let n = usize::from(self.u8()?);
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }

    fn str16(&mut self) -> Option<String> {
        let b = self.take(2)?;
        let n = usize::from(u16::from_be_bytes([b[0], b[1]]));
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
}

fn decode(plain: &[u8]) -> Option<Session> {
    let mut c = Cursor(plain);
    if c.u8()? != VERSION {
        return None;
    }
    let created = u64::from_be_bytes(c.take(8)?.try_into().ok()?);
    let principal: [u8; 16] = c.take(16)?.try_into().ok()?;
    let protocol = c.str8()?;
    let n = c.u8()?;
    let mut upstreams = Vec::with_capacity(usize::from(n));
    for _ in 0..n {
        upstreams.push(Held {
            server: c.str8()?,
            session: c.str16()?,
            version: c.str8()?,
        });
    }
    c.0.is_empty().then_some(Session {
        created,
        principal,
        protocol,
        upstreams,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn session(principal: [u8; 16]) -> Session {
        Session {
            created: 1_000_000,
            principal,
            protocol: "2025-11-25".into(),
            upstreams: vec![
                Held {
                    server: "everything".into(),
                    session: "ps1-abc".into(),
                    version: "2025-06-18".into(),
                },
                Held {
                    server: "web".into(),
                    session: String::new(),
                    version: "2025-11-25".into(),
                },
            ],
        }
    }

    #[test]
    fn a_sealed_session_opens_for_its_principal_only() {
        let key = SessionKey::new(Some(&[1; 32]));
        let me = [3; 16];
        let s = session(me);
        let id = key.seal(&s).unwrap();
        assert!(id.starts_with(PREFIX));
        assert!(id.bytes().all(|b| (0x21..=0x7e).contains(&b)));
        assert_eq!(
            key.open(id.as_bytes(), &me, 1_000_010)
                .map(|s| (*s).clone()),
            Ok(s.clone())
        );
        assert_eq!(
            s.upstream("everything").map(|h| h.session.as_str()),
            Some("ps1-abc")
        );
        // Another caller, another key, a later time, a flipped byte, garbage: refused.
        assert_eq!(
            key.open(id.as_bytes(), &[4; 16], 1_000_010).map(|_| ()),
            Err(Refused::OtherPrincipal)
        );
        let other = SessionKey::new(Some(&[2; 32]));
        assert_eq!(
            other.open(id.as_bytes(), &me, 1_000_010).map(|_| ()),
            Err(Refused::Forged)
        );
        let late = 1_000_000 + MAX_AGE.as_secs() + 1;
        assert_eq!(
            key.open(id.as_bytes(), &me, late).map(|_| ()),
            Err(Refused::Expired)
        );
        let mut bytes = id.clone().into_bytes();
        let i = bytes.len() - 10;
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            key.open(&bytes, &me, 1_000_010).map(|_| ()),
            Err(Refused::Forged)
        );
        for junk in [&b""[..], b"pcs1.", b"pcs1.AAAA", b"ps1-x", &[0xff; 40]] {
            assert_eq!(
                key.open(junk, &me, 1_000_010).map(|_| ()),
                Err(Refused::Forged)
            );
        }
        // Two seals of one session differ (fresh nonce).
        assert_ne!(key.seal(&s), key.seal(&s));
    }

    #[test]
    fn the_process_key_is_stable() {
        let a = SessionKey::new(None);
        let b = SessionKey::new(None);
        let id = a.seal(&session([0; 16])).unwrap();
        assert!(b.open(id.as_bytes(), &[0; 16], 1_000_001).is_ok());
    }
}
