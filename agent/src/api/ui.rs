//! The web dashboard (`/ui/`) and the API viewer (`/docs/`, Swagger UI): static files
//! compiled into the binary from `agent/ui/`, served with a strict
//! Content-Security-Policy (scripts and styles from this origin only, no inline
//! script, no framing). The pages only call the API of the agent that serves them.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use include_dir::{include_dir, Dir};

static UI: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/ui");

/// The policy of the dashboard's pages.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";
/// Swagger UI sets styles on its elements: inline styles are allowed there, scripts
/// still only from this origin.
pub const DOCS_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// The content type of a file by its extension.
pub fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "json" => "application/json",
        "md" | "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn serve(path: &str, csp: &'static str) -> Response {
    // Only plain relative names: no "..", no absolute paths, no hidden files.
    if path.split('/').any(|s| s.is_empty() || s.starts_with('.')) {
        return not_found(path);
    }
    let Some(file) = UI.get_file(path) else {
        return not_found(path);
    };
    let mut r = (StatusCode::OK, file.contents()).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(path)),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(csp),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

fn not_found(path: &str) -> Response {
    super::ApiError::not_found(format!("no file {path:?} in the dashboard")).into_response()
}

/// `GET /` and `GET /ui`: to the dashboard.
pub async fn to_ui() -> Redirect {
    Redirect::to("/ui/")
}

/// `GET /ui/`.
pub async fn index() -> Response {
    serve("index.html", CSP)
}

/// `GET /ui/{*path}`.
pub async fn file(Path(path): Path<String>) -> Response {
    if path.starts_with("docs/") {
        return not_found(&path);
    }
    serve(&path, CSP)
}

/// `GET /docs`: to the viewer.
pub async fn to_docs() -> Redirect {
    Redirect::to("/docs/")
}

/// `GET /docs/`.
pub async fn docs_index() -> Response {
    serve("docs/index.html", DOCS_CSP)
}

/// `GET /docs/{*path}`.
pub async fn docs_file(Path(path): Path<String>) -> Response {
    serve(&format!("docs/{path}"), DOCS_CSP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_path_that_leaves_the_directory_then_it_is_not_served() {
        for p in ["../Cargo.toml", "a/../../x", ".hidden", "", "/etc/passwd"] {
            assert_eq!(serve(p, CSP).status(), StatusCode::NOT_FOUND, "{p}");
        }
    }

    #[test]
    fn given_the_index_then_it_is_html_with_the_policy() {
        let r = serve("index.html", CSP);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        assert_eq!(r.headers()[header::CONTENT_SECURITY_POLICY], CSP);
        assert!(!CSP.contains("unsafe"));
    }
}
