// check_hf.mjs: drive the official @huggingface/hub client against fakehub's
// fake Hub and print what it saw as one JSON object, for
// tests/integration/test_fakehub_hf.py to compare with the fixtures.
//
//   node check_hf.mjs HUB_URL GOOD_TOKEN OUTSIDER_TOKEN
//
// If the real client and the fake disagree (an exception, a wrong size), the
// fake is what gets fixed.
import { downloadFile, fileDownloadInfo, listFiles, whoAmI } from "@huggingface/hub";
import { attempt, out, sha256 } from "./results.mjs";

const [hubUrl, token, outsider] = process.argv.slice(2);


await attempt("list", async () => {
	const entries = [];
	for await (const e of listFiles({ repo: "org/tiny", recursive: true, hubUrl, accessToken: token }))
		entries.push({ type: e.type, path: e.path, size: e.size, oid: e.oid, lfs: e.lfs ?? null });
	return entries;
});
await attempt("list_dataset", async () => {
	const entries = [];
	for await (const e of listFiles({ repo: { type: "dataset", name: "org/data" }, recursive: true, hubUrl }))
		entries.push(e.path);
	return entries;
});
for (const path of ["config.json", "model.safetensors", "transformer/diffusion_pytorch_model.safetensors"]) {
	await attempt("info:" + path, async () => {
		const info = await fileDownloadInfo({ repo: "org/tiny", path, hubUrl, accessToken: token });
		return info && { size: info.size, etag: info.etag, url: info.url, xet: Boolean(info.xet) };
	});
	await attempt("download:" + path, async () => {
		const blob = await downloadFile({ repo: "org/tiny", path, hubUrl, accessToken: token, xet: false });
		return blob && (await sha256(blob));
	});
}
await attempt("info:missing", () => fileDownloadInfo({ repo: "org/tiny", path: "nope.bin", hubUrl }));
await attempt("download:dev", async () => {
	const blob = await downloadFile({ repo: "org/tiny", path: "model.safetensors", revision: "dev", hubUrl });
	return blob && (await sha256(blob));
});
await attempt("whoami", async () => {
	const me = await whoAmI({ hubUrl, accessToken: token });
	return { name: me.name, type: me.type, auth: me.auth.type };
});
await attempt("whoami_bad", () => whoAmI({ hubUrl, accessToken: "hf_notavalidtoken00000000000000000" }));
await attempt("gated_anonymous", () => downloadFile({ repo: "org/gated", path: "model.safetensors", hubUrl }));
await attempt("gated_outsider", () =>
	downloadFile({ repo: "org/gated", path: "model.safetensors", hubUrl, accessToken: outsider }));
await attempt("gated_tester", async () => {
	const blob = await downloadFile({ repo: "org/gated", path: "model.safetensors", hubUrl, accessToken: token });
	return blob && (await sha256(blob));
});
await attempt("private_anonymous", () => listFiles({ repo: "org/private", hubUrl }).next());

process.stdout.write(JSON.stringify(out) + "\n");
