/* libFuzzer target: the address forms and --source ranges of addr.h on any string, and
 * endpoint_format() on any
 * socket address bytes (what accept() and recvfrom() hand back). An accepted address's text
 * must parse again to the same address and the same text.
 *
 * Host names are never resolved here: this file is linked with -Wl,--wrap=getaddrinfo, and
 * the wrapper below adds AI_NUMERICHOST, so a fuzzed name costs no DNS query (tests send
 * nothing beyond loopback) and fails as an unresolvable name does. */
#include <netdb.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "addr.h"

int __real_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
		       struct addrinfo **res);
int __wrap_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
		       struct addrinfo **res);

int __wrap_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
		       struct addrinfo **res)
{
	struct addrinfo h = hints ? *hints : (struct addrinfo){ 0 };

	h.ai_flags |= AI_NUMERICHOST;
	return __real_getaddrinfo(node, service, &h, res);
}

static const char *input;

#define MUST(cond) do { \
	if (!(cond)) { \
		fprintf(stderr, "fuzz-addr: property failed at %s:%d: %s (input '%s')\n", \
			__FILE__, __LINE__, #cond, input); \
		abort(); \
	} } while (0)

/* The same address: family, port, IP bytes (and IPv6 scope), or unix path. */
static int same_address(const struct endpoint *a, const struct endpoint *b)
{
	if (a->family != b->family || a->len != b->len)
		return 0;
	switch (a->family) {
	case AF_INET: {
		const struct sockaddr_in *x = (const void *)&a->sa, *y = (const void *)&b->sa;
		return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
	}
	case AF_INET6: {
		const struct sockaddr_in6 *x = (const void *)&a->sa, *y = (const void *)&b->sa;
		return x->sin6_port == y->sin6_port && x->sin6_scope_id == y->sin6_scope_id &&
			memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
	}
	case AF_UNIX: {
		const struct sockaddr_un *x = (const void *)&a->sa, *y = (const void *)&b->sa;
		return strcmp(x->sun_path, y->sun_path) == 0;
	}
	}
	return 0;
}

static void check_parse(const char *s)
{
	struct endpoint ep, again;
	const char *why = NULL;
	char text[ENDPOINT_TEXT_MAX];

	if (endpoint_parse(s, &ep, &why) < 0) {
		MUST(why && *why && !strchr(why, '\n'));
		return;
	}
	MUST(ep.family == AF_INET || ep.family == AF_INET6 || ep.family == AF_UNIX);
	MUST(memchr(ep.text, '\0', sizeof(ep.text)));
	MUST(!ep.udp || ep.family != AF_UNIX);
	MUST(ep.udp == (strncmp(s, "udp:", 4) == 0));
	/* The text is what endpoint_format() writes for the address... */
	MUST(endpoint_format((struct sockaddr *)&ep.sa, ep.len, text, sizeof(text)) == 0);
	MUST(strcmp(text, ep.text) == 0);
	/* ...and it reads back as the same address and the same text. */
	MUST(endpoint_parse(ep.text, &again, &why) == 0);
	MUST(same_address(&ep, &again));
	MUST(strcmp(again.text, ep.text) == 0);
	if (ep.family != AF_UNIX) {
		int port = endpoint_port(&ep);

		MUST(port >= 0 && port <= 65535);
		endpoint_set_port(&again, port ^ 1);
		MUST(endpoint_port(&again) == (port ^ 1));
	}
}

/* --source ranges: an accepted range is written back as the very text read (inet_pton takes
 * only canonical dotted quads), and that reads back as the same range. */
static void check_range(const char *s)
{
	uint32_t first, last, a, b;
	const char *why = NULL;
	char text[IPV4_RANGE_TEXT_MAX];

	if (ipv4_range_parse(s, &first, &last, &why) < 0) {
		MUST(why && *why);
		return;
	}
	MUST(first <= last);
	MUST(ipv4_range_format(first, last, text, sizeof(text)) == 0);
	MUST(ipv4_range_parse(text, &a, &b, &why) == 0 && a == first && b == last);
	MUST(strcmp(text, s) == 0 || (first == last && strchr(s, '-')));
}

/* endpoint_format() on raw socket address bytes: family and length from the input, a
 * buffer of any size; it must write a terminated string or fail, never overrun. */
static void check_format(const uint8_t *data, size_t size)
{
	struct sockaddr_storage ss;
	socklen_t len;
	size_t n;
	char *buf;

	if (size < 3)
		return;
	n = data[0] % (ENDPOINT_TEXT_MAX + 1);
	len = (socklen_t)(data[1] % (sizeof(ss) + 1));
	memset(&ss, 0, sizeof(ss));
	memcpy(&ss, data + 2, size - 2 < sizeof(ss) ? size - 2 : sizeof(ss));
	static const sa_family_t fam[] = { AF_INET, AF_INET6, AF_UNIX };
	ss.ss_family = fam[data[2] % 3];
	buf = malloc(n ? n : 1);   /* exact size: ASan sees any byte written past it */
	if (!buf)
		return;
	if (endpoint_format((struct sockaddr *)&ss, len, buf, n) == 0)
		MUST(n && memchr(buf, '\0', n));
	free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char s[512];

	if (size >= sizeof(s))
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	input = s;
	check_parse(s);
	check_range(s);
	check_format(data, size);
	return 0;
}
