/*
 * PostgreSQL frontend/backend protocol 3.0: framing, the startup family, and the
 * messages a pooler builds. Pure functions over (bytes, length): no sockets, no
 * allocation except appending to a caller's struct cmn_buf.
 *
 * Framing: after startup every message is a type byte, an Int32 length (counting
 * itself, not the type byte) and a body. Startup-phase packets have no type byte.
 */
#ifndef PGW_PGPROTO_H
#define PGW_PGPROTO_H

#include "common/err.h"
#include "common/util.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define PGP_PROTOCOL_3_0   196608u     /* 3 << 16 */
#define PGP_CANCEL_REQUEST 80877102u   /* 1234 << 16 | 5678 */
#define PGP_SSL_REQUEST	   80877103u   /* 1234 << 16 | 5679 */
#define PGP_GSSENC_REQUEST 80877104u   /* 1234 << 16 | 5680 */
#define PGP_MAX_STARTUP	   10000u      /* PostgreSQL's MAX_STARTUP_PACKET_LENGTH */
#define PGP_MAX_MESSAGE	   0x3ffffffeu /* PostgreSQL's PQ_LARGE_MESSAGE_LIMIT (a length field) */
#define PGP_MAX_PARAMS	   64

/* Frontend (client -> server) message types. */
enum {
	PGP_FE_BIND = 'B',
	PGP_FE_CLOSE = 'C',
	PGP_FE_DESCRIBE = 'D',
	PGP_FE_EXECUTE = 'E',
	PGP_FE_FUNCTION_CALL = 'F',
	PGP_FE_FLUSH = 'H',
	PGP_FE_PARSE = 'P',
	PGP_FE_QUERY = 'Q',
	PGP_FE_SYNC = 'S',
	PGP_FE_TERMINATE = 'X',
	PGP_FE_COPY_FAIL = 'f',
	PGP_FE_PASSWORD = 'p', /* also SASLInitialResponse / SASLResponse */
	PGP_FE_COPY_DATA = 'd',
	PGP_FE_COPY_DONE = 'c',
};

/* Backend (server -> client) message types. */
enum {
	PGP_BE_PARSE_COMPLETE = '1',
	PGP_BE_BIND_COMPLETE = '2',
	PGP_BE_CLOSE_COMPLETE = '3',
	PGP_BE_NOTIFICATION = 'A',
	PGP_BE_COMMAND_COMPLETE = 'C',
	PGP_BE_DATA_ROW = 'D',
	PGP_BE_ERROR = 'E',
	PGP_BE_COPY_IN = 'G',
	PGP_BE_COPY_OUT = 'H',
	PGP_BE_EMPTY_QUERY = 'I',
	PGP_BE_BACKEND_KEY = 'K',
	PGP_BE_NOTICE = 'N',
	PGP_BE_AUTH = 'R',
	PGP_BE_PARAMETER_STATUS = 'S',
	PGP_BE_ROW_DESCRIPTION = 'T',
	PGP_BE_FUNCTION_RESULT = 'V',
	PGP_BE_COPY_BOTH = 'W',
	PGP_BE_READY = 'Z',
	PGP_BE_COPY_DONE = 'c',
	PGP_BE_COPY_DATA = 'd',
	PGP_BE_NO_DATA = 'n',
	PGP_BE_PORTAL_SUSPENDED = 's',
	PGP_BE_PARAMETER_DESCRIPTION = 't',
	PGP_BE_NEGOTIATE_VERSION = 'v',
};

/* Authentication request codes (the Int32 after an 'R' message's length). */
enum {
	PGP_AUTH_OK = 0,
	PGP_AUTH_CLEARTEXT = 3,
	PGP_AUTH_MD5 = 5,
	PGP_AUTH_SASL = 10,
	PGP_AUTH_SASL_CONTINUE = 11,
	PGP_AUTH_SASL_FINAL = 12,
};

/*
 * The next typed message in buf[0..len): 1 and *type, *total (type byte + length
 * field + body) when complete; 0 when more bytes are needed (*total is then the
 * full size if the header is there, else 0); PGW_EPROTO when the length field is
 * below 4 or *total would exceed max_total.
 */
int pgp_frame(const uint8_t *buf, size_t len, size_t max_total, uint8_t *type,
	      size_t *total) PGW_WUR;

/* Same for an untyped startup-phase packet (limit PGP_MAX_STARTUP; minimum 8). */
int pgp_startup_frame(const uint8_t *buf, size_t len, size_t *total) PGW_WUR;

struct pgp_param {
	const char *name;
	const char *value;
};

/* A parsed startup-phase packet. Strings point into the packet given to the parser. */
struct pgp_startup {
	uint32_t code; /* a protocol version, or PGP_*_REQUEST */
	/* StartupMessage (code >> 16 == 3) */
	const char *user;			 /* required */
	const char *database;			 /* defaults to user */
	const char *options;			 /* NULL when absent */
	bool replication;			 /* "replication" present and not false/0/off/no */
	struct pgp_param params[PGP_MAX_PARAMS]; /* every pair, user/database included */
	size_t n_params;
	const char *unknown_pq[PGP_MAX_PARAMS]; /* "_pq_.*" names we do not support */
	size_t n_unknown_pq;
	/* CancelRequest */
	uint32_t cancel_pid;
	uint8_t cancel_key[256];
	size_t cancel_key_len;
};

/*
 * Parses a complete startup-phase packet (length field included). The name/value
 * area must be NUL-terminated pairs ending in an empty name. PGW_EPROTO with a
 * reason in err (for an 08P01 error to the client) when malformed: bad length,
 * missing final NUL, more than PGP_MAX_PARAMS pairs, no user, protocol major != 3.
 */
int pgp_parse_startup(const uint8_t *pkt, size_t len, struct pgp_startup *out, char *err,
		      size_t err_size) PGW_WUR;

/*
 * The settings in a startup packet's "options" value, as PostgreSQL reads them:
 * words split on unescaped white space (a backslash takes the next character as
 * it is), each "-c NAME=VALUE", "-cNAME=VALUE" or "--NAME=VALUE", with '-' in
 * NAME read as '_'. Calls fn for each setting in order (its strings live until it
 * returns). PGW_EPROTO with a reason in err for any other switch, a missing '=' or
 * an empty name; PGW_ENOMEM; or what fn returns when it is not PGW_OK.
 */
int pgp_parse_options(const char *options,
		      int (*fn)(void *arg, const char *name, const char *value), void *arg,
		      char *err, size_t err_size) PGW_WUR;

/* Reading a message body: every get fails softly (sets r->bad) past the end. */
struct pgp_reader {
	const uint8_t *p, *end;
	bool bad;
};

void pgp_reader_init(struct pgp_reader *r, const uint8_t *body, size_t len);
uint8_t pgp_get_u8(struct pgp_reader *r);
uint16_t pgp_get_u16(struct pgp_reader *r);
uint32_t pgp_get_u32(struct pgp_reader *r);
/* A NUL-terminated string inside the body (NULL and bad when unterminated). */
const char *pgp_get_str(struct pgp_reader *r);
/* n raw bytes (NULL and bad when fewer remain). */
const uint8_t *pgp_get_bytes(struct pgp_reader *r, size_t n);

/* ErrorResponse / NoticeResponse fields of interest (pointers into the body). */
struct pgp_error_fields {
	const char *severity; /* 'V' if present, else 'S' */
	const char *sqlstate; /* 'C' */
	const char *message;  /* 'M' */
	const char *detail;   /* 'D' */
	const char *hint;     /* 'H' */
};
int pgp_parse_error(const uint8_t *body, size_t len, struct pgp_error_fields *out) PGW_WUR;

/*
 * Builders: each appends one complete message to b. They return PGW_OK or
 * PGW_ENOMEM (b unchanged in length on failure is not guaranteed: callers drop b).
 */
int pgp_put_error(struct cmn_buf *b, const char *severity, const char *sqlstate,
		  const char *message, const char *detail) PGW_WUR;
int pgp_put_notice(struct cmn_buf *b, const char *severity, const char *sqlstate,
		   const char *message) PGW_WUR;
int pgp_put_auth(struct cmn_buf *b, uint32_t code, const void *extra, size_t extra_len) PGW_WUR;
/* AuthenticationSASL listing one mechanism (SCRAM-SHA-256). */
int pgp_put_auth_sasl(struct cmn_buf *b, const char *mechanism) PGW_WUR;
int pgp_put_parameter_status(struct cmn_buf *b, const char *name, const char *value) PGW_WUR;
int pgp_put_backend_key(struct cmn_buf *b, uint32_t pid, uint32_t key) PGW_WUR;
int pgp_put_ready(struct cmn_buf *b, char status) PGW_WUR;
/* NegotiateProtocolVersion: newest minor we speak and the options we ignored. */
int pgp_put_negotiate(struct cmn_buf *b, uint32_t minor, const char *const *names,
		      size_t n) PGW_WUR;
/* RowDescription of text columns: type_oids[i] per column (25 text, 20 int8, ...). */
int pgp_put_row_description(struct cmn_buf *b, size_t n, const char *const *names,
			    const uint32_t *type_oids) PGW_WUR;
/* DataRow in text format; values[i] NULL for SQL NULL. */
int pgp_put_data_row(struct cmn_buf *b, size_t n, const char *const *values) PGW_WUR;
int pgp_put_command_complete(struct cmn_buf *b, const char *tag) PGW_WUR;
int pgp_put_empty_query(struct cmn_buf *b) PGW_WUR;

/* Frontend messages (the pooler as a client of PostgreSQL). */
int pgp_put_startup(struct cmn_buf *b, const struct pgp_param *params, size_t n) PGW_WUR;
int pgp_put_ssl_request(struct cmn_buf *b) PGW_WUR;
int pgp_put_cancel(struct cmn_buf *b, uint32_t pid, uint32_t key) PGW_WUR;
int pgp_put_password(struct cmn_buf *b, const char *password) PGW_WUR;
int pgp_put_sasl_initial(struct cmn_buf *b, const char *mechanism, const char *data,
			 size_t len) PGW_WUR;
int pgp_put_sasl_response(struct cmn_buf *b, const char *data, size_t len) PGW_WUR;
int pgp_put_query(struct cmn_buf *b, const char *sql) PGW_WUR;
int pgp_put_terminate(struct cmn_buf *b) PGW_WUR;

#endif
