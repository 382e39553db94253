//! The collector's persisted key-value state (at most 64 KiB in all), kept
//! by the agent across restarts, plus helpers for the common case: rates of
//! monotonically increasing counters.

use crate::bindings::wasmtap::collector::host;

/// The bytes stored under `key`.
pub fn get(key: &str) -> Option<Vec<u8>> {
    host::state_get(key)
}

/// Stores `value` under `key`; fails when the state would exceed its cap.
pub fn set(key: &str, value: &[u8]) -> Result<(), String> {
    host::state_set(key, value)
}

/// Removes `key`.
pub fn remove(key: &str) {
    host::state_remove(key);
}

/// Numbers stored under `key` with [`set_numbers`].
pub fn get_numbers(key: &str) -> Option<Vec<f64>> {
    get(key).map(|b| decode_numbers(&b))
}

/// Stores numbers under `key`.
pub fn set_numbers(key: &str, values: &[f64]) -> Result<(), String> {
    set(key, &encode_numbers(values))
}

/// Encodes numbers as little-endian `f64`s.
pub fn encode_numbers(values: &[f64]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Decodes little-endian `f64`s, ignoring a partial tail.
pub fn decode_numbers(bytes: &[u8]) -> Vec<f64> {
    bytes
        .chunks_exact(8)
        .map(|c| {
            let mut a = [0u8; 8];
            a.copy_from_slice(c);
            f64::from_le_bytes(a)
        })
        .collect()
}

/// Seconds since the Unix epoch, from the WASI wall clock.
pub fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Per-second rates of counters between two readings.
///
/// `previous` and `current` are `(time_secs, counters)`. A counter that went
/// down (a reset or wrap) or a reading without a previous one yields `None`
/// for that counter.
pub fn rates(previous: Option<&[f64]>, current: &[f64], now: f64) -> Vec<Option<f64>> {
    let Some((&then, before)) = previous.and_then(|p| p.split_first()) else {
        return vec![None; current.len()];
    };
    let dt = now - then;
    current
        .iter()
        .enumerate()
        .map(|(i, &v)| match before.get(i) {
            Some(&b) if dt > 0.0 && v >= b => Some((v - b) / dt),
            _ => None,
        })
        .collect()
}

/// Stores `counters` under `key` with the time `now`, and returns their
/// per-second rates since the previous call with the same key.
pub fn counter_rates(key: &str, counters: &[f64], now: f64) -> Result<Vec<Option<f64>>, String> {
    let previous = get_numbers(key);
    let out = rates(previous.as_deref(), counters, now);
    let mut record = Vec::with_capacity(counters.len() + 1);
    record.push(now);
    record.extend_from_slice(counters);
    set_numbers(key, &record)?;
    Ok(out)
}

/// Per-second rates of several named series of counters (one per CPU, disk
/// or network interface), each kept with [`counter_rates`] under the key
/// `{prefix}{name}`; returns one result per series, in order.
///
/// The names are kept too, under the key `prefix` itself, so the state of a
/// series that disappeared (an unplugged disk, a deleted interface) is
/// removed instead of filling the 64 KiB state. A series whose state cannot
/// be stored (the state is full, the key is over 128 bytes, the name is empty
/// or holds a newline) gets an `Err` and no rates; the other series go on.
pub fn series_rates(
    prefix: &str,
    series: &[(&str, &[f64])],
    now: f64,
) -> Vec<Result<Vec<Option<f64>>, String>> {
    let names: Vec<&str> =
        series.iter().map(|(n, _)| *n).filter(|n| valid_series_name(n)).collect();
    let before = get(prefix).map(|b| decode_names(&b)).unwrap_or_default();
    for gone in departed(&before, &names) {
        remove(&format!("{prefix}{gone}"));
    }
    // The index is written first: a series key is only ever stored once its
    // name is in the index, so every stored key can later be removed.
    let index = set(prefix, &encode_names(&names));
    series
        .iter()
        .map(|(name, counters)| {
            if !valid_series_name(name) {
                return Err(format!("invalid series name {:?}", name.escape_debug()));
            }
            index.clone()?;
            counter_rates(&format!("{prefix}{name}"), counters, now)
        })
        .collect()
}

fn valid_series_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('\n')
}

/// Encodes series names for [`series_rates`]'s index: one per line.
pub fn encode_names(names: &[&str]) -> Vec<u8> {
    names.join("\n").into_bytes()
}

/// Decodes [`encode_names`]' output; bytes that are not UTF-8 are replaced,
/// and empty lines are skipped.
pub fn decode_names(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes)
        .split('\n')
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The names of `before` that are not in `now`.
pub fn departed<'a>(before: &'a [String], now: &[&str]) -> Vec<&'a str> {
    before.iter().map(String::as_str).filter(|b| !now.contains(b)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip() {
        let v = [1.5, -2.0, f64::MAX];
        assert_eq!(decode_numbers(&encode_numbers(&v)), v);
        assert_eq!(decode_numbers(&[0; 12]).len(), 1);
    }

    #[test]
    fn rates_between_readings() {
        assert_eq!(rates(None, &[1.0, 2.0], 10.0), vec![None, None]);
        let prev = [10.0, 100.0, 50.0];
        assert_eq!(rates(Some(&prev), &[120.0, 40.0], 12.0), vec![Some(10.0), None]);
        assert_eq!(rates(Some(&prev), &[120.0], 10.0), vec![None], "no time passed");
        assert_eq!(rates(Some(&[10.0]), &[1.0], 11.0), vec![None], "no previous value");
    }

    #[test]
    fn series_names_round_trip() {
        let names = ["eth0", "wlan0", "veth1a2b"];
        assert_eq!(decode_names(&encode_names(&names)), names);
        assert!(decode_names(b"").is_empty());
        assert_eq!(decode_names(b"a\n\nb\xff"), ["a", "b\u{fffd}"]);
    }

    #[test]
    fn departed_series() {
        let before = vec!["sda".to_owned(), "sdb".to_owned(), "nvme0n1".to_owned()];
        assert_eq!(departed(&before, &["sda", "nvme0n1", "sdc"]), ["sdb"]);
        assert!(departed(&[], &["sda"]).is_empty());
        assert!(!valid_series_name("") && !valid_series_name("a\nb") && valid_series_name("0"));
    }
}
