//! Bearer tokens from files: one token per line (blank lines and `#` comments skipped),
//! several at once so that a new one can be rolled out before the old one is removed.
//! Three files, each optional: ingest tokens (the gRPC and OTLP/HTTP listeners), read
//! tokens (the JSON API, the Prometheus API, `/metrics`) and admin tokens (the admin
//! endpoints; an admin token also reads). A file is read again every
//! `auth.reload_interval`. Tokens are compared in constant time and never logged.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine;
use subtle::ConstantTimeEq;
use tracing::{info, warn};

use crate::Error;
use crate::config::AuthConfig;
use crate::security_metrics::SecurityMetrics;

/// What a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Sending telemetry (gRPC, OTLP/HTTP).
    Ingest,
    /// Reading figures (JSON API, Prometheus API, `/metrics`).
    Read,
    /// The admin endpoints.
    Admin,
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// No token came with it (HTTP 401, gRPC `UNAUTHENTICATED`).
    Missing,
    /// The token is none of the listener's (401, `UNAUTHENTICATED`).
    Invalid,
    /// A valid token of the wrong kind: a read token on an admin endpoint (403,
    /// `PERMISSION_DENIED`).
    Forbidden,
}

impl Denied {
    /// The `reason` label of `meshscope_auth_failures_total`.
    pub fn reason(self) -> &'static str {
        match self {
            Denied::Missing => "missing",
            Denied::Invalid => "invalid",
            Denied::Forbidden => "forbidden",
        }
    }
}

/// One token file and the tokens last read from it.
struct TokenFile {
    kind: &'static str,
    path: PathBuf,
    /// The file's bytes as last read, and the tokens in them.
    current: RwLock<(Vec<u8>, Vec<Vec<u8>>)>,
}

fn parse(bytes: &[u8]) -> Vec<Vec<u8>> {
    bytes
        .split(|b| *b == b'\n')
        .map(|l| l.trim_ascii())
        .filter(|l| !l.is_empty() && !l.starts_with(b"#"))
        .map(<[u8]>::to_vec)
        .collect()
}

/// The first token in a token file, for a client inside this process (the demo's
/// simulated traffic); `None` when the file holds none.
pub fn first_in_file(path: &Path) -> Result<Option<String>, Error> {
    let bytes = read("the", path)?;
    Ok(parse(&bytes)
        .into_iter()
        .next()
        .map(|t| String::from_utf8_lossy(&t).into_owned()))
}

/// The example manifests' placeholders (`change-me-…`) are public: say so, loudly.
fn warn_placeholders(kind: &str, path: &Path, tokens: &[Vec<u8>]) {
    if tokens.iter().any(|t| t.starts_with(b"change-me")) {
        warn!(file = %path.display(), "the {kind} token file holds an example placeholder token (change-me…), which anyone can read in meshscope's repository: replace it");
    }
}

fn read(kind: &str, path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| Error::Tokens(format!("{kind} tokens {}: {e}", path.display())))
}

impl TokenFile {
    fn load(kind: &'static str, path: &Path) -> Result<TokenFile, Error> {
        let bytes = read(kind, path)?;
        let tokens = parse(&bytes);
        if tokens.is_empty() {
            warn!(file = %path.display(), "the {kind} token file holds no token: every request needing one is refused");
        }
        warn_placeholders(kind, path, &tokens);
        Ok(TokenFile {
            kind,
            path: path.to_path_buf(),
            current: RwLock::new((bytes, tokens)),
        })
    }

    /// Whether `presented` is one of the tokens, in time independent of which one (or
    /// of how much of it matches).
    fn holds(&self, presented: &[u8]) -> bool {
        let current = self.current.read().unwrap_or_else(|e| e.into_inner());
        let mut found = subtle::Choice::from(0);
        for token in &current.1 {
            found |= token.as_slice().ct_eq(presented);
        }
        found.into()
    }

    fn reload(&self) {
        match read(self.kind, &self.path) {
            Ok(bytes) => {
                let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
                if current.0 != bytes {
                    let tokens = parse(&bytes);
                    info!(file = %self.path.display(), tokens = tokens.len(), "{} tokens re-read", self.kind);
                    warn_placeholders(self.kind, &self.path, &tokens);
                    *current = (bytes, tokens);
                }
            }
            // A removed file revokes its tokens: nothing it held is valid any more.
            Err(Error::Tokens(e)) if !self.path.exists() => {
                let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
                if !current.1.is_empty() {
                    warn!(error = %e, "the {} token file is gone: its tokens are revoked", self.kind);
                    *current = (Vec::new(), Vec::new());
                }
            }
            Err(e) => warn!(error = %e, "keeping the {} tokens read before", self.kind),
        }
    }
}

/// The three token files. Cheap to clone.
#[derive(Clone, Default)]
pub struct Tokens {
    inner: Arc<Files>,
}

#[derive(Default)]
struct Files {
    ingest: Option<TokenFile>,
    read: Option<TokenFile>,
    admin: Option<TokenFile>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the tokens: only which files are in use.
        let path = |t: &Option<TokenFile>| t.as_ref().map(|t| t.path.display().to_string());
        f.debug_struct("Tokens")
            .field("ingest", &path(&self.inner.ingest))
            .field("read", &path(&self.inner.read))
            .field("admin", &path(&self.inner.admin))
            .finish()
    }
}

impl Tokens {
    /// Reads the files `config` names; an unreadable file is an error naming it.
    pub fn load(config: &AuthConfig) -> Result<Tokens, Error> {
        let file = |kind, path: &Option<PathBuf>| {
            path.as_deref()
                .map(|p| TokenFile::load(kind, p))
                .transpose()
        };
        Ok(Tokens {
            inner: Arc::new(Files {
                ingest: file("ingest", &config.ingest_tokens_file)?,
                read: file("read", &config.read_tokens_file)?,
                admin: file("admin", &config.admin_tokens_file)?,
            }),
        })
    }

    /// Whether ingest needs a token.
    pub fn guards_ingest(&self) -> bool {
        self.inner.ingest.is_some()
    }

    /// Whether the read routes (JSON API, Prometheus API, `/metrics`) need a token.
    pub fn guards_reads(&self) -> bool {
        self.inner.read.is_some()
    }

    /// Whether any API route needs a token.
    pub fn guards_api(&self) -> bool {
        self.inner.read.is_some() || self.inner.admin.is_some()
    }

    /// Whether a request needing `need`, with `authorization` (the value of its
    /// `Authorization` header or metadata) may go on; a refusal is counted for
    /// `listener`.
    pub fn admit(
        &self,
        need: Need,
        authorization: Option<&[u8]>,
        listener: &'static str,
        metrics: &SecurityMetrics,
    ) -> Result<(), Denied> {
        let presented = authorization.and_then(token_of);
        self.check(need, presented.as_deref())
            .inspect_err(|denied| {
                metrics.failed(listener, denied.reason());
            })
    }

    /// Whether a request needing `need` may go on with the token `presented`.
    pub fn check(&self, need: Need, presented: Option<&[u8]>) -> Result<(), Denied> {
        let f = &*self.inner;
        let holds = |file: &Option<TokenFile>, t: &[u8]| file.as_ref().is_some_and(|f| f.holds(t));
        let (accepted, lesser): (&[&Option<TokenFile>], Option<&Option<TokenFile>>) = match need {
            Need::Ingest if f.ingest.is_none() => return Ok(()),
            Need::Ingest => (&[&f.ingest], None),
            Need::Read if f.read.is_none() => return Ok(()),
            Need::Read => (&[&f.read, &f.admin], None),
            Need::Admin if !self.guards_api() => return Ok(()),
            Need::Admin => (&[&f.admin], Some(&f.read)),
        };
        let Some(token) = presented else {
            return Err(Denied::Missing);
        };
        if accepted.iter().any(|file| holds(file, token)) {
            Ok(())
        } else if lesser.is_some_and(|file| holds(file, token)) {
            Err(Denied::Forbidden)
        } else {
            Err(Denied::Invalid)
        }
    }

    /// Re-reads the files every `interval` for as long as these tokens (or a clone)
    /// are in use, on the current runtime.
    pub fn watch(&self, interval: Duration) {
        if self.inner.ingest.is_none() && !self.guards_api() {
            return;
        }
        crate::reread::every(&self.inner, interval, |files| {
            for file in [&files.ingest, &files.read, &files.admin]
                .into_iter()
                .flatten()
            {
                file.reload();
            }
        });
    }
}

/// The token in an `Authorization` header's value: `Bearer T`, or the password of
/// `Basic base64(user:T)` (what Grafana and promtool send).
pub fn token_of(authorization: &[u8]) -> Option<Vec<u8>> {
    let (scheme, rest) = authorization.split_at(authorization.iter().position(|b| *b == b' ')?);
    let rest = rest.trim_ascii();
    if scheme.eq_ignore_ascii_case(b"bearer") {
        return Some(rest.to_vec());
    }
    if scheme.eq_ignore_ascii_case(b"basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()?;
        let colon = decoded.iter().position(|b| *b == b':')?;
        return Some(decoded[colon + 1..].to_vec());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(dir: &Path, ingest: &str, read: &str, admin: &str) -> Tokens {
        let mut config = AuthConfig::default();
        for (text, slot, name) in [
            (ingest, &mut config.ingest_tokens_file, "ingest"),
            (read, &mut config.read_tokens_file, "read"),
            (admin, &mut config.admin_tokens_file, "admin"),
        ] {
            if !text.is_empty() {
                let path = dir.join(name);
                std::fs::write(&path, text).expect("write");
                *slot = Some(path);
            }
        }
        Tokens::load(&config).expect("load")
    }

    #[test]
    fn each_kind_of_token_opens_its_own_doors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = tokens(dir.path(), "i1\n\n# old one\ni2\n", " r1 \n", "a1\n");
        assert_eq!(t.check(Need::Ingest, Some(b"i2")), Ok(()));
        assert_eq!(t.check(Need::Ingest, Some(b"r1")), Err(Denied::Invalid));
        assert_eq!(t.check(Need::Ingest, None), Err(Denied::Missing));
        assert_eq!(
            t.check(Need::Ingest, Some(b"# old one")),
            Err(Denied::Invalid)
        );
        assert_eq!(t.check(Need::Read, Some(b"r1")), Ok(()));
        assert_eq!(t.check(Need::Read, Some(b"a1")), Ok(()));
        assert_eq!(t.check(Need::Read, Some(b"i1")), Err(Denied::Invalid));
        assert_eq!(t.check(Need::Admin, Some(b"a1")), Ok(()));
        assert_eq!(t.check(Need::Admin, Some(b"r1")), Err(Denied::Forbidden));
        assert_eq!(t.check(Need::Admin, Some(b"r")), Err(Denied::Invalid));
    }

    #[test]
    fn without_files_everything_is_open_and_read_tokens_close_admin() {
        let dir = tempfile::tempdir().expect("tempdir");
        let open = tokens(dir.path(), "", "", "");
        for need in [Need::Ingest, Need::Read, Need::Admin] {
            assert_eq!(open.check(need, None), Ok(()));
        }
        let reads = tokens(dir.path(), "", "r1", "");
        assert_eq!(reads.check(Need::Ingest, None), Ok(()));
        assert_eq!(
            reads.check(Need::Admin, Some(b"r1")),
            Err(Denied::Forbidden)
        );
        let admin_only = tokens(dir.path(), "", "", "a1");
        assert_eq!(admin_only.check(Need::Read, None), Ok(()));
        assert_eq!(admin_only.check(Need::Admin, None), Err(Denied::Missing));
    }

    #[test]
    fn bearer_and_basic_headers_give_their_token() {
        assert_eq!(token_of(b"Bearer abc"), Some(b"abc".to_vec()));
        assert_eq!(token_of(b"bearer  abc "), Some(b"abc".to_vec()));
        // "grafana:s3cr:et"
        assert_eq!(
            token_of(b"Basic Z3JhZmFuYTpzM2NyOmV0"),
            Some(b"s3cr:et".to_vec())
        );
        assert_eq!(token_of(b"Basic !!!"), None);
        assert_eq!(token_of(b"Digest x"), None);
        assert_eq!(token_of(b"Bearer"), None);
    }

    #[test]
    fn a_changed_file_is_read_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = tokens(dir.path(), "old\n", "", "");
        std::fs::write(dir.path().join("ingest"), "new\n").expect("write");
        for f in [&t.inner.ingest].into_iter().flatten() {
            f.reload();
        }
        assert_eq!(t.check(Need::Ingest, Some(b"new")), Ok(()));
        assert_eq!(t.check(Need::Ingest, Some(b"old")), Err(Denied::Invalid));
        // A removed file revokes what it held.
        std::fs::remove_file(dir.path().join("ingest")).expect("remove");
        for f in [&t.inner.ingest].into_iter().flatten() {
            f.reload();
        }
        assert_eq!(t.check(Need::Ingest, Some(b"new")), Err(Denied::Invalid));
    }
}
