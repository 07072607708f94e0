//! The PROXY protocol version a type's instances expect (`proxy_protocol` in procgate.toml), and
//! the `LOCAL` header procgate's own connections to them send first; the gateway encodes and
//! reads the headers that carry addresses (`gateway::proxy_protocol`).

use serde::Deserialize;

/// The version written to a type's instances (`proxy_protocol` in procgate.toml).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyVersion {
    V1,
    V2,
    Off,
}

impl ProxyVersion {
    /// `v1`/`v2`, as instances get it in `PROXY_PROTOCOL`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProxyVersion::V1 => "v1",
            ProxyVersion::V2 => "v2",
            ProxyVersion::Off => "off",
        }
    }
}

/// v1's header without addresses: `LOCAL` for a health check, "unknown" for a client.
pub const V1_UNKNOWN: &[u8] = b"PROXY UNKNOWN\r\n";
/// v2's `LOCAL` header (command 0x20, no address).
const V2_LOCAL: &[u8] = b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00";

/// The `LOCAL` header of health checks: "this connection is procgate's own, not a client's".
pub fn local_header(version: ProxyVersion) -> Vec<u8> {
    match version {
        ProxyVersion::V1 => V1_UNKNOWN.to_vec(),
        ProxyVersion::V2 | ProxyVersion::Off => V2_LOCAL.to_vec(),
    }
}
