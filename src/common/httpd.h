/*
 * What the two HTTP servers (the agent's REST API and the proxy's status page) share
 * around libmicrohttpd: replies, JSON errors, HTTP basic authentication compared in
 * constant time. Their listening sockets come from cmn_tcp_listen (common/util.h) and
 * their guard against slow clients from common/httpguard.h.
 */
#ifndef PGW_COMMON_HTTPD_H
#define PGW_COMMON_HTTPD_H

#include <microhttpd.h>
#include <stdbool.h>
#include <stddef.h>

/*
 * Queues body[0..len) (copied) with Content-Type type and Cache-Control: no-store.
 * allow: an Allow header (with 405) or NULL; realm: a WWW-Authenticate basic challenge
 * for that realm (with 401) or NULL.
 */
enum MHD_Result cmn_httpd_reply(struct MHD_Connection *conn, unsigned int code, const char *type,
				const char *body, size_t len, const char *allow, const char *realm);

/* {"error": "<reason>"} (quotes, backslashes and control characters made safe). */
enum MHD_Result cmn_httpd_error(struct MHD_Connection *conn, unsigned int code, const char *reason,
				const char *allow, const char *realm);

enum cmn_httpd_auth {
	CMN_HTTPD_AUTH_NONE,  /* the request has no basic-auth credentials */
	CMN_HTTPD_AUTH_WRONG, /* it has others */
	CMN_HTTPD_AUTH_OK,
};

/* Checks the request's basic-auth user and password against username and password
 * (both always compared, in time independent of where they differ). */
enum cmn_httpd_auth cmn_httpd_basic_auth(struct MHD_Connection *conn, const char *username,
					 const char *password);

/* a equals b, in time that depends on a's length only. */
bool cmn_const_eq(const char *a, const char *b);

#endif
