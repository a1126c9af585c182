# syntax=docker/dockerfile:1
# Images for Filestore, built from the workspace:
#   docker build --target filestore -t ghcr.io/filestore/filestore:0.1.0 .
#   docker build --target operator  -t ghcr.io/filestore/filestore-operator:0.1.0 .
# or for both architectures at once (what .github/workflows/release.yml publishes):
#   docker buildx build --platform linux/amd64,linux/arm64 --target operator ...
# The Rust build runs on the builder's own platform and cross-compiles to the target's (QEMU
# emulation would take hours for this workspace); only the small final stages are per-platform.
# Both images run as the distroless `nonroot` user (65532) on a read-only root filesystem.
FROM --platform=$BUILDPLATFORM rust:1.95-bookworm AS build
ARG TARGETARCH
WORKDIR /src
RUN set -eu; \
    TARGETARCH="${TARGETARCH:-$(dpkg --print-architecture)}"; \
    case "$TARGETARCH" in \
      amd64) triple=x86_64-unknown-linux-gnu; gnu=x86-64-linux-gnu ;; \
      arm64) triple=aarch64-unknown-linux-gnu; gnu=aarch64-linux-gnu ;; \
      *) echo "unsupported architecture: $TARGETARCH" >&2; exit 1 ;; \
    esac; \
    if [ "$(dpkg --print-architecture)" != "$TARGETARCH" ]; then \
      apt-get update -qq; \
      apt-get install -y -qq --no-install-recommends "gcc-$gnu" "libc6-dev-$TARGETARCH-cross" cmake; \
      rm -rf /var/lib/apt/lists/*; \
      printf 'CARGO_TARGET_%s_LINKER=%s-gcc\nCC_%s=%s-gcc\nAR_%s=%s-ar\n' \
        "$(echo "$triple" | tr 'a-z-' 'A-Z_')" "$gnu" \
        "$(echo "$triple" | tr '-' '_')" "$gnu" \
        "$(echo "$triple" | tr '-' '_')" "$gnu" > /cross.env; \
    else \
      : > /cross.env; \
    fi; \
    echo "$triple" > /triple; \
    rustup target add "$triple"
COPY . .
RUN set -eu; \
    triple="$(cat /triple)"; \
    set -a; . /cross.env; set +a; \
    cargo build --release --locked --target "$triple" -p filestore-cli -p filestore-operator \
      --bin filestore --bin filestore-operator; \
    mkdir /out; \
    cp "target/$triple/release/filestore" "target/$triple/release/filestore-operator" /out/

FROM gcr.io/distroless/cc-debian12:nonroot AS filestore
COPY --from=build /out/filestore /usr/local/bin/filestore
USER 65532:65532
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/filestore"]

FROM gcr.io/distroless/cc-debian12:nonroot AS operator
COPY --from=build /out/filestore-operator /usr/local/bin/filestore-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/filestore-operator"]
