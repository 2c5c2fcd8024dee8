//! Compiles the `.proto` files with protox (pure Rust), so no `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/shoal/raft.proto", "proto/shoal/dispatcher.proto"];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    // Kept so the crate can expose the descriptor set (reflection, tests).
    std::fs::write(out.join("shoal_descriptor.bin"), prost::Message::encode_to_vec(&descriptors))?;
    // compile_fds takes the descriptors protox made; protoc is never run. A secret's
    // payload gets a Debug of its own that leaves the data out (lib.rs).
    tonic_prost_build::configure().skip_debug([".shoal.dispatcher.Payload"]).compile_fds(descriptors)?;
    Ok(())
}
