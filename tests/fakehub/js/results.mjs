// results.mjs: what the client checks share: each call's outcome (its
// value, or its error and HTTP status) recorded under a name, and a
// downloaded blob reduced to its size and SHA-256.
import { createHash } from "node:crypto";

export const out = {};

export async function attempt(name, fn) {
	try {
		out[name] = await fn();
	} catch (e) {
		out[name] = { error: String(e.message), status: e.statusCode ?? null };
	}
}

export async function sha256(blob) {
	const buf = Buffer.from(await blob.arrayBuffer());
	return { size: buf.length, sha256: createHash("sha256").update(buf).digest("hex") };
}
