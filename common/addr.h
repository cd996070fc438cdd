/* Socket addresses as every echobench tool writes them.
 *
 * Accepted forms (the same for echo-server --listen, echo-load and echo-conform targets):
 *   127.0.0.1:PORT   IPv4 literal
 *   [::1]:PORT       IPv6 literal in brackets
 *   [::]:PORT        IPv6 any; a listener on it is dual stack (IPV6_V6ONLY off)
 *   [fe80::1%2]:PORT IPv6 with a scope (interface name or index); written with the index
 *   HOST:PORT        a name, resolved through getaddrinfo (first result)
 *   unix:/path       a unix-domain stream socket
 *   udp:ADDR         any IP form above, meaning its UDP port (the form echo-server prints for
 *                    its UDP listeners); the address itself is parsed as without the prefix
 * PORT is 0..65535; 0 asks the kernel for an ephemeral port.
 */
#ifndef ECHOBENCH_ADDR_H
#define ECHOBENCH_ADDR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define ENDPOINT_TEXT_MAX 128

struct endpoint {
	struct sockaddr_storage sa;
	socklen_t len;
	int family;                    /* AF_INET, AF_INET6 or AF_UNIX */
	int udp;                       /* written as udp:ADDR (never with unix:) */
	char text[ENDPOINT_TEXT_MAX];  /* canonical text without udp:, e.g. "[::1]:7007" */
};

/* Parses s into *ep. Returns 0, or -EINVAL with *why set to a static sentence that names what is
 * wrong (for the caller's one-line error message). Host names are resolved here, so a name that
 * does not resolve is an -EINVAL too. */
int endpoint_parse(const char *s, struct endpoint *ep, const char **why);

/* Writes the canonical text of a socket address ("127.0.0.1:40123", "[::1]:40123",
 * "[fe80::1%2]:40123", "unix:/tmp/x.sock") into buf; endpoint_parse() reads it back as the same
 * address. Returns 0 or -ENOSPC / -EAFNOSUPPORT. */
int endpoint_format(const struct sockaddr *sa, socklen_t len, char *buf, size_t n);

/* The port of an AF_INET/AF_INET6 address, -1 for other families. */
int endpoint_port(const struct endpoint *ep);
void endpoint_set_port(struct endpoint *ep, int port);

/* Source address ranges (echo-load --source): "A" or "A-B", dotted-quad IPv4 (inet_pton's
 * form), A <= B. 0 with the first and last address in host byte order, or -EINVAL with *why
 * set (a static sentence). ipv4_range_format() writes the same form back ("A" when
 * first == last): 0, or -ENOSPC. */
#define IPV4_RANGE_TEXT_MAX 32
int ipv4_range_parse(const char *s, uint32_t *first, uint32_t *last, const char **why);
int ipv4_range_format(uint32_t first, uint32_t last, char *buf, size_t n);

#endif
