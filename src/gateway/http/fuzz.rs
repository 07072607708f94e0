//! Property tests of what the router does with a client's head (`cargo test --release -- --ignored fuzz`).

use super::*;
use proptest::collection::vec;
use proptest::prelude::*;

use crate::proptest_check::check;

/// Any value a client can put in a header: visible ASCII, spaces, tabs and obs-text.
fn value(longest: usize) -> impl Strategy<Value = HeaderValue> {
    let byte = prop_oneof![0x20u8..0x7f, Just(b'\t'), 0x80u8..=0xff];
    vec(byte, 0..longest).prop_map(|bytes| HeaderValue::from_bytes(&bytes).expect("header value bytes"))
}

#[test]
#[ignore]
fn fuzz_appended_keeps_every_earlier_value() {
    check("appended", (vec(value(40), 0..4), value(40)), |(earlier, ours)| {
        let mut headers = hyper::HeaderMap::new();
        for value in &earlier {
            headers.append(X_FORWARDED_FOR, value.clone());
        }
        let expected: Vec<&[u8]> = earlier.iter().chain([&ours]).map(HeaderValue::as_bytes).collect();
        let got = appended(&headers, X_FORWARDED_FOR, &ours);
        prop_assert_eq!(got.as_bytes(), expected.join(&b", "[..]));
        Ok(())
    });
}

#[test]
#[ignore]
fn fuzz_html_escape_leaves_no_markup() {
    check("html_escape", any::<String>(), |text| {
        let escaped = html_escape(&text);
        prop_assert!(!escaped.contains(['<', '>', '"', '\'']), "{escaped}");
        let back = escaped.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&#39;", "'");
        prop_assert_eq!(back.replace("&amp;", "&"), text);
        Ok(())
    });
}

#[test]
#[ignore]
fn fuzz_request_id_keeps_only_short_ids() {
    check("request_id", vec(value(260), 0..3), |ids| {
        let mut headers = hyper::HeaderMap::new();
        for id in &ids {
            headers.append(X_REQUEST_ID, id.clone());
        }
        let got = request_id(&headers);
        let id_byte = |b: &u8| b.is_ascii_alphanumeric() || b"+/=._:-".contains(b);
        let valid = |v: &&HeaderValue| !v.is_empty() && v.len() <= MAX_REQUEST_ID && v.as_bytes().iter().all(id_byte);
        match ids.first().filter(valid) {
            Some(kept) => prop_assert_eq!(&got, kept),
            None => prop_assert!(got.len() == 32 && got.as_bytes().iter().all(u8::is_ascii_hexdigit)),
        }
        Ok(())
    });
}

#[test]
#[ignore]
fn fuzz_a_valid_host_cannot_split_the_log_line() {
    check("valid_host", vec(value(40), 0..3), |hosts| {
        let mut headers = hyper::HeaderMap::new();
        for host in &hosts {
            headers.append(header::HOST, host.clone());
        }
        if valid_host(&headers, hyper::Version::HTTP_10) {
            prop_assert!(hosts.len() <= 1, "{hosts:?}");
            prop_assert!(valid_host(&headers, hyper::Version::HTTP_11) == (hosts.len() == 1), "{hosts:?}");
            let text = hosts.first().map_or(&b""[..], HeaderValue::as_bytes);
            prop_assert!(
                !text.iter().any(|b| b.is_ascii_whitespace() || b.is_ascii_control() || *b == b'"'),
                "{text:?}"
            );
        }
        Ok(())
    });
}

/// A router log line from any method, path, host, request id and client address.
#[test]
#[ignore]
fn fuzz_log_line_and_error_page_take_any_head() {
    let method = "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}";
    let path = vec(any::<u8>(), 0..60);
    let head = (method, path, proptest::option::of(value(40)), value(40), any::<std::net::IpAddr>());
    check("log line", head, |(method, path, host, request_id, fwd)| {
        let method = hyper::Method::from_bytes(method.as_bytes()).expect("a token is a method");
        let path = hyper::http::uri::PathAndQuery::try_from(path).ok();
        let shown_host = host.as_ref().and_then(|h| h.to_str().ok()).map(str::to_string);
        let line =
            Line { method, path, host, request_id, fwd, dyno: None, connect: Duration::ZERO, started: Instant::now() };
        let text = line.format(200, 7);
        prop_assert!(text.contains(&format!("host={} ", shown_host.as_deref().unwrap_or("-"))), "{text}");
        prop_assert!(!text.contains(['\r', '\n']), "{text}");
        prop_assert!(text.ends_with(" status=200 bytes=7 protocol=http"), "{text}");
        let page =
            error_page(&RouteStats::default(), &line, StatusCode::SERVICE_UNAVAILABLE, "H10", "App not available");
        prop_assert_eq!(page.status(), StatusCode::SERVICE_UNAVAILABLE);
        prop_assert_eq!(page.headers().get(CODE_HEADER).map(HeaderValue::as_bytes), Some(&b"H10"[..]));
        Ok(())
    });
}
