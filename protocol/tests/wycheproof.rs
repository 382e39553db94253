//! Wycheproof test vectors run through the very functions the channel uses:
//! [`Aead`] for AES-256-GCM, [`x25519_agree`] for X25519 and [`hkdf_sha256`]
//! for HKDF-SHA256.
//!
//! Every test counts the vectors it ran and asserts that count against the
//! data set, so that none can pass by running nothing.

use wasmtap_protocol::crypto::{
    Aead, LowOrderShare, NONCE_LEN, TAG_LEN, hkdf_sha256, x25519_agree,
};
use wasmtap_protocol::secret::Key256;
use wycheproof::TestResult;

/// `hkdf_sha256` panics by design above this output length (RFC 5869's limit
/// of 255 blocks of the SHA-256 output size).
const HKDF_MAX_OUTPUT: usize = 255 * 32;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn aes_256_gcm_vectors() {
    let set = wycheproof::aead::TestSet::load(wycheproof::aead::TestName::AesGcm)
        .expect("the AES-GCM vectors load");
    let (mut valid, mut invalid, mut other_parameters) = (0usize, 0usize, 0usize);
    for group in &set.test_groups {
        // Sizes are in bits. The channel only ever uses 256-bit keys, 96-bit
        // nonces and 128-bit tags: `Aead` cannot even express anything else.
        if group.key_size != 256
            || group.nonce_size != NONCE_LEN * 8
            || group.tag_size != TAG_LEN * 8
        {
            other_parameters += group.tests.len();
            continue;
        }
        for t in &group.tests {
            let id = t.tc_id;
            let key: [u8; 32] =
                t.key.as_slice().try_into().expect("256-bit key in a 256-bit group");
            let nonce: [u8; NONCE_LEN] =
                t.nonce.as_slice().try_into().expect("96-bit nonce in a 96-bit group");
            assert_eq!(t.tag.len(), TAG_LEN, "tc {id}: tag size of a 128-bit group");
            let aead = Aead::new(&Key256::new(key));
            let sealed = [t.ct.as_slice(), t.tag.as_slice()].concat();

            match t.result {
                TestResult::Valid | TestResult::Acceptable => {
                    let mut buf = t.pt.to_vec();
                    aead.seal(&nonce, &t.aad, &mut buf);
                    assert_eq!(hex(&buf), hex(&sealed), "tc {id} ({}): seal", t.comment);
                    let mut buf = sealed;
                    aead.open(&nonce, &t.aad, &mut buf)
                        .unwrap_or_else(|e| panic!("tc {id} ({}): open failed: {e}", t.comment));
                    assert_eq!(hex(&buf), hex(&t.pt), "tc {id} ({}): open", t.comment);
                    valid += 1;
                }
                TestResult::Invalid => {
                    let mut buf = sealed;
                    assert!(
                        aead.open(&nonce, &t.aad, &mut buf).is_err(),
                        "tc {id} ({}): an invalid ciphertext opened",
                        t.comment
                    );
                    invalid += 1;
                }
            }
        }
    }
    eprintln!(
        "AES-256-GCM: {valid} valid and {invalid} invalid vectors run, \
         {other_parameters} with other key/nonce/tag sizes not applicable"
    );
    assert!(valid > 0, "no valid AES-256-GCM vector ran");
    assert!(invalid > 0, "no invalid AES-256-GCM vector ran");
    assert_eq!(valid + invalid + other_parameters, set.number_of_tests);
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
