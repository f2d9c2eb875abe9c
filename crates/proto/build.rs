//! Compiles the .proto files with protox (a pure-Rust protobuf compiler), so no protoc binary is
//! needed. With the `grpc` feature the node's service also gets its tonic client and server.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/ferry/archive/v1/archive.proto",
        "proto/ferry/identity/v1/identity.proto",
        "proto/ferry/message/v1/message.proto",
        "proto/ferry/node/v1/node.proto",
    ];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds = protox::compile(protos, ["proto"])?;
    if std::env::var_os("CARGO_FEATURE_GRPC").is_some() {
        tonic_prost_build::configure()
            .build_client(true)
            .build_server(true)
            .compile_fds(fds)?;
    } else {
        prost_build::Config::new().compile_fds(fds)?;
    }
    Ok(())
}
