// Bundles the browser clients: src/pages/<page>.js -> dist/<page>.js (one self-contained file per
// page, no CDN). `node build.mjs` writes dist/; `node build.mjs --check` builds in memory and fails
// when dist/ differs from what the sources give (CI runs it, so the shipped bundle is never stale).
import { build } from "esbuild";
import { readFile, readdir, writeFile, mkdir } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import path from "node:path";

const here = path.dirname(fileURLToPath(import.meta.url));
const pages = (await readdir(path.join(here, "src", "pages")))
  .filter((name) => name.endsWith(".js"))
  .sort();
const check = process.argv.includes("--check");

const result = await build({
  entryPoints: pages.map((name) => path.join(here, "src", "pages", name)),
  outdir: path.join(here, "dist"),
  bundle: true,
  format: "iife",
  target: ["chrome100", "firefox100", "safari15"],
  minify: true,
  legalComments: "none",
  charset: "utf8",
  write: false,
  logLevel: "warning",
});

let stale = [];
for (const file of result.outputFiles) {
  const name = path.relative(here, file.path);
  if (check) {
    const shipped = await readFile(file.path, "utf8").catch(() => null);
    if (shipped !== file.text) stale.push(name);
  } else {
    await mkdir(path.dirname(file.path), { recursive: true });
    await writeFile(file.path, file.text);
    console.log(`wrote ${name} (${file.contents.length} bytes)`);
  }
}
if (check) {
  if (stale.length) {
    console.error(`web/dist is stale (run: cd web && npm ci && npm run build): ${stale.join(", ")}`);
    process.exit(1);
  }
  console.log(`web/dist matches the sources (${result.outputFiles.length} bundles)`);
}
