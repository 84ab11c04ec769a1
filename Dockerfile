# syntax=docker/dockerfile:1
# p2pshare: one image with both binaries, /usr/local/bin/p2p-tracker and /usr/local/bin/p2p-peer.
#
#   docker build -t p2pshare:dev .            # the full build: Rust compiled in the `builder` stage
#   scripts/image.sh build [--full]           # the same on docker or podman (see docs/deploy.md)
#
# How to run it (tracker, three peers): docs/deploy.md. The default command is the peer
# (`p2p-peer serve`); every setting comes from P2P_* env vars or a TOML file given with P2P_CONFIG.
#
# BINARIES names the stage the runtime takes its files from: `builder` (default) compiles them
# here; `prebuilt` takes the workspace's own build, stripped by scripts/image.sh into
# target/image/out (CI, where a second Rust build would cost minutes).
ARG BINARIES=builder

# Base images are pinned by tag (add @sha256:... digests in a release pipeline): the Rust
# toolchain 1.95 on Debian 12, and distroless cc (glibc, libgcc, CA certificates) on Debian 12.
# --- cargo-chef: the dependency graph as a recipe, so dependencies build in their own layer ---
FROM rust:1.95-slim-bookworm AS chef
RUN cargo install cargo-chef --locked --version 0.1.77 \
    && rm -rf "${CARGO_HOME:-/usr/local/cargo}/registry"
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

# --- dependencies only: rebuilt when Cargo.toml/Cargo.lock change, not on every source edit ---
FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
# (all members: the tracker, the peer and their shared crate; Cargo.lock is part of the recipe)
RUN cargo chef cook --release --recipe-path recipe.json
# --- the workspace itself (proto/ is compiled by a pure-Rust compiler: no protoc needed) ---
COPY Cargo.toml Cargo.lock ./
COPY proto proto
COPY services services
# Stripped binaries in the image, their debug info kept in /out/debug (stage `debug-symbols`;
# gdb finds it through .gnu_debuglink). Same rule as scripts/image.sh strip_binary.
RUN cargo build --release --locked -p p2p-tracker -p p2p-peer \
    && install -d -m 0755 /out/usr/local/bin /out/debug \
    && install -d -m 0750 /out/data \
    && for b in p2p-tracker p2p-peer; do \
         objcopy --only-keep-debug "target/release/$b" "/out/debug/$b.debug" \
         && objcopy --strip-all --add-gnu-debuglink="/out/debug/$b.debug" \
              "target/release/$b" "/out/usr/local/bin/$b" || exit 1; \
       done

# --- or: binaries built outside (scripts/image.sh build, without --full) ---
FROM scratch AS prebuilt
COPY target/image/out/ /out/

# checkov:skip=CKV_DOCKER_7: BINARIES names a stage of this file (builder or prebuilt), not an image
FROM ${BINARIES} AS binaries

# --- the debug info of the image's binaries: `--target debug-symbols -o type=local,dest=DIR` ---
FROM scratch AS debug-symbols
COPY --from=binaries /out/debug/ /

# --- runtime: glibc + CA certs, no shell, uid/gid 65532 (nonroot) ---
FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="p2pshare" \
      org.opencontainers.image.description="p2pshare tracker (gRPC :50051) and peer (HTTP :5000) in one image" \
      org.opencontainers.image.source="https://github.com/p2pshare/p2pshare" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=binaries /out/usr/local/bin/ /usr/local/bin/
# The peer's share directory; mount a volume here to keep files across restarts.
COPY --from=binaries --chown=65532:65532 /out/data /data
ENV P2P_PEER__FILES_DIR=/data
USER 65532:65532
WORKDIR /data
# 50051: tracker (gRPC, grpc.health.v1, /metrics). 5000: peer (HTTP API, /metrics, gRPC health);
# more peers on one host listen on 5001, 5002 (P2P_PEER__LISTEN).
EXPOSE 50051 5000
# Probes grpc.health.v1 of the peer on its configured listen port; for the tracker container set
# P2P_HEALTHCHECK_ADDR=127.0.0.1:50051 (one health client serves both).
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/p2p-peer", "health"]
CMD ["/usr/local/bin/p2p-peer", "serve"]
