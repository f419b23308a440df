#!/usr/bin/env bash
# Prepares a Docker Swarm for pgwarden. Run it on a manager, as a user who can run docker.
#   deploy/setup.sh                          asks which node is node1, node2, node3
#   deploy/setup.sh --nodes A,B,C [--yes]    node names or IDs, in order; no questions
#   --backup-node D                          the backup repository's node (default: the
#                                            third one; best a fourth host)
# It:
#   - labels the nodes: pgwarden=nodeN and etcd=nodeN (where member N and etcd N run),
#     pgwarden-backup=true (where the backup repository host runs);
#   - creates DATA_ROOT/nodeN, owned by 999:999, on node N, and BACKUP_ROOT on the backup
#     node (one-shot tasks on those nodes);
#   - creates the Docker secrets (random, 40 characters) from deploy/.secrets/, where it
#     keeps them for you (mode 0600): put your own password in a file there first to use it;
#     and pgBackRest's TLS certificates (a CA, one certificate for every host);
#   - creates the application network (APP_NETWORK, an attachable overlay);
#   - writes deploy/.env from .env.example.
# Running it again changes nothing and says so. Exit codes: 0 ok, 1 failed, 2 bad usage.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=deploy/lib.sh
. "$here/lib.sh"

usage() {
	sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

nodes_arg="" assume_yes=0 backup_arg=""
while [ $# -gt 0 ]; do
	case $1 in
	--backup-node)
		[ $# -ge 2 ] || fail_usage "--backup-node needs a node"
		backup_arg=$2; shift 2 ;;
	--backup-node=*) backup_arg=${1#--backup-node=}; shift ;;
	--nodes)
		[ $# -ge 2 ] || fail_usage "--nodes needs A,B,C"
		nodes_arg=$2; shift 2 ;;
	--nodes=*) nodes_arg=${1#--nodes=}; shift ;;
	--yes | -y) assume_yes=1; shift ;;
	-h | --help) usage ;;
	*) fail_usage "unknown option '$1' (see --help)" ;;
	esac
done

require_manager
changed=0

# ---- .env ----
if [ -f "$here/.env" ]; then
	say ".env: exists, unchanged"
else
	cp "$here/.env.example" "$here/.env"
	say ".env: written from .env.example (edit it, then run deploy.sh)"
	changed=1
fi
load_env "$here/.env"

# ---- which node is node1, node2, node3 ----
mapfile -t ids < <(docker node ls -q)
declare -A name_of id_of
for id in "${ids[@]}"; do
	n=$(docker node inspect -f '{{.Description.Hostname}}' "$id")
	name_of[$id]=$n
	id_of[$n]=$id
	id_of[$id]=$id
done

if [ -z "$nodes_arg" ]; then
	have=""
	for i in 1 2 3; do
		h=$(label_holders pgwarden "node$i" | head -1)
		[ -n "$h" ] && have="$have ${name_of[$h]}"
	done
	if [ "$(echo "$have" | wc -w)" = 3 ]; then
		nodes_arg=$(echo "$have" | xargs | tr ' ' ',')
		say "nodes: already labelled ($nodes_arg)"
	elif [ -t 0 ] && [ "$assume_yes" = 0 ]; then
		docker node ls
		read -r -p "The three nodes for node1,node2,node3 (names or IDs, comma-separated): " \
			nodes_arg
	else
		fail_usage "which nodes? give --nodes A,B,C (see docker node ls): no terminal to ask on"
	fi
fi
IFS=, read -r -a chosen <<<"$nodes_arg"
[ "${#chosen[@]}" = 3 ] || fail_usage "--nodes needs exactly three nodes, got '$nodes_arg'"
declare -A seen
for i in 0 1 2; do
	want=${chosen[$i]}
	id=${id_of[$want]:-}
	[ -n "$id" ] || fail_usage "no node '$want' in this swarm (docker node ls lists them)"
	[ -z "${seen[$id]:-}" ] || fail_usage "node '$want' is given twice: each member needs its own node"
	seen[$id]=1
	chosen[$i]=$id
done

# ---- labels ----
for i in 1 2 3; do
	id=${chosen[$((i - 1))]}
	for key in pgwarden etcd; do
		holder=$(label_holders "$key" "node$i" | xargs)
		if [ "$holder" = "$id" ]; then
			say "label $key=node$i: on ${name_of[$id]} already"
			continue
		fi
		for h in $holder; do
			state=$(docker node inspect -f '{{.Status.State}}' "$h")
			if [ "$state" = ready ] && [ "$assume_yes" = 0 ]; then
				fail "label $key=node$i is on ${name_of[$h]}, which is up: move it with --yes" \
					"(its member's data stays on ${name_of[$h]})"
			fi
			docker node update --label-rm "$key" "$h" >/dev/null
			say "label $key=node$i: removed from ${name_of[$h]} ($state)"
		done
		docker node update --label-add "$key=node$i" "$id" >/dev/null
		say "label $key=node$i: added to ${name_of[$id]}"
		changed=1
	done
done

# ---- the backup repository's node ----
backup_id=""
if [ -n "$backup_arg" ]; then
	backup_id=${id_of[$backup_arg]:-}
	[ -n "$backup_id" ] || fail_usage "no node '$backup_arg' in this swarm (docker node ls lists them)"
else
	backup_id=$(label_holders pgwarden-backup true | head -1)
	[ -n "$backup_id" ] || backup_id=${chosen[2]}
fi
for h in $(label_holders pgwarden-backup true); do
	[ "$h" = "$backup_id" ] && continue
	state=$(docker node inspect -f '{{.Status.State}}' "$h")
	if [ "$state" = ready ] && [ "$assume_yes" = 0 ]; then
		fail "label pgwarden-backup=true is on ${name_of[$h]}, which is up: move it with --yes" \
			"(the repository's files stay on ${name_of[$h]}: copy BACKUP_ROOT over)"
	fi
	docker node update --label-rm pgwarden-backup "$h" >/dev/null
	say "label pgwarden-backup=true: removed from ${name_of[$h]} ($state)"
done
if [ "$(label_holders pgwarden-backup true | xargs)" = "$backup_id" ]; then
	say "label pgwarden-backup=true: on ${name_of[$backup_id]} already"
else
	docker node update --label-add pgwarden-backup=true "$backup_id" >/dev/null
	say "label pgwarden-backup=true: added to ${name_of[$backup_id]}"
	changed=1
fi

# ---- the application network ----
if docker network inspect "$APP_NETWORK" >/dev/null 2>&1; then
	say "network $APP_NETWORK: exists"
else
	docker network create --driver overlay --attachable "$APP_NETWORK" >/dev/null
	say "network $APP_NETWORK: created (overlay, attachable)"
	changed=1
fi

# ---- secrets ----
secrets_dir="$here/.secrets"
umask 077
mkdir -p "$secrets_dir"
random_secret() {
	local r
	r=$(head -c 4096 /dev/urandom | LC_ALL=C tr -dc 'A-Za-z0-9')
	printf '%s' "${r:0:40}"
}
for s in "${PASSWORDS[@]}"; do
	f="$secrets_dir/$s"
	if [ ! -s "$f" ] && docker secret inspect "${STACK_NAME}_$s" >/dev/null 2>&1; then
		fail "docker secret ${STACK_NAME}_$s exists but $f does not, and Docker never gives a" \
			"secret's value back: copy deploy/.secrets/ from the manager where setup.sh first ran"
	fi
	[ -s "$f" ] || { random_secret >"$f"; say "secret $s: generated into $f"; }
done
# pgBackRest's TLS: a CA (its key stays here) and one certificate, CN pgwarden, for the
# host names the services use; made with openssl in the image (the host may lack it)
if [ ! -s "$secrets_dir/backup_ca" ] || [ ! -s "$secrets_dir/backup_cert" ] ||
	[ ! -s "$secrets_dir/backup_key" ]; then
	for s in "${CERTS[@]}"; do
		if docker secret inspect "${STACK_NAME}_$s" >/dev/null 2>&1; then
			fail "docker secret ${STACK_NAME}_$s exists but $secrets_dir/$s does not: copy" \
				"deploy/.secrets/ from the manager where setup.sh first ran"
		fi
	done
	out=$(docker run --rm --user "$(id -u):$(id -g)" --network none --entrypoint /bin/sh \
		-v "$secrets_dir:/out" "$IMAGE" -c '
		set -e; cd /out; umask 077
		openssl req -x509 -newkey rsa:3072 -nodes -keyout backup_ca.key -out backup_ca \
			-days 3650 -subj "/CN=pgwarden backup CA"
		openssl req -newkey rsa:3072 -nodes -keyout backup_key -out backup.csr -subj "/CN=pgwarden"
		printf "subjectAltName=DNS:backup,DNS:node1,DNS:node2,DNS:node3,DNS:localhost\n" >backup.ext
		openssl x509 -req -in backup.csr -CA backup_ca -CAkey backup_ca.key -CAcreateserial \
			-out backup_cert -days 3650 -extfile backup.ext
		rm -f backup.csr backup.ext backup_ca.srl' 2>&1) ||
		fail "could not make the TLS certificates with $IMAGE (is it built?): $out"
	say "TLS certificates for pgBackRest: made into $secrets_dir (backup_ca, backup_cert, backup_key)"
fi
# the proxy's auth file (PgBouncer's userlist.txt): the superuser, for auth_query
printf '"postgres" "%s"\n' "$(cat "$secrets_dir/superuser_password")" >"$secrets_dir/userlist.new"
if [ -f "$secrets_dir/userlist" ] && cmp -s "$secrets_dir/userlist" "$secrets_dir/userlist.new"; then
	rm -f "$secrets_dir/userlist.new"
else
	mv "$secrets_dir/userlist.new" "$secrets_dir/userlist"
fi
# Each Docker secret carries the sha256 of the file it was made from, so that a file
# that changed since (edited, or generated anew on another manager) is noticed.
for s in "${SECRETS[@]}"; do
	name="${STACK_NAME}_$s"
	sum=$(sha256sum <"$secrets_dir/$s" | cut -c1-64)
	if made=$(docker secret inspect -f '{{index .Spec.Labels "pgwarden.sha256"}}' "$name" 2>/dev/null); then
		case $made in
		"$sum") say "docker secret $name: exists, unchanged" ;;
		"" | "<no value>") say "docker secret $name: exists (not made by setup.sh: not compared)" ;;
		*) fail "docker secret $name was not made from $secrets_dir/$s, and a secret cannot" \
			"change in place: put its value back in that file, or (new passwords) docker stack rm" \
			"$STACK_NAME; docker secret rm $name; then run setup.sh again" ;;
		esac
	else
		docker secret create --label "pgwarden.sha256=$sum" "$name" "$secrets_dir/$s" >/dev/null
		say "docker secret $name: created"
		changed=1
	fi
done

# ---- data folders, one task per node ----
for i in 1 2 3; do
	id=${chosen[$((i - 1))]}
	out=$(run_task "setup-node$i" "$id" \
		"d=/host${DATA_ROOT}/node$i; if [ -d \$d ] && [ \"\$(stat -c %u:%g \$d)\" = 999:999 ]; then
			echo exists; else mkdir -p \$d && chown 999:999 \$d && chmod 0750 \$d && echo created; fi") ||
		fail "could not create ${DATA_ROOT}/node$i on ${name_of[$id]}: $out"
	case $out in
	*created*) say "folder ${DATA_ROOT}/node$i on ${name_of[$id]}: created (999:999)"; changed=1 ;;
	*) say "folder ${DATA_ROOT}/node$i on ${name_of[$id]}: exists (999:999)" ;;
	esac
done

out=$(run_task setup-backup "$backup_id" \
	"d=/host${BACKUP_ROOT}; if [ -d \$d ] && [ \"\$(stat -c %u:%g \$d)\" = 999:999 ]; then
		echo exists; else mkdir -p \$d && chown 999:999 \$d && chmod 0750 \$d && echo created; fi") ||
	fail "could not create ${BACKUP_ROOT} on ${name_of[$backup_id]}: $out"
case $out in
*created*) say "folder ${BACKUP_ROOT} on ${name_of[$backup_id]}: created (999:999)"; changed=1 ;;
*) say "folder ${BACKUP_ROOT} on ${name_of[$backup_id]}: exists (999:999)" ;;
esac

if [ "$changed" = 0 ]; then
	say "nothing to change: the swarm is ready for deploy.sh"
else
	say "done: now run deploy/deploy.sh"
fi
