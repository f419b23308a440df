/*
 * Backup schedules: an interval ("24h", "30min", "7d") or a five-field cron expression in
 * UTC ("0 1 * * 0": Sundays at 01:00; fields minute hour day-of-month month day-of-week,
 * each *, N, A-B, lists of those with ',', and /STEP). Pure logic: parse, and whether a
 * run is due given when the last backup of that kind ended.
 */
#ifndef PGW_SCHEDULE_H
#define PGW_SCHEDULE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct schedule {
	bool set;
	int64_t interval_s; /* > 0: an interval; 0: cron */
	uint64_t minute;    /* cron: bit m for minute m (0-59) */
	uint32_t hour;	    /* 0-23 */
	uint32_t mday;	    /* 1-31 */
	uint16_t month;	    /* 1-12 */
	uint8_t wday;	    /* 0-6, Sunday 0 (7 is Sunday too) */
	bool mday_any, wday_any;
};

/* "" or NULL: no schedule (set false). 0, or -1 with the reason in why. */
int schedule_parse(const char *text, struct schedule *out, char *why, size_t why_size);

/*
 * The first time after `after` (unix seconds) at which the schedule fires: after +
 * interval, or the next matching minute (within about five years; -1 when none).
 */
int64_t schedule_next(const struct schedule *s, int64_t after);

/*
 * Is a run due at now, when the last backup that counts ended at last (0: never)? Never
 * run: due at once. Else due once schedule_next(last) has passed.
 */
bool schedule_due(const struct schedule *s, int64_t last, int64_t now);

#endif
