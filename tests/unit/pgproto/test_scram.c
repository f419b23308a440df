/*
 * Unit tests of SCRAM-SHA-256 and MD5 (src/pgproto/scram.c): the RFC 7677 example
 * on both sides, PostgreSQL-format verifiers (expected values computed
 * independently with Python's hashlib/hmac), malformed and hostile messages,
 * SCRAM pass-through with a recovered ClientKey, and MD5 against md5sum.
 */
#include "pgproto/scram.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

/* RFC 7677 section 3. */
#define RFC_CLIENT_NONCE "rOprNGfwEbeRWgbNEkqO"
#define RFC_SERVER_NONCE "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
#define RFC_FULL_NONCE	 RFC_CLIENT_NONCE RFC_SERVER_NONCE
#define RFC_SALT64	 "W22ZaJ0SNY7soEsUEjb6gQ=="
#define RFC_CLIENT_FIRST "n,,n=user,r=" RFC_CLIENT_NONCE
#define RFC_SERVER_FIRST "r=" RFC_FULL_NONCE ",s=" RFC_SALT64 ",i=4096"
#define RFC_CLIENT_FINAL \
	"c=biws,r=" RFC_FULL_NONCE ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
#define RFC_SERVER_FINAL "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="

/* The verifier PostgreSQL would store for "pencil" with the RFC's salt (hashlib). */
#define PENCIL_SECRET                                                                              \
	"SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=" \
	":"                                                                                        \
	"wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
/* ClientKey = HMAC(SaltedPassword, "Client Key") for "pencil" (hashlib). */
static const uint8_t pencil_client_key[PGP_SCRAM_KEY_LEN] = {
    0xa6, 0x0f, 0xc9, 0x23, 0xd6, 0x7e, 0x86, 0x44, 0xa9, 0x2d, 0x16, 0xb9, 0x6e, 0xda, 0x5e, 0xf4,
    0x65, 0x6b, 0x0c, 0x72, 0x5c, 0x48, 0x43, 0x74, 0xbe, 0x25, 0x53, 0x55, 0x76, 0x99, 0x6e, 0x8b};

static const uint8_t rfc_salt[16] = {0x5b, 0x6d, 0x99, 0x68, 0x9d, 0x12, 0x35, 0x8e,
				     0xec, 0xa0, 0x4b, 0x14, 0x12, 0x36, 0xfa, 0x81};

#define S(lit) lit, sizeof(lit) - 1

static void pencil_secret(struct pgp_scram_secret *sec)
{
	assert_int_equal(
	    pgp_scram_secret_from_password("pencil", rfc_salt, sizeof(rfc_salt), 4096, sec),
	    PGW_OK);
}

/* ---- client side ---- */

static void test_client_rfc7677(void **state)
{
	struct pgp_scram_client c = {0};
	char out[PGP_SCRAM_MAX_MSG];

	(void)state;
	strcpy(c.nonce, RFC_CLIENT_NONCE);
	assert_int_equal(pgp_scram_client_first(&c, out, sizeof(out)), PGW_OK);
	/* PostgreSQL clients send an empty user name... */
	assert_string_equal(out, "n,,n=,r=" RFC_CLIENT_NONCE);
	assert_string_equal(c.client_first_bare, "n=,r=" RFC_CLIENT_NONCE);
	/* ...the RFC example names "user"; the proof covers client-first-bare. */
	strcpy(c.client_first_bare, "n=user,r=" RFC_CLIENT_NONCE);
	assert_int_equal(
	    pgp_scram_client_final(&c, "pencil", S(RFC_SERVER_FIRST), out, sizeof(out)), PGW_OK);
	assert_string_equal(out, RFC_CLIENT_FINAL);
	assert_string_equal(c.server_first, RFC_SERVER_FIRST);
	assert_int_equal(pgp_scram_client_verify(&c, S(RFC_SERVER_FINAL)), PGW_OK);
}

/* The same exchange as a PostgreSQL client sends it (n=), values from hashlib/hmac. */
static void test_client_postgres_form(void **state)
{
	struct pgp_scram_client c = {0};
	char out[PGP_SCRAM_MAX_MSG];

	(void)state;
	strcpy(c.nonce, RFC_CLIENT_NONCE);
	assert_int_equal(pgp_scram_client_first(&c, out, sizeof(out)), PGW_OK);
	assert_int_equal(
	    pgp_scram_client_final(&c, "pencil", S(RFC_SERVER_FIRST), out, sizeof(out)), PGW_OK);
	assert_string_equal(out, "c=biws,r=" RFC_FULL_NONCE
				 ",p=qvT2SWdEH5Q06albL+hjSYuUhCG7VndFyzIb7CK4n9k=");
	assert_int_equal(
	    pgp_scram_client_verify(&c, S("v=3HO6Qt1M4MKJrmlKaoOqLAI0/0TV0HZe7J9H3MBtSOg=")),
	    PGW_OK);
}

static void test_client_verify_errors(void **state)
{
	struct pgp_scram_client c = {0};
	char out[PGP_SCRAM_MAX_MSG];

	(void)state;
	strcpy(c.nonce, RFC_CLIENT_NONCE);
	/* Nothing to verify yet. */
	assert_int_equal(pgp_scram_client_verify(&c, S(RFC_SERVER_FINAL)), PGW_EINVAL);
	assert_int_equal(pgp_scram_client_first(&c, out, sizeof(out)), PGW_OK);
	strcpy(c.client_first_bare, "n=user,r=" RFC_CLIENT_NONCE);
	assert_int_equal(
	    pgp_scram_client_final(&c, "pencil", S(RFC_SERVER_FIRST), out, sizeof(out)), PGW_OK);
	/* Another signature, a truncated one, a server error, garbage. */
	assert_int_equal(
	    pgp_scram_client_verify(&c, S("v=7rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")),
	    PGW_EAUTH);
	assert_int_equal(pgp_scram_client_verify(&c, S("v=6rriTRBi23WpRR")), PGW_EAUTH);
	assert_int_equal(pgp_scram_client_verify(&c, S("v=")), PGW_EAUTH);
	assert_int_equal(pgp_scram_client_verify(&c, S("e=invalid-proof")), PGW_EAUTH);
	assert_int_equal(pgp_scram_client_verify(&c, S("x=1")), PGW_EPROTO);
	assert_int_equal(pgp_scram_client_verify(&c, S(RFC_SERVER_FINAL ",x=1")), PGW_EPROTO);
	assert_int_equal(pgp_scram_client_verify(&c, "v=6rri\0TRBi", 11), PGW_EPROTO);
	/* The length given is what counts, not a NUL further on. */
	assert_int_equal(pgp_scram_client_verify(&c, RFC_SERVER_FINAL, 10), PGW_EAUTH);
}

static void test_client_random_nonce(void **state)
{
	struct pgp_scram_client a = {0}, b = {0};
	char out[PGP_SCRAM_MAX_MSG];

	(void)state;
	assert_int_equal(pgp_scram_client_first(&a, out, sizeof(out)), PGW_OK);
	assert_int_equal(pgp_scram_client_first(&b, out, sizeof(out)), PGW_OK);
	assert_int_equal(strlen(a.nonce), PGP_SCRAM_NONCE_LEN);
	assert_string_not_equal(a.nonce, b.nonce);
	assert_int_equal(strncmp(out, "n,,n=,r=", 8), 0);
	assert_string_equal(out + 8, b.nonce);
	/* A set nonce must be printable without ','; the output must fit. */
	struct pgp_scram_client c = {0};

	strcpy(c.nonce, "a,b");
	assert_int_equal(pgp_scram_client_first(&c, out, sizeof(out)), PGW_EINVAL);
	strcpy(c.nonce, "abc");
	assert_int_equal(pgp_scram_client_first(&c, out, 11), PGW_EINVAL);
	assert_int_equal(pgp_scram_client_first(&c, out, 12), PGW_OK);
}

static void test_client_bad_server_first(void **state)
{
	static const char *const bad[] = {
	    "", "r=" RFC_CLIENT_NONCE ",s=" RFC_SALT64 ",i=4096", /* no server nonce part */
	    "r=xOprNGfwEbeRWgbNEkqO" RFC_SERVER_NONCE ",s=" RFC_SALT64 ",i=4096", /* not ours */
	    "r=rOprNG,s=" RFC_SALT64 ",i=4096",					  /* short */
	    "r=" RFC_FULL_NONCE ",i=4096",					  /* no salt */
	    "r=" RFC_FULL_NONCE ",s=" RFC_SALT64,				  /* no i */
	    "s=" RFC_SALT64 ",r=" RFC_FULL_NONCE ",i=4096",			  /* order */
	    "r=" RFC_FULL_NONCE ",s=" RFC_SALT64 ",i=4096,x=1",			  /* extra */
	    "r=" RFC_FULL_NONCE ",s=" RFC_SALT64 ",i=4096,",
	    "r=" RFC_FULL_NONCE ",s=" RFC_SALT64 ",i=0",
	    "r=" RFC_FULL_NONCE ",s=" RFC_SALT64 ",i=-1",
	    "r=" RFC_FULL_NONCE ",s=" RFC_SALT64 ",i=10000001",
	    "r=" RFC_FULL_NONCE ",s=" RFC_SALT64 ",i=10000000", /* 2 s of the proxy's loop */
	    "r=" RFC_FULL_NONCE ",s=" RFC_SALT64 ",i=100001",
	    "r=" RFC_FULL_NONCE ",s=" RFC_SALT64 ",i=99999999999999999999",
	    "r=" RFC_FULL_NONCE ",s=" RFC_SALT64 ",i=4096x",
	    "r=" RFC_FULL_NONCE ",s=" RFC_SALT64 ",i=",
	    "r=" RFC_FULL_NONCE ",s=,i=4096",			     /* empty salt */
	    "r=" RFC_FULL_NONCE ",s=W22ZaJ0SNY7soEsUEjb6gQ=,i=4096", /* bad padding */
	    "r=" RFC_FULL_NONCE ",s=W22Z=J0SNY7soEsUEjb6gQ==,i=4096",
	    "r=" RFC_FULL_NONCE ",s= W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
	    "r=" RFC_FULL_NONCE ",s=W22ZaJ0SNY7soEsUEjb6g===,i=4096",
	    "r=" RFC_FULL_NONCE ",s=W22ZaJ0SNY7soEsUEjb6gQ*=,i=4096",
	    /* 66-byte salt: over PGP_SCRAM_MAX_SALT */
	    "r=" RFC_FULL_NONCE
	    ",s=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	    "AAAAAAAAAAAAAAAAAAAAAAAA,i=1",
	    "r=" RFC_CLIENT_NONCE "\x7f,s=" RFC_SALT64 ",i=4096", /* unprintable nonce */
	};
	struct pgp_scram_client c = {0};
	char out[PGP_SCRAM_MAX_MSG], big[PGP_SCRAM_MAX_MSG + 8];

	(void)state;
	strcpy(c.nonce, RFC_CLIENT_NONCE);
	/* Before client_first: nothing to continue. */
	assert_int_equal(
	    pgp_scram_client_final(&c, "pencil", S(RFC_SERVER_FIRST), out, sizeof(out)),
	    PGW_EINVAL);
	assert_int_equal(pgp_scram_client_first(&c, out, sizeof(out)), PGW_OK);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc =
		    pgp_scram_client_final(&c, "pencil", bad[i], strlen(bad[i]), out, sizeof(out));

		if (rc != PGW_EPROTO)
			fail_msg("server-first #%zu \"%s\": %d", i, bad[i], rc);
	}
	/* An embedded NUL; a message at the size cap. */
	assert_int_equal(pgp_scram_client_final(&c, "pencil", "r=" RFC_FULL_NONCE "\0,s=x",
						sizeof("r=" RFC_FULL_NONCE "\0,s=x") - 1, out,
						sizeof(out)),
			 PGW_EPROTO);
	memset(big, 'A', sizeof(big));
	memcpy(big, "r=" RFC_CLIENT_NONCE, strlen("r=" RFC_CLIENT_NONCE));
	assert_int_equal(
	    pgp_scram_client_final(&c, "pencil", big, PGP_SCRAM_MAX_MSG, out, sizeof(out)),
	    PGW_EPROTO);
	/* 64-byte salt and 1 iteration are fine; the output must fit. */
	const char ok[] = "r=" RFC_FULL_NONCE ",s=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
			  "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==,i=1";
	assert_int_equal(pgp_scram_client_final(&c, "pencil", S(ok), out, sizeof(out)), PGW_OK);
	assert_int_equal(pgp_scram_client_final(&c, "pencil", S(ok), out, 20), PGW_EINVAL);
}

/* ---- verifiers ---- */

static void test_secret_from_password(void **state)
{
	struct pgp_scram_secret sec, parsed;
	char text[256];
	static const char other[] = "SCRAM-SHA-256$10:AAECAwQFBgcICQoLDA0ODw==$"
				    "5VkdHQYb5USEPsrZMY04a41omGr/EjppuWOOmAFln/M=:"
				    "LzKRKdPy8QqfggM46BJgSrNrnJXd8yzwZCi4wRw1DGo=";
	uint8_t salt16[16];

	(void)state;
	pencil_secret(&sec);
	assert_int_equal(pgp_scram_secret_format(&sec, text, sizeof(text)), PGW_OK);
	assert_string_equal(text, PENCIL_SECRET);
	assert_int_equal(pgp_scram_secret_parse(PENCIL_SECRET, &parsed), PGW_OK);
	assert_int_equal(parsed.iterations, 4096);
	assert_int_equal(parsed.salt_len, 16);
	assert_memory_equal(parsed.salt, rfc_salt, 16);
	assert_memory_equal(parsed.stored_key, sec.stored_key, PGP_SCRAM_KEY_LEN);
	assert_memory_equal(parsed.server_key, sec.server_key, PGP_SCRAM_KEY_LEN);

	for (int i = 0; i < 16; i++)
		salt16[i] = (uint8_t)i;
	assert_int_equal(pgp_scram_secret_from_password("s3cr3t!", salt16, 16, 10, &sec), PGW_OK);
	assert_int_equal(pgp_scram_secret_format(&sec, text, sizeof(text)), PGW_OK);
	assert_string_equal(text, other);
	assert_int_equal(pgp_scram_secret_parse(other, &parsed), PGW_OK);
	assert_int_equal(parsed.iterations, 10);
	assert_int_equal(pgp_scram_secret_format(&parsed, text, sizeof(text)), PGW_OK);
	assert_string_equal(text, other);
	/* Too small an output; bad parameters. */
	assert_int_equal(pgp_scram_secret_format(&sec, text, strlen(other)), PGW_EINVAL);
	assert_int_equal(pgp_scram_secret_from_password("x", salt16, 16, 0, &sec), PGW_EINVAL);
	assert_int_equal(pgp_scram_secret_from_password("x", salt16, 0, 1, &sec), PGW_EINVAL);
	assert_int_equal(
	    pgp_scram_secret_from_password("x", salt16, PGP_SCRAM_MAX_SALT + 1, 1, &sec),
	    PGW_EINVAL);
	assert_int_equal(pgp_scram_secret_from_password("x", salt16, 16, 10000001, &sec),
			 PGW_EINVAL);
}

static void test_secret_parse_errors(void **state)
{
	static const char *const bad[] = {
	    "",
	    "md520c46e3762c864548e296b33c3406aa9",
	    "SCRAM-SHA-1$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="
	    ":wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
	    "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"
	    "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=",
	    "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==",
	    "SCRAM-SHA-256$4096",
	    "SCRAM-SHA-256$",
	    "SCRAM-SHA-256$0:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
	    "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
	    "SCRAM-SHA-256$x:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
	    "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
	    "SCRAM-SHA-256$4096:$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
	    "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
	    /* StoredKey of 31 bytes */
	    "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"
	    "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4g==:"
	    "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
	    /* ServerKey with trailing junk */
	    "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"
	    "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
	    "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=x",
	    "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"
	    "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
	    "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=\n",
	    "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"
	    "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
	    "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=:x",
	};
	struct pgp_scram_secret sec;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (pgp_scram_secret_parse(bad[i], &sec) != PGW_EINVAL)
			fail_msg("verifier #%zu \"%s\" accepted", i, bad[i]);
	assert_int_equal(pgp_scram_secret_parse(NULL, &sec), PGW_EINVAL);
}

/* ---- server side ---- */

static void test_server_rfc7677(void **state)
{
	struct pgp_scram_server s = {0};
	struct pgp_scram_secret sec;
	char out[PGP_SCRAM_MAX_MSG];
	uint8_t client_key[PGP_SCRAM_KEY_LEN];

	(void)state;
	assert_int_equal(pgp_scram_secret_parse(PENCIL_SECRET, &sec), PGW_OK);
	strcpy(s.nonce, RFC_SERVER_NONCE);
	assert_int_equal(pgp_scram_server_first(&s, &sec, S(RFC_CLIENT_FIRST), out, sizeof(out)),
			 PGW_OK);
	assert_string_equal(out, RFC_SERVER_FIRST);
	assert_string_equal(s.full_nonce, RFC_FULL_NONCE);
	assert_string_equal(s.client_first_bare, "n=user,r=" RFC_CLIENT_NONCE);
	assert_int_equal(
	    pgp_scram_server_final(&s, S(RFC_CLIENT_FINAL), out, sizeof(out), client_key), PGW_OK);
	assert_string_equal(out, RFC_SERVER_FINAL);
	assert_memory_equal(client_key, pencil_client_key, PGP_SCRAM_KEY_LEN);
	/* client_key may be NULL. */
	assert_int_equal(pgp_scram_server_final(&s, S(RFC_CLIENT_FINAL), out, sizeof(out), NULL),
			 PGW_OK);
	/* Output too small. */
	assert_int_equal(pgp_scram_server_final(&s, S(RFC_CLIENT_FINAL), out, 10, NULL),
			 PGW_EINVAL);
}

/* "y,," (client supports binding, thinks we do not): c=eSws, values from hashlib/hmac. */
static void test_server_gs2_y(void **state)
{
	struct pgp_scram_server s = {0};
	struct pgp_scram_secret sec;
	char out[PGP_SCRAM_MAX_MSG];

	(void)state;
	pencil_secret(&sec);
	strcpy(s.nonce, RFC_SERVER_NONCE);
	assert_int_equal(
	    pgp_scram_server_first(&s, &sec, S("y,,n=user,r=" RFC_CLIENT_NONCE), out, sizeof(out)),
	    PGW_OK);
	assert_string_equal(out, RFC_SERVER_FIRST);
	/* c=biws does not match a "y,," header. */
	assert_int_equal(pgp_scram_server_final(&s, S(RFC_CLIENT_FINAL), out, sizeof(out), NULL),
			 PGW_EPROTO);
	assert_int_equal(
	    pgp_scram_server_final(
		&s, S("c=eSws,r=" RFC_FULL_NONCE ",p=FoqiHTtQEDE8lz1CdaEe3tK4mS+iMDTl77SPyDS53DY="),
		out, sizeof(out), NULL),
	    PGW_OK);
	assert_string_equal(out, "v=dI4KpiQJwBr1+V+K6U1dA6l6I4I9DUNXWND4pcpRU3U=");
}

static void test_server_bad_client_first(void **state)
{
	static const char *const bad[] = {
	    "",
	    "n",
	    "n,",
	    "p=tls-server-end-point,,n=,r=abc", /* channel binding */
	    "p,,n=,r=abc",
	    "x,,n=,r=abc",
	    "n,a=user,n=,r=abc", /* authzid */
	    "n,,r=abc",		 /* no n= */
	    "n,,m=ext,n=,r=abc", /* mandatory extension */
	    "n,,n=",
	    "n,,n=,r=",
	    "n,,n=,r=a b",
	    "n,,n=,r=abc,",
	    "n,,n=,r=abc,1=x",
	    "n,,n=,x=abc",
	    "n,,n=,r=abc\x80",
	};
	struct pgp_scram_server s = {0};
	struct pgp_scram_secret sec;
	char out[PGP_SCRAM_MAX_MSG], big[200];

	(void)state;
	pencil_secret(&sec);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = pgp_scram_server_first(&s, &sec, bad[i], strlen(bad[i]), out, sizeof(out));

		if (rc != PGW_EPROTO)
			fail_msg("client-first #%zu \"%s\": %d", i, bad[i], rc);
	}
	assert_int_equal(pgp_scram_server_first(&s, &sec, "n,,n=,r=a\0b", 11, out, sizeof(out)),
			 PGW_EPROTO);
	/* A client nonce too long for the full nonce. */
	memset(big, 'x', sizeof(big));
	memcpy(big, "n,,n=,r=", 8);
	assert_int_equal(pgp_scram_server_first(&s, &sec, big, sizeof(big), out, sizeof(out)),
			 PGW_EPROTO);
	/* Extensions after the nonce are allowed; the user name is ignored. */
	assert_int_equal(
	    pgp_scram_server_first(&s, &sec, S("n,,n=someone,r=abc,x=1"), out, sizeof(out)),
	    PGW_OK);
	/* server_final without a successful server_first. */
	assert_int_equal(pgp_scram_server_first(&s, &sec, S("n,,"), out, sizeof(out)), PGW_EPROTO);
	assert_int_equal(pgp_scram_server_final(&s, S(RFC_CLIENT_FINAL), out, sizeof(out), NULL),
			 PGW_EINVAL);
	/* A secret out of range. */
	sec.iterations = 0;
	assert_int_equal(pgp_scram_server_first(&s, &sec, S(RFC_CLIENT_FIRST), out, sizeof(out)),
			 PGW_EINVAL);
	pencil_secret(&sec);
	sec.salt_len = PGP_SCRAM_MAX_SALT + 1;
	assert_int_equal(pgp_scram_server_first(&s, &sec, S(RFC_CLIENT_FIRST), out, sizeof(out)),
			 PGW_EINVAL);
}

static void test_server_bad_client_final(void **state)
{
	static const char *const bad[] = {
	    "",
	    "c=biws",
	    "c=biws,r=" RFC_FULL_NONCE,
	    "c=biws,r=" RFC_FULL_NONCE ",",
	    "c=eSws,r=" RFC_FULL_NONCE ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
	    "c=cD10bHMtc2VydmVyLWVuZC1wb2ludCws,r=" RFC_FULL_NONCE
	    ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
	    /* tampered nonce (last character), shortened, extended */
	    "c=biws,r=" RFC_CLIENT_NONCE "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k1"
	    ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
	    "c=biws,r=" RFC_CLIENT_NONCE ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
	    "c=biws,r=" RFC_FULL_NONCE "x,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
	    "r=" RFC_FULL_NONCE ",c=biws,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
	    /* proof not last, not base64, wrong length */
	    RFC_CLIENT_FINAL ",x=1",
	    "c=biws,r=" RFC_FULL_NONCE ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ",
	    "c=biws,r=" RFC_FULL_NONCE ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ==",
	    "c=biws,r=" RFC_FULL_NONCE ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=AAAA",
	    "c=biws,r=" RFC_FULL_NONCE ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ+AAA=",
	    "c=biws,r=" RFC_FULL_NONCE ",p=",
	    "c=biws,r=" RFC_FULL_NONCE ",1=x,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
	};
	struct pgp_scram_server s = {0};
	struct pgp_scram_secret sec;
	char out[PGP_SCRAM_MAX_MSG];

	(void)state;
	pencil_secret(&sec);
	strcpy(s.nonce, RFC_SERVER_NONCE);
	assert_int_equal(pgp_scram_server_first(&s, &sec, S(RFC_CLIENT_FIRST), out, sizeof(out)),
			 PGW_OK);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = pgp_scram_server_final(&s, bad[i], strlen(bad[i]), out, sizeof(out), NULL);

		if (rc != PGW_EPROTO)
			fail_msg("client-final #%zu \"%s\": %d", i, bad[i], rc);
	}
	/* A flipped proof bit is a wrong password, not a malformed message. */
	assert_int_equal(
	    pgp_scram_server_final(
		&s, S("c=biws,r=" RFC_FULL_NONCE ",p=eHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="),
		out, sizeof(out), NULL),
	    PGW_EAUTH);
	/* An extension before the proof is covered by the AuthMessage: not this proof. */
	assert_int_equal(
	    pgp_scram_server_final(
		&s,
		S("c=biws,r=" RFC_FULL_NONCE ",x=1,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="),
		out, sizeof(out), NULL),
	    PGW_EAUTH);
	/* Still good after all that. */
	assert_int_equal(pgp_scram_server_final(&s, S(RFC_CLIENT_FINAL), out, sizeof(out), NULL),
			 PGW_OK);
}

/* Our client against our server, random nonces, right and wrong passwords. */
static int exchange(const struct pgp_scram_secret *sec, const char *password,
		    uint8_t client_key[PGP_SCRAM_KEY_LEN])
{
	struct pgp_scram_client c = {0};
	struct pgp_scram_server s = {0};
	char m1[PGP_SCRAM_MAX_MSG], m2[PGP_SCRAM_MAX_MSG], m3[PGP_SCRAM_MAX_MSG];
	char m4[PGP_SCRAM_MAX_MSG];
	int rc;

	assert_int_equal(pgp_scram_client_first(&c, m1, sizeof(m1)), PGW_OK);
	assert_int_equal(pgp_scram_server_first(&s, sec, m1, strlen(m1), m2, sizeof(m2)), PGW_OK);
	assert_int_equal(strlen(s.nonce), PGP_SCRAM_NONCE_LEN);
	assert_int_equal(pgp_scram_client_final(&c, password, m2, strlen(m2), m3, sizeof(m3)),
			 PGW_OK);
	rc = pgp_scram_server_final(&s, m3, strlen(m3), m4, sizeof(m4), client_key);
	if (rc == PGW_OK)
		assert_int_equal(pgp_scram_client_verify(&c, m4, strlen(m4)), PGW_OK);
	return rc;
}

static void test_exchange(void **state)
{
	struct pgp_scram_secret sec;
	uint8_t salt[16], key[PGP_SCRAM_KEY_LEN];

	(void)state;
	assert_int_equal(pgp_random(salt, sizeof(salt)), PGW_OK);
	assert_int_equal(
	    pgp_scram_secret_from_password("correct horse", salt, sizeof(salt), 64, &sec), PGW_OK);
	assert_int_equal(exchange(&sec, "correct horse", key), PGW_OK);
	assert_int_equal(exchange(&sec, "correct horsE", key), PGW_EAUTH);
	assert_int_equal(exchange(&sec, "", key), PGW_EAUTH);

	pencil_secret(&sec);
	assert_int_equal(exchange(&sec, "pencil", key), PGW_OK);
	assert_memory_equal(key, pencil_client_key, PGP_SCRAM_KEY_LEN);
	assert_int_equal(exchange(&sec, "Pencil", key), PGW_EAUTH);
}

/*
 * SCRAM pass-through: the ClientKey a client proved to us logs in to a server that
 * holds the same verifier, and reproduces exactly what the password would send.
 */
static void test_client_final_keys(void **state)
{
	struct pgp_scram_secret sec;
	struct pgp_scram_server front = {0}, back = {0};
	struct pgp_scram_client c = {0}, pass = {0};
	char m[4][PGP_SCRAM_MAX_MSG], out[PGP_SCRAM_MAX_MSG];
	uint8_t key[PGP_SCRAM_KEY_LEN];

	(void)state;
	pencil_secret(&sec);
	/* The client proves itself to the pooler (front). */
	assert_int_equal(pgp_scram_client_first(&c, m[0], sizeof(m[0])), PGW_OK);
	assert_int_equal(
	    pgp_scram_server_first(&front, &sec, m[0], strlen(m[0]), m[1], sizeof(m[1])), PGW_OK);
	assert_int_equal(
	    pgp_scram_client_final(&c, "pencil", m[1], strlen(m[1]), m[2], sizeof(m[2])), PGW_OK);
	assert_int_equal(
	    pgp_scram_server_final(&front, m[2], strlen(m[2]), m[3], sizeof(m[3]), key), PGW_OK);

	/* The pooler logs in to PostgreSQL (back) with the recovered key. */
	assert_int_equal(pgp_scram_client_first(&pass, m[0], sizeof(m[0])), PGW_OK);
	assert_int_equal(
	    pgp_scram_server_first(&back, &sec, m[0], strlen(m[0]), m[1], sizeof(m[1])), PGW_OK);
	assert_int_equal(pgp_scram_client_final_keys(&pass, key, sec.server_key, m[1], strlen(m[1]),
						     m[2], sizeof(m[2])),
			 PGW_OK);
	assert_int_equal(
	    pgp_scram_server_final(&back, m[2], strlen(m[2]), m[3], sizeof(m[3]), NULL), PGW_OK);
	assert_int_equal(pgp_scram_client_verify(&pass, m[3], strlen(m[3])), PGW_OK);

	/* With the RFC's nonces it produces the RFC's message, byte for byte. */
	memset(&pass, 0, sizeof(pass));
	strcpy(pass.nonce, RFC_CLIENT_NONCE);
	assert_int_equal(pgp_scram_client_first(&pass, out, sizeof(out)), PGW_OK);
	strcpy(pass.client_first_bare, "n=user,r=" RFC_CLIENT_NONCE);
	assert_int_equal(pgp_scram_client_final_keys(&pass, key, sec.server_key,
						     S(RFC_SERVER_FIRST), out, sizeof(out)),
			 PGW_OK);
	assert_string_equal(out, RFC_CLIENT_FINAL);
	assert_int_equal(pgp_scram_client_verify(&pass, S(RFC_SERVER_FINAL)), PGW_OK);
	/* A wrong key is refused by the server. */
	key[0] ^= 1;
	memset(&back, 0, sizeof(back));
	assert_int_equal(
	    pgp_scram_server_first(&back, &sec, S("n,,n=,r=" RFC_CLIENT_NONCE), m[1], sizeof(m[1])),
	    PGW_OK);
	memset(&pass, 0, sizeof(pass));
	strcpy(pass.nonce, RFC_CLIENT_NONCE);
	assert_int_equal(pgp_scram_client_first(&pass, out, sizeof(out)), PGW_OK);
	assert_int_equal(pgp_scram_client_final_keys(&pass, key, sec.server_key, m[1], strlen(m[1]),
						     m[2], sizeof(m[2])),
			 PGW_OK);
	assert_int_equal(
	    pgp_scram_server_final(&back, m[2], strlen(m[2]), m[3], sizeof(m[3]), NULL), PGW_EAUTH);
}

/* ---- MD5 ---- */

static void test_md5(void **state)
{
	char secret[36], resp[36];
	const uint8_t salt[4] = {0xde, 0xad, 0xbe, 0xef};

	(void)state;
	/* printf '%s' penciluser | md5sum */
	pgp_md5_secret("user", "pencil", secret);
	assert_string_equal(secret, "md520c46e3762c864548e296b33c3406aa9");
	/* printf '20c46e3762c864548e296b33c3406aa9\xde\xad\xbe\xef' | md5sum */
	pgp_md5_response(secret, salt, resp);
	assert_string_equal(resp, "md50f5b636d891e9860623ac8ca91fc9dfc");
}

static void test_random(void **state)
{
	uint8_t a[32] = {0}, b[32] = {0};

	(void)state;
	assert_int_equal(pgp_random(a, sizeof(a)), PGW_OK);
	assert_int_equal(pgp_random(b, sizeof(b)), PGW_OK);
	assert_memory_not_equal(a, b, sizeof(a));
	assert_int_equal(pgp_random(a, 0), PGW_OK);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_client_rfc7677),
	    cmocka_unit_test(test_client_postgres_form),
	    cmocka_unit_test(test_client_verify_errors),
	    cmocka_unit_test(test_client_random_nonce),
	    cmocka_unit_test(test_client_bad_server_first),
	    cmocka_unit_test(test_secret_from_password),
	    cmocka_unit_test(test_secret_parse_errors),
	    cmocka_unit_test(test_server_rfc7677),
	    cmocka_unit_test(test_server_gs2_y),
	    cmocka_unit_test(test_server_bad_client_first),
	    cmocka_unit_test(test_server_bad_client_final),
	    cmocka_unit_test(test_exchange),
	    cmocka_unit_test(test_client_final_keys),
	    cmocka_unit_test(test_md5),
	    cmocka_unit_test(test_random),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
