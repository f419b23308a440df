#!/bin/sh
# Makes the image debian:bookworm-slim from Debian's own packages, for a machine that
# cannot pull from a registry (the Dockerfile starts FROM it). Where `docker pull
# debian:bookworm-slim` works, you do not need this.
#   deploy/make-base-image.sh [MIRROR]        (as root; needs debootstrap and docker)
# Does nothing when the image exists already.
set -eu
mirror=${1:-http://deb.debian.org/debian}
tag=debian:bookworm-slim
if docker image inspect "$tag" >/dev/null 2>&1; then
	echo "make-base-image: $tag exists"
	exit 0
fi
command -v debootstrap >/dev/null || {
	echo "make-base-image: debootstrap is missing: apt-get install debootstrap" >&2
	exit 1
}
root=$(mktemp -d /tmp/pgwarden-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
echo "make-base-image: debootstrap bookworm from $mirror (about a minute)"
debootstrap --variant=minbase bookworm "$root" "$mirror" >"$root.log" 2>&1 || {
	tail -20 "$root.log" >&2
	exit 1
}
rm -f "$root.log"
chmod 0755 "$root" # mktemp made it 0700: the image's / would be closed to non-root users
# As Debian's slim images: no documentation, manual pages or translations, now or later.
cat >"$root/etc/dpkg/dpkg.cfg.d/docker-slim" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
CFG
cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'CFG'
APT::Install-Recommends "false";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };
CFG
find "$root/usr/share/doc" -mindepth 2 ! -name copyright -delete 2>/dev/null || true
rm -rf "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/* \
	"$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* "$root"/var/log/*.log
tar -C "$root" -c . | docker import -c 'CMD ["bash"]' - "$tag" >/dev/null
echo "make-base-image: $tag made ($(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%d MB", $1/1e6}'))"
