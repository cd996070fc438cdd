/* libFuzzer target: what echo-conform parses besides addresses (fuzz_addr.c has those):
 *   - the --only/--skip case lists (conf_select), against a plain reference: the ID list split
 *     at commas, each item an ID or a prefix ending in '*';
 *   - the `listening ADDR` lines read from the server under test's stdout
 *     (spawn_take_lines), fed in chunks of any size into a buffer of any size, against the
 *     same lines split at once;
 *   - --exec's {port} substitution (spawn_exec_line), against a plain reference.
 * The input: byte 0 sets the line buffer's size, byte 1 the chunk size, the rest is the text
 * (for the lists and the command: up to its first NUL). A broken property aborts. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conform.h"
#include "spawn.h"

#define MUST(cond) do { \
	if (!(cond)) { \
		fprintf(stderr, "fuzz-conform: property failed at %s:%d: %s\n", __FILE__, \
			__LINE__, #cond); \
		abort(); \
	} } while (0)

static void check_select(const char *list)
{
	bool mark[256] = { false }, want[256] = { false };
	char bad[64];
	int items = 0, unmatched = 0;

	MUST(conf_ncases <= 256);
	/* The reference: every non-empty item between commas. */
	for (const char *p = list; ; p++) {
		size_t len = strcspn(p, ",");

		if (len) {
			bool prefix = p[len - 1] == '*', any = false;
			size_t cmp = prefix ? len - 1 : len;

			items++;
			for (int i = 0; i < conf_ncases; i++) {
				const char *id = conf_cases[i].id;

				if (strlen(id) >= cmp && memcmp(id, p, cmp) == 0 &&
				    (prefix || strlen(id) == cmp))
					want[i] = any = true;
			}
			unmatched += !any;
		}
		p += len;
		if (!*p)
			break;
	}
	if (conf_select(list, mark, bad, sizeof(bad)) == 0) {
		MUST(items && !unmatched);
		MUST(memcmp(mark, want, sizeof(mark)) == 0);
	} else {
		MUST(!items || unmatched);
		MUST(items ? bad[0] != '\0' && strstr(list, bad) : bad[0] == '\0');
	}
}

static void check_exec_line(const char *cmd, int port)
{
	char *line = spawn_exec_line(cmd, port), num[16];
	size_t nlen = (size_t)snprintf(num, sizeof(num), "%d", port), o = 5;

	MUST(line && strncmp(line, "exec ", 5) == 0);
	for (const char *p = cmd; *p;) {
		if (strncmp(p, "{port}", 6) == 0) {
			MUST(memcmp(line + o, num, nlen) == 0);
			o += nlen;
			p += 6;
		} else {
			MUST(line[o++] == *p++);
		}
	}
	MUST(line[o] == '\0');
	free(line);
}

/* The listening lines of the whole text at once: complete lines only, no NUL in them, ADDR
 * short enough to keep, the first SPAWN_MAX_LINES. */
static int reference_lines(const char *t, size_t n, char lines[][160])
{
	int k = 0;

	for (const char *p = t, *nl; (nl = memchr(p, '\n', (size_t)(t + n - p))); p = nl + 1) {
		size_t len = (size_t)(nl - p);

		if (len > 10 && memcmp(p, "listening ", 10) == 0 && !memchr(p, '\0', len) &&
		    len - 10 < 160 && k < SPAWN_MAX_LINES) {
			memcpy(lines[k], p + 10, len - 10);
			lines[k++][len - 10] = '\0';
		}
	}
	return k;
}

static void check_lines(const char *t, size_t n, size_t cap, size_t chunk)
{
	static struct spawned s;
	static char want[SPAWN_MAX_LINES][160];
	char *buf = malloc(cap);   /* exact size: ASan sees a byte past it */
	size_t have = 0, longest = 0, run = 0;

	MUST(buf);
	s.nlines = 0;
	for (size_t at = 0; at < n;) {
		size_t r = n - at;

		if (r > chunk)
			r = chunk;
		if (r > cap - have)
			r = cap - have;
		memcpy(buf + have, t + at, r);
		at += r;
		have = spawn_take_lines(&s, buf, have + r, cap);
		MUST(have < cap);
	}
	free(buf);
	/* A line that never fits the buffer is dropped piecewise; otherwise chunking changes
	 * nothing. */
	for (size_t i = 0; i < n; i++) {
		run = t[i] == '\n' ? 0 : run + 1;
		if (run > longest)
			longest = run;
	}
	if (longest >= cap)
		return;
	int k = reference_lines(t, n, want);
	MUST(s.nlines == k);
	for (int i = 0; i < k; i++)
		MUST(strcmp(s.lines[i], want[i]) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text;

	if (size < 2 || size > 8192)
		return 0;
	text = malloc(size - 1);
	MUST(text);
	memcpy(text, data + 2, size - 2);
	text[size - 2] = '\0';
	check_lines(text, size - 2, 2 + (size_t)data[0] * 16, 1 + (size_t)data[1] * 4);
	check_select(text);
	check_exec_line(text, (data[0] << 8 | data[1]) % 65536);
	free(text);
	return 0;
}
