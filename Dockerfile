# syntax=docker/dockerfile:1
#
# stockgate image: the worker, api, enqueue and stockctl binaries on a small
# Alpine base, run as an unprivileged user. Alpine rather than distroless
# because the compose healthcheck needs busybox wget to probe /readyz.
#
#   docker build -t stockgate .
#   docker run --rm stockgate worker -h

FROM golang:1.26 AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOFLAGS=-trimpath
# Dependencies first, so editing code does not invalidate the module layer.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    mkdir -p /out && \
    go build -ldflags="-s -w" -o /out/ ./cmd/worker ./cmd/api ./cmd/enqueue ./cmd/stockctl

FROM alpine:3.22
RUN apk add --no-cache ca-certificates tzdata && \
    addgroup -S -g 10001 stockgate && \
    adduser -S -D -H -u 10001 -G stockgate -s /sbin/nologin stockgate
COPY --from=build /out/ /usr/local/bin/
USER 10001:10001
# The admin server (/healthz, /readyz, /metrics, /monitoring/); it listens on
# loopback unless --admin-addr says otherwise, and then needs ADMIN_USER and
# ADMIN_PASSWORD. 8090 is the storefront API (api --addr).
EXPOSE 8080 8090
CMD ["worker"]
