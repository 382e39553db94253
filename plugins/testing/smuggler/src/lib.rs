//! Test collector `smuggler`: declares a gauge `value` (index 0) and a text
//! field `note` (index 1), and on every `collect` tries to move text through
//! the numeric path. It returns, in order:
//!
//! 1. Samples labelled `chunk` = `"0"`, `"1"`, `"2"`: the gauge `value`
//!    holding [`SECRET`] packed 8 bytes at a time into f64 bit patterns
//!    ([`encode_secret`]). Nothing can stop a collector from encoding data in
//!    the numbers it declares; these are valid and pass.
//! 2. A sample labelled `kind` = `"note"`: the text field `note` =
//!    [`SECRET`], a legitimate text value, which the host must seal so that
//!    it never appears in clear on the wire.
//! 3. A sample labelled `kind` = `"mischief"` holding only invalid values,
//!    all of which the host must drop: numbers for field 1 (the text field:
//!    wrong kind) and for undeclared fields 2, 1000 and `u32::MAX`; texts
//!    holding the secret for field 0 (the gauge: wrong kind) and for
//!    undeclared fields 7 and `u32::MAX`. Per call that is 2 wrong-kind and
//!    5 undeclared values, and the sample is left with no values at all.

use wasmtap_collector::bindings::wasmtap::collector::types::{Number, Text};
use wasmtap_collector::{Descriptor, Guest, Sample, SampleBuilder, Schema};

struct Smuggler;

/// The text the collector tries to smuggle.
pub const SECRET: &str = "smuggled-secret-XYZ";

/// Packs `text` into f64s, 8 bytes each (little endian, zero padded).
pub fn encode_secret(text: &str) -> Vec<f64> {
    text.as_bytes()
        .chunks(8)
        .map(|c| {
            let mut b = [0u8; 8];
            b[..c.len()].copy_from_slice(c);
            f64::from_bits(u64::from_le_bytes(b))
        })
        .collect()
}

/// Unpacks [`encode_secret`]'s output (for tests looking for the secret).
pub fn decode_secret(values: &[f64]) -> String {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_bits().to_le_bytes()).collect();
    String::from_utf8_lossy(&bytes).trim_end_matches('\0').to_owned()
}

impl Guest for Smuggler {
    fn describe() -> Descriptor {
        let mut s = Schema::new();
        s.gauge("value", "", "Bit patterns of the secret, 8 bytes a sample");
        s.text("note", "The secret, as an honest text value");
        s.into_descriptor("smuggler", env!("CARGO_PKG_VERSION"), 1_000)
    }

    fn init(_config: Vec<(String, String)>) -> Result<(), String> {
        Ok(())
    }

    fn collect() -> Result<Vec<Sample>, String> {
        let mut s = Schema::new();
        let value = s.gauge("value", "", "");
        let note = s.text("note", "");
        let mut out: Vec<Sample> = encode_secret(SECRET)
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                SampleBuilder::new().label("chunk", i.to_string()).gauge(value, v).build()
            })
            .collect();
        out.push(SampleBuilder::new().label("kind", "note").text(note, SECRET).build());
        let number = |field, value| Number { field, value };
        let text = |field| Text { field, value: SECRET.to_owned() };
        let packed = encode_secret(SECRET);
        out.push(Sample {
            labels: vec![("kind".into(), "mischief".into())],
            numbers: vec![
                number(1, packed[0]),
                number(2, packed[1]),
                number(1000, packed[2]),
                number(u32::MAX, 42.0),
            ],
            texts: vec![text(0), text(7), text(u32::MAX)],
        });
        Ok(out)
    }
}

wasmtap_collector::export!(Smuggler);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_round_trips_through_numbers() {
        let packed = encode_secret(SECRET);
        assert_eq!(packed.len(), 3);
        assert!(packed.iter().all(|v| v.is_finite()));
        assert_eq!(decode_secret(&packed), SECRET);
    }
}
