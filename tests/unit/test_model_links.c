/*
 * test_model_links.c: the config text modelfs mount --model makes of links.
 */
#include <errno.h>
#include <stdlib.h>

#include "check.h"
#include "../../src/front/cli.h"

static void check_links(char *link, const char *want_entry)
{
	char *links[] = { link }, *text = NULL, err[256];
	int rc = models_config(links, 1, "vae", &text, err, sizeof(err));

	CHECK(rc == 0);
	CHECK(text && strstr(text, "[models.\"vae\"]\n") != NULL);
	if (text && !strstr(text, want_entry)) {
		fprintf(stderr, "for %s: want %s in:\n%s\n", link, want_entry, text);
		CHECK(0);
	}
	free(text);
}

int main(void)
{
	char *bad[] = { "hf://org" }, *text = NULL, err[256];

	check_links("hf://org/tiny",
		    "\"tiny\" = { source = \"huggingface\", repo_type = \"model\", repo = \"org/tiny\" }");
	check_links("hf://datasets/o/d/sub/x.bin",
		    "\"m1\" = { source = \"huggingface\", repo_type = \"dataset\", repo = \"o/d\", "
		    "file = \"sub/x.bin\" }");
	check_links("https://huggingface.co/o/r/tree/v1.0",
		    "\"r\" = { source = \"huggingface\", repo_type = \"model\", repo = \"o/r\", "
		    "revision = \"v1.0\" }");
	check_links("https://huggingface.co/o/r/blob/main/m.safetensors",
		    "\"m1\" = \"https://huggingface.co/o/r/blob/main/m.safetensors\"");
	check_links("https://example.com/a\"b\\c.bin", "\"m1\" = \"https://example.com/a\\\"b\\\\c.bin\"");
	CHECK(models_config(bad, 1, "vae", &text, err, sizeof(err)) == -EINVAL);
	CHECK(text == NULL && strstr(err, "hf://ORG/REPO") != NULL);
	return check_summary();
}
