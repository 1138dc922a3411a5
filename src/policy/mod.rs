//! The outbound destination policy: which addresses bigpipe may connect to, and which URLs
//! each caller may aim it at. Pure: no I/O, no config reading, so the front end (ingest
//! check), the delivery resolver (connect-time check) and config validation share one answer.
//!
//! The rules themselves (address rules, hosts, targets, `delivery.allow`/`.deny`) are parsed
//! config values (`config::values`, re-exported here); this module adds the decisions.
//!
//! - [`net`]: address rules (`10.1.0.0/16`, `127.0.0.1:10086`, `[::1]:8080`).
//! - [`address`]: the global policy (`delivery.allow` / `delivery.deny` and the classes that
//!   are always refused unless allowed: loopback, link-local, unspecified, multicast,
//!   broadcast, cloud metadata, and their IPv4-mapped/compatible/NAT64/6to4 forms).
//! - [`host`]: a URL host as an IP literal, a name, or an ambiguous numeric form.
//! - [`targets`]: per-ACL `targets` (URL prefixes, host patterns, address rules).
//!
//! Why both checks: at ingest only IP-literal hosts can be judged (resolving names there
//! would be slow and prove nothing, since DNS can answer differently later), and the caller
//! gets a clear 403. At connect time every resolved address is judged again, which covers
//! names pointing at loopback, DNS rebinding and numeric host forms.

pub mod address;
pub use crate::config::values::host;
pub mod net;
pub mod targets;

pub use address::{AddressPolicy, Class, Refusal};
pub use host::Host;
pub use net::Rule;
pub use targets::{Destination, Scheme, Target, Targets};
