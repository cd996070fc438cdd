#include "report.h"

#include <string.h>

static const char *level_name(enum level l)
{
	return l == LEVEL_MUST ? "MUST" : "SHOULD";
}

static const char *verdict_name(enum verdict v)
{
	return v == VERDICT_PASS ? "pass" : v == VERDICT_FAIL ? "fail" : "skip";
}

/* A double-quoted string, valid both as YAML and as JSON. */
static void put_quoted(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch == '\n')
			fputs("\\n", f);
		else if (ch < 0x20 || ch == 0x7f)
			fprintf(f, "\\u%04x", ch);
		else
			fputc(ch, f);
	}
	fputc('"', f);
}

static void put_value(FILE *f, const struct kv *kv)
{
	if (kv->number)
		fputs(kv->val, f);
	else
		put_quoted(f, kv->val);
}

void tap_case(FILE *out, const struct run_item *it, bool must_only)
{
	const struct result *r = &it->r;
	bool failed = r->verdict == VERDICT_FAIL;

	fprintf(out, "%s %d - %s %s", failed ? "not ok" : "ok", it->n, it->cc->id, it->cc->desc);
	if (r->verdict == VERDICT_SKIP)
		fprintf(out, " # SKIP %s", r->reason);
	else if (failed && !it->counted)
		fprintf(out, " # TODO SHOULD-level case, not counted%s",
			must_only ? " (--must-only)" : "");
	fputc('\n', out);
	/* A passing case that missed a strict time limit shows its figures too: how far over it
	 * was is worth seeing, the verdict is the generous bound's. */
	if (failed || (r->verdict == VERDICT_PASS && r->over_limit)) {
		/* expected and seen first: they are what a reader looks for. */
		fputs("  ---\n", out);
		fprintf(out, "  level: %s\n", level_name(it->cc->level));
		if (!failed)
			fputs("  note: \"passed, but over a strict time limit (see *_over_by_s): a "
				"slow or busy machine, or a slow server\"\n", out);
		for (int pass = 0; pass < 2; pass++)
			for (int i = 0; i < r->nkv; i++) {
				const struct kv *kv = &r->kv[i];
				bool head = !strcmp(kv->key, "expected") || !strcmp(kv->key, "seen");

				if (head != (pass == 0))
					continue;
				fprintf(out, "  %s: ", kv->key);
				put_value(out, kv);
				fputc('\n', out);
			}
		fprintf(out, "  elapsed_ms: %.1f\n", (double)r->elapsed_ns / 1e6);
		fputs("  ...\n", out);
	}
	fflush(out);
}

void json_write(FILE *f, const struct run_info *info, const struct run_item *items, int n)
{
	int pass = 0, fail = 0, skip = 0, not_counted = 0;

	fputs("{\n  \"tool\": \"echo-conform\",\n  \"version\": \"" ECHOBENCH_VERSION "\",\n", f);
	fputs("  \"target\": ", f);
	put_quoted(f, info->target ? info->target : "");
	fputs(",\n  \"udp_target\": ", f);
	if (info->udp_target)
		put_quoted(f, info->udp_target);
	else
		fputs("null", f);
	fputs(",\n  \"ipv6_target\": ", f);
	if (info->ipv6_target)
		put_quoted(f, info->ipv6_target);
	else
		fputs("null", f);
	if (info->server_pid)
		fprintf(f, ",\n  \"server_pid\": %d", info->server_pid);
	else
		fputs(",\n  \"server_pid\": null", f);
	fprintf(f, ",\n  \"seed\": %llu,\n  \"timeout_s\": %.3f,\n  \"must_only\": %s,\n",
		info->seed, info->timeout_s, info->must_only ? "true" : "false");
	fputs("  \"cases\": [\n", f);
	for (int i = 0; i < n; i++) {
		const struct run_item *it = &items[i];
		const struct result *r = &it->r;

		fprintf(f, "    {\"n\": %d, \"id\": \"%s\", \"level\": \"%s\", \"description\": ",
			it->n, it->cc->id, level_name(it->cc->level));
		put_quoted(f, it->cc->desc);
		fprintf(f, ", \"result\": \"%s\", \"counted\": %s, \"elapsed_ms\": %.1f",
			verdict_name(r->verdict), it->counted ? "true" : "false",
			(double)r->elapsed_ns / 1e6);
		if (r->verdict == VERDICT_SKIP) {
			fputs(", \"reason\": ", f);
			put_quoted(f, r->reason);
		}
		fputs(", \"details\": {", f);
		for (int k = 0; k < r->nkv; k++) {
			fprintf(f, "%s\"%s\": ", k ? ", " : "", r->kv[k].key);
			put_value(f, &r->kv[k]);
		}
		fprintf(f, "}}%s\n", i + 1 < n ? "," : "");
		pass += r->verdict == VERDICT_PASS;
		skip += r->verdict == VERDICT_SKIP;
		fail += r->verdict == VERDICT_FAIL;
		not_counted += r->verdict == VERDICT_FAIL && !it->counted;
	}
	fprintf(f, "  ],\n  \"summary\": {\"pass\": %d, \"fail\": %d, \"skip\": %d, "
		"\"fail_not_counted\": %d, \"elapsed_s\": %.1f},\n", pass, fail, skip, not_counted,
		info->elapsed_s);
	fputs("  \"server_exit\": ", f);
	if (info->server_exit)
		put_quoted(f, info->server_exit);
	else
		fputs("null", f);
	fputs(",\n  \"error\": ", f);
	if (info->error)
		put_quoted(f, info->error);
	else
		fputs("null", f);
	fprintf(f, ",\n  \"exit_code\": %d\n}\n", info->exit_code);
}
