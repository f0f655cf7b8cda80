//! Writes the seed corpus: `cargo run --example seed_corpus -- DIR` creates `DIR/<target>/` for
//! every target (`decode_frames`, `decode_split`, `envelope`, `handshake`, `shm_segment`,
//! `config`) with one
//! file per seed input.

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "corpus".into()));
    for (target, inputs) in [
        (
            "decode_frames",
            mycelium_fuzz::seeds::decode_frames_inputs(),
        ),
        ("decode_split", mycelium_fuzz::seeds::decode_split_inputs()),
        ("envelope", mycelium_fuzz::seeds::envelope_inputs()),
        ("handshake", mycelium_fuzz::seeds::handshake_inputs()),
        ("shm_segment", mycelium_fuzz::seeds::shm_segment_inputs()),
        ("config", mycelium_fuzz::seeds::config_inputs()),
    ] {
        let target_dir = dir.join(target);
        std::fs::create_dir_all(&target_dir)?;
        for (name, bytes) in &inputs {
            std::fs::write(target_dir.join(format!("seed-{name}")), bytes)?;
        }
        println!("{}: {} seeds", target_dir.display(), inputs.len());
    }
    Ok(())
}
