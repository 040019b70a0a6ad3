/** Writes test/fixtures: the first 1,000 Fashion-MNIST test images and labels as gzipped IDX. */
import { readFileSync, writeFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { join } from 'node:path';
import { parseIdx, encodeIdx, FIXTURE_DIR } from '../src/data/index.js';

const src = process.argv[2] ?? '/usr/share/datasets/fashion-mnist';
const n = 1000;
const im = parseIdx(readFileSync(join(src, 't10k-images-idx3-ubyte.gz')));
const lb = parseIdx(readFileSync(join(src, 't10k-labels-idx1-ubyte.gz')));
writeFileSync(join(FIXTURE_DIR, 'fashion-mnist-test-1000-images-idx3-ubyte.gz'), gzipSync(encodeIdx([n, 28, 28], im.data.subarray(0, n * 784)), { level: 9 }));
writeFileSync(join(FIXTURE_DIR, 'fashion-mnist-test-1000-labels-idx1-ubyte.gz'), gzipSync(encodeIdx([n], lb.data.subarray(0, n)), { level: 9 }));
console.log(`wrote ${n} images to ${FIXTURE_DIR}`);
