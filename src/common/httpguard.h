/*
 * A guard against slow HTTP clients for a libmicrohttpd daemon (the REST API, the
 * proxy's status page). libmicrohttpd only times out a connection that sends nothing;
 * one that trickles a header line every few seconds kept a connection (and, in the
 * REST API, a thread) for ever, and 200 of them made /health fail. With the guard, a
 * connection must deliver each request's headers within a deadline after it connects
 * or after its previous request completed; a watchdog thread shuts down those that do
 * not. A request being handled (a switchover that takes seconds) is never cut.
 *
 *   MHD_OPTION_NOTIFY_CONNECTION, cmn_http_guard_notify, guard
 *   the access handler's first call per request: cmn_http_guard_begin
 *   MHD_OPTION_NOTIFY_COMPLETED: cmn_http_guard_end
 */
#ifndef PGW_COMMON_HTTPGUARD_H
#define PGW_COMMON_HTTPGUARD_H

#include "common/err.h"

#include <microhttpd.h>

/* Connections from one address at most, for MHD_OPTION_PER_IP_CONNECTION_LIMIT. */
#define CMN_HTTP_PER_ADDRESS_LIMIT 32

struct cmn_http_guard;

/* Starts the watchdog: requests' headers must arrive within deadline_ms. */
int cmn_http_guard_new(int deadline_ms, struct cmn_http_guard **out) PGW_WUR;
/* After MHD_stop_daemon. */
void cmn_http_guard_free(struct cmn_http_guard *g);

void cmn_http_guard_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
			   enum MHD_ConnectionNotificationCode toe);
void cmn_http_guard_begin(struct cmn_http_guard *g, struct MHD_Connection *conn);
void cmn_http_guard_end(struct cmn_http_guard *g, struct MHD_Connection *conn);

#endif
