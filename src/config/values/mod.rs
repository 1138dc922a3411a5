//! The parsed values the config produces, with their parsers: config is a leaf, so the types
//! its [`Settings`](super::Settings) hold are defined here, and the modules that act on them
//! (`policy` decides on destinations, `delivery` forwards headers, signs and sets up TLS,
//! `kafka` measures records) add their behaviour to these types or take them as arguments.
//! Nothing here imports anything of the crate outside `config` (a unit test checks it).
//!
//! - [`net`]: address rules (`10.1.0.0/16`, `127.0.0.1:10086`) and `delivery.allow`/`.deny`.
//! - [`host`]: a URL host as an IP literal, a name, or an ambiguous numeric form.
//! - [`targets`]: per-ACL `targets` and the [`Destination`](targets::Destination) a URL parses to.
//! - [`forward`]: header forwarding rules (`Name`, `Prefix*`, `*`).
//! - [`signing`]: Standard Webhooks signing keys.
//! - [`pem`]: CA certificate files.
//! - [`batch`]: the size arithmetic of a Kafka record batch, for the body-limit check.

pub mod batch;
pub mod forward;
pub mod host;
pub mod net;
pub mod pem;
pub mod signing;
pub mod targets;
