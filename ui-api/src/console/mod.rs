//! The web console: `GET /` serves the page, `GET /ui/{version}/{path}` its embedded
//! scripts and styles ([`assets`]). The page reads everything through the public API
//! (`/api/v1/…`), with the browser's token when reads need one; neither route serves data,
//! so neither needs a token.
//!
//! Every answer carries a strict Content-Security-Policy: scripts and styles from this
//! origin only, no inline script or style attribute, no frames, no other origin to
//! connect to. Service names come from the mesh (anyone who can send telemetry picks
//! them), so the page only ever sets them as text.

mod assets;

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

pub use assets::VERSION;

/// The policy every console answer carries.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
    connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// [`VERSION`] as it appears in the files' addresses.
static VERSION_DIR: LazyLock<String> = LazyLock::new(|| format!("{VERSION:016x}"));

/// The page, its asset addresses naming this build's [`VERSION`].
static PAGE: LazyLock<String> = LazyLock::new(|| assets::INDEX.replace("{{v}}", &VERSION_DIR));

fn secured(mut response: Response, cache: &'static str) -> Response {
    let h = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, cache),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// `GET /`: the page. Not cached without asking, so a new binary's page (and with it its
/// new asset addresses) is seen at the next load.
pub async fn page() -> Response {
    secured(
        (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            PAGE.as_str(),
        )
            .into_response(),
        "no-cache",
    )
}

/// `GET /ui/{version}/{*path}`: an embedded file, cacheable for good under this build's
/// version; another version's address is a 404 (the page that asked is stale: reload it).
pub async fn asset(Path((version, path)): Path<(String, String)>) -> Response {
    let found = (version == *VERSION_DIR)
        .then(|| assets::find(&path))
        .flatten();
    match found {
        Some(a) => secured(
            ([(header::CONTENT_TYPE, a.content_type)], a.body).into_response(),
            "public, max-age=31536000, immutable",
        ),
        None => secured(
            (
                StatusCode::NOT_FOUND,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                "no such console file in this version of meshscope; reload the page\n",
            )
                .into_response(),
            "no-cache",
        ),
    }
}
