//! The pages people use (DESIGN.md §6): the agent desktop at `/desktop` (the Customer Context
//! gadget) and the admin console at `/admin` (the components' `managementUrl`), with their
//! scripts, styles and icons under `/ui/`. Everything is embedded in the binary: no CDN, no
//! build step, works offline.
//!
//! The pages hold no data: their scripts call the `/v1` API with the session cookie, and
//! every API answer is `no-store` (see [`no_store`]). The policy is strict: scripts and
//! styles from this origin only, no inline script, no framing but by the origins an admin
//! allowed for the desktop (`PUT /v1/settings/embedding`).

use std::sync::OnceLock;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::registration::escape;
use crate::AppState;

/// The policy of both pages but `frame-ancestors`, which each adds.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; base-uri 'none'";

/// [`CSP`] with no framing.
const NO_FRAMES: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                         img-src 'self' data:; connect-src 'self'; form-action 'self'; \
                         base-uri 'none'; frame-ancestors 'none'";

/// The element of `desktop.html` whose `content` receives the allowed host origins, which
/// the desktop's script checks every `postMessage` against.
const ORIGINS_META: &str = r#"<meta name="contextd-embed-origins" content="">"#;

const DESKTOP_HTML: &str = include_str!("assets/desktop.html");
const ADMIN_HTML: &str = include_str!("assets/admin.html");

/// An embedded file: its name under `/ui/`, its media type and its bytes.
struct Asset {
    name: &'static str,
    media_type: &'static str,
    bytes: &'static [u8],
}

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

const ASSETS: &[Asset] = &[
    Asset {
        name: "common.js",
        media_type: JS,
        bytes: include_bytes!("assets/common.js"),
    },
    Asset {
        name: "common.css",
        media_type: CSS,
        bytes: include_bytes!("assets/common.css"),
    },
    Asset {
        name: "desktop.js",
        media_type: JS,
        bytes: include_bytes!("assets/desktop.js"),
    },
    Asset {
        name: "desktop.css",
        media_type: CSS,
        bytes: include_bytes!("assets/desktop.css"),
    },
    Asset {
        name: "admin.js",
        media_type: JS,
        bytes: include_bytes!("assets/admin.js"),
    },
    Asset {
        name: "admin.css",
        media_type: CSS,
        bytes: include_bytes!("assets/admin.css"),
    },
    Asset {
        name: "icons.svg",
        media_type: "image/svg+xml",
        bytes: include_bytes!("assets/icons.svg"),
    },
];

/// The pages and their assets, to merge into the server's router (outside `/v1`).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/desktop", get(desktop))
        .route("/admin", get(admin))
        .route("/ui/{file}", get(asset))
}

/// The agent desktop; framed only by the origins admins allowed (any organization's: the
/// page is served before anyone signs in).
async fn desktop(State(state): State<AppState>) -> Response {
    let origins = match state.context.all_embed_origins().await {
        Ok(origins) => origins,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let listed = origins.join(" ");
    let html = DESKTOP_HTML.replacen(
        ORIGINS_META,
        &format!(
            r#"<meta name="contextd-embed-origins" content="{}">"#,
            escape(&listed)
        ),
        1,
    );
    let ancestors = if origins.is_empty() {
        "'none'"
    } else {
        &listed
    };
    page(html, ancestors, false)
}

/// The admin console; never framed.
async fn admin() -> Response {
    page(ADMIN_HTML.to_owned(), "'none'", true)
}

fn page(html: String, frame_ancestors: &str, deny_frames: bool) -> Response {
    let csp = HeaderValue::from_str(&format!("{CSP}; frame-ancestors {frame_ancestors}"));
    // Fails closed: a policy that can't be sent means no framing at all.
    let (csp, deny_frames) = match csp {
        Ok(v) => (v, deny_frames),
        Err(_) => (HeaderValue::from_static(NO_FRAMES), true),
    };
    let mut response = html.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    if deny_frames {
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    common_headers(headers, "no-store");
    response
}

/// A file under `/ui/`: revalidated on each use (`no-cache` with an `ETag`), so that an
/// upgraded server's pages never run yesterday's scripts.
async fn asset(Path(file): Path<String>, request: HeaderMap) -> Response {
    let Some((asset, etag)) = ASSETS.iter().zip(etags()).find(|(a, _)| a.name == file) else {
        return ApiError::no_route().into_response();
    };
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes());
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        asset.bytes.into_response()
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.media_type),
    );
    if let Ok(v) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, v);
    }
    common_headers(headers, "no-cache");
    response
}

/// The `ETag` of each asset, in the order of [`ASSETS`].
fn etags() -> &'static [String] {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let hash = Sha256::digest(a.bytes);
                let hex: String = hash[..12].iter().map(|b| format!("{b:02x}")).collect();
                format!("\"{hex}\"")
            })
            .collect()
    })
}

fn common_headers(headers: &mut HeaderMap, cache: &'static str) {
    let fixed: [(HeaderName, &'static str); 3] = [
        (header::CACHE_CONTROL, cache),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
}

/// Marks an API answer `no-store` unless its handler chose otherwise: answers carry customer
/// data, which no browser or proxy cache may keep.
pub async fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_that_cannot_be_sent_forbids_framing() {
        let response = page(String::new(), "https://a.example\n", false);
        let headers = response.headers();
        assert_eq!(
            headers
                .get(header::CONTENT_SECURITY_POLICY)
                .map(HeaderValue::as_bytes),
            Some(NO_FRAMES.as_bytes())
        );
        assert_eq!(
            headers
                .get(header::X_FRAME_OPTIONS)
                .map(HeaderValue::as_bytes),
            Some(&b"DENY"[..])
        );
    }

    #[test]
    fn the_fallback_policy_is_the_pages_policy_without_frames() {
        assert_eq!(NO_FRAMES, format!("{CSP}; frame-ancestors 'none'"));
    }
}
