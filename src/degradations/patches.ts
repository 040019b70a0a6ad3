/**
 * Patch degradations, both pixel remappings (one tf.gather, so gradients flow to the source pixels):
 *  - paste-patches: square patches cut from another image of the batch (at a random place) and
 *    pasted at a random place (CutMix-like occlusion by real content);
 *  - scramble-patches: the image is cut into a 4x4 grid of square blocks; a fraction of the blocks
 *    are permuted among themselves and each gets a random non-identity flip/rotation.
 */
import { tf, type Tensor4D } from '../backend/index.js';
import { mulberry32, permutation, type Rng } from '../util/rng.js';
import { at, defineSync, nextSeed } from './common.js';

/**
 * y[p] = x[index[p]] over the flattened pixels of the batch (N*H*W entries, channels kept).
 * The gradient is written as a scatter-add (tf's own GatherV2 gradient needs UnsortedSegmentSum,
 * which the wasm backend lacks); index tensors are rebuilt inside each function because the
 * gradient runs after the forward pass's tidy scope has ended.
 */
function remap(x: Tensor4D, index: Int32Array): Tensor4D {
  const [n, h, w, c] = x.shape;
  const gatherPixels = tf.customGrad((...args: unknown[]) => {
    const flat = args[0] as tf.Tensor2D;
    return {
      value: tf.gather(flat, tf.tensor1d(index, 'int32')),
      gradFunc: (dy: tf.Tensor) => tf.scatterND(tf.tensor2d(index, [index.length, 1], 'int32'), dy, flat.shape),
    };
  });
  return (gatherPixels(x.reshape([n * h * w, c])) as tf.Tensor).reshape(x.shape) as Tensor4D;
}

function identityIndex(n: number, h: number, w: number): Int32Array {
  return Int32Array.from({ length: n * h * w }, (_, i) => i);
}

const randInt = (rng: Rng, k: number) => Math.floor(rng() * k);

/** Patch side as a fraction of the image side, and patches per image. */
const PASTE_SIZE = [0.2, 0.25, 0.3, 0.35, 0.4] as const;
const PASTE_COUNT = [1, 2, 2, 3, 3] as const;

export const pastePatches = defineSync(
  {
    name: 'paste-patches',
    description: 'square patches copied from other images of the batch to random places',
    table: { size: PASTE_SIZE, count: PASTE_COUNT },
    random: true,
    differentiable: true,
  },
  (x, severity, seed) => {
    const [n, h, w] = x.shape;
    const rng = mulberry32(seed);
    const size = at(PASTE_SIZE, severity);
    const count = at(PASTE_COUNT, severity);
    const ph = Math.max(1, Math.round(size * h));
    const pw = Math.max(1, Math.round(size * w));
    const index = identityIndex(n, h, w);
    const sources: number[][] = [];
    for (let i = 0; i < n; i++) {
      const from: number[] = [];
      for (let p = 0; p < count; p++) {
        // another image when there is one (j != i), else this image at another place
        const j = n > 1 ? (i + 1 + randInt(rng, n - 1)) % n : i;
        const [sy, sx, ty, tx] = [randInt(rng, h - ph + 1), randInt(rng, w - pw + 1), randInt(rng, h - ph + 1), randInt(rng, w - pw + 1)];
        for (let dy = 0; dy < ph; dy++) {
          for (let dx = 0; dx < pw; dx++) index[(i * h + ty + dy) * w + tx + dx] = (j * h + sy + dy) * w + sx + dx;
        }
        from.push(j);
      }
      sources.push(from);
    }
    return { y: remap(x, index), params: { size, count, patch: [ph, pw], sources } };
  },
);

/** The 8 symmetries of a b x b block as maps from output (u, v) to source (u, v); 0 is the identity. */
const DIHEDRAL: ((u: number, v: number, b: number) => [number, number])[] = [
  (u, v) => [u, v],
  (u, v, b) => [v, b - 1 - u], // rotate 90
  (u, v, b) => [b - 1 - u, b - 1 - v], // rotate 180
  (u, v, b) => [b - 1 - v, u], // rotate 270
  (u, v, b) => [u, b - 1 - v], // flip left-right
  (u, v, b) => [b - 1 - u, v], // flip up-down
  (u, v) => [v, u], // transpose
  (u, v, b) => [b - 1 - v, b - 1 - u], // anti-transpose
];

const SCRAMBLE_GRID = 4;
/** Fraction of the grid's blocks that are scrambled. */
const SCRAMBLE_FRACTION = [0.125, 0.25, 0.375, 0.5, 0.75] as const;

export const scramblePatches = defineSync(
  {
    name: 'scramble-patches',
    description: `a fraction of a ${SCRAMBLE_GRID}x${SCRAMBLE_GRID} grid of blocks permuted among themselves, each flipped/rotated`,
    table: { fraction: SCRAMBLE_FRACTION },
    random: true,
    differentiable: true,
  },
  (x, severity, seed) => {
    const [n, h, w] = x.shape;
    const rng = mulberry32(seed);
    const fraction = at(SCRAMBLE_FRACTION, severity);
    const b = Math.max(1, Math.floor(Math.min(h, w) / SCRAMBLE_GRID)); // block side; leftover border stays
    const gh = Math.floor(h / b);
    const gw = Math.floor(w / b);
    const k = Math.max(1, Math.round(fraction * gh * gw));
    const index = identityIndex(n, h, w);
    const moves: number[][][] = []; // per image: [destination block, source block, transform]
    for (let i = 0; i < n; i++) {
      const blocks = Array.from(permutation(gh * gw, nextSeed(rng)).subarray(0, k));
      const order = permutation(k, nextSeed(rng));
      const imageMoves = blocks.map((dest, t) => [dest, blocks[order[t]], 1 + randInt(rng, DIHEDRAL.length - 1)]);
      for (const [dest, src, transform] of imageMoves) {
        const [dy0, dx0, sy0, sx0] = [Math.floor(dest / gw) * b, (dest % gw) * b, Math.floor(src / gw) * b, (src % gw) * b];
        for (let u = 0; u < b; u++) {
          for (let v = 0; v < b; v++) {
            const [su, sv] = DIHEDRAL[transform](u, v, b);
            index[(i * h + dy0 + u) * w + dx0 + v] = (i * h + sy0 + su) * w + sx0 + sv;
          }
        }
      }
      moves.push(imageMoves);
    }
    return { y: remap(x, index), params: { fraction, grid: [gh, gw], block: b, moves } };
  },
);
