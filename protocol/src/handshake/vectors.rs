//! The known-answer vectors of `PROTOCOL.md` §11, read from the document
//! itself and checked against the code the channel runs: the key schedule,
//! key updates, and each simple-path suite's layout. Run
//! `cargo test -p wasmtap-protocol print_vectors -- --ignored --nocapture`
//! to print them afresh.

use std::collections::HashMap;

use super::Master;
use crate::crypto::{Aead, derive_key};
use crate::frame::{Frame, FrameDecoder, FrameKind};
use crate::secret::Key256;
use crate::session::{Role, Session};
use crate::simple::{NumericPayload, NumericWriter, SimpleSuite};

const DOC: &str = include_str!("../../PROTOCOL.md");

/// One vector: a name and its values, in order.
type Vector = (String, Vec<(String, Vec<u8>)>);

/// Bytes `start, start + 1, …` (`len` of them).
fn counting(start: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| start.wrapping_add(i as u8)).collect()
}

fn key(start: u8) -> Key256 {
    Key256::new(counting(start, 32).try_into().expect("32 bytes"))
}

/// A payload whose bytes are `values` (each below 128, so one byte each).
fn payload(values: &[u8]) -> NumericPayload {
    let mut w = NumericWriter::new();
    for &v in values {
        w.u64(u64::from(v));
    }
    w.finish()
}

fn frames(bytes: &[u8]) -> Vec<Frame> {
    let mut d = FrameDecoder::default();
    d.push(bytes);
    std::iter::from_fn(|| d.next_frame().expect("valid")).collect()
}

/// The traffic keys from the key schedule's inputs, as §3.3 writes them.
fn schedule() -> Vector {
    let (psk, ee, es, se, th2, strong, simple) =
        (key(0x00), key(0x20), key(0x40), key(0x60), key(0x80), key(0xa0), key(0xc0));
    let th2 = th2.expose();
    let master = derive_key(
        th2,
        &[psk.expose(), ee.expose(), es.expose(), se.expose()],
        b"wasmtap/2 master",
    );
    let traffic = |k: &Key256, info: &[u8]| derive_key(th2, &[master.expose(), k.expose()], info);
    let mut v = vec![
        ("psk".into(), psk.expose().to_vec()),
        ("ee".into(), ee.expose().to_vec()),
        ("es".into(), es.expose().to_vec()),
        ("se".into(), se.expose().to_vec()),
        ("th2".into(), th2.to_vec()),
        ("strong".into(), strong.expose().to_vec()),
        ("simple".into(), simple.expose().to_vec()),
        ("master".into(), master.expose().to_vec()),
    ];
    for (name, k, info) in [
        ("c2s_sealed", &strong, &b"wasmtap/2 c2s sealed"[..]),
        ("s2c_sealed", &strong, b"wasmtap/2 s2c sealed"),
        ("c2s_simple", &simple, b"wasmtap/2 c2s simple"),
        ("s2c_simple", &simple, b"wasmtap/2 s2c simple"),
    ] {
        v.push((name.into(), traffic(k, info).expose().to_vec()));
    }
    ("key schedule".into(), v)
}

/// Two key updates of a direction (§4.1).
fn rekey() -> Vector {
    let (mut sealed, mut simple) = (key(0xe0), key(0x10));
    let mut v = vec![
        ("k_sealed".into(), sealed.expose().to_vec()),
        ("k_simple".into(), simple.expose().to_vec()),
    ];
    for round in 1..=2 {
        sealed = derive_key(&[], &[sealed.expose()], b"wasmtap/2 rekey sealed");
        simple = derive_key(&[], &[simple.expose()], b"wasmtap/2 rekey simple");
        let tick = "'".repeat(round);
        v.push((format!("k_sealed{tick}"), sealed.expose().to_vec()));
        v.push((format!("k_simple{tick}"), simple.expose().to_vec()));
    }
    ("rekey".into(), v)
}

/// Three simple frames under `k_simple`: two in epoch 0, one in epoch 1.
fn simple(suite: SimpleSuite) -> Vector {
    let k = key(0x10);
    let mut tx = Session::sending_with(suite, key(0xe0), k.clone());
    let mut v = vec![("k_simple".into(), k.expose().to_vec())];
    let p = [payload(&[1, 2, 3, 4, 5]), payload(&counting(0, 40)), payload(&[1, 2, 3, 4, 5])];
    for (n, p) in p.iter().enumerate() {
        let mut frame = Vec::new();
        tx.seal_simple(p, &mut frame);
        v.push((format!("plaintext{n}"), p.as_bytes().to_vec()));
        v.push((format!("frame{n}"), frame));
        if n != 0 {
            let cp = tx.simple_checkpoint();
            for (i, tag) in cp.tags.iter().enumerate() {
                v.push((format!("epoch{}.tag{i}", cp.epoch), tag.to_vec()));
            }
        }
    }
    (format!("simple {}", suite.name()), v)
}

fn vectors() -> Vec<Vector> {
    let mut all = vec![schedule(), rekey()];
    all.extend(SimpleSuite::ALL.map(simple));
    all
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The vectors in `PROTOCOL.md`: each a ```` ```text ```` block whose first
/// line is `vector: NAME`, then `name = hex` lines (a value may continue on
/// the next lines, indented).
fn documented() -> HashMap<String, Vec<(String, Vec<u8>)>> {
    let mut out = HashMap::new();
    let mut lines = DOC.lines();
    while let Some(line) = lines.next() {
        let Some(name) = line.strip_prefix("vector: ") else { continue };
        let mut values: Vec<(String, String)> = Vec::new();
        for line in lines.by_ref().take_while(|l| !l.starts_with("```")) {
            match line.split_once(" = ") {
                Some((k, v)) if !line.starts_with(' ') => {
                    values.push((k.trim().to_owned(), v.trim().to_owned()));
                }
                _ => values.last_mut().expect("a continuation").1.push_str(line.trim()),
            }
        }
        let values = values
            .into_iter()
            .map(|(k, v)| {
                let bytes = (0..v.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&v[i..i + 2], 16).expect("hex"))
                    .collect();
                (k, bytes)
            })
            .collect();
        out.insert(name.trim().to_owned(), values);
    }
    out
}

/// Formats a vector as the document writes it: 32 bytes a line.
fn format(vector: &Vector) -> String {
    let mut s = format!("```text\nvector: {}\n", vector.0);
    for (name, bytes) in &vector.1 {
        let h = hex(bytes);
        let mut chunks = h.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).expect("ascii"));
        s += &format!("{name:<14} = {}\n", chunks.next().unwrap_or(""));
        for c in chunks {
            s += &format!("{:<17}{c}\n", "");
        }
    }
    s + "```\n"
}

#[test]
#[ignore = "prints the vectors for PROTOCOL.md"]
fn print_vectors() {
    for v in vectors() {
        println!("{}", format(&v));
    }
}

#[test]
fn the_documented_vectors_are_what_the_code_computes() {
    let doc = documented();
    let all = vectors();
    assert_eq!(doc.len(), all.len(), "vectors in PROTOCOL.md");
    for (name, values) in all {
        let written = doc.get(&name).unwrap_or_else(|| panic!("vector {name} missing"));
        assert_eq!(written, &values, "vector {name} differs; run print_vectors");
    }
}

/// The schedule above is the one the handshake runs: a session built by
/// `Master` from the same inputs seals under the vector's traffic keys.
#[test]
fn the_schedule_vector_is_the_handshakes() {
    let (_, v) = schedule();
    let get = |name: &str| {
        let bytes = &v.iter().find(|(n, _)| n == name).expect("present").1;
        Key256::new(bytes.as_slice().try_into().expect("32 bytes"))
    };
    let th2: [u8; 32] = *get("th2").expose();
    let (ee, es, se) = (get("ee"), get("es"), get("se"));
    for suite in SimpleSuite::ALL {
        let master = Master::derive(&get("psk"), &th2, [ee.expose(), es.expose(), se.expose()]);
        assert_eq!(master.0, get("master"));
        let strong_simple = (&get("strong"), &get("simple"));
        let mut client = master.into_session(&th2, strong_simple, suite, 9, Role::Client);
        let mut sealed = frames(&client.seal(FrameKind::Sealed, b"kat").expect("seal")).remove(0);
        let header = sealed.header_bytes();
        Aead::new(&get("c2s_sealed"))
            .open(&[0; 12], &header, &mut sealed.payload)
            .expect("sealed under c2s_sealed, counter 0");
        let mut wire = Vec::new();
        client.seal_simple(&payload(&[7, 8, 9]), &mut wire);
        let mut same = Vec::new();
        let mut reference = Session::sending_with(suite, key(0), get("c2s_simple"));
        reference.seal_simple(&payload(&[7, 8, 9]), &mut same);
        assert_eq!(wire, same, "{suite}: simple frames under c2s_simple");
    }
}

/// The rekey vector is what `KeyUpdate` does.
#[test]
fn the_rekey_vector_is_the_sessions() {
    let (_, v) = rekey();
    let get = |name: &str| {
        let bytes = &v.iter().find(|(n, _)| n == name).expect("present").1;
        Key256::new(bytes.as_slice().try_into().expect("32 bytes"))
    };
    let mut s = Session::sending_with(SimpleSuite::Aegis128L, get("k_sealed"), get("k_simple"));
    for tick in ["'", "''"] {
        s.update_keys(&mut Vec::new()).expect("update");
        let mut f = frames(&s.seal(FrameKind::Sealed, b"after").expect("seal")).remove(0);
        let header = f.header_bytes();
        Aead::new(&get(&format!("k_sealed{tick}")))
            .open(&[0; 12], &header, &mut f.payload)
            .expect("sealed under the updated key, counter 0");
        let mut wire = Vec::new();
        s.seal_simple(&payload(&[1]), &mut wire);
        let simple = get(&format!("k_simple{tick}"));
        let mut reference = Session::sending_with(SimpleSuite::Aegis128L, key(0), simple);
        let mut same = Vec::new();
        reference.seal_simple(&payload(&[1]), &mut same);
        assert_eq!(wire, same, "simple frames under the updated simple key");
        s.simple_checkpoint();
    }
}
