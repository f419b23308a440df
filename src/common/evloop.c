#include "common/evloop.h"
#include "common/log.h"
#include "common/timeutil.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define MAX_EVENTS 256

struct cmn_loop {
	int epfd;
	struct cmn_io wake_io;
	volatile int stop;
	int tick_ms;
	int64_t next_tick_ms;
	cmn_loop_fn tick, after, woken;
	void *tick_arg, *after_arg, *woken_arg;
};

static void on_wake(struct cmn_loop *l, struct cmn_io *io, uint32_t events)
{
	uint64_t v;

	(void)events;
	while (read(io->fd, &v, sizeof(v)) == sizeof(v))
		;
	if (l->woken)
		l->woken(l, l->woken_arg);
}

int cmn_loop_new(struct cmn_loop **out)
{
	struct cmn_loop *l = calloc(1, sizeof(*l));
	int efd;

	if (!l)
		return PGW_ENOMEM;
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	l->wake_io.fd = -1;
	if (l->epfd < 0 || efd < 0 || cmn_io_add(l, &l->wake_io, efd, EPOLLIN, on_wake, l) != 0) {
		log_error("cannot create the event loop: %s", strerror(errno));
		if (efd >= 0)
			close(efd);
		if (l->epfd >= 0)
			close(l->epfd);
		free(l);
		return PGW_ERR;
	}
	*out = l;
	return PGW_OK;
}

void cmn_loop_free(struct cmn_loop *l)
{
	if (!l)
		return;
	close(l->wake_io.fd);
	close(l->epfd);
	free(l);
}

int cmn_io_add(struct cmn_loop *l, struct cmn_io *io, int fd, uint32_t events, cmn_io_fn fn,
	       void *owner)
{
	struct epoll_event ev = {.events = events, .data.ptr = io};

	io->fd = fd;
	io->events = events;
	io->fn = fn;
	io->owner = owner;
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
		log_error("epoll_ctl(ADD, %d): %s", fd, strerror(errno));
		io->fd = -1;
		return PGW_ERR;
	}
	return PGW_OK;
}

int cmn_io_set(struct cmn_loop *l, struct cmn_io *io, uint32_t events)
{
	struct epoll_event ev = {.events = events, .data.ptr = io};

	if (io->fd < 0 || io->events == events)
		return PGW_OK;
	if (epoll_ctl(l->epfd, EPOLL_CTL_MOD, io->fd, &ev) != 0) {
		log_error("epoll_ctl(MOD, %d): %s", io->fd, strerror(errno));
		return PGW_ERR;
	}
	io->events = events;
	return PGW_OK;
}

void cmn_io_del(struct cmn_loop *l, struct cmn_io *io)
{
	if (io->fd < 0)
		return;
	if (epoll_ctl(l->epfd, EPOLL_CTL_DEL, io->fd, NULL) != 0)
		log_debug("epoll_ctl(DEL, %d): %s", io->fd, strerror(errno));
	io->fd = -1;
	io->events = 0;
}

void cmn_loop_set_tick(struct cmn_loop *l, int interval_ms, cmn_loop_fn tick, void *arg)
{
	l->tick_ms = interval_ms;
	l->tick = tick;
	l->tick_arg = arg;
	l->next_tick_ms = cmn_now_ms() + interval_ms;
}

void cmn_loop_set_after(struct cmn_loop *l, cmn_loop_fn after, void *arg)
{
	l->after = after;
	l->after_arg = arg;
}

void cmn_loop_set_woken(struct cmn_loop *l, cmn_loop_fn woken, void *arg)
{
	l->woken = woken;
	l->woken_arg = arg;
}

void cmn_loop_wake(struct cmn_loop *l)
{
	uint64_t one = 1;

	if (write(l->wake_io.fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_debug("eventfd write: %s", strerror(errno));
}

void cmn_loop_stop(struct cmn_loop *l)
{
	l->stop = 1;
	cmn_loop_wake(l);
}

int cmn_loop_run(struct cmn_loop *l)
{
	struct epoll_event evs[MAX_EVENTS];

	while (!l->stop) {
		int timeout = -1, n;

		if (l->tick) {
			int64_t left = l->next_tick_ms - cmn_now_ms();

			timeout = left < 0 ? 0 : (int)left;
		}
		n = epoll_wait(l->epfd, evs, MAX_EVENTS, timeout);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			log_error("epoll_wait: %s", strerror(errno));
			return PGW_ERR;
		}
		for (int i = 0; i < n; i++) {
			struct cmn_io *io = evs[i].data.ptr;

			if (io->fd >= 0)
				io->fn(l, io, evs[i].events);
		}
		if (l->after)
			l->after(l, l->after_arg);
		if (l->tick && cmn_now_ms() >= l->next_tick_ms) {
			l->next_tick_ms = cmn_now_ms() + l->tick_ms;
			l->tick(l, l->tick_arg);
			if (l->after)
				l->after(l, l->after_arg);
		}
	}
	return PGW_OK;
}
