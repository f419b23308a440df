/*
 * PostgreSQL frontend/backend protocol 3.0 codec: framing, startup-phase packets,
 * a bounds-checked body reader and the message builders a pooler needs. Every
 * length read from the wire is checked against the bytes actually present; the
 * parsers see hostile input (tests/fuzz/fuzz_pgproto.c).
 */
#include "pgproto/pgproto.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* ---- framing ---- */

int pgp_frame(const uint8_t *buf, size_t len, size_t max_total, uint8_t *type, size_t *total)
{
	uint64_t n;

	*total = 0;
	if (len < 5)
		return 0;
	n = rd32(buf + 1);
	if (n < 4 || n + 1 > (uint64_t)max_total)
		return PGW_EPROTO;
	*type = buf[0];
	*total = (size_t)n + 1;
	return len >= *total ? 1 : 0;
}

int pgp_startup_frame(const uint8_t *buf, size_t len, size_t *total)
{
	uint32_t n;

	*total = 0;
	if (len < 4)
		return 0;
	n = rd32(buf);
	if (n < 8 || n > PGP_MAX_STARTUP)
		return PGW_EPROTO;
	*total = n;
	return len >= n ? 1 : 0;
}

/* ---- startup-phase packets ---- */

__attribute__((format(printf, 3, 4))) static int startup_fail(char *err, size_t err_size,
							      const char *fmt, ...)
{
	va_list ap;

	if (err && err_size) {
		va_start(ap, fmt);
		vsnprintf(err, err_size, fmt, ap);
		va_end(ap);
	}
	return PGW_EPROTO;
}

static bool replication_value(const char *v)
{
	static const char *const off[] = {"false", "0", "off", "no"};

	for (size_t i = 0; i < sizeof(off) / sizeof(off[0]); i++)
		if (strcasecmp(v, off[i]) == 0)
			return false;
	return true;
}

static int parse_startup_pairs(const uint8_t *pkt, size_t len, struct pgp_startup *out, char *err,
			       size_t err_size)
{
	const char *p = (const char *)pkt + 8, *end = (const char *)pkt + len;

	for (;;) {
		const char *name, *value, *nul;

		if (p >= end)
			return startup_fail(err, err_size,
					    "invalid startup packet layout: expected terminator "
					    "as last byte");
		if (*p == '\0') {
			if (p + 1 != end)
				return startup_fail(err, err_size,
						    "invalid startup packet layout: expected "
						    "terminator as last byte");
			break;
		}
		name = p;
		nul = memchr(p, '\0', (size_t)(end - p));
		if (!nul || nul + 1 >= end)
			return startup_fail(err, err_size,
					    "invalid startup packet layout: expected terminator "
					    "as last byte");
		value = nul + 1;
		nul = memchr(value, '\0', (size_t)(end - value));
		if (!nul)
			return startup_fail(err, err_size,
					    "invalid startup packet layout: expected terminator "
					    "as last byte");
		p = nul + 1;

		if (strncmp(name, "_pq_.", 5) == 0) {
			if (out->n_unknown_pq == PGP_MAX_PARAMS)
				return startup_fail(err, err_size,
						    "too many protocol options in startup packet "
						    "(limit %d)",
						    PGP_MAX_PARAMS);
			out->unknown_pq[out->n_unknown_pq++] = name;
			continue;
		}
		if (out->n_params == PGP_MAX_PARAMS)
			return startup_fail(err, err_size,
					    "too many parameters in startup packet (limit %d)",
					    PGP_MAX_PARAMS);
		out->params[out->n_params].name = name;
		out->params[out->n_params].value = value;
		out->n_params++;
		if (strcmp(name, "user") == 0)
			out->user = value;
		else if (strcmp(name, "database") == 0)
			out->database = value;
		else if (strcmp(name, "options") == 0)
			out->options = value;
		else if (strcmp(name, "replication") == 0)
			out->replication = replication_value(value);
	}
	if (!out->user || !out->user[0])
		return startup_fail(err, err_size,
				    "no PostgreSQL user name specified in startup packet");
	if (!out->database || !out->database[0])
		out->database = out->user;
	return PGW_OK;
}

int pgp_parse_startup(const uint8_t *pkt, size_t len, struct pgp_startup *out, char *err,
		      size_t err_size)
{
	uint32_t n;

	memset(out, 0, sizeof(*out));
	if (err && err_size)
		err[0] = '\0';
	if (len < 8 || len > PGP_MAX_STARTUP)
		return startup_fail(err, err_size, "invalid length of startup packet");
	n = rd32(pkt);
	if (n != len)
		return startup_fail(err, err_size, "invalid length of startup packet");
	out->code = rd32(pkt + 4);

	switch (out->code) {
	case PGP_SSL_REQUEST:
	case PGP_GSSENC_REQUEST:
		if (len != 8)
			return startup_fail(err, err_size, "invalid length of %s request packet",
					    out->code == PGP_SSL_REQUEST ? "SSL" : "GSSAPI");
		return PGW_OK;
	case PGP_CANCEL_REQUEST:
		/* 3.0: 4-byte key (length 16); 3.2: 4..256 bytes (length 12 + n). */
		if (len < 12 + 4 || len > 12 + sizeof(out->cancel_key))
			return startup_fail(err, err_size,
					    "invalid length of cancel request packet");
		out->cancel_pid = rd32(pkt + 8);
		out->cancel_key_len = len - 12;
		memcpy(out->cancel_key, pkt + 12, out->cancel_key_len);
		return PGW_OK;
	default:
		break;
	}
	if (out->code >> 16 != 3)
		return startup_fail(err, err_size, "unsupported frontend protocol %u.%u",
				    out->code >> 16, out->code & 0xffff);
	return parse_startup_pairs(pkt, len, out, err, err_size);
}

/* ---- reader ---- */

void pgp_reader_init(struct pgp_reader *r, const uint8_t *body, size_t len)
{
	r->p = body;
	r->end = body + len;
	r->bad = false;
}

/* n more bytes available? Marks the reader bad otherwise. */
static bool reader_has(struct pgp_reader *r, size_t n)
{
	if (r->bad || (size_t)(r->end - r->p) < n) {
		r->bad = true;
		return false;
	}
	return true;
}

uint8_t pgp_get_u8(struct pgp_reader *r)
{
	if (!reader_has(r, 1))
		return 0;
	return *r->p++;
}

uint16_t pgp_get_u16(struct pgp_reader *r)
{
	uint16_t v;

	if (!reader_has(r, 2))
		return 0;
	v = (uint16_t)(r->p[0] << 8 | r->p[1]);
	r->p += 2;
	return v;
}

uint32_t pgp_get_u32(struct pgp_reader *r)
{
	uint32_t v;

	if (!reader_has(r, 4))
		return 0;
	v = rd32(r->p);
	r->p += 4;
	return v;
}

const char *pgp_get_str(struct pgp_reader *r)
{
	const uint8_t *nul;
	const char *s;

	if (!reader_has(r, 1))
		return NULL;
	nul = memchr(r->p, '\0', (size_t)(r->end - r->p));
	if (!nul) {
		r->bad = true;
		return NULL;
	}
	s = (const char *)r->p;
	r->p = nul + 1;
	return s;
}

const uint8_t *pgp_get_bytes(struct pgp_reader *r, size_t n)
{
	const uint8_t *s;

	if (!reader_has(r, n))
		return NULL;
	s = r->p;
	r->p += n;
	return s;
}

int pgp_parse_error(const uint8_t *body, size_t len, struct pgp_error_fields *out)
{
	struct pgp_reader r;
	const char *s_sev = NULL, *v_sev = NULL;

	memset(out, 0, sizeof(*out));
	pgp_reader_init(&r, body, len);
	for (;;) {
		uint8_t code = pgp_get_u8(&r);
		const char *val;

		if (r.bad)
			return PGW_EPROTO;
		if (code == 0)
			break;
		val = pgp_get_str(&r);
		if (!val)
			return PGW_EPROTO;
		switch (code) {
		case 'S':
			s_sev = val;
			break;
		case 'V':
			v_sev = val;
			break;
		case 'C':
			out->sqlstate = val;
			break;
		case 'M':
			out->message = val;
			break;
		case 'D':
			out->detail = val;
			break;
		case 'H':
			out->hint = val;
			break;
		default:
			break;
		}
	}
	out->severity = v_sev ? v_sev : s_sev;
	return PGW_OK;
}

/* ---- builders ---- */

/*
 * One message being appended to a buffer: the first failure sticks and later puts
 * do nothing, so a builder checks once at the end.
 */
struct wr {
	struct cmn_buf *b;
	size_t len_at; /* offset of the Int32 length field */
	int rc;
};

static void put_raw(struct wr *w, const void *p, size_t n)
{
	if (w->rc == PGW_OK && n)
		w->rc = cmn_buf_append(w->b, p, n);
}

static void put_u16(struct wr *w, uint16_t v)
{
	uint8_t x[2] = {(uint8_t)(v >> 8), (uint8_t)v};

	put_raw(w, x, sizeof(x));
}

static void put_u32(struct wr *w, uint32_t v)
{
	uint8_t x[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};

	put_raw(w, x, sizeof(x));
}

static void put_str(struct wr *w, const char *s)
{
	put_raw(w, s, strlen(s) + 1);
}

/* Starts a message: the type byte (none when type is 0) and a length placeholder. */
static void msg_begin(struct wr *w, struct cmn_buf *b, uint8_t type)
{
	w->b = b;
	w->rc = PGW_OK;
	if (type)
		put_raw(w, &type, 1);
	w->len_at = b->len;
	put_u32(w, 0);
}

/* Fills in the length field (it counts itself and everything after it). */
static int msg_end(struct wr *w)
{
	size_t n;
	uint8_t *p;

	if (w->rc != PGW_OK)
		return w->rc;
	n = w->b->len - w->len_at;
	if (n > INT32_MAX)
		return PGW_EINVAL;
	p = (uint8_t *)w->b->data + w->len_at;
	p[0] = (uint8_t)(n >> 24);
	p[1] = (uint8_t)(n >> 16);
	p[2] = (uint8_t)(n >> 8);
	p[3] = (uint8_t)n;
	return PGW_OK;
}

static void put_field(struct wr *w, char code, const char *value)
{
	put_raw(w, &code, 1);
	put_str(w, value);
}

int pgp_put_error(struct cmn_buf *b, const char *severity, const char *sqlstate,
		  const char *message, const char *detail)
{
	struct wr w;

	msg_begin(&w, b, PGP_BE_ERROR);
	put_field(&w, 'S', severity);
	put_field(&w, 'V', severity);
	put_field(&w, 'C', sqlstate);
	put_field(&w, 'M', message);
	if (detail)
		put_field(&w, 'D', detail);
	put_raw(&w, "", 1);
	return msg_end(&w);
}

int pgp_put_notice(struct cmn_buf *b, const char *severity, const char *sqlstate,
		   const char *message)
{
	struct wr w;

	msg_begin(&w, b, PGP_BE_NOTICE);
	put_field(&w, 'S', severity);
	put_field(&w, 'V', severity);
	put_field(&w, 'C', sqlstate);
	put_field(&w, 'M', message);
	put_raw(&w, "", 1);
	return msg_end(&w);
}

int pgp_put_auth(struct cmn_buf *b, uint32_t code, const void *extra, size_t extra_len)
{
	struct wr w;

	msg_begin(&w, b, PGP_BE_AUTH);
	put_u32(&w, code);
	if (extra_len)
		put_raw(&w, extra, extra_len);
	return msg_end(&w);
}

int pgp_put_auth_sasl(struct cmn_buf *b, const char *mechanism)
{
	struct wr w;

	msg_begin(&w, b, PGP_BE_AUTH);
	put_u32(&w, PGP_AUTH_SASL);
	put_str(&w, mechanism);
	put_raw(&w, "", 1);
	return msg_end(&w);
}

int pgp_put_parameter_status(struct cmn_buf *b, const char *name, const char *value)
{
	struct wr w;

	msg_begin(&w, b, PGP_BE_PARAMETER_STATUS);
	put_str(&w, name);
	put_str(&w, value);
	return msg_end(&w);
}

int pgp_put_backend_key(struct cmn_buf *b, uint32_t pid, uint32_t key)
{
	struct wr w;

	msg_begin(&w, b, PGP_BE_BACKEND_KEY);
	put_u32(&w, pid);
	put_u32(&w, key);
	return msg_end(&w);
}

int pgp_put_ready(struct cmn_buf *b, char status)
{
	struct wr w;

	msg_begin(&w, b, PGP_BE_READY);
	put_raw(&w, &status, 1);
	return msg_end(&w);
}

int pgp_put_negotiate(struct cmn_buf *b, uint32_t minor, const char *const *names, size_t n)
{
	struct wr w;

	if (n > INT32_MAX)
		return PGW_EINVAL;
	msg_begin(&w, b, PGP_BE_NEGOTIATE_VERSION);
	put_u32(&w, minor);
	put_u32(&w, (uint32_t)n);
	for (size_t i = 0; i < n; i++)
		put_str(&w, names[i]);
	return msg_end(&w);
}

/* pg_type.typlen of the built-in types a pooler reports; -1 (varlena) otherwise. */
static int16_t type_len(uint32_t oid)
{
	switch (oid) {
	case 16: /* bool */
		return 1;
	case 21: /* int2 */
		return 2;
	case 23:  /* int4 */
	case 26:  /* oid */
	case 700: /* float4 */
		return 4;
	case 20:  /* int8 */
	case 701: /* float8 */
		return 8;
	default:
		return -1;
	}
}

int pgp_put_row_description(struct cmn_buf *b, size_t n, const char *const *names,
			    const uint32_t *type_oids)
{
	struct wr w;

	if (n > INT16_MAX)
		return PGW_EINVAL;
	msg_begin(&w, b, PGP_BE_ROW_DESCRIPTION);
	put_u16(&w, (uint16_t)n);
	for (size_t i = 0; i < n; i++) {
		put_str(&w, names[i]);
		put_u32(&w, 0);				       /* table oid */
		put_u16(&w, 0);				       /* column attnum */
		put_u32(&w, type_oids[i]);		       /* type oid */
		put_u16(&w, (uint16_t)type_len(type_oids[i])); /* typlen */
		put_u32(&w, UINT32_MAX);		       /* typmod -1 */
		put_u16(&w, 0);				       /* text format */
	}
	return msg_end(&w);
}

int pgp_put_data_row(struct cmn_buf *b, size_t n, const char *const *values)
{
	struct wr w;

	if (n > INT16_MAX)
		return PGW_EINVAL;
	msg_begin(&w, b, PGP_BE_DATA_ROW);
	put_u16(&w, (uint16_t)n);
	for (size_t i = 0; i < n; i++) {
		size_t len;

		if (!values[i]) {
			put_u32(&w, UINT32_MAX); /* -1: NULL */
			continue;
		}
		len = strlen(values[i]);
		if (len > INT32_MAX)
			return PGW_EINVAL;
		put_u32(&w, (uint32_t)len);
		put_raw(&w, values[i], len);
	}
	return msg_end(&w);
}

int pgp_put_command_complete(struct cmn_buf *b, const char *tag)
{
	struct wr w;

	msg_begin(&w, b, PGP_BE_COMMAND_COMPLETE);
	put_str(&w, tag);
	return msg_end(&w);
}

int pgp_put_empty_query(struct cmn_buf *b)
{
	struct wr w;

	msg_begin(&w, b, PGP_BE_EMPTY_QUERY);
	return msg_end(&w);
}

int pgp_put_startup(struct cmn_buf *b, const struct pgp_param *params, size_t n)
{
	struct wr w;

	msg_begin(&w, b, 0);
	put_u32(&w, PGP_PROTOCOL_3_0);
	for (size_t i = 0; i < n; i++) {
		put_str(&w, params[i].name);
		put_str(&w, params[i].value);
	}
	put_raw(&w, "", 1);
	return msg_end(&w);
}

int pgp_put_ssl_request(struct cmn_buf *b)
{
	struct wr w;

	msg_begin(&w, b, 0);
	put_u32(&w, PGP_SSL_REQUEST);
	return msg_end(&w);
}

int pgp_put_cancel(struct cmn_buf *b, uint32_t pid, uint32_t key)
{
	struct wr w;

	msg_begin(&w, b, 0);
	put_u32(&w, PGP_CANCEL_REQUEST);
	put_u32(&w, pid);
	put_u32(&w, key);
	return msg_end(&w);
}

int pgp_put_password(struct cmn_buf *b, const char *password)
{
	struct wr w;

	msg_begin(&w, b, PGP_FE_PASSWORD);
	put_str(&w, password);
	return msg_end(&w);
}

int pgp_put_sasl_initial(struct cmn_buf *b, const char *mechanism, const char *data, size_t len)
{
	struct wr w;

	if (data && len > INT32_MAX)
		return PGW_EINVAL;
	msg_begin(&w, b, PGP_FE_PASSWORD);
	put_str(&w, mechanism);
	if (data) {
		put_u32(&w, (uint32_t)len);
		put_raw(&w, data, len);
	} else {
		put_u32(&w, UINT32_MAX); /* -1: no initial response */
	}
	return msg_end(&w);
}

int pgp_put_sasl_response(struct cmn_buf *b, const char *data, size_t len)
{
	struct wr w;

	msg_begin(&w, b, PGP_FE_PASSWORD);
	put_raw(&w, data, len);
	return msg_end(&w);
}

int pgp_put_query(struct cmn_buf *b, const char *sql)
{
	struct wr w;

	msg_begin(&w, b, PGP_FE_QUERY);
	put_str(&w, sql);
	return msg_end(&w);
}

int pgp_put_terminate(struct cmn_buf *b)
{
	struct wr w;

	msg_begin(&w, b, PGP_FE_TERMINATE);
	return msg_end(&w);
}

/* One word of an options string, unescaped, into a new string; *pp moves past it. */
static char *options_word(const char **pp)
{
	const char *p = *pp;
	size_t n = 0;
	char *w = malloc(strlen(p) + 1);

	if (!w)
		return NULL;
	while (*p && !isspace((unsigned char)*p)) {
		if (*p == '\\' && p[1])
			p++;
		w[n++] = *p++;
	}
	w[n] = '\0';
	*pp = p;
	return w;
}

static int options_setting(char *arg, int (*fn)(void *, const char *, const char *), void *fnarg,
			   char *err, size_t err_size)
{
	char *eq = strchr(arg, '=');

	if (!eq || eq == arg) {
		return startup_fail(err, err_size,
				    "invalid startup option \"%s\": NAME=VALUE expected", arg);
	}
	*eq = '\0';
	for (char *q = arg; *q; q++)
		if (*q == '-')
			*q = '_';
	return fn(fnarg, arg, eq + 1);
}

int pgp_parse_options(const char *options,
		      int (*fn)(void *arg, const char *name, const char *value), void *arg,
		      char *err, size_t err_size)
{
	const char *p = options;
	char *w = NULL;
	int rc = PGW_OK;

	while (rc == PGW_OK) {
		while (isspace((unsigned char)*p))
			p++;
		if (!*p)
			break;
		if (!(w = options_word(&p)))
			return PGW_ENOMEM;
		if (strcmp(w, "-c") == 0) {
			free(w);
			while (isspace((unsigned char)*p))
				p++;
			if (!*p)
				return startup_fail(err, err_size,
						    "invalid startup option: -c needs NAME=VALUE");
			if (!(w = options_word(&p)))
				return PGW_ENOMEM;
			rc = options_setting(w, fn, arg, err, err_size);
		} else if (strncmp(w, "-c", 2) == 0) {
			rc = options_setting(w + 2, fn, arg, err, err_size);
		} else if (strncmp(w, "--", 2) == 0) {
			rc = options_setting(w + 2, fn, arg, err, err_size);
		} else {
			rc = startup_fail(
			    err, err_size,
			    "unsupported startup option \"%s\": the proxy takes -c NAME=VALUE "
			    "and --NAME=VALUE",
			    w);
		}
		free(w);
		w = NULL;
	}
	return rc;
}
