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
        .compile_fds(descriptors)?;
    Ok(())
}
