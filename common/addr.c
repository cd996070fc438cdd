#include "addr.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

static int parse_port(const char *s, int *port)
{
	char *end;
	long v;

	if (!isdigit((unsigned char)*s))  /* strtol would take " 7" and "+7" */
		return -EINVAL;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end != '\0' || v < 0 || v > 65535)
		return -EINVAL;
	*port = (int)v;
	return 0;
}

static int parse_unix(const char *path, struct endpoint *ep, const char **why)
{
	struct sockaddr_un *un = (struct sockaddr_un *)&ep->sa;

	if (*path == '\0') {
		*why = "unix: address has an empty path";
		return -EINVAL;
	}
	if (strlen(path) >= sizeof(un->sun_path)) {
		*why = "unix: socket path is longer than 107 bytes";
		return -EINVAL;
	}
	un->sun_family = AF_UNIX;
	strcpy(un->sun_path, path);
	ep->len = (socklen_t)sizeof(*un);
	ep->family = AF_UNIX;
	return 0;
}

int endpoint_parse(const char *s, struct endpoint *ep, const char **why)
{
	char host[256];
	const char *colon, *hs;
	size_t hlen;
	int port, rc;

	memset(ep, 0, sizeof(*ep));
	if (strncmp(s, "udp:", 4) == 0) {
		rc = endpoint_parse(s + 4, ep, why);
		if (rc == 0 && ep->family == AF_UNIX) {
			*why = "udp: takes an IP address, not unix:";
			return -EINVAL;
		}
		ep->udp = rc == 0;
		return rc;
	}
	*why = "address must look like 127.0.0.1:PORT, [::1]:PORT, HOST:PORT or unix:/path";
	if (strncmp(s, "unix:", 5) == 0) {
		rc = parse_unix(s + 5, ep, why);
		if (rc == 0)
			snprintf(ep->text, sizeof(ep->text), "unix:%s", s + 5);
		return rc;
	}
	if (s[0] == '[') {
		const char *close = strchr(s, ']');
		if (!close || close[1] != ':')
			return -EINVAL;
		hs = s + 1;
		hlen = (size_t)(close - hs);
		colon = close + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon)
			return -EINVAL;
		hs = s;
		hlen = (size_t)(colon - s);
		if (memchr(hs, ':', hlen)) {
			*why = "IPv6 addresses need brackets, as in [::1]:PORT";
			return -EINVAL;
		}
	}
	if (hlen == 0 || hlen >= sizeof(host))
		return -EINVAL;
	memcpy(host, hs, hlen);
	host[hlen] = '\0';
	if (parse_port(colon + 1, &port) < 0) {
		*why = "port must be a number from 0 to 65535";
		return -EINVAL;
	}

	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV };
	struct addrinfo *res;
	char portstr[8];

	hints.ai_family = s[0] == '[' ? AF_INET6 : AF_UNSPEC;
	if (s[0] == '[')
		hints.ai_flags |= AI_NUMERICHOST;  /* brackets hold an address, never a name */
	snprintf(portstr, sizeof(portstr), "%d", port);
	rc = getaddrinfo(host, portstr, &hints, &res);
	if (rc != 0) {
		*why = s[0] == '[' ? "not a valid IPv6 address" : "host name does not resolve";
		return -EINVAL;
	}
	memcpy(&ep->sa, res->ai_addr, res->ai_addrlen);
	ep->len = res->ai_addrlen;
	ep->family = res->ai_family;
	freeaddrinfo(res);
	return endpoint_format((struct sockaddr *)&ep->sa, ep->len, ep->text, sizeof(ep->text));
}

int endpoint_format(const struct sockaddr *sa, socklen_t len, char *buf, size_t n)
{
	char ip[INET6_ADDRSTRLEN];
	int w;

	switch (sa->sa_family) {
	case AF_INET: {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
		w = snprintf(buf, n, "%s:%d", ip, ntohs(in->sin_port));
		break;
	}
	case AF_INET6: {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
		/* A link-local address means nothing without its interface: the scope (as a
		 * number, which getaddrinfo reads back) keeps the text a complete address. */
		if (in6->sin6_scope_id)
			w = snprintf(buf, n, "[%s%%%u]:%d", ip, (unsigned)in6->sin6_scope_id,
				     ntohs(in6->sin6_port));
		else
			w = snprintf(buf, n, "[%s]:%d", ip, ntohs(in6->sin6_port));
		break;
	}
	case AF_UNIX: {
		const struct sockaddr_un *un = (const struct sockaddr_un *)sa;
		/* An unbound peer has an empty path; len says how much of sun_path is real. */
		size_t plen = len > offsetof(struct sockaddr_un, sun_path)
			? strnlen(un->sun_path, len - offsetof(struct sockaddr_un, sun_path)) : 0;
		w = snprintf(buf, n, "unix:%.*s", (int)plen, un->sun_path);
		break;
	}
	default:
		return -EAFNOSUPPORT;
	}
	return (w < 0 || (size_t)w >= n) ? -ENOSPC : 0;
}

int endpoint_port(const struct endpoint *ep)
{
	if (ep->family == AF_INET)
		return ntohs(((const struct sockaddr_in *)&ep->sa)->sin_port);
	if (ep->family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)&ep->sa)->sin6_port);
	return -1;
}

void endpoint_set_port(struct endpoint *ep, int port)
{
	if (ep->family == AF_INET)
		((struct sockaddr_in *)&ep->sa)->sin_port = htons((unsigned short)port);
	else if (ep->family == AF_INET6)
		((struct sockaddr_in6 *)&ep->sa)->sin6_port = htons((unsigned short)port);
	else
		return;
	endpoint_format((struct sockaddr *)&ep->sa, ep->len, ep->text, sizeof(ep->text));
}

int ipv4_range_parse(const char *s, uint32_t *first, uint32_t *last, const char **why)
{
	char a[INET_ADDRSTRLEN], b[INET_ADDRSTRLEN];
	const char *dash = strchr(s, '-');
	size_t la = dash ? (size_t)(dash - s) : strlen(s);
	struct in_addr ia, ib;

	*why = "expected an IPv4 address or a range A-B, e.g. 127.0.0.2-127.0.0.9";
	if (la >= sizeof(a) || (dash && strlen(dash + 1) >= sizeof(b)))
		return -EINVAL;
	memcpy(a, s, la);
	a[la] = '\0';
	snprintf(b, sizeof(b), "%s", dash ? dash + 1 : a);
	if (inet_pton(AF_INET, a, &ia) != 1 || inet_pton(AF_INET, b, &ib) != 1)
		return -EINVAL;
	if (ntohl(ib.s_addr) < ntohl(ia.s_addr)) {
		*why = "the range ends before it starts";
		return -EINVAL;
	}
	*first = ntohl(ia.s_addr);
	*last = ntohl(ib.s_addr);
	return 0;
}

int ipv4_range_format(uint32_t first, uint32_t last, char *buf, size_t n)
{
	int w;

	if (first == last)
		w = snprintf(buf, n, "%u.%u.%u.%u", first >> 24, first >> 16 & 255,
			     first >> 8 & 255, first & 255);
	else
		w = snprintf(buf, n, "%u.%u.%u.%u-%u.%u.%u.%u", first >> 24, first >> 16 & 255,
			     first >> 8 & 255, first & 255, last >> 24, last >> 16 & 255,
			     last >> 8 & 255, last & 255);
	return (w < 0 || (size_t)w >= n) ? -ENOSPC : 0;
}
