# Multi-stage build: a static cosign binary in an image FROM scratch, run as
# a non-root user.
#   docker build -t cosign .
#   docker run --rm cosign version
#   docker run --rm --read-only -p 5050:5050 -v $PWD/etc-cosign:/etc/cosign:ro cosign \
#     proxy --config /etc/cosign/config.yaml --listen 0.0.0.0:5050
#
# The final stage pulls no base image: it holds the binary, the CA
# certificates of the build stage (for HTTPS upstreams) and nothing else, no
# shell and no passwd file. The proxy needs only its configuration and key
# files mounted, writes nothing to disk, and runs with a read-only root
# filesystem. e2e/image_test.go builds this stage from a locally built
# binary and pulls through it.

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=devel
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/cosign ./cmd/cosign

FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/cosign /cosign
# 65532: the "nonroot" user of distroless images, and runAsUser in
# deploy/kubernetes.
USER 65532:65532
EXPOSE 5050
ENTRYPOINT ["/cosign"]
