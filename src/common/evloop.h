/*
 * A small epoll reactor: fd readiness callbacks, one periodic tick, and a
 * thread-safe wake-up (eventfd) for work handed over by other threads. Callbacks
 * may close and free other connections: owners mark objects dead and free them
 * in the after-batch hook, never inside a callback (the batch may still point at
 * them).
 */
#ifndef PGW_EVLOOP_H
#define PGW_EVLOOP_H

#include "common/err.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/epoll.h>

struct cmn_loop;
struct cmn_io;

typedef void (*cmn_io_fn)(struct cmn_loop *l, struct cmn_io *io, uint32_t events);
typedef void (*cmn_loop_fn)(struct cmn_loop *l, void *arg);

/* Embedded in the owner's object; io->fd < 0 when not registered. */
struct cmn_io {
	int fd;
	uint32_t events; /* EPOLLIN / EPOLLOUT currently asked for */
	cmn_io_fn fn;
	void *owner;
};

int cmn_loop_new(struct cmn_loop **out) PGW_WUR;
void cmn_loop_free(struct cmn_loop *l);

int cmn_io_add(struct cmn_loop *l, struct cmn_io *io, int fd, uint32_t events, cmn_io_fn fn,
	       void *owner) PGW_WUR;
/* Changes the events asked for (no system call when unchanged). */
int cmn_io_set(struct cmn_loop *l, struct cmn_io *io, uint32_t events);
/* Unregisters (the fd stays open: the owner closes it). */
void cmn_io_del(struct cmn_loop *l, struct cmn_io *io);

/* tick runs every interval_ms; after runs after each batch of events. */
void cmn_loop_set_tick(struct cmn_loop *l, int interval_ms, cmn_loop_fn tick, void *arg);
void cmn_loop_set_after(struct cmn_loop *l, cmn_loop_fn after, void *arg);
/* woken runs on the loop thread after cmn_loop_wake from any thread. */
void cmn_loop_set_woken(struct cmn_loop *l, cmn_loop_fn woken, void *arg);
void cmn_loop_wake(struct cmn_loop *l);

/* Runs until cmn_loop_stop (or a fatal epoll error: PGW_ERR). */
int cmn_loop_run(struct cmn_loop *l) PGW_WUR;
void cmn_loop_stop(struct cmn_loop *l);

#endif
