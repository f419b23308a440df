#include "cluster/confedit.h"
#include "cluster/dyncfg.h"
#include "common/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void confedit_result_free(struct confedit_result *r)
{
	free(r->old_text);
	free(r->new_text);
	memset(r, 0, sizeof(*r));
}

static void flatten(json_object *o, const char *prefix, struct cmn_buf *b)
{
	json_object_object_foreach(o, key, val)
	{
		char path[512];

		snprintf(path, sizeof(path), "%s%s", prefix, key);
		if (json_object_is_type(val, json_type_object)) {
			char sub[520];

			snprintf(sub, sizeof(sub), "%s.", path);
			flatten(val, sub, b);
		} else {
			cmn_buf_printf(b, "%s = %s\n", path,
				       json_object_to_json_string_ext(val, JSON_C_TO_STRING_PLAIN));
		}
	}
}

char *confedit_flatten(const char *json)
{
	json_object *o = json && *json ? json_tokener_parse(json) : NULL;
	struct cmn_buf b = {0};

	if (o && json_object_is_type(o, json_type_object))
		flatten(o, "", &b);
	json_object_put(o);
	if (!b.data)
		return strdup("");
	return b.data;
}

/* The member to check PostgreSQL parameters against: the leader, else a running one. */
static const struct dcs_member *validator(const struct dcs_cluster *c)
{
	if (c->has_leader) {
		const struct dcs_member *m = dcs_find_member(c, c->leader);

		if (m && m->host[0])
			return m;
	}
	for (size_t i = 0; i < c->n_members; i++)
		if (c->members[i].host[0] && strcmp(c->members[i].state, "streaming") == 0)
			return &c->members[i];
	return NULL;
}

int confedit_run(struct dcs *d, const struct confedit_checks *checks, confedit_fn edit, void *arg,
		 int64_t expect_revision, bool dry_run, struct confedit_result *out, char *err,
		 size_t err_size)
{
	struct dcs_cluster c;
	struct dyncfg before, after;
	struct cmn_kvlist changed = {0};
	json_object *root = NULL;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = dcs_read(d, &c);
	if (rc != PGW_OK) {
		snprintf(err, err_size, "cannot read the cluster from etcd");
		return PGW_ENET;
	}
	out->revision = c.config_mod_revision;
	if (expect_revision >= 0 && expect_revision != c.config_mod_revision) {
		snprintf(err, err_size, "the configuration changed meanwhile: try again");
		rc = PGW_EUNAVAIL;
		goto out;
	}
	root = c.config ? json_tokener_parse(c.config) : NULL;
	if (!root || !json_object_is_type(root, json_type_object)) {
		json_object_put(root);
		root = json_object_new_object();
	}
	out->old_text = strdup(json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY));
	/* What is stored may predate a rule; only parameters it really changes get checked. */
	if (dyncfg_parse_obj(root, checks->rules, &before, err, err_size) != PGW_OK)
		memset(&before, 0, sizeof(before));
	rc = edit(root, arg, err, err_size);
	if (rc != PGW_OK)
		goto out_before;
	rc = dyncfg_parse_obj(root, checks->rules, &after, err, err_size);
	if (rc != PGW_OK)
		goto out_before;
	out->new_text = strdup(json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY));
	out->changed = !out->old_text || !out->new_text || strcmp(out->old_text, out->new_text);
	for (size_t i = 0; i < after.parameters.n && rc == PGW_OK; i++) {
		const struct cmn_kv *kv = &after.parameters.items[i];
		const char *old = cmn_kvlist_get(&before.parameters, kv->key);

		if (!old || strcmp(old, kv->value) != 0)
			rc = cmn_kvlist_set(&changed, kv->key, kv->value, "edit");
	}
	if (rc == PGW_OK && changed.n > 0) {
		const struct dcs_member *m = validator(&c);

		if (!m) {
			snprintf(err, err_size,
				 "no running member to check the PostgreSQL parameters against");
			rc = PGW_ENET;
		} else {
			rc = checks->check_params(checks->arg, m->host, m->port, &changed, err,
						  err_size);
		}
	}
	if (rc == PGW_OK && !dry_run && out->changed) {
		const char *text = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN);
		bool ok = false;

		rc = dcs_put_config(d, text, c.config_mod_revision, &ok);
		if (rc != PGW_OK) {
			snprintf(err, err_size, "cannot write the configuration to etcd");
			rc = PGW_ENET;
		} else if (!ok) {
			snprintf(err, err_size, "the configuration changed meanwhile: try again");
			rc = PGW_EUNAVAIL;
		}
	}
	cmn_kvlist_free(&changed);
	dyncfg_free(&after);
out_before:
	dyncfg_free(&before);
out:
	json_object_put(root);
	dcs_cluster_free(&c);
	return rc;
}
