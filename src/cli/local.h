/*
 * What pgwarden up / down / status's files share (local.c: the commands; localcfg.c:
 * the files; localrun.c: the processes; localready.c: readiness).
 */
#ifndef PGW_CLI_LOCAL_H
#define PGW_CLI_LOCAL_H

#include "cli/cli.h"

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define N_NODES 3

/* The ports of a local cluster: each one's default and what uses it. */
enum local_port { LP_ETCD, LP_PG, LP_API, LP_POOLED, LP_PRIMARY, LP_REPLICA, LP_HTTP, LP_COUNT };
struct local_port_kind {
	int def;
	const char *what;
};
extern const struct local_port_kind local_ports[LP_COUNT];

struct layout {
	char dir[PATH_MAX];
	/* By local_ports: member i's etcd uses port[LP_ETCD] + 100 * i (client) and + 1
	 * (peer), its PostgreSQL port[LP_PG] + i, its REST API port[LP_API] + i. */
	int port[LP_COUNT];
	char memory[32];
	char cluster[64];
	bool as_postgres; /* we are root: the work runs as postgres (uid, gid) */
	uid_t uid;
	gid_t gid;
	char self[PATH_MAX];
	char *self_data; /* the binary, read as root, when postgres cannot run it */
	size_t self_len;
	bool etcd_tls;	      /* etcd over TLS with client certificates and authentication */
	char api_scheme[8];   /* https when node1's [api] has a certificate */
	bool with_prometheus; /* up --with-prometheus */
	int prometheus_port;  /* --prometheus-port (0: the folder's, else 9090) */
};

/* What a client of --etcd-tls's etcd presents: the CA, its certificate and key. */
struct etcd_tls_files {
	char ca[PATH_MAX + 16], cert[PATH_MAX + 16], key[PATH_MAX + 16];
};

/* localcfg.c: the files */
void api_scheme(struct layout *l);
void tls_path(const struct layout *l, const char *name, char *out, size_t size);
int etcd_client_port(const struct layout *l, int i);
int etcd_peer_port(const struct layout *l, int i);
void path_of(const struct layout *l, char *out, size_t size, const char *kind, int i,
	     const char *rest);
int make_dir(const char *path, mode_t mode);
const char *etcd_endpoints(const struct layout *l, char *out, size_t size);
void etcd_tls_files(const struct layout *l, struct etcd_tls_files *f);
char *etcd_root_password(const struct layout *l, char *pwf, size_t size);
void free_password(char *pw);
int make_tls(const struct layout *l);
int write_node_configs(const struct layout *l);
int write_proxy_config(const struct layout *l);
int load_or_save_ports(struct layout *l, bool explicit_ports);

/* localrun.c: the processes */
pid_t running_pid(const char *pidfile, const char *expect);
pid_t postmaster_pid(const struct layout *l, int i);
int enable_etcd_auth(const struct layout *l);
int start_proxy(const struct layout *l);
bool port_in_use(int port);
int spawn_logged(const char *const *argv, const char *log, const char *pidfile);
int start_etcd(const struct layout *l, int i, bool *started);
int start_agent(const struct layout *l, int i);
bool postgres_can(const struct layout *l, const char *path, int mode);
int hand_over_dir(const struct layout *l, int fd, bool made_now);
bool dir_has_ports(const char *dir);
int read_agent_binary(struct layout *l);
int agent_binary(struct layout *l);
void drop_foreign_identity(void);
void stop_nodes(const struct layout *l, const int *idx, size_t n);
void stop_pid(const char *what, pid_t pid, int timeout_ms);

/* localmon.c: Prometheus (up --with-prometheus) */
int start_prometheus(const struct layout *l, bool asked, int port);
int prometheus_port(const struct layout *l); /* running: its port, else 0 */
/* The folder has a Prometheus (an earlier --with-prometheus): its pid (0: stopped), port. */
bool prometheus_state(const struct layout *l, pid_t *pid, int *port);
void stop_prometheus(const struct layout *l);

/* localready.c: readiness */
bool cluster_ready(const struct layout *l, char *leader, size_t size);
bool proxy_routes(const struct layout *l, char *why, size_t size);
bool wait_etcd(const struct layout *l, bool any_started);
bool agents_alive(const struct layout *l);
bool is_leader_node(const struct layout *l, int i);

#endif
