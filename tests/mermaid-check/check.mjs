// Checks that `Flow::to_mermaid` draws every name and action as itself, with Mermaid's own code.
//
// The diagrams come from the Rust side: the test `hostile_diagrams_are_well_formed_and_written_for_the_checker`
// in tests/mermaid.rs writes them (about 1,800 hostile names and actions in 45 flows) when
// MINIFLOW_MERMAID_OUT names a file. In this directory, after `npm ci` (which downloads no
// browser: puppeteer-core drives the system's Chromium):
//
//   npm run parse    # writes target/mermaid-hostile.json, parses under jsdom
//   npm run render   # the same, then draws in headless Chromium
//
// or, by hand, `node check.mjs DIAGRAMS.json [--render]`.
//
// Parse: `mermaid.parse` must accept each diagram, and each node's, subgraph's and edge's text,
// after what drawing does to it (Mermaid's entity decoding and an HTML parse, in the label and
// again in the whole SVG), must be the name or action. Render: each diagram is drawn by `mermaid.render` (default config, security
// level strict) in headless Chromium (`/usr/bin/chromium`, or CHROMIUM), its SVG put in the page
// as `mermaid.run` does, and each label's textContent compared.
//
// Exit status 0 when every label matches; otherwise each mismatch is printed.

import { readFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';

const [input, mode] = process.argv.slice(2);
if (!input) throw new Error('usage: node check.mjs DIAGRAMS.json [--render]');
const diagrams = JSON.parse(readFileSync(input, 'utf8'));
// The exceptions documented on `to_mermaid`: NUL draws as U+FFFD; a word joiner (U+2060)
// keeps `ﬂ°` and `¶ß` apart; a carriage return, alone or before a line feed, draws as a line
// feed (HTML parsers do that to the SVG Mermaid writes).
const expected = (s) =>
  s.replaceAll('\0', '\uFFFD').replace(/ﬂ(?=°)/g, 'ﬂ\u2060').replace(/¶(?=ß)/g, '¶\u2060')
    .replace(/\r\n?/g, '\n');
let failures = 0;
let labels = 0;

/** Compares `got` (id -> text, or edge key -> text) with what the diagram should draw. */
function compare(d, i, got) {
  const want = new Map(Object.entries(d.nodes).map(([id, t]) => [id, expected(t)]));
  d.edges.forEach(([from, to, t]) => want.set(`${from}->${to}`, expected(t)));
  for (const [key, text] of want) {
    labels += 1;
    // Mermaid 12 draws no label at all for an edge without one.
    const drawn = got.get(key) ?? (key.includes('->') ? '' : undefined);
    if (drawn !== text) {
      failures += 1;
      console.log(`diagram ${i}, ${key}: want ${JSON.stringify(text)}, got ${JSON.stringify(drawn)}`);
    }
  }
}

if (mode === '--render') {
  const puppeteer = (await import('puppeteer-core')).default;
  const mermaidJs = createRequire(import.meta.url).resolve('mermaid/dist/mermaid.min.js');
  const profile = mkdtempSync(join(tmpdir(), 'mermaid-check-'));
  const browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    userDataDir: profile,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const page = await browser.newPage();
    await page.setContent('<!doctype html><meta charset="utf-8"><body><div id="out"></div></body>');
    await page.addScriptTag({ path: mermaidJs });
    await page.evaluate(() => mermaid.initialize({ startOnLoad: false, securityLevel: 'strict' }));
    for (const [i, d] of diagrams.entries()) {
      const got = await page.evaluate(async (text, i) => {
        try {
          document.getElementById('out').innerHTML = (await mermaid.render(`d${i}`, text)).svg;
        } catch (e) {
          return { error: String(e.message) };
        }
        const out = document.getElementById('out');
        const got = {};
        for (const g of out.querySelectorAll('g.node, g.cluster')) {
          const id = g.id.replace(/^d\d+-/, '').replace(/^flowchart-/, '').replace(/-\d+$/, '');
          got[id] = g.querySelector('.nodeLabel, .cluster-label')?.textContent;
        }
        for (const l of out.querySelectorAll('g.edgeLabel > g.label[data-id]')) {
          const [, from, to] = l.dataset.id.match(/^L_(n_\w*?)_(n_\w*)_\d+$/);
          got[`${from}->${to}`] = l.textContent;
        }
        return got;
      }, d.text, i);
      if (got.error) {
        failures += 1;
        console.log(`diagram ${i} does not draw: ${got.error}`);
      } else compare(d, i, new Map(Object.entries(got)));
    }
  } finally {
    await browser.close();
    rmSync(profile, { recursive: true, force: true });
  }
} else {
  const { JSDOM } = await import('jsdom');
  const { window } = new JSDOM('<!doctype html><body></body>');
  globalThis.window = window;
  globalThis.document = window.document;
  const { default: mermaid } = await import('mermaid');
  mermaid.initialize({ startOnLoad: false, securityLevel: 'strict' });
  // What drawing does to a label: Mermaid turns its placeholders back into `&#…;` and the
  // label is parsed as HTML; then the same again on the whole SVG, written out.
  const t = document.createElement('template');
  const decode = (s) => s.replace(/ﬂ°°/g, '&#').replace(/ﬂ°/g, '&').replace(/¶ß/g, ';');
  const html = (s) => ((t.innerHTML = s), t.content.textContent);
  const written = (text) => ((t.content.textContent = text), t.innerHTML);
  const drawn = (s) => html(decode(written(html(decode(s)))));
  for (const [i, d] of diagrams.entries()) {
    try {
      await mermaid.parse(d.text);
      const { db } = await mermaid.mermaidAPI.getDiagramFromText(d.text);
      const got = new Map();
      for (const [id, v] of db.getVertices()) got.set(id, drawn(v.text));
      for (const s of db.getSubGraphs()) got.set(s.id, drawn(s.title));
      for (const e of db.getEdges()) got.set(`${e.start}->${e.end}`, drawn(e.text));
      compare(d, i, got);
    } catch (e) {
      failures += 1;
      console.log(`diagram ${i} does not parse: ${e.message}`);
    }
  }
}
console.log(`${diagrams.length} diagrams, ${labels} labels, ${failures} failures (${mode ?? '--parse'})`);
process.exit(failures === 0 ? 0 : 1);
