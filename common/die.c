#include "die.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

void die(int status, const char *fmt, ...)
{
	va_list ap;

	/* Built in one buffer and written with one call, so the line cannot interleave with
	 * another thread's output. */
	char line[1024];
	int n = snprintf(line, sizeof(line), "%s: ", program_invocation_short_name);

	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s\n", line);
	exit(status);
}
