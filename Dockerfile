# nano-vm-mcp: a static binary on distroless, serving MCP over Streamable
# HTTP at http://<host>:8080/mcp, with runs and keys in the /data volume.
#
#   docker build -t nano-vm-mcp --build-arg VERSION=1.0.0 .
#
# The server listens beyond loopback inside the container, so it refuses to
# start (exit 2) without an access token and the Host names clients use:
#
#   export NANO_VM_ACCESS_TOKEN=$(openssl rand -hex 32)
#   docker run -p 127.0.0.1:8080:8080 -v nano-vm-data:/data \
#     -e NANO_VM_ACCESS_TOKEN -e NANO_VM_ALLOWED_HOSTS=localhost nano-vm-mcp
#
# - NANO_VM_ALLOWED_HOSTS: comma-separated host or host:port values of the
#   Host header (e.g. mcp.example.com). localhost and 127.0.0.1 are always
#   accepted; naming one of them satisfies the check for local use.
# - The token can come from a file instead: mount it and set
#   NANO_VM_ACCESS_TOKEN_FILE. The file must not be readable by others
#   (mode 0400 or 0440) and must be readable by uid 65532, the image's user:
#     chmod 400 token && sudo chown 65532 token
#     docker run ... -v "$PWD/token:/run/secrets/access_token:ro" \
#       -e NANO_VM_ACCESS_TOKEN_FILE=/run/secrets/access_token nano-vm-mcp
#   Kubernetes mounts secrets 0644 by default: set defaultMode 0440 and an
#   fsGroup of 65532.
# - NANO_VM_OPERATOR_TOKEN (or NANO_VM_OPERATOR_TOKEN_FILE) unlocks the
#   operator profile; NANO_VM_APPROVERS names an approvers file.
#   Every flag has a NANO_VM_<FLAG> variable; see docs/configuration.md.
#   Flags in the command line below win over the variables: to change the
#   transport or address, override the command.
#
# There is no HEALTHCHECK: the image has no shell, and every path needs the
# token. SIGTERM stops the server cleanly.
#
# Base images: both are named by tag, and can be pinned by digest without
# editing this file. A builder with registry access looks up the digests of
# the tags (the multi-platform index digest, so every platform stays pinned):
#
#   docker buildx imagetools inspect golang:1.26 --format '{{.Manifest.Digest}}'
#   docker buildx imagetools inspect gcr.io/distroless/static-debian12:nonroot \
#     --format '{{.Manifest.Digest}}'
#   (or: crane digest golang:1.26; crane digest gcr.io/distroless/static-debian12:nonroot)
#
# and passes them:
#
#   docker build --build-arg GOLANG_DIGEST=sha256:... \
#     --build-arg DISTROLESS_DIGEST=sha256:... -t nano-vm-mcp .
#
# A pinned reference is "name:tag@sha256:...": the digest decides what is
# pulled, and the tag stays for readers. Unset, the reference is the bare
# tag. To pin for every build, write the checked digests as the ARG
# defaults below. None is committed here: none could be checked against
# the registries when this was written (docs/decisions.md, Build and test).
ARG GOLANG_DIGEST=
ARG DISTROLESS_DIGEST=

FROM golang:1.26${GOLANG_DIGEST:+@}${GOLANG_DIGEST} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
# Only what the binary is built from; the example programs are embedded.
COPY cmd/ cmd/
COPY internal/ internal/
COPY examples/ examples/
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath \
    -ldflags "-s -w -X github.com/nano-vm/nano-vm-mcp/internal/runtime.Version=${VERSION}" \
    -o /out/nano-vm-mcp ./cmd/nano-vm-mcp \
 && mkdir -m 0700 /out/data

FROM gcr.io/distroless/static-debian12:nonroot${DISTROLESS_DIGEST:+@}${DISTROLESS_DIGEST}
COPY --from=build /out/nano-vm-mcp /usr/local/bin/nano-vm-mcp
# The data directory belongs to the non-root user, and a new named volume
# starts as a copy of it; a bind-mounted directory must be writable by uid
# 65532. It holds the SQLite store (traces.db) and the server's keys
# (signing.key, subject.secret, subject.kek).
COPY --from=build --chown=65532:65532 /out/data /data
ENV NANO_VM_DATA_DIR=/data
VOLUME ["/data"]
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/nano-vm-mcp"]
CMD ["serve", "--transport", "http", "--addr", "0.0.0.0:8080"]
