/*
 * pgwarden up / down's processes: starting etcd, the agents and the proxy (each
 * checking its ports first), stopping them, and the cluster folder handed to postgres.
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

bool port_in_use(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	int one = 1;
	bool used;

	if (fd < 0)
		return false;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	used = bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0;
	close(fd);
	return used;
}

/* A pid file whose process is alive and runs the expected program. */
pid_t running_pid(const char *pidfile, const char *expect)
{
	pid_t pid = cmn_read_pidfile(pidfile);
	char cmd[512];
	size_t n;

	if (!pid || !cmn_pid_alive(pid))
		return 0;
	n = cmn_proc_cmdline(pid, cmd, sizeof(cmd));
	if (n == 0)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (cmd[i] == '\0')
			cmd[i] = ' ';
	return strstr(cmd, expect) ? pid : 0;
}

pid_t postmaster_pid(const struct layout *l, int i)
{
	char path[PATH_MAX + 64];

	path_of(l, path, sizeof(path), "node", i, "data/postmaster.pid");
	return running_pid(path, "postgres");
}

/* With --etcd-tls, once: etcd's root user and authentication on (marker: tls/auth-on). */
int enable_etcd_auth(const struct layout *l)
{
	char marker[PATH_MAX + 32], pwf[PATH_MAX + 32], eps[512], *pw;
	struct etcd_client_opts o = {0};
	struct etcd_tls_files f;
	struct etcd_client *c;
	struct stat st;
	int rc;

	tls_path(l, "auth-on", marker, sizeof(marker));
	if (!l->etcd_tls || stat(marker, &st) == 0)
		return 0;
	if (!(pw = etcd_root_password(l, pwf, sizeof(pwf))))
		return -1;
	etcd_tls_files(l, &f);
	o.endpoints = etcd_endpoints(l, eps, sizeof(eps));
	o.cacert = f.ca;
	o.cert = f.cert;
	o.key = f.key;
	o.timeout_ms = 5000;
	rc = etcd_client_new(&o, &c) == PGW_OK ? 0 : -1;
	if (rc == 0) {
		rc = etcd_enable_auth(c, pw) == PGW_OK ? 0 : -1;
		etcd_client_free(c);
	}
	free_password(pw);
	if (rc != 0) {
		fprintf(stderr, "pgwarden: cannot turn etcd's authentication on\n");
		return -1;
	}
	if (cmn_write_file_atomic(marker, "", 0, 0600) != PGW_OK)
		return -1;
	printf("etcd: authentication on (user root, password in %s)\n", pwf);
	return 0;
}

int start_proxy(const struct layout *l)
{
	char ini[PATH_MAX + 32], log[PATH_MAX + 32], pidf[PATH_MAX + 32];

	snprintf(pidf, sizeof(pidf), "%s/proxy/proxy.pid", l->dir);
	snprintf(ini, sizeof(ini), "%s/proxy/proxy.ini", l->dir);
	snprintf(log, sizeof(log), "%s/proxy/proxy.log", l->dir);
	if (running_pid(pidf, " proxy -c "))
		return 0;
	for (int k = LP_POOLED; k <= LP_HTTP; k++) {
		if (l->port[k] && port_in_use(l->port[k])) {
			fprintf(stderr,
				"pgwarden: port %d (the proxy's %s port) is already in use by "
				"another program: stop it (PgBouncer? HAProxy?) or choose other "
				"ports with --proxy-port\n",
				l->port[k], local_ports[k].what);
			return -1;
		}
	}
	const char *argv[] = {l->self, "proxy", "-c", ini, NULL};

	if (spawn_logged(argv, log, pidf) != 0)
		return -1;
	printf("started the proxy (pooled :%d, primary :%d, replica :%d)\n", l->port[LP_POOLED],
	       l->port[LP_PRIMARY], l->port[LP_REPLICA]);
	return 0;
}

int spawn_logged(const char *const *argv, const char *log, const char *pidfile)
{
	struct cmn_proc_opts o = {
	    .argv = argv,
	    .log_path = log,
	    .new_session = true,
	};
	pid_t pid;
	char text[32];

	if (cmn_proc_spawn(&o, &pid) != PGW_OK)
		return -1;
	snprintf(text, sizeof(text), "%d\n", (int)pid);
	if (cmn_write_file_atomic(pidfile, text, strlen(text), 0644) != PGW_OK)
		return -1;
	return 0;
}

int start_etcd(const struct layout *l, int i, bool *started)
{
	char dir[PATH_MAX + 16], data[PATH_MAX + 32], log[PATH_MAX + 32], pidf[PATH_MAX + 32];
	char name[16], client[64], peer[64], cluster[512], token[128];
	size_t off = 0;

	*started = false;
	path_of(l, dir, sizeof(dir), "etcd", i, NULL);
	snprintf(pidf, sizeof(pidf), "%s/etcd.pid", dir);
	if (running_pid(pidf, "etcd --name "))
		return 0;
	if (port_in_use(etcd_client_port(l, i)) || port_in_use(etcd_peer_port(l, i))) {
		fprintf(
		    stderr,
		    "pgwarden: port %d or %d (etcd%d) is already in use by another program: stop "
		    "it or choose other ports with --etcd-port\n",
		    etcd_client_port(l, i), etcd_peer_port(l, i), i + 1);
		return -1;
	}
	if (make_dir(dir, 0700) != 0)
		return -1;
	snprintf(data, sizeof(data), "%s/data", dir);
	snprintf(log, sizeof(log), "%s/etcd.log", dir);
	snprintf(name, sizeof(name), "etcd%d", i + 1);
	const char *scheme = l->etcd_tls ? "https" : "http";

	snprintf(client, sizeof(client), "%s://127.0.0.1:%d", scheme, etcd_client_port(l, i));
	snprintf(peer, sizeof(peer), "%s://127.0.0.1:%d", scheme, etcd_peer_port(l, i));
	for (int k = 0; k < N_NODES; k++)
		off += (size_t)snprintf(cluster + off, sizeof(cluster) - off,
					"%setcd%d=%s://127.0.0.1:%d", k ? "," : "", k + 1, scheme,
					etcd_peer_port(l, k));
	snprintf(token, sizeof(token), "pgwarden-%s-%d", l->cluster, l->port[LP_ETCD]);
	/*
	 * --pre-vote: a member back from a partition, its term raised by the elections it
	 * ran alone, first asks whether it could win before disrupting the leader. Without
	 * it (etcd 3.4's default) every healed partition cost an etcd election, and an
	 * agent on a 4 s ttl a demotion (seen by the chaos suite).
	 */
	const char *argv[] = {"etcd",  "--name",
			      name,    "--data-dir",
			      data,    "--listen-client-urls",
			      client,  "--advertise-client-urls",
			      client,  "--listen-peer-urls",
			      peer,    "--initial-advertise-peer-urls",
			      peer,    "--initial-cluster",
			      cluster, "--initial-cluster-state",
			      "new",   "--initial-cluster-token",
			      token,   "--heartbeat-interval",
			      "100",   "--election-timeout",
			      "1000",  "--auto-compaction-retention",
			      "1h",    "--pre-vote=true",
			      NULL,    NULL,
			      NULL,    NULL,
			      NULL,    NULL,
			      NULL,    NULL,
			      NULL,    NULL,
			      NULL,    NULL,
			      NULL,    NULL,
			      NULL,    NULL,
			      NULL};
	char ca[PATH_MAX + 16], cert[PATH_MAX + 16], key[PATH_MAX + 16];

	if (l->etcd_tls) {
		/* Clients and peers over TLS, each with a certificate of the CA. */
		size_t n = 0;
		const char *tls[] = {"--cert-file",
				     cert,
				     "--key-file",
				     key,
				     "--trusted-ca-file",
				     ca,
				     "--client-cert-auth",
				     "--peer-cert-file",
				     cert,
				     "--peer-key-file",
				     key,
				     "--peer-trusted-ca-file",
				     ca,
				     "--peer-client-cert-auth"};

		tls_path(l, "ca.crt", ca, sizeof(ca));
		tls_path(l, "etcd.crt", cert, sizeof(cert));
		tls_path(l, "etcd.key", key, sizeof(key));
		while (argv[n])
			n++;
		for (size_t k = 0; k < sizeof(tls) / sizeof(tls[0]); k++)
			argv[n++] = tls[k];
	}
	if (spawn_logged(argv, log, pidf) != 0) {
		fprintf(stderr, "pgwarden: cannot start etcd%d (is etcd-server installed?)\n",
			i + 1);
		return -1;
	}
	*started = true;
	printf("started etcd%d on %s\n", i + 1, client);
	return 0;
}

int start_agent(const struct layout *l, int i)
{
	char dir[PATH_MAX + 16], ini[PATH_MAX + 32], log[PATH_MAX + 32], pidf[PATH_MAX + 32];

	path_of(l, dir, sizeof(dir), "node", i, NULL);
	snprintf(pidf, sizeof(pidf), "%s/agent.pid", dir);
	snprintf(ini, sizeof(ini), "%s/node.ini", dir);
	snprintf(log, sizeof(log), "%s/agent.log", dir);
	if (running_pid(pidf, " agent -c "))
		return 0;
	bool pg_running = postmaster_pid(l, i) != 0;

	if (!pg_running && port_in_use(l->port[LP_PG] + i)) {
		fprintf(stderr,
			"pgwarden: port %d (node%d's PostgreSQL) is already in use by another "
			"program: stop it (Debian's own cluster? 'pg_ctlcluster 15 main stop') or "
			"choose other ports with --pg-port\n",
			l->port[LP_PG] + i, i + 1);
		return -1;
	}
	if (port_in_use(l->port[LP_API] + i)) {
		fprintf(stderr,
			"pgwarden: port %d (node%d's REST API) is already in use by another "
			"program: stop it or choose other ports with --api-port\n",
			l->port[LP_API] + i, i + 1);
		return -1;
	}
	const char *argv[] = {l->self, "agent", "-c", ini, NULL};

	if (spawn_logged(argv, log, pidf) != 0)
		return -1;
	printf("started the agent of node%d (PostgreSQL on 127.0.0.1:%d, REST API on :%d)\n", i + 1,
	       l->port[LP_PG] + i, l->port[LP_API] + i);
	return 0;
}

/* Can the postgres user access path with mode (X_OK, R_OK ...)? Asks a child process. */
bool postgres_can(const struct layout *l, const char *path, int mode)
{
	pid_t pid;
	int status = 0;

	if (!l->as_postgres)
		return access(path, mode) == 0;
	pid = fork();
	if (pid < 0)
		return false;
	if (pid == 0) {
		if (setgroups(0, NULL) != 0 || setgid(l->gid) != 0 || setuid(l->uid) != 0)
			_exit(2);
		_exit(access(path, mode) == 0 ? 0 : 1);
	}
	if (waitpid(pid, &status, 0) != pid)
		return false;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/*
 * As root: DIR must belong to postgres, who writes everything in it. A folder root made
 * (just now, or an earlier version's cluster: root's ports beside postgres's node1) is
 * handed over with what root wrote in it, those entries first while nobody else can
 * change the folder. Any other folder of root's (a link postgres made could name
 * /etc) or of another user is refused.
 */
int hand_over_dir(const struct layout *l, int fd, bool made_now)
{
	static const char *const root_made[] = {"ports", "pgpass", "bin/pgwarden", "bin"};
	struct stat st;
	int rc = 0;

	if (fstat(fd, &st) != 0) {
		fprintf(stderr, "pgwarden: cannot open folder %s: %s\n", l->dir, strerror(errno));
		close(fd);
		return -1;
	}
	if (st.st_uid == l->uid) {
		close(fd);
		return 0;
	}
	if (st.st_uid == 0 && !made_now) {
		struct stat ports, node1;

		if (fstatat(fd, "ports", &ports, AT_SYMLINK_NOFOLLOW) != 0 ||
		    !S_ISREG(ports.st_mode) || ports.st_uid != 0 ||
		    fstatat(fd, "node1", &node1, AT_SYMLINK_NOFOLLOW) != 0 ||
		    !S_ISDIR(node1.st_mode) || node1.st_uid != l->uid)
			st.st_uid = (uid_t)-1; /* not a cluster folder of ours */
	}
	if (st.st_uid != 0) {
		fprintf(stderr,
			"pgwarden: %s belongs to %s: run as root, pgwarden keeps a cluster in a "
			"new folder, or one of the postgres user (chown postgres: %s, or choose "
			"another --dir)\n",
			l->dir, st.st_uid == (uid_t)-1 ? "root" : "another user", l->dir);
		close(fd);
		return -1;
	}
	for (size_t i = 0; i < sizeof(root_made) / sizeof(root_made[0]) && rc == 0; i++) {
		if (fstatat(fd, root_made[i], &st, AT_SYMLINK_NOFOLLOW) != 0 || st.st_uid != 0)
			continue;
		rc = fchownat(fd, root_made[i], l->uid, l->gid, AT_SYMLINK_NOFOLLOW);
	}
	if (rc != 0 || fchown(fd, l->uid, l->gid) != 0) {
		fprintf(stderr, "pgwarden: cannot give %s to the postgres user: %s\n", l->dir,
			strerror(errno));
		rc = -1;
	}
	close(fd);
	return rc;
}

bool dir_has_ports(const char *dir)
{
	char path[PATH_MAX];
	struct stat st;

	snprintf(path, sizeof(path), "%s/ports", dir);
	return stat(path, &st) == 0;
}

/*
 * The agents run as postgres: if that user cannot run this binary where it is (a build
 * inside a private home folder), root reads it (read_agent_binary) and the postgres
 * side runs a copy kept in DIR/bin (agent_binary).
 */
int read_agent_binary(struct layout *l)
{
	if (!l->as_postgres || postgres_can(l, l->self, X_OK))
		return 0;
	l->self_data = cmn_read_file(l->self, &l->self_len);
	if (!l->self_data) {
		fprintf(stderr, "pgwarden: cannot read %s: %s\n", l->self, strerror(errno));
		return -1;
	}
	return 0;
}

int agent_binary(struct layout *l)
{
	char dir[PATH_MAX + 8], dst[PATH_MAX + 16];
	size_t old_len = 0;
	char *old;

	snprintf(dir, sizeof(dir), "%s/bin", l->dir);
	snprintf(dst, sizeof(dst), "%s/pgwarden", dir);
	if (!l->self_data) {
		/* Already postgres (restore in place as root): the copy an earlier up made. */
		if (access(l->self, X_OK) != 0 && access(dst, X_OK) == 0)
			snprintf(l->self, sizeof(l->self), "%s", dst);
		return 0;
	}
	if (cmn_mkdir_p(dir, 0755) != PGW_OK) {
		fprintf(stderr, "pgwarden: cannot create %s: %s\n", dir, strerror(errno));
		return -1;
	}
	old = cmn_read_file(dst, &old_len);
	bool same = old && old_len == l->self_len && memcmp(old, l->self_data, old_len) == 0;

	free(old);
	if (!same && cmn_write_file_atomic(dst, l->self_data, l->self_len, 0755) != PGW_OK) {
		fprintf(stderr, "pgwarden: cannot copy %s to %s: %s\n", l->self, dst,
			strerror(errno));
		return -1;
	}
	snprintf(l->self, sizeof(l->self), "%s", dst);
	return 0;
}

/*
 * The folder's own configuration says where its cluster lives. Variables that would
 * override that (a shell or a container set up for another cluster: its name, etcd,
 * addresses, paths, repository) are dropped for up and for everything it starts, or its
 * agents could join that other cluster. Every other setting (bin_dir, memory, ttl,
 * passwords, pool sizes, schedules, log levels ...) passes, as node.ini's header says.
 */
static bool names_another_cluster(const char *var, size_t len)
{
	static const char *const exact[] = {
	    "PGWARDEN_CONFIG",
	    "PGWARDEN_CLUSTER_NAME",
	    "PGWARDEN_CLUSTER_NAMESPACE",
	    "PGWARDEN_CLUSTER_MEMBER",
	    "PGWARDEN_POSTGRESQL_DATA_DIR",
	    "PGWARDEN_POSTGRESQL_LISTEN",
	    "PGWARDEN_POSTGRESQL_CONNECT_ADDRESS",
	    "PGWARDEN_POSTGRESQL_SOCKET_DIR",
	    "PGWARDEN_POSTGRESQL_PGPASS",
	    "PGWARDEN_API_LISTEN",
	    "PGWARDEN_API_CONNECT_ADDRESS",
	    "PGWARDEN_PROXY_LISTEN",
	    "PGWARDEN_PROXY_NAME",
	    "PGWARDEN_BACKUP_WORK_DIR",
	    "PGWARDEN_BACKUP_STANZA",
	};
	static const char *const prefix[] = {"PGWARDEN_ETCD_", "PGWARDEN_BACKUP_REPO_",
					     "PGWARDEN_BACKUP_TLS_"};

	for (size_t i = 0; i < sizeof(exact) / sizeof(exact[0]); i++)
		if (len == strlen(exact[i]) && strncmp(var, exact[i], len) == 0)
			return true;
	for (size_t i = 0; i < sizeof(prefix) / sizeof(prefix[0]); i++)
		if (strncmp(var, prefix[i], strlen(prefix[i])) == 0)
			return true;
	/* the proxy's ports (pooled_port, primary_port, ..., http_port) */
	return strncmp(var, "PGWARDEN_PROXY_", 15) == 0 && len > 5 &&
	       strncmp(var + len - 5, "_PORT", 5) == 0;
}

void drop_foreign_identity(void)
{
	char names[64][128];
	size_t n = 0;

	for (char **e = environ; *e && n < 64; e++) {
		size_t len = strcspn(*e, "=");

		if (len < sizeof(names[0]) && names_another_cluster(*e, len))
			snprintf(names[n++], sizeof(names[0]), "%.*s", (int)len, *e);
	}
	for (size_t i = 0; i < n; i++) {
		fprintf(stderr,
			"pgwarden: ignoring %s from the environment (the folder's "
			"configuration names this cluster)\n",
			names[i]);
		unsetenv(names[i]);
	}
}

static bool wait_gone(pid_t pid, int timeout_ms)
{
	int64_t deadline = cmn_now_ms() + timeout_ms;

	while (cmn_now_ms() < deadline) {
		if (!cmn_pid_alive(pid))
			return true;
		/* Reap it if it is our child (not the case for processes of an earlier up). */
		(void)cmn_proc_poll(pid, &(int){0});
		usleep(50000);
	}
	return !cmn_pid_alive(pid);
}

/* stop_pid for several processes at once: SIGTERM to all, then waits for all. */
static void stop_pids(const char *const *what, const pid_t *pid, size_t n, int timeout_ms)
{
	int64_t deadline = cmn_now_ms() + timeout_ms;

	for (size_t i = 0; i < n; i++)
		if (pid[i])
			kill(pid[i], SIGTERM);
	for (size_t i = 0; i < n; i++) {
		int64_t left = deadline - cmn_now_ms();

		if (!pid[i])
			continue;
		if (!wait_gone(pid[i], left > 0 ? (int)left : 0)) {
			fprintf(stderr, "pgwarden: %s (pid %d) did not stop in time: killing it\n",
				what[i], (int)pid[i]);
			kill(pid[i], SIGKILL);
			wait_gone(pid[i], 5000);
		}
		printf("stopped %s\n", what[i]);
		fflush(stdout);
	}
}

/* The agents of nodes idx[0..n) (each stops its PostgreSQL), then whatever PostgreSQL is
 * left (an agent killed earlier): fast shutdown, all at once. */
void stop_nodes(const struct layout *l, const int *idx, size_t n)
{
	char what[N_NODES][64];
	const char *whatp[N_NODES] = {NULL};
	pid_t pid[N_NODES] = {0};

	for (size_t k = 0; k < n && k < N_NODES; k++) {
		char pidf[PATH_MAX + 32];

		path_of(l, pidf, sizeof(pidf), "node", idx[k], "agent.pid");
		snprintf(what[k], sizeof(what[k]), "the agent of node%d", idx[k] + 1);
		whatp[k] = what[k];
		pid[k] = running_pid(pidf, " agent -c ");
	}
	stop_pids(whatp, pid, n, 90000);
	for (size_t k = 0; k < n; k++) {
		snprintf(what[k], sizeof(what[k]), "PostgreSQL of node%d", idx[k] + 1);
		/* SIGINT is PostgreSQL's fast shutdown. */
		pid[k] = postmaster_pid(l, idx[k]);
		if (pid[k])
			kill(pid[k], SIGINT);
	}
	for (size_t k = 0; k < n; k++) {
		if (!pid[k])
			continue;
		if (!wait_gone(pid[k], 60000)) {
			kill(pid[k], SIGQUIT);
			wait_gone(pid[k], 10000);
		}
		printf("stopped %s\n", what[k]);
		fflush(stdout);
	}
}

void stop_pid(const char *what, pid_t pid, int timeout_ms)
{
	stop_pids(&what, &pid, 1, timeout_ms);
}
