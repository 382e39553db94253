//! The remote-write 1.0 body: a protobuf `prometheus.WriteRequest`, encoded
//! by hand (four small messages), then snappy block-compressed.
//!
//! ```protobuf
//! message WriteRequest { repeated TimeSeries timeseries = 1; }
//! message TimeSeries   { repeated Label labels = 1; repeated Sample samples = 2; }
//! message Label        { string name = 1; string value = 2; }
//! message Sample       { double value = 1; int64 timestamp = 2; }
//! ```

use std::sync::Arc;

/// One value to push: a series (metric name and labels) and a point.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// The metric name (`__name__`).
    pub name: Arc<str>,
    /// The other labels, sorted by name, without `__name__`.
    pub labels: Arc<[(String, String)]>,
    /// The value.
    pub value: f64,
    /// Milliseconds since the epoch.
    pub time_ms: i64,
}

const LEN: u8 = 2;
const FIXED64: u8 = 1;
const VARINT: u8 = 0;

fn tag(field: u8, wire_type: u8) -> u8 {
    (field << 3) | wire_type
}

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Size of a length-delimited field (tag, length, body) whose body is `len` bytes.
fn field_len(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

fn put_bytes(out: &mut Vec<u8>, field: u8, bytes: &[u8]) {
    out.push(tag(field, LEN));
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn label_len(name: &str, value: &str) -> usize {
    field_len(name.len()) + field_len(value.len())
}

fn put_label(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(tag(1, LEN));
    put_varint(out, label_len(name, value) as u64);
    put_bytes(out, 1, name.as_bytes());
    put_bytes(out, 2, value.as_bytes());
}

/// The labels of `p` in wire order: sorted by name with `__name__` in its place.
fn wire_labels(p: &Point) -> impl Iterator<Item = (&str, &str)> {
    let split = p.labels.partition_point(|(n, _)| n.as_str() < "__name__");
    let (before, after) = p.labels.split_at(split);
    fn pair((n, v): &(String, String)) -> (&str, &str) {
        (n, v)
    }
    before
        .iter()
        .map(pair)
        .chain(std::iter::once(("__name__", &*p.name)))
        .chain(after.iter().map(pair))
}

/// Appends the `WriteRequest` for `points`, one time series per point.
pub fn encode(points: &[Point], out: &mut Vec<u8>) {
    for p in points {
        let sample_len = 9 + 1 + varint_len(p.time_ms as u64);
        let series_len: usize =
            wire_labels(p).map(|(n, v)| field_len(label_len(n, v))).sum::<usize>()
                + field_len(sample_len);
        out.push(tag(1, LEN));
        put_varint(out, series_len as u64);
        for (n, v) in wire_labels(p) {
            put_label(out, n, v);
        }
        out.push(tag(2, LEN));
        put_varint(out, sample_len as u64);
        out.push(tag(1, FIXED64));
        out.extend_from_slice(&p.value.to_le_bytes());
        out.push(tag(2, VARINT));
        // int64 is encoded as its two's-complement u64 (ten bytes when negative).
        put_varint(out, p.time_ms as u64);
    }
}

/// The HTTP body for `points`: the encoded request, snappy block-compressed.
pub fn body(points: &[Point]) -> Vec<u8> {
    let mut raw = Vec::with_capacity(points.len() * 96);
    encode(points, &mut raw);
    let mut compressed = vec![0; snap::raw::max_compress_len(raw.len())];
    match snap::raw::Encoder::new().compress(&raw, &mut compressed) {
        Ok(n) => compressed.truncate(n),
        // Only reachable for inputs beyond snappy's 4 GiB block limit, far
        // above any batch size; an empty body then fails at the server, counted.
        Err(_) => compressed.clear(),
    }
    compressed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(labels: &[(&str, &str)], value: f64, time_ms: i64) -> Point {
        Point {
            name: "m".into(),
            labels: labels.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect(),
            value,
            time_ms,
        }
    }

    #[test]
    fn encodes_known_bytes() {
        let mut out = Vec::new();
        encode(&[point(&[("a", "b")], 1.0, 1000)], &mut out);
        #[rustfmt::skip]
        let want: &[u8] = &[
            0x0a, 0x25,                                   // WriteRequest.timeseries, 37 bytes
            0x0a, 0x0d,                                   //   TimeSeries.labels, 13 bytes
            0x0a, 0x08, b'_', b'_', b'n', b'a', b'm', b'e', b'_', b'_',
            0x12, 0x01, b'm',
            0x0a, 0x06,                                   //   TimeSeries.labels, 6 bytes
            0x0a, 0x01, b'a', 0x12, 0x01, b'b',
            0x12, 0x0c,                                   //   TimeSeries.samples, 12 bytes
            0x09, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f,           //     value 1.0
            0x10, 0xe8, 0x07,                             //     timestamp 1000
        ];
        assert_eq!(out, want);
    }

    #[test]
    fn name_label_is_sorted_in_and_negative_times_take_ten_bytes() {
        let p = point(&[("A", "1"), ("z", "2")], 0.0, -1);
        let names: Vec<&str> = wire_labels(&p).map(|(n, _)| n).collect();
        assert_eq!(names, ["A", "__name__", "z"]);
        let mut out = Vec::new();
        encode(&[p], &mut out);
        assert_eq!(
            &out[out.len() - 11..],
            &[0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]
        );
        assert_eq!(usize::from(out[1]), out.len() - 2);
    }

    #[test]
    fn body_is_snappy_of_the_encoding() {
        let points: Vec<Point> = (0..500)
            .map(|i| {
                point(
                    &[("agent", "web-01"), ("cpu", "3")],
                    f64::from(i),
                    1_700_000_000_000 + i64::from(i),
                )
            })
            .collect();
        let b = body(&points);
        let mut raw = Vec::new();
        encode(&points, &mut raw);
        assert!(b.len() < raw.len() / 2, "repetitive labels compress");
        assert_eq!(snap::raw::Decoder::new().decompress_vec(&b).expect("valid snappy"), raw);
    }
}
