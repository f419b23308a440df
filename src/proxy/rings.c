#include "proxy/rings.h"

#include <string.h>

int rings_bucket(uint64_t us)
{
	int msb, b;

	if (us < 4)
		return (int)us;
	msb = 63 - __builtin_clzll(us);
	b = 4 * (msb - 1) + (int)((us >> (msb - 2)) & 3);
	return b < RINGS_BUCKETS ? b : RINGS_BUCKETS - 1;
}

double rings_bucket_upper_ms(int bucket)
{
	int msb, sub;

	if (bucket < 4)
		return (double)(bucket + 1) / 1000.0;
	msb = bucket / 4 + 1;
	sub = bucket % 4;
	return (double)((uint64_t)(5 + sub) << (msb - 2)) / 1000.0;
}

double rings_quantile_ms(const uint32_t *hist, double q)
{
	uint64_t total = 0, rank, seen = 0;

	for (int b = 0; b < RINGS_BUCKETS; b++)
		total += hist[b];
	if (!total)
		return 0;
	rank = (uint64_t)(q * (double)total);
	if ((double)rank < q * (double)total)
		rank++; /* the ceiling: the 99th of 100 is the 99th, of 101 the 100th */
	if (!rank)
		rank = 1;
	for (int b = 0; b < RINGS_BUCKETS; b++) {
		seen += hist[b];
		if (seen >= rank)
			return rings_bucket_upper_ms(b);
	}
	return rings_bucket_upper_ms(RINGS_BUCKETS - 1);
}

bool rings_tick(struct proxy_rings *r, int64_t now_ms, int64_t wall_ms, int waiting,
		uint64_t leader_changes)
{
	struct proxy_sample *s;
	double secs;

	if (!r->started_ms) {
		r->started_ms = now_ms;
		r->leader_changes_seen = leader_changes;
		return false;
	}
	if (now_ms - r->started_ms < RINGS_STEP_MS)
		return false;
	secs = (double)(now_ms - r->started_ms) / 1000.0;
	s = &r->s[r->head];
	memset(s, 0, sizeof(*s));
	s->wall_ms = wall_ms;
	s->xacts_s = (double)r->xacts / secs;
	s->queries_s = (double)r->queries / secs;
	s->avg_xact_ms = r->xacts ? (double)r->xact_us / 1000.0 / (double)r->xacts : 0;
	s->p99_xact_ms = rings_quantile_ms(r->hist, 0.99);
	s->waiting = waiting;
	s->errors_s = (double)r->errors / secs;
	s->leader_changed = leader_changes != r->leader_changes_seen;
	s->xacts = r->xacts;
	s->queries = r->queries;
	s->errors = r->errors;
	r->head = (r->head + 1) % RINGS_SAMPLES;
	if (r->n < RINGS_SAMPLES)
		r->n++;
	r->started_ms = now_ms;
	r->leader_changes_seen = leader_changes;
	r->xacts = r->xact_us = r->queries = r->errors = 0;
	memset(r->hist, 0, sizeof(r->hist));
	return true;
}

const struct proxy_sample *rings_at(const struct proxy_rings *r, size_t i)
{
	return &r->s[(r->head + RINGS_SAMPLES - r->n + i) % RINGS_SAMPLES];
}
