#include "common/doc.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void doc_raw(struct doc *d, const char *s, size_t n)
{
	if (!d->failed && n && cmn_buf_append(&d->b, s, n) != PGW_OK)
		d->failed = true;
}

void doc_printf(struct doc *d, const char *fmt, ...)
{
	char small[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0) {
		d->failed = true;
		return;
	}
	if ((size_t)n < sizeof(small)) {
		doc_raw(d, small, (size_t)n);
		return;
	}
	char *big = malloc((size_t)n + 1);

	if (!big) {
		d->failed = true;
		return;
	}
	va_start(ap, fmt);
	vsnprintf(big, (size_t)n + 1, fmt, ap);
	va_end(ap);
	doc_raw(d, big, (size_t)n);
	free(big);
}

/* Length of the valid UTF-8 sequence at s (1-4), or 0 when the bytes there are not one. */
static size_t utf8_len(const unsigned char *s)
{
	size_t n;
	uint32_t cp;

	if (s[0] < 0x80)
		return 1;
	if ((s[0] & 0xe0) == 0xc0) {
		n = 2;
		cp = s[0] & 0x1f;
	} else if ((s[0] & 0xf0) == 0xe0) {
		n = 3;
		cp = s[0] & 0x0f;
	} else if ((s[0] & 0xf8) == 0xf0) {
		n = 4;
		cp = s[0] & 0x07;
	} else {
		return 0;
	}
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0; /* also stops at the terminating NUL */
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
	    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

/* HTML's form of a byte that must not pass as it is (NULL: it may). */
static const char *html_form(unsigned char c)
{
	switch (c) {
	case '&':
		return "&amp;";
	case '<':
		return "&lt;";
	case '>':
		return "&gt;";
	case '"':
		return "&quot;";
	case '\'':
		return "&#39;";
	default:
		return NULL;
	}
}

/* A Prometheus label value's form of such a byte. */
static const char *label_form(unsigned char c)
{
	return c == '\\' ? "\\\\" : c == '"' ? "\\\"" : c == '\n' ? "\\n" : NULL;
}

/*
 * Text from outside (names, hosts, error messages) into a document: valid UTF-8
 * sequences pass, the bytes form() names take their form, other control characters and
 * bytes that are not UTF-8 become '?'.
 */
static void escaped(struct doc *d, const char *s, const char *(*form)(unsigned char c))
{
	const unsigned char *p = (const unsigned char *)s;

	while (*p) {
		size_t n = utf8_len(p);
		const char *f;

		if (n > 1) {
			doc_raw(d, (const char *)p, n);
			p += n;
			continue;
		}
		f = form(*p);
		if (f)
			doc_raw(d, f, strlen(f));
		else
			doc_raw(d, n == 1 && *p >= 0x20 && *p != 0x7f ? (const char *)p : "?", 1);
		p++;
	}
}

void doc_html(struct doc *d, const char *s)
{
	escaped(d, s, html_form);
}

void doc_label(struct doc *d, const char *s)
{
	escaped(d, s, label_form);
}
