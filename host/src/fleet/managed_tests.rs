use super::*;
use crate::signing::SecretKey;
use rand::SeedableRng as _;

const MAX: u64 = 1 << 20;

fn open() -> (tempfile::TempDir, Managed) {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = Managed::open(&dir.path().join("collectors"), MAX).expect("open");
    (dir, m)
}

fn wanted(name: &str, blob: &[u8], manifest: Option<&str>) -> Wanted {
    Wanted {
        name: name.into(),
        version: "1.0.0".into(),
        sha256: fleet::sha256_hex(blob),
        size: blob.len() as u64,
        manifest: manifest.map(str::to_owned),
        signature: None,
    }
}

fn send(m: &mut Managed, blob: &[u8]) {
    let sha = fleet::sha256_hex(blob);
    let mut at = 0;
    for piece in blob.chunks(7) {
        let r = m.put(&sha, blob.len() as u64, at, piece).expect("put");
        at = r.bytes;
    }
    assert_eq!(at, blob.len() as u64);
}

#[test]
fn a_blob_arrives_in_pieces_and_resumes_where_it_stopped() {
    let (_d, mut m) = open();
    let blob = b"0123456789abcdefghij";
    let sha = fleet::sha256_hex(blob);
    assert_eq!(m.put(&sha, 20, 0, &blob[..8]).expect("put").bytes, 8);
    // A piece sent again, or one from too far: nothing written, the sender learns where to go on.
    assert_eq!(m.put(&sha, 20, 0, &blob[..8]).expect("put").bytes, 8);
    assert_eq!(m.put(&sha, 20, 12, &blob[12..]).expect("put").bytes, 8);
    assert_eq!(m.blobs(), vec![fleet::Partial { sha256: sha.clone(), bytes: 8 }]);
    // A new session (a reopened directory) resumes too.
    let mut m = Managed::open(m.dir(), MAX).expect("reopen");
    assert_eq!(m.put(&sha, 20, 8, &blob[8..]).expect("put").bytes, 20);
    assert_eq!(m.put(&sha, 20, 0, b"x").expect("put").bytes, 20, "complete: nothing more wanted");
    assert!(m.dir().join(".blobs").join(&sha).is_file());
}

#[test]
fn damaged_oversized_and_malformed_pieces_are_refused_and_discarded() {
    let (_d, mut m) = open();
    let blob = b"the real component";
    let sha = fleet::sha256_hex(blob);
    let n = blob.len() as u64;
    // Tampered in transit: the last piece tells.
    m.put(&sha, n, 0, &blob[..5]).expect("put");
    let err = m.put(&sha, n, 5, b"THE REAL COMPONENT"[5..].as_ref()).expect_err("damaged");
    assert_eq!(err, FleetError::Damaged(sha.clone()));
    assert!(m.blobs().is_empty(), "discarded");
    // Longer than announced.
    let err = m.put(&sha, 3, 0, blob).expect_err("too long");
    assert!(matches!(err, FleetError::BadRequest(_)), "{err}");
    assert!(m.blobs().is_empty());
    assert_eq!(
        m.put(&sha, MAX + 1, 0, b"x"),
        Err(FleetError::TooLarge { size: MAX + 1, max: MAX })
    );
    assert!(matches!(m.put("../../etc/passwd", 1, 0, b"x"), Err(FleetError::BadRequest(_))));
    // Blobs a proxy never applies cannot fill the disk.
    for i in 0..BLOBS_PER_MAX {
        let piece = format!("{i}").repeat(10);
        m.put(&fleet::sha256_hex(piece.as_bytes()), MAX, 0, piece.as_bytes()).expect("room");
    }
    let err = m.put(&fleet::sha256_hex(b"one more"), MAX, 0, b"one more").expect_err("full");
    assert!(matches!(err, FleetError::TooLarge { .. }), "{err}");
}

#[test]
fn apply_installs_replaces_keeps_the_replaced_blob_and_removes() {
    let (_d, mut m) = open();
    let (v1, v2) = (b"version one".as_slice(), b"version two".as_slice());
    send(&mut m, v1);
    let bounds = Bounds::default();
    let manifest = "[grants]\nread = [\"/proc\"]\n";
    let desired = Desired { collectors: vec![wanted("cpu", v1, Some(manifest))] };
    let applied = m.apply(&desired, &bounds, &[]).expect("apply");
    assert_eq!(applied.installed, vec!["cpu"]);
    assert_eq!(std::fs::read(m.dir().join("cpu.wasm")).expect("installed"), v1);
    assert_eq!(std::fs::read_to_string(m.dir().join("cpu.toml")).expect("manifest"), manifest);
    assert_eq!(m.installed().get("cpu"), Some(&fleet::sha256_hex(v1)));
    assert_eq!(m.installed_names(), ["cpu"], "the names alone: the manifest and blobs are not");
    // The same set again changes nothing.
    assert_eq!(m.apply(&desired, &bounds, &[]).expect("apply"), Applied::default());

    send(&mut m, v2);
    let applied = m.apply(&Desired { collectors: vec![wanted("cpu", v2, None)] }, &bounds, &[]);
    assert_eq!(applied.expect("apply").installed, vec!["cpu"]);
    assert!(!m.dir().join("cpu.toml").exists(), "no manifest now: none left behind");
    // Back to v1 without a transfer: its blob was kept.
    assert!(m.blobs().iter().any(|b| b.sha256 == fleet::sha256_hex(v1)));
    let applied = m.apply(&desired, &bounds, &[]).expect("rollback");
    assert_eq!(applied.installed, vec!["cpu"]);
    assert_eq!(std::fs::read(m.dir().join("cpu.wasm")).expect("installed"), v1);

    let applied = m.apply(&Desired::default(), &bounds, &[]).expect("apply");
    assert_eq!(applied.removed, vec!["cpu"]);
    assert!(m.installed().is_empty() && m.installed_names().is_empty());
    assert!(!m.dir().join("cpu.toml").exists());
    assert!(m.blobs().is_empty(), "nothing kept for a collector no longer wanted");
}

#[test]
fn over_granted_unsigned_and_missing_versions_are_refused_and_the_old_one_stays() {
    let (_d, mut m) = open();
    let bounds = Bounds::default();
    let (v1, v2) = (b"good".as_slice(), b"greedy".as_slice());
    send(&mut m, v1);
    m.apply(&Desired { collectors: vec![wanted("x", v1, None)] }, &bounds, &[]).expect("apply");
    send(&mut m, v2);
    let greedy =
        Desired { collectors: vec![wanted("x", v2, Some("[grants]\nread = [\"/etc\"]\n"))] };
    let applied = m.apply(&greedy, &bounds, &[]).expect("apply");
    let refusal = &applied.refused["x"];
    assert!(refusal.reason.contains("/etc"), "{}", refusal.reason);
    assert_eq!(m.installed()["x"], fleet::sha256_hex(v1), "the installed version stays");
    // Reported until the proxy stops asking for it, across restarts.
    let mut m = Managed::open(m.dir(), MAX).expect("reopen");
    assert_eq!(m.refusals()["x"].sha256, fleet::sha256_hex(v2));

    // With trusted keys: unsigned and wrongly signed are refused, well signed installed.
    let key = SecretKey::generate(&mut rand::rngs::StdRng::seed_from_u64(7));
    let other = SecretKey::generate(&mut rand::rngs::StdRng::seed_from_u64(8));
    let trusted = [key.public()];
    let mut w = wanted("x", v2, None);
    let applied = m.apply(&Desired { collectors: vec![w.clone()] }, &bounds, &trusted);
    assert!(applied.expect("apply").refused["x"].reason.contains("unsigned"));
    w.signature = Some(other.sign(v2));
    let applied = m.apply(&Desired { collectors: vec![w.clone()] }, &bounds, &trusted);
    assert!(applied.expect("apply").refused["x"].reason.contains("signature"));
    w.signature = Some(key.sign(v2));
    let applied = m.apply(&Desired { collectors: vec![w] }, &bounds, &trusted).expect("apply");
    assert_eq!(applied.installed, vec!["x"]);
    assert!(m.refusals().is_empty(), "the refusal is cleared once a version installs");

    // Never received.
    let never = wanted("y", b"never sent", None);
    let applied = m.apply(&Desired { collectors: vec![never] }, &bounds, &[]).expect("apply");
    assert!(applied.refused["y"].reason.contains("not received"));
}

#[test]
fn malformed_desired_sets_change_nothing() {
    let (_d, mut m) = open();
    send(&mut m, b"v");
    let bounds = Bounds::default();
    m.apply(&Desired { collectors: vec![wanted("a", b"v", None)] }, &bounds, &[]).expect("apply");
    for bad in [
        vec![wanted("../a", b"v", None)],
        vec![wanted("a", b"v", None), wanted("a", b"v", None)],
        vec![Wanted { sha256: "zz".into(), ..wanted("b", b"v", None) }],
        (0..=MAX_MANAGED).map(|i| wanted(&format!("c{i}"), b"v", None)).collect(),
    ] {
        let err = m.apply(&Desired { collectors: bad }, &bounds, &[]).expect_err("refused");
        assert!(matches!(err, FleetError::BadRequest(_)), "{err}");
        assert!(m.installed().contains_key("a"), "nothing removed");
    }
}
