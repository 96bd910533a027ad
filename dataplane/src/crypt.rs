//! Per-packet encryption of a flow's SDUs in the data plane (the app sees plaintext):
//! `IV (12 random bytes, top bit of the first = key phase) | ciphertext | tag (16)`, no AAD,
//! as the reference. The key rotates every 2^bits packets sent:
//! `k' = HKDF-SHA256(k, salt = SHA-256(initial key), info "o7s-key-rotation")`; the receiver
//! follows the phase bit and keeps the previous key for packets still in flight.
//!
//! Both directions use the same key, as in the reference, so a host that can forge the
//! peer's source could send a flow's own SDUs back to it (an echo): they would open, and
//! its own keepalives would keep a flow whose peer is gone alive, its data would reach its
//! own app, and echoed packets of later key phases would move the receive key past the
//! peer's. Each end therefore marks the IVs it sends: the last 4 bytes are a keyed hash
//! (SipHash, a key of this end only) of the first 8, and a received SDU whose IV bears our
//! own mark is refused ([`CryptError::Echo`]). The peer's IVs bear it by chance once in
//! 2^32 packets. The first 8 bytes are a counter from a random start (the top bit the key
//! phase), so this end's IVs never repeat under one key (random ones of 63 bits would, once
//! in some 2^24 key epochs); the other end's, random or counted from its own start, differ
//! from ours in the mark. A peer (the reference draws 12 random bytes) takes any 12 bytes;
//! an observer can count each end's packets from the counter.

use aws_lc_rs::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::hkdf;

/// Why an SDU could not be sealed or opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CryptError {
    /// Encryption failed (or the rotated key could not be made).
    Seal,
    /// The SDU is too short, forged or corrupted.
    Open,
    /// The SDU is one this end sealed, sent back (its IV bears our mark).
    Echo,
}

impl std::fmt::Display for CryptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Seal => "encryption failed",
            Self::Open => "the SDU does not decrypt",
            Self::Echo => "the SDU is one of ours sent back",
        })
    }
}

impl std::error::Error for CryptError {}

/// IV length.
pub const IV_LEN: usize = 12;
/// Tag length.
pub const TAG_LEN: usize = 16;
/// Bytes an encrypted SDU adds.
pub const OVERHEAD: usize = IV_LEN + TAG_LEN;
const _: () = assert!(OVERHEAD == o7s_abi::CRYPT_OVERHEAD);
/// The reference rotates keys every 2^20 packets.
pub const DEFAULT_ROTATION_BITS: u32 = 20;

/// A supported AEAD by OpenSSL NID.
pub fn algorithm(nid: u16) -> Option<&'static aead::Algorithm> {
    match nid {
        895 => Some(&aead::AES_128_GCM),
        901 => Some(&aead::AES_256_GCM),
        1018 => Some(&aead::CHACHA20_POLY1305),
        _ => None,
    }
}

struct Len32;
impl hkdf::KeyType for Len32 {
    fn len(&self) -> usize {
        32
    }
}

fn next_key(k: &[u8; 32], salt: &[u8; 32]) -> [u8; 32] {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(k);
    let info = [&b"o7s-key-rotation"[..]];
    let mut out = [0u8; 32];
    if let Ok(okm) = prk.expand(&info, Len32) {
        let _ = okm.fill(&mut out);
    }
    out
}

struct Keyed {
    raw: [u8; 32],
    key: LessSafeKey,
}

fn keyed(alg: &'static aead::Algorithm, raw: [u8; 32]) -> Option<Keyed> {
    let k = UnboundKey::new(alg, raw.get(..alg.key_len())?).ok()?;
    Some(Keyed {
        raw,
        key: LessSafeKey::new(k),
    })
}

/// One flow's cipher state.
pub struct Crypt {
    alg: &'static aead::Algorithm,
    salt: [u8; 32],
    tx: Keyed,
    tx_phase: u8,
    tx_count: u64,
    rotate_every: u64,
    rx: Keyed,
    rx_phase: u8,
    rx_prev: Option<Keyed>,
    /// The key of the receive phase after ours, made once (a forged SDU of the other phase
    /// costs a tag check, not a key derivation).
    rx_next: Option<Keyed>,
    /// The key of this end's IV marks.
    mark: std::collections::hash_map::RandomState,
    /// Where this end's IV counter started (random).
    iv_base: u64,
    /// Key changes done (sent side).
    pub rotations: u64,
}

impl std::fmt::Debug for Crypt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Crypt")
            .field("tx_phase", &self.tx_phase)
            .field("rx_phase", &self.rx_phase)
            .finish()
    }
}

impl Crypt {
    /// This end's mark of an IV: a keyed hash of its first 8 bytes (phase bit included).
    fn mark_of(&self, iv: &[u8; IV_LEN]) -> [u8; 4] {
        use std::hash::BuildHasher;
        let mut head = [0u8; 8];
        head.copy_from_slice(&iv[..8]);
        // One u64 (one SipHash block), not a slice (a length and bytes).
        let h = self.mark.hash_one(u64::from_le_bytes(head));
        let b = h.to_le_bytes();
        [b[0], b[1], b[2], b[3]]
    }

    /// Whether `iv` bears this end's mark (an SDU of ours sent back).
    fn is_echo(&self, iv: &[u8; IV_LEN]) -> bool {
        iv[8..] == self.mark_of(iv)
    }

    /// A cipher state for `nid` with the 32-byte flow key; rotation every 2^`bits` packets.
    pub fn new(nid: u16, key: [u8; 32], bits: u32) -> Option<Self> {
        let alg = algorithm(nid)?;
        let mut salt = [0u8; 32];
        salt.copy_from_slice(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &key).as_ref());
        Some(Self {
            alg,
            salt,
            tx: keyed(alg, key)?,
            tx_phase: 0,
            tx_count: 0,
            rotate_every: 1u64 << bits.min(62),
            rx: keyed(alg, key)?,
            rx_phase: 0,
            rx_prev: None,
            rx_next: None,
            mark: std::collections::hash_map::RandomState::new(),
            iv_base: rand::random(),
            rotations: 0,
        })
    }

    /// Appends `IV | ciphertext | tag` of `sdu` to `out`.
    pub fn seal(&mut self, sdu: &[u8], out: &mut Vec<u8>) -> Result<(), CryptError> {
        self.seal_appending(out, |o| o.extend_from_slice(sdu))
    }

    /// As [`Crypt::seal`], the plaintext appended to `out` by `append` (a copy out of
    /// shared memory goes straight into the frame and is sealed there).
    pub fn seal_appending(
        &mut self,
        out: &mut Vec<u8>,
        append: impl FnOnce(&mut Vec<u8>),
    ) -> Result<(), CryptError> {
        // rotate_every is a power of two.
        if self.tx_count > 0 && self.tx_count & (self.rotate_every - 1) == 0 {
            let raw = next_key(&self.tx.raw, &self.salt);
            self.tx = keyed(self.alg, raw).ok_or(CryptError::Seal)?;
            self.tx_phase ^= 1;
            self.rotations += 1;
        }
        self.tx_count += 1;
        let mut iv = [0u8; IV_LEN];
        let head = (self.iv_base.wrapping_add(self.tx_count) & !(1 << 63))
            | (u64::from(self.tx_phase) << 63);
        iv[..8].copy_from_slice(&head.to_be_bytes());
        let mark = self.mark_of(&iv);
        iv[8..].copy_from_slice(&mark);
        let start = out.len();
        out.extend_from_slice(&iv);
        append(out);
        let body = out.get_mut(start + IV_LEN..).ok_or(CryptError::Seal)?;
        let tag = self
            .tx
            .key
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(iv), Aad::empty(), body)
            .map_err(|_| CryptError::Seal)?;
        out.extend_from_slice(tag.as_ref());
        Ok(())
    }

    /// Decrypts `wire` (`IV | ciphertext | tag`) in place when it uses the current receive
    /// key (the common case): `Ok(Some(range))` of the plaintext inside `wire`. `Ok(None)`
    /// when its key phase differs: `wire` is untouched, use [`Crypt::open`].
    pub fn open_in_place(
        &mut self,
        wire: &mut [u8],
    ) -> Result<Option<std::ops::Range<usize>>, CryptError> {
        if wire.len() < OVERHEAD {
            return Err(CryptError::Open);
        }
        let mut nonce = [0u8; IV_LEN];
        nonce.copy_from_slice(wire.get(..IV_LEN).ok_or(CryptError::Open)?);
        if self.is_echo(&nonce) {
            return Err(CryptError::Echo);
        }
        if nonce[0] >> 7 != self.rx_phase {
            return Ok(None);
        }
        let body = wire.get_mut(IV_LEN..).ok_or(CryptError::Open)?;
        let n = self
            .rx
            .key
            .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::empty(), body)
            .map_err(|_| CryptError::Open)?
            .len();
        Ok(Some(IV_LEN..IV_LEN + n))
    }

    /// Decrypts `wire` (`IV | ciphertext | tag`) into `out` (cleared first).
    pub fn open(&mut self, wire: &[u8], out: &mut Vec<u8>) -> Result<(), CryptError> {
        if wire.len() < OVERHEAD {
            return Err(CryptError::Open);
        }
        let (iv, rest) = wire.split_at(IV_LEN);
        let mut nonce = [0u8; IV_LEN];
        nonce.copy_from_slice(iv);
        if self.is_echo(&nonce) {
            return Err(CryptError::Echo);
        }
        let phase = nonce[0] >> 7;
        let try_key = |k: &Keyed, out: &mut Vec<u8>| -> bool {
            out.clear();
            out.extend_from_slice(rest);
            match k
                .key
                .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::empty(), out)
            {
                Ok(pt) => {
                    let n = pt.len();
                    out.truncate(n);
                    true
                }
                Err(_) => false,
            }
        };
        if phase == self.rx_phase {
            if try_key(&self.rx, out) {
                return Ok(());
            }
            // A late packet of the previous phase whose bit equals ours again is not
            // possible with one rotation in flight; nothing else to try.
            return Err(CryptError::Open);
        }
        // The sender moved on: its next key (made once), ours kept for late packets.
        if self.rx_next.is_none() {
            self.rx_next = keyed(self.alg, next_key(&self.rx.raw, &self.salt));
        }
        if self.rx_next.as_ref().is_some_and(|k| try_key(k, out)) {
            if let Some(next) = self.rx_next.take() {
                let old = std::mem::replace(&mut self.rx, next);
                self.rx_prev = Some(old);
                self.rx_phase = phase;
            }
            return Ok(());
        }
        if let Some(p) = &self.rx_prev {
            if try_key(p, out) {
                return Ok(());
            }
        }
        Err(CryptError::Open)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_each_cipher() {
        for nid in [895u16, 901, 1018] {
            let mut a = Crypt::new(nid, [7; 32], 20).unwrap();
            let mut b = Crypt::new(nid, [7; 32], 20).unwrap();
            let mut w = Vec::new();
            a.seal(b"hello o7s", &mut w).unwrap();
            assert_eq!(w.len(), 9 + OVERHEAD);
            let mut p = Vec::new();
            b.open(&w, &mut p).unwrap();
            assert_eq!(p, b"hello o7s");
            w[20] ^= 1;
            assert!(b.open(&w, &mut p).is_err(), "a corrupted SDU is refused");
        }
        assert!(
            Crypt::new(906, [0; 32], 20).is_none(),
            "aes-256-ctr is not supported"
        );
    }

    #[test]
    fn an_sdu_sent_back_to_its_sealer_is_refused_and_the_peers_open() {
        let mut a = Crypt::new(901, [4; 32], 2).unwrap();
        let mut b = Crypt::new(901, [4; 32], 2).unwrap();
        let mut p = Vec::new();
        // Many SDUs each way, across rotations: each end opens every one of the other's
        // (no false echo), and none of its own, in place or not.
        for i in 0u32..2000 {
            let mut w = Vec::new();
            a.seal(&i.to_be_bytes(), &mut w).unwrap();
            assert_eq!(a.open(&w, &mut p), Err(CryptError::Echo), "{i}");
            let mut w2 = w.clone();
            assert_eq!(a.open_in_place(&mut w2), Err(CryptError::Echo), "{i}");
            b.open(&w, &mut p).unwrap();
            assert_eq!(p, i.to_be_bytes());
            let mut v = Vec::new();
            b.seal(&i.to_le_bytes(), &mut v).unwrap();
            assert_eq!(b.open(&v, &mut p), Err(CryptError::Echo), "{i}");
            a.open(&v, &mut p).unwrap();
            assert_eq!(p, i.to_le_bytes());
        }
    }

    #[test]
    fn an_ends_ivs_are_a_counter_that_never_repeats_and_carry_the_phase() {
        let mut a = Crypt::new(901, [8; 32], 4).unwrap();
        let mut heads = Vec::new();
        for _ in 0..64 {
            let mut w = Vec::new();
            a.seal(b"x", &mut w).unwrap();
            heads.push(u64::from_be_bytes(w[..8].try_into().unwrap()));
        }
        for (i, h) in heads.iter().enumerate() {
            // Packets 1..=16 under the first key (phase 0), 17..=32 under the next (1)...
            assert_eq!(h >> 63, (i as u64 / 16) & 1, "packet {i}");
            assert_eq!(
                h & !(1 << 63),
                heads[0].wrapping_add(i as u64) & !(1 << 63),
                "packet {i}"
            );
        }
    }

    #[test]
    fn echoes_of_later_phases_cannot_move_the_receive_key_past_the_peers() {
        // A sends in bulk (two rotations ahead); B is at its first key.
        let mut a = Crypt::new(901, [6; 32], 2).unwrap();
        let mut b = Crypt::new(901, [6; 32], 2).unwrap();
        let mut ours = Vec::new();
        for i in 0u32..12 {
            let mut w = Vec::new();
            a.seal(&i.to_be_bytes(), &mut w).unwrap();
            ours.push(w);
        }
        let mut p = Vec::new();
        for w in &ours {
            assert_eq!(a.open(w, &mut p), Err(CryptError::Echo));
        }
        // B's SDUs of its first key still open at A.
        let mut v = Vec::new();
        b.seal(b"from b", &mut v).unwrap();
        a.open(&v, &mut p).unwrap();
        assert_eq!(p, b"from b");
    }

    #[test]
    fn in_place_matches_copying() {
        let mut a = Crypt::new(901, [9; 32], 20).unwrap();
        let mut b = Crypt::new(901, [9; 32], 20).unwrap();
        let mut w = Vec::new();
        a.seal(b"in place", &mut w).unwrap();
        let r = b.open_in_place(&mut w).unwrap().unwrap();
        assert_eq!(&w[r], b"in place");
        let mut w2 = Vec::new();
        a.seal(b"x", &mut w2).unwrap();
        w2[15] ^= 4;
        assert!(b.open_in_place(&mut w2).is_err());
    }

    #[test]
    fn rotation_is_followed_without_loss() {
        let mut a = Crypt::new(901, [1; 32], 3).unwrap();
        let mut b = Crypt::new(901, [1; 32], 3).unwrap();
        let mut late = Vec::new();
        for i in 0u32..50 {
            let mut w = Vec::new();
            a.seal(&i.to_be_bytes(), &mut w).unwrap();
            if i == 7 {
                // Delivered after the next packet, which is of the new phase.
                late = w;
                continue;
            }
            let mut p = Vec::new();
            b.open(&w, &mut p).unwrap();
            assert_eq!(p, i.to_be_bytes());
            if i == 8 {
                b.open(&late, &mut p).unwrap();
                assert_eq!(p, 7u32.to_be_bytes());
            }
        }
        assert!(a.rotations >= 6);
    }

    /// What the data plane seals (aws-lc-rs) opens with another implementation (ring) under
    /// the flow key, and the rotated key is the HKDF-SHA256 step computed independently.
    #[test]
    fn interoperates_with_an_independent_implementation() {
        use ring::aead as r;
        for (nid, alg) in [
            (895u16, &r::AES_128_GCM),
            (901, &r::AES_256_GCM),
            (1018, &r::CHACHA20_POLY1305),
        ] {
            let key = [0x3cu8; 32];
            let mut a = Crypt::new(nid, key, 20).unwrap();
            let mut w = Vec::new();
            a.seal(b"seen by another AEAD", &mut w).unwrap();
            let k = r::LessSafeKey::new(r::UnboundKey::new(alg, &key[..alg.key_len()]).unwrap());
            let nonce = r::Nonce::try_assume_unique_for_key(&w[..IV_LEN]).unwrap();
            let mut body = w[IV_LEN..].to_vec();
            let pt = k.open_in_place(nonce, r::Aad::empty(), &mut body).unwrap();
            assert_eq!(pt, b"seen by another AEAD", "nid {nid}");
        }
        let key = [5u8; 32];
        let mut salt = [0u8; 32];
        salt.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, &key).as_ref());
        struct L;
        impl ring::hkdf::KeyType for L {
            fn len(&self) -> usize {
                32
            }
        }
        let mut want = [0u8; 32];
        ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, &salt)
            .extract(&key)
            .expand(&[b"o7s-key-rotation"], L)
            .unwrap()
            .fill(&mut want)
            .unwrap();
        assert_eq!(next_key(&key, &salt), want);
    }
}
