/* Base64 (RFC 4648, the standard alphabet), for etcd's keys and values and for SCRAM. */
#ifndef PGW_BASE64_H
#define PGW_BASE64_H

#include "common/err.h"

#include <stdbool.h>
#include <stddef.h>

/* Characters of the padded base64 text of n bytes (without the NUL). */
#define CMN_B64_LEN(n) (4 * (((n) + 2) / 3))

/* Padded base64 of in[0..n) into out, NUL-terminated; PGW_EINVAL when out is too small. */
int cmn_b64_encode(const void *in, size_t n, char *out, size_t size) PGW_WUR;

/*
 * Decodes in[0..n) into out[0..size), *out_len bytes. strict: the length a multiple
 * of 4 with its '=' padding (SCRAM); else padding may be left out (etcd). Anything but
 * the alphabet and trailing '=' (whitespace included), or a result longer than size:
 * PGW_EPROTO.
 */
int cmn_b64_decode(const char *in, size_t n, bool strict, void *out, size_t size,
		   size_t *out_len) PGW_WUR;

#endif
