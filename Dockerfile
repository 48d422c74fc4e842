# flashnode container image: a release build in the Rust image, run from distroless as non-root.
#   docker build -t flashnode .
#   docker run --rm -p 8545:8545 -p 8546:8546 -p 9090:9090 flashnode dev \
#     --rpc-addr 0.0.0.0:8545 --flashblocks-addr 0.0.0.0:8546 --metrics-addr 0.0.0.0:9090
# docs/operations.md has the details (and the Helm chart that runs this image).

FROM rust:1-slim-bookworm AS builder
# C toolchain pieces of the crypto crates (aws-lc-sys, blst, c-kzg, secp256k1-sys).
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake clang pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin flashnode \
    && mkdir -p /out/data

# glibc, libgcc, CA certificates and a `nonroot` user (65532), nothing else (no shell).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /src/target/release/flashnode /usr/local/bin/flashnode
# The default --data-dir (durable gossip store), writable by the non-root user.
COPY --from=builder --chown=65532:65532 /out/data /data
USER 65532:65532
# JSON-RPC (HTTP + WS), flashblock fan-out (/ws), metrics and health, gossip.
EXPOSE 8545 8546 9090 9222 9222/udp
ENTRYPOINT ["/usr/local/bin/flashnode"]
CMD ["node", "--config", "/etc/flashnode/config.toml"]
