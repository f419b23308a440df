#include "agent/syncrep.h"

#include <stdio.h>
#include <string.h>

bool syncrep_ssn_names(const char *ssn, const char *name)
{
	char quoted[DCS_NAME_MAX + 3];

	snprintf(quoted, sizeof(quoted), "\"%s\"", name);
	return strstr(ssn, quoted) != NULL;
}

/* ws[i] may be waited for, and is (pass 0) or is not (pass 1) already a current one. */
static bool fit(const struct dcs_cluster *c, const char *me, const char *ssn,
		const struct walsender *w, int pass)
{
	const struct dcs_member *m = *w->name ? dcs_find_member(c, w->name) : NULL;

	if (!w->streaming || !m || m->nosync || m->nofailover || strcmp(m->name, me) == 0)
		return false;
	return (pass == 0) == (dcs_sync_has(c, w->name) || syncrep_ssn_names(ssn, w->name));
}

size_t syncrep_pick(const struct dcs_cluster *c, const char *me, const char *ssn,
		    const struct walsender *ws, size_t n_ws, int count,
		    const struct walsender **pick)
{
	size_t n_pick = 0;

	for (int pass = 0; pass < 2; pass++) {
		while (n_pick < (size_t)(count > 0 ? count : 0)) {
			const struct walsender *best = NULL;

			for (size_t i = 0; i < n_ws; i++) {
				bool taken = false;

				for (size_t j = 0; j < n_pick; j++)
					taken = taken || pick[j] == &ws[i];
				if (taken || !fit(c, me, ssn, &ws[i], pass))
					continue;
				if (!best || ws[i].flush > best->flush)
					best = &ws[i];
			}
			if (!best)
				break;
			pick[n_pick++] = best;
		}
	}
	return n_pick;
}

int syncrep_ssn(const struct walsender *const *pick, size_t n, bool strict, struct cmn_buf *out)
{
	int rc = PGW_OK;

	cmn_buf_reset(out);
	if (n == 0)
		return strict ? cmn_buf_printf(out, "*") : cmn_buf_printf(out, "%s", "");
	rc = cmn_buf_printf(out, "FIRST %zu (", n);
	for (size_t i = 0; i < n && rc == PGW_OK; i++)
		rc = cmn_buf_printf(out, "%s\"%s\"", i ? ", " : "", pick[i]->name);
	if (rc == PGW_OK)
		rc = cmn_buf_printf(out, ")");
	return rc;
}

bool syncrep_keep(const char *set, const char *want, struct cmn_buf *keep)
{
	bool dropping = false;
	const char *p = set;

	cmn_buf_reset(keep);
	while (*p) {
		char name[DCS_NAME_MAX];
		size_t len = strcspn(p, ",");

		snprintf(name, sizeof(name), "%.*s", (int)len, p);
		if (cmn_name_in_list(want, name))
			(void)cmn_buf_printf(keep, "%s%s", keep->len ? "," : "", name);
		else
			dropping = true;
		p += len + (p[len] == ',' ? 1 : 0);
	}
	return dropping;
}
