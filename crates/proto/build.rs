//! Compiles the .proto files with protox (a pure-Rust protobuf compiler), so no protoc binary is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/ferry/archive/v1/archive.proto",
        "proto/ferry/identity/v1/identity.proto",
        "proto/ferry/node/v1/node.proto",
    ];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds = protox::compile(protos, ["proto"])?;
    prost_build::Config::new().compile_fds(fds)?;
    Ok(())
}
