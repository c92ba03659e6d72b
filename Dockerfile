# Builds the server and worker binaries, statically, into a small image that
# runs as a non-root user. Both services use this image: the server is the
# default entrypoint, the worker sets its own.

FROM golang:1.26-bookworm AS build
WORKDIR /src
# GOWORK=off builds the service alone: go.work adds the bench module.
COPY go.mod go.sum ./
RUN GOWORK=off go mod download
COPY . .
RUN GOWORK=off CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/ ./cmd/server ./cmd/worker

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/server /out/worker /usr/local/bin/
USER nonroot:nonroot
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/server"]
