#!/usr/bin/env bash
# Regenerates the fuzz targets' seed corpora (*/fuzz-corpus/*) from the programs themselves:
# the values the C unit tests feed the parsers, the `listening` lines echo-server prints,
# and result records that echo-load --hist-out writes against echo-server on loopback.
# Uses build/ (the normal build); run it after a format or a test value changes, and commit
# the result. Each seed is named by its SHA-1, as libFuzzer names corpus files.
#
#   bash scripts/fuzz-seeds.sh
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
echobench_build build
cd "$ECHOBENCH_ROOT"
b=build
tmp=$(mktemp -d /tmp/echobench-seeds.XXXXXX)
srv=
trap '[ -n "$srv" ] && kill "$srv" 2>/dev/null; rm -rf "$tmp"' EXIT

# seed DIR < content
seed() {
	local f="$tmp/seed"
	cat > "$f"
	[ -s "$f" ] || return 0
	mv "$f" "$1/$(sha1sum < "$f" | cut -c1-40)"
}

# The string literals passed to the named functions in a C test file.
literals() {
	local file=$1
	shift
	local fns
	fns=$(IFS='|'; echo "$*")
	grep -oE "($fns)\(\"([^\"\\\\]|\\\\.)*\"" "$file" | sed -E 's/^[a-z_0-9]+\("//; s/"$//' |
		sed 's/%%/%/g' | sort -u
}

for d in common/fuzz-corpus/parse common/fuzz-corpus/addr clients/fuzz-corpus/histio \
	conformance/fuzz-corpus/conform; do
	rm -rf "$d"
	mkdir -p "$d"
done

# Parsers: what common/test_parse.c gives them.
literals common/test_parse.c parse_u64 parse_count parse_bytes parse_bytes_range \
	parse_duration_ns parse_k_of_n | while IFS= read -r v; do
	printf '%s' "$v" | seed common/fuzz-corpus/parse
done

# Addresses: the tests' values, and the lines echo-server prints for every kind of listener.
literals common/test_parse.c endpoint_parse ipv4_range_parse | while IFS= read -r v; do
	printf '%s' "$v" | seed common/fuzz-corpus/addr
done
"$b/servers/echo-server" --listen 127.0.0.1:0 --listen '[::1]:0' --listen "unix:$tmp/s.sock" \
	--udp > "$tmp/listening" 2>/dev/null &
srv=$!
for _ in $(seq 100); do
	[ "$(grep -c '^listening ' "$tmp/listening")" -ge 5 ] && break
	sleep 0.1
done
sed -n 's/^listening //p' "$tmp/listening" | while IFS= read -r v; do
	printf '%s' "$v" | seed common/fuzz-corpus/addr
done
tcp=$(sed -n 's/^listening \(127\.0\.0\.1:[0-9]*\)$/\1/p' "$tmp/listening")

# echo-conform (fuzz_conform.c: byte 0 sets its line buffer's size, byte 1 the chunk size,
# then the text): what echo-server and faulty-echo print on stdout, the --only lists the tests
# give, and --exec commands from the README.
c=conformance/fuzz-corpus/conform
{ printf '\377\020'; cat "$tmp/listening"; } | seed "$c"
{ printf '\002\001'; cat "$tmp/listening"; } | seed "$c"
"$b/conformance/faulty-echo" --listen '[::]:0' --udp > "$tmp/faulty" 2>/dev/null &
fpid=$!
sleep 0.5
kill "$fpid"
wait "$fpid" 2>/dev/null || true
{ printf '\377\377'; cat "$tmp/faulty"; } | seed "$c"
{ grep -ohE "'--only', '[^']*'" conformance/meson.build | sed -E "s/.*, '(.*)'/\1/"
  grep -ohE '"--only", "[^"]*"' conformance/*.py | sed -E 's/.*, "(.*)"/\1/'
  "$b/conformance/echo-conform" --list | awk '{ print $1 }' | head -3
  grep -ohE -- "--exec '[^']*'" README.md | sed -E "s/--exec '(.*)'/\1/"
} | sort -u | while IFS= read -r v; do
	printf '\100\007%s' "$v" | seed "$c"
done

# Result records, each a few KiB: short open-loop runs (a fixed, small number of messages)
# over TCP, UDP and a unix socket, a size range, a stream run, and a run against a port that
# refuses (an incomplete record). Two of them also go in as one input, NUL-separated, as the
# fuzz target reads a merge.
h=clients/fuzz-corpus/histio
run() {
	local name=$1
	shift
	# A refused run exits 1 and still writes its record.
	"$b/clients/echo-load" --hist-out "$tmp/$name.hist" "$@" > /dev/null 2>&1 || true
	if [ -s "$tmp/$name.hist" ]; then seed "$h" < "$tmp/$name.hist"; fi
}
run open -c 1 -R 200 -d 0.1s "$tcp"
run udp -c 1 -R 200 -d 0.1s --udp "$tcp"
run unix -c 1 -R 100 -d 0.1s -s 16-1024 "unix:$tmp/s.sock"
run closed -c 1 -d 2ms -s 1k "$tcp"
run refused -c 1 -d 0.1s --timeout 1s 127.0.0.1:1
cat "$tmp/open.hist" <(printf '\0') "$tmp/udp.hist" | seed "$h"

for d in common/fuzz-corpus/* clients/fuzz-corpus/* conformance/fuzz-corpus/*; do
	[ -d "$d" ] && echo "$d: $(ls "$d" | wc -l) seeds, $(cat "$d"/* | wc -c) bytes"
done
