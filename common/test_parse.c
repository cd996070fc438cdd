/* Unit tests of the argument parsers and address forms shared by every tool. */
#include "addr.h"
#include "check.h"
#include "parse.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

static void test_numbers(void)
{
	uint64_t v, lo, hi;

	CHECK_EQ(parse_count("10k", UINT64_MAX, &v), 0); CHECK_EQ(v, 10000);
	CHECK_EQ(parse_count("1.5k", UINT64_MAX, &v), 0); CHECK_EQ(v, 1500);
	CHECK_EQ(parse_count("0.25M", UINT64_MAX, &v), 0); CHECK_EQ(v, 250000);
	CHECK_EQ(parse_count("2.000", UINT64_MAX, &v), 0); CHECK_EQ(v, 2);
	CHECK_EQ(parse_count("1.5", UINT64_MAX, &v), -EINVAL);
	CHECK_EQ(parse_count("1.0001k", UINT64_MAX, &v), -EINVAL);
	CHECK_EQ(parse_count("1.k", UINT64_MAX, &v), -EINVAL);
	CHECK_EQ(parse_bytes("1.5k", UINT64_MAX, &v), 0); CHECK_EQ(v, 1536);
	CHECK_EQ(parse_bytes("0.5M", UINT64_MAX, &v), 0); CHECK_EQ(v, 524288);
	CHECK_EQ(parse_bytes("64k", UINT64_MAX, &v), 0); CHECK_EQ(v, 65536);
	CHECK_EQ(parse_bytes("1M", UINT64_MAX, &v), 0); CHECK_EQ(v, 1 << 20);
	CHECK_EQ(parse_bytes("-1", UINT64_MAX, &v), -EINVAL);
	CHECK_EQ(parse_bytes("12x", UINT64_MAX, &v), -EINVAL);
	CHECK_EQ(parse_bytes("5", 4, &v), -EINVAL);
	CHECK_EQ(parse_u64("", 0, 10, &v), -EINVAL);
	CHECK_EQ(parse_u64(" 3", 0, 10, &v), -EINVAL);
	CHECK_EQ(parse_bytes_range("64-4096", UINT64_MAX, &lo, &hi), 0);
	CHECK_EQ(lo, 64); CHECK_EQ(hi, 4096);
	CHECK_EQ(parse_bytes_range("4096-64", UINT64_MAX, &lo, &hi), -EINVAL);
	CHECK_EQ(parse_bytes_range("1k", UINT64_MAX, &lo, &hi), 0); CHECK_EQ(lo, hi);
	CHECK_EQ(parse_duration_ns("500ms", &v), 0); CHECK_EQ(v, 500000000);
	CHECK_EQ(parse_duration_ns("2m", &v), 0); CHECK_EQ(v, 120000000000ull);
	CHECK_EQ(parse_duration_ns("1.5s", &v), 0); CHECK_EQ(v, 1500000000);
	CHECK_EQ(parse_duration_ns("3", &v), 0); CHECK_EQ(v, 3000000000ull);
	CHECK_EQ(parse_duration_ns("10 s", &v), -EINVAL);
	CHECK_EQ(parse_duration_ns("-1s", &v), -EINVAL);
	CHECK_EQ(parse_duration_ns("1fortnight", &v), -EINVAL);
}

static void test_addresses(void)
{
	struct endpoint ep;
	const char *why;

	CHECK_EQ(endpoint_parse("127.0.0.1:7007", &ep, &why), 0);
	CHECK_EQ(ep.family, AF_INET); CHECK(strcmp(ep.text, "127.0.0.1:7007") == 0);
	CHECK_EQ(endpoint_parse("[::1]:0", &ep, &why), 0);
	CHECK_EQ(ep.family, AF_INET6); CHECK(strcmp(ep.text, "[::1]:0") == 0);
	endpoint_set_port(&ep, 4242);
	CHECK(strcmp(ep.text, "[::1]:4242") == 0); CHECK_EQ(endpoint_port(&ep), 4242);
	CHECK_EQ(endpoint_parse("unix:/tmp/x.sock", &ep, &why), 0);
	CHECK_EQ(ep.family, AF_UNIX); CHECK(strcmp(ep.text, "unix:/tmp/x.sock") == 0);
	CHECK_EQ(endpoint_parse("127.0.0.1", &ep, &why), -EINVAL);
	CHECK_EQ(endpoint_parse("127.0.0.1:65536", &ep, &why), -EINVAL);
	CHECK(strstr(why, "port") != NULL);
	CHECK_EQ(endpoint_parse("::1:80", &ep, &why), -EINVAL);
	CHECK(strstr(why, "brackets") != NULL);
	CHECK_EQ(endpoint_parse("[zz]:80", &ep, &why), -EINVAL);
	CHECK_EQ(endpoint_parse("unix:", &ep, &why), -EINVAL);
	CHECK_EQ(ep.udp, 0);
	/* udp:ADDR, the form echo-server prints for its UDP listeners. */
	CHECK_EQ(endpoint_parse("udp:127.0.0.1:7", &ep, &why), 0);
	CHECK_EQ(ep.udp, 1); CHECK_EQ(ep.family, AF_INET); CHECK(strcmp(ep.text, "127.0.0.1:7") == 0);
	CHECK_EQ(endpoint_parse("udp:[::1]:9", &ep, &why), 0);
	CHECK_EQ(ep.udp, 1); CHECK_EQ(ep.family, AF_INET6);
	CHECK_EQ(endpoint_parse("udp:unix:/tmp/x", &ep, &why), -EINVAL);
	CHECK(strstr(why, "udp") != NULL);
	CHECK_EQ(endpoint_parse("udp:", &ep, &why), -EINVAL);
	CHECK_EQ(endpoint_parse("127.0.0.1:7", &ep, &why), 0);
	CHECK_EQ(ep.udp, 0);
}

int main(void)
{
	test_numbers();
	test_addresses();
	return 0;
}
