/*
 * Unit tests of synchronous replication's choices (src/agent/syncrep.c): which
 * standbys the leader waits for, synchronous_standby_names, and the sync key's names
 * that stay. The zero-loss guarantee rests on these.
 */
#include "agent/syncrep.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

static struct dcs_cluster cl;

static struct dcs_member *member(const char *name)
{
	struct dcs_member *m = &cl.members[cl.n_members++];

	memset(m, 0, sizeof(*m));
	snprintf(m->name, sizeof(m->name), "%s", name);
	return m;
}

static struct walsender ws(const char *name, bool streaming, uint64_t flush)
{
	struct walsender w = {.streaming = streaming, .flush = flush};

	snprintf(w.name, sizeof(w.name), "%s", name);
	return w;
}

static int setup(void **state)
{
	(void)state;
	memset(&cl, 0, sizeof(cl));
	member("n1");
	member("n2");
	member("n3");
	member("n4");
	return 0;
}

static void names(const struct walsender *const *pick, size_t n, const char *want)
{
	char got[256] = "";

	for (size_t i = 0; i < n; i++)
		snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%s", i ? "," : "",
			 pick[i]->name);
	assert_string_equal(got, want);
}

static void test_most_advanced_streaming_first_up_to_count(void **state)
{
	struct walsender w[] = {ws("n2", true, 100), ws("n3", true, 300), ws("n4", true, 200)};
	const struct walsender *pick[8];

	(void)state;
	names(pick, syncrep_pick(&cl, "n1", "", w, 3, 1, pick), "n3");
	names(pick, syncrep_pick(&cl, "n1", "", w, 3, 2, pick), "n3,n4");
	names(pick, syncrep_pick(&cl, "n1", "", w, 3, 5, pick), "n3,n4,n2");
	assert_int_equal(syncrep_pick(&cl, "n1", "", w, 3, 0, pick), 0);
}

static void test_current_ones_stay_before_more_advanced(void **state)
{
	struct walsender w[] = {ws("n2", true, 100), ws("n3", true, 300), ws("n4", true, 200)};
	const struct walsender *pick[8];

	(void)state;
	/* In the sync key: n2 stays although n3 is further. */
	cl.has_sync = true;
	snprintf(cl.sync_standby, sizeof(cl.sync_standby), "n2");
	names(pick, syncrep_pick(&cl, "n1", "", w, 3, 1, pick), "n2");
	names(pick, syncrep_pick(&cl, "n1", "", w, 3, 2, pick), "n2,n3");
	/* Waited for already (synchronous_standby_names) while the key is empty. */
	cl.sync_standby[0] = '\0';
	names(pick, syncrep_pick(&cl, "n1", "FIRST 1 (\"n4\")", w, 3, 1, pick), "n4");
}

static void test_unfit_standbys_are_never_picked(void **state)
{
	struct walsender w[] = {ws("n1", true, 900), ws("n2", false, 800),   ws("n3", true, 700),
				ws("n4", true, 600), ws("ghost", true, 999), ws("", true, 999)};
	const struct walsender *pick[8];

	(void)state;
	cl.members[2].nosync = true;	 /* n3 */
	cl.members[3].nofailover = true; /* n4 */
	/* n1 is the leader itself, n2 does not stream, ghost and "" are no members. */
	assert_int_equal(syncrep_pick(&cl, "n1", "", w, 6, 3, pick), 0);
	cl.members[3].nofailover = false;
	names(pick, syncrep_pick(&cl, "n1", "", w, 6, 3, pick), "n4");
}

static void test_synchronous_standby_names(void **state)
{
	struct walsender w[] = {ws("n2", true, 1), ws("n3", true, 2)};
	const struct walsender *pick[2] = {&w[1], &w[0]};
	struct cmn_buf b = {0};

	(void)state;
	assert_int_equal(syncrep_ssn(pick, 2, false, &b), PGW_OK);
	assert_string_equal(b.data, "FIRST 2 (\"n3\", \"n2\")");
	assert_int_equal(syncrep_ssn(pick, 1, true, &b), PGW_OK);
	assert_string_equal(b.data, "FIRST 1 (\"n3\")");
	assert_int_equal(syncrep_ssn(pick, 0, true, &b), PGW_OK);
	assert_string_equal(b.data, "*");
	assert_int_equal(syncrep_ssn(pick, 0, false, &b), PGW_OK);
	assert_string_equal(b.data ? b.data : "", "");
	cmn_buf_free(&b);
	assert_true(syncrep_ssn_names("FIRST 2 (\"n3\", \"n2\")", "n2"));
	assert_false(syncrep_ssn_names("FIRST 1 (\"n22\")", "n2"));
	assert_false(syncrep_ssn_names("", "n2"));
}

static void test_names_leave_the_key_only_when_not_wanted(void **state)
{
	struct cmn_buf keep = {0};

	(void)state;
	assert_true(syncrep_keep("n2,n3,n4", "n2,n4", &keep));
	assert_string_equal(keep.data, "n2,n4");
	assert_false(syncrep_keep("n2,n3", "n3,n2,n4", &keep));
	assert_string_equal(keep.data, "n2,n3");
	assert_true(syncrep_keep("n2", "", &keep));
	assert_string_equal(keep.data ? keep.data : "", "");
	assert_false(syncrep_keep("", "n2", &keep));
	assert_int_equal(keep.len, 0);
	cmn_buf_free(&keep);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup(test_most_advanced_streaming_first_up_to_count, setup),
	    cmocka_unit_test_setup(test_current_ones_stay_before_more_advanced, setup),
	    cmocka_unit_test_setup(test_unfit_standbys_are_never_picked, setup),
	    cmocka_unit_test_setup(test_synchronous_standby_names, setup),
	    cmocka_unit_test_setup(test_names_leave_the_key_only_when_not_wanted, setup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
