/*
 * libFuzzer target: what a REST client or an edit-config user can send about the
 * dynamic configuration: the whole document (PATCH /config body, the config key),
 * a merge patch onto a stored document, --set / --pg assignments, and PostgreSQL
 * values checked against pg_settings-like rows.
 */
#include "cluster/dyncfg.h"
#include "node/agentcfg.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct dyncfg_pg_setting rows[] = {
	    {"work_mem", "integer", "kB", "64", "2147483647", "", "user"},
	    {"shared_buffers", "integer", "8kB", "16", "1073741823", "", "postmaster"},
	    {"checkpoint_completion_target", "real", "", "0", "1", "", "sighup"},
	    {"wal_level", "enum", "", "", "", "minimal\x1freplica\x1flogical", "postmaster"},
	    {"autovacuum", "bool", "", "", "", "", "sighup"},
	    {"vacuum_cost_delay", "real", "ms", "0", "100", "", "user"},
	};
	char *text = malloc(size + 1), err[1024];
	struct dyncfg c;
	json_object *root, *patch;

	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	if (dyncfg_parse(text, &agent_config_dyncfg_rules, &c, err, sizeof(err)) == PGW_OK)
		dyncfg_free(&c);
	root = json_tokener_parse("{\"ttl\": 4, \"postgresql\": {\"parameters\": "
				  "{\"work_mem\": \"4MB\"}}}");
	patch = json_tokener_parse(text);
	if (root && patch && json_object_is_type(patch, json_type_object)) {
		dyncfg_merge_patch(root, patch);
		if (dyncfg_parse_obj(root, &agent_config_dyncfg_rules, &c, err, sizeof(err)) ==
		    PGW_OK)
			dyncfg_free(&c);
	}
	json_object_put(patch);
	if (root) {
		(void)dyncfg_set(root, &agent_config_dyncfg_rules, text, err, sizeof(err));
		(void)dyncfg_set_pg(root, &agent_config_dyncfg_rules, text, err, sizeof(err));
		json_object_put(root);
	}
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		(void)dyncfg_check_pg_value(&rows[i], text, err, sizeof(err));
	free(text);
	return 0;
}
