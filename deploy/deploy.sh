#!/usr/bin/env bash
# Deploys pgwarden on the swarm (after deploy/setup.sh) and waits until it serves.
#   deploy/deploy.sh [--timeout S] [--no-wait]
# It checks the secrets, the node labels, the application network and the edge ports;
# builds the image when it is absent; runs docker stack deploy; waits (DEPLOY_TIMEOUT
# seconds, progress every few seconds) for one leader, two streaming replicas and every
# proxy routing; then prints how to connect and the cluster table. When the cluster does
# not come up it prints the failing services' tasks and last log lines and exits 1.
# Exit codes: 0 ok, 1 failed, 2 bad usage or settings.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=deploy/lib.sh
. "$here/lib.sh"

wait=1 timeout=""
while [ $# -gt 0 ]; do
	case $1 in
	--timeout)
		[ $# -ge 2 ] || fail_usage "--timeout needs seconds"
		timeout=$2; shift 2 ;;
	--no-wait) wait=0; shift ;;
	-h | --help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
	*) fail_usage "unknown option '$1' (see --help)" ;;
	esac
done

require_manager
load_env "$here/.env"
[ -z "$timeout" ] || DEPLOY_TIMEOUT=$timeout
[[ $DEPLOY_TIMEOUT =~ ^[1-9][0-9]*$ ]] || fail_usage "--timeout: expected seconds, got '$DEPLOY_TIMEOUT'"
stack=$STACK_NAME

# ---- checks before anything is deployed ----
missing=()
for s in "${SECRETS[@]}"; do
	docker secret inspect "${stack}_$s" >/dev/null 2>&1 || missing+=("${stack}_$s")
done
[ "${#missing[@]}" = 0 ] ||
	fail "Docker secret(s) missing: ${missing[*]}: run deploy/setup.sh (it creates them)"

for key in pgwarden etcd; do
	for i in 1 2 3; do
		holders=$(label_holders "$key" "node$i" | xargs -r -n1 docker node inspect -f '{{.Description.Hostname}}' | xargs)
		case $(echo "$holders" | wc -w) in
		0) fail "no node has the label $key=node$i, so $([ $key = etcd ] && echo etcd$i || echo node$i)" \
			"could not be placed: run deploy/setup.sh --nodes A,B,C, or" \
			"docker node update --label-add $key=node$i NODE" ;;
		1) ;;
		*) fail "the label $key=node$i is on several nodes ($holders): keep it on one" \
			"(docker node update --label-rm $key NODE)" ;;
		esac
	done
done

holders=$(label_holders pgwarden-backup true | xargs -r -n1 docker node inspect -f '{{.Description.Hostname}}' | xargs)
case $(echo "$holders" | wc -w) in
0) fail "no node has the label pgwarden-backup=true, so the backup repository host could" \
	"not be placed: run deploy/setup.sh, or docker node update --label-add pgwarden-backup=true NODE" ;;
1) ;;
*) fail "the label pgwarden-backup=true is on several nodes ($holders): keep it on one" \
	"(docker node update --label-rm pgwarden-backup NODE)" ;;
esac

# After docker stack rm, the old tasks go on stopping for up to their grace period and
# hold the edge ports and the networks: wait until they are gone.
if [ -z "$(docker stack services -q "$stack" 2>/dev/null)" ] &&
	docker network inspect "${stack}_cluster" >/dev/null 2>&1; then
	say "the previous stack $stack is still being removed: waiting (at most 120 s)"
	deadline=$((SECONDS + 120))
	while docker network inspect "${stack}_cluster" >/dev/null 2>&1; do
		[ "$SECONDS" -lt "$deadline" ] ||
			fail "the network ${stack}_cluster of a removed stack is still there after 120 s" \
				"(docker network inspect ${stack}_cluster shows what holds it)"
		sleep 2
	done
fi

docker network inspect "$APP_NETWORK" >/dev/null 2>&1 ||
	fail "the application network $APP_NETWORK does not exist: run deploy/setup.sh, or" \
		"docker network create --driver overlay --attachable $APP_NETWORK"

if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
	say "image $IMAGE: absent, building it (deploy/Dockerfile)"
	if ! docker build -q -f "$here/Dockerfile" -t "$IMAGE" "$here/.." >/tmp/pgwarden-build.log 2>&1; then
		tail -15 /tmp/pgwarden-build.log >&2
		grep -q "bookworm-slim" /tmp/pgwarden-build.log &&
			echo "(no registry? deploy/make-base-image.sh makes debian:bookworm-slim locally)" >&2
		fail "could not build $IMAGE (log: /tmp/pgwarden-build.log)"
	fi
	say "image $IMAGE: built"
fi

# The edge proxies publish their ports on every node: on a first deploy, check that no
# other program holds them (a one-shot job on every node, in the host's network).
if ! docker service inspect "${stack}_edge" >/dev/null 2>&1; then
	ports="$POOLED_PORT $PRIMARY_PORT $REPLICA_PORT $STATUS_PORT"
	# /proc/net/tcp{,6}: listening sockets (state 0A), local port in hex
	out=$(run_task portcheck global "
		for p in $ports; do
			h=\$(printf '%04X' \$p)
			if cat /proc/net/tcp /proc/net/tcp6 2>/dev/null |
				awk -v h=\$h '\$4 == \"0A\" && substr(\$2, length(\$2) - 3) == h {f=1} END {exit !f}'; then
				echo \"taken \$p \$(hostname)\"
			fi
		done") || fail "the port check could not run on every node: $out"
	taken=$(echo "$out" | grep '^taken' || true)
	if [ -n "$taken" ]; then
		echo "$taken" | while read -r _ p node; do
			echo "deploy: error: port $p is taken on node $node: the edge proxy publishes it there" \
				"(stop what holds it, or set another port in .env)" >&2
		done
		exit 1
	fi
fi

# ---- deploy ----
resolve=never
[ -z "$(docker image inspect -f '{{join .RepoDigests ""}}' "$IMAGE")" ] || resolve=always
say "docker stack deploy $stack (image $IMAGE)"
docker stack deploy --resolve-image "$resolve" -c "$here/pgwarden-stack.yml" "$stack" |
	sed 's/^/  /'
[ "$wait" = 1 ] || exit 0

# ---- wait until it serves ----
# A container of the image on the cluster network, with the CLI's settings (at most 30 s).
on_cluster_net() {
	timeout 30 docker run --rm --network "${stack}_cluster" -e PGWARDEN_CLUSTER_NAME="$CLUSTER_NAME" \
		-e PGWARDEN_ETCD_ENDPOINTS="$ETCD_ENDPOINTS" "$@"
}
# A probe container reads the cluster from etcd and asks every proxy task (tasks.proxy,
# tasks.edge) whether it routes writes. It prints one line:
#   leader=NAME streaming=N proxies=ROUTING/FOUND
probe() {
	on_cluster_net --entrypoint /bin/sh "$IMAGE" -c '
		j=$(pgwarden list --json 2>/dev/null || true)
		leader=$(echo "$j" | sed -n "s/^[^[]*\"leader\": *\"\([^\"]*\)\".*/\1/p" | head -1)
		streaming=$(echo "$j" | grep -o "\"state\": *\"streaming\"" | wc -l)
		found=0 routing=0
		for ip in $(getent ahostsv4 tasks.proxy tasks.edge | awk "{print \$1}" | sort -u); do
			found=$((found + 1))
			curl -fsS -m 2 "http://$ip:7000/metrics" 2>/dev/null |
				grep -q "^pgwarden_proxy_routing_writes 1" && routing=$((routing + 1))
		done
		echo "leader=${leader:-none} streaming=$streaming proxies=$routing/$found"' 2>/dev/null ||
		echo "leader=none streaming=0 proxies=0/0"
}

expected_proxies() { # replicas of the proxy service + one edge per ready node
	local p e
	p=$(docker service inspect -f '{{.Spec.Mode.Replicated.Replicas}}' "${stack}_proxy" 2>/dev/null || echo 0)
	e=$(docker node ls --format '{{.Status}} {{.Availability}}' | grep -c '^Ready Active' || true)
	echo $((p + e))
}

show_failures() {
	echo "--- services" >&2
	docker stack services "$stack" >&2 || true
	for svc in $(docker stack services -q "$stack" 2>/dev/null); do
		name=$(docker service inspect -f '{{.Spec.Name}}' "$svc")
		tasks=$(docker service ps --no-trunc --filter desired-state=running \
			--format '{{.Name}} on {{.Node}}: {{.CurrentState}} {{.Error}}' "$svc" 2>/dev/null)
		if echo "$tasks" | grep -qvE ': Running'; then
			echo "--- $name" >&2
			echo "$tasks" | sed 's/^/  /' >&2
			docker service logs --raw --tail 10 "$svc" 2>&1 | sed 's/^/  | /' >&2 || true
		fi
	done
}

deadline=$((SECONDS + DEPLOY_TIMEOUT))
last=""
while :; do
	status=$(probe)
	want=$(expected_proxies)
	leader=$(echo "$status" | sed -n 's/.*leader=\([^ ]*\).*/\1/p')
	streaming=$(echo "$status" | sed -n 's/.*streaming=\([0-9]*\).*/\1/p')
	routing=$(echo "$status" | sed -n 's|.*proxies=\([0-9]*\)/.*|\1|p')
	if [ "$status" != "$last" ]; then
		say "$(date +%T) leader: $leader, streaming replicas: $streaming/2, proxies routing: $routing/$want"
		last=$status
	fi
	if [ "$leader" != none ] && [ "$streaming" -ge 2 ] && [ "$routing" -ge "$want" ]; then
		break
	fi
	# a task that cannot start for a reason that will not go away: say so at once
	errs=$(docker stack ps --no-trunc --filter desired-state=running \
		--format '{{.Name}} on {{.Node}}: {{.Error}}' "$stack" 2>/dev/null |
		grep -E 'address already in use|no suitable node|invalid mount|bind source path does not exist|secret .* not found' |
		head -3 || true)
	if [ -n "$errs" ]; then
		show_failures
		fail "a service cannot start: $errs"
	fi
	if [ "$SECONDS" -ge "$deadline" ]; then
		show_failures
		fail "the cluster did not come up within $DEPLOY_TIMEOUT s (leader: $leader," \
			"streaming replicas: $streaming/2, proxies routing: $routing/$want)." \
			"The stack stays deployed: fix and run deploy.sh again, or docker stack rm $stack"
	fi
	sleep 3
done

addrs=$(docker node ls -q | xargs docker node inspect \
	-f '{{if eq .Status.State "ready"}}{{.Status.Addr}}{{end}}' | grep . | sort -u)
hostlist() { echo "$addrs" | sed "s/\$/:$1/" | paste -sd, -; }
cat <<EOF

pgwarden is up (stack $stack, cluster $CLUSTER_NAME). Password of postgres: $here/.secrets/superuser_password

Applications on the network $APP_NETWORK (by name; $POOLER_ALIAS and $POOLER_ALIAS2 are aliases of ${stack}_proxy):
  postgresql://postgres@$POOLER_ALIAS:6432/postgres                      pooled, read-write
  postgresql://postgres@$POOLER_ALIAS:5000/postgres                      a session on the primary
  postgresql://postgres@$POOLER_ALIAS:5001/postgres                      a session on a replica
From outside the swarm (the edge proxy on every node):
  postgresql://postgres@$(hostlist "$POOLED_PORT")/postgres
  postgresql://postgres@$(hostlist "$PRIMARY_PORT")/postgres?target_session_attrs=read-write
  postgresql://postgres@$(hostlist "$REPLICA_PORT")/postgres
Status page: http://$(echo "$addrs" | head -1):$STATUS_PORT/ (admin, password in $here/.secrets/http_password)
Cluster:     docker exec \$(docker ps -q -f name=${stack}_node1) pgwarden list
Backups:     docker exec \$(docker ps -q -f name=${stack}_backup) pgwarden backup list
             (on the node labelled pgwarden-backup=true; the schedule: BACKUP_SCHEDULE_FULL/_DIFF)

EOF
on_cluster_net --entrypoint pgwarden "$IMAGE" list
