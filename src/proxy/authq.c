#include "proxy/authq.h"
#include "common/evloop.h"
#include "common/log.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

struct job {
	STAILQ_ENTRY(job) entry;
	struct proxy_authq_result result;
	char dbname[64], host[256], auth_user[64], auth_password[256], query[512];
	int port;
};

STAILQ_HEAD(job_list, job);

struct proxy_authq {
	struct cmn_loop *loop;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct job_list todo, done;
	bool stop;
};

static void lookup(struct job *j)
{
	char port[16];
	/* Bounded: a hung primary must not hold every dynamic login for ever. */
	const char *keys[] = {"host",
			      "port",
			      "user",
			      "password",
			      "dbname",
			      "connect_timeout",
			      "options",
			      "keepalives_idle",
			      "tcp_user_timeout",
			      "application_name",
			      NULL};
	const char *vals[] = {j->host,
			      port,
			      j->auth_user,
			      j->auth_password,
			      j->dbname,
			      "3",
			      "-c statement_timeout=5000",
			      "5",
			      "5000",
			      "pgwarden-proxy-auth",
			      NULL};
	const char *params[1] = {j->result.user};
	PGconn *c;
	PGresult *r;

	snprintf(port, sizeof(port), "%d", j->port);
	c = PQconnectdbParams(keys, vals, 0);
	if (PQstatus(c) != CONNECTION_OK) {
		snprintf(j->result.error, sizeof(j->result.error),
			 "auth_query: cannot connect as %s: %s", j->auth_user, PQerrorMessage(c));
		PQfinish(c);
		return;
	}
	r = PQexecParams(c, j->query, 1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		snprintf(j->result.error, sizeof(j->result.error), "auth_query failed: %s",
			 PQerrorMessage(c));
	} else if (PQntuples(r) >= 1 && PQnfields(r) >= 1) {
		/* (usename, passwd) as PgBouncer's default, or just the secret. */
		int col = PQnfields(r) >= 2 ? 1 : 0;

		if (!PQgetisnull(r, 0, col)) {
			snprintf(j->result.secret, sizeof(j->result.secret), "%s",
				 PQgetvalue(r, 0, col));
			j->result.found = j->result.secret[0] != '\0';
		}
	}
	PQclear(r);
	PQfinish(c);
}

static void *worker(void *arg)
{
	struct proxy_authq *q = arg;

	pthread_mutex_lock(&q->lock);
	while (!q->stop) {
		struct job *j = STAILQ_FIRST(&q->todo);

		if (!j) {
			pthread_cond_wait(&q->cond, &q->lock);
			continue;
		}
		STAILQ_REMOVE_HEAD(&q->todo, entry);
		pthread_mutex_unlock(&q->lock);
		lookup(j);
		memset(j->auth_password, 0, sizeof(j->auth_password));
		pthread_mutex_lock(&q->lock);
		STAILQ_INSERT_TAIL(&q->done, j, entry);
		cmn_loop_wake(q->loop);
	}
	pthread_mutex_unlock(&q->lock);
	return NULL;
}

int proxy_authq_start(struct cmn_loop *loop, struct proxy_authq **out)
{
	struct proxy_authq *q = calloc(1, sizeof(*q));

	if (!q)
		return PGW_ENOMEM;
	q->loop = loop;
	pthread_mutex_init(&q->lock, NULL);
	pthread_cond_init(&q->cond, NULL);
	STAILQ_INIT(&q->todo);
	STAILQ_INIT(&q->done);
	if (pthread_create(&q->thread, NULL, worker, q) != 0) {
		log_error("cannot start the auth_query thread");
		free(q);
		return PGW_ERR;
	}
	*out = q;
	return PGW_OK;
}

void proxy_authq_stop(struct proxy_authq *q)
{
	struct job *j;

	if (!q)
		return;
	pthread_mutex_lock(&q->lock);
	q->stop = true;
	pthread_cond_signal(&q->cond);
	pthread_mutex_unlock(&q->lock);
	pthread_join(q->thread, NULL);
	while ((j = STAILQ_FIRST(&q->todo))) {
		STAILQ_REMOVE_HEAD(&q->todo, entry);
		free(j);
	}
	while ((j = STAILQ_FIRST(&q->done))) {
		STAILQ_REMOVE_HEAD(&q->done, entry);
		free(j);
	}
	pthread_cond_destroy(&q->cond);
	pthread_mutex_destroy(&q->lock);
	free(q);
}

int proxy_authq_request(struct proxy_authq *q, uint64_t client_id, const char *user,
			const char *dbname, const char *host, int port, const char *auth_user,
			const char *auth_password, const char *query)
{
	struct job *j;
	size_t queued = 0;

	pthread_mutex_lock(&q->lock);
	STAILQ_FOREACH(j, &q->todo, entry)
	queued++;
	pthread_mutex_unlock(&q->lock);
	if (queued >= 1000)
		return PGW_EUNAVAIL; /* the primary is slow: do not pile up */
	j = calloc(1, sizeof(*j));
	if (!j)
		return PGW_ENOMEM;
	j->result.client_id = client_id;
	snprintf(j->result.user, sizeof(j->result.user), "%s", user);
	snprintf(j->dbname, sizeof(j->dbname), "%s", dbname);
	snprintf(j->host, sizeof(j->host), "%s", host);
	snprintf(j->auth_user, sizeof(j->auth_user), "%s", auth_user);
	snprintf(j->auth_password, sizeof(j->auth_password), "%s", auth_password);
	snprintf(j->query, sizeof(j->query), "%s", query);
	j->port = port;
	pthread_mutex_lock(&q->lock);
	STAILQ_INSERT_TAIL(&q->todo, j, entry);
	pthread_cond_signal(&q->cond);
	pthread_mutex_unlock(&q->lock);
	return PGW_OK;
}

bool proxy_authq_take(struct proxy_authq *q, struct proxy_authq_result *out)
{
	struct job *j;

	pthread_mutex_lock(&q->lock);
	j = STAILQ_FIRST(&q->done);
	if (j)
		STAILQ_REMOVE_HEAD(&q->done, entry);
	pthread_mutex_unlock(&q->lock);
	if (!j)
		return false;
	*out = j->result;
	free(j);
	return true;
}
