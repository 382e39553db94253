//! The `hwmon` collector: temperatures, fan speeds and voltages of the
//! hardware monitoring chips the kernel knows, from
//! `/sys/class/hwmon/hwmon*/` (node_exporter's `hwmon` collector; what
//! `sensors` shows).
//!
//! Each `hwmonN` is a link to the chip's device directory, holding `name`
//! and one file per sensor value (`Documentation/hwmon/sysfs-interface.rst`):
//! - `tempN_input`, `tempN_max`, `tempN_crit`: millidegrees Celsius,
//!   reported as `temp_celsius`, `temp_max_celsius`, `temp_crit_celsius`;
//! - `fanN_input`: revolutions per minute, reported as `fan_rpm`;
//! - `inN_input`: millivolts, reported as `in_volts`.
//!
//! All are gauges. Each sensor is one sample with the labels `chip` (the
//! `name` file: `coretemp`, `nvme`, `acpitz`, …), `device` (where the link
//! points below `devices/`, e.g. `platform/coretemp.0`, which tells apart
//! two chips of one name and stays the same across reboots while the
//! `hwmonN` numbers may not), `sensor` (`temp1`, `fan2`, `in0`) and `label`
//! (the `tempN_label` file, e.g. `Core 0`, or the sensor when there is
//! none). A sensor whose input cannot be read or parsed (drivers answer
//! `EIO` or `ENODATA` for absent probes) is skipped.
//!
//! Where the class directory does not exist or holds no chips (most virtual
//! machines and containers) the collector reports nothing and logs that
//! once. `[config] path` (default `/sys/class/hwmon`) names the directory.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use wasmtap_collector::{Descriptor, Gauge, Guest, Sample, SampleBuilder, Schema, config, log};

struct Hwmon;

/// The default class directory.
pub const DEFAULT_PATH: &str = "/sys/class/hwmon";

static PATH: Mutex<String> = Mutex::new(String::new());
static LOGGED_ABSENT: log::Once = log::Once::new();

struct Fields {
    temp: Gauge,
    temp_max: Gauge,
    temp_crit: Gauge,
    fan: Gauge,
    volts: Gauge,
}

fn schema() -> (Schema, Fields) {
    let mut s = Schema::new();
    let f = Fields {
        temp: s.gauge("temp_celsius", "celsius", "Temperature"),
        temp_max: s.gauge("temp_max_celsius", "celsius", "Temperature the chip deems too high"),
        temp_crit: s.gauge("temp_crit_celsius", "celsius", "Critical temperature of the sensor"),
        fan: s.gauge("fan_rpm", "rpm", "Fan speed in revolutions per minute"),
        volts: s.gauge("in_volts", "volts", "Voltage"),
    };
    // The kernel's files count thousandths.
    for g in [f.temp, f.temp_max, f.temp_crit, f.volts] {
        s.precision(g, 3);
    }
    (s, f)
}

/// The kind of a sensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// `tempN`: millidegrees Celsius.
    Temp,
    /// `fanN`: revolutions per minute.
    Fan,
    /// `inN`: millivolts.
    In,
}

impl Kind {
    fn prefix(self) -> &'static str {
        match self {
            Self::Temp => "temp",
            Self::Fan => "fan",
            Self::In => "in",
        }
    }

    /// How many file units make one reported unit.
    fn scale(self) -> f64 {
        match self {
            Self::Temp | Self::In => 1000.0,
            Self::Fan => 1.0,
        }
    }
}

/// What a sensor file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attr {
    /// The current value (`_input`).
    Input,
    /// The sensor's name (`_label`).
    Label,
    /// The high limit (`_max`).
    Max,
    /// The critical limit (`_crit`).
    Crit,
}

/// Which sensor value a file of a chip directory holds: `temp2_input` is
/// `(Temp, 2, Input)`; files the collector does not report are `None`.
pub fn sensor_file(name: &str) -> Option<(Kind, u32, Attr)> {
    let (sensor, attr) = name.split_once('_')?;
    let attr = match attr {
        "input" => Attr::Input,
        "label" => Attr::Label,
        "max" => Attr::Max,
        "crit" => Attr::Crit,
        _ => return None,
    };
    for kind in [Kind::Temp, Kind::Fan, Kind::In] {
        if let Some(n) = sensor.strip_prefix(kind.prefix())
            && !n.is_empty()
            && n.bytes().all(|b| b.is_ascii_digit())
        {
            return Some((kind, n.parse().ok()?, attr));
        }
    }
    None
}

/// Parses a value file (`45000`, `-5000`) into the reported unit: degrees
/// Celsius, volts or RPM.
pub fn parse_value(text: &str, kind: Kind) -> Result<f64, String> {
    let word = text.trim();
    let raw: i64 = word.parse().map_err(|_| format!("bad value `{}`", word.escape_debug()))?;
    Ok(raw as f64 / kind.scale())
}

/// The device a `hwmonN` link points to, from its target:
/// `../../devices/platform/coretemp.0/hwmon/hwmon1` is `platform/coretemp.0`.
/// A chip registered without a parent device
/// (`../../devices/virtual/hwmon/hwmon3`) keeps its whole path, as
/// `virtual` alone would not tell such chips apart.
pub fn device_of(target: &str) -> Option<String> {
    let (_, rest) = target.split_once("devices/")?;
    let (parent, _hwmon_n) = rest.rsplit_once('/')?;
    let device = parent.strip_suffix("/hwmon").unwrap_or(parent);
    match device {
        "" | "virtual" => Some(rest.to_owned()),
        d => Some(d.to_owned()),
    }
}

/// One sensor's readings.
#[derive(Debug, Clone, PartialEq)]
pub struct Sensor {
    /// Temperature, fan or voltage.
    pub kind: Kind,
    /// `N` of `tempN`.
    pub index: u32,
    /// The `_label` file, if any.
    pub label: Option<String>,
    /// The current value in the reported unit.
    pub input: f64,
    /// The `_max` limit, if any.
    pub max: Option<f64>,
    /// The `_crit` limit, if any.
    pub crit: Option<f64>,
}

impl Sensor {
    /// `temp1`, `fan2`, `in0`.
    pub fn name(&self) -> String {
        format!("{}{}", self.kind.prefix(), self.index)
    }
}

/// One chip.
#[derive(Debug, Clone, PartialEq)]
pub struct Chip {
    /// The `name` file, or the `hwmonN` directory's name without one.
    pub name: String,
    /// See [`device_of`]; the `hwmonN` name when the entry is not a link.
    pub device: String,
    /// Sensors with a readable input, by kind and index.
    pub sensors: Vec<Sensor>,
    /// Sensors left out, each with the reason.
    pub skipped: Vec<String>,
}

fn read_trimmed(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|t| t.trim().to_owned())
}

/// Reads one chip directory (`…/hwmonN`, links followed).
pub fn read_chip(dir: &Path, entry_name: &str, device: String) -> Result<Chip, String> {
    let listing = std::fs::read_dir(dir).map_err(|e| format!("listing {}: {e}", dir.display()))?;
    let mut inputs: Vec<(Kind, u32)> = Vec::new();
    for file in listing.flatten() {
        let name = file.file_name();
        if let Some((kind, index, Attr::Input)) = name.to_str().and_then(sensor_file) {
            inputs.push((kind, index));
        }
    }
    inputs.sort_unstable();
    let name = read_trimmed(&dir.join("name"))
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| entry_name.to_owned());
    let mut chip = Chip { name, device, sensors: Vec::new(), skipped: Vec::new() };
    for (kind, index) in inputs {
        let base = format!("{}{index}", kind.prefix());
        let value = |attr: &str| -> Result<f64, String> {
            let path = dir.join(format!("{base}_{attr}"));
            let text =
                std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            parse_value(&text, kind).map_err(|e| format!("{}: {e}", path.display()))
        };
        match value("input") {
            Ok(input) => chip.sensors.push(Sensor {
                kind,
                index,
                label: read_trimmed(&dir.join(format!("{base}_label"))).filter(|l| !l.is_empty()),
                input,
                max: value("max").ok(),
                crit: value("crit").ok(),
            }),
            Err(e) => chip.skipped.push(e),
        }
    }
    Ok(chip)
}

/// Reads every `hwmon*` chip of the class directory `root`; `None` when
/// `root` does not exist.
pub fn scan(root: &Path) -> Result<Option<Vec<Chip>>, String> {
    let listing = match std::fs::read_dir(root) {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("listing {}: {e}", root.display())),
    };
    let mut entries: Vec<(String, PathBuf)> = listing
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.starts_with("hwmon").then(|| (name, e.path()))
        })
        .collect();
    entries.sort();
    let mut chips = Vec::with_capacity(entries.len());
    for (name, path) in entries {
        let device = std::fs::read_link(&path)
            .ok()
            .and_then(|t| t.to_str().and_then(device_of))
            .unwrap_or_else(|| name.clone());
        chips.push(read_chip(&path, &name, device)?);
    }
    Ok(Some(chips))
}

fn samples(chips: &[Chip], f: &Fields) -> Vec<Sample> {
    let mut out = Vec::new();
    for chip in chips {
        for s in &chip.sensors {
            let sensor = s.name();
            let label = s.label.clone().unwrap_or_else(|| sensor.clone());
            let mut b = SampleBuilder::new()
                .label("chip", chip.name.as_str())
                .label("device", chip.device.as_str())
                .label("sensor", sensor)
                .label("label", label);
            b = match s.kind {
                Kind::Temp => {
                    b = b.gauge(f.temp, s.input);
                    if let Some(max) = s.max {
                        b = b.gauge(f.temp_max, max);
                    }
                    if let Some(crit) = s.crit {
                        b = b.gauge(f.temp_crit, crit);
                    }
                    b
                }
                Kind::Fan => b.gauge(f.fan, s.input),
                Kind::In => b.gauge(f.volts, s.input),
            };
            out.push(b.build());
        }
    }
    out
}

fn path() -> String {
    let p = PATH.lock().map(|p| p.clone()).unwrap_or_default();
    if p.is_empty() { DEFAULT_PATH.to_owned() } else { p }
}

impl Guest for Hwmon {
    fn describe() -> Descriptor {
        schema().0.into_descriptor("hwmon", env!("CARGO_PKG_VERSION"), 10_000)
    }

    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        config::only(&config, &["path"])?;
        let path = config::get(&config, "path").unwrap_or(DEFAULT_PATH);
        if !path.starts_with('/') {
            return Err(format!("config.path must be absolute, not `{}`", path.escape_debug()));
        }
        if let Ok(mut p) = PATH.lock() {
            *p = path.to_owned();
        }
        Ok(())
    }

    fn collect() -> Result<Vec<Sample>, String> {
        let root = path();
        let chips = scan(Path::new(&root))?.unwrap_or_default();
        if chips.is_empty() {
            if LOGGED_ABSENT.first() {
                log::info(&format!("no hardware monitoring chips in {root}; reporting nothing"));
            }
            return Ok(Vec::new());
        }
        for chip in &chips {
            for reason in &chip.skipped {
                log::debug(&format!("skipping a sensor of {}: {reason}", chip.name));
            }
        }
        let (_, f) = schema();
        Ok(samples(&chips, &f))
    }
}

wasmtap_collector::export!(Hwmon);

#[cfg(test)]
mod tests {
    use super::*;

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
    }

    #[test]
    fn sensor_files() {
        assert_eq!(sensor_file("temp2_input"), Some((Kind::Temp, 2, Attr::Input)));
        assert_eq!(sensor_file("fan10_label"), Some((Kind::Fan, 10, Attr::Label)));
        assert_eq!(sensor_file("in0_crit"), Some((Kind::In, 0, Attr::Crit)));
        for other in
            ["name", "temp1_type", "pwm1", "temp_input", "tempx_input", "intrusion0_alarm", "in_"]
        {
            assert_eq!(sensor_file(other), None, "{other}");
        }
        assert_eq!(sensor_file("temp99999999999_input"), None, "index overflow");
    }

    #[test]
    fn values_and_units() {
        assert_eq!(parse_value("45000\n", Kind::Temp), Ok(45.0));
        assert_eq!(parse_value("-5000\n", Kind::Temp), Ok(-5.0));
        assert_eq!(parse_value("12096\n", Kind::In), Ok(12.096));
        assert_eq!(parse_value("1132\n", Kind::Fan), Ok(1132.0));
        for bad in ["", "N/A", "4.5", "1 2", "99999999999999999999"] {
            assert!(parse_value(bad, Kind::Temp).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn devices_from_link_targets() {
        assert_eq!(
            device_of("../../devices/platform/coretemp.0/hwmon/hwmon1").as_deref(),
            Some("platform/coretemp.0")
        );
        assert_eq!(
            device_of("../../devices/virtual/thermal/thermal_zone0/hwmon0").as_deref(),
            Some("virtual/thermal/thermal_zone0")
        );
        assert_eq!(
            device_of("../../devices/virtual/hwmon/hwmon3").as_deref(),
            Some("virtual/hwmon/hwmon3")
        );
        assert_eq!(device_of("hwmon0"), None);
        assert_eq!(device_of("../../devices/hwmon0"), None);
    }

    #[test]
    fn reads_the_documented_layout() {
        let chips = scan(&fixtures().join("sys/class/hwmon")).expect("scan").expect("exists");
        let names: Vec<(&str, &str)> =
            chips.iter().map(|c| (c.name.as_str(), c.device.as_str())).collect();
        assert_eq!(
            names,
            [
                ("acpitz", "virtual/thermal/thermal_zone0"),
                ("coretemp", "platform/coretemp.0"),
                ("nvme", "pci0000:00/0000:00:1d.0/0000:3d:00.0/nvme/nvme0"),
                ("nct6798", "platform/nct6775.656"),
            ]
        );
        let core = &chips[1];
        assert_eq!(core.sensors.len(), 3);
        assert_eq!(
            core.sensors[0],
            Sensor {
                kind: Kind::Temp,
                index: 1,
                label: Some("Package id 0".into()),
                input: 45.0,
                max: Some(80.0),
                crit: Some(100.0),
            }
        );
        assert_eq!((core.sensors[2].input, core.sensors[2].max), (44.5, None));
        assert_eq!(chips[2].sensors[1].input, -5.0);
        assert_eq!(chips[0].sensors[0].label, None);

        let sio = &chips[3];
        let got: Vec<(String, Option<&str>, f64)> =
            sio.sensors.iter().map(|s| (s.name(), s.label.as_deref(), s.input)).collect();
        assert_eq!(
            got,
            [
                ("fan1".to_owned(), None, 1132.0),
                ("fan2".to_owned(), None, 0.0),
                ("in0".to_owned(), Some("Vcore"), 1.048),
                ("in1".to_owned(), None, 12.096),
            ]
        );
        assert_eq!(sio.skipped.len(), 1);
        assert!(sio.skipped[0].contains("temp7_input") && sio.skipped[0].contains("N/A"));
    }

    #[test]
    fn absent_or_empty_class_directory() {
        assert_eq!(scan(&fixtures().join("nonexistent")), Ok(None));
        assert_eq!(scan(&fixtures().join("empty/class/hwmon")), Ok(Some(Vec::new())));
    }
}
