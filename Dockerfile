# vigil as a small, non-root container image.
#
#   docker build -t vigil .
#   docker run --rm -v "$PWD/policies:/etc/vigil/policies:ro" -v vigil-data:/var/lib/vigil vigil
#
# Build stage: the toolchain, the locked dependencies, a release binary.
FROM rust:1.89-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin vigil \
 && install -D -m 0755 target/release/vigil /out/vigil

# Run stage: glibc and nothing else (no shell, no package manager), as the
# distroless image's unprivileged user 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/vigil /usr/local/bin/vigil
COPY --chown=65532:65532 policies /etc/vigil/policies
USER 65532:65532
# Audit log, keyring and keys: mount a volume here to keep them. The
# keyring is created on first start in vigil-data/ under this directory.
VOLUME ["/var/lib/vigil"]
WORKDIR /var/lib/vigil
EXPOSE 50051 9464
ENTRYPOINT ["/usr/local/bin/vigil"]
# Trusted identity on a Unix socket shared with the application (mount
# /run/vigil from a shared volume); metrics and probes on :9464.
CMD ["serve", "--policies", "/etc/vigil/policies", "--listen", "unix:/run/vigil/vigil.sock", "--audit-dir", "/var/lib/vigil/audit", "--metrics-listen", "0.0.0.0:9464", "--log-format", "json"]
