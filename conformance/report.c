/* echo-conform's output (report.h): the catalogue listing, TAP with YAML blocks, the summary,
 * JSON. */
#include "report.h"

#include <string.h>

#include "json.h"

static const char *level_name(enum level l)
{
	return l == LEVEL_MUST ? "MUST" : "SHOULD";
}

static const char *verdict_name(enum verdict v)
{
	return v == VERDICT_PASS ? "pass" : v == VERDICT_FAIL ? "fail" : "skip";
}

/* Strings go through common/json.h's one escaper: a JSON string is also a valid YAML
 * double-quoted scalar, so the TAP YAML blocks use it too. */
static void put_value(FILE *f, const struct kv *kv)
{
	if (kv->number)
		fputs(kv->val, f);
	else
		json_write_string(f, kv->val);
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
	json_write_string(f, info->target ? info->target : "");
	fputs(",\n  \"udp_target\": ", f);
	json_write_string(f, info->udp_target);   /* NULL: null */
	fputs(",\n  \"ipv6_target\": ", f);
	json_write_string(f, info->ipv6_target);   /* NULL: null */
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

		fprintf(f, "    {\"n\": %d, \"id\": ", it->n);
		json_write_string(f, it->cc->id);
		fprintf(f, ", \"level\": \"%s\", \"description\": ", level_name(it->cc->level));
		json_write_string(f, it->cc->desc);
		fprintf(f, ", \"result\": \"%s\", \"counted\": %s, \"elapsed_ms\": %.1f",
			verdict_name(r->verdict), it->counted ? "true" : "false",
			(double)r->elapsed_ns / 1e6);
		if (r->verdict == VERDICT_SKIP) {
			fputs(", \"reason\": ", f);
			json_write_string(f, r->reason);
		}
		fputs(", \"details\": {", f);
		for (int k = 0; k < r->nkv; k++) {
			fputs(k ? ", " : "", f);
			json_write_string(f, r->kv[k].key);
			fputs(": ", f);
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
	json_write_string(f, info->server_exit);   /* NULL: null */
	fputs(",\n  \"error\": ", f);
	json_write_string(f, info->error);   /* NULL: null */
	fprintf(f, ",\n  \"exit_code\": %d\n}\n", info->exit_code);
}

void list_cases(FILE *out)
{
	for (int i = 0; i < conf_ncases; i++) {
		const struct conf_case *cc = &conf_cases[i];
		char needs[64] = "";

		if (cc->needs & NEED_PID)
			strcat(needs, "pid,");
		if (cc->needs & NEED_UDP)
			strcat(needs, "udp,");
		if (cc->needs & NEED_LOCAL)
			strcat(needs, "local,");
		if (cc->needs & NEED_IP)
			strcat(needs, "ip,");
		if (needs[0])
			needs[strlen(needs) - 1] = '\0';
		else
			strcpy(needs, "-");
		fprintf(out, "%-24s %-6s %-9s %-4s %s\n", cc->id, level_name(cc->level), needs,
			cc->flags & CASE_LONG ? "long" : "-", cc->desc);
	}
}

void tap_header(FILE *out, const struct target *t, int n)
{
	char pidtext[24] = "unknown";

	if (t->pid)
		snprintf(pidtext, sizeof(pidtext), "%d", (int)t->pid);
	fprintf(out, "TAP version 13\n");
	fprintf(out, "# echo-conform %s: target %s, server pid %s, seed %llu, timeout %.3gs\n",
		ECHOBENCH_VERSION, t->tcp.text, pidtext, (unsigned long long)t->seed,
		(double)t->timeout_ns / 1e9);
	fprintf(out, "# udp: %s\n", t->udp_ok ? t->udp.text : t->udp_why);
	fprintf(out, "# ipv6: %s\n", t->v6_ok ? t->v6.text : t->v6_why);
	fprintf(out, "1..%d\n", n);
	fflush(out);
}

int tap_summary(FILE *out, const struct run_item *items, int n, bool must_only, double elapsed_s)
{
	int counted = 0, must = 0, should = 0, skipped = 0;

	for (int i = 0; i < n; i++) {
		const struct run_item *it = &items[i];

		skipped += it->r.verdict == VERDICT_SKIP;
		if (it->r.verdict != VERDICT_FAIL)
			continue;
		counted += it->counted;
		must += it->cc->level == LEVEL_MUST;
		should += it->cc->level == LEVEL_SHOULD;
	}
	fprintf(out, "# %d passed, %d failed (MUST %d, SHOULD %d%s), %d skipped, in %.1f s\n",
		n - must - should - skipped, must + should, must, should,
		must_only ? ", SHOULD not counted" : "", skipped, elapsed_s);
	return counted;
}
