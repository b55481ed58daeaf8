// Regenerates types/wit/ from evhost's WIT with jco (`npm run types`).
//
// `jco types` and `jco guest-types` 1.35 read the WIT through a WASI shim
// whose filesystem has no preopened directories, so on their own they fail
// ("failed to read path for WIT ... No such file or directory"). This script
// opens `/` in that shim (the one jco's type generator imports) and then runs
// the same generator jco's CLI does.
import { createRequire } from "node:module";
import { mkdir, rm } from "node:fs/promises";
import { fileURLToPath, pathToFileURL } from "node:url";
import { resolve } from "node:path";

const here = fileURLToPath(new URL(".", import.meta.url));
const wit = resolve(here, "../../wit");
const out = resolve(here, "../types/wit");

const fromJco = createRequire(import.meta.resolve("@bytecodealliance/jco"));
const fromTranspile = createRequire(fromJco.resolve("@bytecodealliance/jco-transpile"));
const shim = await import(
  pathToFileURL(fromTranspile.resolve("@bytecodealliance/preview2-shim/filesystem")).href
);
shim._setPreopens({ "/": "/" });

const { types } = await import("@bytecodealliance/jco");
const { writeFiles } = await import(
  pathToFileURL(fromJco.resolve("@bytecodealliance/jco-transpile")).href
);
await rm(out, { recursive: true, force: true });
await mkdir(out, { recursive: true });
const files = await types(wit, { worldName: "handler", guest: true, outDir: out + "/" });
await writeFiles(files, false);
console.log(`wrote ${Object.keys(files).length} files to ${out}`);
