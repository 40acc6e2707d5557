/*
 * suggest.h: "did you mean" for a mistyped name (a config key, a
 * category, a catalog model, a command).
 * Threads: no state.
 */
#ifndef MODELFS_SUGGEST_H
#define MODELFS_SUGGEST_H

#include <stddef.h>

/* " (did you mean "x"?)" for the nearest of words into buf, or "" when
 * none is near: a third of the letters may be wrong, at most two, an
 * edit being an insertion, a deletion, a substitution or a swap of two
 * neighbours, case ignored ("sha265" -> "sha256", "lroa" -> "lora", but
 * "typo" is not "repo"). Returns buf or "". */
const char *suggest_word(const char *word, const char *const *words, size_t n_words, char *buf,
			 size_t n);

#endif
