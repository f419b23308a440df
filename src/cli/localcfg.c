/*
 * pgwarden up's files: the ports, node.ini and proxy.ini of each part, passwords,
 * and with --etcd-tls a throw-away CA and etcd's certificates.
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

const struct local_port_kind local_ports[LP_COUNT] = {
    [LP_ETCD] = {2379, "etcd"},	       [LP_PG] = {5432, "PostgreSQL"},
    [LP_API] = {8008, "REST API"},     [LP_POOLED] = {6432, "pooled"},
    [LP_PRIMARY] = {5000, "primary"},  [LP_REPLICA] = {5001, "replica"},
    [LP_HTTP] = {7000, "status page"},
};

/*
 * The REST APIs' scheme and CA, from node1's configuration as the agents read it (the
 * environment's PGWARDEN_API_* included): https with [api] certfile.
 */
void api_scheme(struct layout *l)
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
void tls_path(const struct layout *l, const char *name, char *out, size_t size)
{
	snprintf(out, size, "%s/etcd-tls/%s", l->dir, name);
}

int etcd_client_port(const struct layout *l, int i)
{
	return l->port[LP_ETCD] + 100 * i;
}

int etcd_peer_port(const struct layout *l, int i)
{
	return l->port[LP_ETCD] + 100 * i + 1;
}

/* DIR/<kind><i+1>[/rest] */
void path_of(const struct layout *l, char *out, size_t size, const char *kind, int i,
	     const char *rest)
{
	snprintf(out, size, "%s/%s%d%s%s", l->dir, kind, i + 1, rest ? "/" : "", rest ? rest : "");
}

int make_dir(const char *path, mode_t mode)
{
	if (cmn_mkdir_p(path, mode) != PGW_OK) {
		fprintf(stderr, "pgwarden: cannot create %s: %s\n", path, strerror(errno));
		return -1;
	}
	return 0;
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

const char *etcd_endpoints(const struct layout *l, char *out, size_t size)
{
	size_t off = 0;

	out[0] = '\0';
	for (int i = 0; i < N_NODES; i++)
		off += (size_t)snprintf(out + off, size - off, "%s%s://127.0.0.1:%d", i ? "," : "",
					l->etcd_tls ? "https" : "http", etcd_client_port(l, i));
	return out;
}

void etcd_tls_files(const struct layout *l, struct etcd_tls_files *f)
{
	tls_path(l, "ca.crt", f->ca, sizeof(f->ca));
	tls_path(l, "client.crt", f->cert, sizeof(f->cert));
	tls_path(l, "client.key", f->key, sizeof(f->key));
}

/* etcd's root password (heap, newline cut; NULL, said, when unreadable); its file in pwf. */
char *etcd_root_password(const struct layout *l, char *pwf, size_t size)
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

void free_password(char *pw)
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
int make_tls(const struct layout *l)
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

/* Writes DIR/nodeN/node.ini unless it exists (an existing folder keeps its settings). */
int write_node_configs(const struct layout *l)
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
		    l->cluster, i + 1, eps, tls_lines, dir, l->port[LP_PG] + i, su_pw, repl_pw,
		    l->memory, l->port[LP_API] + i, api_pw, l->dir);
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

/* DIR/proxy/proxy.ini and userlist.txt (the superuser's password), unless they exist. */
int write_proxy_config(const struct layout *l)
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
		 l->cluster, eps, tls_lines, l->port[LP_POOLED], l->port[LP_PRIMARY],
		 l->port[LP_REPLICA], l->port[LP_HTTP], dir, http_pw);
	snprintf(path, sizeof(path), "%s/proxy.ini", dir);
	if (cmn_write_file_atomic(path, text, strlen(text), 0600) != PGW_OK)
		return -1;
	return 0;
}

int load_or_save_ports(struct layout *l, bool explicit_ports)
{
	char path[PATH_MAX + 16], text[256];
	char *saved;

	snprintf(path, sizeof(path), "%s/ports", l->dir);
	saved = cmn_read_file(path, NULL);
	if (saved && !explicit_ports) {
		int e, p, a, x[4];

		if (sscanf(saved, "etcd=%d pg=%d api=%d", &e, &p, &a) == 3) {
			l->port[LP_ETCD] = e;
			l->port[LP_PG] = p;
			l->port[LP_API] = a;
		}
		/* Folders made before the proxy existed keep the default proxy ports. */
		const char *px = strstr(saved, "proxy=");

		if (px && sscanf(px, "proxy=%d,%d,%d,%d", &x[0], &x[1], &x[2], &x[3]) == 4)
			memcpy(&l->port[LP_POOLED], x, sizeof(x));
		free(saved);
		return 0;
	}
	free(saved);
	snprintf(text, sizeof(text), "etcd=%d pg=%d api=%d proxy=%d,%d,%d,%d\n", l->port[LP_ETCD],
		 l->port[LP_PG], l->port[LP_API], l->port[LP_POOLED], l->port[LP_PRIMARY],
		 l->port[LP_REPLICA], l->port[LP_HTTP]);
	if (cmn_write_file_atomic(path, text, strlen(text), 0644) != PGW_OK) {
		fprintf(stderr, "pgwarden: cannot write %s\n", path);
		return -1;
	}
	return 0;
}
