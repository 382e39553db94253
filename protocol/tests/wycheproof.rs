//! Wycheproof test vectors run through the very functions the channel uses:
//! [`Aead`] for AES-256-GCM and ChaCha20-Poly1305, [`aegis128l_seal`] and
//! [`aegis128l_open`] for AEGIS-128L, [`x25519_agree`] for X25519 and
//! [`hkdf_sha256`] for HKDF-SHA256.
//!
//! Every test counts the vectors it ran and asserts that count against the
//! data set, so that none can pass by running nothing.

use wasmtap_protocol::crypto::{
    Aead, LowOrderShare, NONCE_LEN, TAG_LEN, aegis128l_open, aegis128l_seal, hkdf_sha256,
    x25519_agree,
};
use wasmtap_protocol::secret::{Key256, Secret};
use wycheproof::TestResult;

/// `hkdf_sha256` panics by design above this output length (RFC 5869's limit
/// of 255 blocks of the SHA-256 output size).
const HKDF_MAX_OUTPUT: usize = 255 * 32;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Seals `pt` (key, nonce, aad, buffer), appending the tag.
type Seal<'a> = &'a dyn Fn(&[u8], &[u8], &[u8], &mut Vec<u8>);
/// Opens ciphertext and tag (key, nonce, aad, buffer) in place; false when
/// they do not authenticate.
type Open<'a> = &'a dyn Fn(&[u8], &[u8], &[u8], &mut Vec<u8>) -> bool;

/// Runs every vector of `name` with the sizes the channel uses (bytes)
/// through `seal` and `open`.
fn aead_vectors(
    name: wycheproof::aead::TestName,
    label: &str,
    (key_len, nonce_len): (usize, usize),
    seal: Seal<'_>,
    open: Open<'_>,
) {
    let set = wycheproof::aead::TestSet::load(name).expect("the vectors load");
    let (mut valid, mut invalid, mut other_parameters) = (0usize, 0usize, 0usize);
    for group in &set.test_groups {
        // Sizes are in bits. The channel only ever uses these key and nonce
        // sizes and 128-bit tags: its functions cannot express anything else.
        if group.key_size != key_len * 8
            || group.nonce_size != nonce_len * 8
            || group.tag_size != TAG_LEN * 8
        {
            other_parameters += group.tests.len();
            continue;
        }
        for t in &group.tests {
            let id = t.tc_id;
            assert_eq!(t.tag.len(), TAG_LEN, "tc {id}: tag size of a 128-bit group");
            let sealed = [t.ct.as_slice(), t.tag.as_slice()].concat();
            match t.result {
                TestResult::Valid | TestResult::Acceptable => {
                    let mut buf = t.pt.to_vec();
                    seal(&t.key, &t.nonce, &t.aad, &mut buf);
                    assert_eq!(hex(&buf), hex(&sealed), "tc {id} ({}): seal", t.comment);
                    let mut buf = sealed;
                    assert!(open(&t.key, &t.nonce, &t.aad, &mut buf), "tc {id}: open failed");
                    assert_eq!(hex(&buf), hex(&t.pt), "tc {id} ({}): open", t.comment);
                    valid += 1;
                }
                TestResult::Invalid => {
                    let mut buf = sealed;
                    assert!(
                        !open(&t.key, &t.nonce, &t.aad, &mut buf),
                        "tc {id} ({}): an invalid ciphertext opened",
                        t.comment
                    );
                    invalid += 1;
                }
            }
        }
    }
    eprintln!(
        "{label}: {valid} valid and {invalid} invalid vectors run, \
         {other_parameters} with other key/nonce/tag sizes not applicable"
    );
    assert!(valid > 0, "no valid {label} vector ran");
    assert!(invalid > 0, "no invalid {label} vector ran");
    assert_eq!(valid + invalid + other_parameters, set.number_of_tests);
}

fn key256(key: &[u8]) -> Key256 {
    Key256::new(key.try_into().expect("256-bit key in a 256-bit group"))
}

fn nonce96(nonce: &[u8]) -> [u8; NONCE_LEN] {
    nonce.try_into().expect("96-bit nonce in a 96-bit group")
}

#[test]
fn aes_256_gcm_vectors() {
    aead_vectors(
        wycheproof::aead::TestName::AesGcm,
        "AES-256-GCM",
        (32, NONCE_LEN),
        &|key, nonce, aad, buf| Aead::new(&key256(key)).seal(&nonce96(nonce), aad, buf),
        &|key, nonce, aad, buf| Aead::new(&key256(key)).open(&nonce96(nonce), aad, buf).is_ok(),
    );
}

#[test]
fn chacha20_poly1305_vectors() {
    aead_vectors(
        wycheproof::aead::TestName::ChaCha20Poly1305,
        "ChaCha20-Poly1305",
        (32, NONCE_LEN),
        &|key, nonce, aad, buf| {
            Aead::chacha20_poly1305(&key256(key)).seal(&nonce96(nonce), aad, buf)
        },
        &|key, nonce, aad, buf| {
            Aead::chacha20_poly1305(&key256(key)).open(&nonce96(nonce), aad, buf).is_ok()
        },
    );
}

#[test]
fn aegis_128l_vectors() {
    let key = |k: &[u8]| Secret::<16>::new(k.try_into().expect("128-bit key"));
    let nonce = |n: &[u8]| -> [u8; 16] { n.try_into().expect("128-bit nonce") };
    aead_vectors(
        wycheproof::aead::TestName::Aegis128L,
        "AEGIS-128L",
        (16, 16),
        &|k, n, aad, buf| {
            let tag = aegis128l_seal(&key(k), &nonce(n), aad, buf);
            buf.extend_from_slice(&tag);
        },
        &|k, n, aad, buf| {
            let Some(at) = buf.len().checked_sub(TAG_LEN) else { return false };
            let tag: [u8; TAG_LEN] = buf[at..].try_into().expect("16 bytes");
            buf.truncate(at);
            aegis128l_open(&key(k), &nonce(n), aad, &tag, buf).is_ok()
        },
    );
}

#[test]
fn x25519_vectors() {
    let set = wycheproof::xdh::TestSet::load(wycheproof::xdh::TestName::X25519)
        .expect("the X25519 vectors load");
    let (mut agreed, mut low_order) = (0usize, 0usize);
    for group in &set.test_groups {
        assert_eq!(group.curve, wycheproof::MontgomeryCurve::X25519);
        for t in &group.tests {
            let id = t.tc_id;
            let private: [u8; 32] =
                t.private_key.as_slice().try_into().expect("32-byte X25519 private key");
            let public: [u8; 32] =
                t.public_key.as_slice().try_into().expect("32-byte X25519 public key");
            let result = x25519_agree(&private, &public);
            if t.shared_secret.iter().all(|&b| b == 0) {
                // A non-contributory result: the channel refuses it on purpose.
                assert_eq!(
                    result.as_ref().err(),
                    Some(&LowOrderShare),
                    "tc {id} ({}): all-zero shared secret was not refused",
                    t.comment
                );
                low_order += 1;
            } else if t.result == TestResult::Invalid {
                assert!(result.is_err(), "tc {id} ({}): invalid vector accepted", t.comment);
                agreed += 1;
            } else {
                let shared =
                    result.unwrap_or_else(|e| panic!("tc {id} ({}): refused: {e}", t.comment));
                assert_eq!(
                    hex(shared.expose()),
                    hex(&t.shared_secret),
                    "tc {id} ({}): shared secret",
                    t.comment
                );
                agreed += 1;
            }
        }
    }
    eprintln!("X25519: {agreed} agreements checked, {low_order} low-order shares refused");
    assert!(agreed > 0, "no X25519 agreement vector ran");
    assert!(low_order > 0, "no all-zero X25519 vector ran");
    assert_eq!(agreed + low_order, set.number_of_tests);
}

#[test]
fn hkdf_sha256_vectors() {
    let set = wycheproof::hkdf::TestSet::load(wycheproof::hkdf::TestName::HkdfSha256)
        .expect("the HKDF-SHA256 vectors load");
    let (mut ran, mut skipped) = (0usize, 0usize);
    for group in &set.test_groups {
        for t in &group.tests {
            let id = t.tc_id;
            if t.size > HKDF_MAX_OUTPUT {
                // `hkdf_sha256` panics for these by design: every caller asks
                // for a fixed 32-byte output, so an oversized request is a
                // programming error, not an input to handle. Wycheproof marks
                // them invalid; there is no error value to check.
                assert_eq!(t.result, TestResult::Invalid, "tc {id}: oversized but valid");
                skipped += 1;
                continue;
            }
            assert_ne!(
                t.result,
                TestResult::Invalid,
                "tc {id} ({}): an invalid vector of a legal size cannot be refused by \
                 hkdf_sha256, which has no error path",
                t.comment
            );
            let mut out = vec![0u8; t.size];
            hkdf_sha256(&t.salt, &[&t.ikm], &t.info, &mut out);
            assert_eq!(hex(&out), hex(&t.okm), "tc {id} ({}): okm", t.comment);

            // The input key material is given in parts, which are concatenated:
            // any split must give the same output.
            let (a, b) = t.ikm.split_at(t.ikm.len() / 2);
            let mut split = vec![0u8; t.size];
            hkdf_sha256(&t.salt, &[a, &[], b], &t.info, &mut split);
            assert_eq!(hex(&split), hex(&t.okm), "tc {id} ({}): okm with split ikm", t.comment);
            ran += 1;
        }
    }
    eprintln!("HKDF-SHA256: {ran} vectors run, {skipped} skipped (output over {HKDF_MAX_OUTPUT})");
    assert!(ran > 0, "no HKDF-SHA256 vector ran");
    assert_eq!(ran + skipped, set.number_of_tests);
}
