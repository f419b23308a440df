/*
 * Unit tests of the PostgreSQL wire codec (src/pgproto/pgproto.c): every builder
 * against bytes written by hand from the protocol documentation, framing, the
 * startup family with each way it can be malformed, the body reader's bounds and
 * ErrorResponse fields.
 */
#include "pgproto/pgproto.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

/* b holds exactly the bytes of the string literal lit (embedded NULs included). */
#define GOLDEN(b, lit) assert_golden(b, lit, sizeof(lit) - 1)

static void assert_golden(struct cmn_buf *b, const char *want, size_t n)
{
	assert_int_equal(b->len, n);
	assert_memory_equal(b->data, want, n);
	cmn_buf_reset(b);
}

/* ---- builders: golden bytes ---- */

static void test_put_error(void **state)
{
	struct cmn_buf b = {0};

	(void)state;
	assert_int_equal(pgp_put_error(&b, "FATAL", "28P01", "no", NULL), PGW_OK);
	GOLDEN(&b, "E\0\0\0\x1e"
		   "SFATAL\0VFATAL\0C28P01\0Mno\0\0");
	assert_int_equal(pgp_put_error(&b, "ERROR", "08P01", "bad", "x"), PGW_OK);
	GOLDEN(&b, "E\0\0\0\x22"
		   "SERROR\0VERROR\0C08P01\0Mbad\0Dx\0\0");
	cmn_buf_free(&b);
}

static void test_put_notice(void **state)
{
	struct cmn_buf b = {0};

	(void)state;
	assert_int_equal(pgp_put_notice(&b, "WARNING", "01000", "hi"), PGW_OK);
	GOLDEN(&b, "N\0\0\0\x22"
		   "SWARNING\0VWARNING\0C01000\0Mhi\0\0");
	cmn_buf_free(&b);
}

static void test_put_auth(void **state)
{
	struct cmn_buf b = {0};
	const uint8_t salt[4] = {1, 2, 3, 4};

	(void)state;
	assert_int_equal(pgp_put_auth(&b, PGP_AUTH_OK, NULL, 0), PGW_OK);
	GOLDEN(&b, "R\0\0\0\x08\0\0\0\0");
	assert_int_equal(pgp_put_auth(&b, PGP_AUTH_MD5, salt, sizeof(salt)), PGW_OK);
	GOLDEN(&b, "R\0\0\0\x0c\0\0\0\x05\x01\x02\x03\x04");
	assert_int_equal(pgp_put_auth(&b, PGP_AUTH_SASL_FINAL, "v=abc", 5), PGW_OK);
	GOLDEN(&b, "R\0\0\0\x0d\0\0\0\x0c"
		   "v=abc");
	assert_int_equal(pgp_put_auth_sasl(&b, "SCRAM-SHA-256"), PGW_OK);
	GOLDEN(&b, "R\0\0\0\x17\0\0\0\x0a"
		   "SCRAM-SHA-256\0\0");
	cmn_buf_free(&b);
}

static void test_put_session_messages(void **state)
{
	struct cmn_buf b = {0};

	(void)state;
	assert_int_equal(pgp_put_parameter_status(&b, "client_encoding", "UTF8"), PGW_OK);
	GOLDEN(&b, "S\0\0\0\x19"
		   "client_encoding\0UTF8\0");
	assert_int_equal(pgp_put_backend_key(&b, 0x01020304u, 0xdeadbeefu), PGW_OK);
	GOLDEN(&b, "K\0\0\0\x0c\x01\x02\x03\x04\xde\xad\xbe\xef");
	assert_int_equal(pgp_put_ready(&b, 'I'), PGW_OK);
	GOLDEN(&b, "Z\0\0\0\x05"
		   "I");
	assert_int_equal(pgp_put_command_complete(&b, "SELECT 1"), PGW_OK);
	GOLDEN(&b, "C\0\0\0\x0d"
		   "SELECT 1\0");
	assert_int_equal(pgp_put_empty_query(&b), PGW_OK);
	GOLDEN(&b, "I\0\0\0\x04");

	/* Builders append: two messages back to back. */
	assert_int_equal(pgp_put_empty_query(&b), PGW_OK);
	assert_int_equal(pgp_put_ready(&b, 'T'), PGW_OK);
	GOLDEN(&b, "I\0\0\0\x04"
		   "Z\0\0\0\x05"
		   "T");
	cmn_buf_free(&b);
}

static void test_put_negotiate(void **state)
{
	struct cmn_buf b = {0};
	const char *const names[] = {"_pq_.a", "_pq_.bc"};

	(void)state;
	assert_int_equal(pgp_put_negotiate(&b, 0, names, 2), PGW_OK);
	GOLDEN(&b, "v\0\0\0\x1b\0\0\0\0\0\0\0\x02"
		   "_pq_.a\0_pq_.bc\0");
	assert_int_equal(pgp_put_negotiate(&b, 2, NULL, 0), PGW_OK);
	GOLDEN(&b, "v\0\0\0\x0c\0\0\0\x02\0\0\0\0");
	cmn_buf_free(&b);
}

static void test_put_row_description(void **state)
{
	struct cmn_buf b = {0};
	const char *const names[] = {"id", "name"};
	const uint32_t oids[] = {20, 25};
	const char *const names3[] = {"b", "s", "i"};
	const uint32_t oids3[] = {16, 21, 23};

	(void)state;
	assert_int_equal(pgp_put_row_description(&b, 2, names, oids), PGW_OK);
	GOLDEN(&b, "T\0\0\0\x32\0\x02"
		   /* name, table oid, attnum, type oid, typlen, typmod, format */
		   "id\0"
		   "\0\0\0\0"
		   "\0\0"
		   "\0\0\0\x14"
		   "\0\x08"
		   "\xff\xff\xff\xff"
		   "\0\0"
		   "name\0"
		   "\0\0\0\0"
		   "\0\0"
		   "\0\0\0\x19"
		   "\xff\xff"
		   "\xff\xff\xff\xff"
		   "\0\0");
	assert_int_equal(pgp_put_row_description(&b, 3, names3, oids3), PGW_OK);
	GOLDEN(&b, "T\0\0\0\x42\0\x03"
		   "b\0"
		   "\0\0\0\0"
		   "\0\0"
		   "\0\0\0\x10"
		   "\0\x01"
		   "\xff\xff\xff\xff"
		   "\0\0"
		   "s\0"
		   "\0\0\0\0"
		   "\0\0"
		   "\0\0\0\x15"
		   "\0\x02"
		   "\xff\xff\xff\xff"
		   "\0\0"
		   "i\0"
		   "\0\0\0\0"
		   "\0\0"
		   "\0\0\0\x17"
		   "\0\x04"
		   "\xff\xff\xff\xff"
		   "\0\0");
	cmn_buf_free(&b);
}

static void test_put_data_row(void **state)
{
	struct cmn_buf b = {0};
	const char *const values[] = {"1", NULL, ""};

	(void)state;
	assert_int_equal(pgp_put_data_row(&b, 3, values), PGW_OK);
	GOLDEN(&b, "D\0\0\0\x13\0\x03"
		   "\0\0\0\x01"
		   "1"
		   "\xff\xff\xff\xff"
		   "\0\0\0\0");
	assert_int_equal(pgp_put_data_row(&b, 0, NULL), PGW_OK);
	GOLDEN(&b, "D\0\0\0\x06\0\0");
	cmn_buf_free(&b);
}

static void test_put_frontend(void **state)
{
	struct cmn_buf b = {0};
	const struct pgp_param params[] = {{"user", "alice"}, {"database", "db"}};

	(void)state;
	assert_int_equal(pgp_put_startup(&b, params, 2), PGW_OK);
	GOLDEN(&b, "\0\0\0\x20\0\x03\0\0"
		   "user\0alice\0database\0db\0\0");
	assert_int_equal(pgp_put_ssl_request(&b), PGW_OK);
	GOLDEN(&b, "\0\0\0\x08\x04\xd2\x16\x2f");
	assert_int_equal(pgp_put_cancel(&b, 0x01020304u, 0x0a0b0c0du), PGW_OK);
	GOLDEN(&b, "\0\0\0\x10\x04\xd2\x16\x2e\x01\x02\x03\x04\x0a\x0b\x0c\x0d");
	assert_int_equal(pgp_put_password(&b, "pw"), PGW_OK);
	GOLDEN(&b, "p\0\0\0\x07"
		   "pw\0");
	assert_int_equal(pgp_put_sasl_initial(&b, "SCRAM-SHA-256", "n,,n=,r=abc", 11), PGW_OK);
	GOLDEN(&b, "p\0\0\0\x21"
		   "SCRAM-SHA-256\0"
		   "\0\0\0\x0b"
		   "n,,n=,r=abc");
	assert_int_equal(pgp_put_sasl_initial(&b, "SCRAM-SHA-256", NULL, 0), PGW_OK);
	GOLDEN(&b, "p\0\0\0\x16"
		   "SCRAM-SHA-256\0"
		   "\xff\xff\xff\xff");
	assert_int_equal(pgp_put_sasl_response(&b, "c=biws", 6), PGW_OK);
	GOLDEN(&b, "p\0\0\0\x0a"
		   "c=biws");
	assert_int_equal(pgp_put_query(&b, "SELECT 1"), PGW_OK);
	GOLDEN(&b, "Q\0\0\0\x0d"
		   "SELECT 1\0");
	assert_int_equal(pgp_put_terminate(&b), PGW_OK);
	GOLDEN(&b, "X\0\0\0\x04");
	cmn_buf_free(&b);
}

/* ---- framing ---- */

static void test_frame(void **state)
{
	const uint8_t q[] = "Q\0\0\0\x0d"
			    "SELECT 1\0"
			    "X\0\0\0\x04";
	uint8_t type = 0;
	size_t total = 99;

	(void)state;
	/* No complete header: need more, size unknown. */
	for (size_t n = 0; n < 5; n++) {
		assert_int_equal(pgp_frame(q, n, 1024, &type, &total), 0);
		assert_int_equal(total, 0);
	}
	/* Header but partial body: need more, size known. */
	assert_int_equal(pgp_frame(q, 9, 1024, &type, &total), 0);
	assert_int_equal(total, 14);
	assert_int_equal(pgp_frame(q, 13, 1024, &type, &total), 0);
	assert_int_equal(total, 14);
	/* Complete, and the next message after it. */
	assert_int_equal(pgp_frame(q, sizeof(q) - 1, 1024, &type, &total), 1);
	assert_int_equal(type, 'Q');
	assert_int_equal(total, 14);
	assert_int_equal(pgp_frame(q + 14, sizeof(q) - 1 - 14, 1024, &type, &total), 1);
	assert_int_equal(type, 'X');
	assert_int_equal(total, 5);
	/* Exactly at the limit, and one byte over. */
	assert_int_equal(pgp_frame(q, 14, 14, &type, &total), 1);
	assert_int_equal(pgp_frame(q, 14, 13, &type, &total), PGW_EPROTO);
	assert_int_equal(pgp_frame(q, 5, 13, &type, &total), PGW_EPROTO);
}

static void test_frame_bad_length(void **state)
{
	const uint8_t short3[] = "Q\0\0\0\x03";
	const uint8_t zero[] = "Q\0\0\0\0";
	const uint8_t huge[] = "D\xff\xff\xff\xff";
	const uint8_t big[] = "D\x7f\xff\xff\xff";
	uint8_t type;
	size_t total;

	(void)state;
	assert_int_equal(pgp_frame(short3, 5, 1024, &type, &total), PGW_EPROTO);
	assert_int_equal(pgp_frame(zero, 5, 1024, &type, &total), PGW_EPROTO);
	assert_int_equal(pgp_frame(huge, 5, 1 << 20, &type, &total), PGW_EPROTO);
	assert_int_equal(pgp_frame(big, 5, 1 << 20, &type, &total), PGW_EPROTO);
	/* With no practical limit, a huge length is just "need more". */
	assert_int_equal(pgp_frame(big, 5, SIZE_MAX, &type, &total), 0);
	assert_int_equal(total, 0x80000000u);
}

static void test_startup_frame(void **state)
{
	uint8_t pkt[PGP_MAX_STARTUP + 1] = {0};
	size_t total = 99;

	(void)state;
	for (size_t n = 0; n < 4; n++) {
		assert_int_equal(pgp_startup_frame(pkt, n, &total), 0);
		assert_int_equal(total, 0);
	}
	memcpy(pkt, "\0\0\0\x08\x04\xd2\x16\x2f", 8);
	assert_int_equal(pgp_startup_frame(pkt, 4, &total), 0);
	assert_int_equal(total, 8);
	assert_int_equal(pgp_startup_frame(pkt, 7, &total), 0);
	assert_int_equal(pgp_startup_frame(pkt, 8, &total), 1);
	assert_int_equal(total, 8);
	assert_int_equal(pgp_startup_frame(pkt, 12, &total), 1); /* trailing bytes: next data */
	assert_int_equal(total, 8);
	memcpy(pkt, "\0\0\0\x07", 4);
	assert_int_equal(pgp_startup_frame(pkt, 8, &total), PGW_EPROTO);
	memcpy(pkt, "\0\0\0\0", 4);
	assert_int_equal(pgp_startup_frame(pkt, 8, &total), PGW_EPROTO);
	memcpy(pkt, "\0\0\x27\x10", 4); /* 10000: the limit */
	assert_int_equal(pgp_startup_frame(pkt, 100, &total), 0);
	assert_int_equal(total, 10000);
	assert_int_equal(pgp_startup_frame(pkt, 10000, &total), 1);
	memcpy(pkt, "\0\0\x27\x11", 4); /* 10001 */
	assert_int_equal(pgp_startup_frame(pkt, 10001, &total), PGW_EPROTO);
	memcpy(pkt, "\xff\xff\xff\xff", 4);
	assert_int_equal(pgp_startup_frame(pkt, 8, &total), PGW_EPROTO);
}

/* ---- startup parsing ---- */

/* A startup-phase packet with code and body; returns its length. */
static size_t mkpkt(uint8_t *out, uint32_t code, const void *body, size_t n)
{
	size_t len = 8 + n;

	out[0] = (uint8_t)(len >> 24);
	out[1] = (uint8_t)(len >> 16);
	out[2] = (uint8_t)(len >> 8);
	out[3] = (uint8_t)len;
	out[4] = (uint8_t)(code >> 24);
	out[5] = (uint8_t)(code >> 16);
	out[6] = (uint8_t)(code >> 8);
	out[7] = (uint8_t)code;
	if (n)
		memcpy(out + 8, body, n);
	return len;
}

#define MKPKT(out, code, lit) mkpkt(out, code, lit, sizeof(lit) - 1)

static void test_parse_startup(void **state)
{
	struct cmn_buf b = {0};
	const struct pgp_param params[] = {{"user", "alice"},
					   {"database", "shop"},
					   {"application_name", "psql"},
					   {"options", "-c work_mem=4MB"}};
	struct pgp_startup st;
	char err[256];
	const uint8_t *pkt;

	(void)state;
	assert_int_equal(pgp_put_startup(&b, params, 4), PGW_OK);
	pkt = (const uint8_t *)b.data;
	assert_int_equal(pgp_parse_startup(pkt, b.len, &st, err, sizeof(err)), PGW_OK);
	assert_int_equal(st.code, PGP_PROTOCOL_3_0);
	assert_string_equal(st.user, "alice");
	assert_string_equal(st.database, "shop");
	assert_string_equal(st.options, "-c work_mem=4MB");
	assert_false(st.replication);
	assert_int_equal(st.n_params, 4);
	assert_int_equal(st.n_unknown_pq, 0);
	assert_string_equal(st.params[2].name, "application_name");
	assert_string_equal(st.params[2].value, "psql");
	/* Strings point into the packet. */
	assert_true((const uint8_t *)st.user > pkt && (const uint8_t *)st.user < pkt + b.len);
	assert_true((const uint8_t *)st.params[3].value < pkt + b.len);
	cmn_buf_free(&b);
}

static void test_parse_startup_defaults(void **state)
{
	uint8_t pkt[256];
	struct pgp_startup st;
	char err[256];
	size_t n;

	(void)state;
	/* database defaults to user; no options. */
	n = MKPKT(pkt, PGP_PROTOCOL_3_0, "user\0bob\0\0");
	assert_int_equal(pgp_parse_startup(pkt, n, &st, err, sizeof(err)), PGW_OK);
	assert_string_equal(st.database, "bob");
	assert_null(st.options);
	assert_int_equal(st.n_params, 1);
	/* An empty database also means the user's. */
	n = MKPKT(pkt, PGP_PROTOCOL_3_0, "database\0\0user\0bob\0\0");
	assert_int_equal(pgp_parse_startup(pkt, n, &st, NULL, 0), PGW_OK);
	assert_string_equal(st.database, "bob");
	/* Protocol 3.2 and 3.9999 are accepted: the caller negotiates down. */
	n = MKPKT(pkt, 0x00030002u, "user\0bob\0\0");
	assert_int_equal(pgp_parse_startup(pkt, n, &st, err, sizeof(err)), PGW_OK);
	assert_int_equal(st.code, 0x00030002u);
	n = MKPKT(pkt, 0x0003270fu, "user\0bob\0\0");
	assert_int_equal(pgp_parse_startup(pkt, n, &st, err, sizeof(err)), PGW_OK);
}

static void test_parse_startup_pq_options(void **state)
{
	uint8_t pkt[256];
	struct pgp_startup st;
	char err[256];
	size_t n;

	(void)state;
	n = MKPKT(pkt, 0x00030002u,
		  "user\0bob\0_pq_.grease\0x\0_pq_.other\0\0client_encoding\0UTF8\0\0");
	assert_int_equal(pgp_parse_startup(pkt, n, &st, err, sizeof(err)), PGW_OK);
	assert_int_equal(st.n_unknown_pq, 2);
	assert_string_equal(st.unknown_pq[0], "_pq_.grease");
	assert_string_equal(st.unknown_pq[1], "_pq_.other");
	assert_int_equal(st.n_params, 2);
	assert_string_equal(st.params[0].name, "user");
	assert_string_equal(st.params[1].name, "client_encoding");
}

static void test_parse_startup_replication(void **state)
{
	static const struct {
		const char *value;
		bool want;
	} cases[] = {{"true", true}, {"database", true}, {"1", true},	  {"on", true},
		     {"yes", true},  {"false", false},	 {"0", false},	  {"off", false},
		     {"no", false},  {"OFF", false},	 {"False", false}};
	uint8_t body[128], pkt[256];
	struct pgp_startup st;
	char err[256];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int n = snprintf((char *)body, sizeof(body), "user%crepl%creplication%c%s%c", 0, 0,
				 0, cases[i].value, 0);
		size_t len = mkpkt(pkt, PGP_PROTOCOL_3_0, body, (size_t)n + 1);

		assert_int_equal(pgp_parse_startup(pkt, len, &st, err, sizeof(err)), PGW_OK);
		assert_int_equal(st.replication, cases[i].want);
	}
}

/* pgp_parse_options: the settings seen, as "name=value;" */
static int collect_option(void *arg, const char *name, const char *value)
{
	char *out = arg;
	size_t n = strlen(out);

	snprintf(out + n, 256 - n, "%s=%s;", name, value);
	return strcmp(name, "stop") == 0 ? PGW_EINVAL : PGW_OK;
}

static void test_parse_options(void **state)
{
	char got[256], err[256];

	(void)state;
	got[0] = '\0';
	assert_int_equal(
	    pgp_parse_options("  -c search_path=a,b\t-cwork_mem=4MB --statement-timeout=5s "
			      "-c application_name=x\\ y\\\\z -c a.b=",
			      collect_option, got, err, sizeof(err)),
	    PGW_OK);
	assert_string_equal(got, "search_path=a,b;work_mem=4MB;statement_timeout=5s;"
				 "application_name=x y\\z;a.b=;");
	got[0] = '\0';
	assert_int_equal(pgp_parse_options("", collect_option, got, err, sizeof(err)), PGW_OK);
	assert_string_equal(got, "");
	/* Switches other than -c and --, a setting without '=' or name, a bare -c. */
	assert_int_equal(pgp_parse_options("-B 10", collect_option, got, err, sizeof(err)),
			 PGW_EPROTO);
	assert_non_null(strstr(err, "unsupported startup option \"-B\""));
	assert_int_equal(pgp_parse_options("-c search_path", collect_option, got, err, sizeof(err)),
			 PGW_EPROTO);
	assert_non_null(strstr(err, "NAME=VALUE"));
	assert_int_equal(pgp_parse_options("--=1", collect_option, got, err, sizeof(err)),
			 PGW_EPROTO);
	assert_int_equal(pgp_parse_options("-c  ", collect_option, got, err, sizeof(err)),
			 PGW_EPROTO);
	assert_non_null(strstr(err, "-c needs"));
	/* What the callback returns stops the parse. */
	got[0] = '\0';
	assert_int_equal(
	    pgp_parse_options("-c stop=1 -c after=2", collect_option, got, err, sizeof(err)),
	    PGW_EINVAL);
	assert_string_equal(got, "stop=1;");
}

static void test_parse_startup_errors(void **state)
{
	uint8_t pkt[256];
	struct pgp_startup st;
	char err[256];
	size_t n;

	(void)state;
	/* Too short to hold length and code. */
	n = MKPKT(pkt, PGP_PROTOCOL_3_0, "");
	assert_int_equal(pgp_parse_startup(pkt, 7, &st, err, sizeof(err)), PGW_EPROTO);
	assert_string_equal(err, "invalid length of startup packet");
	/* Length field disagrees with the bytes given. */
	n = MKPKT(pkt, PGP_PROTOCOL_3_0, "user\0bob\0\0");
	assert_int_equal(pgp_parse_startup(pkt, n - 1, &st, err, sizeof(err)), PGW_EPROTO);
	pkt[3]++;
	assert_int_equal(pgp_parse_startup(pkt, n, &st, err, sizeof(err)), PGW_EPROTO);
	/* No pairs at all, not even the terminator. */
	n = MKPKT(pkt, PGP_PROTOCOL_3_0, "");
	assert_int_equal(pgp_parse_startup(pkt, n, &st, err, sizeof(err)), PGW_EPROTO);
	/* Missing final NUL. */
	n = MKPKT(pkt, PGP_PROTOCOL_3_0, "user\0bob\0");
	assert_int_equal(pgp_parse_startup(pkt, n, &st, err, sizeof(err)), PGW_EPROTO);
	assert_non_null(strstr(err, "terminator"));
	/* Name without a value; value without its NUL. */
	n = MKPKT(pkt, PGP_PROTOCOL_3_0, "user\0");
	assert_int_equal(pgp_parse_startup(pkt, n, &st, err, sizeof(err)), PGW_EPROTO);
	n = MKPKT(pkt, PGP_PROTOCOL_3_0, "user\0bob");
	assert_int_equal(pgp_parse_startup(pkt, n, &st, err, sizeof(err)), PGW_EPROTO);
	n = MKPKT(pkt, PGP_PROTOCOL_3_0, "user");
	assert_int_equal(pgp_parse_startup(pkt, n, &st, err, sizeof(err)), PGW_EPROTO);
	/* Bytes after the terminator. */
	n = MKPKT(pkt, PGP_PROTOCOL_3_0, "user\0bob\0\0x");
	assert_int_equal(pgp_parse_startup(pkt, n, &st, err, sizeof(err)), PGW_EPROTO);
	n = MKPKT(pkt, PGP_PROTOCOL_3_0, "user\0bob\0\0\0");
	assert_int_equal(pgp_parse_startup(pkt, n, &st, err, sizeof(err)), PGW_EPROTO);
	/* No user, or an empty one. */
	n = MKPKT(pkt, PGP_PROTOCOL_3_0, "database\0db\0\0");
	assert_int_equal(pgp_parse_startup(pkt, n, &st, err, sizeof(err)), PGW_EPROTO);
	assert_string_equal(err, "no PostgreSQL user name specified in startup packet");
	n = MKPKT(pkt, PGP_PROTOCOL_3_0, "user\0\0\0");
	assert_int_equal(pgp_parse_startup(pkt, n, &st, err, sizeof(err)), PGW_EPROTO);
	assert_string_equal(err, "no PostgreSQL user name specified in startup packet");
	n = MKPKT(pkt, PGP_PROTOCOL_3_0, "\0");
	assert_int_equal(pgp_parse_startup(pkt, n, &st, err, sizeof(err)), PGW_EPROTO);
	/* Protocol 2.0, 4.0 and an unknown 1234.x request code. */
	n = MKPKT(pkt, 0x00020000u, "user\0bob\0\0");
	assert_int_equal(pgp_parse_startup(pkt, n, &st, err, sizeof(err)), PGW_EPROTO);
	assert_string_equal(err, "unsupported frontend protocol 2.0");
	n = MKPKT(pkt, 0x00040000u, "user\0bob\0\0");
	assert_int_equal(pgp_parse_startup(pkt, n, &st, err, sizeof(err)), PGW_EPROTO);
	n = MKPKT(pkt, 0x04d21631u, "");
	assert_int_equal(pgp_parse_startup(pkt, n, &st, err, sizeof(err)), PGW_EPROTO);
	assert_string_equal(err, "unsupported frontend protocol 1234.5681");
	/* A small err buffer is truncated, not overrun; NULL err is fine. */
	n = MKPKT(pkt, 0x00020000u, "user\0bob\0\0");
	assert_int_equal(pgp_parse_startup(pkt, n, &st, err, 5), PGW_EPROTO);
	assert_string_equal(err, "unsu");
	assert_int_equal(pgp_parse_startup(pkt, n, &st, NULL, 0), PGW_EPROTO);
}

static void test_parse_startup_too_many_params(void **state)
{
	uint8_t body[2048], pkt[2100];
	struct pgp_startup st;
	char err[256];
	size_t off, n;

	(void)state;
	/* user + 63 more: exactly the limit. */
	off = (size_t)snprintf((char *)body, sizeof(body), "user%cu%c", 0, 0);
	for (int i = 0; i < PGP_MAX_PARAMS - 1; i++)
		off +=
		    (size_t)snprintf((char *)body + off, sizeof(body) - off, "p%d%cv%c", i, 0, 0);
	body[off++] = 0;
	n = mkpkt(pkt, PGP_PROTOCOL_3_0, body, off);
	assert_int_equal(pgp_parse_startup(pkt, n, &st, err, sizeof(err)), PGW_OK);
	assert_int_equal(st.n_params, PGP_MAX_PARAMS);
	/* One more is refused. */
	off--;
	off += (size_t)snprintf((char *)body + off, sizeof(body) - off, "extra%cv%c", 0, 0);
	body[off++] = 0;
	n = mkpkt(pkt, PGP_PROTOCOL_3_0, body, off);
	assert_int_equal(pgp_parse_startup(pkt, n, &st, err, sizeof(err)), PGW_EPROTO);
	assert_non_null(strstr(err, "too many parameters"));

	/* Same for _pq_ options. */
	off = (size_t)snprintf((char *)body, sizeof(body), "user%cu%c", 0, 0);
	for (int i = 0; i < PGP_MAX_PARAMS + 1; i++)
		off += (size_t)snprintf((char *)body + off, sizeof(body) - off, "_pq_.%d%cv%c", i,
					0, 0);
	body[off++] = 0;
	n = mkpkt(pkt, PGP_PROTOCOL_3_0, body, off);
	assert_int_equal(pgp_parse_startup(pkt, n, &st, err, sizeof(err)), PGW_EPROTO);
}

static void test_parse_ssl_gss_requests(void **state)
{
	uint8_t pkt[64];
	struct pgp_startup st;
	char err[256];
	size_t n;

	(void)state;
	n = MKPKT(pkt, PGP_SSL_REQUEST, "");
	assert_int_equal(pgp_parse_startup(pkt, n, &st, err, sizeof(err)), PGW_OK);
	assert_int_equal(st.code, PGP_SSL_REQUEST);
	assert_null(st.user);
	n = MKPKT(pkt, PGP_SSL_REQUEST, "\0\0\0\0");
	assert_int_equal(pgp_parse_startup(pkt, n, &st, err, sizeof(err)), PGW_EPROTO);
	assert_string_equal(err, "invalid length of SSL request packet");
	n = MKPKT(pkt, PGP_GSSENC_REQUEST, "");
	assert_int_equal(pgp_parse_startup(pkt, n, &st, err, sizeof(err)), PGW_OK);
	assert_int_equal(st.code, PGP_GSSENC_REQUEST);
	n = MKPKT(pkt, PGP_GSSENC_REQUEST, "x");
	assert_int_equal(pgp_parse_startup(pkt, n, &st, err, sizeof(err)), PGW_EPROTO);
}

static void test_parse_cancel(void **state)
{
	uint8_t body[300], pkt[320];
	struct pgp_startup st;
	char err[256];
	size_t n;

	(void)state;
	/* 3.0: pid + 4-byte key, length 16. */
	n = MKPKT(pkt, PGP_CANCEL_REQUEST, "\0\0\x30\x39\xde\xad\xbe\xef");
	assert_int_equal(n, 16);
	assert_int_equal(pgp_parse_startup(pkt, n, &st, err, sizeof(err)), PGW_OK);
	assert_int_equal(st.code, PGP_CANCEL_REQUEST);
	assert_int_equal(st.cancel_pid, 12345);
	assert_int_equal(st.cancel_key_len, 4);
	assert_memory_equal(st.cancel_key, "\xde\xad\xbe\xef", 4);
	/* 3.2: 32-byte key (what PostgreSQL 18 sends), and the 256-byte maximum. */
	for (size_t i = 0; i < sizeof(body); i++)
		body[i] = (uint8_t)i;
	n = mkpkt(pkt, PGP_CANCEL_REQUEST, body, 4 + 32);
	assert_int_equal(pgp_parse_startup(pkt, n, &st, err, sizeof(err)), PGW_OK);
	assert_int_equal(st.cancel_pid, 0x00010203u);
	assert_int_equal(st.cancel_key_len, 32);
	assert_memory_equal(st.cancel_key, body + 4, 32);
	n = mkpkt(pkt, PGP_CANCEL_REQUEST, body, 4 + 256);
	assert_int_equal(pgp_parse_startup(pkt, n, &st, err, sizeof(err)), PGW_OK);
	assert_int_equal(st.cancel_key_len, 256);
	/* Key too long, too short, or missing. */
	n = mkpkt(pkt, PGP_CANCEL_REQUEST, body, 4 + 257);
	assert_int_equal(pgp_parse_startup(pkt, n, &st, err, sizeof(err)), PGW_EPROTO);
	assert_string_equal(err, "invalid length of cancel request packet");
	n = mkpkt(pkt, PGP_CANCEL_REQUEST, body, 4 + 3);
	assert_int_equal(pgp_parse_startup(pkt, n, &st, err, sizeof(err)), PGW_EPROTO);
	n = mkpkt(pkt, PGP_CANCEL_REQUEST, body, 4);
	assert_int_equal(pgp_parse_startup(pkt, n, &st, err, sizeof(err)), PGW_EPROTO);
	n = mkpkt(pkt, PGP_CANCEL_REQUEST, body, 0);
	assert_int_equal(pgp_parse_startup(pkt, n, &st, err, sizeof(err)), PGW_EPROTO);
}

/* The builder's cancel request parses back. */
static void test_cancel_round_trip(void **state)
{
	struct cmn_buf b = {0};
	struct pgp_startup st;
	size_t total;

	(void)state;
	assert_int_equal(pgp_put_cancel(&b, 4242, 0x11223344u), PGW_OK);
	assert_int_equal(pgp_startup_frame((const uint8_t *)b.data, b.len, &total), 1);
	assert_int_equal(total, 16);
	assert_int_equal(pgp_parse_startup((const uint8_t *)b.data, b.len, &st, NULL, 0), PGW_OK);
	assert_int_equal(st.cancel_pid, 4242);
	assert_memory_equal(st.cancel_key, "\x11\x22\x33\x44", 4);
	cmn_buf_free(&b);
}

/* ---- reader ---- */

static void test_reader(void **state)
{
	const uint8_t body[] = "\x01\x02\x03\x04\x05\x06\x07"
			       "ab\0c";
	struct pgp_reader r;

	(void)state;
	pgp_reader_init(&r, body, sizeof(body) - 1);
	assert_int_equal(pgp_get_u8(&r), 1);
	assert_int_equal(pgp_get_u16(&r), 0x0203);
	assert_int_equal(pgp_get_u32(&r), 0x04050607u);
	assert_string_equal(pgp_get_str(&r), "ab");
	assert_false(r.bad);
	/* "c" has no NUL before the end. */
	assert_null(pgp_get_str(&r));
	assert_true(r.bad);
	/* Once bad, everything fails. */
	assert_int_equal(pgp_get_u8(&r), 0);
	assert_null(pgp_get_bytes(&r, 0));

	pgp_reader_init(&r, body, 3);
	assert_int_equal(pgp_get_u32(&r), 0);
	assert_true(r.bad);
	pgp_reader_init(&r, body, 1);
	assert_int_equal(pgp_get_u16(&r), 0);
	assert_true(r.bad);
	pgp_reader_init(&r, body, 0);
	assert_int_equal(pgp_get_u8(&r), 0);
	assert_true(r.bad);
	pgp_reader_init(&r, body, 0);
	assert_null(pgp_get_str(&r));
	assert_true(r.bad);

	pgp_reader_init(&r, body, 4);
	assert_ptr_equal(pgp_get_bytes(&r, 3), body);
	assert_ptr_equal(pgp_get_bytes(&r, 1), body + 3);
	assert_non_null(pgp_get_bytes(&r, 0));
	assert_false(r.bad);
	assert_null(pgp_get_bytes(&r, 1));
	assert_true(r.bad);
	pgp_reader_init(&r, body, 4);
	assert_null(pgp_get_bytes(&r, SIZE_MAX));
	assert_true(r.bad);
}

/* ---- ErrorResponse fields ---- */

static void test_parse_error(void **state)
{
	struct cmn_buf b = {0};
	struct pgp_error_fields f;
	const uint8_t localized[] = "SERREUR\0VERROR\0C42P01\0Mnope\0Hcheck\0P12\0\0";
	const uint8_t s_only[] = "SFATAL\0C57P03\0Mstarting\0\0";

	(void)state;
	assert_int_equal(pgp_put_error(&b, "FATAL", "28P01", "bad password", "for alice"), PGW_OK);
	assert_int_equal(pgp_parse_error((const uint8_t *)b.data + 5, b.len - 5, &f), PGW_OK);
	assert_string_equal(f.severity, "FATAL");
	assert_string_equal(f.sqlstate, "28P01");
	assert_string_equal(f.message, "bad password");
	assert_string_equal(f.detail, "for alice");
	assert_null(f.hint);
	cmn_buf_free(&b);

	/* V (never localized) wins over S; unknown fields are skipped. */
	assert_int_equal(pgp_parse_error(localized, sizeof(localized) - 1, &f), PGW_OK);
	assert_string_equal(f.severity, "ERROR");
	assert_string_equal(f.sqlstate, "42P01");
	assert_string_equal(f.hint, "check");
	assert_null(f.detail);
	assert_int_equal(pgp_parse_error(s_only, sizeof(s_only) - 1, &f), PGW_OK);
	assert_string_equal(f.severity, "FATAL");
	assert_string_equal(f.message, "starting");

	/* Unterminated: no final 0, a value without its NUL, an empty body. */
	assert_int_equal(pgp_parse_error(s_only, sizeof(s_only) - 2, &f), PGW_EPROTO);
	assert_int_equal(pgp_parse_error(s_only, 5, &f), PGW_EPROTO);
	assert_int_equal(pgp_parse_error(s_only, 1, &f), PGW_EPROTO);
	assert_int_equal(pgp_parse_error(s_only, 0, &f), PGW_EPROTO);
	/* Just the terminator: valid, no fields. */
	assert_int_equal(pgp_parse_error((const uint8_t *)"", 1, &f), PGW_OK);
	assert_null(f.message);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_put_error),
	    cmocka_unit_test(test_put_notice),
	    cmocka_unit_test(test_put_auth),
	    cmocka_unit_test(test_put_session_messages),
	    cmocka_unit_test(test_put_negotiate),
	    cmocka_unit_test(test_put_row_description),
	    cmocka_unit_test(test_put_data_row),
	    cmocka_unit_test(test_put_frontend),
	    cmocka_unit_test(test_frame),
	    cmocka_unit_test(test_frame_bad_length),
	    cmocka_unit_test(test_startup_frame),
	    cmocka_unit_test(test_parse_options),
	    cmocka_unit_test(test_parse_startup),
	    cmocka_unit_test(test_parse_startup_defaults),
	    cmocka_unit_test(test_parse_startup_pq_options),
	    cmocka_unit_test(test_parse_startup_replication),
	    cmocka_unit_test(test_parse_startup_errors),
	    cmocka_unit_test(test_parse_startup_too_many_params),
	    cmocka_unit_test(test_parse_ssl_gss_requests),
	    cmocka_unit_test(test_parse_cancel),
	    cmocka_unit_test(test_cancel_round_trip),
	    cmocka_unit_test(test_reader),
	    cmocka_unit_test(test_parse_error),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
