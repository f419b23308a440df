#include "cluster/member.h"
#include "common/http.h"
#include "common/util.h"

#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

bool member_parse_status(const char *body, struct member_status *out)
{
	json_object *o = body ? json_tokener_parse(body) : NULL, *v;

	memset(out, 0, sizeof(*out));
	if (!o || !json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		return false;
	}
	if (json_object_object_get_ex(o, "role", &v))
		snprintf(out->role, sizeof(out->role), "%s", json_object_get_string(v));
	if (json_object_object_get_ex(o, "state", &v))
		snprintf(out->state, sizeof(out->state), "%s", json_object_get_string(v));
	if (json_object_object_get_ex(o, "timeline", &v))
		out->timeline = json_object_get_int(v);
	if (json_object_object_get_ex(o, "lsn", &v))
		out->lsn = (uint64_t)json_object_get_int64(v);
	if (json_object_object_get_ex(o, "lag", &v))
		out->lag = json_object_get_int64(v);
	if (json_object_object_get_ex(o, "lag_seconds", &v))
		out->lag_seconds = v ? json_object_get_double(v) : -1; /* null: unknown */
	json_object_put(o);
	return true;
}

bool member_fetch_status(const struct dcs_member *m, struct member_status *st)
{
	struct cmn_buf b = {0};
	char url[400];
	long code = 0;
	bool ok;

	snprintf(url, sizeof(url), "%s/status", m->api_url);
	ok = cmn_http_request("GET", url, NULL, NULL, 2000, &b, &code) == PGW_OK && code == 200 &&
	     member_parse_status(b.data, st);
	cmn_buf_free(&b);
	return ok;
}
