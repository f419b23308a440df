#!/bin/sh
# bench/swarm reference stack: how each service starts. Given to every service as a
# Swarm config (/usr/local/bin/ref-start), run under tini (the image's entrypoint):
#   ref-start etcd | patroni | pgbouncer | haproxy
# Configuration is by environment, as in the reference stack (ETCD_*, PATRONI_*,
# POSTGRES_*_PASSWORD); haproxy.cfg and pgbouncer.ini are Swarm configs of their own.
set -eu

say() { echo "ref-start: $*" >&2; }

etcd_member() {
	: "${ETCD_DATA_DIR:=/var/lib/etcd/data}"
	export ETCD_DATA_DIR
	exec etcd
}

# Patroni reads its settings from PATRONI_* variables, but not PostgreSQL's parameters:
# the reference stack's PATRONI_POSTGRESQL_PARAMETERS_* variables are not among the ones
# Patroni reads (patroni/config.py, _build_environment_configuration), so they would be
# silently ignored. They are written into the configuration file here so that they apply.
# Everything else is Patroni's shipped defaults (ttl 30, loop_wait 10, retry_timeout 10,
# maximum_lag_on_failover 1 MB) plus what its sample configuration (postgres0.yml) sets
# and a cluster on a network needs: pg_rewind, checksums, pg_hba for the overlay network.
patroni_member() {
	: "${PATRONI_NAME:?set PATRONI_NAME}"
	cfg=$HOME/patroni.yml
	params=$(env | sed -n 's/^PATRONI_POSTGRESQL_PARAMETERS_\([A-Z0-9_]*\)=\(.*\)$/\1 \2/p' |
		while read -r k v; do
			printf "    %s: '%s'\n" "$(echo "$k" | tr 'A-Z' 'a-z')" "$v"
		done)
	[ -n "$params" ] || params="    {}"
	umask 077
	cat >"$cfg" <<YAML
# written by ref-start from the service's environment
bootstrap:
  dcs:
    postgresql:
      use_pg_rewind: true
  initdb:
  - encoding: UTF8
  - data-checksums
postgresql:
  bin_dir: /usr/lib/postgresql/15/bin
  use_pg_rewind: true
  pg_hba:
  - local all all trust
  - host replication ${PATRONI_REPLICATION_USERNAME:-replicator} 0.0.0.0/0 md5
  - host all all 0.0.0.0/0 md5
  parameters:
$params
YAML
	# patronictl in the container (docker exec ... patronictl list) finds it there
	mkdir -p "$HOME/.config/patroni"
	ln -sf "$cfg" "$HOME/.config/patroni/patronictl.yaml"
	data=${PATRONI_POSTGRESQL_DATA_DIR:-/var/lib/postgresql/data/pgdata}
	top=$(dirname "$data")
	[ -w "$top" ] || {
		say "$top is not writable by uid $(id -u): on the host, mkdir -p /var/lib/patroni/nodeN" \
			"&& chown -R 999:999 /var/lib/patroni/nodeN"
		exit 2
	}
	exec patroni "$cfg"
}

pgbouncer_pool() {
	umask 077
	printf '"%s" "%s"\n' "${PGBOUNCER_AUTH_USER:-postgres}" "${POSTGRES_SUPERUSER_PASSWORD:?}" \
		>/tmp/userlist.txt
	exec pgbouncer /etc/pgbouncer/pgbouncer.ini
}

case "${1:-}" in
etcd) etcd_member ;;
patroni) patroni_member ;;
pgbouncer) pgbouncer_pool ;;
haproxy) exec haproxy -W -db -f /usr/local/etc/haproxy/haproxy.cfg ;;
*) say "usage: ref-start etcd|patroni|pgbouncer|haproxy"; exit 2 ;;
esac
