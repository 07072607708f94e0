//! The router's per-request header values, written by hand: the client's address and new
//! request ids are made for every new connection or request, where `format!` and `Display`
//! cost several times the rest of the header work.

use hyper::header::HeaderValue;
use std::net::IpAddr;

/// `ip` as a header value (`127.0.0.1`, or IPv6 in its usual text).
pub fn address(ip: IpAddr) -> HeaderValue {
    let text = match ip {
        IpAddr::V4(v4) => {
            let mut text = Vec::with_capacity(15);
            for (index, octet) in v4.octets().into_iter().enumerate() {
                if index > 0 {
                    text.push(b'.');
                }
                push_decimal(&mut text, octet);
            }
            text
        }
        IpAddr::V6(v6) => v6.to_string().into_bytes(),
    };
    shared(text)
}

/// `text` as a header value whose clones share it without allocating (a value made from a
/// `Vec` allocates again at its first clone, and the router clones each of these once). The
/// callers write ASCII digits, dots, colons and hex; anything else would read as `-`.
fn shared<T: AsRef<[u8]> + Send + 'static>(text: T) -> HeaderValue {
    HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(text)).unwrap_or_else(|_| HeaderValue::from_static("-"))
}

fn push_decimal(text: &mut Vec<u8>, n: u8) {
    if n >= 100 {
        text.push(b'0' + n / 100);
    }
    if n >= 10 {
        text.push(b'0' + n / 10 % 10);
    }
    text.push(b'0' + n % 10);
}

/// A new request id: 32 random lowercase hex digits.
pub fn new_request_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let random = rand::random::<u128>();
    let mut text = [0u8; 32];
    for (index, digit) in text.iter_mut().enumerate() {
        *digit = HEX[(random >> (4 * (31 - index)) & 0xf) as usize];
    }
    shared(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_read_as_display_writes_them() {
        for ip in ["0.0.0.0", "127.0.0.1", "10.20.100.255", "192.168.1.9", "::1", "2001:db8::8a2e:370:7334"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(address(ip).to_str().unwrap(), ip.to_string());
        }
    }

    #[test]
    fn request_ids_are_32_hex_digits_and_differ() {
        let (a, b) = (new_request_id(), new_request_id());
        assert_eq!(a.len(), 32);
        assert!(a.to_str().unwrap().bytes().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, b);
    }
}
