#include "node/schedule.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int fail(char *why, size_t size, const char *msg, const char *field)
{
	snprintf(why, size, "%s%s%s", msg, field ? ": " : "", field ? field : "");
	return -1;
}

/* One cron field into a bit set of [lo, hi]; *any when it is "*" alone. */
static int parse_field(const char *text, int lo, int hi, uint64_t *bits, bool *any)
{
	char buf[128], *save = NULL;

	*bits = 0;
	*any = strcmp(text, "*") == 0;
	snprintf(buf, sizeof(buf), "%s", text);
	for (char *part = strtok_r(buf, ",", &save); part; part = strtok_r(NULL, ",", &save)) {
		int a = lo, b = hi, step = 1;
		char *slash = strchr(part, '/'), *end;

		if (slash) {
			*slash = '\0';
			step = (int)strtol(slash + 1, &end, 10);
			if (!isdigit((unsigned char)slash[1]) || *end || step < 1)
				return -1;
		}
		if (strcmp(part, "*") != 0) {
			char *dash = strchr(part, '-');

			if (!isdigit((unsigned char)part[0]))
				return -1;
			a = (int)strtol(part, &end, 10);
			if (dash) {
				if (end != dash || !isdigit((unsigned char)dash[1]))
					return -1;
				b = (int)strtol(dash + 1, &end, 10);
			} else {
				b = slash ? hi : a;
			}
			if (*end || a < lo || b > hi || a > b)
				return -1;
		}
		for (int v = a; v <= b; v += step)
			*bits |= 1ULL << v;
	}
	return *bits ? 0 : -1;
}

static int parse_interval(const char *text, int64_t *out)
{
	static const struct {
		const char *unit;
		int64_t seconds;
	} units[] = {{"s", 1}, {"min", 60}, {"m", 60}, {"h", 3600}, {"d", 86400}, {"w", 604800}};
	char *end;
	long long v = strtoll(text, &end, 10);

	if (!isdigit((unsigned char)text[0]) || v <= 0)
		return -1;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (strcmp(end, units[i].unit) == 0) {
			*out = v * units[i].seconds;
			return *out >= 60 ? 0 : -1;
		}
	return -1;
}

int schedule_parse(const char *text, struct schedule *out, char *why, size_t why_size)
{
	static const char *const names[] = {"minute", "hour", "day of month", "month",
					    "day of week"};
	static const int lo[] = {0, 0, 1, 1, 0}, hi[] = {59, 23, 31, 12, 7};
	char buf[256], *fields[6], *save = NULL;
	uint64_t bits[5];
	bool any[5];
	int n = 0;

	memset(out, 0, sizeof(*out));
	if (!text || !text[0])
		return 0;
	if (strlen(text) >= sizeof(buf))
		return fail(why, why_size, "too long", NULL);
	snprintf(buf, sizeof(buf), "%s", text);
	for (char *f = strtok_r(buf, " \t", &save); f && n < 6; f = strtok_r(NULL, " \t", &save))
		fields[n++] = f;
	if (n == 1) {
		if (parse_interval(fields[0], &out->interval_s) != 0)
			return fail(why, why_size,
				    "expected an interval of at least a minute (30min, 6h, 1d, "
				    "1w) or a cron expression (0 1 * * 0)",
				    NULL);
		out->set = true;
		return 0;
	}
	if (n != 5)
		return fail(why, why_size,
			    "expected five cron fields (minute hour day-of-month month "
			    "day-of-week) or an interval (6h, 1d)",
			    NULL);
	for (int i = 0; i < 5; i++)
		if (parse_field(fields[i], lo[i], hi[i], &bits[i], &any[i]) != 0)
			return fail(why, why_size, "bad cron field", names[i]);
	out->minute = bits[0];
	out->hour = (uint32_t)bits[1];
	out->mday = (uint32_t)bits[2];
	out->month = (uint16_t)bits[3];
	out->wday = (uint8_t)((bits[4] & 0x7F) | ((bits[4] >> 7) & 1)); /* 7 is Sunday */
	out->mday_any = any[2];
	out->wday_any = any[4];
	out->set = true;
	return 0;
}

static bool day_matches(const struct schedule *s, const struct tm *tm)
{
	bool md = (s->mday >> tm->tm_mday) & 1, wd = (s->wday >> tm->tm_wday) & 1;

	/* cron: when both are restricted, either one matching is enough */
	if (!s->mday_any && !s->wday_any)
		return md || wd;
	return md && wd;
}

int64_t schedule_next(const struct schedule *s, int64_t after)
{
	struct tm tm;
	time_t t;

	if (!s->set)
		return -1;
	if (s->interval_s > 0)
		return after + s->interval_s;
	t = (time_t)(after - after % 60 + 60); /* the next whole minute */
	for (int days = 0; days < 366 * 5;) {
		gmtime_r(&t, &tm);
		if (!((s->month >> (tm.tm_mon + 1)) & 1) || !day_matches(s, &tm)) {
			/* skip to the next day's midnight */
			t += 86400 - (tm.tm_hour * 3600 + tm.tm_min * 60 + tm.tm_sec);
			days++;
			continue;
		}
		if (!((s->hour >> tm.tm_hour) & 1)) {
			t += 3600 - (tm.tm_min * 60 + tm.tm_sec);
			if (tm.tm_hour == 23)
				days++;
			continue;
		}
		if (!((s->minute >> tm.tm_min) & 1)) {
			t += 60;
			if (tm.tm_min == 59 && tm.tm_hour == 23)
				days++;
			continue;
		}
		return (int64_t)t;
	}
	return -1;
}

bool schedule_due(const struct schedule *s, int64_t last, int64_t now)
{
	int64_t next;

	if (!s->set)
		return false;
	if (last <= 0)
		return true;
	next = schedule_next(s, last);
	return next >= 0 && next <= now;
}
