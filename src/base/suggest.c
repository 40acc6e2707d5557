/*
 * suggest.c: the nearest name to a mistyped one (suggest.h), by edit
 * distance with swaps (Damerau's restricted form).
 */
#include "modelfs/suggest.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

/* Edit distance, case-insensitive, for "did you mean": an insertion, a
 * deletion, a substitution or a swap of two neighbours ("lroa") is one
 * edit each. Keys are short; anything past 63 bytes can't be a near miss
 * of ours anyway. */
static int distance(const char *a, const char *b)
{
	int before[64], prev[64], cur[64];	/* rows i-2, i-1 and i */
	size_t la = strlen(a), lb = strlen(b);

	if (la >= 64 || lb >= 64)
		return 99;
	for (size_t j = 0; j <= lb; j++)
		prev[j] = (int)j;
	for (size_t i = 1; i <= la; i++) {
		int ai = tolower((unsigned char)a[i - 1]);

		cur[0] = (int)i;
		for (size_t j = 1; j <= lb; j++) {
			int bj = tolower((unsigned char)b[j - 1]);
			int sub = prev[j - 1] + (ai != bj), del = prev[j] + 1, ins = cur[j - 1] + 1;

			cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
			if (i > 1 && j > 1 && ai == tolower((unsigned char)b[j - 2]) &&
			    tolower((unsigned char)a[i - 2]) == bj && before[j - 2] + 1 < cur[j])
				cur[j] = before[j - 2] + 1;
		}
		memcpy(before, prev, sizeof(int) * (lb + 1));
		memcpy(prev, cur, sizeof(int) * (lb + 1));
	}
	return prev[lb];
}

const char *suggest_word(const char *word, const char *const *words, size_t n_words, char *buf,
			 size_t n)
{
	const char *best = NULL;
	int best_d = 3;

	for (size_t i = 0; i < n_words; i++) {
		int d = distance(word, words[i]);
		size_t len = strlen(word) > strlen(words[i]) ? strlen(word) : strlen(words[i]);

		if (d < best_d && (size_t)d * 3 <= len) {
			best = words[i];
			best_d = d;
		}
	}
	if (!best)
		return "";
	snprintf(buf, n, " (did you mean \"%s\"?)", best);
	return buf;
}

