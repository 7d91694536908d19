# syntax=docker/dockerfile:1
# Multi-stage build: a static cosign binary in a minimal non-root image.
#   docker build -t cosign .
#   docker run --rm cosign version
#   docker run --rm -p 5050:5050 -v $PWD/proxy.yaml:/proxy.yaml cosign proxy --config /proxy.yaml --listen 0.0.0.0:5050

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=devel
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/cosign ./cmd/cosign

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/cosign /cosign
USER nonroot:nonroot
EXPOSE 5050
ENTRYPOINT ["/cosign"]
