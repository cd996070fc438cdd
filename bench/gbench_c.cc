// The C API of gbench_c.h over Google Benchmark's C++ API. The opaque C handles are the C++
// objects themselves (gb_state = benchmark::State, gb_bench = internal::Benchmark), so the
// wrapper adds no allocation and no indirection to the timed loop beyond one call.
#include "gbench_c.h"

#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace {

benchmark::State *S(gb_state *st) { return reinterpret_cast<benchmark::State *>(st); }
const benchmark::State *S(const gb_state *st)
{
	return reinterpret_cast<const benchmark::State *>(st);
}
benchmark::internal::Benchmark *B(gb_bench *b)
{
	return reinterpret_cast<benchmark::internal::Benchmark *>(b);
}

// gb_skip() is SkipWithError() with this prefix: Google Benchmark 1.7 has no separate "skipped"
// state, and the prefix is what tells a skip from a failure in the report.
const char kSkipPrefix[] = "skipped: ";

bool is_skip(const std::string &msg)
{
	return msg.compare(0, sizeof kSkipPrefix - 1, kSkipPrefix) == 0;
}

gb_result_fn result_hook;
void *result_hook_arg;

// Sits in front of the default display reporter (console, or JSON with --benchmark_format=json)
// to see every run: it counts failures for gb_main()'s exit code and feeds gb_on_result().
class Watcher : public benchmark::BenchmarkReporter {
public:
	explicit Watcher(benchmark::BenchmarkReporter *inner) : inner_(inner) {}

	bool ReportContext(const Context &ctx) override { return inner_->ReportContext(ctx); }

	void ReportRuns(const std::vector<Run> &runs) override
	{
		for (const Run &run : runs)
			see(run);
		inner_->ReportRuns(runs);
	}

	void Finalize() override { inner_->Finalize(); }

	int failures = 0;

private:
	void see(const Run &run)
	{
		if (run.error_occurred && !is_skip(run.error_message))
			failures++;
		if (!result_hook)
			return;
		std::string name = run.benchmark_name();
		double iters = run.iterations > 0 ? static_cast<double>(run.iterations) : 1.0;
		gb_result r = {};
		r.name = name.c_str();
		r.aggregate = run.run_type == Run::RT_Aggregate;
		r.iterations = run.iterations;
		r.real_ns = run.real_accumulated_time * 1e9 / iters;
		r.cpu_ns = run.cpu_accumulated_time * 1e9 / iters;
		r.error = run.error_occurred;
		r.skipped = run.error_occurred && is_skip(run.error_message);
		r.error_message = run.error_message.c_str();
		r.label = run.report_label.c_str();
		r.impl = &run;
		result_hook(&r, result_hook_arg);
	}

	std::unique_ptr<benchmark::BenchmarkReporter> inner_;
};

benchmark::Counter::Flags counter_flags(unsigned f)
{
	using C = benchmark::Counter;
	int out = C::kDefaults;

	if (f & GB_COUNTER_RATE)
		out |= C::kIsRate;
	if (f & GB_COUNTER_AVG_THREADS)
		out |= C::kAvgThreads;
	if (f & GB_COUNTER_PER_ITERATION)
		out |= C::kIsIterationInvariant;
	if (f & GB_COUNTER_AVG_ITERATIONS)
		out |= C::kAvgIterations;
	if (f & GB_COUNTER_INVERT)
		out |= C::kInvert;
	return static_cast<C::Flags>(out);
}

// Google Benchmark 1.7's flags, to turn its reactions to bad input into our one line and exit 2.
const char *const kNumericFlags[] = {
	"benchmark_min_time", "benchmark_min_warmup_time", "benchmark_repetitions", "v", nullptr,
};
const char *const kOtherFlags[] = {
	"benchmark_list_tests", "benchmark_filter", "benchmark_enable_random_interleaving",
	"benchmark_report_aggregates_only", "benchmark_display_aggregates_only",
	"benchmark_format", "benchmark_out_format", "benchmark_out", "benchmark_color",
	"benchmark_counters_tabular", "benchmark_perf_counters", "benchmark_context",
	"benchmark_time_unit", nullptr,
};

// True when arg is "--NAME" or "--NAME=..." for a NAME in names.
bool flag_named(const char *arg, const char *const *names)
{
	if (std::strncmp(arg, "--", 2) != 0)
		return false;
	size_t len = std::strcspn(arg + 2, "=");
	for (; *names; names++)
		if (std::strlen(*names) == len && std::strncmp(arg + 2, *names, len) == 0)
			return true;
	return false;
}

// The flags with a fixed set of values, which Initialize() answers with the usage text and
// exit 0 (or a later exit 1) when the value is wrong. Returns the bad argument or nullptr.
const char *bad_choice(int argc, char **argv)
{
	static const struct {
		const char *prefix;
		const char *choices[5];
	} fixed[] = {
		{ "--benchmark_format=", { "console", "json", "csv", nullptr } },
		{ "--benchmark_out_format=", { "console", "json", "csv", nullptr } },
		{ "--benchmark_time_unit=", { "ns", "us", "ms", "s", nullptr } },
	};

	for (int i = 1; i < argc; i++) {
		for (const auto &f : fixed) {
			size_t n = std::strlen(f.prefix);
			if (std::strncmp(argv[i], f.prefix, n) != 0)
				continue;
			bool ok = false;
			for (const char *const *c = f.choices; *c; c++)
				ok = ok || std::strcmp(argv[i] + n, *c) == 0;
			if (!ok)
				return argv[i];
		}
	}
	return nullptr;
}

} // namespace

extern "C" {

gb_bench *gb_register(const char *name, gb_fn fn, void *arg)
{
	auto *b = benchmark::RegisterBenchmark(
		name, [fn, arg](benchmark::State &st) { fn(reinterpret_cast<gb_state *>(&st), arg); });
	return reinterpret_cast<gb_bench *>(b);
}

void gb_bench_arg(gb_bench *b, int64_t x) { B(b)->Arg(x); }

void gb_bench_args(gb_bench *b, const int64_t *v, size_t n)
{
	B(b)->Args(std::vector<int64_t>(v, v + n));
}

void gb_bench_range(gb_bench *b, int64_t lo, int64_t hi) { B(b)->Range(lo, hi); }

void gb_bench_dense_range(gb_bench *b, int64_t lo, int64_t hi, int step)
{
	B(b)->DenseRange(lo, hi, step);
}

void gb_bench_range_multiplier(gb_bench *b, int mult) { B(b)->RangeMultiplier(mult); }

void gb_bench_arg_names(gb_bench *b, const char *const *names, size_t n)
{
	B(b)->ArgNames(std::vector<std::string>(names, names + n));
}

void gb_bench_iterations(gb_bench *b, int64_t n) { B(b)->Iterations(n); }
void gb_bench_min_time(gb_bench *b, double seconds) { B(b)->MinTime(seconds); }
void gb_bench_repetitions(gb_bench *b, int n) { B(b)->Repetitions(n); }
void gb_bench_real_time(gb_bench *b) { B(b)->UseRealTime(); }
void gb_bench_process_cpu_time(gb_bench *b) { B(b)->MeasureProcessCPUTime(); }
void gb_bench_threads(gb_bench *b, int n) { B(b)->Threads(n); }

void gb_bench_unit(gb_bench *b, enum gb_time_unit unit)
{
	static const benchmark::TimeUnit units[] = {
		benchmark::kNanosecond, benchmark::kMicrosecond, benchmark::kMillisecond,
		benchmark::kSecond,
	};
	B(b)->Unit(units[unit]);
}

bool gb_keep_running(gb_state *st) { return S(st)->KeepRunning(); }
bool gb_keep_running_batch(gb_state *st, int64_t n) { return S(st)->KeepRunningBatch(n); }
void gb_pause_timing(gb_state *st) { S(st)->PauseTiming(); }
void gb_resume_timing(gb_state *st) { S(st)->ResumeTiming(); }
int64_t gb_range(const gb_state *st, size_t i) { return S(st)->range(i); }
int64_t gb_iterations(const gb_state *st) { return S(st)->iterations(); }
int gb_threads(const gb_state *st) { return S(st)->threads(); }
int gb_thread_index(const gb_state *st) { return S(st)->thread_index(); }

void gb_set_counter(gb_state *st, const char *name, double value, unsigned flags)
{
	auto k = (flags & GB_COUNTER_BASE_1024) ? benchmark::Counter::kIs1024
						: benchmark::Counter::kIs1000;
	S(st)->counters[name] = benchmark::Counter(value, counter_flags(flags), k);
}

void gb_set_bytes_processed(gb_state *st, int64_t bytes) { S(st)->SetBytesProcessed(bytes); }
void gb_set_items_processed(gb_state *st, int64_t items) { S(st)->SetItemsProcessed(items); }
void gb_set_label(gb_state *st, const char *label) { S(st)->SetLabel(label); }
void gb_skip_with_error(gb_state *st, const char *msg) { S(st)->SkipWithError(msg); }

void gb_skip(gb_state *st, const char *reason)
{
	S(st)->SkipWithError((std::string(kSkipPrefix) + reason).c_str());
}

bool gb_error_occurred(const gb_state *st) { return S(st)->error_occurred(); }

void gb_on_result(gb_result_fn fn, void *arg)
{
	result_hook = fn;
	result_hook_arg = arg;
}

bool gb_result_counter(const gb_result *r, const char *name, double *value)
{
	const auto *run = static_cast<const benchmark::BenchmarkReporter::Run *>(r->impl);
	auto it = run->counters.find(name);

	if (it == run->counters.end())
		return false;
	*value = it->second.value;
	return true;
}

int gb_main(int argc, char **argv)
{
	const char *bad = bad_choice(argc, argv);

	if (bad) {
		std::fprintf(stderr, "%s: bad value in '%s' (see --help)\n", argv[0], bad);
		return 2;
	}
	benchmark::Initialize(&argc, argv);
	if (argc > 1) {
		// Initialize() leaves what it could not use. A numeric flag's bad value it has
		// already explained in one line; anything else gets our one line.
		if (!flag_named(argv[1], kNumericFlags))
			std::fprintf(stderr, "%s: %s '%s' (see --help)\n", argv[0],
				     flag_named(argv[1], kOtherFlags) ? "bad value in"
								      : "unknown argument",
				     argv[1]);
		return 2;
	}
	Watcher watcher(benchmark::CreateDefaultDisplayReporter());
	benchmark::RunSpecifiedBenchmarks(&watcher);
	benchmark::Shutdown();
	return watcher.failures ? 1 : 0;
}

} // extern "C"
