// check_serve.mjs: drive the official @huggingface/hub client against
// `modelfs serve` (as its hubUrl, no token) and print what it read as one
// JSON object, for tests/integration/test_serve.py to compare with the
// fake Hub's fixtures.
//
//   node check_serve.mjs SERVE_URL REPO PATH...
import { downloadFile, fileDownloadInfo, listFiles } from "@huggingface/hub";
import { attempt, out, sha256 } from "./results.mjs";

const [hubUrl, repo, ...paths] = process.argv.slice(2);

await attempt("list", async () => {
	const entries = [];
	for await (const e of listFiles({ repo, recursive: true, hubUrl }))
		entries.push({ type: e.type, path: e.path, size: e.size, oid: e.oid, lfs: e.lfs ?? null });
	return entries;
});
for (const path of paths) {
	await attempt("info:" + path, async () => {
		const info = await fileDownloadInfo({ repo, path, hubUrl });
		return info && { size: info.size, etag: info.etag, xet: Boolean(info.xet) };
	});
	await attempt("download:" + path, async () => {
		return sha256(await downloadFile({ repo, path, hubUrl, xet: false }));
	});
}
await attempt("info:missing", () => fileDownloadInfo({ repo, path: "nope.bin", hubUrl }));
await attempt("download:dev", () => downloadFile({ repo, path: paths[0], revision: "dev", hubUrl }));

process.stdout.write(JSON.stringify(out) + "\n");
