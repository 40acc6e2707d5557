/*
 * test_text.c: what may reach a terminal or become a file name: the
 * printable-character test and escaping of text.h, and the names servers
 * choose made safe (source_safe_name: control bytes, '/', C1 and bidi
 * controls, bad UTF-8, over-long names cut between characters keeping
 * the extension).
 */
#include "modelfs/source.h"
#include "modelfs/text.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

static void test_printable(void)
{
	CHECK(text_printable("sd_xl_base_1.0.safetensors"));
	CHECK(text_printable("modèle-日本語-🙂.gguf"));
	CHECK(text_printable(""));
	CHECK(!text_printable("a\nb"));
	CHECK(!text_printable("a\tb"));
	CHECK(!text_printable("\x1b[31mred"));
	CHECK(!text_printable("del\x7f"));
	CHECK(!text_printable("c1\xc2\x9b" "31m"));		/* U+009B, CSI */
	CHECK(!text_printable("rtl\xe2\x80\xae" "fdp.exe"));	/* U+202E */
	CHECK(!text_printable("latin1 \xe9"));			/* not UTF-8 */
	CHECK(!text_printable("overlong \xc0\xaf"));
	CHECK(!text_printable("surrogate \xed\xa0\x80"));
	CHECK(!text_printable("cut \xe6\x97"));
	CHECK(text_char_len("\xf0\x9f\x99\x82", 4) == 4);
	CHECK(text_char_len("\xf0\x9f\x99\x82", 3) == 0);
}

static void test_escape(void)
{
	char *s = text_escape("a\nb\x1b[1m\xc2\x9b\xe9 ok é");

	CHECK_STR(s, "a\\x0ab\\x1b[1m\\xc2\\x9b\\xe9 ok é");
	free(s);
}

/* source_safe_name(raw) as a string, "(none)" when nothing usable is left. */
static char *safe(const char *raw)
{
	char *out = NULL;

	CHECK(source_safe_name(raw, &out) == 0);
	return out ? out : strdup("(none)");
}

static void check_safe(const char *raw, const char *want)
{
	char *got = safe(raw);

	CHECK_STR(got, want);
	free(got);
}

static void test_safe_name(void)
{
	char raw[1024], *got;

	check_safe("model.safetensors", "model.safetensors");
	check_safe("evil\nname\tx\x1b[31m.safetensors", "evil_name_x_[31m.safetensors");
	check_safe("../../etc/passwd", ".._.._etc_passwd");
	check_safe("a\xc2\x9b" "b\xe2\x80\xae" "c\xe9.bin", "a__b___c_.bin");
	check_safe("", "(none)");
	check_safe(".", "(none)");
	check_safe("..", "(none)");
	check_safe("modèle.gguf", "modèle.gguf");

	/* 400 ASCII bytes: cut to 255, the extension kept. */
	memset(raw, 'a', 388);
	strcpy(raw + 388, ".safetensors");
	got = safe(raw);
	CHECK(strlen(got) == NAME_MAX);
	CHECK(strcmp(got + NAME_MAX - 12, ".safetensors") == 0);
	CHECK(strspn(got, "a") == NAME_MAX - 12);
	free(got);

	/* Two-byte characters: never cut inside one. */
	raw[0] = 'x';
	for (int i = 0; i < 200; i++)
		memcpy(raw + 1 + 2 * i, "é", 2);
	strcpy(raw + 401, ".gguf");
	got = safe(raw);
	CHECK(strlen(got) <= NAME_MAX && strlen(got) >= NAME_MAX - 1);
	CHECK(text_printable(got));
	CHECK(strcmp(got + strlen(got) - 5, ".gguf") == 0);
	free(got);

	/* An "extension" too long to be one is cut like the rest. */
	memset(raw, 'b', 100);
	raw[100] = '.';
	memset(raw + 101, 'c', 300);
	raw[401] = '\0';
	got = safe(raw);
	CHECK(strlen(got) == NAME_MAX && got[100] == '.' && got[NAME_MAX - 1] == 'c');
	free(got);
}

int main(void)
{
	test_printable();
	test_escape();
	test_safe_name();
	return check_summary();
}
