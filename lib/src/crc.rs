//! The CRC32 trailer of flows whose QoS has `ber` 0 (facts §1.8.8): four bytes after the
//! SDU (after the FRCT header when FRCP runs), the IEEE CRC-32 of what it follows, stored
//! big-endian as the reference's `mem_hash` does. An SDU whose trailer does not match is
//! dropped and counted (`crc_errors` in `o7sctl flow list`).
//!
//! The reference's default build never sends it: `QOS_DISABLE_CRC` makes `flow_alloc` and
//! `flow_accept` force `ber = 1`. o7s does the same by default, so its flow requests carry
//! what the reference's carry and a reference peer never gets a trailer it would not
//! strip; `O7S_QOS_CRC=1` in the allocating process's environment keeps the cube's `ber`
//! (0 for every preset but raw), and both o7s ends then add and check the trailer (an
//! accepting end follows the `ber` of the request). Where the order differs from the
//! reference's (FRCT, encryption, CRC): o7s encrypts in the data plane, after the library
//! added the trailer, so on an encrypted flow the trailer is inside the ciphertext.

use o7s_wire::qos::QosSpec;

/// Bytes of the trailer.
pub const LEN: usize = 4;

/// The environment variable that keeps `ber` 0 in the flow requests of this process.
pub const ENV: &str = "O7S_QOS_CRC";

/// Whether this process asked for CRC trailers (`O7S_QOS_CRC=1`).
pub fn wanted() -> bool {
    std::env::var(ENV).is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// The QoS a flow request carries: `qos` with `ber` 1 (as the reference's default build),
/// unless `keep` (the process asked for CRC trailers).
pub fn requested(qos: QosSpec, keep: bool) -> QosSpec {
    if keep {
        qos
    } else {
        QosSpec { ber: 1, ..qos }
    }
}

/// Whether a flow of `qos` carries the trailer.
pub fn on(qos: &QosSpec) -> bool {
    qos.ber == 0
}

/// `pdu` and its trailer, into `out` (cleared first).
pub fn seal_into(pdu: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(pdu);
    out.extend_from_slice(&crc32fast::hash(pdu).to_be_bytes());
}

/// What `pdu` carries before its trailer, if the trailer matches.
pub fn open(pdu: &[u8]) -> Option<&[u8]> {
    let (body, tail) = pdu.split_at_checked(pdu.len().checked_sub(LEN)?)?;
    (crc32fast::hash(body).to_be_bytes() == tail).then_some(body)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_trailer_is_the_big_endian_ieee_crc_of_the_facts_vectors() {
        // facts §7 (lib/crc32_test): "123456789" -> cbf43926, "0" -> f4dbdf21.
        let mut v = vec![];
        seal_into(b"123456789", &mut v);
        assert_eq!(&v[9..], [0xcb, 0xf4, 0x39, 0x26]);
        seal_into(b"0", &mut v);
        assert_eq!(v, b"0\xf4\xdb\xdf\x21");
        assert_eq!(open(&v), Some(&b"0"[..]));
    }

    #[test]
    fn a_flipped_bit_a_short_pdu_or_a_missing_trailer_fails() {
        let mut v = vec![];
        seal_into(b"987654321", &mut v);
        assert_eq!(&v[9..], [0x01, 0x5f, 0x02, 0x01]);
        for i in 0..v.len() {
            let mut w = v.clone();
            w[i] ^= 0x10;
            assert_eq!(open(&w), None, "bit flipped in byte {i}");
        }
        assert_eq!(open(&v[..3]), None);
        assert_eq!(open(b"987654321"), None);
        // An empty SDU has a trailer too.
        seal_into(b"", &mut v);
        assert_eq!(open(&v), Some(&b""[..]));
    }

    #[test]
    fn requests_carry_ber_1_unless_the_process_keeps_the_cube() {
        let data = QosSpec::DATA;
        assert_eq!(data.ber, 0);
        let r = requested(data, false);
        assert_eq!(r, QosSpec { ber: 1, ..data });
        assert!(!on(&r));
        assert_eq!(requested(data, true), data);
        assert!(on(&requested(data, true)));
        assert!(!on(&QosSpec::RAW));
    }
}
