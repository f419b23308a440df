# Shared by setup.sh and deploy.sh (sourced, bash).

# An unexpected failure names the command that failed rather than exiting silently
# (errtrace: also inside functions).
set -E
trap 'echo "$(basename "$0" .sh): error: line $LINENO: \"$BASH_COMMAND\" failed" >&2' ERR

PASSWORDS=(superuser_password replication_password api_password http_password backup_cipher_pass)
# pgBackRest's TLS: a CA and one certificate for every host (setup.sh makes them)
CERTS=(backup_ca backup_cert backup_key)
SECRETS=("${PASSWORDS[@]}" userlist "${CERTS[@]}")
# The etcd members, by service name on the cluster network (as in pgwarden-stack.yml).
ETCD_ENDPOINTS=http://etcd1:2379,http://etcd2:2379,http://etcd3:2379

say() { echo "$(basename "$0" .sh): $*"; }
fail() {
	echo "$(basename "$0" .sh): error: $*" >&2
	exit 1
}
fail_usage() {
	echo "$(basename "$0" .sh): $*" >&2
	exit 2
}

require_manager() {
	command -v docker >/dev/null || fail "docker is not installed"
	docker info >/dev/null 2>&1 || fail "cannot reach the Docker engine (is dockerd running? are you in the docker group?)"
	[ "$(docker info -f '{{.Swarm.LocalNodeState}}')" = active ] ||
		fail "this engine is not in a swarm: docker swarm init --advertise-addr <IP> (then join the other nodes)"
	[ "$(docker info -f '{{.Swarm.ControlAvailable}}')" = true ] ||
		fail "this node is not a swarm manager: run me on a manager (docker node ls shows them)"
}

# Settings and their defaults (as in .env.example); load_env checks each value.
ENV_KEYS=(STACK_NAME CLUSTER_NAME IMAGE APP_NETWORK POOLER_ALIAS POOLER_ALIAS2 DATA_ROOT
	PROXY_REPLICAS MAX_CLIENT_CONN DEFAULT_POOL_SIZE POOLED_PORT PRIMARY_PORT REPLICA_PORT
	STATUS_PORT MEMBER_CPUS MEMBER_MEMORY ETCD_CPUS ETCD_MEMORY PROXY_CPUS PROXY_MEMORY
	HANDOVER_TIMEOUT MEMBER_STOP_GRACE LOG_LEVEL DEPLOY_TIMEOUT BACKUP_ROOT
	BACKUP_SCHEDULE_FULL BACKUP_SCHEDULE_DIFF BACKUP_RETENTION_FULL BACKUP_PROCESS_MAX
	BACKUP_CPUS BACKUP_MEMORY)
STACK_NAME=pgwarden CLUSTER_NAME=pgwarden IMAGE=pgwarden:latest APP_NETWORK=pgwarden-app
POOLER_ALIAS=pgbouncer POOLER_ALIAS2=haproxy DATA_ROOT=/var/lib/pgwarden PROXY_REPLICAS=3
MAX_CLIENT_CONN=10000 DEFAULT_POOL_SIZE=25 POOLED_PORT=6432 PRIMARY_PORT=5000
REPLICA_PORT=5001 STATUS_PORT=7000 MEMBER_CPUS=4 MEMBER_MEMORY=16G ETCD_CPUS=1
ETCD_MEMORY=2G PROXY_CPUS=2 PROXY_MEMORY=4G HANDOVER_TIMEOUT=20s MEMBER_STOP_GRACE=60s
LOG_LEVEL=info DEPLOY_TIMEOUT=300 BACKUP_ROOT=/var/lib/pgwarden/backup
BACKUP_SCHEDULE_FULL="0 1 * * 0" BACKUP_SCHEDULE_DIFF="0 1 * * 1-6" BACKUP_RETENTION_FULL=2
BACKUP_PROCESS_MAX=2 BACKUP_CPUS=2 BACKUP_MEMORY=2G

# seconds in a duration such as 20s, 1m, 500ms, 90 (seconds); empty when malformed
duration_s() {
	case $1 in
	*ms) [[ ${1%ms} =~ ^[0-9]+$ ]] && echo $((${1%ms} / 1000)) ;;
	*s) [[ ${1%s} =~ ^[0-9]+$ ]] && echo "${1%s}" ;;
	*m) [[ ${1%m} =~ ^[0-9]+$ ]] && echo $((${1%m} * 60)) ;;
	*h) [[ ${1%h} =~ ^[0-9]+$ ]] && echo $((${1%h} * 3600)) ;;
	*) [[ $1 =~ ^[0-9]+$ ]] && echo "$1" ;;
	esac
	return 0
}

# Reads KEY=VALUE lines, checks every value, exports them. Errors name file:line.
load_env() {
	local file=$1 line n=0 key value why ports=""
	[ -f "$file" ] || fail "$file is missing: run deploy/setup.sh (it writes it from .env.example)"
	while IFS= read -r line || [ -n "$line" ]; do
		n=$((n + 1))
		line=${line%$'\r'}
		[[ $line =~ ^[[:space:]]*(#|$) ]] && continue
		if ! [[ $line =~ ^([A-Z0-9_]+)=(.*)$ ]]; then
			fail_usage "$file:$n: expected KEY=VALUE, got '$line'"
		fi
		key=${BASH_REMATCH[1]} value=${BASH_REMATCH[2]}
		value=${value%\"} value=${value#\"}
		why=""
		case $key in
		STACK_NAME | CLUSTER_NAME | APP_NETWORK)
			[[ $value =~ ^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$ ]] ||
				why="expected a name of letters, digits, '_', '.' or '-'" ;;
		POOLER_ALIAS | POOLER_ALIAS2)
			[[ $value =~ ^[a-zA-Z0-9][a-zA-Z0-9.-]{0,62}$ ]] || why="expected a host name" ;;
		IMAGE) [[ $value =~ ^[a-zA-Z0-9][^[:space:]]*$ ]] || why="expected an image name" ;;
		DATA_ROOT | BACKUP_ROOT)
			[[ $value =~ ^/[^[:space:]]*[^/]$ ]] || why="expected an absolute path" ;;
		BACKUP_SCHEDULE_FULL | BACKUP_SCHEDULE_DIFF)
			# checked in full by pgwarden when the service starts; here: no quotes
			[[ $value =~ ^[0-9a-z*/,\ -]*$ ]] ||
				why="expected cron in UTC (0 1 * * 0), an interval (6h), or nothing" ;;
		BACKUP_RETENTION_FULL) [[ $value =~ ^[1-9][0-9]{0,3}$ ]] || why="expected a number" ;;
		BACKUP_PROCESS_MAX) [[ $value =~ ^[1-9][0-9]?$ ]] || why="expected a number (1-64)" ;;
		PROXY_REPLICAS) [[ $value =~ ^[0-9]{1,3}$ ]] || why="expected a number of replicas" ;;
		MAX_CLIENT_CONN | DEFAULT_POOL_SIZE)
			[[ $value =~ ^[1-9][0-9]{0,5}$ ]] || why="expected a positive number" ;;
		POOLED_PORT | PRIMARY_PORT | REPLICA_PORT | STATUS_PORT)
			if [[ $value =~ ^[1-9][0-9]{0,4}$ ]] && [ "$value" -le 65535 ]; then
				case " $ports " in *" $value "*) why="port $value is used twice" ;; esac
				ports="$ports $value"
			else
				why="expected a port (1-65535)"
			fi ;;
		MEMBER_CPUS | ETCD_CPUS | PROXY_CPUS | BACKUP_CPUS)
			[[ $value =~ ^[0-9]+(\.[0-9]+)?$ ]] && [[ ! $value =~ ^0+(\.0+)?$ ]] ||
				why="expected a number of CPUs such as 2 or 0.5" ;;
		MEMBER_MEMORY | ETCD_MEMORY | PROXY_MEMORY | BACKUP_MEMORY)
			[[ $value =~ ^[1-9][0-9]*[kKmMgG]$ ]] || why="expected a size such as 512M or 16G" ;;
		HANDOVER_TIMEOUT | MEMBER_STOP_GRACE)
			[ -n "$(duration_s "$value")" ] || why="expected a duration such as 20s or 1m" ;;
		LOG_LEVEL)
			[[ $value =~ ^(debug|info|warning|error)$ ]] || why="expected debug, info, warning or error" ;;
		DEPLOY_TIMEOUT) [[ $value =~ ^[1-9][0-9]*$ ]] || why="expected seconds" ;;
		*)
			fail_usage "$file:$n: unknown setting '$key' (known: ${ENV_KEYS[*]})" ;;
		esac
		[ -z "$why" ] || fail_usage "$file:$n: $key: bad value '$value': $why"
		printf -v "$key" '%s' "$value"
	done <"$file"
	if [ "$(duration_s "$MEMBER_STOP_GRACE")" -le "$(duration_s "$HANDOVER_TIMEOUT")" ]; then
		fail_usage "$file: MEMBER_STOP_GRACE ($MEMBER_STOP_GRACE) must be longer than" \
			"HANDOVER_TIMEOUT ($HANDOVER_TIMEOUT), or Docker kills a leader mid-hand-over"
	fi
	for key in "${ENV_KEYS[@]}"; do
		export "${key?}"
	done
}

# The IDs of the nodes that carry the label KEY=VALUE (one per line).
label_holders() {
	docker node ls -q | xargs docker node inspect -f "{{.ID}} {{index .Spec.Labels \"$1\"}}" |
		awk -v v="$2" '$2 == v {print $1}'
}

# Runs a shell script as root in one-shot tasks, with the node's / at /host:
#   run_task NAME NODE-ID SCRIPT    on that node;
#   run_task NAME global SCRIPT     on every node that takes tasks, in the host's network.
# Prints the tasks' output. Fails (with the reason) when a task fails, or when they have
# not all finished in 120 s.
run_task() {
	local name="${STACK_NAME}-$1" where=$2 script=$3 want states err deadline
	local -a placement
	if [ "$where" = global ]; then
		placement=(--mode global-job --network host)
		want=$(docker node ls --format '{{.Status}} {{.Availability}}' | grep -c '^Ready Active' || true)
	else
		placement=(--restart-condition none --constraint "node.id==$where")
		want=1
	fi
	docker service rm "$name" >/dev/null 2>&1 || true
	docker service create --detach --quiet --no-resolve-image --name "$name" "${placement[@]}" \
		--user 0:0 --mount type=bind,source=/,target=/host \
		--entrypoint /bin/sh "$IMAGE" -c "$script" >/dev/null 2>&1 ||
		{ echo "cannot create the service $name"; return 1; }
	deadline=$((SECONDS + 120))
	while :; do
		states=$(docker service ps --no-trunc --format '{{.CurrentState}}' "$name" 2>/dev/null || true)
		[ "$(echo "$states" | grep -c '^Complete' || true)" -lt "$want" ] || break
		if echo "$states" | grep -qE '^(Failed|Rejected)'; then
			err=$(docker service ps --no-trunc --format '{{.Node}}: {{.Error}}' "$name" 2>/dev/null |
				grep -v ': $' | head -3 || true)
			docker service rm "$name" >/dev/null 2>&1 || true
			case $err in
			*"No such image"* | *"not found"* | *"pull access"*)
				echo "a node lacks the image $IMAGE: build or load it on every node" \
					"(docker save $IMAGE | ssh NODE docker load), or push it to a registry" ;;
			*) echo "${err:-a task failed}" ;;
			esac
			return 1
		fi
		if [ "$SECONDS" -ge "$deadline" ]; then
			docker service rm "$name" >/dev/null 2>&1 || true
			echo "the tasks did not finish in 120 s (states: $(echo "$states" | sort | uniq -c | xargs))"
			return 1
		fi
		sleep 1
	done
	docker service logs --raw "$name" 2>/dev/null || true
	docker service rm "$name" >/dev/null 2>&1 || true
}
