/*
 * cli_tier.c: modelfs tier nginx. Prints a complete nginx config for a
 * shared cache tier that answers tier.h's URL scheme, as
 * ../shared/SCALE-OUT.md measured it: one 8 MiB (block-sized) slice per
 * cache entry, keyed by the sha256 or the commit path and never by the
 * query; a cache lock per slice whose timeout exceeds the slowest slice;
 * the origin's redirect (the Hub's 302 to a signed CDN URL) followed by
 * an internal hop that caches nothing, so nodes never see the CDN and the
 * CDN is asked once. The tier is public: it drops any Authorization and
 * Cookie a client sends, and proxies only to the origins it is given.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "modelfs/config.h"

#define TIER_MAX_ORIGINS 32

static const char tier_usage[] =
	"usage: modelfs tier nginx [--listen ADDR] [--cache DIR] [--max-size N] [--slice N]\n"
	"                          [--origin HOST ...] [--allow CIDR ...] [--resolver ADDR]\n"
	"  print an nginx config for a shared cache tier (cache_proxy in modelfs.toml(5))\n"
	"  --listen    where nodes reach it (default 0.0.0.0:8080)\n"
	"  --cache     its cache folder (default /var/cache/modelfs-tier)\n"
	"  --max-size  its cache size limit (default 100G)\n"
	"  --slice     bytes per cached slice: the nodes' block_size (default 8M)\n"
	"  --origin    a host name or IPv4 address it may fetch from, any port\n"
	"              (default huggingface.co, civitai.com)\n"
	"  --allow     a client network it serves (default any: bind it to the cluster network)\n"
	"  --resolver  DNS server for the origins' names (default the first of /etc/resolv.conf)\n";

struct tier_opts {
	const char *listen, *cache, *resolver;
	int64_t max_size, slice;
	const char *origins[TIER_MAX_ORIGINS];
	size_t norigins;
	const char *allow[TIER_MAX_ORIGINS];
	size_t nallow;
	char resolv_buf[64];
};

static int usage(const char *why)
{
	if (why)
		fprintf(stderr, "modelfs tier: %s\n", why);
	fputs(tier_usage, stderr);
	return EXIT_USAGE;
}

/* The first nameserver of /etc/resolv.conf into buf, or NULL. */
static const char *system_resolver(char *buf, size_t len)
{
	FILE *f = fopen("/etc/resolv.conf", "r");
	char line[256];
	const char *found = NULL;

	if (!f)
		return NULL;
	while (!found && fgets(line, sizeof(line), f)) {
		char addr[64];

		if (sscanf(line, " nameserver %63s", addr) == 1 && strlen(addr) < len) {
			/* nginx wants an IPv6 resolver in brackets. */
			snprintf(buf, len, strchr(addr, ':') ? "[%s]" : "%s", addr);
			found = buf;
		}
	}
	fclose(f);
	return found;
}

/* A value that goes into the config as one token: no space, quote, brace
 * or semicolon can end a directive early. */
static bool plain_token(const char *s)
{
	return s[0] && !strpbrk(s, " \t\r\n;{}\"'$\\#");
}

static void print_config(const struct tier_opts *o)
{
	printf("# modelfs shared cache tier: `modelfs tier nginx` wrote this.\n"
	       "# Nodes: [modelfs] cache_proxy = \"http://THIS-HOST:PORT\" (modelfs.toml(5)).\n"
	       "# Run:   nginx -c THIS-FILE (in the foreground: a service or container runs it).\n"
	       "# Each cached object is one slice of one file, keyed by the file's sha256 or\n"
	       "# commit path; requests carrying credentials never come here (modelfs sends\n"
	       "# them to their origin unless cache_proxy_private is set).\n"
	       "daemon off;\n"
	       "worker_processes auto;\n"
	       "pid %s/nginx.pid;\n"
	       "error_log stderr warn;\n"
	       "events { worker_connections 4096; }\n"
	       "\n"
	       "http {\n"
	       "  access_log off;\n"
	       "  client_body_temp_path %s/tmp-body;\n"
	       "  proxy_temp_path %s/tmp-proxy;\n"
	       "  fastcgi_temp_path %s/tmp-fastcgi;\n"
	       "  uwsgi_temp_path %s/tmp-uwsgi;\n"
	       "  scgi_temp_path %s/tmp-scgi;\n"
	       "  proxy_cache_path %s/slices levels=1:2 keys_zone=modelfs:64m\n"
	       "                   max_size=%" PRId64 " inactive=30d use_temp_path=off;\n",
	       o->cache, o->cache, o->cache, o->cache, o->cache, o->cache, o->cache, o->max_size);
	if (o->resolver)
		printf("  resolver %s valid=300s;\n", o->resolver);
	else
		printf("  # no resolver found: add `resolver ADDR;` for origins named by host\n");
	printf("\n"
	       "  # tier.h's scheme: /{sha256-HEX|commit-HEX}/{http|https}/{host[:port]}/{path}\n"
	       "  map $request_uri $mfs_origin {\n"
	       "    \"~^/(?:sha256|commit)-[0-9a-f]+/(?<s>https?)/(?<h>[^/]+)(?<p>/.*)$\" \"$s://$h$p\";\n"
	       "    default \"\";\n"
	       "  }\n"
	       "  map $request_uri $mfs_host {\n"
	       "    \"~^/(?:sha256|commit)-[0-9a-f]+/https?/(?<h>[^/:]+)(?::[0-9]+)?/\" $h;\n"
	       "    default \"\";\n"
	       "  }\n"
	       "  # The key: the sha256 alone, or the commit path without the query.\n"
	       "  map $request_uri $mfs_key {\n"
	       "    \"~^/(?<k>sha256-[0-9a-f]{64})/\" $k;\n"
	       "    \"~^/(?<k>commit-[0-9a-f]{40,64}/[^?]*)\" $k;\n"
	       "    default \"\";\n"
	       "  }\n"
	       "  # Only these origins: the tier is no open proxy.\n"
	       "  map $mfs_host $mfs_allowed {\n"
	       "    default 0;\n");
	for (size_t i = 0; i < o->norigins; i++)
		printf("    \"%s\" 1;\n", o->origins[i]);
	printf("  }\n"
	       "  upstream mfs_follow { server unix:%s/follow.sock; keepalive 32; }\n"
	       "\n"
	       "  server {\n"
	       "    listen %s;\n",
	       o->cache, o->listen);
	for (size_t i = 0; i < o->nallow; i++)
		printf("    allow %s;\n", o->allow[i]);
	if (o->nallow)
		printf("    deny all;\n");
	printf("    if ($mfs_key = \"\") { return 404; }\n"
	       "    if ($mfs_allowed = 0) { return 403; }\n"
	       "    # proxy_set_header is inherited only by levels that set none: all here.\n"
	       "    proxy_http_version 1.1;\n"
	       "    proxy_set_header Connection \"\";\n"
	       "    proxy_set_header Range $slice_range;\n"
	       "    proxy_set_header If-Range \"\";\n"
	       "    proxy_set_header Authorization \"\";\n"
	       "    proxy_set_header Cookie \"\";\n"
	       "    proxy_cache modelfs;\n"
	       "    proxy_cache_valid 200 206 30d;\n"
	       "    proxy_cache_lock on;\n"
	       "    proxy_cache_lock_timeout 300s;   # above the slowest slice fetch: else 8x at\n"
	       "    proxy_cache_lock_age 300s;       # the origin (SCALE-OUT.md)\n"
	       "    proxy_cache_use_stale error timeout updating;\n"
	       "    proxy_ignore_headers Cache-Control Expires Set-Cookie Vary X-Accel-Expires;\n"
	       "    proxy_hide_header Set-Cookie;\n"
	       "    proxy_connect_timeout 10s;\n"
	       "    proxy_read_timeout 300s;\n"
	       "    add_header X-Cache $upstream_cache_status always;\n"
	       "    location / {\n"
	       "      slice %" PRId64 ";\n"
	       "      proxy_cache_key $mfs_key$slice_range;\n"
	       "      proxy_pass http://mfs_follow;\n"
	       "    }\n"
	       "  }\n"
	       "\n"
	       "  # The internal hop: fetches from the origin, follows its redirects (the\n"
	       "  # Hub's 302 to a signed CDN URL, CivitAI's 307 to storage), caches nothing.\n"
	       "  server {\n"
	       "    listen unix:%s/follow.sock;\n"
	       "    proxy_cache off;\n"
	       "    proxy_buffering off;\n"
	       "    proxy_http_version 1.1;\n"
	       "    proxy_set_header Connection \"\";\n"
	       "    proxy_set_header Authorization \"\";\n"
	       "    proxy_set_header Cookie \"\";\n"
	       "    proxy_connect_timeout 10s;\n"
	       "    proxy_read_timeout 300s;\n"
	       "    proxy_ssl_server_name on;\n"
	       "    proxy_ssl_verify on;\n"
	       "    proxy_ssl_trusted_certificate /etc/ssl/certs/ca-certificates.crt;\n"
	       "    recursive_error_pages on;\n"
	       "    location / {\n"
	       "      proxy_pass $mfs_origin;\n"
	       "      proxy_intercept_errors on;\n"
	       "      error_page 301 302 303 307 308 = @redirected;\n"
	       "    }\n"
	       "    location @redirected {\n"
	       "      set $mfs_next $upstream_http_location;\n"
	       "      proxy_pass $mfs_next;\n"
	       "      proxy_intercept_errors on;\n"
	       "      error_page 301 302 303 307 308 = @redirected_twice;\n"
	       "    }\n"
	       "    location @redirected_twice {\n"
	       "      set $mfs_last $upstream_http_location;\n"
	       "      proxy_pass $mfs_last;\n"
	       "    }\n"
	       "  }\n"
	       "}\n",
	       o->slice, o->cache);
}

static int parse_size_opt(const char *name, const char *v, int64_t *out)
{
	if (config_parse_size(v, out, NULL) != 0 || *out <= 0) {
		fprintf(stderr, "modelfs tier: %s must be a size like \"8M\" or \"100G\", not \"%s\"\n",
			name, v);
		return -EINVAL;
	}
	return 0;
}

int cli_tier(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "cache", required_argument, NULL, 'c' },
		{ "max-size", required_argument, NULL, 'm' },
		{ "slice", required_argument, NULL, 's' },
		{ "origin", required_argument, NULL, 'o' },
		{ "allow", required_argument, NULL, 'a' },
		{ "resolver", required_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct tier_opts o = { .listen = "0.0.0.0:8080", .cache = "/var/cache/modelfs-tier",
			       .max_size = 100LL << 30, .slice = 8 << 20 };
	int c;

	if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		fputs(tier_usage, stdout);
		return 0;
	}
	if (argc < 2 || strcmp(argv[1], "nginx") != 0)
		return usage(argc < 2 ? "say which tier: nginx" : "the only tier is nginx");
	argc--;
	argv++;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		const char **list = c == 'o' ? o.origins : o.allow;
		size_t *n = c == 'o' ? &o.norigins : &o.nallow;

		switch (c) {
		case 'l': o.listen = optarg; break;
		case 'c': o.cache = optarg; break;
		case 'r': o.resolver = optarg; break;
		case 'm':
			if (parse_size_opt("--max-size", optarg, &o.max_size))
				return EXIT_USAGE;
			break;
		case 's':
			if (parse_size_opt("--slice", optarg, &o.slice))
				return EXIT_USAGE;
			break;
		case 'o':
		case 'a':
			if (*n == TIER_MAX_ORIGINS)
				return usage("too many --origin or --allow");
			list[(*n)++] = optarg;
			break;
		case 'h':
			fputs(tier_usage, stdout);
			return 0;
		default:
			return usage(NULL);
		}
	}
	if (optind != argc)
		return usage("unexpected argument");
	if (o.norigins == 0) {
		o.origins[o.norigins++] = "huggingface.co";
		o.origins[o.norigins++] = "civitai.com";
	}
	if (!o.resolver)
		o.resolver = system_resolver(o.resolv_buf, sizeof(o.resolv_buf));
	if (o.cache[0] != '/')
		return usage("--cache must be an absolute path");
	if (!plain_token(o.listen) || !plain_token(o.cache) ||
	    (o.resolver && !plain_token(o.resolver)))
		return usage("a value holds a space, quote, brace, ';', '$' or '#'");
	for (size_t i = 0; i < o.norigins; i++)
		if (!plain_token(o.origins[i]) || strpbrk(o.origins[i], "/:[]"))
			return usage("--origin takes a host name or an IPv4 address");
	for (size_t i = 0; i < o.nallow; i++)
		if (!plain_token(o.allow[i]))
			return usage("--allow takes an address or CIDR");
	print_config(&o);
	return 0;
}
