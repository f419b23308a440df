/*
 * chaos-nfdelay: adds a fixed latency to every packet of one NFQUEUE queue.
 *
 *     chaos-nfdelay QUEUE DELAY_MS
 *
 * The chaos suite's kernel has no sch_netem, so "tc qdisc ... netem delay" is not
 * available; an iptables rule "-j NFQUEUE --queue-num Q --queue-bypass" hands packets
 * to this process instead, which holds each one for DELAY_MS and then lets it go, in
 * the order they came. With --queue-bypass the packets flow again as soon as this
 * process ends. Stops on SIGTERM or SIGINT.
 */
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <linux/netfilter.h>
#include <linux/netlink.h>

#include <endian.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define RING 65536 /* packets held at once; more are let through at once */

struct held {
	uint32_t id;
	int64_t due_ms;
};

static struct held ring[RING];
static size_t head, count;
static int64_t delay_ms;
static volatile sig_atomic_t stopping;

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int on_packet(struct nfq_q_handle *qh, struct nfgenmsg *msg, struct nfq_data *nfa,
		     void *data)
{
	struct nfqnl_msg_packet_hdr *ph = nfq_get_msg_packet_hdr(nfa);
	uint32_t id;

	(void)msg;
	(void)data;
	if (!ph)
		return 0;
	id = be32toh(ph->packet_id);
	if (count == RING)
		return nfq_set_verdict(qh, id, NF_ACCEPT, 0, NULL);
	ring[(head + count) % RING] = (struct held){id, now_ms() + delay_ms};
	count++;
	return 0;
}

static void release_due(struct nfq_q_handle *qh, bool all)
{
	int64_t now = now_ms();

	while (count && (all || ring[head].due_ms <= now)) {
		if (nfq_set_verdict(qh, ring[head].id, NF_ACCEPT, 0, NULL) < 0)
			fprintf(stderr, "chaos-nfdelay: verdict for packet %u failed: %s\n",
				ring[head].id, strerror(errno));
		head = (head + 1) % RING;
		count--;
	}
}

static void on_signal(int sig)
{
	(void)sig;
	stopping = 1;
}

int main(int argc, char **argv)
{
	struct nfq_handle *h;
	struct nfq_q_handle *qh;
	char buf[65536] __attribute__((aligned));
	struct sigaction sa = {.sa_handler = on_signal};
	char *end;
	long queue;

	if (argc != 3) {
		fprintf(stderr, "usage: chaos-nfdelay QUEUE DELAY_MS\n");
		return 2;
	}
	queue = strtol(argv[1], &end, 10);
	if (*end || queue < 0 || queue > 65535) {
		fprintf(stderr, "chaos-nfdelay: bad queue number '%s'\n", argv[1]);
		return 2;
	}
	delay_ms = strtol(argv[2], &end, 10);
	if (*end || delay_ms < 0 || delay_ms > 60000) {
		fprintf(stderr, "chaos-nfdelay: bad delay '%s' (0..60000 ms)\n", argv[2]);
		return 2;
	}
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	h = nfq_open();
	if (!h) {
		perror("chaos-nfdelay: nfq_open");
		return 1;
	}
	qh = nfq_create_queue(h, (uint16_t)queue, on_packet, NULL);
	if (!qh || nfq_set_mode(qh, NFQNL_COPY_META, 0) < 0) {
		perror("chaos-nfdelay: cannot bind the queue");
		nfq_close(h);
		return 1;
	}
	(void)nfq_set_queue_maxlen(qh, RING);
	/* A full queue lets packets through rather than drop them (latency, not loss). */
	(void)nfq_set_queue_flags(qh, NFQA_CFG_F_FAIL_OPEN, NFQA_CFG_F_FAIL_OPEN);
	int fd = nfq_fd(h), one = 1;

	(void)nfnl_rcvbufsiz(nfq_nfnlh(h), 8 << 20);
	(void)setsockopt(fd, SOL_NETLINK, NETLINK_NO_ENOBUFS, &one, sizeof(one));

	printf("ready\n");
	fflush(stdout);
	while (!stopping) {
		int timeout = count ? (int)(ring[head].due_ms - now_ms()) : 1000;
		struct pollfd p = {.fd = fd, .events = POLLIN};

		if (timeout < 0)
			timeout = 0;
		if (poll(&p, 1, timeout) > 0) {
			/* Everything queued, not one message per wake-up. */
			for (;;) {
				ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);

				if (n > 0) {
					nfq_handle_packet(h, buf, (int)n);
					continue;
				}
				if (n < 0 && errno == ENOBUFS) {
					fprintf(stderr, "chaos-nfdelay: the kernel dropped packets "
							"(ENOBUFS)\n");
					continue;
				}
				break;
			}
		}
		release_due(qh, false);
	}
	release_due(qh, true);
	nfq_destroy_queue(qh);
	nfq_close(h);
	return 0;
}
