/* The catalogue: one row per case. IDs are stable (tests, docs/CONFORMANCE.md and other people's
 * scripts refer to them): add cases, never renumber or rename one. The order is the run order.
 * The last field: how a case may share the server under --overlap, and CASE_LONG for the
 * cases that take seconds by design (conform.h). */
#include "conform.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define CASE(fn) void fn(struct casectx *c);
CASE(case_echo_bytes_256) CASE(case_echo_onebyte_2000) CASE(case_echo_pipeline_5000)
CASE(case_echo_size_1) CASE(case_echo_size_4095) CASE(case_echo_size_4096)
CASE(case_echo_size_4097) CASE(case_echo_size_65535) CASE(case_echo_size_65536)
CASE(case_echo_size_65537) CASE(case_echo_bulk_1m) CASE(case_echo_bulk_16m)
CASE(case_echo_frag_write) CASE(case_echo_frag_read) CASE(case_echo_clients_200)
CASE(case_echo_ipv6)
CASE(case_half_close_0) CASE(case_half_close_5) CASE(case_half_close_100000)
CASE(case_half_close_delayed_3s) CASE(case_half_close_slow_drain)
CASE(case_half_close_same_flight)
CASE(case_udp_size_0) CASE(case_udp_size_1) CASE(case_udp_size_1472)
CASE(case_udp_size_65507) CASE(case_udp_many_1000)
CASE(case_disc_close_1s) CASE(case_disc_empty_fin) CASE(case_disc_empty_shutwr)
CASE(case_disc_empty_rst) CASE(case_disc_idle_5s)
CASE(case_rst_midstream) CASE(case_rst_close_unread) CASE(case_rst_before_accept)
CASE(case_bp_rss_nonreader) CASE(case_bp_slow_reader) CASE(case_bp_stall_64m)
CASE(case_limit_burst_200) CASE(case_limit_churn_10k) CASE(case_limit_conns_1100)
CASE(case_limit_emfile)
CASE(case_wb_fd_baseline) CASE(case_wb_idle_cpu)
#undef CASE

#define M LEVEL_MUST
#define S LEVEL_SHOULD

const struct conf_case conf_cases[] = {
	/* id                      level needs        builtin_ms  function                    flags */
	{ "ECHO-BYTES-256",          M, 0,             0, case_echo_bytes_256, 0,
	  "all 256 byte values (NUL, CR, LF, 0xff) come back unchanged" },
	{ "ECHO-ONEBYTE-2000",       M, 0,             0, case_echo_onebyte_2000, 0,
	  "2000 one-byte writes come back in order" },
	{ "ECHO-PIPELINE-5000",      M, 0,             0, case_echo_pipeline_5000, 0,
	  "5000 messages pipelined in one write come back in order" },
	{ "ECHO-SIZE-1",             M, 0,             0, case_echo_size_1, 0,
	  "a 1-byte write is echoed" },
	{ "ECHO-SIZE-4095",          M, 0,             0, case_echo_size_4095, 0,
	  "a 4095-byte write is echoed" },
	{ "ECHO-SIZE-4096",          M, 0,             0, case_echo_size_4096, 0,
	  "a 4096-byte write is echoed" },
	{ "ECHO-SIZE-4097",          M, 0,             0, case_echo_size_4097, 0,
	  "a 4097-byte write is echoed" },
	{ "ECHO-SIZE-65535",         M, 0,             0, case_echo_size_65535, 0,
	  "a 65535-byte write is echoed" },
	{ "ECHO-SIZE-65536",         M, 0,             0, case_echo_size_65536, 0,
	  "a 65536-byte write is echoed" },
	{ "ECHO-SIZE-65537",         M, 0,             0, case_echo_size_65537, 0,
	  "a 65537-byte write is echoed" },
	{ "ECHO-BULK-1M",            M, 0,             0, case_echo_bulk_1m, 0,
	  "1 MiB sent while reading concurrently comes back intact (hash)" },
	{ "ECHO-BULK-16M",           M, 0,          1000, case_echo_bulk_16m, 0,
	  "16 MiB sent while reading concurrently comes back intact (hash)" },
	{ "ECHO-FRAG-WRITE",         M, 0,             0, case_echo_frag_write, 0,
	  "random fragmentation of writes (1-3000 bytes) changes nothing" },
	{ "ECHO-FRAG-READ",          M, 0,             0, case_echo_frag_read, 0,
	  "random fragmentation of reads (1-1500 bytes, small window) changes nothing" },
	{ "ECHO-CLIENTS-200",        M, 0,          1000, case_echo_clients_200, 0,
	  "200 concurrent clients each get exactly their own data back (no cross-talk)" },
	{ "ECHO-IPV6",               M, NEED_IP,       0, case_echo_ipv6, 0,
	  "echo works over IPv6 when the server listens there" },

	{ "HALF-CLOSE-0",            M, 0,           200, case_half_close_0, 0,
	  "SHUT_WR without data: EOF back, never RST" },
	{ "HALF-CLOSE-5",            M, 0,           200, case_half_close_5, 0,
	  "5 bytes then SHUT_WR: exactly 5 bytes back, then EOF" },
	{ "HALF-CLOSE-100000",       M, 0,           200, case_half_close_100000, 0,
	  "100000 bytes then SHUT_WR: exactly 100000 bytes back, then EOF" },
	{ "HALF-CLOSE-DELAYED-3S",   M, 0,          3000, case_half_close_delayed_3s, RUN_BACKGROUND | CASE_LONG,
	  "SHUT_WR, first read after 3 s: the pending echo was kept" },
	{ "HALF-CLOSE-SLOW-DRAIN",   M, 0,          4000, case_half_close_slow_drain, RUN_BACKGROUND | CASE_LONG,
	  "SHUT_WR with megabytes pending and a 2 MiB/s reader: all drained, then EOF" },
	{ "HALF-CLOSE-SAME-FLIGHT",  M, 0,             0, case_half_close_same_flight, 0,
	  "data and FIN in the same segment: data back, then EOF" },

	{ "UDP-SIZE-0",              M, NEED_UDP,      0, case_udp_size_0, 0,
	  "an empty datagram comes back as one empty datagram" },
	{ "UDP-SIZE-1",              M, NEED_UDP,      0, case_udp_size_1, 0,
	  "a 1-byte datagram comes back identical" },
	{ "UDP-SIZE-1472",           M, NEED_UDP,      0, case_udp_size_1472, 0,
	  "a 1472-byte datagram comes back identical" },
	{ "UDP-SIZE-65507",          M, NEED_UDP,      0, case_udp_size_65507, 0,
	  "a 65507-byte datagram (the largest) comes back identical" },
	{ "UDP-MANY-1000",           M, NEED_UDP,      0, case_udp_many_1000, 0,
	  "1000 datagrams from 10 sockets come back to their senders, none crossed" },

	{ "DISC-CLOSE-1S",           M, NEED_LOCAL, 2000, case_disc_close_1s, RUN_ALONE,
	  "after the client closes, the server closes its side within 1 s (no CLOSE-WAIT)" },
	{ "DISC-EMPTY-FIN",          M, 0,          1000, case_disc_empty_fin, RUN_ALONE,
	  "60 connections closed by FIN without data: no leak, still serving" },
	{ "DISC-EMPTY-SHUTWR",       M, 0,          1000, case_disc_empty_shutwr, RUN_ALONE,
	  "60 connections half-closed without data: EOF each, no leak, still serving" },
	{ "DISC-EMPTY-RST",          M, 0,          1000, case_disc_empty_rst, RUN_ALONE,
	  "60 connections reset without data: no leak, still serving" },
	{ "DISC-IDLE-5S",            M, 0,          5000, case_disc_idle_5s, RUN_BACKGROUND | CASE_LONG,
	  "an idle connection is kept for 5 s and still echoes" },

	{ "RST-MIDSTREAM",           M, NEED_IP,    1500, case_rst_midstream, RUN_ALONE,
	  "a client reset in mid-stream: server survives, frees the connection" },
	{ "RST-CLOSE-UNREAD",        M, NEED_IP,    2500, case_rst_close_unread, RUN_ALONE,
	  "a client sends 1 MiB and closes without reading (EPIPE/ECONNRESET): server survives" },
	{ "RST-BEFORE-ACCEPT",       M, NEED_IP,    1000, case_rst_before_accept, RUN_ALONE,
	  "connections reset before accept(): the server keeps accepting" },

	{ "BP-RSS-NONREADER",        S, NEED_PID,   2000, case_bp_rss_nonreader, RUN_ALONE,
	  "a non-reading client does not grow the server's memory (RSS +16 MiB at most)" },
	{ "BP-SLOW-READER",          M, 0,          1000, case_bp_slow_reader, RUN_ALONE,
	  "a slow reader (2 MiB/s) loses nothing" },
	{ "BP-STALL-64M",            S, 0,          5000, case_bp_stall_64m, RUN_ALONE | CASE_LONG,
	  "a client sending 64 MiB without reading stalls only itself (others' p99 < 50 ms)" },

	{ "LIMIT-BURST-200",         S, 0,          1000, case_limit_burst_200, RUN_ALONE,
	  "200 simultaneous connects are all established within 1 s" },
	{ "LIMIT-CHURN-10K",         S, 0,         10000, case_limit_churn_10k, RUN_ALONE | CASE_LONG,
	  "10,000 connect/echo/close cycles: all echo, nothing leaks" },
	{ "LIMIT-CONNS-1100",        S, 0,          2000, case_limit_conns_1100, RUN_ALONE,
	  "1,100 concurrent connections: served or cleanly refused, no crash" },
	{ "LIMIT-EMFILE",            S, NEED_PID,   2500, case_limit_emfile, RUN_ALONE,
	  "at its fd limit (EMFILE) the server does not spin and recovers" },

	{ "WB-FD-BASELINE",          S, NEED_PID,   1000, case_wb_fd_baseline, RUN_ALONE,
	  "the server's fd count returns to its baseline after clients disconnect" },
	{ "WB-IDLE-CPU",             S, NEED_PID,   1300, case_wb_idle_cpu, RUN_ALONE | CASE_LONG,
	  "no busy loop: under 5% CPU with idle and half-closed clients" },
};

const int conf_ncases = (int)(sizeof(conf_cases) / sizeof(conf_cases[0]));

int conf_select(const char *list, bool *mark, char *bad, size_t n)
{
	const char *p = list;
	int items = 0;

	bad[0] = '\0';
	/* Items between commas; empty ones (",,", a trailing comma) are ignored. */
	while (*p) {
		size_t len = strcspn(p, ",");
		bool prefix = len > 0 && p[len - 1] == '*', any = false;
		size_t cmp = prefix ? len - 1 : len;

		if (len) {
			items++;
			for (int i = 0; i < conf_ncases; i++) {
				const char *id = conf_cases[i].id;

				if (strncmp(id, p, cmp) == 0 && (prefix || id[cmp] == '\0')) {
					mark[i] = true;
					any = true;
				}
			}
			if (!any) {
				snprintf(bad, n, "%.*s", (int)len, p);
				return -EINVAL;
			}
		}
		p += len;
		if (*p == ',')
			p++;
	}
	return items ? 0 : -EINVAL;
}
