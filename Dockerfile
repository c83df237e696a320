# Build a static operator binary, then ship it alone on distroless (non-root, no shell).
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY api/ api/
COPY cmd/ cmd/
COPY controllers/ controllers/
COPY internal/ internal/
COPY webhooks/ webhooks/
ARG TARGETOS=linux
ARG TARGETARCH=amd64
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags="-s -w" -o /out/meshplane ./cmd/meshplane

FROM gcr.io/distroless/static:nonroot
COPY --from=build /out/meshplane /meshplane
USER 65532:65532
ENTRYPOINT ["/meshplane"]
