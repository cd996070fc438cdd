/* What echo-conform reads from the user and from the server under test, besides addresses:
 * --only/--skip lists (conf_select), the server's `listening` lines (spawn_take_lines) and
 * --exec's {port} (spawn_exec_line). fuzz_conform.c fuzzes the same functions. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "conform.h"
#include "spawn.h"

static int index_of(const char *id)
{
	for (int i = 0; i < conf_ncases; i++)
		if (strcmp(conf_cases[i].id, id) == 0)
			return i;
	return -1;
}

static void test_select(void)
{
	bool *mark = calloc((size_t)conf_ncases, sizeof(*mark));
	char bad[64];
	int marked = 0;

	CHECK(mark);
	CHECK_EQ(conf_select("ECHO-SIZE-*,HALF-CLOSE-0", mark, bad, sizeof(bad)), 0);
	for (int i = 0; i < conf_ncases; i++)
		marked += mark[i];
	CHECK(mark[index_of("ECHO-SIZE-1")] && mark[index_of("HALF-CLOSE-0")]);
	CHECK(!mark[index_of("HALF-CLOSE-5")] && !mark[index_of("ECHO-BYTES-256")]);
	CHECK(marked > 2);
	/* An exact ID is not a prefix. */
	memset(mark, 0, (size_t)conf_ncases * sizeof(*mark));
	CHECK_EQ(conf_select("ECHO-SIZE-4", mark, bad, sizeof(bad)), -EINVAL);
	CHECK(strcmp(bad, "ECHO-SIZE-4") == 0);
	/* Empty items are ignored; a list of nothing else names no case. */
	CHECK_EQ(conf_select(",ECHO-SIZE-1,,", mark, bad, sizeof(bad)), 0);
	CHECK_EQ(conf_select(",", mark, bad, sizeof(bad)), -EINVAL);
	CHECK(bad[0] == '\0');
	CHECK_EQ(conf_select("", mark, bad, sizeof(bad)), -EINVAL);
	free(mark);
}

static void test_listening_lines(void)
{
	static struct spawned s;
	char buf[64];
	const char in[] = "junk\0listening 127.0.0.1:7\nlistening [::1]:7\nlisten";
	size_t have;

	/* A NUL the server printed hid every line after it in the same read; now only its own
	 * line is skipped. */
	memcpy(buf, in, sizeof(in) - 1);
	have = spawn_take_lines(&s, buf, sizeof(in) - 1, sizeof(buf));
	CHECK_EQ(s.nlines, 1);
	CHECK(strcmp(s.lines[0], "[::1]:7") == 0);
	CHECK_EQ(have, 6);
	CHECK(memcmp(buf, "listen", 6) == 0);
	memcpy(buf + have, "ing udp:127.0.0.1:7\n", 20);
	CHECK_EQ(spawn_take_lines(&s, buf, have + 20, sizeof(buf)), 0);
	CHECK_EQ(s.nlines, 2);
	CHECK(strcmp(s.lines[1], "udp:127.0.0.1:7") == 0);
	/* A line too long to keep is skipped, not cut to a shorter (other) address. */
	char longline[300] = "listening ";
	memset(longline + 10, 'a', 200);
	strcpy(longline + 210, ":7\n");
	char big[512];
	memcpy(big, longline, strlen(longline));
	CHECK_EQ(spawn_take_lines(&s, big, strlen(longline), sizeof(big)), 0);
	CHECK_EQ(s.nlines, 2);
	/* A line that fills the buffer is dropped. */
	memset(buf, 'x', sizeof(buf));
	CHECK_EQ(spawn_take_lines(&s, buf, sizeof(buf), sizeof(buf)), 0);
}

static void test_exec_line(void)
{
	char *line = spawn_exec_line("srv --port {port} --name {port}{port} {por}", 7007);

	CHECK(line);
	CHECK(strcmp(line, "exec srv --port 7007 --name 70077007 {por}") == 0);
	free(line);
}

int main(void)
{
	test_select();
	test_listening_lines();
	test_exec_line();
	return 0;
}
