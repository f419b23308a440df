/*
 * The proxy's HTTP port (http_port, 7000): an HTML status page behind basic
 * auth (GET / and /status) and /metrics in Prometheus text format (no auth:
 * counters and names only, never a secret).
 *
 * The event loop owns struct proxy; the HTTP server (libmicrohttpd, its own
 * thread) never touches it. The loop renders both documents from its state
 * with proxy_http_publish and swaps them in under a mutex; requests are
 * answered with a copy of the latest ones.
 */
#ifndef PGW_PROXY_HTTP_H
#define PGW_PROXY_HTTP_H

#include "proxy/proxycfg.h"

struct proxy;
struct proxy_http;

/*
 * Starts the HTTP server on cfg->listen_host:cfg->http_port. http_port 0 means
 * off: *out = NULL and PGW_OK. Copies what it needs from cfg (credentials).
 * Until the first publish, requests get 503.
 */
int proxy_http_start(const struct proxy_config *cfg, struct proxy_http **out) PGW_WUR;
/*
 * On the loop thread: renders the status page and the metrics from p and makes
 * them the ones served. Counts lists, no other per-client work. h may be NULL.
 */
void proxy_http_publish(struct proxy_http *h, const struct proxy *p);
/* Stops the server (waits for its thread) and frees h. h may be NULL. */
void proxy_http_stop(struct proxy_http *h);

#endif
