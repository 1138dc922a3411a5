//! The audit line every admin action that changes something writes: who asked (the
//! `X-Bigpipe-Operator` header the CLI fills with `$USER`, else "unknown"), from which TCP
//! peer, and what was done.

use actix_web::HttpRequest;
use slog::{Logger, info};

/// Header naming the operator behind an admin request.
pub const OPERATOR_HEADER: &str = "X-Bigpipe-Operator";

/// Longest operator name kept (a header is caller input).
const MAX_WHO: usize = 128;

/// The operator named by the request, or "unknown".
pub fn who(req: &HttpRequest) -> String {
    req.headers()
        .get(OPERATOR_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map_or_else(|| "unknown".to_owned(), |v| v.chars().take(MAX_WHO).collect())
}

/// Logs `action` on `target` at info, with who asked, the peer and `detail`.
pub fn audit(log: &Logger, req: &HttpRequest, action: &str, target: &str, detail: &str) {
    let peer = req
        .peer_addr()
        .map_or_else(|| "unknown".to_owned(), |a| a.to_string());
    info!(log, "admin action"; "action" => action, "who" => who(req), "peer" => peer,
        "target" => target, "detail" => detail);
}
