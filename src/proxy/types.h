/*
 * The proxy's types: its connections, pools and their states (the functions on
 * them: proxy/conn.h).
 *
 * A client is on exactly one list of its pool (or of the proxy while it logs in):
 *   login: startup and authentication;   idle: logged in, no server;
 *   waiting: has a request, queued for a server;   active: linked to a server.
 * A server is on one list of its pool: connecting / login; idle; active (linked);
 * resetting (session ended: server_reset_query runs).
 *
 * Bytes are read into the proxy's scratch buffer and written straight to the
 * other socket; only what the other side cannot take now is copied into a
 * per-connection buffer, allocated then and freed once drained, so an idle
 * client costs its struct and nothing else.
 */
#ifndef PGW_PROXY_TYPES_H
#define PGW_PROXY_TYPES_H

#include "common/evloop.h"
#include "pgproto/pgproto.h"
#include "pgproto/scram.h"
#include "proxy/extq.h"
#include "proxy/proxycfg.h"
#include "proxy/rings.h"
#include "proxy/tls.h"
#include "proxy/topology.h"
#include "proxy/userlist.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

/* glibc's sys/queue.h lacks it. */
#ifndef TAILQ_FOREACH_SAFE
#define TAILQ_FOREACH_SAFE(var, head, field, tvar)                                     \
	for ((var) = TAILQ_FIRST(head); (var) && ((tvar) = TAILQ_NEXT(var, field), 1); \
	     (var) = (tvar))
#endif

enum proxy_port { PROXY_PORT_POOLED, PROXY_PORT_PRIMARY, PROXY_PORT_REPLICA, PROXY_PORT_COUNT };

/* A byte buffer allocated on demand; off = bytes already consumed. */
struct proxy_buf {
	uint8_t *data;
	size_t len, off, cap;
};

enum proxy_cl_state {
	PROXY_CL_LOGIN,
	PROXY_CL_IDLE,
	PROXY_CL_WAITING,
	PROXY_CL_ACTIVE,
	PROXY_CL_DEAD,
};

enum proxy_sv_state {
	PROXY_SV_LOGIN, /* connecting, then authenticating */
	PROXY_SV_IDLE,
	PROXY_SV_ACTIVE,
	PROXY_SV_RESET,
	PROXY_SV_WARM, /* logged in to a switchover's candidate, kept for its promotion */
	PROXY_SV_DEAD,
};

struct proxy;
struct proxy_pool;
struct proxy_server;

/* Session parameters restored on whichever server runs a client's next request. */
#define PROXY_N_PARAMS 6
extern const char *const proxy_param_names[PROXY_N_PARAMS];

/* Where a message stream stands: inside a message (bytes left) or at a boundary. */
struct proxy_stream {
	size_t left; /* bytes of the current message still to pass */
};

struct proxy_client {
	struct cmn_io io;
	struct proxy *proxy;
	enum proxy_cl_state state;
	enum proxy_port port;
	TAILQ_ENTRY(proxy_client) entry;
	struct proxy_pool *pool;
	struct proxy_server *server;
	struct proxy_buf in;  /* login packets; requests not yet sent to a server */
	struct proxy_buf out; /* what the client socket could not take yet */
	struct proxy_stream fe;
	uint64_t id;
	char user[64];
	char database[64];
	char app_name[64];
	char addr[64];
	int auth_step;
	struct pgp_scram_server *scram;
	uint8_t md5_salt[4];
	bool admin;
	bool in_copy; /* client is sending COPY data */
	uint32_t cancel_pid, cancel_key;
	int64_t connect_ms, wait_since_ms;
	/* Logged in on the replica port while no replica was healthy: waits for one (as a
	 * client of 6432 waits for a primary), up to query_wait_timeout (0: not waiting). */
	int64_t replica_wait_ms;
	int64_t wait_since_us, active_us; /* for the statistics */
	char txn; /* last ReadyForQuery status seen for this client ('I', 'T', 'E') */
	bool reading_paused;
	bool welcomed;		     /* got its ParameterStatus / BackendKeyData / ReadyForQuery */
	SSL *ssl;		     /* TLS with the client (NULL: clear text) */
	bool tls_handshake;	     /* SSL_accept not finished */
	bool auth_md5;		     /* the password exchange is MD5 (else SCRAM) */
	int64_t last_io_ms;	     /* last bytes from the client */
	struct extq_names stmts;     /* named prepared statements (transaction pooling) */
	struct cmn_buf *pause_reply; /* admin console: PAUSE answered once nothing runs */
	/* Its server was lost mid-transaction (transaction pooling): the proxy answers it,
	 * as PostgreSQL would a failed transaction, until it ends the transaction. */
	bool orphan;
	bool orphan_skip;   /* an error was sent: messages are ignored up to a Sync */
	bool orphan_untold; /* idle in its transaction when lost: the next error says so */
	bool ending; /* the last Query sent ends its transaction block (COMMIT, ROLLBACK...) */
	uint8_t orphan_unnamed_end; /* the unnamed statement ends the transaction (kind) */
	uint8_t orphan_portal_end;  /* the unnamed portal ends the transaction (kind) */
	char **params;		    /* PROXY_N_PARAMS values that differ from the pool's (lazy) */
	/* Those it gave at startup (NULL: none), which its RESET / DISCARD ALL brings back,
	 * as PostgreSQL would on a direct connection. */
	char **startup;
	/* Other startup settings ("options" -c/--, search_path, ...) as SQL: "SET n TO
	 * E'v';..." and "RESET n;..." (NULL: none). */
	char *sets, *resets;
	bool checking;	   /* its server runs its settings before it is welcomed */
	char *check_error; /* ... and refused them with this message */
	char check_state[6];
};

struct proxy_server {
	struct cmn_io io;
	struct proxy *proxy;
	enum proxy_sv_state state;
	TAILQ_ENTRY(proxy_server) entry;
	struct proxy_pool *pool;
	struct proxy_client *client;
	struct proxy_buf in; /* login phase, and a partial message header */
	struct proxy_buf out;
	struct proxy_stream be;
	uint64_t id;
	uint64_t generation; /* the pool's generation when it connected */
	char host[256];
	int port;
	uint32_t be_pid, be_key;
	int outstanding;	 /* requests sent that expect a ReadyForQuery */
	char txn;		 /* last ReadyForQuery status */
	bool copy_in;		 /* the server is in COPY FROM STDIN */
	bool ext_open;		 /* extended-protocol messages sent since the last Sync */
	int syncs_since_execute; /* Syncs sent after the last Execute (COPY IN ignores them) */
	bool scram_verified;	 /* the server proved its SCRAM signature */
	struct pgp_scram_client *scram;
	int64_t connect_ms, idle_since_ms;
	bool reading_paused;
	bool auth_started;     /* startup packet sent */
	bool in_recovery;      /* reported in_hot_standby = on at login */
	bool warm;	       /* opened to a switchover's candidate ahead of its promotion */
	SSL *ssl;	       /* TLS with the server (NULL: clear text) */
	int tls_state;	       /* 0 none, 1 SSLRequest sent, 2 handshaking */
	bool close_after;      /* close when it would return to the pool */
	bool be_drop;	       /* the message being read is dropped (answers the proxy's own) */
	struct extq_server pq; /* answer slots and prepared statements */
	char *params[PROXY_N_PARAMS]; /* its session's values (as last reported) */
	char *sets, *resets;	      /* the client startup settings it runs with (copies) */
};

TAILQ_HEAD(proxy_client_list, proxy_client);
TAILQ_HEAD(proxy_server_list, proxy_server);

struct proxy_stats {
	uint64_t xact_count, query_count, bytes_received, bytes_sent;
	uint64_t xact_time_us, query_time_us, wait_time_us;
	uint64_t server_assignments, client_logins;
};

struct proxy_pool {
	TAILQ_ENTRY(proxy_pool) entry;
	struct proxy *proxy;
	enum proxy_port port;
	char database[64];
	char user[64];
	char member[64]; /* replica port: the member this pool's servers go to */
	bool transaction_mode;
	int pool_size;
	uint64_t generation; /* bumped when the pool's target changes: old servers close */
	struct proxy_client_list idle_clients, waiting, active_clients;
	struct proxy_server_list login, idle, active, resetting;
	struct proxy_server_list warm; /* PROXY_SV_WARM (see proxy_warm_candidate) */
	int n_servers;		       /* every state */
	/* the welcome: ParameterStatus messages from the first server login */
	uint8_t *welcome;
	size_t welcome_len;
	bool welcome_ok;
	char *defaults[PROXY_N_PARAMS]; /* parameter values of a fresh server session */
	char *sets_ok[8];		/* startup settings a server accepted (recent) */
	unsigned sets_ok_next;
	struct proxy_stats stats;
	int64_t last_error_ms;
	char last_error[200];
	int64_t next_connect_ms; /* after a failed connect or login: no new one before */
	bool dispatching;	 /* pool_dispatch is running (no re-entry) */
	int64_t empty_since_ms;	 /* no client and no server since (0: in use) */
	bool doomed;		 /* freed after this loop iteration unless used again */
};

TAILQ_HEAD(proxy_pool_list, proxy_pool);

/* A CancelRequest on its way to PostgreSQL, on a connection of its own. */
struct proxy_cancel {
	struct cmn_io io;
	struct proxy *proxy;
	TAILQ_ENTRY(proxy_cancel) entry;
	uint8_t packet[16];
	size_t sent;
	int64_t started_ms;
};

TAILQ_HEAD(proxy_cancel_list, proxy_cancel);

struct proxy {
	struct proxy_config cfg;
	const char *config_path;
	struct proxy_userlist users;
	struct cmn_loop *loop;
	struct cmn_io listeners[PROXY_PORT_COUNT];
	struct proxy_topo_watch *topo_watch;
	struct proxy_tls tls;
	struct proxy_authq *authq; /* started at the first auth_query */
	struct proxy_topology topo;
	bool routing_writes; /* a leader we may send writes to */
	uint64_t leader_generation;
	char leader_host[256];
	int leader_port;
	struct proxy_pool_list pools;
	int n_pools;
	int n_doomed; /* pools marked doomed */
	struct proxy_client_list login_clients;
	struct proxy_client_list admin_clients;
	struct proxy_client_list dead_clients;
	struct proxy_server_list dead_servers;
	struct proxy_cancel_list cancels, dead_cancels;
	size_t n_clients;
	int n_servers;	/* server connections, all pools */
	int fd_limit;	/* RLIMIT_NOFILE */
	int fd_reserve; /* kept for servers, etcd, HTTP, the log */
	uint64_t next_id;
	unsigned replica_rr;
	uint8_t *scratch;
	size_t scratch_size;
	bool paused;
	bool held;	   /* planned switchover: no new work for the primary's pools */
	int pause_waiters; /* admin clients whose PAUSE waits for transactions in flight */
	bool shutting_down;
	uint64_t leader_changes;
	/* Writes routed to another leader than the last one (the charts' marks; not the
	 * first routing, nor a spell without a leader) */
	uint64_t leader_switches;
	char last_leader[DCS_NAME_MAX];
	struct proxy_rings rings; /* the status page's charts */
	int64_t started_ms;
	int64_t drain_deadline_ms;	/* SIGTERM: stop by then at the latest */
	int64_t accept_paused_until_ms; /* out of file descriptors: accept again then */
	int (*reload)(struct proxy *p); /* re-reads proxy.ini and the auth file (RELOAD) */
};

#endif
