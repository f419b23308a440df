#include "common/base64.h"

#include <stdint.h>

static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int cmn_b64_encode(const void *data, size_t n, char *out, size_t size)
{
	const unsigned char *in = data;
	size_t o = 0;

	if (n > (SIZE_MAX - 1) / 4 * 3 - 2 || CMN_B64_LEN(n) + 1 > size)
		return PGW_EINVAL;
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16;
		size_t rest = n - i;

		if (rest > 1)
			v |= (uint32_t)in[i + 1] << 8;
		if (rest > 2)
			v |= in[i + 2];
		out[o++] = alphabet[(v >> 18) & 63];
		out[o++] = alphabet[(v >> 12) & 63];
		out[o++] = rest > 1 ? alphabet[(v >> 6) & 63] : '=';
		out[o++] = rest > 2 ? alphabet[v & 63] : '=';
	}
	out[o] = '\0';
	return PGW_OK;
}

static int value_of(unsigned char ch)
{
	if (ch >= 'A' && ch <= 'Z')
		return ch - 'A';
	if (ch >= 'a' && ch <= 'z')
		return ch - 'a' + 26;
	if (ch >= '0' && ch <= '9')
		return ch - '0' + 52;
	if (ch == '+')
		return 62;
	if (ch == '/')
		return 63;
	return -1;
}

int cmn_b64_decode(const char *in, size_t n, bool strict, void *data, size_t size, size_t *out_len)
{
	unsigned char *out = data;
	size_t pad = 0, o = 0;
	unsigned int acc = 0, bits = 0;

	*out_len = 0;
	if (strict && n % 4 != 0)
		return PGW_EPROTO;
	while (n > 0 && in[n - 1] == '=') {
		n--;
		pad++;
	}
	if (pad > 2 || (pad > 0 && (n + pad) % 4 != 0) || n % 4 == 1)
		return PGW_EPROTO;
	for (size_t i = 0; i < n; i++) {
		int v = value_of((unsigned char)in[i]);

		if (v < 0)
			return PGW_EPROTO;
		acc = ((acc << 6) | (unsigned int)v) & 0xffffu;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o >= size)
				return PGW_EPROTO;
			out[o++] = (unsigned char)((acc >> bits) & 0xff);
		}
	}
	*out_len = o;
	return PGW_OK;
}
