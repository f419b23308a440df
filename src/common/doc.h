/*
 * Text documents the status page and /metrics are rendered into, and the escaping of
 * text from outside (names, hosts, error messages) on its way into HTML or a
 * Prometheus label.
 */
#ifndef PGW_COMMON_DOC_H
#define PGW_COMMON_DOC_H

#include "common/util.h"

#include <stdbool.h>
#include <stddef.h>

/* A document being rendered; failed once any append ran out of memory. */
struct doc {
	struct cmn_buf b;
	bool failed;
};

#define DOC_LIT(d, s) doc_raw(d, s, sizeof(s) - 1)

void doc_raw(struct doc *d, const char *s, size_t n);
void doc_printf(struct doc *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Markup characters become entities, control characters and bytes that are not UTF-8
 * become '?'. */
void doc_html(struct doc *d, const char *s);
/* A Prometheus label value: \, " and newline escaped; not UTF-8 or control: '?'. */
void doc_label(struct doc *d, const char *s);

#endif
