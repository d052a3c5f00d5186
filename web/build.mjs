// Builds the console into ../internal/console/dist: esbuild bundles
// src/main.tsx (and the lazily loaded service map) into content-hashed ES
// modules, writes index.html pointing at them, and BUILD.json recording the
// hash of the sources (checked by internal/console's TestDistIsFresh) and of
// every output file. Deterministic: the same sources give the same bytes.
import * as esbuild from "esbuild";
import { createHash } from "node:crypto";
import { readFileSync, readdirSync, rmSync, mkdirSync, writeFileSync, statSync } from "node:fs";
import { join, relative, dirname, basename } from "node:path";
import { fileURLToPath } from "node:url";

const web = dirname(fileURLToPath(import.meta.url));
const out = join(web, "..", "internal", "console", "dist");
const sha = (b) => createHash("sha256").update(b).digest("hex");

// Same list and format as internal/console.SourceHash.
function sourceHash() {
  const files = ["build.mjs", "package-lock.json", "package.json", "tsconfig.json"];
  const walk = (d) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) files.push(relative(web, p).split("\\").join("/"));
    }
  };
  walk(join(web, "src"));
  files.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return sha(files.map((f) => f + "\0" + sha(readFileSync(join(web, f))) + "\n").join(""));
}

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
const res = await esbuild.build({
  absWorkingDir: web,
  entryPoints: { app: "src/main.tsx" },
  bundle: true,
  splitting: true,
  format: "esm",
  target: ["chrome110", "firefox110", "safari16"],
  minify: true,
  sourcemap: false,
  legalComments: "none",
  jsx: "automatic",
  jsxImportSource: "preact",
  entryNames: "[name]-[hash]",
  chunkNames: "[name]-[hash]",
  assetNames: "[name]-[hash]",
  outdir: out,
  metafile: true,
  logLevel: "warning",
  define: { "process.env.NODE_ENV": '"production"' },
});

const outputs = Object.entries(res.metafile.outputs);
const entry = outputs.find(([, o]) => o.entryPoint === "src/main.tsx");
const js = basename(entry[0]);
const css = entry[1].cssBundle ? basename(entry[1].cssBundle) : null;
const html = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="dark light">
<title>Palisade</title>
<link rel="icon" href="data:,">
${css ? `<link rel="stylesheet" href="${css}">\n` : ""}<script type="module" src="${js}"></script>
</head>
<body>
<noscript>The Palisade console needs JavaScript. The REST API and the palisade CLI work without it.</noscript>
<div id="app"></div>
</body>
</html>
`;
writeFileSync(join(out, "index.html"), html);

const files = {};
for (const f of readdirSync(out).sort()) {
  if (statSync(join(out, f)).isFile()) files[f] = sha(readFileSync(join(out, f)));
}
const build = { sources: sourceHash(), files };
writeFileSync(join(out, "BUILD.json"), JSON.stringify(build, null, 2) + "\n");
for (const [f, o] of outputs) console.log(`${basename(f).padEnd(28)} ${(o.bytes / 1024).toFixed(1)} KiB`);
