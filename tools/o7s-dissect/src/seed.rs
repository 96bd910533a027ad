//! The tutorials' frames, kept in the repo (`wire/tests/vectors/seed_frames.txt`).

const TEXT: &str = include_str!("../../../wire/tests/vectors/seed_frames.txt");

/// `(id, frame bytes)` of every complete frame of the tutorials.
pub fn frames() -> Vec<(String, Vec<u8>)> {
    TEXT.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let mut it = l.split('\t');
            let id = it.next()?.to_string();
            let _kind = it.next()?;
            Some((id, hex::decode(it.next()?).ok()?))
        })
        .collect()
}
