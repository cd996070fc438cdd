/* The one JSON string writer of the C programs (echo-load, echo-conform), so that every JSON
 * file escapes text the same way (RFC 8259): quote, backslash and every control character
 * below 0x20 as \uXXXX except the usual short forms \n \r \t; 0x7f and bytes >= 0x80 pass
 * through (UTF-8 is kept as it is). */
#ifndef ECHOBENCH_JSON_H
#define ECHOBENCH_JSON_H

#include <stdio.h>

/* Writes s as a JSON string, quotes included. NULL is written as null. */
void json_write_string(FILE *f, const char *s);

#endif
