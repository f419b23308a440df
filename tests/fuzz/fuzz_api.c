/*
 * libFuzzer target: the REST API's request handling, whole, as a client on the network
 * reaches it: the input is sent as one request (or several, kept alive) to a running
 * API server (libmicrohttpd, its routes, the lag argument, basic auth, bodies of the
 * mutating endpoints, the slow-client guard), then the answer is read to its end.
 * Seeds: tests/fuzz/corpus/api.
 */
#include "agent/api.h"
#include "common/util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void answer(void *arg, const struct api_call *call, struct api_answer *ans)
{
	(void)arg;
	ans->code = strcmp(call->path, "/config") == 0 ? 400 : 200;
	snprintf(ans->message, sizeof(ans->message), "fuzz: %zu bytes", strlen(call->body));
}

static int port;

static void start(void)
{
	static struct api_state st;
	static const struct api_ops ops = {
	    .fn = answer, .arg = NULL, .username = "pgwarden", .password = "secret"};
	struct api_server *srv;

	api_state_init(&st, 10000);
	api_state_set_docs(&st, strdup("{\"role\": \"primary\", \"state\": \"running\"}"),
			   strdup("{\"members\": []}"), strdup("[]"));
	for (port = 39100 + getpid() % 500; port < 39900; port++)
		if (api_start("127.0.0.1", port, NULL, NULL, &st, &ops, &srv) == PGW_OK)
			return;
	abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	struct timeval tv = {.tv_sec = 2};
	char sink[4096];
	int fd;

	if (!port)
		start();
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return 0;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
		size_t off = 0;

		while (off < size) {
			ssize_t n = send(fd, data + off, size - off, MSG_NOSIGNAL);

			if (n <= 0)
				break;
			off += (size_t)n;
		}
		shutdown(fd, SHUT_WR);
		while (recv(fd, sink, sizeof(sink), 0) > 0)
			;
	}
	close(fd);
	return 0;
}
