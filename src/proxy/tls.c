#include "proxy/tls.h"

#include <openssl/err.h>
#include <stdio.h>
#include <string.h>

const char *proxy_tls_error(void)
{
	static __thread char buf[256];
	unsigned long e = ERR_get_error();

	if (!e)
		return "unknown TLS error";
	ERR_error_string_n(e, buf, sizeof(buf));
	return buf;
}

int proxy_tls_init(const struct proxy_config *cfg, struct proxy_tls *out, char *err,
		   size_t err_size)
{
	memset(out, 0, sizeof(*out));
	if (strcmp(cfg->client_tls_sslmode, "disable") != 0) {
		out->client = SSL_CTX_new(TLS_server_method());
		if (!out->client) {
			snprintf(err, err_size, "cannot create a TLS context: %s",
				 proxy_tls_error());
			return PGW_ERR;
		}
		SSL_CTX_set_min_proto_version(out->client, TLS1_2_VERSION);
		SSL_CTX_set_mode(out->client, SSL_MODE_ENABLE_PARTIAL_WRITE |
						  SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
		if (SSL_CTX_use_certificate_chain_file(out->client, cfg->client_tls_cert_file) !=
		    1) {
			snprintf(err, err_size, "%s: cannot load the certificate: %s",
				 cfg->client_tls_cert_file, proxy_tls_error());
			goto fail;
		}
		if (SSL_CTX_use_PrivateKey_file(out->client, cfg->client_tls_key_file,
						SSL_FILETYPE_PEM) != 1 ||
		    SSL_CTX_check_private_key(out->client) != 1) {
			snprintf(err, err_size, "%s: cannot load the private key: %s",
				 cfg->client_tls_key_file, proxy_tls_error());
			goto fail;
		}
	}
	if (strcmp(cfg->server_tls_sslmode, "disable") != 0) {
		out->server = SSL_CTX_new(TLS_client_method());
		if (!out->server) {
			snprintf(err, err_size, "cannot create a TLS context: %s",
				 proxy_tls_error());
			goto fail;
		}
		SSL_CTX_set_min_proto_version(out->server, TLS1_2_VERSION);
		SSL_CTX_set_mode(out->server, SSL_MODE_ENABLE_PARTIAL_WRITE |
						  SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
		if (cfg->server_tls_ca_file &&
		    SSL_CTX_load_verify_locations(out->server, cfg->server_tls_ca_file, NULL) !=
			1) {
			snprintf(err, err_size, "%s: cannot load the CA: %s",
				 cfg->server_tls_ca_file, proxy_tls_error());
			goto fail;
		}
		SSL_CTX_set_verify(out->server,
				   strncmp(cfg->server_tls_sslmode, "verify", 6) == 0
				       ? SSL_VERIFY_PEER
				       : SSL_VERIFY_NONE,
				   NULL);
	}
	return PGW_OK;
fail:
	proxy_tls_free(out);
	return PGW_EINVAL;
}

void proxy_tls_free(struct proxy_tls *t)
{
	SSL_CTX_free(t->client);
	SSL_CTX_free(t->server);
	memset(t, 0, sizeof(*t));
}
