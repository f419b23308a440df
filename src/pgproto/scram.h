/*
 * SCRAM-SHA-256 (RFC 5802 / RFC 7677) as PostgreSQL uses it, both sides, and MD5
 * password hashing. Pure computations over OpenSSL's SHA-256 / HMAC / PBKDF2; no
 * I/O. PostgreSQL ignores the SCRAM user name (n=) and uses the startup user; no
 * channel binding ("n,," / "y,," GS2 headers only).
 */
#ifndef PGW_SCRAM_H
#define PGW_SCRAM_H

#include "common/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PGP_SCRAM_KEY_LEN    32
#define PGP_SCRAM_MAX_SALT   64
#define PGP_SCRAM_NONCE_LEN  24 /* characters: base64 of 18 random bytes, as PostgreSQL */
#define PGP_SCRAM_MAX_MSG    1024
#define PGP_SCRAM_MECHANISM  "SCRAM-SHA-256"
#define PGP_SCRAM_ITERATIONS 4096
/*
 * The most iterations a client computes for a server (PostgreSQL's default is 4096):
 * the proxy does it on its event loop, where 10 million took 2 s of every client's time.
 */
#define PGP_SCRAM_CLIENT_MAX_ITERATIONS 100000

/* A verifier as PostgreSQL stores it: SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>. */
struct pgp_scram_secret {
	int iterations;
	uint8_t salt[PGP_SCRAM_MAX_SALT];
	size_t salt_len;
	uint8_t stored_key[PGP_SCRAM_KEY_LEN];
	uint8_t server_key[PGP_SCRAM_KEY_LEN];
};

/* PGW_EINVAL when text is not such a verifier. */
int pgp_scram_secret_parse(const char *text, struct pgp_scram_secret *out) PGW_WUR;
/* From a plaintext password (SASLprep not applied: ASCII passwords are unchanged). */
int pgp_scram_secret_from_password(const char *password, const uint8_t *salt, size_t salt_len,
				   int iterations, struct pgp_scram_secret *out) PGW_WUR;
/* Formats a verifier (for tests and auth files). */
int pgp_scram_secret_format(const struct pgp_scram_secret *s, char *out, size_t size) PGW_WUR;

/* The client side: the pooler logging in to PostgreSQL with a password. */
struct pgp_scram_client {
	char nonce[64]; /* set before client_first for a fixed nonce (tests); else random */
	char client_first_bare[PGP_SCRAM_MAX_MSG];
	char server_first[PGP_SCRAM_MAX_MSG];
	uint8_t salted_password[PGP_SCRAM_KEY_LEN];
	char expected_server_signature[64]; /* base64 */
};

/* Writes client-first-message ("n,,n=,r=<nonce>") into out. */
int pgp_scram_client_first(struct pgp_scram_client *s, char *out, size_t size) PGW_WUR;
/*
 * Reads server-first-message (r=,s=,i=), checks the nonce starts with ours, and
 * writes client-final-message (c=biws,r=...,p=<proof>) for password. PGW_EPROTO when
 * the server's message is malformed or the nonce does not match.
 */
int pgp_scram_client_final(struct pgp_scram_client *s, const char *password,
			   const char *server_first, size_t len, char *out, size_t size) PGW_WUR;
/*
 * The same without the password, from the keys: ClientKey (recovered from a
 * client's proof by pgp_scram_server_final) and the verifier's ServerKey. Used to
 * log in to PostgreSQL with what the client proved ("SCRAM pass-through"); the
 * server's salt and iterations must be those of the verifier.
 */
int pgp_scram_client_final_keys(struct pgp_scram_client *s,
				const uint8_t client_key[PGP_SCRAM_KEY_LEN],
				const uint8_t server_key[PGP_SCRAM_KEY_LEN],
				const char *server_first, size_t len, char *out,
				size_t size) PGW_WUR;
/* Checks server-final-message "v=<signature>": PGW_EAUTH when it does not match. */
int pgp_scram_client_verify(const struct pgp_scram_client *s, const char *server_final,
			    size_t len) PGW_WUR;

/* The server side: the pooler authenticating a client against a verifier. */
struct pgp_scram_server {
	struct pgp_scram_secret secret;
	char nonce[64]; /* server part; set before server_first for tests, else random */
	char client_first_bare[PGP_SCRAM_MAX_MSG];
	char server_first[PGP_SCRAM_MAX_MSG];
	char full_nonce[160];
	char gs2_flag; /* 'n' or 'y' from client-first: the c= the final message must carry */
};

/*
 * Reads client-first-message (GS2 header "n,," or "y,,"; "p=" channel binding is
 * refused with PGW_EPROTO) and writes server-first-message into out.
 */
int pgp_scram_server_first(struct pgp_scram_server *s, const struct pgp_scram_secret *secret,
			   const char *client_first, size_t len, char *out, size_t size) PGW_WUR;
/*
 * Reads client-final-message, verifies the proof (PGW_EAUTH when wrong,
 * PGW_EPROTO when malformed or the nonce differs) and writes server-final-message
 * ("v=...") into out. client_key (may be NULL) receives the ClientKey recovered
 * from the proof, which can log in to a server holding the same verifier.
 */
int pgp_scram_server_final(struct pgp_scram_server *s, const char *client_final, size_t len,
			   char *out, size_t size, uint8_t client_key[PGP_SCRAM_KEY_LEN]) PGW_WUR;

/* "md5" + hex(md5(password || user)): what pg_authid stores for MD5. out: 36 bytes. */
void pgp_md5_secret(const char *user, const char *password, char out[36]);
/* The MD5 response to salt: "md5" + hex(md5(hex part of secret || salt)). out: 36 bytes. */
void pgp_md5_response(const char secret[36], const uint8_t salt[4], char out[36]);

/* Random bytes for nonces, salts, cancel keys (OpenSSL RAND_bytes). */
int pgp_random(void *buf, size_t len) PGW_WUR;

#endif
