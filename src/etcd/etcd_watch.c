/*
 * etcd watch: the incremental splitter/parser of the /v3/watch response stream
 * (concatenated JSON objects cut at arbitrary chunk boundaries) and the blocking
 * streaming call that feeds it.
 */
#define PGW_ETCD_INTERNAL
#include "etcd/etcd.h"

#include "common/log.h"
#include "common/timeutil.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WATCH_POLL_MS 100

struct etcd_watch_stream {
	struct json_tokener *tok;
	etcd_watch_cb cb;
	void *arg;
	int state; /* sticky result once non-zero */
	int64_t compact_revision;
	char message[256]; /* etcd's text for an error or a cancel */
};

struct etcd_watch_stream *etcd_watch_stream_new(etcd_watch_cb cb, void *arg)
{
	struct etcd_watch_stream *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->tok = json_tokener_new();
	if (!s->tok) {
		free(s);
		return NULL;
	}
	s->cb = cb;
	s->arg = arg;
	return s;
}

void etcd_watch_stream_free(struct etcd_watch_stream *s)
{
	if (!s)
		return;
	json_tokener_free(s->tok);
	free(s);
}

int64_t etcd_watch_stream_compact_revision(const struct etcd_watch_stream *s)
{
	return s->compact_revision;
}

static int handle_message(struct etcd_watch_stream *s, struct json_object *obj)
{
	struct etcd_watch_message m;
	int rc;

	rc = etcd_parse_watch_object(obj, &m);
	if (rc != 0) {
		snprintf(s->message, sizeof(s->message), "unparsable watch message");
		return rc == PGW_ENOMEM ? rc : PGW_EPROTO;
	}
	if (m.error != 0) {
		snprintf(s->message, sizeof(s->message), "%s", m.message);
		rc = m.error;
	} else if (m.canceled) {
		snprintf(s->message, sizeof(s->message), "%s",
			 m.message[0] ? m.message : "watch canceled by the server");
		if (m.compact_revision > 0) {
			s->compact_revision = m.compact_revision;
			rc = PGW_ENOTFOUND;
		} else {
			/* e.g. "rpc error: code = Unauthenticated desc = ...: invalid auth token"
			 */
			rc = etcd_classify_message(m.message, PGW_EUNAVAIL);
			if (rc == PGW_ENOTFOUND)
				rc = PGW_EUNAVAIL;
		}
	} else if (!s->cb(s->arg, &m.header, m.events, m.n_events)) {
		rc = 1;
	}
	etcd_watch_message_free(&m);
	return rc;
}

int etcd_watch_stream_feed(struct etcd_watch_stream *s, const char *data, size_t len)
{
	while (s->state == 0 && len > 0) {
		int piece = len > INT_MAX ? INT_MAX : (int)len;
		struct json_object *obj = json_tokener_parse_ex(s->tok, data, piece);
		enum json_tokener_error err = json_tokener_get_error(s->tok);
		size_t used;

		if (!obj) {
			if (err == json_tokener_continue) {
				/* the tokener keeps the partial object; all of piece is consumed */
				data += piece;
				len -= (size_t)piece;
				continue;
			}
			snprintf(s->message, sizeof(s->message), "bad JSON in watch stream: %s",
				 json_tokener_error_desc(err));
			s->state = PGW_EPROTO;
			break;
		}
		used = json_tokener_get_parse_end(s->tok);
		json_tokener_reset(s->tok);
		if (used == 0 || used > (size_t)piece) {
			json_object_put(obj);
			s->state = PGW_EPROTO;
			break;
		}
		data += used;
		len -= used;
		s->state = handle_message(s, obj);
		json_object_put(obj);
	}
	return s->state;
}

/* ---- streaming call ---------------------------------------------------- */

struct watch_ctx {
	struct etcd_watch_stream *stream;
	int result;
	bool got_data;
};

static size_t watch_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct watch_ctx *ctx = userdata;
	size_t n = size * nmemb;
	int rc;

	ctx->got_data = true;
	rc = etcd_watch_stream_feed(ctx->stream, ptr, n);
	if (rc != 0) {
		ctx->result = rc;
		return 0; /* aborts the transfer, which closes the watch */
	}
	return n;
}

/* One streaming request to the current endpoint. */
static int watch_once(struct etcd_client *c, CURLM *multi, const char *body, struct watch_ctx *ctx,
		      const volatile bool *stop, char *msg, size_t msg_size)
{
	int64_t start = cmn_now_ms();
	bool done = false, stopped = false, timed_out = false;
	CURLcode result = CURLE_OK;
	long status = 0;
	CURLMsg *m;
	int rc, queued;

	rc = etcd_client_prepare(c, "/v3/watch", body);
	if (rc != 0) {
		snprintf(msg, msg_size, "%s", pgw_strerror(rc));
		return rc;
	}
	curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT_MS, (long)c->timeout_ms);
	curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, watch_write);
	curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, ctx);
	if (curl_multi_add_handle(multi, c->curl) != CURLM_OK) {
		snprintf(msg, msg_size, "curl_multi_add_handle failed");
		return PGW_ERR;
	}
	for (;;) {
		int running = 0;
		CURLMcode mc = curl_multi_perform(multi, &running);

		if (mc != CURLM_OK) {
			snprintf(msg, msg_size, "curl: %s", curl_multi_strerror(mc));
			rc = PGW_ERR;
			break;
		}
		if (ctx->result != 0 || !running)
			break;
		if (stop && *stop) {
			stopped = true;
			break;
		}
		if (!ctx->got_data && cmn_now_ms() - start > c->timeout_ms) {
			timed_out = true;
			break;
		}
		mc = curl_multi_poll(multi, NULL, 0, WATCH_POLL_MS, NULL);
		if (mc != CURLM_OK) {
			snprintf(msg, msg_size, "curl: %s", curl_multi_strerror(mc));
			rc = PGW_ERR;
			break;
		}
	}
	while ((m = curl_multi_info_read(multi, &queued))) {
		if (m->msg == CURLMSG_DONE && m->easy_handle == c->curl) {
			done = true;
			result = m->data.result;
		}
	}
	curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &status);
	curl_multi_remove_handle(multi, c->curl);

	if (rc != 0)
		return rc;
	if (stopped || ctx->result == 1)
		return PGW_OK;
	if (ctx->result != 0) {
		snprintf(msg, msg_size, "%s", ctx->stream->message);
		return ctx->result;
	}
	if (timed_out) {
		snprintf(msg, msg_size, "no answer within %d ms", c->timeout_ms);
		return PGW_ETIMEOUT;
	}
	if (done && result != CURLE_OK) {
		snprintf(msg, msg_size, "%s",
			 c->errbuf[0] ? c->errbuf : curl_easy_strerror(result));
		return result == CURLE_OPERATION_TIMEDOUT ? PGW_ETIMEOUT : PGW_ENET;
	}
	if (status != 200) {
		snprintf(msg, msg_size, "HTTP status %ld", status);
		return status >= 500 ? PGW_EUNAVAIL : PGW_EPROTO;
	}
	snprintf(msg, msg_size, "the server ended the stream");
	return PGW_EUNAVAIL;
}

int etcd_watch_run(struct etcd_client *c, const char *prefix, int64_t start_revision,
		   etcd_watch_cb cb, void *arg, const volatile bool *stop,
		   int64_t *compact_revision)
{
	char msg[512] = "";
	char *end = NULL, *body = NULL;
	CURLM *multi = NULL;
	size_t tried = 0;
	bool reauthed = false;
	int rc;

	if (compact_revision)
		*compact_revision = 0;
	if (!prefix || !cb) {
		log_error("etcd: watch without a prefix or a callback");
		return PGW_EINVAL;
	}
	end = etcd_prefix_range_end(prefix);
	body = end ? etcd_build_watch_request(prefix, end, start_revision) : NULL;
	multi = body ? curl_multi_init() : NULL;
	if (!multi) {
		log_error("etcd: cannot set up the watch of %s", prefix);
		rc = PGW_ENOMEM;
		goto out;
	}
	for (;;) {
		struct watch_ctx ctx = {0};

		if (stop && *stop) {
			rc = PGW_OK;
			break;
		}
		rc = etcd_client_auth(c, cmn_now_ms() + c->timeout_ms, false);
		if (rc != 0)
			break;
		ctx.stream = etcd_watch_stream_new(cb, arg);
		if (!ctx.stream) {
			log_error("etcd: out of memory starting the watch of %s", prefix);
			rc = PGW_ENOMEM;
			break;
		}
		rc = watch_once(c, multi, body, &ctx, stop, msg, sizeof(msg));
		if (rc == PGW_ENOTFOUND && ctx.stream->compact_revision > 0) {
			if (compact_revision)
				*compact_revision = ctx.stream->compact_revision;
			log_info(
			    "etcd: watch of %s from revision %lld canceled, compacted up to %lld",
			    prefix, (long long)start_revision,
			    (long long)ctx.stream->compact_revision);
			etcd_watch_stream_free(ctx.stream);
			break;
		}
		etcd_watch_stream_free(ctx.stream);
		if (rc == 0)
			break;
		if (rc == PGW_EAUTH && c->username && !reauthed && etcd_auth_error_retryable(msg)) {
			reauthed = true;
			log_info(
			    "etcd: watch on %s: auth token rejected (%s), authenticating again",
			    etcd_client_endpoint(c), msg);
			rc = etcd_client_auth(c, cmn_now_ms() + c->timeout_ms, true);
			if (rc != 0)
				break;
			continue;
		}
		if (!ctx.got_data && (rc == PGW_ENET || rc == PGW_ETIMEOUT || rc == PGW_EUNAVAIL) &&
		    ++tried < c->n_endpoints) {
			log_warning("etcd: watch on %s failed: %s; trying %s",
				    etcd_client_endpoint(c), msg,
				    c->endpoints[(c->cur + 1) % c->n_endpoints]);
			etcd_client_next_endpoint(c);
			continue;
		}
		log_warning("etcd: watch of %s on %s ended: %s (%s)", prefix,
			    etcd_client_endpoint(c), msg, pgw_strerror(rc));
		if (!ctx.got_data && rc != PGW_EAUTH)
			etcd_client_next_endpoint(c);
		break;
	}
out:
	if (multi)
		curl_multi_cleanup(multi);
	free(body);
	free(end);
	return rc;
}
