# Images for Filestore, built from the workspace:
#   docker build --target filestore -t ghcr.io/filestore/filestore:0.1.0 .
#   docker build --target operator  -t ghcr.io/filestore/filestore-operator:0.1.0 .
# Both run as the distroless `nonroot` user (65532) on a read-only root filesystem.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p filestore-cli -p filestore-operator \
      --bin filestore --bin filestore-operator \
 && mkdir /out && cp target/release/filestore target/release/filestore-operator /out/

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
