#include "cluster/follow.h"
#include "common/log.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

static bool on_watch(void *arg, const struct etcd_header *h, const struct etcd_event *ev, size_t n)
{
	struct dcs_follow *f = arg;

	dcs_cache_apply(f->cache, h, ev, n);
	f->changed(f->arg, ev, n);
	return !f->stop;
}

static void *follow_main(void *arg)
{
	struct dcs_follow *f = arg;
	struct etcd_client *c = NULL;

	if (etcd_client_new(&f->etcd, &c) != PGW_OK) {
		log_error("cannot follow the cluster in etcd: no client");
		return NULL;
	}
	while (!f->stop) {
		struct etcd_range_result r;
		int64_t compact = 0;

		if (etcd_range_prefix(c, f->dcs->prefix, &r) == PGW_OK) {
			int64_t rev = r.header.revision;

			dcs_cache_load(f->cache, &r);
			etcd_range_result_free(&r);
			f->changed(f->arg, NULL, 0);
			if (etcd_watch_run(c, f->dcs->prefix, rev + 1, on_watch, f, &f->restart,
					   &compact) != PGW_OK)
				log_debug("etcd watch ended; reading the cluster again");
			if (f->restart && !f->stop)
				log_info("etcd watch restarted (the view differed from etcd)");
			f->restart = f->stop;
		}
		dcs_cache_invalidate(f->cache);
		if (f->stop)
			break;
		f->changed(f->arg, NULL, 0);
		for (int i = 0; i < 5 && !f->stop; i++)
			usleep(100000);
	}
	etcd_client_free(c);
	return NULL;
}

int dcs_follow_start(struct dcs_follow *f)
{
	int rc;

	f->stop = f->restart = false;
	rc = pthread_create(&f->thread, NULL, follow_main, f);
	f->started = rc == 0;
	if (rc != 0) {
		log_error("cannot start the etcd follower thread: %s", strerror(rc));
		return PGW_ERR;
	}
	return PGW_OK;
}

void dcs_follow_restart(struct dcs_follow *f)
{
	f->restart = true;
}

void dcs_follow_stop(struct dcs_follow *f)
{
	f->stop = true;
	f->restart = true;
	if (f->started)
		pthread_join(f->thread, NULL);
	f->started = false;
}
