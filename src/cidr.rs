//! Address blocks in CIDR notation (`10.0.0.0/8`, `::1/128`, or one address), as
//! `trusted_proxies` lists them: parsed and checked once at load, matched per connection.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// The IPv4-mapped IPv6 block `::ffff:0:0/96`'s prefix length.
const MAPPED_PREFIX: u8 = 96;

/// A block of addresses: a network address and how many leading bits it fixes. An IPv4-mapped
/// IPv6 block (`::ffff:10.0.0.0/104`) is held as its IPv4 block (`10.0.0.0/8`), and addresses
/// are matched the same way, so a dual-stack listener's peers match the IPv4 blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

/// Why a text is not a CIDR block; each says how to write it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("`{0}` is not an IP address or a CIDR block; write e.g. \"10.0.0.0/8\", \"::1/128\" or \"192.0.2.7\"")]
    Syntax(String),
    #[error("`{text}`: an {family} block has a prefix length of at most {max}")]
    Prefix { text: String, family: &'static str, max: u8 },
    #[error("`{text}` has bits set past its /{prefix}; write \"{network}/{prefix}\" (the block) or \"{address}\" (one address)")]
    HostBits { text: String, network: IpAddr, prefix: u8, address: IpAddr },
}

impl Cidr {
    /// Whether `ip` is in the block.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(network), IpAddr::V4(ip)) => {
                masked(u32::from(ip).into(), 32, self.prefix) == u32::from(network).into()
            }
            (IpAddr::V6(network), IpAddr::V6(ip)) => masked(ip.into(), 128, self.prefix) == u128::from(network),
            _ => false,
        }
    }
}

/// `bits` (of a `width`-bit address) with all but the first `prefix` cleared.
fn masked(bits: u128, width: u8, prefix: u8) -> u128 {
    let host_bits = u32::from(width - prefix.min(width));
    bits.checked_shr(host_bits).and_then(|b| b.checked_shl(host_bits)).unwrap_or(0)
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(text: &str) -> Result<Cidr, CidrError> {
        let syntax = || CidrError::Syntax(text.to_string());
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let address: IpAddr = address.parse().map_err(|_| syntax())?;
        let (family, width) = if address.is_ipv4() { ("IPv4", 32) } else { ("IPv6", 128) };
        let prefix = match prefix {
            None => width,
            Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => digits
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= width)
                .ok_or_else(|| CidrError::Prefix { text: text.to_string(), family, max: width })?,
            Some(_) => return Err(syntax()),
        };
        let bits = match address {
            IpAddr::V4(v4) => u128::from(u32::from(v4)),
            IpAddr::V6(v6) => u128::from(v6),
        };
        let network_bits = masked(bits, width, prefix);
        if network_bits != bits {
            let network = match address {
                IpAddr::V4(_) => IpAddr::from((network_bits as u32).to_be_bytes()),
                IpAddr::V6(_) => IpAddr::from(network_bits.to_be_bytes()),
            };
            return Err(CidrError::HostBits { text: text.to_string(), network, prefix, address });
        }
        Ok(Cidr::canonical(address, prefix))
    }
}

impl Cidr {
    /// An IPv4-mapped IPv6 block as its IPv4 block.
    fn canonical(network: IpAddr, prefix: u8) -> Cidr {
        match network {
            IpAddr::V6(v6) if prefix >= MAPPED_PREFIX => match v6.to_ipv4_mapped() {
                Some(v4) => Cidr { network: IpAddr::V4(v4), prefix: prefix - MAPPED_PREFIX },
                None => Cidr { network, prefix },
            },
            _ => Cidr { network, prefix },
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(text: &str) -> Cidr {
        text.parse().unwrap()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn blocks_contain_their_addresses_only() {
        assert!(cidr("10.0.0.0/8").contains(ip("10.255.0.1")));
        assert!(!cidr("10.0.0.0/8").contains(ip("11.0.0.1")));
        assert!(cidr("127.0.0.1/32").contains(ip("127.0.0.1")));
        assert!(!cidr("127.0.0.1/32").contains(ip("127.0.0.9")));
        assert!(cidr("127.0.0.1").contains(ip("127.0.0.1")), "one address is its /32");
        assert!(cidr("0.0.0.0/0").contains(ip("203.0.113.9")));
        assert!(!cidr("0.0.0.0/0").contains(ip("2001:db8::1")), "an IPv4 block holds no IPv6 address");
        assert!(cidr("::/0").contains(ip("2001:db8::1")));
        assert!(cidr("::1/128").contains(ip("::1")));
        assert!(cidr("2001:db8::/32").contains(ip("2001:db8:ffff::1")));
        assert!(!cidr("2001:db8::/32").contains(ip("2001:db9::1")));
    }

    #[test]
    fn mapped_addresses_and_blocks_count_as_ipv4() {
        assert!(cidr("127.0.0.0/8").contains(ip("::ffff:127.0.0.9")), "a dual-stack listener's IPv4 peer");
        assert_eq!(cidr("::ffff:10.0.0.0/104"), cidr("10.0.0.0/8"));
        assert_eq!(cidr("::ffff:10.0.0.0/104").to_string(), "10.0.0.0/8");
    }

    #[test]
    fn bad_blocks_say_how_to_write_them() {
        let err = |text: &str| text.parse::<Cidr>().unwrap_err().to_string();
        assert!(err("10.0.0.0/33").contains("at most 32"), "{}", err("10.0.0.0/33"));
        assert!(err("::/129").contains("at most 128"));
        assert!(err("10.0.0.0/").contains("not an IP address or a CIDR block"));
        assert!(err("10.0.0.0/+8").contains("not an IP address"));
        assert!(err("10.0.0/8").contains("not an IP address"));
        assert!(err("localhost").contains("not an IP address"));
        assert_eq!(
            err("10.0.0.1/8"),
            "`10.0.0.1/8` has bits set past its /8; write \"10.0.0.0/8\" (the block) or \"10.0.0.1\" (one address)"
        );
        assert!(err("2001:db8::1/64").contains("\"2001:db8::/64\""));
    }
}
