# syntax=docker/dockerfile:1
# bigpipe container image: `docker build -t bigpipe .` (or `docker compose up --build`).
# Without a registry, `scripts/images.sh bigpipe` builds the same FROM scratch stage around
# the binary of `make musl`.

# Build stage: the official Rust image builds the static musl binary (pure Rust: no crate
# compiles C; the image's cc only links, with Rust's own musl start files).
FROM rust:1-bookworm AS build
RUN rustup target add x86_64-unknown-linux-musl
WORKDIR /src
# the whole tree (see .dockerignore), so every path Cargo.toml names is there
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --target x86_64-unknown-linux-musl --bin bigpipe \
 && scripts/rootfs.sh target/x86_64-unknown-linux-musl/release/bigpipe /out

# Runtime stage: nothing but the static binary, its default config and the passwd entry of
# its non-root user (no libc, no shell, no CA bundle: https roots are built in).
FROM scratch
COPY --from=build /out/ /
# No BIGPIPE_KAFKA_BOOTSTRAP_SERVERS here: an environment variable outranks the config file,
# so a baked-in one would silently override the bootstrap of a mounted config. Compose sets
# kafka:9092; by default the shipped config's 127.0.0.1:9092 (host networking) is used.
# The shipped config listens on 127.0.0.1; in a container the port is published from
# outside, so listen on every interface (publish it on the host's loopback to keep it local).
# No ACL secret is built in: the config reads ACL_SYSTEM_1_SECRET / ACL_SYSTEM_2_SECRET.
ENV BIGPIPE_HTTP_SERVER_HOST=0.0.0.0
# The admin listener (/stats, /readyz detail) stays on the container's loopback unless the
# deployment opens it with BIGPIPE_HTTP_ADMIN_HOST=0.0.0.0 and a BIGPIPE_HTTP_ADMIN_TOKEN
# (docker-compose.yml does both).
USER 10086:10086
EXPOSE 10086 10087
ENTRYPOINT ["/usr/local/bin/bigpipe"]
CMD ["--config", "/etc/bigpipe/bigpipe.toml"]
