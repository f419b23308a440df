/*
 * The functions the proxy's connection files share (io, client, clientauth, console,
 * pool, params, server, orphan, relay): each file's own are static. The types are in
 * proxy/types.h.
 */
#ifndef PGW_PROXY_CONN_H
#define PGW_PROXY_CONN_H

#include "proxy/types.h"

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* io.c: socket buffers */
/* Bytes in b not consumed yet (inline: every read and write path asks). */
static inline size_t buf_used(const struct proxy_buf *b)
{
	return b->len - b->off;
}
int buf_append(struct proxy_buf *b, const void *d, size_t n);
void buf_consume(struct proxy_buf *b, size_t n);
void buf_free(struct proxy_buf *b);
ssize_t sock_send(int fd, SSL *ssl, const void *d, size_t n);
ssize_t sock_recv(int fd, SSL *ssl, void *d, size_t n);
bool send_or_queue(struct cmn_loop *loop, struct cmn_io *io, SSL *ssl, struct proxy_buf *out,
		   const uint8_t *d, size_t n);
/* Non-blocking, TCP_NODELAY and the configured keepalive (cfg NULL: none). */
int sock_setup(int fd, const struct proxy_config *cfg);
void pause_reading(struct cmn_loop *loop, struct cmn_io *io, bool *paused, bool pause);
bool flush_out(struct cmn_loop *loop, struct cmn_io *io, SSL *ssl, struct proxy_buf *out);

/* client.c: clients */
bool client_send(struct proxy_client *c, const struct cmn_buf *b);
/* A FATAL error to the client, then the connection closes (the one exit path for errors). */
void client_fatal(struct proxy_client *c, const char *sqlstate, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void client_set_state(struct proxy_client *c, enum proxy_cl_state st);
void client_close(struct proxy_client *c, const char *why);
void client_logged_in(struct proxy_client *c);
void client_replica_wait(struct proxy_client *c, int64_t now);
void on_client(struct cmn_loop *l, struct cmn_io *io, uint32_t events);

/* clientauth.c: client authentication */
void client_password(struct proxy_client *c, const uint8_t *body, size_t len);
void client_challenge(struct proxy_client *c);
void auth_query_start(struct proxy_client *c);
void auth_query_retry(struct proxy *p);
void auth_query_answers(struct proxy *p);

/* console.c: the admin console's connections */
void admin_logged_in(struct proxy_client *c);
void pause_check(struct proxy *p);
void admin_input(struct proxy_client *c);

/* pool.c: pools, routing, periodic work */
void pool_check_unused(struct proxy_pool *pool);
struct proxy_pool *pool_get(struct proxy *p, enum proxy_port port, const char *db, const char *user,
			    const char *member, bool *full);
bool pool_to_primary(const struct proxy_pool *pool);
bool pool_target(struct proxy_pool *pool, char *host, size_t size, int *port);
void pool_fail_waiting(struct proxy_pool *pool, const char *sqlstate, const char *msg);
void client_welcome(struct proxy_client *c);
bool server_sync_params(struct proxy_server *s, struct proxy_client *c);
void link_client(struct proxy_client *c, struct proxy_server *s);
void pool_dispatch(struct proxy_pool *pool);
void client_request(struct proxy_client *c);
bool pick_replica(struct proxy *p, char *member, size_t size);
bool replica_available(const struct proxy *p);

/* params.c: session parameters and startup settings */
int param_index(const char *name);
const char *client_param(const struct proxy_client *c, int k);
void append_literal(struct cmn_buf *b, const char *value);
void client_param_set(struct proxy_client *c, int k, const char *value);
void params_free(char **v);
bool streq_null(const char *a, const char *b);
bool client_settings(struct proxy_client *c, const struct pgp_startup *st);
bool pool_settings_ok(const struct proxy_pool *pool, const char *sets);
void pool_settings_accepted(struct proxy_pool *pool, const char *sets);
void server_settings_set(struct proxy_server *s, const char *sets, const char *resets);
int server_param_status(struct proxy_server *s, const uint8_t *body, size_t len);

/* server.c: servers */
void server_set_state(struct proxy_server *s, enum proxy_sv_state st);
void server_connect(struct proxy_pool *pool);
/* A server connection to host:port for the pool; warm: see proxy_warm_candidate. */
void server_connect_to(struct proxy_pool *pool, const char *host, int port, bool warm);
void cancel_done(struct proxy_cancel *k);
void send_cancel(struct proxy_server *s);
void server_close(struct proxy_server *s, const char *why);
bool server_send(struct proxy_server *s, const struct cmn_buf *b);
void server_release(struct proxy_server *s);
void server_reset(struct proxy_server *s);
void server_login_input(struct proxy_server *s);
void server_start_login(struct proxy_server *s);

/* orphan.c: a client whose server was lost */
void discard_partial(struct proxy_client *c);
void client_lost_server(struct proxy_client *c, struct proxy_server *s, const char *why);
int ends_transaction(const char *q, size_t n);
void orphan_input(struct proxy_client *c);

/* relay.c: passing bytes through */
bool server_checked(struct proxy_server *s, struct proxy_client *c);
void on_server(struct cmn_loop *l, struct cmn_io *io, uint32_t events);
void client_forward(struct proxy_client *c);

/* The proxy's entry points (proxy.c) */
void proxy_accept(struct cmn_loop *l, struct cmn_io *io, uint32_t events);
void proxy_tick(struct proxy *p);
void proxy_free_dead(struct proxy *p);
/* Frees the pools marked unused (after proxy_free_dead: nothing points to them then). */
void proxy_free_unused_pools(struct proxy *p);
void proxy_topology_changed(struct proxy *p);
void proxy_close_all(struct proxy *p);
/* Server connections running a transaction or request (all pools). */
int proxy_active_servers(struct proxy *p);
/* After a reload: pools take the new pool sizes. */
void proxy_apply_pool_sizes(struct proxy *p);
/* Planned switchover: while held, requests for the primary's pools wait (up to
 * query_wait_timeout) instead of getting a server; running ones finish. */
void proxy_hold_primary(struct proxy *p, bool hold);
/*
 * Planned switchover to a named candidate: while the clients are held, each transaction
 * pool of the primary logs in to the candidate (a hot standby) as many server
 * connections as it has to the old primary, and keeps them aside. When the candidate runs
 * as primary, proxy_adopt_warm(p, its host, port) makes them the pools' idle servers, so
 * the held clients do not wait for new logins; proxy_adopt_warm(p, NULL, 0) (or another
 * address) closes them.
 */
void proxy_warm_candidate(struct proxy *p, const char *host, int port);
void proxy_adopt_warm(struct proxy *p, const char *host, int port);
/* Servers of the primary's pools with a request or transaction in flight. */
int proxy_primary_busy(struct proxy *p);
/* PAUSE / RESUME: no client gets a server while paused. */
void proxy_pause(struct proxy *p, bool pause);

#endif
