/*
 * api.c: the Hub's JSON answers for what the index holds: model info
 * (GET /api/models/{repo}[/revision/{rev}]) and tree pages (GET
 * /api/models/{repo}/tree/{rev}[/{path}]), field for field as
 * PROTOCOLS.md §1.9 gives them. Only configured files exist here, so a
 * repo entry that keeps some files lists those. A folder's "oid" would be
 * its git tree id, which needs every file of the folder: it is a stable
 * stand-in instead (clients use it only to tell entries apart).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "modelfs/hexhash.h"
#include "serve_i.h"

static json_t *lfs_json(const struct hub_file *f, const char *hash_key)
{
	return json_pack("{s:s, s:I, s:I}", hash_key, f->sha256, "size", (json_int_t)f->size,
			 "pointerSize", (json_int_t)f->pointer_size);
}

json_t *api_info(const struct hub_pin *p, bool blobs)
{
	json_t *siblings = json_array(), *info;
	const char *slash = strchr(p->repo, '/');
	char *author = slash ? strndup(p->repo, (size_t)(slash - p->repo)) : NULL;
	uint64_t total = 0;

	for (size_t i = 0; siblings && i < p->nfiles; i++) {
		const struct hub_file *f = &p->files[i];
		json_t *s = json_pack("{s:s}", "rfilename", f->path);

		if (s && blobs) {
			json_object_set_new(s, "size", json_integer((json_int_t)f->size));
			json_object_set_new(s, "blobId", json_string(f->blob_id));
			if (f->sha256)
				json_object_set_new(s, "lfs", lfs_json(f, "sha256"));
		}
		json_array_append_new(siblings, s);
		total += f->size;
	}
	info = json_pack("{s:s, s:s, s:s?, s:s, s:b, s:b, s:b, s:i, s:i, s:[], s:o, s:I}",
			 "_id", p->commit, "id", p->repo, "author", author, "sha", p->commit,
			 "private", 0, "gated", 0, "disabled", 0, "downloads", 0, "likes", 0,
			 "tags", "siblings", siblings, "usedStorage", (json_int_t)total);
	if (info && strcmp(p->type, "model") == 0)
		json_object_set_new(info, "modelId", json_string(p->repo));
	free(author);
	return info;
}

static bool under(const char *path, const char *dir, size_t dlen)
{
	return dlen == 0 || (strncmp(path, dir, dlen) == 0 && path[dlen] == '/');
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The folders below dir (all, or only its own children) in path order,
 * without duplicates. The strings point into p's paths' copies. */
static int folders(const struct hub_pin *p, const char *dir, bool recursive, char ***out,
		   size_t *n)
{
	size_t dlen = strlen(dir), cap = 16, k = 0;
	char **d = malloc(cap * sizeof(*d));

	if (!d)
		return -ENOMEM;
	for (size_t i = 0; i < p->nfiles; i++) {
		const char *path = p->files[i].path;
		const char *rel = dlen ? path + dlen + 1 : path;

		if (!under(path, dir, dlen))
			continue;
		for (const char *s = strchr(rel, '/'); s; s = recursive ? strchr(s + 1, '/') : NULL) {
			if (k == cap) {
				char **grown = realloc(d, (cap *= 2) * sizeof(*d));

				if (!grown)
					goto nomem;
				d = grown;
			}
			d[k] = strndup(path, (size_t)(s - path));
			if (!d[k])
				goto nomem;
			k++;
		}
	}
	qsort(d, k, sizeof(*d), cmp_str);
	*n = 0;
	for (size_t i = 0; i < k; i++) {
		if (*n && strcmp(d[*n - 1], d[i]) == 0) {
			free(d[i]);
			continue;
		}
		d[(*n)++] = d[i];
	}
	*out = d;
	return 0;
nomem:
	for (size_t i = 0; i < k; i++)
		free(d[i]);
	free(d);
	return -ENOMEM;
}

static json_t *file_json(const struct hub_file *f)
{
	json_t *j = json_pack("{s:s, s:s, s:I, s:s}", "type", "file", "oid", f->blob_id, "size",
			      (json_int_t)f->size, "path", f->path);

	if (j && f->sha256)
		json_object_set_new(j, "lfs", lfs_json(f, "oid"));
	return j;
}

static json_t *folder_json(const struct hub_pin *p, const char *dir)
{
	struct hexhash *h;
	char oid[65];

	if (hexhash_new_sha1(&h) != 0)
		return NULL;
	hexhash_update(h, p->commit, strlen(p->commit));
	hexhash_update(h, ":", 1);
	hexhash_update(h, dir, strlen(dir));
	hexhash_final(h, oid);
	return json_pack("{s:s, s:s, s:i, s:s}", "type", "directory", "oid", oid, "size", 0,
			 "path", dir);
}

int api_tree(const struct hub_pin *p, const char *dir, bool recursive, size_t start,
	     size_t page, json_t **page_out, size_t *next)
{
	const struct hub_file *file = dir[0] ? hub_pin_file(p, dir) : NULL;
	json_t *arr = json_array();
	char **dirs = NULL;
	size_t ndirs = 0, dlen = strlen(dir), a = 0, b = 0, at = 0;
	bool known = dlen == 0;
	int rc = 0;

	if (!arr)
		return -ENOMEM;
	if (file) {		/* a file's own path lists that file, as on the Hub */
		if (start == 0)
			json_array_append_new(arr, file_json(file));
		*page_out = arr;
		*next = 0;
		return 0;
	}
	rc = folders(p, dir, recursive, &dirs, &ndirs);
	if (rc)
		goto out;
	for (size_t i = 0; !known && i < p->nfiles; i++)
		known = under(p->files[i].path, dir, dlen);
	if (!known) {
		rc = -ENOENT;
		goto out;
	}
	/* Merge folders and files in one path order; keep [start, start+page). */
	*next = 0;
	while (a < ndirs || b < p->nfiles) {
		const struct hub_file *f = b < p->nfiles ? &p->files[b] : NULL;
		bool take_dir;

		if (f && (!under(f->path, dir, dlen) ||
			  (!recursive && strchr(f->path + (dlen ? dlen + 1 : 0), '/')))) {
			b++;
			continue;
		}
		take_dir = a < ndirs && (!f || strcmp(dirs[a], f->path) < 0);
		if (at >= start + page) {
			*next = at;
			break;
		}
		if (at >= start)
			json_array_append_new(arr, take_dir ? folder_json(p, dirs[a]) : file_json(f));
		at++;
		if (take_dir)
			a++;
		else
			b++;
	}
out:
	for (size_t i = 0; i < ndirs; i++)
		free(dirs[i]);
	free(dirs);
	if (rc) {
		json_decref(arr);
		return rc;
	}
	*page_out = arr;
	return 0;
}
