# A swarm "host" for tests/swarm: Debian's Docker engine inside a container
# (docker-in-docker, vfs storage: no --privileged here, see ../shared/reference/docker.md).
FROM debian:bookworm-slim
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      docker.io iproute2 iptables procps ca-certificates curl \
 && rm -rf /var/lib/apt/lists/*
CMD ["dockerd", "--storage-driver=vfs", "--log-level=warn"]
