/*
 * Unit tests of the extended-protocol tracker (src/proxy/extq.c): statement names
 * renamed per server, Parse answered by the proxy when the server already holds
 * the statement, a Parse put in front of a Bind on a server that lacks it (and its
 * answer dropped), Close answered by the proxy, eviction, the skip-to-Sync after an
 * error, COPY IN's ignored Syncs and the proxy's own Query. No statement leaks.
 */
#include "proxy/extq.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

static size_t msg(uint8_t *out, uint8_t type, const void *body, size_t n)
{
	size_t len = n + 4;

	out[0] = type;
	out[1] = (uint8_t)(len >> 24);
	out[2] = (uint8_t)(len >> 16);
	out[3] = (uint8_t)(len >> 8);
	out[4] = (uint8_t)len;
	memcpy(out + 5, body, n);
	return n + 5;
}

/* Feeds one client message; returns true when it went verbatim. */
static bool feed(struct extq_names *names, struct extq_server *srv, int max, uint8_t type,
		 const void *body, size_t n, struct cmn_buf *out)
{
	uint8_t m[256];
	size_t replaced, len;

	cmn_buf_reset(out);
	assert_true(n + 5 <= sizeof(m));
	len = msg(m, type, body, n);
	assert_int_equal(extq_client_message(names, srv, max, m, len, len, out, &replaced), PGW_OK);
	return replaced == 0;
}

#define LIT(s) s, sizeof(s) - 1

/* Bytes of the server-side name of statement id, its terminator included. */
static size_t name_size(uint64_t id)
{
	struct extq_stmt st = {.id = id};
	char name[EXTQ_NAME_SIZE];

	extq_stmt_name(&st, name);
	assert_memory_equal(name, "PGW_", 4); /* PGW_<random>_<id> */
	assert_true(strlen(name) > 4 + 16);
	return strlen(name) + 1;
}

/* Answer of the server: returns whether it was dropped. */
static bool answer(struct extq_server *srv, uint8_t type)
{
	struct extq_verdict v;

	extq_backend(srv, type, &v);
	return v.drop;
}

static void test_parse_bind_rename_and_reuse(void **state)
{
	struct extq_names a = {0}, b = {0};
	struct extq_server srv = {0};
	struct cmn_buf out = {0};

	(void)state;
	/* Client a prepares "s1": the server gets it as PGW_<id>. */
	assert_false(feed(&a, &srv, 10, 'P', LIT("s1\0SELECT 1\0\0\0"), &out));
	assert_int_equal(out.len, 5 + name_size(1) + 9 + 2);
	assert_memory_equal(out.data + 5, "PGW_", 4);
	assert_true(feed(&a, &srv, 10, 'S', "", 0, &out));
	assert_int_equal(extq_pending(&srv), 2);
	assert_false(answer(&srv, '1'));
	assert_false(answer(&srv, 'Z'));
	assert_int_equal(extq_pending(&srv), 0);

	/* Client b prepares the same statement under another name: answered by the proxy. */
	assert_false(feed(&b, &srv, 10, 'P', LIT("other\0SELECT 1\0\0\0"), &out));
	assert_int_equal(out.len, 0);
	assert_true(extq_synth_due(&srv));
	assert_int_equal(extq_next_synth(&srv), '1');
	assert_int_equal(extq_stmt_count(), 1);

	/* Bind by b's name goes to the server renamed; the answers pass. */
	assert_false(feed(&b, &srv, 10, 'B', LIT("\0other\0\0\0\0\0\0\0"), &out));
	assert_memory_equal(out.data, "B", 1);
	assert_memory_equal(out.data + 6, "PGW_", 4);
	assert_true(feed(&b, &srv, 10, 'E', LIT("\0\0\0\0\0"), &out));
	assert_true(feed(&b, &srv, 10, 'S', "", 0, &out));
	assert_false(answer(&srv, '2'));
	assert_false(answer(&srv, 'D'));
	assert_false(answer(&srv, 'C'));
	assert_false(answer(&srv, 'Z'));
	assert_int_equal(extq_pending(&srv), 0);

	/* A new server lacks it: a Parse goes first and its ParseComplete is dropped. */
	struct extq_server srv2 = {0};

	assert_false(feed(&a, &srv2, 10, 'B', LIT("\0s1\0\0\0\0\0\0\0"), &out));
	assert_memory_equal(out.data, "P", 1);
	assert_true(feed(&a, &srv2, 10, 'S', "", 0, &out));
	assert_true(answer(&srv2, '1'));
	assert_false(answer(&srv2, '2'));
	assert_false(answer(&srv2, 'Z'));
	assert_false(srv2.desync);

	/* An unknown name goes as it is: the server reports 26000 itself. */
	assert_true(feed(&a, &srv2, 10, 'B', LIT("\0nosuch\0\0\0\0\0\0\0"), &out));

	extq_server_free(&srv2);
	extq_server_free(&srv);
	extq_names_free(&a);
	extq_names_free(&b);
	cmn_buf_free(&out);
	assert_int_equal(extq_stmt_count(), 0);
}

static void test_close_evict_and_error_skip(void **state)
{
	struct extq_names a = {0};
	struct extq_server srv = {0};
	struct cmn_buf out = {0};

	(void)state;
	/* Close of a statement: answered by the proxy in its place in the stream. */
	assert_false(feed(&a, &srv, 1, 'P', LIT("x\0SELECT 1\0\0\0"), &out));
	assert_false(feed(&a, &srv, 1, 'C', LIT("Sx\0"), &out));
	assert_true(feed(&a, &srv, 1, 'S', "", 0, &out));
	assert_false(extq_synth_due(&srv)); /* the ParseComplete comes first */
	assert_false(answer(&srv, '1'));
	assert_int_equal(extq_next_synth(&srv), '3');
	assert_false(answer(&srv, 'Z'));

	/* max 1: a second statement evicts the first with a Close whose answer drops. */
	assert_false(feed(&a, &srv, 1, 'P', LIT("y\0SELECT 2\0\0\0"), &out));
	assert_memory_equal(out.data, "C\0\0\0", 4);
	assert_int_equal(out.data[4], 4 + 1 + name_size(2));
	assert_int_equal(out.data[5], 'S');
	assert_true(feed(&a, &srv, 1, 'S', "", 0, &out));
	assert_true(answer(&srv, '3'));
	assert_false(answer(&srv, '1'));
	assert_false(answer(&srv, 'Z'));
	assert_int_equal(srv.n_held, 1);

	/* An error: the server skips to the Sync; a failed Parse is not held. */
	assert_false(feed(&a, &srv, 5, 'P', LIT("z\0SELECT nosuch\0\0\0"), &out));
	assert_false(feed(&a, &srv, 5, 'B', LIT("\0z\0\0\0\0\0\0\0"), &out));
	assert_true(feed(&a, &srv, 5, 'E', LIT("\0\0\0\0\0"), &out));
	assert_true(feed(&a, &srv, 5, 'S', "", 0, &out));
	assert_int_equal(srv.n_held, 2);
	assert_false(answer(&srv, 'E'));
	assert_int_equal(extq_pending(&srv), 1);
	assert_int_equal(srv.n_held, 1);
	assert_false(answer(&srv, 'Z'));

	/* An error with no Sync sent yet: what follows until a Sync gets no answer. */
	assert_true(feed(&a, &srv, 5, 'B', LIT("\0\0\0\0\0\0\0\0"), &out));
	assert_true(feed(&a, &srv, 5, 'H', "", 0, &out));
	assert_false(answer(&srv, 'E'));
	assert_true(srv.skipping);
	assert_true(feed(&a, &srv, 5, 'P', LIT("w\0SELECT 3\0\0\0"), &out));
	assert_int_equal(extq_pending(&srv), 0);
	assert_true(feed(&a, &srv, 5, 'S', "", 0, &out));
	assert_false(srv.skipping);
	assert_false(answer(&srv, 'Z'));
	assert_int_equal(extq_pending(&srv), 0);
	assert_false(srv.desync);

	extq_server_free(&srv);
	extq_names_free(&a);
	cmn_buf_free(&out);
	assert_int_equal(extq_stmt_count(), 0);
}

static void test_copy_in_own_query_and_dirty(void **state)
{
	struct extq_names a = {0};
	struct extq_server srv = {0};
	struct cmn_buf out = {0};

	(void)state;
	/* COPY IN by Execute: the Sync sent after it is ignored by the server. */
	assert_true(feed(&a, &srv, 5, 'B', LIT("\0\0\0\0\0\0\0\0"), &out));
	assert_true(feed(&a, &srv, 5, 'E', LIT("\0\0\0\0\0"), &out));
	assert_true(feed(&a, &srv, 5, 'S', "", 0, &out));
	assert_false(answer(&srv, '2'));
	assert_false(answer(&srv, 'G'));
	assert_int_equal(extq_pending(&srv), 1);
	assert_true(feed(&a, &srv, 5, 'c', "", 0, &out));
	assert_true(feed(&a, &srv, 5, 'S', "", 0, &out));
	assert_false(answer(&srv, 'C'));
	assert_false(answer(&srv, 'Z'));
	assert_int_equal(extq_pending(&srv), 0);

	/* The proxy's own SET: everything it answers is dropped, an error flagged. */
	assert_int_equal(extq_push_own_query(&srv), PGW_OK);
	assert_true(feed(&a, &srv, 5, 'Q', LIT("SELECT 1\0"), &out));
	assert_true(answer(&srv, 'S'));
	assert_true(answer(&srv, 'C'));
	struct extq_verdict v;

	extq_backend(&srv, 'E', &v);
	assert_true(v.drop && v.own_error);
	assert_true(answer(&srv, 'Z'));
	assert_false(answer(&srv, 'T'));
	assert_false(answer(&srv, 'D'));
	assert_false(answer(&srv, 'C'));
	assert_false(answer(&srv, 'Z'));

	/* DISCARD ALL while the server holds statements: its state is unknown. */
	assert_false(feed(&a, &srv, 5, 'P', LIT("x\0SELECT 1\0\0\0"), &out));
	assert_true(feed(&a, &srv, 5, 'Q', LIT("discard ALL\0"), &out));
	assert_true(srv.dirty);

	extq_server_free(&srv);
	extq_names_free(&a);
	cmn_buf_free(&out);
	assert_int_equal(extq_stmt_count(), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_bind_rename_and_reuse),
	    cmocka_unit_test(test_close_evict_and_error_skip),
	    cmocka_unit_test(test_copy_in_own_query_and_dirty),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
