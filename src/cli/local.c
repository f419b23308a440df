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

#define N_NODES 3

struct layout {
	char dir[PATH_MAX];
	int etcd_port; /* client port of member 1; member i uses etcd_port + 100 * i */
	int pg_port;
	int api_port;
	int proxy_ports[4]; /* pooled, primary, replica, http */
	char memory[32];
	char cluster[64];
	bool as_postgres; /* we are root: the work runs as postgres (uid, gid) */
	uid_t uid;
	gid_t gid;
	char self[PATH_MAX];
	char *self_data; /* the binary, read as root, when postgres cannot run it */
	size_t self_len;
	bool etcd_tls;	    /* etcd over TLS with client certificates and authentication */
	char api_scheme[8]; /* https when node1's [api] has a certificate */
};

/*
 * The REST APIs' scheme and CA, from node1's configuration as the agents read it (the
 * environment's PGWARDEN_API_* included): https with [api] certfile.
 */
static void api_scheme(struct layout *l)
{
	char ini[PATH_MAX + 32], err[1024];
	struct agent_config n1;

	snprintf(l->api_scheme, sizeof(l->api_scheme), "http");
	snprintf(ini, sizeof(ini), "%s/node1/node.ini", l->dir);
	if (agent_config_load(ini, &n1, err, sizeof(err)) == PGW_OK) {
		if (n1.api_certfile)
			snprintf(l->api_scheme, sizeof(l->api_scheme), "https");
		cmn_http_set_cafile(n1.api_cafile);
	}
	agent_config_free(&n1);
}

/* DIR/etcd-tls/<name> */
static void tls_path(const struct layout *l, const char *name, char *out, size_t size)
{
	snprintf(out, size, "%s/etcd-tls/%s", l->dir, name);
}

static int etcd_client_port(const struct layout *l, int i)
{
	return l->etcd_port + 100 * i;
}

static int etcd_peer_port(const struct layout *l, int i)
{
	return l->etcd_port + 100 * i + 1;
}

/* DIR/<kind><i+1>[/rest] */
static void path_of(const struct layout *l, char *out, size_t size, const char *kind, int i,
		    const char *rest)
{
	snprintf(out, size, "%s/%s%d%s%s", l->dir, kind, i + 1, rest ? "/" : "", rest ? rest : "");
}

static int make_dir(const char *path, mode_t mode)
{
	if (cmn_mkdir_p(path, mode) != PGW_OK) {
		fprintf(stderr, "pgwarden: cannot create %s: %s\n", path, strerror(errno));
		return -1;
	}
	return 0;
}

static bool port_in_use(int port)
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
static pid_t running_pid(const char *pidfile, const char *expect)
{
	pid_t pid = cmn_read_pidfile(pidfile);
	char path[64], cmd[512];
	ssize_t n;
	int fd;

	if (!pid || !cmn_pid_alive(pid))
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, cmd, sizeof(cmd) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	cmd[n] = '\0';
	for (ssize_t i = 0; i < n; i++)
		if (cmd[i] == '\0')
			cmd[i] = ' ';
	return strstr(cmd, expect) ? pid : 0;
}

static pid_t postmaster_pid(const struct layout *l, int i)
{
	char path[PATH_MAX + 64];

	path_of(l, path, sizeof(path), "node", i, "data/postmaster.pid");
	return running_pid(path, "postgres");
}

/* A password from the kernel's random source; -1 (said) when there is none. */
static int random_password(char *out, size_t len)
{
	static const char alphabet[] = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
	unsigned char raw[64];
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	bool ok = fd >= 0 && read(fd, raw, sizeof(raw)) == (ssize_t)sizeof(raw);

	if (fd >= 0)
		close(fd);
	if (!ok) {
		fprintf(stderr, "pgwarden: cannot read /dev/urandom for a password: %s\n",
			strerror(errno));
		return -1;
	}
	for (size_t i = 0; i + 1 < len && i < sizeof(raw); i++)
		out[i] = alphabet[raw[i] % (sizeof(alphabet) - 1)];
	out[len - 1] = '\0';
	return 0;
}

static const char *etcd_endpoints(const struct layout *l, char *out, size_t size)
{
	size_t off = 0;

	out[0] = '\0';
	for (int i = 0; i < N_NODES; i++)
		off += (size_t)snprintf(out + off, size - off, "%s%s://127.0.0.1:%d", i ? "," : "",
					l->etcd_tls ? "https" : "http", etcd_client_port(l, i));
	return out;
}

/* What a client of --etcd-tls's etcd presents: the CA, its certificate and key. */
struct etcd_tls_files {
	char ca[PATH_MAX + 16], cert[PATH_MAX + 16], key[PATH_MAX + 16];
};

static void etcd_tls_files(const struct layout *l, struct etcd_tls_files *f)
{
	tls_path(l, "ca.crt", f->ca, sizeof(f->ca));
	tls_path(l, "client.crt", f->cert, sizeof(f->cert));
	tls_path(l, "client.key", f->key, sizeof(f->key));
}

/* etcd's root password (heap, newline cut; NULL, said, when unreadable); its file in pwf. */
static char *etcd_root_password(const struct layout *l, char *pwf, size_t size)
{
	char *pw, *nl;

	tls_path(l, "etcd-root-password", pwf, size);
	pw = cmn_read_file(pwf, NULL);
	if (!pw) {
		fprintf(stderr, "pgwarden: cannot read %s: %s\n", pwf, strerror(errno));
		return NULL;
	}
	if ((nl = strchr(pw, '\n')))
		*nl = '\0';
	return pw;
}

static void free_password(char *pw)
{
	explicit_bzero(pw, strlen(pw));
	free(pw);
}

/* [etcd] lines after endpoints: the certificates and the root user with --etcd-tls. */
static int etcd_tls_lines(const struct layout *l, char *out, size_t size)
{
	struct etcd_tls_files f;
	char pwf[PATH_MAX + 32], *pw;

	out[0] = '\0';
	if (!l->etcd_tls)
		return 0;
	etcd_tls_files(l, &f);
	if (!(pw = etcd_root_password(l, pwf, sizeof(pwf))))
		return -1;
	snprintf(out, size, "cacert = %s\ncert = %s\nkey = %s\nusername = root\npassword = %s\n",
		 f.ca, f.cert, f.key, pw);
	free_password(pw);
	return 0;
}

/* Runs openssl with args in DIR/etcd-tls; its output goes to DIR/etcd-tls/openssl.log. */
static int openssl(const struct layout *l, const char *const *args)
{
	char log[PATH_MAX + 32], dir[PATH_MAX + 8];
	const char *argv[24] = {"openssl"};
	struct cmn_proc_opts o = {.argv = argv, .log_path = log, .cwd = dir};
	pid_t pid;
	int code = -1;
	size_t n = 1;

	for (; args[n - 1] && n + 1 < sizeof(argv) / sizeof(argv[0]); n++)
		argv[n] = args[n - 1];
	argv[n] = NULL;
	tls_path(l, "openssl.log", log, sizeof(log));
	snprintf(dir, sizeof(dir), "%s/etcd-tls", l->dir);
	if (cmn_proc_spawn(&o, &pid) != PGW_OK)
		return -1;
	while (cmn_proc_poll(pid, &code) == 0)
		usleep(20000);
	return code == 0 ? 0 : -1;
}

/*
 * --etcd-tls, first time: a CA kept in DIR/etcd-tls (ten years), etcd's certificate for
 * 127.0.0.1 (server and peer), the clients' (agents, proxy, CLI: no common name, which
 * etcd's JSON gateway refuses with authentication on; the certificate alone grants
 * nothing, the password gets the token) and etcd's root password.
 */
static int make_tls(const struct layout *l)
{
	static const char ext_etcd[] = "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
				       "extendedKeyUsage=serverAuth,clientAuth\n";
	static const char ext_client[] = "extendedKeyUsage=clientAuth\n";
	char path[PATH_MAX + 32], pw[33];
	struct stat st;

	tls_path(l, "ca.crt", path, sizeof(path));
	if (stat(path, &st) == 0)
		return 0;
	snprintf(path, sizeof(path), "%s/etcd-tls", l->dir);
	if (make_dir(path, 0700) != 0)
		return -1;
	tls_path(l, "ext-etcd", path, sizeof(path));
	if (cmn_write_file_atomic(path, ext_etcd, strlen(ext_etcd), 0600) != PGW_OK)
		return -1;
	tls_path(l, "ext-client", path, sizeof(path));
	if (cmn_write_file_atomic(path, ext_client, strlen(ext_client), 0600) != PGW_OK)
		return -1;
	const char *ca[] = {"req",    "-x509",	    "-newkey",
			    "ec",     "-pkeyopt",   "ec_paramgen_curve:prime256v1",
			    "-nodes", "-keyout",    "ca.key",
			    "-out",   "ca.crt.tmp", "-days",
			    "3650",   "-subj",	    "/CN=pgwarden etcd CA",
			    NULL};
	const char *etcd_req[] = {
	    "req",    "-newkey",  "ec",	      "-pkeyopt", "ec_paramgen_curve:prime256v1",
	    "-nodes", "-keyout",  "etcd.key", "-out",	  "etcd.csr",
	    "-subj",  "/CN=etcd", NULL};
	const char *etcd_sign[] = {"x509",	 "-req",   "-in",    "etcd.csr",	"-CA",
				   "ca.crt.tmp", "-CAkey", "ca.key", "-CAcreateserial", "-out",
				   "etcd.crt",	 "-days",  "3650",   "-extfile",	"ext-etcd",
				   NULL};
	const char *cl_req[] = {"req",
				"-newkey",
				"ec",
				"-pkeyopt",
				"ec_paramgen_curve:prime256v1",
				"-nodes",
				"-keyout",
				"client.key",
				"-out",
				"client.csr",
				"-subj",
				"/O=pgwarden client",
				NULL};
	const char *cl_sign[] = {"x509",       "-req",	 "-in",	   "client.csr",      "-CA",
				 "ca.crt.tmp", "-CAkey", "ca.key", "-CAcreateserial", "-out",
				 "client.crt", "-days",	 "3650",   "-extfile",	      "ext-client",
				 NULL};

	if (openssl(l, ca) != 0 || openssl(l, etcd_req) != 0 || openssl(l, etcd_sign) != 0 ||
	    openssl(l, cl_req) != 0 || openssl(l, cl_sign) != 0) {
		tls_path(l, "openssl.log", path, sizeof(path));
		fprintf(stderr, "pgwarden: cannot make etcd's certificates (openssl): see %s\n",
			path);
		return -1;
	}
	if (random_password(pw, sizeof(pw)) != 0)
		return -1;
	tls_path(l, "etcd-root-password", path, sizeof(path));
	if (cmn_write_file_atomic(path, pw, strlen(pw), 0600) != PGW_OK)
		return -1;
	explicit_bzero(pw, sizeof(pw));
	/* Last: ca.crt says the folder's TLS is complete. */
	char tmp[PATH_MAX + 32];

	tls_path(l, "ca.crt.tmp", tmp, sizeof(tmp));
	tls_path(l, "ca.crt", path, sizeof(path));
	if (rename(tmp, path) != 0) {
		fprintf(stderr, "pgwarden: cannot rename %s: %s\n", tmp, strerror(errno));
		return -1;
	}
	printf("made a CA and certificates for etcd in %s/etcd-tls\n", l->dir);
	return 0;
}

/* With --etcd-tls, once: etcd's root user and authentication on (marker: tls/auth-on). */
static int enable_etcd_auth(const struct layout *l)
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

/* Writes DIR/nodeN/node.ini unless it exists (an existing folder keeps its settings). */
static int write_node_configs(const struct layout *l)
{
	char path[PATH_MAX + 64], su_pw[25], repl_pw[25], api_pw[25], eps[512], text[20480];
	char tls_lines[4 * PATH_MAX + 128];
	struct stat st;

	path_of(l, path, sizeof(path), "node", 0, "node.ini");
	if (stat(path, &st) == 0)
		return 0;
	snprintf(path, sizeof(path), "%s/backup", l->dir);
	if (make_dir(path, 0750) != 0)
		return -1;
	if (etcd_tls_lines(l, tls_lines, sizeof(tls_lines)) != 0)
		return -1;
	if (random_password(su_pw, sizeof(su_pw)) != 0 ||
	    random_password(repl_pw, sizeof(repl_pw)) != 0 ||
	    random_password(api_pw, sizeof(api_pw)) != 0)
		return -1;
	etcd_endpoints(l, eps, sizeof(eps));
	for (int i = 0; i < N_NODES; i++) {
		char dir[PATH_MAX + 16];

		path_of(l, dir, sizeof(dir), "node", i, NULL);
		if (make_dir(dir, 0700) != 0)
			return -1;
		snprintf(
		    text, sizeof(text),
		    "# Written by pgwarden up. Every key can be overridden by\n"
		    "# PGWARDEN_<SECTION>_<KEY> in the agent's environment.\n"
		    "[cluster]\n"
		    "name = %s\n"
		    "member = node%d\n"
		    "\n"
		    "[etcd]\n"
		    "endpoints = %s\n"
		    "%s"
		    "\n"
		    "[postgresql]\n"
		    "data_dir = %s/data\n"
		    "listen = 127.0.0.1:%d\n"
		    "superuser = postgres\n"
		    "superuser_password = %s\n"
		    "replication_user = replicator\n"
		    "replication_password = %s\n"
		    "memory = %s\n"
		    "\n"
		    "[parameters]\n"
		    "max_connections = 200\n"
		    "\n"
		    "[api]\n"
		    "listen = 127.0.0.1:%d\n"
		    "username = pgwarden\n"
		    "password = %s\n"
		    "\n"
		    "[backup]\n"
		    "# pgBackRest repository of the cluster (pgwarden backup, restore)\n"
		    "repo_path = %s/backup\n"
		    "# taken by the leader (cron in UTC, or an interval such as 6h); the first\n"
		    "# full backup as soon as the cluster forms\n"
		    "schedule_full = 0 1 * * 0\n"
		    "schedule_diff = 0 1 * * 1-6\n"
		    "\n"
		    "[tags]\n",
		    l->cluster, i + 1, eps, tls_lines, dir, l->pg_port + i, su_pw, repl_pw,
		    l->memory, l->api_port + i, api_pw, l->dir);
		path_of(l, path, sizeof(path), "node", i, "node.ini");
		if (cmn_write_file_atomic(path, text, strlen(text), 0600) != PGW_OK) {
			fprintf(stderr, "pgwarden: cannot write %s: %s\n", path, strerror(errno));
			return -1;
		}
	}
	snprintf(text, sizeof(text), "127.0.0.1:*:*:postgres:%s\n*:*:*:postgres:%s\n", su_pw,
		 su_pw);
	snprintf(path, sizeof(path), "%s/pgpass", l->dir);
	if (cmn_write_file_atomic(path, text, strlen(text), 0600) != PGW_OK) {
		fprintf(stderr, "pgwarden: cannot write %s: %s\n", path, strerror(errno));
		return -1;
	}
	return 0;
}

/* Ports recorded in DIR/ports on the first up, so later runs reuse them. */
static int spawn_logged(const char *const *argv, const char *log, const char *pidfile);

/* DIR/proxy/proxy.ini and userlist.txt (the superuser's password), unless they exist. */
static int write_proxy_config(const struct layout *l)
{
	char dir[PATH_MAX + 16], path[PATH_MAX + 32], eps[512], text[20480], ini[PATH_MAX + 32];
	char http_pw[25], tls_lines[4 * PATH_MAX + 128];
	char *node, *pw, *end;
	struct stat st;

	snprintf(dir, sizeof(dir), "%s/proxy", l->dir);
	snprintf(path, sizeof(path), "%s/proxy.ini", dir);
	if (stat(path, &st) == 0)
		return 0;
	if (make_dir(dir, 0700) != 0)
		return -1;
	path_of(l, ini, sizeof(ini), "node", 0, "node.ini");
	node = cmn_read_file(ini, NULL);
	pw = node ? strstr(node, "\nsuperuser_password = ") : NULL;
	if (!pw) {
		free(node);
		fprintf(stderr, "pgwarden: no superuser_password in %s\n", ini);
		return -1;
	}
	pw += strlen("\nsuperuser_password = ");
	end = strchr(pw, '\n');
	if (end)
		*end = '\0';
	snprintf(text, sizeof(text), "\"postgres\" \"%s\"\n", pw);
	free(node);
	snprintf(path, sizeof(path), "%s/userlist.txt", dir);
	if (cmn_write_file_atomic(path, text, strlen(text), 0600) != PGW_OK)
		return -1;
	etcd_endpoints(l, eps, sizeof(eps));
	if (random_password(http_pw, sizeof(http_pw)) != 0 ||
	    etcd_tls_lines(l, tls_lines, sizeof(tls_lines)) != 0)
		return -1;
	snprintf(text, sizeof(text),
		 "# Written by pgwarden up. Every key can be overridden by\n"
		 "# PGWARDEN_<SECTION>_<KEY> in the proxy's environment.\n"
		 "[cluster]\n"
		 "name = %s\n"
		 "\n"
		 "[etcd]\n"
		 "endpoints = %s\n"
		 "%s"
		 "\n"
		 "[proxy]\n"
		 "listen = 127.0.0.1\n"
		 "pooled_port = %d\n"
		 "primary_port = %d\n"
		 "replica_port = %d\n"
		 "http_port = %d\n"
		 "auth_type = scram-sha-256\n"
		 "auth_file = %s/userlist.txt\n"
		 "admin_users = postgres\n"
		 "default_pool_size = 20\n"
		 "http_username = admin\n"
		 "http_password = %s\n",
		 l->cluster, eps, tls_lines, l->proxy_ports[0], l->proxy_ports[1],
		 l->proxy_ports[2], l->proxy_ports[3], dir, http_pw);
	snprintf(path, sizeof(path), "%s/proxy.ini", dir);
	if (cmn_write_file_atomic(path, text, strlen(text), 0600) != PGW_OK)
		return -1;
	return 0;
}

static int start_proxy(const struct layout *l)
{
	char ini[PATH_MAX + 32], log[PATH_MAX + 32], pidf[PATH_MAX + 32];
	static const char *const what[4] = {"pooled", "primary", "replica", "status page"};

	snprintf(pidf, sizeof(pidf), "%s/proxy/proxy.pid", l->dir);
	snprintf(ini, sizeof(ini), "%s/proxy/proxy.ini", l->dir);
	snprintf(log, sizeof(log), "%s/proxy/proxy.log", l->dir);
	if (running_pid(pidf, " proxy -c "))
		return 0;
	for (int k = 0; k < 4; k++) {
		if (l->proxy_ports[k] && port_in_use(l->proxy_ports[k])) {
			fprintf(stderr,
				"pgwarden: port %d (the proxy's %s port) is already in use by "
				"another program: stop it (PgBouncer? HAProxy?) or choose other "
				"ports with --proxy-port\n",
				l->proxy_ports[k], what[k]);
			return -1;
		}
	}
	const char *argv[] = {l->self, "proxy", "-c", ini, NULL};

	if (spawn_logged(argv, log, pidf) != 0)
		return -1;
	printf("started the proxy (pooled :%d, primary :%d, replica :%d)\n", l->proxy_ports[0],
	       l->proxy_ports[1], l->proxy_ports[2]);
	return 0;
}

static int load_or_save_ports(struct layout *l, bool explicit_ports)
{
	char path[PATH_MAX + 16], text[256];
	char *saved;

	snprintf(path, sizeof(path), "%s/ports", l->dir);
	saved = cmn_read_file(path, NULL);
	if (saved && !explicit_ports) {
		int e, p, a, x[4];

		if (sscanf(saved, "etcd=%d pg=%d api=%d", &e, &p, &a) == 3) {
			l->etcd_port = e;
			l->pg_port = p;
			l->api_port = a;
		}
		/* Folders made before the proxy existed keep the default proxy ports. */
		const char *px = strstr(saved, "proxy=");

		if (px && sscanf(px, "proxy=%d,%d,%d,%d", &x[0], &x[1], &x[2], &x[3]) == 4)
			memcpy(l->proxy_ports, x, sizeof(x));
		free(saved);
		return 0;
	}
	free(saved);
	snprintf(text, sizeof(text), "etcd=%d pg=%d api=%d proxy=%d,%d,%d,%d\n", l->etcd_port,
		 l->pg_port, l->api_port, l->proxy_ports[0], l->proxy_ports[1], l->proxy_ports[2],
		 l->proxy_ports[3]);
	if (cmn_write_file_atomic(path, text, strlen(text), 0644) != PGW_OK) {
		fprintf(stderr, "pgwarden: cannot write %s\n", path);
		return -1;
	}
	return 0;
}

static int spawn_logged(const char *const *argv, const char *log, const char *pidfile)
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

static int start_etcd(const struct layout *l, int i, bool *started)
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
	snprintf(token, sizeof(token), "pgwarden-%s-%d", l->cluster, l->etcd_port);
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

static size_t collect(char *data, size_t size, size_t n, void *arg)
{
	return cmn_buf_append(arg, data, size * n) == PGW_OK ? size * n : 0;
}

static bool etcd_healthy(const struct layout *l, int i)
{
	char url[128];
	struct etcd_tls_files f;
	struct cmn_buf b = {0};
	long status = 0;
	bool ok;

	snprintf(url, sizeof(url), "%s://127.0.0.1:%d/health", l->etcd_tls ? "https" : "http",
		 etcd_client_port(l, i));
	if (!l->etcd_tls) {
		ok = cmn_http_request("GET", url, NULL, NULL, 1000, &b, &status) == PGW_OK &&
		     status == 200 && b.data && strstr(b.data, "\"true\"");
		cmn_buf_free(&b);
		return ok;
	}
	CURL *h = curl_easy_init();

	if (!h)
		return false;
	etcd_tls_files(l, &f);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_CAINFO, f.ca);
	curl_easy_setopt(h, CURLOPT_SSLCERT, f.cert);
	curl_easy_setopt(h, CURLOPT_SSLKEY, f.key);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 1000L);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
	ok = curl_easy_perform(h) == CURLE_OK &&
	     curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status) == CURLE_OK && status == 200 &&
	     b.data && memmem(b.data, b.len, "\"true\"", 6);
	curl_easy_cleanup(h);
	cmn_buf_free(&b);
	return ok;
}

static int start_agent(const struct layout *l, int i)
{
	char dir[PATH_MAX + 16], ini[PATH_MAX + 32], log[PATH_MAX + 32], pidf[PATH_MAX + 32];

	path_of(l, dir, sizeof(dir), "node", i, NULL);
	snprintf(pidf, sizeof(pidf), "%s/agent.pid", dir);
	snprintf(ini, sizeof(ini), "%s/node.ini", dir);
	snprintf(log, sizeof(log), "%s/agent.log", dir);
	if (running_pid(pidf, " agent -c "))
		return 0;
	bool pg_running = postmaster_pid(l, i) != 0;

	if (!pg_running && port_in_use(l->pg_port + i)) {
		fprintf(stderr,
			"pgwarden: port %d (node%d's PostgreSQL) is already in use by another "
			"program: stop it (Debian's own cluster? 'pg_ctlcluster 15 main stop') or "
			"choose other ports with --pg-port\n",
			l->pg_port + i, i + 1);
		return -1;
	}
	if (port_in_use(l->api_port + i)) {
		fprintf(stderr,
			"pgwarden: port %d (node%d's REST API) is already in use by another "
			"program: stop it or choose other ports with --api-port\n",
			l->api_port + i, i + 1);
		return -1;
	}
	const char *argv[] = {l->self, "agent", "-c", ini, NULL};

	if (spawn_logged(argv, log, pidf) != 0)
		return -1;
	printf("started the agent of node%d (PostgreSQL on 127.0.0.1:%d, REST API on :%d)\n", i + 1,
	       l->pg_port + i, l->api_port + i);
	return 0;
}

/* Waits until one leader runs and every other member streams. */
static bool cluster_ready(const struct layout *l, char *leader, size_t size)
{
	int leaders = 0, replicas = 0;

	for (int i = 0; i < N_NODES; i++) {
		char url[128];
		struct cmn_buf b = {0};
		long status = 0;

		snprintf(url, sizeof(url), "%s://127.0.0.1:%d/status", l->api_scheme,
			 l->api_port + i);
		if (cmn_http_request("GET", url, NULL, NULL, 1000, &b, &status) == PGW_OK &&
		    status == 200 && b.data) {
			json_object *o = json_tokener_parse(b.data), *v;

			if (o && json_object_object_get_ex(o, "leader", &v) &&
			    json_object_get_boolean(v)) {
				leaders++;
				snprintf(leader, size, "node%d", i + 1);
			} else if (o && json_object_object_get_ex(o, "state", &v) &&
				   strcmp(json_object_get_string(v), "streaming") == 0) {
				replicas++;
			}
			json_object_put(o);
		}
		cmn_buf_free(&b);
	}
	return leaders == 1 && replicas == N_NODES - 1;
}

/* Can the postgres user access path with mode (X_OK, R_OK ...)? Asks a child process. */
static bool postgres_can(const struct layout *l, const char *path, int mode)
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
static int hand_over_dir(const struct layout *l, int fd, bool made_now)
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

static bool dir_has_ports(const char *dir)
{
	char path[PATH_MAX];
	struct stat st;

	snprintf(path, sizeof(path), "%s/ports", dir);
	return stat(path, &st) == 0;
}

static int parse_common(int argc, char **argv, struct layout *l, bool *explicit_ports,
			int *timeout_s)
{
	static const struct option opts[] = {
	    {"dir", required_argument, NULL, 'd'},     {"etcd-port", required_argument, NULL, 'e'},
	    {"pg-port", required_argument, NULL, 'p'}, {"api-port", required_argument, NULL, 'a'},
	    {"memory", required_argument, NULL, 'm'},  {"cluster", required_argument, NULL, 'n'},
	    {"timeout", required_argument, NULL, 't'}, {"proxy-port", required_argument, NULL, 'x'},
	    {"etcd-tls", no_argument, NULL, 'T'},      {NULL, 0, NULL, 0},
	};
	const char *dir = getenv("PGWARDEN_DIR") ? getenv("PGWARDEN_DIR") : "cluster";
	bool explicit_dir = getenv("PGWARDEN_DIR") != NULL;
	int c;

	memset(l, 0, sizeof(*l));
	l->etcd_port = 2379;
	l->pg_port = 5432;
	l->api_port = 8008;
	l->proxy_ports[0] = 6432;
	l->proxy_ports[1] = 5000;
	l->proxy_ports[2] = 5001;
	l->proxy_ports[3] = 7000;
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
			int v = atoi(optarg);

			if (v < 1024 || v > 65000) {
				fprintf(stderr, "pgwarden: bad port '%s' (1024..65000)\n", optarg);
				return -1;
			}
			if (c == 'e')
				l->etcd_port = v;
			else if (c == 'p')
				l->pg_port = v;
			else
				l->api_port = v;
			*explicit_ports = true;
			break;
		}
		case 'x': {
			int v = atoi(optarg);

			if (v < 1024 || v > 65000) {
				fprintf(stderr, "pgwarden: bad port '%s' (1024..65000)\n", optarg);
				return -1;
			}
			/* BASE: pooled, BASE+1 primary, BASE+2 replica, BASE+3 status page. */
			for (int k = 0; k < 4; k++)
				l->proxy_ports[k] = v + k;
			*explicit_ports = true;
			break;
		}
		case 'm':
			snprintf(l->memory, sizeof(l->memory), "%s", optarg);
			break;
		case 'T':
			l->etcd_tls = true;
			break;
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
	ssize_t n = readlink("/proc/self/exe", l->self, sizeof(l->self) - 1);

	if (n <= 0)
		return -1;
	l->self[n] = '\0';
	return 0;
}

/*
 * The agents run as postgres: if that user cannot run this binary where it is (a build
 * inside a private home folder), root reads it (read_agent_binary) and the postgres
 * side runs a copy kept in DIR/bin (agent_binary).
 */
static int read_agent_binary(struct layout *l)
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

static int agent_binary(struct layout *l)
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

int cli_up(int argc, char **argv)
{
	return cli_up_run(argc, argv, NULL, NULL, NULL);
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

static void drop_foreign_identity(void)
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

/* What up does once DIR is postgres's, as postgres when we are root. */
struct up_job {
	struct layout l;
	bool explicit_ports;
	int timeout_s;
	cli_up_hook before_agents;
	void *arg;
};

#define UP_HOOK_FAILED 65 /* up_run's exit code when before_agents failed */

static int up_run(void *arg);

int cli_up_run(int argc, char **argv, cli_up_hook before_agents, void *arg, bool *hook_failed)
{
	struct up_job job = {.timeout_s = 180, .before_agents = before_agents, .arg = arg};
	int rc;

	if (hook_failed)
		*hook_failed = false;
	if (parse_common(argc, argv, &job.l, &job.explicit_ports, &job.timeout_s) != 0) {
		fprintf(stderr, "usage: pgwarden up [--dir DIR] [--etcd-port P] [--pg-port P] "
				"[--api-port P] [--proxy-port P] [--memory SIZE] [--cluster NAME] "
				"[--timeout S] [--etcd-tls]\n");
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

static int up_run(void *arg)
{
	struct up_job *job = arg;
	struct layout l = job->l;
	bool explicit_ports = job->explicit_ports, any_etcd_started = false;
	int timeout_s = job->timeout_s;
	cli_up_hook before_agents = job->before_agents;
	char leader[32] = "", eps[512], ini[PATH_MAX + 32];

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
	int64_t deadline = cmn_now_ms() + 30000;
	int healthy = 0;

	while (cmn_now_ms() < deadline) {
		healthy = 0;
		for (int i = 0; i < N_NODES; i++)
			healthy += etcd_healthy(&l, i);
		if (healthy == N_NODES || (!any_etcd_started && healthy >= 2))
			break;
		usleep(200000);
	}
	if (healthy < 2) {
		fprintf(
		    stderr,
		    "pgwarden: etcd did not become healthy within 30 s: see %s/etcd*/etcd.log\n",
		    l.dir);
		return CLI_EXIT_FAILED;
	}
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
	usleep(300000);
	for (int i = 0; i < N_NODES; i++) {
		char pidf[PATH_MAX + 32], log[PATH_MAX + 32];

		path_of(&l, pidf, sizeof(pidf), "node", i, "agent.pid");
		path_of(&l, log, sizeof(log), "node", i, "agent.log");
		if (!running_pid(pidf, " agent -c ")) {
			char *text = cmn_read_file(log, NULL);
			size_t len = text ? strlen(text) : 0;

			fprintf(
			    stderr,
			    "pgwarden: the agent of node%d exited at once; the end of %s:\n%s\n",
			    i + 1, log, text ? text + (len > 2000 ? len - 2000 : 0) : "(empty)");
			free(text);
			return CLI_EXIT_FAILED;
		}
	}
	printf("waiting for a leader and two streaming replicas (up to %d s)...\n", timeout_s);
	fflush(stdout);
	deadline = cmn_now_ms() + (int64_t)timeout_s * 1000;
	bool ready = false;

	while (cmn_now_ms() < deadline && !(ready = cluster_ready(&l, leader, sizeof(leader))))
		usleep(300000);
	etcd_endpoints(&l, eps, sizeof(eps));
	printf("\nCluster '%s' in %s\n\n", l.cluster, l.dir);
	printf("Connect (password in %s/pgpass):\n", l.dir);
	printf("  export PGPASSFILE=%s/pgpass\n", l.dir);
	for (int i = 0; i < N_NODES; i++)
		printf("  node%d:       psql 'postgresql://postgres@127.0.0.1:%d/postgres'\n",
		       i + 1, l.pg_port + i);
	printf("  read-write:  psql 'postgresql://postgres@127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d/"
	       "postgres?target_session_attrs=read-write'\n",
	       l.pg_port, l.pg_port + 1, l.pg_port + 2);
	printf("  read-only:   psql 'postgresql://postgres@127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d/"
	       "postgres?target_session_attrs=standby'\n",
	       l.pg_port, l.pg_port + 1, l.pg_port + 2);
	printf("  pooled:      psql 'postgresql://postgres@127.0.0.1:%d/postgres'   "
	       "(proxy, transaction pooling to the primary)\n",
	       l.proxy_ports[0]);
	printf("  primary:     psql 'postgresql://postgres@127.0.0.1:%d/postgres'   (proxy, "
	       "session on the primary)\n",
	       l.proxy_ports[1]);
	printf("  replica:     psql 'postgresql://postgres@127.0.0.1:%d/postgres'   (proxy, "
	       "session on a replica)\n",
	       l.proxy_ports[2]);
	printf("Proxy status:  http://127.0.0.1:%d/ (user admin, password in %s/proxy/proxy.ini), "
	       "metrics on /metrics\n",
	       l.proxy_ports[3], l.dir);
	printf("Admin console: psql 'postgresql://postgres@127.0.0.1:%d/pgbouncer' (SHOW POOLS, "
	       "...)\n",
	       l.proxy_ports[0]);
	printf("REST API:      %s://127.0.0.1:%d/cluster (nodes on :%d-%d)\n", l.api_scheme,
	       l.api_port, l.api_port, l.api_port + N_NODES - 1);
	printf("etcd:          %s\n", eps);
	printf("Manage:        pgwarden list --dir %s | pgwarden status --dir %s | pgwarden down "
	       "--dir %s\n\n",
	       l.dir, l.dir, l.dir);
	fflush(stdout);
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
	return CLI_EXIT_OK;
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
static void stop_nodes(const struct layout *l, const int *idx, size_t n)
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

static void stop_pid(const char *what, pid_t pid, int timeout_ms)
{
	stop_pids(&what, &pid, 1, timeout_ms);
}

static bool is_leader_node(const struct layout *l, int i)
{
	char url[128];
	struct cmn_buf b = {0};
	long status = 0;
	bool leader;

	snprintf(url, sizeof(url), "%s://127.0.0.1:%d/primary", l->api_scheme, l->api_port + i);
	leader =
	    cmn_http_request("GET", url, NULL, NULL, 1000, &b, &status) == PGW_OK && status == 200;
	cmn_buf_free(&b);
	return leader;
}

static int down_run(void *arg);

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

static int status_run(void *arg);

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
		       (int)pid, l.api_port + i);
		running += pid != 0;
		pid = postmaster_pid(&l, i);
		snprintf(name, sizeof(name), "node%d postgresql", i + 1);
		printf("%-22s %-10s %-8d 127.0.0.1:%d\n", name, pid ? "running" : "stopped",
		       (int)pid, l.pg_port + i);
		running += pid != 0;
		total += 2;
	}
	{
		char pidf[PATH_MAX + 32];
		pid_t pid;

		snprintf(pidf, sizeof(pidf), "%s/proxy/proxy.pid", l.dir);
		pid = running_pid(pidf, " proxy -c ");
		printf("%-22s %-10s %-8d 127.0.0.1:%d\n", "proxy", pid ? "running" : "stopped",
		       (int)pid, l.proxy_ports[0]);
		running += pid != 0;
		total++;
	}
	printf("%d of %d processes running\n", running, total);
	return running == total ? CLI_EXIT_OK : (running == 0 ? 3 : CLI_EXIT_FAILED);
}
