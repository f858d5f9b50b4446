# Build a static binary, then ship it alone.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath \
    -ldflags "-s -w -X github.com/nano-vm/nano-vm-mcp/internal/runtime.Version=${VERSION}" \
    -o /out/nano-vm-mcp ./cmd/nano-vm-mcp

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/nano-vm-mcp /usr/local/bin/nano-vm-mcp
USER nonroot:nonroot
ENTRYPOINT ["/usr/local/bin/nano-vm-mcp"]
CMD ["--help"]
