#include "proxy/stats.h"
#include "common/timeutil.h"

#include <stdlib.h>
#include <string.h>

int proxy_count_clients(const struct proxy_client_list *l)
{
	const struct proxy_client *c;
	int n = 0;

	TAILQ_FOREACH(c, l, entry)
	n++;
	return n;
}

int proxy_count_servers(const struct proxy_server_list *l)
{
	const struct proxy_server *s;
	int n = 0;

	TAILQ_FOREACH(s, l, entry)
	n++;
	return n;
}

const char *proxy_port_name(enum proxy_port port)
{
	switch (port) {
	case PROXY_PORT_POOLED:
		return "pooled";
	case PROXY_PORT_PRIMARY:
		return "primary";
	default:
		return "replica";
	}
}

int proxy_view_build(struct proxy_view *v, const struct proxy *p)
{
	const struct proxy_pool *pool;
	size_t n = 0;

	memset(v, 0, sizeof(*v));
	v->p = p;
	v->now = cmn_now_ms();
	v->uptime_s = (double)(v->now - p->started_ms) / 1000.0;
	v->confirmed_age_s =
	    p->topo.confirmed_ms ? (double)(v->now - p->topo.confirmed_ms) / 1000.0 : -1;
	TAILQ_FOREACH(pool, &p->pools, entry)
	n++;
	if (n) {
		v->rows = calloc(n, sizeof(*v->rows));
		if (!v->rows)
			return PGW_ENOMEM;
	}
	TAILQ_FOREACH(pool, &p->pools, entry)
	{
		struct proxy_pool_row *r = &v->rows[v->n_rows++];
		const struct proxy_client *oldest = TAILQ_FIRST(&pool->waiting);

		r->pool = pool;
		r->cl_active = proxy_count_clients(&pool->active_clients);
		r->cl_idle = proxy_count_clients(&pool->idle_clients);
		r->cl_waiting = proxy_count_clients(&pool->waiting);
		r->sv_active = proxy_count_servers(&pool->active);
		r->sv_idle = proxy_count_servers(&pool->idle);
		r->sv_used = proxy_count_servers(&pool->resetting);
		r->sv_login = proxy_count_servers(&pool->login);
		if (oldest && oldest->wait_since_ms) {
			r->maxwait_ms = v->now - oldest->wait_since_ms;
			r->maxwait_s = (double)r->maxwait_ms / 1000.0;
		}
		v->cl_active += r->cl_active;
		v->cl_idle += r->cl_idle;
		v->cl_waiting += r->cl_waiting;
		v->sv[0] += r->sv_active;
		v->sv[1] += r->sv_idle;
		v->sv[2] += r->sv_used;
		v->sv[3] += r->sv_login;
	}
	v->cl_login = proxy_count_clients(&p->login_clients);
	v->cl_active += proxy_count_clients(&p->admin_clients);
	return PGW_OK;
}

void proxy_view_free(struct proxy_view *v)
{
	free(v->rows);
	v->rows = NULL;
	v->n_rows = 0;
}
