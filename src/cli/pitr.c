#include "cli/pitr.h"
#include "cli/repo.h"
#include "common/util.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdbool.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SEGMENT_SIZE (16ULL * 1024 * 1024)

static int fail(char *err, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t size, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, size, fmt, ap);
	va_end(ap);
	return -1;
}

/* "+HH", "+HHMM", "+HH:MM", "-...", "Z", "UTC": seconds east of UTC, or -1 on error. */
static int parse_zone(const char *z, long *offset)
{
	int sign, hh = 0, mm = 0;
	size_t n = strlen(z);

	while (*z == ' ')
		z++, n--;
	if (strcmp(z, "Z") == 0 || strcmp(z, "UTC") == 0) {
		*offset = 0;
		return 0;
	}
	if (*z != '+' && *z != '-')
		return -1;
	sign = *z == '-' ? -1 : 1;
	z++;
	n = strlen(z);
	for (size_t i = 0; i < n; i++)
		if (!isdigit((unsigned char)z[i]) && !(z[i] == ':' && i == 2))
			return -1;
	if (n == 2)
		hh = atoi(z);
	else if (n == 4)
		hh = (z[0] - '0') * 10 + (z[1] - '0'), mm = atoi(z + 2);
	else if (n == 5 && z[2] == ':')
		hh = atoi(z), mm = atoi(z + 3);
	else
		return -1;
	if (hh > 15 || mm > 59)
		return -1;
	*offset = sign * (hh * 3600L + mm * 60L);
	return 0;
}

static int parse_time(const char *text, struct pitr_target *out, char *err, size_t err_size)
{
	struct tm tm;
	int y, mo, d, h, mi, s, used = 0;
	char sep, frac[16] = "";
	const char *p;
	long offset;

	memset(&tm, 0, sizeof(tm));
	if (sscanf(text, "%4d-%2d-%2d%c%2d:%2d:%2d%n", &y, &mo, &d, &sep, &h, &mi, &s, &used) !=
		7 ||
	    (sep != ' ' && sep != 'T'))
		return fail(err, err_size,
			    "bad time '%s': expected 'YYYY-MM-DD HH:MM:SS+TZ' (e.g. "
			    "'2026-12-06 10:30:00+00')",
			    text);
	p = text + used;
	if (*p == '.') {
		size_t n = 0;

		for (p++; isdigit((unsigned char)*p); p++)
			if (n + 1 < sizeof(frac) && n < 6)
				frac[n++] = *p;
		frac[n] = '\0';
		if (!n)
			return fail(err, err_size, "bad time '%s': no digits after the '.'", text);
	}
	if (!*p)
		return fail(err, err_size,
			    "time '%s' has no time zone: add one (+00, +01:00, Z) so that it "
			    "means the same on every host",
			    text);
	if (parse_zone(p, &offset) != 0)
		return fail(err, err_size,
			    "bad time zone in '%s': expected +HH, +HHMM, +HH:MM, -HH..., Z or UTC",
			    text);
	if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 60 || y < 1970)
		return fail(err, err_size, "bad time '%s': a field is out of range", text);
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = s;
	time_t t = timegm(&tm) - offset;
	struct tm utc;
	char base[32];

	/* timegm normalises 31 February into March: refuse what changed on the way. */
	if (tm.tm_mday != d || tm.tm_mon != mo - 1)
		return fail(err, err_size, "bad time '%s': no such date", text);
	gmtime_r(&t, &utc);
	strftime(base, sizeof(base), "%Y-%m-%d %H:%M:%S", &utc);
	snprintf(out->text, sizeof(out->text), "%s%s%s+00", base, frac[0] ? "." : "", frac);
	snprintf(base, sizeof(base), "0.%s", frac[0] ? frac : "0");
	out->epoch = (double)t + atof(base);
	return 0;
}

int pitr_parse(enum pitr_kind kind, const char *text, struct pitr_target *out, char *err,
	       size_t err_size)
{
	memset(out, 0, sizeof(*out));
	out->kind = kind;
	switch (kind) {
	case PITR_LATEST:
		return 0;
	case PITR_TIME:
		return parse_time(text, out, err, err_size);
	case PITR_LSN:
		if (cmn_parse_lsn(text, &out->lsn) != PGW_OK || strchr(text, '-') ||
		    strchr(text, ' '))
			return fail(err, err_size,
				    "bad LSN '%s': expected X/X in hex (e.g. 0/5000028)", text);
		cmn_format_lsn(out->lsn, out->text, sizeof(out->text));
		return 0;
	case PITR_XID: {
		char *end;
		unsigned long long v;

		if (!isdigit((unsigned char)text[0]))
			return fail(err, err_size, "bad transaction id '%s': expected a number",
				    text);
		v = strtoull(text, &end, 10);
		if (*end || v < 3 || v > 0xFFFFFFFFULL)
			return fail(
			    err, err_size,
			    "bad transaction id '%s': expected a normal xid (3..4294967295)", text);
		out->xid = v;
		snprintf(out->text, sizeof(out->text), "%llu", v);
		return 0;
	}
	}
	return fail(err, err_size, "%s", "unknown target kind");
}

uint64_t pitr_segment_end(const char *name)
{
	unsigned int tl, log, seg;
	char extra;

	if (!name || strlen(name) != 24 ||
	    sscanf(name, "%8X%8X%8X%c", &tl, &log, &seg, &extra) != 3)
		return 0;
	return ((uint64_t)log << 32) + (uint64_t)seg * SEGMENT_SIZE + SEGMENT_SIZE;
}

static uint64_t jlsn(json_object *b, const char *which)
{
	uint64_t lsn = 0;

	if (cmn_parse_lsn(cli_jstr(b, "lsn", which), &lsn) != PGW_OK)
		return 0;
	return lsn;
}

static void fmt_epoch(int64_t e, char *out, size_t size)
{
	time_t t = (time_t)e;
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(out, size, "%Y-%m-%d %H:%M:%S+00", &tm);
}

/* Can backup b reach target t (it became consistent before the target)? */
static bool usable(json_object *b, const struct pitr_target *t)
{
	switch (t->kind) {
	case PITR_TIME:
		/* Times are whole seconds: the consistent point is within stop's second. */
		return (double)(cli_jint(b, "timestamp", "stop", NULL) + 1) <= t->epoch;
	case PITR_LSN:
		return jlsn(b, "stop") && jlsn(b, "stop") <= t->lsn;
	default:
		return true;
	}
}

int pitr_choose(json_object *stanza, const struct pitr_target *t, const char *label,
		double now_epoch, char *out, size_t out_size, char *err, size_t err_size)
{
	json_object *backups = NULL, *archive = NULL, *pick = NULL, *oldest = NULL;
	char when[40], lsn[32];
	size_t n;

	if (!json_object_object_get_ex(stanza, "backup", &backups) ||
	    !json_object_is_type(backups, json_type_array) ||
	    (n = json_object_array_length(backups)) == 0)
		return fail(err, err_size, "%s",
			    "the repository has no backup: take one first (pgwarden backup --type "
			    "full)");
	if (t->kind == PITR_TIME && t->epoch > now_epoch)
		return fail(err, err_size, "target time %s is in the future", t->text);
	if (json_object_object_get_ex(stanza, "archive", &archive) &&
	    json_object_is_type(archive, json_type_array) && json_object_array_length(archive))
		archive = json_object_array_get_idx(archive, json_object_array_length(archive) - 1);
	else
		archive = NULL;
	if (t->kind == PITR_LSN) {
		const char *max = archive ? cli_jstr(archive, "max", NULL) : NULL;
		uint64_t end = pitr_segment_end(max);

		if (!end || t->lsn > end) {
			char e[32];

			cmn_format_lsn(end, e, sizeof(e));
			snprintf(
			    err, err_size,
			    "target LSN %s is past the archived WAL (the last segment, %s, ends "
			    "at %s)",
			    t->text, max ? max : "none", e);
			return -1;
		}
	}
	for (size_t i = 0; i < n; i++) {
		json_object *b = json_object_array_get_idx(backups, i);
		const char *l = cli_jstr(b, "label", NULL);

		if (!oldest)
			oldest = b;
		if (label) {
			if (l && strcmp(l, label) == 0)
				pick = b;
			continue;
		}
		if (usable(b, t) && (t->kind != PITR_XID || !pick))
			pick = b; /* the list is oldest first: the last usable is the newest */
	}
	if (label && !pick)
		return fail(err, err_size,
			    "no backup '%s' in the repository (pgwarden backup list shows them)",
			    label);
	if (pick && !usable(pick, t)) {
		fmt_epoch(cli_jint(pick, "timestamp", "stop", NULL), when, sizeof(when));
		snprintf(err, err_size,
			 "backup %s ends at %s (LSN %s), after the target %s: choose an earlier "
			 "backup",
			 label, when, cli_jstr(pick, "lsn", "stop") ?: "?", t->text);
		return -1;
	}
	if (!pick) {
		fmt_epoch(cli_jint(oldest, "timestamp", "stop", NULL), when, sizeof(when));
		snprintf(lsn, sizeof(lsn), "%s", cli_jstr(oldest, "lsn", "stop") ?: "?");
		snprintf(err, err_size,
			 "target %s is before the restorable window: the oldest backup, %s, "
			 "ends at %s (LSN %s)",
			 t->text, cli_jstr(oldest, "label", NULL) ?: "?", when, lsn);
		return -1;
	}
	snprintf(out, out_size, "%s", cli_jstr(pick, "label", NULL) ?: "");
	return out[0] ? 0 : fail(err, err_size, "%s", "a backup without a label");
}

/* ---- archive continuity ---- */

int pitr_parse_segment_name(const char *name, struct pitr_segment *seg)
{
	unsigned int tl, log, s;

	if (strlen(name) < 24 || (name[24] != '\0' && name[24] != '-'))
		return 0;
	for (int i = 0; i < 24; i++)
		if (!isxdigit((unsigned char)name[i]) || islower((unsigned char)name[i]))
			return 0;
	if (sscanf(name, "%8X%8X%8X", &tl, &log, &s) != 3 || tl == 0 || s > 0xFF)
		return 0;
	seg->tl = (int)tl;
	seg->segno = (uint64_t)log * 256 + s;
	return 1;
}

static bool have_segment(const struct pitr_segment *segs, size_t n, int tl, uint64_t segno)
{
	for (size_t i = 0; i < n; i++)
		if (segs[i].tl == tl && segs[i].segno == segno)
			return true;
	return false;
}

static void seg_name(int tl, uint64_t segno, char *out, size_t size)
{
	snprintf(out, size, "%08X%08X%08X", (unsigned)tl, (unsigned)(segno / 256),
		 (unsigned)(segno % 256));
}

int pitr_check_continuity(const struct pitr_segment *segs, size_t n_segs,
			  const struct tl_switch *history, size_t n_history, int latest_tl,
			  struct pitr_segment start, char *report, size_t report_size,
			  size_t *checked)
{
	size_t off = 0, first = n_history + 1;
	int problems = 0;
	char name[32];

	*checked = 0;
	report[0] = '\0';
#define SAY(...)                                                                               \
	do {                                                                                   \
		if (off < report_size)                                                         \
			off += (size_t)snprintf(report + off, report_size - off, __VA_ARGS__); \
		problems++;                                                                    \
	} while (0)
	/* The path: history's timelines in order, then latest_tl (which has no end). */
	for (size_t i = 0; i <= n_history; i++) {
		int tl = i < n_history ? history[i].tl : latest_tl;

		if (tl == start.tl) {
			first = i;
			break;
		}
	}
	if (first > n_history) {
		seg_name(start.tl, start.segno, name, sizeof(name));
		SAY("the oldest backup starts at %s, on timeline %d, which is not in timeline "
		    "%d's history\n",
		    name, start.tl, latest_tl);
		return problems;
	}
	uint64_t lo = start.segno;

	for (size_t i = first; i <= n_history; i++) {
		int tl = i < n_history ? history[i].tl : latest_tl;
		uint64_t hi;
		bool last = i == n_history;

		if (!last) {
			uint64_t end_seg = history[i].switch_lsn / SEGMENT_SIZE;

			if (end_seg < lo) {
				/* ended inside the segment we start from: the next timeline has it
				 */
				continue;
			}
			if (end_seg == 0)
				continue;
			hi = end_seg - 1;
			if (end_seg == lo) {
				lo = end_seg;
				continue;
			}
		} else {
			bool any = false;

			hi = lo;
			for (size_t k = 0; k < n_segs; k++)
				if (segs[k].tl == tl && segs[k].segno >= lo &&
				    (!any || segs[k].segno > hi))
					hi = segs[k].segno, any = true;
			if (!any) {
				/* nothing archived on the current timeline yet: nothing to miss */
				break;
			}
		}
		for (uint64_t s = lo; s <= hi; s++) {
			(*checked)++;
			if (!have_segment(segs, n_segs, tl, s)) {
				seg_name(tl, s, name, sizeof(name));
				SAY("missing %s (timeline %d)\n", name, tl);
			}
		}
		if (!last)
			lo = history[i].switch_lsn / SEGMENT_SIZE;
	}
#undef SAY
	return problems;
}

/* ---- pgbackrest verify ---- */

static void append_problem(char *dst, size_t size, const char *what, size_t what_len)
{
	size_t len = strlen(dst);

	if (len + 3 >= size)
		return;
	snprintf(dst + len, size - len, "%s%.*s", len ? "; " : "", (int)what_len, what);
}

int pitr_parse_verify(const char *text, struct pitr_verify *out)
{
	bool summary = false;

	memset(out, 0, sizeof(*out));
	out->archive_ok = true;
	/* First the summary (each backup's label and status), then the damaged files. */
	for (int pass = 0; pass < 2; pass++) {
		for (const char *line = text; line && *line;) {
			const char *eol = strchr(line, '\n');
			size_t len = eol ? (size_t)(eol - line) : strlen(line);
			char buf[1024];

			snprintf(buf, sizeof(buf), "%.*s", (int)(len < 1023 ? len : 1023), line);
			line = eol ? eol + 1 : NULL;
			const char *b = strstr(buf, "backup: "), *q1 = strchr(buf, '\''),
				   *q2 = q1 ? strchr(q1 + 1, '\'') : NULL;

			if (pass == 0) {
				unsigned long long checked, valid;
				const char *a = strstr(buf, "total WAL checked: ");

				if (strstr(buf, "status: ok"))
					out->stanza_ok = true;
				if (strstr(buf, "status: ") && strstr(buf, "stanza"))
					summary = true;
				if (strstr(buf, "status: error") && !b)
					summary = true;
				if (a &&
				    sscanf(a, "total WAL checked: %llu, total valid WAL: %llu",
					   &checked, &valid) == 2 &&
				    checked != valid)
					out->archive_ok = false;
				if (b && strstr(b, ", status: ") &&
				    out->n_backup < PITR_VERIFY_MAX) {
					const char *comma = strchr(b + 8, ',');
					size_t n = comma ? (size_t)(comma - b - 8) : 0;

					bool seen = false;

					if (!n || n >= sizeof(out->backup[0].label))
						continue;
					/* the summary comes twice: logged, and on stdout */
					for (size_t i = 0; i < out->n_backup; i++)
						seen |=
						    strlen(out->backup[i].label) == n &&
						    strncmp(out->backup[i].label, b + 8, n) == 0;
					if (seen)
						continue;
					memcpy(out->backup[out->n_backup].label, b + 8, n);
					out->backup[out->n_backup].label[n] = '\0';
					out->backup[out->n_backup].valid =
					    strncmp(strstr(b, ", status: ") + 10, "valid", 5) == 0;
					out->n_backup++;
					summary = true;
				}
				continue;
			}
			/* INFO: <what> '<label>/<file>' or '<archive id>/<segment>' */
			if (!q1 || !q2 || b || strstr(buf, "command begin") ||
			    strstr(buf, "command end"))
				continue;
			bool matched = false;
			const char *info = strstr(buf, "INFO: ");
			const char *what = info ? info + 6 : buf;

			for (size_t i = 0; i < out->n_backup; i++) {
				size_t l = strlen(out->backup[i].label);
				char item[700];

				if (strncmp(q1 + 1, out->backup[i].label, l) != 0 ||
				    q1[1 + l] != '/')
					continue;
				snprintf(item, sizeof(item), "%.*s'%.*s'", (int)(q1 - what), what,
					 (int)(q2 - q1 - 2 - l), q1 + 2 + l);
				append_problem(out->backup[i].problems,
					       sizeof(out->backup[i].problems), item, strlen(item));
				matched = true;
			}
			if (!matched) {
				append_problem(out->archive_problems, sizeof(out->archive_problems),
					       what, strlen(what));
				out->archive_ok = false;
			}
		}
	}
	return summary ? 0 : -1;
}
