#include "common/httpguard.h"
#include "common/log.h"
#include "common/timeutil.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>

/* One connection: on the guard's list from its start to its close. */
struct guarded {
	struct guarded *prev, *next;
	int fd;
	ino_t ino;	  /* the socket's, so a number reused meanwhile is never touched */
	int64_t since_ms; /* connected, or its last request completed */
	bool in_request;  /* headers arrived: the request is being handled */
	bool cut;	  /* shut down by the watchdog */
};

struct cmn_http_guard {
	pthread_mutex_t lock;
	pthread_cond_t wake;
	pthread_t thread;
	struct guarded *head;
	int deadline_ms;
	bool stop;
};

static void *watchdog(void *arg)
{
	struct cmn_http_guard *g = arg;

	pthread_mutex_lock(&g->lock);
	while (!g->stop) {
		struct timespec ts;
		int64_t now = cmn_now_ms();
		int cut = 0;

		for (struct guarded *c = g->head; c; c = c->next) {
			struct stat st;

			if (c->in_request || c->cut || now - c->since_ms < g->deadline_ms)
				continue;
			if (fstat(c->fd, &st) != 0 || st.st_ino != c->ino)
				continue;
			/* The connection's own thread sees the end and closes it. */
			(void)shutdown(c->fd, SHUT_RDWR);
			c->cut = true;
			cut++;
		}
		if (cut)
			log_info(
			    "HTTP: closed %d connection(s) whose request did not arrive within "
			    "%d ms",
			    cut, g->deadline_ms);
		cmn_deadline_ts(CLOCK_REALTIME, 250, &ts);
		pthread_cond_timedwait(&g->wake, &g->lock, &ts);
	}
	pthread_mutex_unlock(&g->lock);
	return NULL;
}

int cmn_http_guard_new(int deadline_ms, struct cmn_http_guard **out)
{
	struct cmn_http_guard *g = calloc(1, sizeof(*g));

	if (!g)
		return PGW_ENOMEM;
	g->deadline_ms = deadline_ms;
	pthread_mutex_init(&g->lock, NULL);
	pthread_cond_init(&g->wake, NULL);
	if (pthread_create(&g->thread, NULL, watchdog, g) != 0) {
		pthread_cond_destroy(&g->wake);
		pthread_mutex_destroy(&g->lock);
		free(g);
		return PGW_ERR;
	}
	*out = g;
	return PGW_OK;
}

void cmn_http_guard_free(struct cmn_http_guard *g)
{
	if (!g)
		return;
	pthread_mutex_lock(&g->lock);
	g->stop = true;
	pthread_cond_signal(&g->wake);
	pthread_mutex_unlock(&g->lock);
	pthread_join(g->thread, NULL);
	while (g->head) {
		struct guarded *c = g->head;

		g->head = c->next;
		free(c);
	}
	pthread_cond_destroy(&g->wake);
	pthread_mutex_destroy(&g->lock);
	free(g);
}

void cmn_http_guard_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
			   enum MHD_ConnectionNotificationCode toe)
{
	struct cmn_http_guard *g = cls;
	struct guarded *c = *socket_context;

	if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
		const union MHD_ConnectionInfo *info =
		    MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);

		struct stat st;

		c = info && fstat(info->connect_fd, &st) == 0 ? calloc(1, sizeof(*c)) : NULL;
		*socket_context = c;
		if (!c)
			return; /* unguarded: libmicrohttpd's idle timeout still applies */
		c->fd = info->connect_fd;
		c->ino = st.st_ino;
		c->since_ms = cmn_now_ms();
		pthread_mutex_lock(&g->lock);
		c->next = g->head;
		if (g->head)
			g->head->prev = c;
		g->head = c;
		pthread_mutex_unlock(&g->lock);
		return;
	}
	if (!c) /* MHD_CONNECTION_NOTIFY_CLOSED, before the socket is closed */
		return;
	pthread_mutex_lock(&g->lock);
	if (c->prev)
		c->prev->next = c->next;
	else
		g->head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	pthread_mutex_unlock(&g->lock);
	free(c);
	*socket_context = NULL;
}

static struct guarded *guarded_of(struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *info =
	    MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

	return info ? info->socket_context : NULL;
}

void cmn_http_guard_begin(struct cmn_http_guard *g, struct MHD_Connection *conn)
{
	struct guarded *c = guarded_of(conn);

	if (!c)
		return;
	pthread_mutex_lock(&g->lock);
	c->in_request = true;
	pthread_mutex_unlock(&g->lock);
}

void cmn_http_guard_end(struct cmn_http_guard *g, struct MHD_Connection *conn)
{
	struct guarded *c = guarded_of(conn);

	if (!c)
		return;
	pthread_mutex_lock(&g->lock);
	c->in_request = false;
	c->since_ms = cmn_now_ms(); /* a kept-alive connection: the next request's deadline */
	pthread_mutex_unlock(&g->lock);
}
