/*
 * SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL speaks it, client and server
 * side, and MD5 password hashing, over OpenSSL's digests. Messages arrive with a
 * length and may hold anything: each is copied into a bounded, NUL-terminated
 * buffer before parsing, and every attribute is checked before it is used.
 */
#include "pgproto/scram.h"
#include "common/base64.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#define SCRAM_RAW_NONCE_LEN  (PGP_SCRAM_NONCE_LEN / 4 * 3) /* 18 random bytes */
#define SCRAM_MAX_ITERATIONS 10000000
#define B64_LEN(n)	     CMN_B64_LEN(n)

/* ---- primitives ---- */

int pgp_random(void *buf, size_t len)
{
	if (len > INT_MAX)
		return PGW_EINVAL;
	if (len && RAND_bytes(buf, (int)len) != 1)
		return PGW_ERR;
	return PGW_OK;
}

static int sha256(const void *data, size_t len, uint8_t out[PGP_SCRAM_KEY_LEN])
{
	unsigned int n = 0;

	if (EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) != 1 || n != PGP_SCRAM_KEY_LEN)
		return PGW_ERR;
	return PGW_OK;
}

static int hmac(const uint8_t key[PGP_SCRAM_KEY_LEN], const void *data, size_t len,
		uint8_t out[PGP_SCRAM_KEY_LEN])
{
	unsigned int n = 0;

	if (!HMAC(EVP_sha256(), key, PGP_SCRAM_KEY_LEN, data, len, out, &n) ||
	    n != PGP_SCRAM_KEY_LEN)
		return PGW_ERR;
	return PGW_OK;
}

static int salted_password(const char *password, const uint8_t *salt, size_t salt_len,
			   int iterations, uint8_t out[PGP_SCRAM_KEY_LEN])
{
	size_t plen = strlen(password);

	if (plen > INT_MAX)
		return PGW_EINVAL;
	if (PKCS5_PBKDF2_HMAC(password, (int)plen, salt, (int)salt_len, iterations, EVP_sha256(),
			      PGP_SCRAM_KEY_LEN, out) != 1)
		return PGW_ERR;
	return PGW_OK;
}

/* Base64 of in[0..n) into out (NUL-terminated); PGW_EINVAL when out is too small. */
static int b64_encode(const uint8_t *in, size_t n, char *out, size_t size)
{
	return cmn_b64_encode(in, n, out, size);
}

/* Strict base64 (padded, no whitespace, not empty) of in[0..n) into out[0..size). */
static int b64_decode(const char *in, size_t n, uint8_t *out, size_t size, size_t *out_len)
{
	if (n == 0)
		return PGW_EPROTO;
	return cmn_b64_decode(in, n, true, out, size, out_len) == PGW_OK ? PGW_OK : PGW_EPROTO;
}

/* "1".."10000000", digits only. */
static int parse_iterations(const char *s, int *out)
{
	long v = 0;
	size_t n = strlen(s);

	if (n == 0 || n > 8)
		return PGW_EPROTO;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return PGW_EPROTO;
		v = v * 10 + (s[i] - '0');
	}
	if (v < 1 || v > SCRAM_MAX_ITERATIONS)
		return PGW_EPROTO;
	*out = (int)v;
	return PGW_OK;
}

/* A nonce: printable ASCII except ',' (RFC 5802 "printable"), non-empty. */
static bool nonce_ok(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (*s < 0x21 || *s > 0x7e || *s == ',')
			return false;
	return true;
}

/* A fresh random nonce into out (at least 25 bytes). */
/* Our nonce: a fresh one unless the caller set it (tests); PGW_EINVAL if it is bad. */
static int own_nonce(char *nonce, size_t size)
{
	if (!nonce[0]) {
		uint8_t raw[SCRAM_RAW_NONCE_LEN];
		int rc = pgp_random(raw, sizeof(raw));

		if (rc == PGW_OK)
			rc = b64_encode(raw, sizeof(raw), nonce, size);
		if (rc != PGW_OK)
			return rc;
	}
	return nonce_ok(nonce) ? PGW_OK : PGW_EINVAL;
}

/* Copies a received message into buf as a C string: no NUL inside, shorter than the cap. */
static int copy_msg(const char *msg, size_t len, char buf[PGP_SCRAM_MAX_MSG])
{
	if (!msg || len >= PGP_SCRAM_MAX_MSG || memchr(msg, '\0', len))
		return PGW_EPROTO;
	memcpy(buf, msg, len);
	buf[len] = '\0';
	return PGW_OK;
}

/*
 * Takes the attribute "<attr>=value" at *pp: returns the value (NUL-terminated in
 * place) and moves *pp past the following ',' or to NULL at the end of the message.
 * NULL when *pp does not start with that attribute.
 */
static char *take_attr(char **pp, char attr)
{
	char *p = *pp, *v, *comma;

	if (!p || p[0] != attr || p[1] != '=')
		return NULL;
	v = p + 2;
	comma = strchr(v, ',');
	if (comma) {
		*comma = '\0';
		*pp = comma + 1;
	} else {
		*pp = NULL;
	}
	return v;
}

/* An optional extension attribute ("x=..."): skipped; PGW_EPROTO when *pp is not one. */
static int skip_extension(char **pp)
{
	char c = (*pp)[0];

	if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) || (*pp)[1] != '=')
		return PGW_EPROTO;
	(void)take_attr(pp, c);
	return PGW_OK;
}

static void xor_key(uint8_t out[PGP_SCRAM_KEY_LEN], const uint8_t a[PGP_SCRAM_KEY_LEN],
		    const uint8_t b[PGP_SCRAM_KEY_LEN])
{
	for (size_t i = 0; i < PGP_SCRAM_KEY_LEN; i++)
		out[i] = a[i] ^ b[i];
}

/* ---- verifiers ---- */

static bool secret_params_ok(int iterations, size_t salt_len)
{
	return iterations >= 1 && iterations <= SCRAM_MAX_ITERATIONS && salt_len >= 1 &&
	       salt_len <= PGP_SCRAM_MAX_SALT;
}

int pgp_scram_secret_parse(const char *text, struct pgp_scram_secret *out)
{
	static const char prefix[] = PGP_SCRAM_MECHANISM "$";
	char buf[PGP_SCRAM_MAX_MSG], *iter, *salt, *stored, *server, *sep;
	size_t n;
	int rc = PGW_EINVAL;

	memset(out, 0, sizeof(*out));
	if (!text || strncmp(text, prefix, sizeof(prefix) - 1) != 0)
		return PGW_EINVAL;
	text += sizeof(prefix) - 1;
	if (strlen(text) >= sizeof(buf))
		return PGW_EINVAL;
	strcpy(buf, text);
	iter = buf;
	if (!(sep = strchr(iter, ':')))
		return PGW_EINVAL;
	*sep = '\0';
	salt = sep + 1;
	if (!(sep = strchr(salt, '$')))
		return PGW_EINVAL;
	*sep = '\0';
	stored = sep + 1;
	if (!(sep = strchr(stored, ':')))
		return PGW_EINVAL;
	*sep = '\0';
	server = sep + 1;

	if (parse_iterations(iter, &out->iterations) != PGW_OK)
		goto out;
	if (b64_decode(salt, strlen(salt), out->salt, sizeof(out->salt), &out->salt_len) !=
		PGW_OK ||
	    out->salt_len == 0)
		goto out;
	if (b64_decode(stored, strlen(stored), out->stored_key, PGP_SCRAM_KEY_LEN, &n) != PGW_OK ||
	    n != PGP_SCRAM_KEY_LEN)
		goto out;
	if (b64_decode(server, strlen(server), out->server_key, PGP_SCRAM_KEY_LEN, &n) != PGW_OK ||
	    n != PGP_SCRAM_KEY_LEN)
		goto out;
	rc = PGW_OK;
out:
	if (rc != PGW_OK)
		memset(out, 0, sizeof(*out));
	OPENSSL_cleanse(buf, sizeof(buf));
	return rc;
}

int pgp_scram_secret_from_password(const char *password, const uint8_t *salt, size_t salt_len,
				   int iterations, struct pgp_scram_secret *out)
{
	uint8_t salted[PGP_SCRAM_KEY_LEN], client_key[PGP_SCRAM_KEY_LEN];
	int rc;

	memset(out, 0, sizeof(*out));
	if (!password || !salt || !secret_params_ok(iterations, salt_len))
		return PGW_EINVAL;
	out->iterations = iterations;
	memcpy(out->salt, salt, salt_len);
	out->salt_len = salt_len;
	rc = salted_password(password, salt, salt_len, iterations, salted);
	if (rc == PGW_OK)
		rc = hmac(salted, "Client Key", 10, client_key);
	if (rc == PGW_OK)
		rc = sha256(client_key, PGP_SCRAM_KEY_LEN, out->stored_key);
	if (rc == PGW_OK)
		rc = hmac(salted, "Server Key", 10, out->server_key);
	OPENSSL_cleanse(salted, sizeof(salted));
	OPENSSL_cleanse(client_key, sizeof(client_key));
	if (rc != PGW_OK)
		memset(out, 0, sizeof(*out));
	return rc;
}

int pgp_scram_secret_format(const struct pgp_scram_secret *s, char *out, size_t size)
{
	char salt[B64_LEN(PGP_SCRAM_MAX_SALT) + 1];
	char stored[B64_LEN(PGP_SCRAM_KEY_LEN) + 1], server[B64_LEN(PGP_SCRAM_KEY_LEN) + 1];
	int n;

	if (!secret_params_ok(s->iterations, s->salt_len))
		return PGW_EINVAL;
	if (b64_encode(s->salt, s->salt_len, salt, sizeof(salt)) != PGW_OK ||
	    b64_encode(s->stored_key, PGP_SCRAM_KEY_LEN, stored, sizeof(stored)) != PGW_OK ||
	    b64_encode(s->server_key, PGP_SCRAM_KEY_LEN, server, sizeof(server)) != PGW_OK)
		return PGW_EINVAL;
	n = snprintf(out, size, PGP_SCRAM_MECHANISM "$%d:%s$%s:%s", s->iterations, salt, stored,
		     server);
	if (n < 0 || (size_t)n >= size)
		return PGW_EINVAL;
	return PGW_OK;
}

/* ---- client side ---- */

int pgp_scram_client_first(struct pgp_scram_client *s, char *out, size_t size)
{
	int n, rc;

	rc = own_nonce(s->nonce, sizeof(s->nonce));
	if (rc != PGW_OK)
		return rc;
	n = snprintf(s->client_first_bare, sizeof(s->client_first_bare), "n=,r=%s", s->nonce);
	if (n < 0 || (size_t)n >= sizeof(s->client_first_bare))
		return PGW_EINVAL;
	s->server_first[0] = '\0';
	s->expected_server_signature[0] = '\0';
	n = snprintf(out, size, "n,,%s", s->client_first_bare);
	if (n < 0 || (size_t)n >= size)
		return PGW_EINVAL;
	return PGW_OK;
}

/*
 * Parses server-first-message for the client: r= (our nonce plus a non-empty server
 * part), s= (salt), i= (iterations) and nothing else. Stores the message for the
 * AuthMessage and copies the full nonce into nonce.
 */
static int client_read_server_first(struct pgp_scram_client *s, const char *msg, size_t len,
				    char nonce[PGP_SCRAM_MAX_MSG], uint8_t salt[PGP_SCRAM_MAX_SALT],
				    size_t *salt_len, int *iterations)
{
	char buf[PGP_SCRAM_MAX_MSG], *p = buf, *r, *sv, *iv;
	size_t ours = strlen(s->nonce);
	int rc;

	if (!s->client_first_bare[0] || !ours)
		return PGW_EINVAL;
	rc = copy_msg(msg, len, buf);
	if (rc != PGW_OK)
		return rc;
	r = take_attr(&p, 'r');
	sv = take_attr(&p, 's');
	iv = take_attr(&p, 'i');
	if (!r || !sv || !iv || p)
		return PGW_EPROTO;
	if (!nonce_ok(r) || strlen(r) <= ours || memcmp(r, s->nonce, ours) != 0)
		return PGW_EPROTO;
	if (b64_decode(sv, strlen(sv), salt, PGP_SCRAM_MAX_SALT, salt_len) != PGW_OK ||
	    *salt_len == 0)
		return PGW_EPROTO;
	if (parse_iterations(iv, iterations) != PGW_OK ||
	    *iterations > PGP_SCRAM_CLIENT_MAX_ITERATIONS)
		return PGW_EPROTO;
	strcpy(nonce, r);
	memcpy(s->server_first, msg, len);
	s->server_first[len] = '\0';
	return PGW_OK;
}

/*
 * AuthMessage = client-first-bare "," server-first "," client-final-without-proof,
 * with the final message's prefix written into without (PGP_SCRAM_MAX_MSG bytes).
 */
static int auth_message(const char *client_first_bare, const char *server_first,
			const char *without, size_t without_len, char *auth, size_t size,
			size_t *auth_len)
{
	int n = snprintf(auth, size, "%s,%s,%.*s", client_first_bare, server_first,
			 (int)without_len, without);

	if (n < 0 || (size_t)n >= size)
		return PGW_EPROTO;
	*auth_len = (size_t)n;
	return PGW_OK;
}

/* Writes client-final-message from ClientKey/ServerKey and the full nonce. */
static int client_finish(struct pgp_scram_client *s, const uint8_t client_key[PGP_SCRAM_KEY_LEN],
			 const uint8_t server_key[PGP_SCRAM_KEY_LEN], const char *nonce, char *out,
			 size_t size)
{
	char without[PGP_SCRAM_MAX_MSG], auth[3 * PGP_SCRAM_MAX_MSG];
	char proof64[B64_LEN(PGP_SCRAM_KEY_LEN) + 1];
	uint8_t stored[PGP_SCRAM_KEY_LEN], sig[PGP_SCRAM_KEY_LEN], proof[PGP_SCRAM_KEY_LEN];
	uint8_t server_sig[PGP_SCRAM_KEY_LEN];
	size_t auth_len;
	int n, rc;

	n = snprintf(without, sizeof(without), "c=biws,r=%s", nonce);
	if (n < 0 || (size_t)n >= sizeof(without))
		return PGW_EPROTO;
	rc = auth_message(s->client_first_bare, s->server_first, without, (size_t)n, auth,
			  sizeof(auth), &auth_len);
	if (rc == PGW_OK)
		rc = sha256(client_key, PGP_SCRAM_KEY_LEN, stored);
	if (rc == PGW_OK)
		rc = hmac(stored, auth, auth_len, sig);
	if (rc == PGW_OK)
		rc = hmac(server_key, auth, auth_len, server_sig);
	if (rc == PGW_OK) {
		xor_key(proof, client_key, sig);
		rc = b64_encode(proof, sizeof(proof), proof64, sizeof(proof64));
	}
	if (rc == PGW_OK)
		rc = b64_encode(server_sig, sizeof(server_sig), s->expected_server_signature,
				sizeof(s->expected_server_signature));
	if (rc == PGW_OK) {
		n = snprintf(out, size, "%s,p=%s", without, proof64);
		if (n < 0 || (size_t)n >= size)
			rc = PGW_EINVAL;
	}
	if (rc != PGW_OK)
		s->expected_server_signature[0] = '\0';
	OPENSSL_cleanse(proof, sizeof(proof));
	OPENSSL_cleanse(sig, sizeof(sig));
	OPENSSL_cleanse(stored, sizeof(stored));
	return rc;
}

int pgp_scram_client_final(struct pgp_scram_client *s, const char *password,
			   const char *server_first, size_t len, char *out, size_t size)
{
	char nonce[PGP_SCRAM_MAX_MSG];
	uint8_t salt[PGP_SCRAM_MAX_SALT], client_key[PGP_SCRAM_KEY_LEN];
	uint8_t server_key[PGP_SCRAM_KEY_LEN];
	size_t salt_len;
	int iterations, rc;

	if (!password)
		return PGW_EINVAL;
	rc = client_read_server_first(s, server_first, len, nonce, salt, &salt_len, &iterations);
	if (rc != PGW_OK)
		return rc;
	rc = salted_password(password, salt, salt_len, iterations, s->salted_password);
	if (rc == PGW_OK)
		rc = hmac(s->salted_password, "Client Key", 10, client_key);
	if (rc == PGW_OK)
		rc = hmac(s->salted_password, "Server Key", 10, server_key);
	if (rc == PGW_OK)
		rc = client_finish(s, client_key, server_key, nonce, out, size);
	OPENSSL_cleanse(client_key, sizeof(client_key));
	OPENSSL_cleanse(server_key, sizeof(server_key));
	return rc;
}

int pgp_scram_client_final_keys(struct pgp_scram_client *s,
				const uint8_t client_key[PGP_SCRAM_KEY_LEN],
				const uint8_t server_key[PGP_SCRAM_KEY_LEN],
				const char *server_first, size_t len, char *out, size_t size)
{
	char nonce[PGP_SCRAM_MAX_MSG];
	uint8_t salt[PGP_SCRAM_MAX_SALT];
	size_t salt_len;
	int iterations, rc;

	rc = client_read_server_first(s, server_first, len, nonce, salt, &salt_len, &iterations);
	if (rc != PGW_OK)
		return rc;
	memset(s->salted_password, 0, sizeof(s->salted_password));
	return client_finish(s, client_key, server_key, nonce, out, size);
}

int pgp_scram_client_verify(const struct pgp_scram_client *s, const char *server_final, size_t len)
{
	char buf[PGP_SCRAM_MAX_MSG];
	size_t want = strlen(s->expected_server_signature);
	int rc;

	if (!want)
		return PGW_EINVAL;
	rc = copy_msg(server_final, len, buf);
	if (rc != PGW_OK)
		return rc;
	if (strncmp(buf, "e=", 2) == 0)
		return PGW_EAUTH;
	if (strncmp(buf, "v=", 2) != 0 || strchr(buf, ','))
		return PGW_EPROTO;
	if (strlen(buf + 2) != want || CRYPTO_memcmp(buf + 2, s->expected_server_signature, want))
		return PGW_EAUTH;
	return PGW_OK;
}

/* ---- server side ---- */

int pgp_scram_server_first(struct pgp_scram_server *s, const struct pgp_scram_secret *secret,
			   const char *client_first, size_t len, char *out, size_t size)
{
	char buf[PGP_SCRAM_MAX_MSG], *p, *r;
	char salt64[B64_LEN(PGP_SCRAM_MAX_SALT) + 1];
	int n, rc;

	if (!secret_params_ok(secret->iterations, secret->salt_len))
		return PGW_EINVAL;
	if (secret != &s->secret)
		s->secret = *secret;
	s->client_first_bare[0] = s->server_first[0] = s->full_nonce[0] = '\0';
	rc = copy_msg(client_first, len, buf);
	if (rc != PGW_OK)
		return rc;
	/* GS2 header: "n,," or "y,,"; channel binding ("p=") and authzid ("a=") refused. */
	if ((buf[0] != 'n' && buf[0] != 'y') || buf[1] != ',' || buf[2] != ',')
		return PGW_EPROTO;
	s->gs2_flag = buf[0];
	strcpy(s->client_first_bare, buf + 3);

	/* client-first-message-bare: n=<ignored>,r=<nonce>[,extensions]; no "m=". */
	p = buf + 3;
	if (!take_attr(&p, 'n'))
		return PGW_EPROTO;
	r = take_attr(&p, 'r');
	if (!r || !nonce_ok(r))
		return PGW_EPROTO;
	while (p)
		if (skip_extension(&p) != PGW_OK)
			return PGW_EPROTO;

	rc = own_nonce(s->nonce, sizeof(s->nonce));
	if (rc != PGW_OK)
		return rc;
	n = snprintf(s->full_nonce, sizeof(s->full_nonce), "%s%s", r, s->nonce);
	if (n < 0 || (size_t)n >= sizeof(s->full_nonce)) {
		s->full_nonce[0] = '\0';
		return PGW_EPROTO;
	}
	rc = b64_encode(s->secret.salt, s->secret.salt_len, salt64, sizeof(salt64));
	if (rc != PGW_OK)
		return rc;
	n = snprintf(s->server_first, sizeof(s->server_first), "r=%s,s=%s,i=%d", s->full_nonce,
		     salt64, s->secret.iterations);
	if (n < 0 || (size_t)n >= sizeof(s->server_first)) {
		s->server_first[0] = '\0';
		return PGW_EPROTO;
	}
	n = snprintf(out, size, "%s", s->server_first);
	if (n < 0 || (size_t)n >= size)
		return PGW_EINVAL;
	return PGW_OK;
}

int pgp_scram_server_final(struct pgp_scram_server *s, const char *client_final, size_t len,
			   char *out, size_t size, uint8_t client_key[PGP_SCRAM_KEY_LEN])
{
	char buf[PGP_SCRAM_MAX_MSG], orig[PGP_SCRAM_MAX_MSG], auth[3 * PGP_SCRAM_MAX_MSG];
	char *p = buf, *c, *r, *pv, sig64[B64_LEN(PGP_SCRAM_KEY_LEN) + 1];
	uint8_t proof[PGP_SCRAM_KEY_LEN], sig[PGP_SCRAM_KEY_LEN], key[PGP_SCRAM_KEY_LEN];
	uint8_t check[PGP_SCRAM_KEY_LEN], server_sig[PGP_SCRAM_KEY_LEN];
	size_t without_len, proof_len, auth_len;
	int n, rc;

	if (!s->server_first[0] || !s->full_nonce[0])
		return PGW_EINVAL;
	rc = copy_msg(client_final, len, buf);
	if (rc != PGW_OK)
		return rc;
	memcpy(orig, buf, len + 1);

	/* c=<base64 GS2 header>: "n,," is "biws", "y,," is "eSws". */
	c = take_attr(&p, 'c');
	if (!c || strcmp(c, s->gs2_flag == 'y' ? "eSws" : "biws") != 0)
		return PGW_EPROTO;
	r = take_attr(&p, 'r');
	if (!r || strcmp(r, s->full_nonce) != 0)
		return PGW_EPROTO;
	while (p && !(p[0] == 'p' && p[1] == '='))
		if (skip_extension(&p) != PGW_OK)
			return PGW_EPROTO;
	if (!p)
		return PGW_EPROTO;
	without_len = (size_t)(p - buf) - 1; /* up to the ',' before "p=" */
	pv = take_attr(&p, 'p');
	if (p) /* the proof comes last */
		return PGW_EPROTO;
	if (b64_decode(pv, strlen(pv), proof, sizeof(proof), &proof_len) != PGW_OK ||
	    proof_len != PGP_SCRAM_KEY_LEN)
		return PGW_EPROTO;

	rc = auth_message(s->client_first_bare, s->server_first, orig, without_len, auth,
			  sizeof(auth), &auth_len);
	if (rc == PGW_OK)
		rc = hmac(s->secret.stored_key, auth, auth_len, sig);
	if (rc == PGW_OK) {
		xor_key(key, proof, sig);
		rc = sha256(key, sizeof(key), check);
	}
	if (rc == PGW_OK && CRYPTO_memcmp(check, s->secret.stored_key, PGP_SCRAM_KEY_LEN) != 0)
		rc = PGW_EAUTH;
	if (rc == PGW_OK)
		rc = hmac(s->secret.server_key, auth, auth_len, server_sig);
	if (rc == PGW_OK)
		rc = b64_encode(server_sig, sizeof(server_sig), sig64, sizeof(sig64));
	if (rc == PGW_OK) {
		n = snprintf(out, size, "v=%s", sig64);
		if (n < 0 || (size_t)n >= size)
			rc = PGW_EINVAL;
	}
	if (rc == PGW_OK && client_key)
		memcpy(client_key, key, PGP_SCRAM_KEY_LEN);
	OPENSSL_cleanse(key, sizeof(key));
	OPENSSL_cleanse(proof, sizeof(proof));
	OPENSSL_cleanse(sig, sizeof(sig));
	return rc;
}

/* ---- MD5 ---- */

static void hex(const uint8_t *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * n] = '\0';
}

void pgp_md5_secret(const char *user, const char *password, char out[36])
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	uint8_t md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;

	out[0] = '\0';
	if (ctx && EVP_DigestInit_ex(ctx, EVP_md5(), NULL) == 1 &&
	    EVP_DigestUpdate(ctx, password, strlen(password)) == 1 &&
	    EVP_DigestUpdate(ctx, user, strlen(user)) == 1 &&
	    EVP_DigestFinal_ex(ctx, md, &n) == 1 && n == 16) {
		memcpy(out, "md5", 3);
		hex(md, 16, out + 3);
	}
	EVP_MD_CTX_free(ctx);
}

void pgp_md5_response(const char secret[36], const uint8_t salt[4], char out[36])
{
	uint8_t in[32 + 4], md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;

	out[0] = '\0';
	memcpy(in, secret + 3, 32);
	memcpy(in + 32, salt, 4);
	if (EVP_Digest(in, sizeof(in), md, &n, EVP_md5(), NULL) == 1 && n == 16) {
		memcpy(out, "md5", 3);
		hex(md, 16, out + 3);
	}
}
