/*
 * global/pg_control of PostgreSQL 15 (control version 1300, which 13, 14 and 16 share):
 * the fields read here lie at fixed offsets of ControlFileData on a 64-bit little-endian machine
 * (system_identifier 0, pg_control_version 8, state 16, checkPoint 32,
 * checkPointCopy.ThisTimeLineID 48) and the CRC-32C of the first 288 bytes follows them at 288.
 * PostgreSQL rewrites the file in place with one write; a read that meets the write half done fails
 * the CRC. And the timeline history files of pg_wal.
 */
#include "node/pgcontrol.h"
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define PGCONTROL_VERSION	 1300u /* PostgreSQL 13 to 16: one layout */
#define PGCONTROL_CRC_OFFSET	 288
#define PGCONTROL_OFF_VERSION	 8
#define PGCONTROL_OFF_STATE	 16
#define PGCONTROL_OFF_CHECKPOINT 32
#define PGCONTROL_OFF_TLI	 48

static uint32_t crc_table[256];

static void crc_table_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;

		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ ((c & 1) ? 0x82F63B78u : 0);
		crc_table[i] = c;
	}
}

uint32_t pgcontrol_crc32c(const void *data, size_t len)
{
	const unsigned char *p = data;
	uint32_t crc = 0xFFFFFFFFu;

	if (!crc_table[1])
		crc_table_init();
	for (size_t i = 0; i < len; i++)
		crc = crc_table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
	return crc ^ 0xFFFFFFFFu;
}

static uint64_t le64(const unsigned char *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static uint32_t le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int pgcontrol_parse(const unsigned char *buf, size_t len, struct pgcontrol *out)
{
	uint32_t state;

	memset(out, 0, sizeof(*out));
	if (len < PGCONTROL_CRC_OFFSET + 4 ||
	    le32(buf + PGCONTROL_OFF_VERSION) != PGCONTROL_VERSION)
		return PGW_EPROTO;
	if (pgcontrol_crc32c(buf, PGCONTROL_CRC_OFFSET) != le32(buf + PGCONTROL_CRC_OFFSET))
		return PGW_EPROTO;
	state = le32(buf + PGCONTROL_OFF_STATE);
	if (state + 1 > PGCTL_CD_IN_PRODUCTION)
		return PGW_EPROTO;
	out->sysid = le64(buf);
	out->state = (enum pgctl_cd_state)(state + 1);
	out->checkpoint_lsn = le64(buf + PGCONTROL_OFF_CHECKPOINT);
	out->checkpoint_tli = (int)le32(buf + PGCONTROL_OFF_TLI);
	return PGW_OK;
}

int pgcontrol_read(const char *data_dir, struct pgcontrol *out)
{
	unsigned char buf[512];
	char path[4200];
	ssize_t n;
	int fd;

	memset(out, 0, sizeof(*out));
	snprintf(path, sizeof(path), "%s/global/pg_control", data_dir);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return PGW_ERR;
	do
		n = pread(fd, buf, sizeof(buf), 0);
	while (n < 0 && errno == EINTR);
	close(fd);
	if (n < 0)
		return PGW_ERR;
	return pgcontrol_parse(buf, (size_t)n, out);
}

int pgcontrol_parse_history(const char *text, struct tl_switch *out, size_t max)
{
	size_t n = 0;

	for (const char *line = text; line && *line;) {
		const char *eol = strchr(line, '\n');
		size_t len = eol ? (size_t)(eol - line) : strlen(line);
		char buf[256], lsn[64];
		unsigned int tl;

		snprintf(buf, sizeof(buf), "%.*s", (int)(len < 255 ? len : 255), line);
		line = eol ? eol + 1 : NULL;
		char *p = buf;

		while (*p == ' ' || *p == '\t' || *p == '\r')
			p++;
		if (!*p || *p == '#')
			continue;
		if (sscanf(p, "%u %63s", &tl, lsn) != 2 || tl == 0)
			return -1;
		if (n >= max)
			return -1;
		out[n].tl = (int)tl;
		if (cmn_parse_lsn(lsn, &out[n].switch_lsn) != PGW_OK)
			return -1;
		n++;
	}
	return (int)n;
}

int pgcontrol_fork_lsn(const char *data_dir, int tli, int parent, uint64_t *lsn)
{
	struct tl_switch sw;
	char path[4200], line[512];
	int found = PGW_ENOTFOUND;
	FILE *f;

	snprintf(path, sizeof(path), "%s/pg_wal/%08X.history", data_dir, (unsigned)tli);
	f = fopen(path, "r");
	if (!f)
		return PGW_ERR;
	while (found != PGW_EPROTO && fgets(line, sizeof(line), f)) {
		int n = pgcontrol_parse_history(line, &sw, 1);

		if (n < 0)
			found = PGW_EPROTO;
		else if (n == 1 && sw.tl == parent) {
			*lsn = sw.switch_lsn;
			found = PGW_OK;
		}
	}
	fclose(f);
	return found;
}
