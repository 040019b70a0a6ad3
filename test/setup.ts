// Every test file runs on the backend users get by default (wasm here, with our training kernels).
import { initBackend } from '../src/backend/index.js';

process.env.ADVPURIFY_QUIET ??= '1';
await initBackend();
