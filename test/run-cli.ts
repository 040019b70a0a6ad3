// Runs the CLI from source (tests execute this with `node --import tsx`).
import { main } from '../src/cli/index.js';

process.exitCode = await main(process.argv.slice(2));
