/*
 * check.h: the unit tests' assertions. Each CHECK counts a pass or a
 * failure (and says where it failed); check_summary() prints the closing
 * "N passed, N failed" line and gives the exit status.
 */
#ifndef MODELFS_TEST_CHECK_H
#define MODELFS_TEST_CHECK_H

#include <stdio.h>
#include <string.h>

static int passed, failed;

#define CHECK(cond) do {						\
	if (cond) {							\
		passed++;						\
	} else {							\
		failed++;						\
		fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
	}								\
} while (0)

#define CHECK_STR(a, b) do {						\
	const char *a_ = (a), *b_ = (b);				\
	if (a_ && b_ && strcmp(a_, b_) == 0) {				\
		passed++;						\
	} else {							\
		failed++;						\
		fprintf(stderr, "%s:%d: %s is \"%s\", want \"%s\"\n", __FILE__, __LINE__, \
			#a, a_ ? a_ : "(null)", b_ ? b_ : "(null)");	\
	}								\
} while (0)

static inline int check_summary(void)
{
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}

#endif
