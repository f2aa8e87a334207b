# The FlyMQ operator image. Build from the repository root:
#   docker build -f deploy/docker/operator.Dockerfile -t ghcr.io/flymq/flymq-operator:0.1.0 .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p flymq-operator --bin flymq-operator \
    && install -D target/release/flymq-operator /out/flymq-operator

# Small runtime: glibc and CA certificates only, no shell, non-root.
# The operator uses rustls, so it needs no OpenSSL.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/flymq-operator /usr/local/bin/flymq-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/flymq-operator"]
CMD ["run"]
