# syntax=docker/dockerfile:1
# bigpipe container image: `docker build -t bigpipe .` (or `docker compose up --build`).

# Build stage: the official Rust image. The -bookworm tag keeps the build's
# glibc equal to the runtime stage's (debian:bookworm-slim).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY it ./it
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin bigpipe \
 && cp target/release/bigpipe /usr/local/bin/bigpipe

# Runtime stage: just the binary and its default config.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10086 --home-dir /nonexistent --shell /usr/sbin/nologin bigpipe
COPY --from=build /usr/local/bin/bigpipe /usr/local/bin/bigpipe
COPY conf/bigpipe.toml /etc/bigpipe/bigpipe.toml
ENV BIGPIPE_KAFKA_BOOTSTRAP_SERVERS=kafka:9092
# The shipped config listens on 127.0.0.1; in a container the port is published from
# outside, so listen on every interface (publish it on the host's loopback to keep it local).
# No ACL secret is built in: the config reads ACL_SYSTEM_1_SECRET / ACL_SYSTEM_2_SECRET.
ENV BIGPIPE_HTTP_SERVER_HOST=0.0.0.0
# The admin listener (/stats, /readyz detail) stays on the container's loopback unless the
# deployment opens it with BIGPIPE_HTTP_ADMIN_HOST=0.0.0.0 and a BIGPIPE_HTTP_ADMIN_TOKEN
# (docker-compose.yml does both).
# glibc keeps freed memory per thread arena; two arenas bound RSS after bursts.
ENV MALLOC_ARENA_MAX=2
USER bigpipe
EXPOSE 10086 10087
ENTRYPOINT ["/usr/local/bin/bigpipe"]
CMD ["--config", "/etc/bigpipe/bigpipe.toml"]
