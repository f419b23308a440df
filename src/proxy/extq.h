/*
 * The extended query protocol under transaction pooling.
 *
 * A server connection answers messages in the order it received them. The
 * proxy keeps one slot per message that gets an answer (Parse, Bind, Close,
 * Describe, Execute, Sync, Query, FunctionCall), so it knows which message each
 * answer belongs to. That lets it send messages of its own and drop their
 * answers (a Parse that prepares a client's statement on a server that lacks
 * it, a Close that evicts one, SET that restores a client's parameters), and
 * answer some client messages itself at the right place in the stream (a Parse
 * of a statement the server already holds, a Close of a statement).
 *
 * Named prepared statements follow their client, as PgBouncer's
 * max_prepared_statements does: the client's name maps to a statement (query
 * text and parameter types) shared by the whole proxy, which servers know as
 * "PGW_<id>". A server keeps at most max_prepared_statements of them, the least
 * recently used goes first.
 *
 * Everything here is single-threaded (the proxy's event loop) and does no I/O.
 */
#ifndef PGW_EXTQ_H
#define PGW_EXTQ_H

#include "common/err.h"
#include "common/util.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct extq_held;

/* A distinct statement: the body of a Parse after its name. Reference-counted. */
struct extq_stmt {
	uint64_t id; /* servers know it as "PGW_<random>_<id in hex>" */
	uint32_t hash;
	uint32_t refs;
	struct extq_stmt *next; /* registry chain */
	size_t len;
	uint8_t body[]; /* query\0, Int16 n, n x Int32 type oids */
};

/* The registry's statement for this Parse body, with one more reference. */
struct extq_stmt *extq_stmt_get(const uint8_t *body, size_t len);
void extq_stmt_put(struct extq_stmt *s);
/* Statements alive in the registry (for SHOW and tests). */
size_t extq_stmt_count(void);
/* Bytes of every statement body in the registry. */
size_t extq_stmt_bytes(void);
#define EXTQ_NAME_SIZE 40
void extq_stmt_name(const struct extq_stmt *s, char out[EXTQ_NAME_SIZE]);

/* A client's statement names. */
struct extq_name;
struct extq_names {
	struct extq_name **b;
	size_t nb, count;
	size_t bytes; /* statement bodies bound by these names (a shared one counted each time) */
};
/* Binds name to stmt (a new reference), replacing an older binding. */
int extq_names_set(struct extq_names *m, const char *name, struct extq_stmt *stmt) PGW_WUR;
struct extq_stmt *extq_names_get(const struct extq_names *m, const char *name);
void extq_names_del(struct extq_names *m, const char *name);
void extq_names_free(struct extq_names *m);

enum extq_act {
	EXTQ_PASS,  /* the client's message: its answers go to the client */
	EXTQ_DROP,  /* the proxy's own message: its answers are dropped (errors of
		     extended messages excepted: the client's next message fails) */
	EXTQ_SYNTH, /* the client's message answered by the proxy: nothing was sent */
};

struct extq_slot {
	uint64_t stmt; /* Parse: the statement's id */
	uint8_t msg;   /* the frontend message type */
	uint8_t act;   /* enum extq_act */
	uint8_t synth; /* EXTQ_SYNTH: the answer's type ('1' ParseComplete, '3' CloseComplete) */
};

/* What a server connection owes, and the statements it holds. */
struct extq_server {
	struct extq_slot *v; /* ring */
	size_t head, len, cap;
	bool skipping;	   /* after an error, the server ignores everything up to a Sync */
	bool desync;	   /* an answer matched no slot: do not reuse this connection */
	bool dirty;	   /* DISCARD / DEALLOCATE ran: its statements are unknown */
	bool has_settings; /* runs with a client's startup settings (set by the pooler) */
	bool watch_reset;  /* its client gave startup values a RESET must bring back */
	bool reset_seen;   /* ... and a client query said RESET or DISCARD: they may be gone */
	struct extq_held *held;
	size_t n_held, cap_held;
	uint64_t clock;
};

void extq_server_free(struct extq_server *s);
static inline size_t extq_pending(const struct extq_server *s)
{
	return s->len;
}
/* The next answer due is one the proxy makes itself. */
static inline bool extq_synth_due(const struct extq_server *s)
{
	return s->len && s->v[s->head].act == EXTQ_SYNTH;
}

/*
 * A frontend message of a client: total bytes (type byte + length + body), of
 * which the first avail are at msg. The caller gives the whole message, except
 * that a Bind's head (extq_bind_head) is enough, and that a message passed on as
 * it arrives needs only its header (a Query or a Parse known only in part is
 * assumed to drop statements and settings). When the server must get something
 * else, appends it to *to_server and sets *replaced to the count of leading bytes
 * of msg it replaces (the rest of the message then passes as it is); else
 * *replaced = 0 and the message goes as it is. Pushes the slots. max_stmts 0
 * turns statement tracking off (slots are still kept). PGW_OK, PGW_ENOMEM.
 */
int extq_client_message(struct extq_names *names, struct extq_server *srv, int max_stmts,
			const uint8_t *msg, size_t avail, size_t total, struct cmn_buf *to_server,
			size_t *replaced) PGW_WUR;

/* Bytes of a Bind message (avail of them at msg) up to and with its statement name's
 * terminator; 0 when they are not all there. */
size_t extq_bind_head(const uint8_t *msg, size_t avail);

/* The proxy's own simple Query (its answers are dropped). */
int extq_push_own_query(struct extq_server *srv) PGW_WUR;

/* What the client's own messages still wait for: *readies = ReadyForQuery messages
 * (Query, FunctionCall, Sync), *tail = answers owed after the last of them. */
void extq_owed(const struct extq_server *srv, int *readies, bool *tail);

/* A backend message's fate, decided at its header. */
struct extq_verdict {
	bool drop;	     /* do not forward it */
	bool own_error;	     /* an error of the proxy's own Query (dropped) */
	uint8_t owner_msg;   /* the frontend message it answers (0: none known) */
	uint64_t owner_stmt; /* ... a Parse, Bind or Describe of this statement (0: none) */
};
void extq_backend(struct extq_server *srv, uint8_t type, struct extq_verdict *v);

/* The server says it lacks statement id (26000 at a Bind or Describe of it): it is
 * no longer counted as held, and the server's other statements are unknown (dirty). */
void extq_statement_gone(struct extq_server *srv, uint64_t id);

/* At a message boundary of the server stream: the type of the next answer the
 * proxy makes itself (the slot is consumed), or 0. */
uint8_t extq_next_synth(struct extq_server *srv);

/* Builds the proxy's answer of that type. */
int extq_put_synth(struct cmn_buf *b, uint8_t type) PGW_WUR;

#endif
