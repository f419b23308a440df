/* Small HTTP client helpers over libcurl for REST calls between agents and from the CLI. */
#ifndef PGW_HTTP_H
#define PGW_HTTP_H

#include "common/err.h"
#include "common/util.h"

#include <stddef.h>

/*
 * One request. body may be NULL; userpwd "user:password" or NULL. *status gets the
 * HTTP status; out the response body. PGW_ENET / PGW_ETIMEOUT when no answer.
 */
int cmn_http_request(const char *method, const char *url, const char *body, const char *userpwd,
		     int timeout_ms, struct cmn_buf *out, long *status) PGW_WUR;

/*
 * The CA (PEM file) that https:// URLs are checked against (members' REST APIs with
 * [api] certfile), process-wide; NULL or "": the system's. Call before any request.
 */
void cmn_http_set_cafile(const char *path);

/* GETs n URLs in parallel within timeout_ms; status[i] is 0 when url i did not answer. */
void cmn_http_get_many(const char *const *urls, size_t n, int timeout_ms, struct cmn_buf *out,
		       long *status);

#endif
