/*
 * Unit tests of common/: base64 (common/base64.c, for etcd and SCRAM), name lists and
 * the constant-time compare (common/util.c, common/httpd.c).
 */
#include "common/base64.h"
#include "common/httpd.h"
#include "common/timeutil.h"
#include "common/util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

static void test_base64_round_trips_and_rfc4648_vectors(void **state)
{
	static const char *const plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
	static const char *const coded[] = {"",		"Zg==",	    "Zm8=",    "Zm9v",
					    "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
	char out[64];
	uint8_t back[64];
	size_t n;

	(void)state;
	for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++) {
		assert_int_equal(cmn_b64_encode(plain[i], strlen(plain[i]), out, sizeof(out)),
				 PGW_OK);
		assert_string_equal(out, coded[i]);
		assert_int_equal(strlen(out), CMN_B64_LEN(strlen(plain[i])));
		assert_int_equal(
		    cmn_b64_decode(coded[i], strlen(coded[i]), true, back, sizeof(back), &n),
		    PGW_OK);
		assert_int_equal(n, strlen(plain[i]));
		assert_memory_equal(back, plain[i], n);
	}
	/* Bytes, not text: every value survives. */
	uint8_t all[256];

	for (int i = 0; i < 256; i++)
		all[i] = (uint8_t)i;
	char big[CMN_B64_LEN(256) + 1];
	uint8_t again[256];

	assert_int_equal(cmn_b64_encode(all, sizeof(all), big, sizeof(big)), PGW_OK);
	assert_int_equal(cmn_b64_decode(big, strlen(big), true, again, sizeof(again), &n), PGW_OK);
	assert_int_equal(n, 256);
	assert_memory_equal(again, all, 256);
}

static void test_base64_refuses_what_it_must(void **state)
{
	char out[8];
	uint8_t back[8];
	size_t n;

	(void)state;
	/* The output must fit, NUL included. */
	assert_int_equal(cmn_b64_encode("foo", 3, out, 4), PGW_EINVAL);
	assert_int_equal(cmn_b64_encode("foo", 3, out, 5), PGW_OK);
	/* Strict (SCRAM): padded to a multiple of 4; lax (etcd) may leave it out. */
	assert_int_equal(cmn_b64_decode("Zg", 2, true, back, sizeof(back), &n), PGW_EPROTO);
	assert_int_equal(cmn_b64_decode("Zg", 2, false, back, sizeof(back), &n), PGW_OK);
	assert_int_equal(n, 1);
	/* Never: characters outside the alphabet, '=' inside, too much padding, a lone
	 * trailing character, a result longer than the room for it. */
	assert_int_equal(cmn_b64_decode("Zm 9v", 5, false, back, sizeof(back), &n), PGW_EPROTO);
	assert_int_equal(cmn_b64_decode("Zm9v\n", 5, false, back, sizeof(back), &n), PGW_EPROTO);
	assert_int_equal(cmn_b64_decode("Z=9v", 4, true, back, sizeof(back), &n), PGW_EPROTO);
	assert_int_equal(cmn_b64_decode("Z===", 4, true, back, sizeof(back), &n), PGW_EPROTO);
	assert_int_equal(cmn_b64_decode("Zm9vY", 5, false, back, sizeof(back), &n), PGW_EPROTO);
	assert_int_equal(cmn_b64_decode("Zm9vYmFy", 8, true, back, 5, &n), PGW_EPROTO);
	assert_int_equal(cmn_b64_decode("Zm9vYmFy", 8, true, back, 6, &n), PGW_OK);
}

static void test_name_lists(void **state)
{
	(void)state;
	assert_true(cmn_name_in_list("alice,bob", "bob"));
	assert_true(cmn_name_in_list("alice, bob", "bob"));
	assert_true(cmn_name_in_list(" alice ,bob", "alice"));
	assert_false(cmn_name_in_list("alice,bob", "bo"));
	assert_false(cmn_name_in_list("alice,bob", "alice,bob"));
	assert_false(cmn_name_in_list("", "alice"));
	assert_false(cmn_name_in_list(NULL, "alice"));
	assert_false(cmn_name_in_list("alice,,bob", ""));
	/* The sync key's set (written with commas only). */
	assert_true(cmn_name_in_list("a,b,c", "b"));
	assert_true(cmn_name_in_list("a", "a"));
	assert_false(cmn_name_in_list("ab,c", "a"));
	assert_false(cmn_name_in_list("", "a"));
	assert_false(cmn_name_in_list("a,b", "a,b"));
	assert_true(cmn_name_in_list("a, b", "b"));
	assert_false(cmn_name_in_list("a,,b", ""));
}

static void test_constant_time_compare(void **state)
{
	(void)state;
	assert_true(cmn_const_eq("secret", "secret"));
	assert_true(cmn_const_eq("", ""));
	assert_false(cmn_const_eq("secret", "secreT"));
	assert_false(cmn_const_eq("secret", "secret2"));
	assert_false(cmn_const_eq("secret2", "secret"));
	assert_false(cmn_const_eq("", "x"));
	assert_false(cmn_const_eq("x", ""));
}

/* A listener answers; a closed port and a name that does not resolve do not, in time. */
static void test_tcp_answers(void **state)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	int fd = cmn_tcp_listen("127.0.0.1", 0, 4, false, "test");
	int port;
	int64_t t0;

	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	port = ntohs(sa.sin_port);
	assert_true(cmn_tcp_answers("127.0.0.1", port, 1000));
	assert_true(cmn_tcp_answers("localhost", port, 1000));
	close(fd);
	t0 = cmn_now_ms();
	assert_false(cmn_tcp_answers("127.0.0.1", port, 1000));
	assert_false(cmn_tcp_answers("no-such-host.invalid", port, 300));
	assert_true(cmn_now_ms() - t0 < 2000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_base64_round_trips_and_rfc4648_vectors),
	    cmocka_unit_test(test_base64_refuses_what_it_must),
	    cmocka_unit_test(test_name_lists),
	    cmocka_unit_test(test_constant_time_compare),
	    cmocka_unit_test(test_tcp_answers),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
