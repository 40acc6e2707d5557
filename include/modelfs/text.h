/*
 * text.h: which bytes are safe to show, on a terminal or as a file name.
 *
 * A printable character is one UTF-8 sequence (RFC 3629: shortest form,
 * no surrogates, at most U+10FFFF) that is not a control: not C0
 * (U+0000-U+001F), DEL, C1 (U+0080-U+009F; U+009B is CSI to a terminal),
 * nor a line or paragraph separator or bidirectional mark, override or
 * isolate (U+061C, U+200E-U+200F, U+2028-U+202E, U+2066-U+2069), which
 * reorder what is shown. Anything else can move the cursor, recolour or
 * hide text, or make one name look like another.
 * Threads: no state.
 */
#ifndef MODELFS_TEXT_H
#define MODELFS_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bytes (1-4) of the printable character at s, of the n there; 0 when
 * s does not start with one (n == 0 included). */
size_t text_char_len(const char *s, size_t n);
/* Is every character of s printable? */
bool text_printable(const char *s);
/* The value of hex digit c (either case), or -1. */
int text_hex_digit(int c);
/* Is s (NULL: no) exactly n hex digits? With lower, lowercase ones only. */
bool text_is_hex(const char *s, size_t n, bool lower);
/* Are a and b the same string, or both NULL? */
bool text_same(const char *a, const char *b);
/* Are two NULL-terminated string arrays (NULL: empty) the same? */
bool text_same_list(char *const *a, char *const *b);
/* A copy of s for a terminal: each byte that is not part of a printable
 * character written as \xNN. NULL on ENOMEM; the caller frees. */
char *text_escape(const char *s);
/* "2024-05-01T12:00:00.000Z" (ISO 8601, UTC; fraction and zone ignored)
 * as seconds since the epoch, or -1 (s NULL or not such a time). */
int64_t text_iso_time(const char *s);

#endif
