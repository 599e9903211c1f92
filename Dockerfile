# syntax=docker/dockerfile:1
# The operator image: a release build on Debian bookworm, run on distroless
# cc (glibc, libgcc, CA certificates, user 65532 "nonroot", no shell).
# The binary needs only libc, libm and libgcc_s (aws-lc is linked in
# statically); tests/it/image.rs assembles this same layout with crane and
# runs it under chroot as uid 65532 against a real API server.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY operator ./operator
RUN cargo build --release --locked -p ocisync \
 && install -D target/release/ocisync /out/usr/local/bin/ocisync

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/usr/local/bin/ocisync /usr/local/bin/ocisync
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/ocisync"]
CMD ["operator"]
