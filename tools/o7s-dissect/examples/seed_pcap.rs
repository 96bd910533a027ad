//! Writes the tutorials' frames (kept in the repo as test vectors) to a pcap file, so the
//! dissector can be tried without the reference captures:
//! `cargo run -p o7s-dissect --example seed_pcap -- seed.pcap`.

fn main() -> std::process::ExitCode {
    let Some(out) = std::env::args().nth(1) else {
        eprintln!("usage: seed_pcap OUTPUT.pcap");
        return std::process::ExitCode::from(2);
    };
    let frames = o7s_dissect::seed::frames();
    let refs: Vec<&[u8]> = frames.iter().map(|(_, b)| b.as_slice()).collect();
    if let Err(e) = std::fs::write(&out, o7s_wire::capfile::write_pcap(&refs)) {
        eprintln!("seed_pcap: {out}: {e}");
        return std::process::ExitCode::from(1);
    }
    eprintln!("seed_pcap: wrote {} frames to {out}", refs.len());
    std::process::ExitCode::SUCCESS
}
