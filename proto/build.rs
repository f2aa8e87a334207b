//! Compiles the gRPC service definitions in `grpc/` with protox (pure Rust,
//! so no `protoc` has to be installed) and generates tonic clients and servers.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["grpc/cluster.proto", "grpc/admin.proto"];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["grpc"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Replication payloads arrive as `Bytes`, so the records decoded
        // from them can be slices of it (`core::shared_bytes`).
        .bytes(".flymq.cluster.v1.AppendMessage.payload")
        .bytes(".flymq.cluster.v1.RaftRequest.payload")
        .compile_fds(descriptors)?;
    Ok(())
}
