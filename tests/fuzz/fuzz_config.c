/* libFuzzer target: the node configuration parser (INI + cross-checks). */
#include "node/agentcfg.h"
#include "node/pgconf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct agent_config cfg;
	char path[64], err[1024];
	int fd = memfd_create("pgw-fuzz-config", 0);

	if (fd < 0)
		return 0;
	if (write(fd, data, size) != (ssize_t)size) {
		close(fd);
		return 0;
	}
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	if (agent_config_load(path, &cfg, err, sizeof(err)) == PGW_OK)
		(void)pgconf_check_parameters(&cfg, err, sizeof(err));
	agent_config_free(&cfg);
	close(fd);
	return 0;
}
