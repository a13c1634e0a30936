# contextd: the server image (docs/deploy.md, "Container").
#
#   docker build -t contextd .
#   docker run -d --name contextd -p 8080:8080 \
#     -v contextd-data:/var/lib/contextd \
#     -v /etc/contextd/master.key:/run/secrets/contextd-master-key:ro \
#     -e CONTEXTD_MASTER_KEY_FILE=/run/secrets/contextd-master-key \
#     contextd
#
# Checked without a Docker daemon by packaging/check.sh (stages, non-root user, health check,
# exposed port, no remote ADD). Plain RUN steps only: it builds with the classic builder and
# with BuildKit alike.

# --- build ------------------------------------------------------------------------------------
FROM rust:1-bookworm AS builder
WORKDIR /src
# The whole workspace (see .dockerignore for what stays out: target/, .git/, data, keys).
# SQLite is compiled in (rusqlite "bundled"), which needs only the C compiler this image has.
COPY . .
# --locked: build exactly the versions of Cargo.lock. With BuildKit, a faster rebuild can add
# `--mount=type=cache,target=/usr/local/cargo/registry --mount=type=cache,target=/src/target`
# to this RUN (then copy the binary out in the same step, as below); it is not required.
RUN cargo build --release -p contextd --locked \
 && install -D -m 0755 target/release/contextd /out/contextd

# --- run --------------------------------------------------------------------------------------
FROM debian:bookworm-slim
# CA certificates: PostgreSQL with sslmode=verify-ca/verify-full, NATS and HTTPS webhooks check
# server certificates against the system roots. Nothing else is installed (no curl: the health
# check below uses bash's /dev/tcp).
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# A fixed uid/gid (10001), so that files on volumes and secrets mounted from the host can be
# given to it: `chown 10001:10001` on the host.
RUN groupadd --system --gid 10001 contextd \
 && useradd --system --uid 10001 --gid contextd --home-dir /var/lib/contextd --no-create-home \
      --shell /usr/sbin/nologin contextd \
 && install -d -o contextd -g contextd -m 0700 /var/lib/contextd
COPY --from=builder /out/contextd /usr/local/bin/contextd

# The data directory: contextd.db (the data), contextd-audit.db (the audit log) and keys.db (the
# wrapped keys) when on SQLite. With --database-url postgres://… it holds nothing that matters.
ENV CONTEXTD_DATA_DIR=/var/lib/contextd \
    CONTEXTD_LISTEN=0.0.0.0:8080
VOLUME /var/lib/contextd
EXPOSE 8080

# THE MASTER KEY. Without CONTEXTD_MASTER_KEY or CONTEXTD_MASTER_KEY_FILE, the first start
# creates /var/lib/contextd/master.key, inside the volume, beside the data it protects (and
# every start warns about it). That is fine for a trial, not for production: a copy of the volume
# would then hold the key to its data. In production, either
#   - mount the key as a secret file (Docker/Compose secrets, a Kubernetes Secret volume) and set
#     CONTEXTD_MASTER_KEY_FILE=/run/secrets/contextd-master-key (the file is 64 hex digits or the
#     base64 of 32 bytes, readable by uid 10001; it is never written to when it exists), or
#   - pass CONTEXTD_MASTER_KEY (the key itself) from a secret store; it wins over the file.
# Every instance sharing one PostgreSQL database needs the same key.

USER contextd

# Liveness: GET /healthz needs no token. bash's /dev/tcp instead of curl; the port is the one of
# CONTEXTD_LISTEN. In the JSON below, "\\r\\n" reaches bash as \r\n, which printf turns into CR LF.
# With HTTPS (CONTEXTD_TLS_CERT set), the plain request gets contextd's 400 "use https://",
# which shows the process answers just as well.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["bash", "-c", "listen=${CONTEXTD_LISTEN:-0.0.0.0:8080}; want=' 200 '; [ -n \"$CONTEXTD_TLS_CERT\" ] && want=' 400 '; exec 3<>\"/dev/tcp/127.0.0.1/${listen##*:}\" && printf 'GET /healthz HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q \"$want\""]

# SIGTERM (docker stop) drains in-flight requests and exits 0.
ENTRYPOINT ["/usr/local/bin/contextd"]
CMD ["serve"]
