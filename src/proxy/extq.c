/*
 * The extended query protocol under transaction pooling: answer slots, the
 * statement registry, client names and the statements each server holds.
 * See extq.h.
 */
#include "proxy/extq.h"
#include "pgproto/scram.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the statement registry ---- */

static struct extq_stmt **reg_b;
static size_t reg_nb, reg_count, reg_bytes;
static uint64_t reg_next_id = 1;

static uint32_t hash_bytes(const void *d, size_t n)
{
	const uint8_t *p = d;
	uint32_t h = 2166136261u; /* FNV-1a */

	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= 16777619u;
	}
	return h;
}

static int reg_grow(void)
{
	size_t nb = reg_nb ? reg_nb * 2 : 256;
	struct extq_stmt **b = calloc(nb, sizeof(*b));

	if (!b)
		return PGW_ENOMEM;
	for (size_t i = 0; i < reg_nb; i++) {
		struct extq_stmt *s = reg_b[i], *next;

		for (; s; s = next) {
			next = s->next;
			s->next = b[s->hash & (nb - 1)];
			b[s->hash & (nb - 1)] = s;
		}
	}
	free(reg_b);
	reg_b = b;
	reg_nb = nb;
	return PGW_OK;
}

struct extq_stmt *extq_stmt_get(const uint8_t *body, size_t len)
{
	uint32_t h = hash_bytes(body, len);
	struct extq_stmt *s;

	if (reg_count >= reg_nb && reg_grow() != PGW_OK && !reg_nb)
		return NULL;
	for (s = reg_b[h & (reg_nb - 1)]; s; s = s->next)
		if (s->hash == h && s->len == len && memcmp(s->body, body, len) == 0) {
			s->refs++;
			return s;
		}
	s = malloc(sizeof(*s) + len);
	if (!s)
		return NULL;
	s->id = reg_next_id++;
	s->hash = h;
	s->refs = 1;
	s->len = len;
	memcpy(s->body, body, len);
	s->next = reg_b[h & (reg_nb - 1)];
	reg_b[h & (reg_nb - 1)] = s;
	reg_count++;
	reg_bytes += len;
	return s;
}

void extq_stmt_put(struct extq_stmt *s)
{
	struct extq_stmt **pp;

	if (!s || --s->refs > 0)
		return;
	for (pp = &reg_b[s->hash & (reg_nb - 1)]; *pp; pp = &(*pp)->next)
		if (*pp == s) {
			*pp = s->next;
			break;
		}
	reg_count--;
	reg_bytes -= s->len;
	free(s);
	if (reg_count == 0) {
		free(reg_b);
		reg_b = NULL;
		reg_nb = 0;
	}
}

size_t extq_stmt_count(void)
{
	return reg_count;
}

size_t extq_stmt_bytes(void)
{
	return reg_bytes;
}

/*
 * PGW_<random>_<id>: the random part, drawn once per process, keeps a client of the
 * same pool from naming (and so replacing, with dynamic SQL) a statement the proxy
 * prepared for others without first looking it up on the server.
 */
void extq_stmt_name(const struct extq_stmt *s, char out[EXTQ_NAME_SIZE])
{
	static char prefix[17];

	if (!prefix[0]) {
		uint64_t r = 0;

		if (pgp_random(&r, sizeof(r)) != PGW_OK)
			r = (uint64_t)(uintptr_t)&r ^
			    (uint64_t)s->id; /* never reached in practice */
		snprintf(prefix, sizeof(prefix), "%016" PRIx64, r);
	}
	snprintf(out, EXTQ_NAME_SIZE, "PGW_%s_%" PRIx64, prefix, s->id);
}

/* ---- a client's names ---- */

struct extq_name {
	struct extq_name *next;
	struct extq_stmt *stmt;
	uint32_t hash;
	char name[];
};

static struct extq_name **names_slot(const struct extq_names *m, const char *name, uint32_t h)
{
	struct extq_name **pp = &m->b[h & (m->nb - 1)];

	for (; *pp; pp = &(*pp)->next)
		if ((*pp)->hash == h && strcmp((*pp)->name, name) == 0)
			break;
	return pp;
}

int extq_names_set(struct extq_names *m, const char *name, struct extq_stmt *stmt)
{
	uint32_t h = hash_bytes(name, strlen(name));
	struct extq_name **pp, *n;

	if (m->count >= m->nb) {
		size_t nb = m->nb ? m->nb * 2 : 8;
		struct extq_name **b = calloc(nb, sizeof(*b));

		if (!b)
			return PGW_ENOMEM;
		for (size_t i = 0; i < m->nb; i++) {
			struct extq_name *e = m->b[i], *next;

			for (; e; e = next) {
				next = e->next;
				e->next = b[e->hash & (nb - 1)];
				b[e->hash & (nb - 1)] = e;
			}
		}
		free(m->b);
		m->b = b;
		m->nb = nb;
	}
	pp = names_slot(m, name, h);
	stmt->refs++;
	if (*pp) {
		m->bytes -= (*pp)->stmt->len;
		m->bytes += stmt->len;
		extq_stmt_put((*pp)->stmt);
		(*pp)->stmt = stmt;
		return PGW_OK;
	}
	n = malloc(sizeof(*n) + strlen(name) + 1);
	if (!n) {
		stmt->refs--;
		return PGW_ENOMEM;
	}
	n->next = NULL;
	n->stmt = stmt;
	m->bytes += stmt->len;
	n->hash = h;
	strcpy(n->name, name);
	*pp = n;
	m->count++;
	return PGW_OK;
}

struct extq_stmt *extq_names_get(const struct extq_names *m, const char *name)
{
	struct extq_name **pp;

	if (!m->nb)
		return NULL;
	pp = names_slot(m, name, hash_bytes(name, strlen(name)));
	return *pp ? (*pp)->stmt : NULL;
}

void extq_names_del(struct extq_names *m, const char *name)
{
	struct extq_name **pp, *n;

	if (!m->nb)
		return;
	pp = names_slot(m, name, hash_bytes(name, strlen(name)));
	if (!(n = *pp))
		return;
	*pp = n->next;
	m->bytes -= n->stmt->len;
	extq_stmt_put(n->stmt);
	free(n);
	m->count--;
}

void extq_names_free(struct extq_names *m)
{
	for (size_t i = 0; i < m->nb; i++) {
		struct extq_name *n = m->b[i], *next;

		for (; n; n = next) {
			next = n->next;
			extq_stmt_put(n->stmt);
			free(n);
		}
	}
	free(m->b);
	memset(m, 0, sizeof(*m));
}

/* ---- what a server holds ---- */

struct extq_held {
	struct extq_stmt *stmt;
	uint64_t used;
};

static struct extq_held *held_find(struct extq_server *srv, uint64_t id)
{
	for (size_t i = 0; i < srv->n_held; i++)
		if (srv->held[i].stmt->id == id)
			return &srv->held[i];
	return NULL;
}

static void held_remove(struct extq_server *srv, uint64_t id)
{
	struct extq_held *h = held_find(srv, id);

	if (!h)
		return;
	extq_stmt_put(h->stmt);
	*h = srv->held[--srv->n_held];
}

/* ---- the answer slots ---- */

static struct extq_slot *slot_at(const struct extq_server *srv, size_t k)
{
	return &srv->v[(srv->head + k) % srv->cap];
}

static struct extq_slot *head(const struct extq_server *srv)
{
	return srv->len ? slot_at(srv, 0) : NULL;
}

static void pop(struct extq_server *srv)
{
	srv->head = (srv->head + 1) % srv->cap;
	srv->len--;
}

static int push(struct extq_server *srv, uint8_t msg, enum extq_act act, uint8_t synth,
		uint64_t stmt)
{
	if (srv->skipping) {
		if (msg != 'S')
			return PGW_OK; /* the server ignores it: no answer */
		srv->skipping = false;
	}
	if (srv->len == srv->cap) {
		size_t cap = srv->cap ? srv->cap * 2 : 16;
		struct extq_slot *v = malloc(cap * sizeof(*v));

		if (!v)
			return PGW_ENOMEM;
		for (size_t k = 0; k < srv->len; k++)
			v[k] = *slot_at(srv, k);
		free(srv->v);
		srv->v = v;
		srv->cap = cap;
		srv->head = 0;
	}
	*slot_at(srv, srv->len) = (struct extq_slot){stmt, msg, (uint8_t)act, synth};
	srv->len++;
	return PGW_OK;
}

int extq_push_own_query(struct extq_server *srv)
{
	return push(srv, 'Q', EXTQ_DROP, 0, 0);
}

void extq_server_free(struct extq_server *srv)
{
	for (size_t i = 0; i < srv->n_held; i++)
		extq_stmt_put(srv->held[i].stmt);
	free(srv->held);
	free(srv->v);
	memset(srv, 0, sizeof(*srv));
}

void extq_owed(const struct extq_server *srv, int *readies, bool *tail)
{
	*readies = 0;
	*tail = false;
	for (size_t k = 0; k < srv->len; k++) {
		const struct extq_slot *sl = slot_at(srv, k);
		bool ready = sl->msg == 'Q' || sl->msg == 'F' || sl->msg == 'S';

		if (sl->act == EXTQ_DROP)
			continue;
		*readies += ready;
		*tail = !ready;
	}
}

/* A Parse slot leaves without its statement prepared (error, or skipped after one). */
static void pop_failed(struct extq_server *srv)
{
	struct extq_slot *h = head(srv);

	if (h->msg == 'P' && h->stmt)
		held_remove(srv, h->stmt);
	pop(srv);
}

void extq_backend(struct extq_server *srv, uint8_t type, struct extq_verdict *v)
{
	struct extq_slot *h = head(srv);
	uint8_t expect = 0;

	memset(v, 0, sizeof(*v));
	if (!h)
		return;
	v->owner_msg = h->msg;
	v->owner_stmt = h->stmt;
	bool simple = h->msg == 'Q' || h->msg == 'F';
	bool own_query = simple && h->act == EXTQ_DROP;

	switch (type) {
	case 'N': /* Notice, Notification, ParameterStatus: asynchronous */
	case 'A':
	case 'S':
		v->drop = own_query;
		return;
	case 'E':
		if (simple) {
			v->drop = own_query;
			v->own_error = own_query;
			return;
		}
		if (h->msg == 'S')
			return; /* an error at the Sync (commit): the Sync still answers */
		/* The server skips everything up to the next Sync. */
		while ((h = head(srv)) && h->msg != 'S')
			pop_failed(srv);
		if (!h)
			srv->skipping = true;
		return;
	case 'Z':
		v->drop = own_query;
		while ((h = head(srv))) {
			bool ends = h->msg == 'S' || h->msg == 'Q' || h->msg == 'F';

			if (!ends)
				srv->desync = true;
			pop_failed(srv);
			if (ends)
				break;
		}
		return;
	case 'G': /* CopyIn: the Syncs sent after that Execute are ignored by the server */
		if (h->msg == 'E') {
			size_t k = 1, kept = 1;

			for (; k < srv->len; k++)
				if (slot_at(srv, k)->msg != 'S')
					*slot_at(srv, kept++) = *slot_at(srv, k);
			srv->len = kept;
		}
		return;
	case '1':
		expect = 'P';
		break;
	case '2':
		expect = 'B';
		break;
	case '3':
		expect = 'C';
		break;
	case 't':
		v->drop = h->act == EXTQ_DROP;
		return;
	case 'T':
	case 'n':
		if (h->msg == 'D') {
			v->drop = h->act == EXTQ_DROP;
			pop(srv);
		} else {
			v->drop = own_query;
		}
		return;
	case 'C':
	case 'I':
	case 's':
		if (h->msg == 'E') {
			v->drop = h->act == EXTQ_DROP;
			pop(srv);
		} else {
			v->drop = own_query;
		}
		return;
	default:
		v->drop = h->act == EXTQ_DROP;
		return;
	}
	if (h->msg != expect) {
		srv->desync = true;
		return;
	}
	v->drop = h->act == EXTQ_DROP;
	pop(srv);
}

void extq_statement_gone(struct extq_server *srv, uint64_t id)
{
	held_remove(srv, id);
	srv->dirty = true;
}

uint8_t extq_next_synth(struct extq_server *srv)
{
	struct extq_slot *h = head(srv);
	uint8_t t;

	if (!h || h->act != EXTQ_SYNTH)
		return 0;
	t = h->synth;
	pop(srv);
	return t;
}

int extq_put_synth(struct cmn_buf *b, uint8_t type)
{
	const uint8_t m[5] = {type, 0, 0, 0, 4};

	return cmn_buf_append(b, m, sizeof(m));
}

/* ---- client messages ---- */

static int put_msg(struct cmn_buf *b, uint8_t type, const void *p1, size_t n1, const void *p2,
		   size_t n2, const void *p3, size_t n3)
{
	size_t len = 4 + n1 + n2 + n3;
	uint8_t hdr[5] = {type, (uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8),
			  (uint8_t)len};

	if (cmn_buf_append(b, hdr, 5) != PGW_OK || (n1 && cmn_buf_append(b, p1, n1) != PGW_OK) ||
	    (n2 && cmn_buf_append(b, p2, n2) != PGW_OK) ||
	    (n3 && cmn_buf_append(b, p3, n3) != PGW_OK))
		return PGW_ENOMEM;
	return PGW_OK;
}

/* The header and first parts of a message whose last more bytes follow as they are. */
static int put_head(struct cmn_buf *b, uint8_t type, const void *p1, size_t n1, const void *p2,
		    size_t n2, size_t more)
{
	size_t len = 4 + n1 + n2 + more;
	uint8_t hdr[5] = {type, (uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8),
			  (uint8_t)len};

	if (cmn_buf_append(b, hdr, 5) != PGW_OK || (n1 && cmn_buf_append(b, p1, n1) != PGW_OK) ||
	    (n2 && cmn_buf_append(b, p2, n2) != PGW_OK))
		return PGW_ENOMEM;
	return PGW_OK;
}

/* The server holds stmt from now on (Parse queued by the caller); may evict one. */
static int hold(struct extq_server *srv, struct extq_stmt *stmt, int max_stmts,
		struct cmn_buf *to_server)
{
	if (srv->n_held >= (size_t)max_stmts && srv->n_held > 0) {
		size_t lru = 0;
		char name[EXTQ_NAME_SIZE];

		for (size_t i = 1; i < srv->n_held; i++)
			if (srv->held[i].used < srv->held[lru].used)
				lru = i;
		extq_stmt_name(srv->held[lru].stmt, name);
		if (put_msg(to_server, 'C', "S", 1, name, strlen(name) + 1, NULL, 0) != PGW_OK ||
		    push(srv, 'C', EXTQ_DROP, 0, 0) != PGW_OK)
			return PGW_ENOMEM;
		extq_stmt_put(srv->held[lru].stmt);
		srv->held[lru] = srv->held[--srv->n_held];
	}
	if (srv->n_held == srv->cap_held) {
		size_t cap = srv->cap_held ? srv->cap_held * 2 : 8;
		struct extq_held *h = realloc(srv->held, cap * sizeof(*h));

		if (!h)
			return PGW_ENOMEM;
		srv->held = h;
		srv->cap_held = cap;
	}
	stmt->refs++;
	srv->held[srv->n_held++] = (struct extq_held){stmt, ++srv->clock};
	return PGW_OK;
}

/* Makes sure the server holds stmt before the message that follows uses it. */
static int ensure(struct extq_server *srv, struct extq_stmt *stmt, int max_stmts,
		  struct cmn_buf *to_server)
{
	struct extq_held *h = held_find(srv, stmt->id);
	char name[EXTQ_NAME_SIZE];

	if (h) {
		h->used = ++srv->clock;
		return PGW_OK;
	}
	if (hold(srv, stmt, max_stmts, to_server) != PGW_OK)
		return PGW_ENOMEM;
	extq_stmt_name(stmt, name);
	if (put_msg(to_server, 'P', name, strlen(name) + 1, stmt->body, stmt->len, NULL, 0) !=
	    PGW_OK)
		return PGW_ENOMEM;
	return push(srv, 'P', EXTQ_DROP, 0, stmt->id);
}

static bool word_char(uint8_t ch)
{
	return ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'z') || (ch >= '0' && ch <= '9') || ch == '_';
}

/* Case-insensitive search for word in d[0..n); whole: as a word of its own (not in
 * "presets"). */
static bool has_word(const uint8_t *d, size_t n, const char *word, bool whole)
{
	size_t w = strlen(word);

	for (size_t i = 0; i + w <= n; i++) {
		size_t k = 0;

		while (k < w && (d[i + k] | 0x20) == (uint8_t)word[k])
			k++;
		if (k == w && (!whole || ((i == 0 || !word_char(d[i - 1])) &&
					  (i + w == n || !word_char(d[i + w])))))
			return true;
	}
	return false;
}

/* A query that may drop the server's statements behind the proxy's back; whole false
 * when only part of it is known (passed on as it arrives): then it is assumed to. */
static void check_dirty(struct extq_server *srv, const uint8_t *q, size_t n, bool whole)
{
	if (srv->n_held &&
	    (!whole || has_word(q, n, "discard", false) || has_word(q, n, "deallocate", false)))
		srv->dirty = true;
	if ((srv->has_settings || srv->watch_reset) &&
	    (!whole || has_word(q, n, "reset", true) || has_word(q, n, "discard", true)))
		srv->reset_seen = true;
}

size_t extq_bind_head(const uint8_t *msg, size_t avail)
{
	const uint8_t *z, *z2, *end = msg + avail;

	if (avail <= 5 || !(z = memchr(msg + 5, 0, avail - 5)))
		return 0;
	z2 = memchr(z + 1, 0, (size_t)(end - z - 1));
	return z2 ? (size_t)(z2 + 1 - msg) : 0;
}

int extq_client_message(struct extq_names *names, struct extq_server *srv, int max_stmts,
			const uint8_t *msg, size_t avail, size_t total, struct cmn_buf *to_server,
			size_t *replaced)
{
	uint8_t type = msg[0];
	const uint8_t *body = msg + 5, *end = msg + avail;
	bool whole = avail == total;
	const uint8_t *z;
	struct extq_stmt *stmt;
	char name[EXTQ_NAME_SIZE];
	size_t h;

	*replaced = 0;
	switch (type) {
	case 'Q':
		check_dirty(srv, body, avail - 5, whole);
		return push(srv, type, EXTQ_PASS, 0, 0);
	case 'E':
	case 'S':
	case 'F':
		return push(srv, type, EXTQ_PASS, 0, 0);
	case 'P': { /* name\0 query\0 Int16 n, Int32 x n */
		z = memchr(body, 0, avail - 5);
		if (z || !whole)
			check_dirty(srv, z ? z + 1 : body, z ? (size_t)(end - z - 1) : 0, whole);
		if (!z || !max_stmts || z == body || srv->skipping || !whole)
			return push(srv, type, EXTQ_PASS, 0, 0);
		stmt = extq_stmt_get(z + 1, (size_t)(end - z - 1));
		if (!stmt || extq_names_set(names, (const char *)body, stmt) != PGW_OK) {
			extq_stmt_put(stmt);
			return PGW_ENOMEM;
		}
		*replaced = total;
		struct extq_held *held = held_find(srv, stmt->id);
		int rc;

		if (held) {
			held->used = ++srv->clock;
			rc = push(srv, type, EXTQ_SYNTH, '1', 0);
		} else {
			extq_stmt_name(stmt, name);
			rc = hold(srv, stmt, max_stmts, to_server);
			if (rc == PGW_OK)
				rc = put_msg(to_server, 'P', name, strlen(name) + 1, stmt->body,
					     stmt->len, NULL, 0);
			if (rc == PGW_OK)
				rc = push(srv, type, EXTQ_PASS, 0, stmt->id);
		}
		extq_stmt_put(stmt);
		return rc;
	}
	case 'B': /* portal\0 statement\0 rest: the rest passes as it is */
		h = extq_bind_head(msg, avail);
		z = h ? memchr(body, 0, h - 5) : NULL;
		if (!h || !max_stmts || h == (size_t)(z + 2 - msg) || srv->skipping ||
		    !(stmt = extq_names_get(names, (const char *)z + 1)))
			return push(srv, type, EXTQ_PASS, 0, 0);
		extq_stmt_name(stmt, name);
		if (ensure(srv, stmt, max_stmts, to_server) != PGW_OK ||
		    put_head(to_server, 'B', body, (size_t)(z + 1 - body), name, strlen(name) + 1,
			     total - h) != PGW_OK)
			return PGW_ENOMEM;
		*replaced = h;
		return push(srv, type, EXTQ_PASS, 0, stmt->id);
	case 'D': /* 'S' or 'P', name\0 */
	case 'C':
		z = avail > 6 ? memchr(body + 1, 0, (size_t)(end - body - 1)) : NULL;
		if (!z || !max_stmts || body[0] != 'S' || z == body + 1 || srv->skipping || !whole)
			return push(srv, type, EXTQ_PASS, 0, 0);
		if (type == 'C') {
			/* The statement stays on the servers (other clients may use it). */
			extq_names_del(names, (const char *)body + 1);
			*replaced = total;
			return push(srv, type, EXTQ_SYNTH, '3', 0);
		}
		if (!(stmt = extq_names_get(names, (const char *)body + 1)))
			return push(srv, type, EXTQ_PASS, 0, 0);
		*replaced = total;
		extq_stmt_name(stmt, name);
		if (ensure(srv, stmt, max_stmts, to_server) != PGW_OK ||
		    put_msg(to_server, 'D', "S", 1, name, strlen(name) + 1, NULL, 0) != PGW_OK)
			return PGW_ENOMEM;
		return push(srv, type, EXTQ_PASS, 0, stmt->id);
	default: /* Flush, COPY data, Terminate: no answer of their own */
		return PGW_OK;
	}
}
