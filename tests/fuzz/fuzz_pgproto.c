/*
 * libFuzzer target: what a client or a server can send to the pooler's wire codec.
 * The input is taken as a stream of typed messages (each body read with the
 * reader and, for E/N, as error fields), as a startup-phase packet, and as SCRAM
 * messages: client-first and client-final (split at the first newline) to the
 * server side, server-first and server-final to the client side.
 */
#include "pgproto/pgproto.h"
#include "pgproto/scram.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A setting from an "options" string: a non-empty name with no '-' or '=' in it, no
 * longer than the string it came from. */
static int check_option(void *arg, const char *name, const char *value)
{
	size_t n = strlen(name);

	if (n == 0 || strchr(name, '-') || strchr(name, '=') ||
	    n + strlen(value) > strlen((const char *)arg))
		abort();
	return PGW_OK;
}

static void read_body(uint8_t type, const uint8_t *body, size_t len)
{
	struct pgp_reader r;
	struct pgp_error_fields f;

	if (type == PGP_BE_ERROR || type == PGP_BE_NOTICE) {
		(void)pgp_parse_error(body, len, &f);
		return;
	}
	/* Walk the body as a RowDescription-like sequence until the reader goes bad. */
	pgp_reader_init(&r, body, len);
	uint16_t n = pgp_get_u16(&r);

	for (uint16_t i = 0; i < n && !r.bad; i++) {
		(void)pgp_get_str(&r);
		uint32_t l = pgp_get_u32(&r);

		(void)pgp_get_bytes(&r, l == UINT32_MAX ? 0 : l);
		(void)pgp_get_u8(&r);
	}
}

static void frames(const uint8_t *data, size_t size)
{
	size_t off = 0, total;
	uint8_t type;

	while (off < size) {
		int rc = pgp_frame(data + off, size - off, 8192, &type, &total);

		if (rc != 1)
			break;
		read_body(type, data + off + 5, total - 5);
		off += total;
	}
}

static void startup(const uint8_t *data, size_t size)
{
	struct pgp_startup st;
	char err[256];
	size_t total;

	if (pgp_startup_frame(data, size, &total) != 1)
		return;
	if (pgp_parse_startup(data, total, &st, err, sizeof(err)) == PGW_OK && st.code >> 16 == 3) {
		/* Every string the parser returns lies inside the packet, NUL-terminated. */
		for (size_t i = 0; i < st.n_params; i++)
			if (strlen(st.params[i].name) + strlen(st.params[i].value) > total)
				abort();
		if (!st.user || !st.database || strlen(st.user) == 0)
			abort();
		if (st.options && pgp_parse_options(st.options, check_option, (void *)st.options,
						    err, sizeof(err)) == PGW_ENOMEM)
			abort();
	}
}

static const struct pgp_scram_secret *secret(void)
{
	static struct pgp_scram_secret s;
	static bool done;

	if (!done) {
		static const uint8_t salt[16] = "fuzz-salt-16byte";

		if (pgp_scram_secret_from_password("pencil", salt, sizeof(salt), 16, &s) != PGW_OK)
			abort();
		done = true;
	}
	return &s;
}

static void scram_server(const char *text, size_t size)
{
	struct pgp_scram_server s;
	const char *nl = memchr(text, '\n', size);
	size_t first_len = nl ? (size_t)(nl - text) : size;
	char out[PGP_SCRAM_MAX_MSG];
	uint8_t key[PGP_SCRAM_KEY_LEN];

	memset(&s, 0, sizeof(s));
	strcpy(s.nonce, "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0");
	if (pgp_scram_server_first(&s, secret(), text, first_len, out, sizeof(out)) != PGW_OK)
		return;
	if (nl)
		(void)pgp_scram_server_final(&s, nl + 1, size - first_len - 1, out, sizeof(out),
					     key);
}

/*
 * The iteration count server-first asks for (the value after the last ",i=", which
 * is where a message the parser accepts has it), to keep PBKDF2 cheap under fuzzing.
 */
static long iterations(const char *text, size_t size)
{
	long v = 0;
	size_t i, at = 0;

	for (i = 0; i + 3 <= size; i++)
		if (memcmp(text + i, ",i=", 3) == 0)
			at = i + 3;
	if (!at)
		return 0;
	for (i = at; i < size && text[i] >= '0' && text[i] <= '9' && v < 1000000; i++)
		v = v * 10 + (text[i] - '0');
	return v;
}

static void scram_client(const char *text, size_t size)
{
	struct pgp_scram_client c;
	const char *nl = memchr(text, '\n', size);
	size_t first_len = nl ? (size_t)(nl - text) : size;
	char out[PGP_SCRAM_MAX_MSG];
	int rc;

	memset(&c, 0, sizeof(c));
	strcpy(c.nonce, "rOprNGfwEbeRWgbNEkqO");
	if (pgp_scram_client_first(&c, out, sizeof(out)) != PGW_OK)
		abort();
	if (iterations(text, first_len) <= 64)
		rc = pgp_scram_client_final(&c, "pencil", text, first_len, out, sizeof(out));
	else
		rc = pgp_scram_client_final_keys(&c, secret()->stored_key, secret()->server_key,
						 text, first_len, out, sizeof(out));
	if (rc == PGW_OK && nl)
		(void)pgp_scram_client_verify(&c, nl + 1, size - first_len - 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pgp_scram_secret sec;
	char *text;

	frames(data, size);
	startup(data, size);
	(void)pgp_parse_error(data, size, &(struct pgp_error_fields){0});

	/* A copy without slack: reads past size trip ASan. */
	text = malloc(size ? size : 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	scram_server(text, size);
	scram_client(text, size);
	free(text);

	/* Verifier text (NUL-terminated copy). */
	text = malloc(size + 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	if (pgp_scram_secret_parse(text, &sec) == PGW_OK) {
		char again[256];

		if (pgp_scram_secret_format(&sec, again, sizeof(again)) != PGW_OK)
			abort();
	}
	free(text);
	return 0;
}
