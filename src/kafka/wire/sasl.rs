//! SASL authentication of a new connection (KIP-43 framing): SaslHandshake v1 names the
//! mechanism, then SaslAuthenticate carries its messages as ordinary Kafka requests.
//! PLAIN is one message; SCRAM is two round trips ([`super::scram`]).

use bytes::Bytes;
use kafka_protocol::messages::{SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest};
use kafka_protocol::protocol::StrBytes;

use super::connection::BrokerConnection;
use super::scram::{ScramClient, ScramHash};
use super::{Error, Result};
use crate::config::SaslMechanism;
use crate::kafka::connect::Sasl;

/// SaslHandshake v1 (Kafka 1.0+): after it, the SASL messages travel in SaslAuthenticate
/// requests. v0 would send them as raw frames, which only pre-1.0 brokers need.
const HANDSHAKE_VERSION: i16 = 1;

/// Authenticates `conn` as `sasl` says.
///
/// # Errors
/// [`Error::Authentication`] when the broker refuses (wrong credentials, mechanism not
/// enabled) or the exchange is inconsistent; request errors as for any request.
pub(super) async fn authenticate(conn: &BrokerConnection, sasl: &Sasl) -> Result<()> {
    let mechanism = sasl.mechanism.name();
    let refused = |message: String| Error::Authentication {
        addr: conn.addr().to_owned(),
        mechanism,
        message,
    };
    let handshake = conn
        .request_with_version(
            SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(mechanism)),
            HANDSHAKE_VERSION,
        )
        .await?;
    if handshake.error_code != 0 {
        let enabled: Vec<&str> = handshake.mechanisms.iter().map(|m| m.as_str()).collect();
        return Err(refused(format!(
            "{} (the broker enables: {})",
            error_name(handshake.error_code),
            enabled.join(", ")
        )));
    }
    let user = sasl.username.as_str();
    let password = sasl.password.expose();
    match sasl.mechanism {
        SaslMechanism::Plain => {
            // RFC 4616: authzid NUL authcid NUL password; no authzid.
            let message = format!("\0{user}\0{password}");
            step(conn, message.into_bytes(), &refused).await?;
        }
        SaslMechanism::ScramSha256 | SaslMechanism::ScramSha512 => {
            let hash = match sasl.mechanism {
                SaslMechanism::ScramSha512 => ScramHash::Sha512,
                _ => ScramHash::Sha256,
            };
            let mut scram = ScramClient::new(hash, user, password);
            let server_first = step(conn, scram.client_first().into_bytes(), &refused).await?;
            let server_first = utf8(&server_first, &refused)?;
            let client_final = scram
                .client_final(&server_first)
                .map_err(|e| refused(e.to_string()))?;
            let server_final = step(conn, client_final.into_bytes(), &refused).await?;
            let server_final = utf8(&server_final, &refused)?;
            scram
                .verify_server_final(&server_final)
                .map_err(|e| refused(e.to_string()))?;
        }
    }
    Ok(())
}

/// One SaslAuthenticate round trip; the broker's bytes, or its refusal.
async fn step(conn: &BrokerConnection, bytes: Vec<u8>, refused: &impl Fn(String) -> Error) -> Result<Bytes> {
    let response: SaslAuthenticateResponse = conn
        .request(SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(bytes)))
        .await?;
    if response.error_code != 0 {
        let detail = response
            .error_message
            .as_ref()
            .map(|m| format!(": {}", m.as_str()))
            .unwrap_or_default();
        return Err(refused(format!("{}{detail}", error_name(response.error_code))));
    }
    Ok(response.auth_bytes)
}

fn utf8(bytes: &[u8], refused: &impl Fn(String) -> Error) -> Result<String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| refused("server SCRAM message is not UTF-8".to_owned()))
}

/// Kafka's name for the SASL error codes (the Java client's exception names), else the code.
fn error_name(code: i16) -> String {
    match code {
        33 => "UNSUPPORTED_SASL_MECHANISM".to_owned(),
        34 => "ILLEGAL_SASL_STATE".to_owned(),
        58 => "SASL_AUTHENTICATION_FAILED".to_owned(),
        other => format!("error code {other}"),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use kafka_protocol::messages::{ApiKey, MetadataRequest};
    use kafka_protocol::protocol::VersionRange;

    use super::super::testing::{Behaviour, FakeBroker, plain};
    use super::super::{BrokerConnection, Error};
    use crate::config::{SaslMechanism, Secret};
    use crate::kafka::connect::Sasl;

    const T: Duration = Duration::from_secs(5);

    fn sasl(mechanism: SaslMechanism, password: &str) -> Sasl {
        Sasl {
            mechanism,
            username: "alice".into(),
            password: Secret::new(password),
        }
    }

    async fn broker() -> FakeBroker {
        let apis = [
            (ApiKey::Metadata, VersionRange { min: 0, max: 9 }),
            (ApiKey::SaslHandshake, VersionRange { min: 0, max: 1 }),
            (ApiKey::SaslAuthenticate, VersionRange { min: 0, max: 2 }),
        ];
        let behaviour = Behaviour {
            sasl_plain: Some(("alice".into(), "right".into())),
            ..Behaviour::default()
        };
        FakeBroker::start_with(&apis, behaviour).await
    }

    #[tokio::test]
    async fn plain_authenticates_right_after_api_versions() {
        let broker = broker().await;
        let connect = plain(T).with_sasl(sasl(SaslMechanism::Plain, "right"));
        let conn = BrokerConnection::connect(&broker.addr(), &connect).await.unwrap();
        conn.request(MetadataRequest::default()).await.unwrap();
        assert_eq!(
            broker.seen(),
            vec![
                (ApiKey::ApiVersions as i16, 3),
                (ApiKey::SaslHandshake as i16, 1),
                (ApiKey::SaslAuthenticate as i16, 2),
                (ApiKey::Metadata as i16, 9),
            ]
        );
    }

    #[tokio::test]
    async fn a_wrong_password_or_mechanism_is_an_authentication_error() {
        let broker = broker().await;
        let connect = plain(T).with_sasl(sasl(SaslMechanism::Plain, "wrong"));
        let err = BrokerConnection::connect(&broker.addr(), &connect)
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(
                err,
                Error::Authentication {
                    mechanism: "PLAIN",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(
            text.contains("SASL_AUTHENTICATION_FAILED: Authentication failed: Invalid username"),
            "{text}"
        );
        assert!(!text.contains("wrong"), "the password is never shown: {text}");
        assert_eq!(err.security_failure(), Some("authentication failed"));

        let connect = plain(T).with_sasl(sasl(SaslMechanism::ScramSha256, "right"));
        let err = BrokerConnection::connect(&broker.addr(), &connect)
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("UNSUPPORTED_SASL_MECHANISM (the broker enables: PLAIN)"),
            "{text}"
        );
    }
}
