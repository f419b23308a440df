/*
 * The status page's charts: the last 15 minutes in fixed-size rings, one sample every
 * 5 s (transactions, queries, average and p99 transaction time, clients waiting, errors
 * sent to clients, leader changes). The event loop counts into the interval in
 * progress (a histogram bucket per transaction: no allocation, no lock) and closes it
 * from its tick.
 */
#ifndef PGW_PROXY_RINGS_H
#define PGW_PROXY_RINGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RINGS_STEP_MS	5000
#define RINGS_SAMPLES	180 /* 15 minutes of 5 s */
#define RINGS_WINDOW_MS ((int64_t)RINGS_STEP_MS * RINGS_SAMPLES)
/* Four buckets per power of two of microseconds (within 25 %), up to about 2.4 hours. */
#define RINGS_BUCKETS 128

struct proxy_sample {
	int64_t wall_ms;  /* the end of the interval, wall clock */
	double xacts_s;	  /* transactions per second */
	double queries_s; /* queries per second */
	double avg_xact_ms;
	double p99_xact_ms; /* the upper bound of the bucket holding the 99th percentile */
	double waiting;	    /* clients waiting for a server at the end of the interval */
	double errors_s;    /* errors sent to clients: server lost, timeouts, refusals */
	bool leader_changed;
	uint64_t xacts, queries, errors; /* the interval's counts */
};

struct proxy_rings {
	struct proxy_sample s[RINGS_SAMPLES];
	size_t head;	    /* the next slot written */
	size_t n;	    /* samples held (at most RINGS_SAMPLES) */
	int64_t started_ms; /* monotonic start of the interval in progress (0: none yet) */
	/* the interval in progress */
	uint64_t xacts, xact_us, queries, errors;
	uint32_t hist[RINGS_BUCKETS];
	uint64_t leader_changes_seen;
};

/* The bucket of a transaction of us microseconds, and a bucket's upper bound (ms). */
int rings_bucket(uint64_t us);
double rings_bucket_upper_ms(int bucket);
/* The upper bound (ms) of the bucket holding quantile q (0..1) of hist; 0 if empty. */
double rings_quantile_ms(const uint32_t *hist, double q);

/* One transaction ended after us microseconds (the hot path). */
static inline void rings_xact(struct proxy_rings *r, uint64_t us)
{
	r->xacts++;
	r->xact_us += us;
	r->hist[rings_bucket(us)]++;
}

/* Whether rings_tick would take a sample (or start the first interval) at now_ms. */
static inline bool rings_due(const struct proxy_rings *r, int64_t now_ms)
{
	return !r->started_ms || now_ms - r->started_ms >= RINGS_STEP_MS;
}

/*
 * From the loop's tick: closes the interval in progress when it is RINGS_STEP_MS old
 * (now_ms monotonic, wall_ms wall clock), with the clients waiting now and the proxy's
 * leader change count. Returns true when a sample was added.
 */
bool rings_tick(struct proxy_rings *r, int64_t now_ms, int64_t wall_ms, int waiting,
		uint64_t leader_changes);
/* The i-th sample, oldest first (i < r->n). */
const struct proxy_sample *rings_at(const struct proxy_rings *r, size_t i);

#endif
