#!/usr/bin/env node
// Entry point: the compiled CLI (npm install runs `prepare` = tsc, which builds dist/).
import { main } from '../dist/src/cli/index.js';

main(process.argv.slice(2)).then(
  (code) => {
    if (code !== 0) process.exitCode = code;
  },
  (e) => {
    process.stderr.write(`advpurify: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = 1;
  },
);
