/*
 * pgwarden up / down / status: a whole cluster on this machine, in one folder.
 *
 *   DIR/etcdN/     data/, etcd.log, etcd.pid, ports      (N = 1..3)
 *   DIR/nodeN/     node.ini, data/, run/, agent.log, agent.pid, postgresql.log
 *   DIR/pgpass     passwords for psql (PGPASSFILE=DIR/pgpass)
 *   DIR/proxy/     proxy.ini, userlist.txt, proxy.log, proxy.pid
 *   DIR/etcd-tls/  with --etcd-tls: a throw-away CA, etcd's and the clients' certificates,
 *                  etcd's root password (etcd then asks for both)
 *
 * When run as root, everything is owned by and runs as the postgres user, because
 * PostgreSQL refuses to run as root. Root only makes DIR and hands it to postgres (with
 * the binary's bytes when postgres cannot read it); the rest runs in a child process
 * that has become postgres (cli_as_postgres): root never writes in a folder postgres
 * owns, where a link could send its writes anywhere.
 */
#include "cluster/dcs.h"
#include "cli/local.h"
#include "cli/cli.h"
#include "common/http.h"
#include "common/log.h"
#include "common/proc.h"
#include "common/timeutil.h"
#include "common/util.h"
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <json-c/json.h>
#include <limits.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <grp.h>
#include <sys/wait.h>
#include <unistd.h>

static int up_run(void *arg);
static int down_run(void *arg);
static int status_run(void *arg);

/*
 * Makes (or takes) the cluster folder dir and fills l->dir. As root, the default folder
 * is one the postgres user can reach, and the folder is handed over to postgres
 * (hand_over_dir). A folder made with --etcd-tls keeps it. 0, or -1 said on stderr.
 */
static int use_cluster_dir(struct layout *l, const char *dir, bool explicit_dir)
{
	/* As root, the default folder must be one PostgreSQL's user can reach. */
	if (!explicit_dir && l->as_postgres && !dir_has_ports("cluster") &&
	    (dir_has_ports(CLI_ROOT_DIR) || !postgres_can(l, ".", X_OK)))
		dir = CLI_ROOT_DIR;
	struct stat st;
	bool made_now = false;
	int dfd = -1;

	if (l->as_postgres) {
		/* As root: the folder itself is made here (mkdirat: made_now only if this call
		 * made it) and opened without following a link, so a link someone puts in its
		 * place meanwhile is refused rather than handed over. */
		char parent[PATH_MAX], name[PATH_MAX], *slash;
		size_t len = strlen(dir);
		int pfd;

		if (len == 0 || len >= sizeof(parent)) {
			fprintf(stderr, "pgwarden: bad folder '%s'\n", dir);
			return -1;
		}
		memcpy(parent, dir, len + 1);
		while (len > 1 && parent[len - 1] == '/')
			parent[--len] = '\0';
		slash = strrchr(parent, '/');
		snprintf(name, sizeof(name), "%s", slash ? slash + 1 : parent);
		if (!slash)
			snprintf(parent, sizeof(parent), ".");
		else if (slash == parent)
			parent[1] = '\0'; /* "/" */
		else
			*slash = '\0';
		if (!*name || strcmp(name, ".") == 0 || strcmp(name, "..") == 0) {
			fprintf(stderr, "pgwarden: bad folder '%s': name a folder of its own\n",
				dir);
			return -1;
		}
		if (cmn_mkdir_p(parent, 0755) != PGW_OK ||
		    (pfd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
			fprintf(stderr, "pgwarden: cannot use folder %s: %s\n", parent,
				strerror(errno));
			return -1;
		}
		made_now = mkdirat(pfd, name, 0755) == 0;
		dfd = openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		close(pfd);
		if (dfd < 0) {
			fprintf(stderr, "pgwarden: cannot use folder %s: %s\n", dir,
				errno == ELOOP || errno == ENOTDIR
				    ? "it is a symbolic link or not a folder (as root, name the "
				      "folder itself)"
				    : strerror(errno));
			return -1;
		}
	} else if (cmn_mkdir_p(dir, 0755) != PGW_OK) {
		fprintf(stderr, "pgwarden: cannot use folder %s: %s\n", dir, strerror(errno));
		return -1;
	}
	if (!realpath(dir, l->dir)) {
		fprintf(stderr, "pgwarden: cannot use folder %s: %s\n", dir, strerror(errno));
		if (dfd >= 0)
			close(dfd);
		return -1;
	}
	if (l->as_postgres && !postgres_can(l, l->dir, X_OK | R_OK)) {
		fprintf(stderr,
			"pgwarden: the postgres user cannot reach %s (a parent folder is private): "
			"choose another --dir, e.g. %s\n",
			l->dir, CLI_ROOT_DIR);
		close(dfd);
		return -1;
	}
	if (l->as_postgres && hand_over_dir(l, dfd, made_now) != 0)
		return -1;
	/* A folder made with --etcd-tls keeps it; one made without cannot switch (etcd's
	 * members know their peers' addresses). */
	char ca[PATH_MAX + 16], ini[PATH_MAX + 32];
	bool has_ca, has_cluster;

	tls_path(l, "ca.crt", ca, sizeof(ca));
	snprintf(ini, sizeof(ini), "%s/node1/node.ini", l->dir);
	has_ca = stat(ca, &st) == 0;
	has_cluster = stat(ini, &st) == 0;
	if (l->etcd_tls && !has_ca && has_cluster) {
		fprintf(stderr,
			"pgwarden: %s was made without --etcd-tls: its etcd cannot switch to TLS; "
			"make a new folder for it\n",
			l->dir);
		return -1;
	}
	l->etcd_tls = l->etcd_tls || has_ca;
	return 0;
}

/* A port given on the command line (1024..65000), or 0, said on stderr. */
static int port_arg(const char *arg)
{
	int v = atoi(arg);

	if (v < 1024 || v > 65000) {
		fprintf(stderr, "pgwarden: bad port '%s' (1024..65000)\n", arg);
		return 0;
	}
	return v;
}

static int parse_common(int argc, char **argv, struct layout *l, bool *explicit_ports,
			int *timeout_s)
{
	static const struct option opts[] = {
	    {"dir", required_argument, NULL, 'd'},
	    {"etcd-port", required_argument, NULL, 'e'},
	    {"pg-port", required_argument, NULL, 'p'},
	    {"api-port", required_argument, NULL, 'a'},
	    {"memory", required_argument, NULL, 'm'},
	    {"cluster", required_argument, NULL, 'n'},
	    {"timeout", required_argument, NULL, 't'},
	    {"proxy-port", required_argument, NULL, 'x'},
	    {"etcd-tls", no_argument, NULL, 'T'},
	    {"with-prometheus", no_argument, NULL, 'W'},
	    {"prometheus-port", required_argument, NULL, 'M'},
	    {NULL, 0, NULL, 0},
	};
	const char *dir = getenv("PGWARDEN_DIR") ? getenv("PGWARDEN_DIR") : "cluster";
	bool explicit_dir = getenv("PGWARDEN_DIR") != NULL;
	int c;

	memset(l, 0, sizeof(*l));
	for (int k = 0; k < LP_COUNT; k++)
		l->port[k] = local_ports[k].def;
	snprintf(l->memory, sizeof(l->memory), "256MB");
	snprintf(l->cluster, sizeof(l->cluster), "demo");
	*explicit_ports = false;
	optind = 1;
	while ((c = getopt_long(argc, argv, "d:", opts, NULL)) != -1) {
		switch (c) {
		case 'd':
			dir = optarg;
			explicit_dir = true;
			break;
		case 'e':
		case 'p':
		case 'a': {
			int v = port_arg(optarg);

			if (!v)
				return -1;
			l->port[c == 'e' ? LP_ETCD : c == 'p' ? LP_PG : LP_API] = v;
			*explicit_ports = true;
			break;
		}
		case 'x': {
			int v = port_arg(optarg);

			if (!v)
				return -1;
			/* BASE: pooled, BASE+1 primary, BASE+2 replica, BASE+3 status page. */
			for (int k = LP_POOLED; k <= LP_HTTP; k++)
				l->port[k] = v + k - LP_POOLED;
			*explicit_ports = true;
			break;
		}
		case 'm':
			snprintf(l->memory, sizeof(l->memory), "%s", optarg);
			break;
		case 'T':
			l->etcd_tls = true;
			break;
		case 'W':
			l->with_prometheus = true;
			break;
		case 'M': {
			int v = port_arg(optarg);

			if (!v)
				return -1;
			l->prometheus_port = v;
			l->with_prometheus = true;
			break;
		}
		case 'n':
			snprintf(l->cluster, sizeof(l->cluster), "%s", optarg);
			break;
		case 't':
			if (timeout_s)
				*timeout_s = atoi(optarg);
			break;
		default:
			return -1;
		}
	}
	if (geteuid() == 0) {
		struct passwd *pw = getpwnam("postgres");

		if (!pw) {
			fprintf(stderr, "pgwarden: running as root needs the postgres user "
					"(install postgresql-15)\n");
			return -1;
		}
		l->as_postgres = true;
		l->uid = pw->pw_uid;
		l->gid = pw->pw_gid;
	}
	if (use_cluster_dir(l, dir, explicit_dir) != 0)
		return -1;
	ssize_t n = readlink("/proc/self/exe", l->self, sizeof(l->self) - 1);

	if (n <= 0)
		return -1;
	l->self[n] = '\0';
	return 0;
}

int cli_up(int argc, char **argv)
{
	return cli_up_run(argc, argv, NULL, NULL, NULL);
}

/* What up does once DIR is postgres's, as postgres when we are root. */
struct up_job {
	struct layout l;
	bool explicit_ports;
	int timeout_s;
	cli_up_hook before_agents;
	void *arg;
};

#define UP_HOOK_FAILED	 65    /* up_run's exit code when before_agents failed */
#define UP_PROXY_WAIT_MS 30000 /* for the proxy to route, once the cluster is ready */

int cli_up_run(int argc, char **argv, cli_up_hook before_agents, void *arg, bool *hook_failed)
{
	struct up_job job = {.timeout_s = 180, .before_agents = before_agents, .arg = arg};
	int rc;

	if (hook_failed)
		*hook_failed = false;
	if (parse_common(argc, argv, &job.l, &job.explicit_ports, &job.timeout_s) != 0) {
		fprintf(stderr, "usage: pgwarden up [--dir DIR] [--etcd-port P] [--pg-port P] "
				"[--api-port P] [--proxy-port P] [--memory SIZE] [--cluster NAME] "
				"[--timeout S] [--etcd-tls] [--with-prometheus] "
				"[--prometheus-port P]\n");
		return CLI_EXIT_USAGE;
	}
	if (read_agent_binary(&job.l) != 0)
		return CLI_EXIT_FAILED;
	rc = cli_as_postgres(up_run, &job);
	free(job.l.self_data);
	if (rc == UP_HOOK_FAILED) {
		if (hook_failed)
			*hook_failed = true;
		rc = CLI_EXIT_FAILED;
	}
	return rc;
}

/* How to connect to the cluster, and to each of its parts. */
static void print_connect(const struct layout *l)
{
	char eps[512];

	etcd_endpoints(l, eps, sizeof(eps));
	printf("\nCluster '%s' in %s\n\n", l->cluster, l->dir);
	printf("Connect (password in %s/pgpass):\n", l->dir);
	printf("  export PGPASSFILE=%s/pgpass\n", l->dir);
	for (int i = 0; i < N_NODES; i++)
		printf("  node%d:       psql 'postgresql://postgres@127.0.0.1:%d/postgres'\n",
		       i + 1, l->port[LP_PG] + i);
	printf("  read-write:  psql 'postgresql://postgres@127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d/"
	       "postgres?target_session_attrs=read-write'\n",
	       l->port[LP_PG], l->port[LP_PG] + 1, l->port[LP_PG] + 2);
	printf("  read-only:   psql 'postgresql://postgres@127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d/"
	       "postgres?target_session_attrs=standby'\n",
	       l->port[LP_PG], l->port[LP_PG] + 1, l->port[LP_PG] + 2);
	printf("  pooled:      psql 'postgresql://postgres@127.0.0.1:%d/postgres'   "
	       "(proxy, transaction pooling to the primary)\n",
	       l->port[LP_POOLED]);
	printf("  primary:     psql 'postgresql://postgres@127.0.0.1:%d/postgres'   (proxy, "
	       "session on the primary)\n",
	       l->port[LP_PRIMARY]);
	printf("  replica:     psql 'postgresql://postgres@127.0.0.1:%d/postgres'   (proxy, "
	       "session on a replica)\n",
	       l->port[LP_REPLICA]);
	printf("Proxy status:  http://127.0.0.1:%d/ (user admin, password in %s/proxy/proxy.ini), "
	       "metrics on /metrics\n",
	       l->port[LP_HTTP], l->dir);
	printf("Admin console: psql 'postgresql://postgres@127.0.0.1:%d/pgbouncer' (SHOW POOLS, "
	       "...)\n",
	       l->port[LP_POOLED]);
	printf("REST API:      %s://127.0.0.1:%d/cluster (nodes on :%d-%d)\n", l->api_scheme,
	       l->port[LP_API], l->port[LP_API], l->port[LP_API] + N_NODES - 1);
	printf("etcd:          %s\n", eps);
	if (prometheus_port(l))
		printf("Prometheus:    http://127.0.0.1:%d/ (alerts: /alerts; Grafana dashboard: "
		       "deploy/monitoring/grafana-dashboard.json)\n",
		       prometheus_port(l));
	printf("Manage:        pgwarden list --dir %s | pgwarden status --dir %s | pgwarden down "
	       "--dir %s\n\n",
	       l->dir, l->dir, l->dir);
	fflush(stdout);
}

static int up_run(void *arg)
{
	struct up_job *job = arg;
	struct layout l = job->l;
	bool explicit_ports = job->explicit_ports, any_etcd_started = false;
	int timeout_s = job->timeout_s;
	cli_up_hook before_agents = job->before_agents;
	char leader[32] = "", ini[PATH_MAX + 32];

	drop_foreign_identity();
	curl_global_init(CURL_GLOBAL_DEFAULT);
	cmn_log_set_level(CMN_LOG_ERROR);
	if (load_or_save_ports(&l, explicit_ports) != 0 || (l.etcd_tls && make_tls(&l) != 0) ||
	    write_node_configs(&l) != 0 || write_proxy_config(&l) != 0)
		return CLI_EXIT_FAILED;
	api_scheme(&l);
	{
		/* A folder made earlier keeps its name, whatever --cluster says now. */
		struct agent_config n1;
		char err[1024];

		snprintf(ini, sizeof(ini), "%s/node1/node.ini", l.dir);
		if (agent_config_load(ini, &n1, err, sizeof(err)) == PGW_OK && n1.cluster_name)
			snprintf(l.cluster, sizeof(l.cluster), "%s", n1.cluster_name);
		agent_config_free(&n1);
	}
	for (int i = 0; i < N_NODES; i++) {
		bool started;

		if (start_etcd(&l, i, &started) != 0)
			return CLI_EXIT_FAILED;
		any_etcd_started |= started;
	}
	if (!wait_etcd(&l, any_etcd_started))
		return CLI_EXIT_FAILED;
	if (enable_etcd_auth(&l) != 0)
		return CLI_EXIT_FAILED;
	if (before_agents && before_agents(l.dir, job->arg) != 0)
		return UP_HOOK_FAILED;
	if (agent_binary(&l) != 0)
		return CLI_EXIT_FAILED;
	for (int i = 0; i < N_NODES; i++)
		if (start_agent(&l, i) != 0)
			return CLI_EXIT_FAILED;
	if (start_proxy(&l) != 0)
		return CLI_EXIT_FAILED;
	if (start_prometheus(&l, l.with_prometheus, l.prometheus_port) != 0)
		return CLI_EXIT_FAILED;
	if (!agents_alive(&l))
		return CLI_EXIT_FAILED;
	printf("waiting for a leader and two streaming replicas (up to %d s)...\n", timeout_s);
	fflush(stdout);
	int64_t deadline = cmn_now_ms() + (int64_t)timeout_s * 1000;
	bool ready = false;

	while (cmn_now_ms() < deadline && !(ready = cluster_ready(&l, leader, sizeof(leader))))
		usleep(300000);
	/* Ready when it says so: the proxy routes on every port (5001 to each replica); it
	 * takes a second or two. Bounded on its own: the cluster serves without it. */
	bool routes = false;
	char why[300] = "";
	int64_t proxy_deadline = cmn_now_ms() + UP_PROXY_WAIT_MS;

	while (ready && cmn_now_ms() < deadline && cmn_now_ms() < proxy_deadline &&
	       !(routes = proxy_routes(&l, why, sizeof(why))))
		usleep(100000);
	print_connect(&l);
	struct cli_session s;
	struct cli_target t = {.config_path = ini};

	snprintf(ini, sizeof(ini), "%s/node1/node.ini", l.dir);
	if (cli_session_open(&t, &s) == CLI_EXIT_OK) {
		cli_print_list(&s, false);
		cli_session_close(&s);
	}
	curl_global_cleanup();
	if (!ready) {
		fprintf(stderr,
			"pgwarden: the cluster did not become ready within %d s: see "
			"%s/node*/agent.log\n",
			timeout_s, l.dir);
		return CLI_EXIT_FAILED;
	}
	if (!routes)
		fprintf(
		    stderr,
		    "pgwarden: warning: the proxy does not route to the leader and every replica "
		    "yet (%s): see %s/proxy/proxy.log\n",
		    why, l.dir);
	return CLI_EXIT_OK;
}

int cli_down(int argc, char **argv)
{
	struct layout l;
	bool explicit_ports;

	if (parse_common(argc, argv, &l, &explicit_ports, NULL) != 0) {
		fprintf(stderr, "usage: pgwarden down [--dir DIR]\n");
		return CLI_EXIT_USAGE;
	}
	return cli_as_postgres(down_run, &l);
}

static int down_run(void *arg)
{
	struct layout l = *(struct layout *)arg;
	int order[N_NODES], n = 0, leader = -1;

	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (load_or_save_ports(&l, false) != 0)
		return CLI_EXIT_FAILED;
	api_scheme(&l);
	{
		char pidf[PATH_MAX + 32];

		snprintf(pidf, sizeof(pidf), "%s/proxy/proxy.pid", l.dir);
		stop_pid("the proxy", running_pid(pidf, " proxy -c "), 45000);
	}
	stop_prometheus(&l);
	/* The replicas first (together), the leader last: no failover while shutting down. */
	for (int i = 0; i < N_NODES; i++) {
		if (leader < 0 && is_leader_node(&l, i))
			leader = i;
		else
			order[n++] = i;
	}
	stop_nodes(&l, order, (size_t)n);
	if (leader >= 0)
		stop_nodes(&l, &leader, 1);
	/* One at a time: an etcd leader that stops hands its leadership over first, which
	 * waits out its timeout when the others stop at the same moment. */
	for (int i = N_NODES - 1; i >= 0; i--) {
		char pidf[PATH_MAX + 32], what[32];

		path_of(&l, pidf, sizeof(pidf), "etcd", i, "etcd.pid");
		snprintf(what, sizeof(what), "etcd%d", i + 1);
		stop_pid(what, running_pid(pidf, "etcd --name "), 20000);
	}
	curl_global_cleanup();
	return CLI_EXIT_OK;
}

int cli_status(int argc, char **argv)
{
	struct layout l;
	bool explicit_ports;

	if (parse_common(argc, argv, &l, &explicit_ports, NULL) != 0) {
		fprintf(stderr, "usage: pgwarden status [--dir DIR]\n");
		return CLI_EXIT_USAGE;
	}
	return cli_as_postgres(status_run, &l);
}

static int status_run(void *arg)
{
	struct layout l = *(struct layout *)arg;
	int running = 0, total = 0;

	if (load_or_save_ports(&l, false) != 0)
		return CLI_EXIT_FAILED;
	printf("%-22s %-10s %-8s %s\n", "PROCESS", "STATE", "PID", "ADDRESS");
	for (int i = 0; i < N_NODES; i++) {
		char pidf[PATH_MAX + 32], name[32];
		pid_t pid;

		path_of(&l, pidf, sizeof(pidf), "etcd", i, "etcd.pid");
		pid = running_pid(pidf, "etcd --name ");
		snprintf(name, sizeof(name), "etcd%d", i + 1);
		printf("%-22s %-10s %-8d 127.0.0.1:%d\n", name, pid ? "running" : "stopped",
		       (int)pid, etcd_client_port(&l, i));
		running += pid != 0;
		total++;
	}
	for (int i = 0; i < N_NODES; i++) {
		char pidf[PATH_MAX + 32], name[32];
		pid_t pid;

		path_of(&l, pidf, sizeof(pidf), "node", i, "agent.pid");
		pid = running_pid(pidf, " agent -c ");
		snprintf(name, sizeof(name), "node%d agent", i + 1);
		printf("%-22s %-10s %-8d 127.0.0.1:%d\n", name, pid ? "running" : "stopped",
		       (int)pid, l.port[LP_API] + i);
		running += pid != 0;
		pid = postmaster_pid(&l, i);
		snprintf(name, sizeof(name), "node%d postgresql", i + 1);
		printf("%-22s %-10s %-8d 127.0.0.1:%d\n", name, pid ? "running" : "stopped",
		       (int)pid, l.port[LP_PG] + i);
		running += pid != 0;
		total += 2;
	}
	{
		char pidf[PATH_MAX + 32];
		pid_t pid;

		snprintf(pidf, sizeof(pidf), "%s/proxy/proxy.pid", l.dir);
		pid = running_pid(pidf, " proxy -c ");
		printf("%-22s %-10s %-8d 127.0.0.1:%d\n", "proxy", pid ? "running" : "stopped",
		       (int)pid, l.port[LP_POOLED]);
		running += pid != 0;
		total++;
	}
	{
		pid_t pid;
		int port;

		if (prometheus_state(&l, &pid, &port)) {
			printf("%-22s %-10s %-8d 127.0.0.1:%d\n", "prometheus",
			       pid ? "running" : "stopped", (int)pid, port);
			running += pid != 0;
			total++;
		}
	}
	printf("%d of %d processes running\n", running, total);
	return running == total ? CLI_EXIT_OK : (running == 0 ? 3 : CLI_EXIT_FAILED);
}
