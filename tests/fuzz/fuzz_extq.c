/*
 * libFuzzer target: the extended-protocol tracker (src/proxy/extq.c) driven by an
 * arbitrary interleaving of what two clients send (any typed message, Parse /
 * Bind / Describe / Close / Query / Execute / Sync / Flush / COPY, with arbitrary
 * bodies) and what their shared server answers, with server connections replaced
 * at random. Checks that the tracker never crashes, never reads out of bounds,
 * rewrites into well-framed messages, and frees every statement at the end.
 */
#include "proxy/extq.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t fe_types[] = {'P', 'B', 'D', 'C', 'E', 'S', 'Q', 'F', 'H', 'd', 'c', 'f'};
static const uint8_t be_types[] = {'1', '2', '3', 't', 'T', 'n', 'C', 'I', 's', 'D',
				   'E', 'N', 'A', 'S', 'Z', 'G', 'H', 'd', 'c', 'V'};

/* Every rewritten chunk is a sequence of complete messages. */
static void check_framing(const struct cmn_buf *b)
{
	size_t off = 0;

	while (off < b->len) {
		const uint8_t *m = (const uint8_t *)b->data + off;
		size_t len;

		if (b->len - off < 5)
			abort();
		len = ((size_t)m[1] << 24) | ((size_t)m[2] << 16) | ((size_t)m[3] << 8) | m[4];
		if (len < 4 || off + 1 + len > b->len)
			abort();
		off += 1 + len;
	}
}

static const uint8_t zeros[4096];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct extq_names names[2] = {{0}, {0}};
	struct extq_server srv = {0};
	struct cmn_buf out = {0};
	size_t i = 0;
	int max = 1 + (size ? data[0] % 4 : 0);

	while (i < size) {
		uint8_t op = data[i++];

		switch (op % 4) {
		case 0:
		case 1: { /* a client message: type, body length, body */
			if (i + 2 > size)
				goto done;
			uint8_t type = fe_types[data[i] % sizeof(fe_types)];
			size_t n = data[i + 1] % 64;
			uint8_t m[5 + 64];
			size_t replaced;

			i += 2;
			if (n > size - i)
				n = size - i;
			m[0] = type;
			m[1] = m[2] = 0;
			m[3] = (uint8_t)((n + 4) >> 8);
			m[4] = (uint8_t)(n + 4);
			memcpy(m + 5, data + i, n);
			i += n;
			cmn_buf_reset(&out);
			/* Sometimes only the first part has arrived (passed on as it arrives). */
			size_t total = n + 5 + ((op & 0x20) ? 1 + (op >> 6) * 1000 : 0);

			m[1] = (uint8_t)((total - 1) >> 24);
			m[2] = (uint8_t)((total - 1) >> 16);
			m[3] = (uint8_t)((total - 1) >> 8);
			m[4] = (uint8_t)(total - 1);
			if (extq_client_message(&names[op & 1 ? 1 : 0], &srv, (op & 0x10) ? 0 : max,
						m, n + 5, total, &out, &replaced) != PGW_OK)
				goto done;
			if ((!replaced && out.len) || replaced > n + 5 ||
			    (replaced && replaced < total && m[0] != 'B'))
				abort();
			/* What was replaced, then the rest of the message as it is: framed. */
			if (replaced &&
			    (cmn_buf_append(&out, m + replaced, n + 5 - replaced) != PGW_OK ||
			     cmn_buf_append(&out, zeros, total - n - 5) != PGW_OK))
				goto done;
			check_framing(&out);
			break;
		}
		case 2: { /* a server answer */
			struct extq_verdict v;
			size_t before = extq_pending(&srv);

			if (i >= size)
				goto done;
			extq_backend(&srv, be_types[data[i++] % sizeof(be_types)], &v);
			if (extq_pending(&srv) > before)
				abort();
			while (extq_next_synth(&srv))
				;
			break;
		}
		default: /* the server connection is replaced */
			if (op & 0x80)
				extq_server_free(&srv);
			else if (op & 0x40)
				extq_names_free(&names[op & 1]);
			break;
		}
	}
done:
	extq_server_free(&srv);
	extq_names_free(&names[0]);
	extq_names_free(&names[1]);
	cmn_buf_free(&out);
	if (extq_stmt_count() != 0)
		abort();
	return 0;
}
