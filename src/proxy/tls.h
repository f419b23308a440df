/* TLS contexts of the proxy (OpenSSL): towards clients and towards PostgreSQL. */
#ifndef PGW_PROXY_TLS_H
#define PGW_PROXY_TLS_H

#include "common/err.h"
#include "proxy/proxycfg.h"

#include <openssl/ssl.h>

struct proxy_tls {
	SSL_CTX *client; /* NULL: clients get 'N' to SSLRequest */
	SSL_CTX *server; /* NULL: never TLS to PostgreSQL */
};

/* Loads certificates and keys; err names the file on failure. */
int proxy_tls_init(const struct proxy_config *cfg, struct proxy_tls *out, char *err,
		   size_t err_size) PGW_WUR;
void proxy_tls_free(struct proxy_tls *t);
/* The last OpenSSL error as text (for logs). */
const char *proxy_tls_error(void);

#endif
