#!/bin/sh
# The image's entrypoint (under tini, which is PID 1). The command chooses the role:
#   agent   pgwarden agent + PostgreSQL 15 (data in /var/lib/pgwarden/data)
#   proxy   pgwarden proxy (6432 pooled, 5000 primary, 5001 replicas, 7000 status)
#   etcd    an etcd v3 member
#   repository
#           the backup repository host: pgwarden repo-server (pgBackRest's TLS server,
#           the stanza, the backup schedule; the repository in /var/lib/pgbackrest)
#   health  the HEALTHCHECK of whichever role this container runs (the agent's REST
#           API answers, the proxy's /metrics is 200, etcd's peer port answers, the
#           repository host's TLS server answers pgbackrest server-ping)
# Anything else runs as given (pgwarden list, psql, etcdctl, sh ...).
#
# Configuration is by environment only: PGWARDEN_<SECTION>_<KEY>, or
# PGWARDEN_<SECTION>_<KEY>_FILE naming a file (a Docker secret in /run/secrets) that
# holds the value. etcd takes its own ETCD_* variables. Defaults below are set only
# when a variable is absent.
set -eu

role_file=/tmp/pgwarden-role

say() { echo "pgwarden-entrypoint: $*" >&2; }
die() {
	say "$*"
	exit 2
}

# A password in a plain variable shows in `docker inspect`: point at a secret instead.
warn_plain_secrets() {
	for v in PGWARDEN_POSTGRESQL_SUPERUSER_PASSWORD PGWARDEN_POSTGRESQL_REPLICATION_PASSWORD \
		PGWARDEN_API_PASSWORD PGWARDEN_ETCD_PASSWORD PGWARDEN_PROXY_HTTP_PASSWORD \
		PGWARDEN_BACKUP_CIPHER_PASS; do
		if eval "[ -n \"\${$v:-}\" ]"; then
			say "warning: $v is set in the environment, where docker inspect shows it;" \
				"use ${v}_FILE=/run/secrets/... (a Docker secret)"
		fi
	done
}

# Every *_FILE variable must name a readable file: say which one is missing, by name.
check_secret_files() {
	env | sed -n 's/^\(PGWARDEN_[A-Z0-9_]*_FILE\)=\(.*\)$/\1 \2/p' | while read -r name path; do
		case $name in PGWARDEN_PROXY_AUTH_FILE) ;; *)
			[ -r "$path" ] || {
				say "$name names $path, which cannot be read: is the Docker secret" \
					"created (docker secret ls) and given to this service?"
				exit 2
			} ;;
		esac
	done
}

agent() {
	: "${PGWARDEN_CLUSTER_MEMBER:?set PGWARDEN_CLUSTER_MEMBER (this member's name, e.g. node1)}"
	: "${PGWARDEN_POSTGRESQL_DATA_DIR:=/var/lib/pgwarden/data}"
	: "${PGWARDEN_POSTGRESQL_LISTEN:=0.0.0.0:5432}"
	: "${PGWARDEN_POSTGRESQL_CONNECT_ADDRESS:=$PGWARDEN_CLUSTER_MEMBER:5432}"
	: "${PGWARDEN_API_LISTEN:=0.0.0.0:8008}"
	: "${PGWARDEN_API_CONNECT_ADDRESS:=$PGWARDEN_CLUSTER_MEMBER:8008}"
	export PGWARDEN_POSTGRESQL_DATA_DIR PGWARDEN_POSTGRESQL_LISTEN \
		PGWARDEN_POSTGRESQL_CONNECT_ADDRESS PGWARDEN_API_LISTEN PGWARDEN_API_CONNECT_ADDRESS
	top=$(dirname "$PGWARDEN_POSTGRESQL_DATA_DIR")
	if ! [ -d "$top" ] || ! [ -w "$top" ]; then
		die "$top is not writable by uid $(id -u): on the host, create the member's folder" \
			"and give it to 999:999 (deploy/setup.sh does; by hand:" \
			"mkdir -p /var/lib/pgwarden/$PGWARDEN_CLUSTER_MEMBER &&" \
			"chown -R 999:999 /var/lib/pgwarden/$PGWARDEN_CLUSTER_MEMBER)"
	fi
	# The HEALTHCHECK runs in the container's environment, not ours: tell it the URL.
	# It asks that the REST API answer, whatever its answer: a loop slowed down by a
	# loaded host or an etcd outage must not get the agent killed (that would turn a
	# slow moment into a failover); a stalled leader is the fence's business.
	echo "any http://127.0.0.1:${PGWARDEN_API_LISTEN##*:}/liveness" >"$role_file"
	exec pgwarden agent
}

repository() {
	: "${PGWARDEN_BACKUP_REPO_PATH:=/var/lib/pgbackrest}"
	: "${PGWARDEN_BACKUP_WORK_DIR:=/var/lib/pgwarden}"
	: "${PGWARDEN_BACKUP_TLS_LISTEN:=0.0.0.0:8432}"
	export PGWARDEN_BACKUP_REPO_PATH PGWARDEN_BACKUP_WORK_DIR PGWARDEN_BACKUP_TLS_LISTEN
	if ! [ -d "$PGWARDEN_BACKUP_REPO_PATH" ] || ! [ -w "$PGWARDEN_BACKUP_REPO_PATH" ]; then
		die "$PGWARDEN_BACKUP_REPO_PATH is not writable by uid $(id -u): on the host, give" \
			"the repository's folder to 999:999 (deploy/setup.sh does)"
	fi
	echo "tls ${PGWARDEN_BACKUP_TLS_LISTEN##*:}" >"$role_file"
	exec pgwarden repo-server
}

proxy() {
	: "${PGWARDEN_PROXY_LISTEN:=0.0.0.0}"
	# Each replica registers in etcd under its own name (the task's host name).
	: "${PGWARDEN_PROXY_NAME:=$(hostname)}"
	export PGWARDEN_PROXY_LISTEN PGWARDEN_PROXY_NAME
	echo "ok http://127.0.0.1:${PGWARDEN_PROXY_HTTP_PORT:-7000}/metrics" >"$role_file"
	exec pgwarden proxy
}

# An etcd member. Its data lives in a volume. When the other members already form a
# healthy cluster and this one has no data (a replaced node, a lost volume, or a member
# the cluster removed), it is removed if still listed and added again, then starts as a
# member of the existing cluster and receives the data from its peers: the one-time
# `member remove` / `member add` of etcd's runbook, done for you. A first bootstrap (no
# healthy cluster yet) starts as etcd's initial cluster says.
etcd_member() {
	: "${ETCD_NAME:?set ETCD_NAME (this member's name, e.g. etcd1)}"
	: "${ETCD_INITIAL_CLUSTER:?set ETCD_INITIAL_CLUSTER (etcd1=http://etcd1:2380,...)}"
	: "${ETCD_DATA_DIR:=/var/lib/etcd/$ETCD_NAME}"
	: "${ETCD_LISTEN_CLIENT_URLS:=http://0.0.0.0:2379}"
	: "${ETCD_ADVERTISE_CLIENT_URLS:=http://$ETCD_NAME:2379}"
	: "${ETCD_LISTEN_PEER_URLS:=http://0.0.0.0:2380}"
	: "${ETCD_INITIAL_ADVERTISE_PEER_URLS:=http://$ETCD_NAME:2380}"
	: "${ETCD_INITIAL_CLUSTER_TOKEN:=pgwarden}"
	: "${ETCD_PRE_VOTE:=true}"
	export ETCD_NAME ETCD_INITIAL_CLUSTER ETCD_DATA_DIR ETCD_LISTEN_CLIENT_URLS \
		ETCD_ADVERTISE_CLIENT_URLS ETCD_LISTEN_PEER_URLS ETCD_INITIAL_ADVERTISE_PEER_URLS \
		ETCD_INITIAL_CLUSTER_TOKEN ETCD_PRE_VOTE
	# the peer port answers /version before the cluster has a quorum (the client port
	# does not): a member waiting for its peers is alive, and must stay in the DNS
	peer_port=${ETCD_LISTEN_PEER_URLS##*:}
	echo "ok http://127.0.0.1:${peer_port%%/*}/version" >"$role_file"
	if [ -z "${ETCD_INITIAL_CLUSTER_STATE:-}" ]; then
		peers=$(echo "$ETCD_INITIAL_CLUSTER" | tr ',' '\n' | grep -v "^$ETCD_NAME=" |
			sed 's|^[^=]*=\(http[s]*://[^:]*\):.*|\1:2379|' | paste -sd, -)
		ctl="etcdctl --endpoints=$peers --command-timeout=3s"
		have_data=no
		[ -d "$ETCD_DATA_DIR/member" ] && have_data=yes
		# a linearizable read: only a cluster with a quorum answers it
		if $ctl endpoint health >/dev/null 2>&1 && list=$($ctl member list 2>/dev/null); then
			mine=$(echo "$list" | awk -F', ' -v u="$ETCD_INITIAL_ADVERTISE_PEER_URLS" '$4 == u')
			case $have_data:$mine in
			yes:)
				say "etcd member $ETCD_NAME was removed from the running cluster: adding" \
					"it again with no data (its peers send theirs)"
				rm -rf "$ETCD_DATA_DIR"
				$ctl member add "$ETCD_NAME" --peer-urls="$ETCD_INITIAL_ADVERTISE_PEER_URLS" \
					>/dev/null ;;
			yes:*) ;;
			no:*", unstarted, "*)
				say "etcd member $ETCD_NAME joins the running cluster (listed, not started yet)" ;;
			no:)
				say "etcd member $ETCD_NAME has no data and is not in the running cluster:" \
					"adding it"
				$ctl member add "$ETCD_NAME" --peer-urls="$ETCD_INITIAL_ADVERTISE_PEER_URLS" \
					>/dev/null ;;
			no:*)
				say "etcd member $ETCD_NAME has no data while the running cluster knows it" \
					"($mine): removing it and adding it again (a replaced node or a lost volume)"
				$ctl member remove "${mine%%,*}" >/dev/null
				$ctl member add "$ETCD_NAME" --peer-urls="$ETCD_INITIAL_ADVERTISE_PEER_URLS" \
					>/dev/null ;;
			esac
			ETCD_INITIAL_CLUSTER_STATE=existing
			export ETCD_INITIAL_CLUSTER_STATE
		fi
	fi
	exec etcd
}

health() {
	read -r want url <"$role_file" 2>/dev/null || exit 0 # a one-off command: nothing to check
	if [ "$want" = tls ]; then
		pgbackrest server-ping --tls-server-address=127.0.0.1 --tls-server-port="$url" \
			--log-level-console=error --log-level-file=off >/dev/null 2>&1 && exit 0
		echo "pgbackrest server on port $url does not answer"
		exit 1
	fi
	code=$(curl -s -o /dev/null -m 5 -w '%{http_code}' "$url" || true)
	case $want:$code in
	any:000 | ok:000) echo "no answer from $url"; exit 1 ;;
	any:*) exit 0 ;;
	ok:2??) exit 0 ;;
	*) echo "$url answered $code"; exit 1 ;;
	esac
}

case "${1:-agent}" in
agent)
	warn_plain_secrets
	check_secret_files
	agent
	;;
proxy)
	warn_plain_secrets
	check_secret_files
	proxy
	;;
repository)
	warn_plain_secrets
	check_secret_files
	repository
	;;
etcd) etcd_member ;;
health) health ;;
*) exec "$@" ;;
esac
