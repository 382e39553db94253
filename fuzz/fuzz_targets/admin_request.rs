//! The admin API's inputs: an `Authorization` header value, an agent path
//! segment and a control request body, all arbitrary.
//!
//! The token check must agree with a model (`bearer`, any case, then the
//! token, surrounding ASCII whitespace allowed). A body that is accepted
//! must say the same thing when written back as JSON; a segment without
//! `%` names the agent as it is.

#![no_main]

use hyper::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use wasmtap_proxy::admin::{authorized, parse_control};
use wasmtap_proxy::config::Token;

const TOKEN: &str = "0123456789abcdef-fuzz";

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else { return };
    let (header, rest) = rest.split_at(usize::from(n).min(rest.len()));
    let token = Token::new(TOKEN.to_owned()).expect("valid token");
    if let Ok(value) = HeaderValue::from_bytes(header) {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, value);
        let model = header.len() >= 7
            && header[..7].eq_ignore_ascii_case(b"bearer ")
            && header[7..].trim_ascii() == TOKEN.as_bytes();
        assert_eq!(authorized(&token, &headers), model, "{header:?}");
    }
    let (segment, body) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let Ok(segment) = std::str::from_utf8(segment) else { return };
    if let Ok(call) = parse_control(segment, body) {
        if !segment.contains('%') {
            assert_eq!(call.agent, segment);
        }
        let again = serde_json::json!({
            "command": call.command,
            "args": call.args,
            "timeout_ms": u64::try_from(call.timeout.as_millis()).expect("bounded"),
        });
        let bytes = serde_json::to_vec(&again).expect("json");
        let reread = parse_control(segment, &bytes).expect("its own rendering parses");
        assert_eq!(reread, call);
    }
});
