//! One admin API request with awc (already bigpipe's HTTP client; it needs an actix System,
//! which a CLI can simply start): the bearer token, `X-Bigpipe-Operator: $USER`, the
//! envelope read back.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

/// How long one request may take: a group describe waits on Kafka for a few round trips.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Largest answer read (a page of 500 letters, or one letter with its call).
const MAX_ANSWER: usize = 64 * 1024 * 1024;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum CliError {
    /// Bad arguments or config.
    #[error("{0}")]
    Usage(String),
    /// The server could not be reached or answered garbage.
    #[error("{url}: {message}")]
    Transport {
        /// The URL asked.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The server refused: its status and `msg`.
    #[error("{status}: {msg}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The envelope's msg.
        msg: String,
    },
}

impl CliError {
    /// The process exit status.
    pub(super) fn exit_code(&self) -> u8 {
        match self {
            // sysexits EX_USAGE.
            Self::Usage(_) => 64,
            Self::Transport { .. } | Self::Refused { .. } => 1,
        }
    }
}

/// The admin listener and how to authenticate to it.
#[derive(Debug)]
pub(super) struct AdminClient {
    base: String,
    token: Option<String>,
    operator: String,
}

/// Percent-encodes one path segment (group ids may hold `/`, `?`, `#`...).
fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl AdminClient {
    /// The target from `--url`/`--token-file`, else the config file's `http.admin.*`.
    pub(super) fn from_args(
        config: &Path,
        url: Option<&str>,
        token_file: Option<&Path>,
    ) -> Result<Self, CliError> {
        let (base, mut token) = match url {
            Some(u) => (u.to_owned(), None),
            None => super::target_from_config(config).map_err(CliError::Usage)?,
        };
        if url.is_some() && token_file.is_none() {
            // A URL alone still takes the config's token when the config loads (the usual
            // case of another port-forwarded address for the same deployment).
            token = super::target_from_config(config).ok().and_then(|(_, t)| t);
        }
        if let Some(path) = token_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| CliError::Usage(format!("--token-file {}: {e}", path.display())))?;
            token = Some(text.trim().to_owned()).filter(|t| !t.is_empty());
        }
        let base = base.trim_end_matches('/').to_owned();
        if !base.starts_with("http://") && !base.starts_with("https://") {
            return Err(CliError::Usage(format!(
                "--url {base}: expected http://host:port"
            )));
        }
        Ok(Self {
            base,
            token,
            operator: std::env::var("USER").unwrap_or_else(|_| "unknown".to_owned()),
        })
    }

    fn url(&self, path: &[&str]) -> String {
        let mut url = self.base.clone();
        for p in path {
            url.push('/');
            url.push_str(&segment(p));
        }
        url
    }

    fn request(
        &self,
        method: awc::http::Method,
        path: &[&str],
        query: &[(&str, String)],
    ) -> Result<awc::ClientRequest, CliError> {
        let url = self.url(path);
        let client = awc::Client::builder().timeout(REQUEST_TIMEOUT).finish();
        let mut req = client
            .request(method, &url)
            .insert_header(("X-Bigpipe-Operator", self.operator.as_str()));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if !query.is_empty() {
            req = req
                .query(&query)
                .map_err(|e| CliError::Usage(format!("query: {e}")))?;
        }
        Ok(req)
    }

    /// GET `path` with `query`; the envelope's data.
    pub(super) async fn get(&self, path: &[&str], query: &[(&str, String)]) -> Result<Value, CliError> {
        let req = self.request(awc::http::Method::GET, path, query)?;
        let url = req.get_uri().to_string();
        answer(url, req.send().await).await
    }

    /// POST `body` as JSON; the envelope's data.
    pub(super) async fn post(
        &self,
        path: &[&str],
        query: &[(&str, String)],
        body: &Value,
    ) -> Result<Value, CliError> {
        let req = self.request(awc::http::Method::POST, path, query)?;
        let url = req.get_uri().to_string();
        answer(url, req.send_json(body).await).await
    }
}

async fn answer<S>(
    url: String,
    sent: Result<awc::ClientResponse<S>, awc::error::SendRequestError>,
) -> Result<Value, CliError>
where
    S: futures::Stream<Item = Result<actix_web::web::Bytes, awc::error::PayloadError>> + Unpin,
{
    let transport = |message: String| CliError::Transport {
        url: url.clone(),
        message,
    };
    let mut resp = sent.map_err(|e| transport(e.to_string()))?;
    let status = resp.status();
    let body = resp
        .body()
        .limit(MAX_ANSWER)
        .await
        .map_err(|e| transport(format!("reading the answer: {e}")))?;
    let envelope: Value = serde_json::from_slice(&body).map_err(|_| {
        transport(format!(
            "HTTP {}: not a JSON envelope: {}",
            status.as_u16(),
            String::from_utf8_lossy(&body[..body.len().min(200)])
        ))
    })?;
    if !status.is_success() || envelope["errno"].as_i64() != Some(0) {
        return Err(CliError::Refused {
            status: status.as_u16(),
            msg: envelope["msg"].as_str().unwrap_or("(no message)").to_owned(),
        });
    }
    Ok(envelope["data"].clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(segment("g-1.a_b~"), "g-1.a_b~");
        assert_eq!(segment("a/b?c#d e"), "a%2Fb%3Fc%23d%20e");
        assert_eq!(segment("é"), "%C3%A9");
    }
}
