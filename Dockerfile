# wxreply's image: the static binary on a distroless base, run as a
# non-root user, with the sample rules as defaults.
#
#   docker build -t wxreply .
#   docker run --env-file wxreply.env -p 8080:8080 -v wxreply-data:/var/lib/wxreply wxreply
#   docker run --rm -v "$PWD/my-rules:/etc/wxreply:ro" wxreply check /etc/wxreply/rules.yaml
#
# deploy/compose.yaml runs two of these on one Redis behind nginx
# (README, Deployment). test/deploy_docker_test.go checks this file against the
# repository: the COPY sources, the build command and the Go release.

# The build, on the Go release that CI and release builds use (README,
# Deployment: "One binary"); the README's build command, word for word.
FROM golang:1.27.3 AS build
WORKDIR /src
# The modules first, so that a change to the code reuses this layer.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# The image refuses to build with a sample rules file that does not load.
# /out/state becomes the store's directory, owned by the runtime user.
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/wxreply . \
	&& /out/wxreply check rules.yaml \
	&& mkdir /out/state

# The runtime: distroless "static" has the CA certificates (for
# api.weixin.qq.com and rediss://) and the time-zone data, and no shell.
# So there is no HEALTHCHECK: nothing in the image could run one (no shell,
# no curl, and wxreply has no probe command). Health is the orchestrator's:
# GET /healthz on port 8080 (a Kubernetes readiness probe, a load balancer's
# health check).
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/wxreply /usr/local/bin/wxreply
# The defaults, replaced by mounting your own directory on /etc/wxreply:
# the server watches it, so a saved edit (or a ConfigMap update) applies
# without a restart. file: items are relative to the rules file.
COPY rules.yaml /etc/wxreply/rules.yaml
COPY media/ /etc/wxreply/media/
# The store (the outbox): on a volume, writable by the runtime user. A
# directory store serves one container; several share a Redis store
# (WXREPLY_STORE=redis://...) and leave this volume unused.
COPY --from=build --chown=65532:65532 /out/state /var/lib/wxreply
ENV WXREPLY_RULES=/etc/wxreply/rules.yaml \
	WXREPLY_STORE=/var/lib/wxreply \
	WXREPLY_ADDR=:8080
VOLUME /var/lib/wxreply
EXPOSE 8080
# Numeric, so that Kubernetes' runAsNonRoot can tell it is not root:
# distroless's "nonroot".
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/wxreply"]
CMD ["serve"]
