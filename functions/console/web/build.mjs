// Bundles the console's script and styles into content-hashed files under dist/, and writes
// dist/manifest.json (entry name -> file name), which the console function embeds at compile
// time to link them. Run by `cargo xtask`; `node build.mjs` alone works too.
import * as esbuild from "esbuild";
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { gzipSync } from "node:zlib";

const outdir = "dist";
mkdirSync(outdir, { recursive: true });

const result = await esbuild.build({
  entryPoints: { console: "src/main.ts", styles: "src/console.css" },
  bundle: true,
  minify: true,
  format: "esm",
  target: ["es2022", "chrome110", "firefox110", "safari16"],
  entryNames: "[name].[hash]",
  outdir,
  metafile: true,
  legalComments: "none",
  logLevel: "warning",
});

const manifest = {};
let total = 0;
for (const [file, output] of Object.entries(result.metafile.outputs)) {
  if (!output.entryPoint) continue;
  const name = basename(file);
  const extension = name.split(".").pop();
  manifest[`${name.split(".")[0]}.${extension}`] = name;
  const gzipped = gzipSync(readFileSync(file), { level: 9 }).length;
  total += gzipped;
  console.log(`${name}: ${output.bytes} bytes, ${gzipped} gzipped`);
}
console.log(`total: ${total} bytes gzipped`);
// Files of earlier builds go; the manifest is rewritten only when a name changed, since the
// console function recompiles whenever it is touched.
const current = new Set([...Object.values(manifest), "manifest.json"]);
for (const file of readdirSync(outdir)) {
  if (!current.has(file)) rmSync(join(outdir, file));
}
const manifestPath = join(outdir, "manifest.json");
const text = JSON.stringify(manifest, null, 2) + "\n";
if (!existsSync(manifestPath) || readFileSync(manifestPath, "utf8") !== text) {
  writeFileSync(manifestPath, text);
}
