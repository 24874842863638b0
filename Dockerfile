# stack_exporter in a container. Build: docker build -t stack_exporter .
# Run it as docker-compose.yml does (host /proc and / read-only, pid: host): see docs/dashboards.md.

# The compiler that link/hot-functions.rustc-1.95.0.txt was written for: build.rs lays out the
# code in its order (1.3-1.8 MB less RSS, docs/performance.md "Code layout"); another compiler
# builds the same exporter without it.
FROM rust:1.95-bookworm AS build
WORKDIR /src
# Recorded in stack_exporter_build_info{revision}: docker build --build-arg REVISION=$(git rev-parse --short HEAD)
ARG REVISION=unknown
ENV STACK_EXPORTER_REVISION=${REVISION}
COPY Cargo.toml Cargo.lock build.rs ./
COPY link ./link
COPY profiles ./profiles
COPY src ./src
RUN cargo build --release --locked \
 && install -m 0755 target/release/stack_exporter /stack_exporter

FROM debian:bookworm-slim
# A user of its own. Without capabilities it reads every process's stat, statm and cmdline (RSS,
# CPU, counts) but not other users' smaps_rollup (PSS) or fds; docker-compose.yml explains how the
# stack grants the two capabilities that needs.
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin stack_exporter
COPY --from=build /stack_exporter /usr/local/bin/stack_exporter
USER 10001:10001
EXPOSE 9488
# bash is in the image, curl is not: ask /-/healthy over bash's /dev/tcp.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9488 && printf 'GET /-/healthy HTTP/1.0\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["/usr/local/bin/stack_exporter"]
CMD ["--web.listen-address=:9488"]
