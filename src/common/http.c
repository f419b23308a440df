#include "common/http.h"
#include "common/log.h"

#include <curl/curl.h>
#include <stdio.h>
#include <string.h>

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *arg)
{
	struct cmn_buf *b = arg;
	size_t n = size * nmemb;

	if (b->len + n > 16 * 1024 * 1024)
		return 0; /* refuse absurd bodies */
	return cmn_buf_append(b, ptr, n) == PGW_OK ? n : 0;
}

static char cafile[4096];

void cmn_http_set_cafile(const char *path)
{
	snprintf(cafile, sizeof(cafile), "%s", path ? path : "");
}

static void setup(CURL *h, const char *url, int timeout_ms, struct cmn_buf *out)
{
	curl_easy_setopt(h, CURLOPT_URL, url);
	if (cafile[0])
		curl_easy_setopt(h, CURLOPT_CAINFO, cafile);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)timeout_ms);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, out);
	curl_easy_setopt(h, CURLOPT_PROXY, "");
}

int cmn_http_request(const char *method, const char *url, const char *body, const char *userpwd,
		     int timeout_ms, struct cmn_buf *out, long *status)
{
	CURL *h = curl_easy_init();
	struct curl_slist *hdrs = NULL;
	CURLcode rc;

	*status = 0;
	if (!h)
		return PGW_ENOMEM;
	setup(h, url, timeout_ms, out);
	curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	if (body) {
		hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
		curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
	}
	if (strcmp(method, "HEAD") == 0)
		curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
	if (userpwd) {
		curl_easy_setopt(h, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
		curl_easy_setopt(h, CURLOPT_USERPWD, userpwd);
	}
	rc = curl_easy_perform(h);
	if (rc == CURLE_OK)
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(h);
	if (rc == CURLE_OPERATION_TIMEDOUT)
		return PGW_ETIMEOUT;
	if (rc == CURLE_PEER_FAILED_VERIFICATION || rc == CURLE_SSL_CONNECT_ERROR ||
	    rc == CURLE_SSL_CACERT_BADFILE)
		log_error("%s: %s (is [api] cafile the CA of the members' REST APIs?)", url,
			  curl_easy_strerror(rc));
	if (rc != CURLE_OK)
		return PGW_ENET;
	return PGW_OK;
}

void cmn_http_get_many(const char *const *urls, size_t n, int timeout_ms, struct cmn_buf *out,
		       long *status)
{
	CURLM *m = curl_multi_init();
	CURL *handles[64] = {0};
	int running = 0;

	if (n > 64)
		n = 64;
	for (size_t i = 0; i < n; i++) {
		status[i] = 0;
		handles[i] = curl_easy_init();
		if (!handles[i] || !m)
			continue;
		setup(handles[i], urls[i], timeout_ms, &out[i]);
		curl_multi_add_handle(m, handles[i]);
	}
	if (m) {
		do {
			if (curl_multi_perform(m, &running) != CURLM_OK)
				break;
			if (running)
				curl_multi_poll(m, NULL, 0, 100, NULL);
		} while (running);
		CURLMsg *msg;
		int left;

		while ((msg = curl_multi_info_read(m, &left)) != NULL) {
			if (msg->msg != CURLMSG_DONE || msg->data.result != CURLE_OK)
				continue;
			for (size_t i = 0; i < n; i++)
				if (handles[i] == msg->easy_handle)
					curl_easy_getinfo(handles[i], CURLINFO_RESPONSE_CODE,
							  &status[i]);
		}
	}
	for (size_t i = 0; i < n; i++) {
		if (handles[i]) {
			if (m)
				curl_multi_remove_handle(m, handles[i]);
			curl_easy_cleanup(handles[i]);
		}
	}
	if (m)
		curl_multi_cleanup(m);
}
