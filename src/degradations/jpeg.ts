/**
 * JPEG compression at a quality q (IJG scale 1..100), two ways sharing one quality table:
 *  - `jpeg`: the real codec (sharp / libjpeg, standard Annex K tables, 4:4:4 chroma), per image, async;
 *  - `jpeg-dct`: a differentiable approximation in tf ops (Shin & Song 2017, "JPEG-resistant
 *    adversarial images"): 8x8 block DCT of (Y[, Cb, Cr]) - 128, quantisation by the same scaled
 *    tables with round(z) replaced by round(z) + (z - round(z))^3, inverse DCT. No chroma
 *    subsampling, no final rounding to 8 bits; borders padded by edge replication as libjpeg does.
 * C = 1 is coded as a grayscale JPEG, C = 3 as YCbCr; other channel counts are rejected.
 */
import sharp from 'sharp';
import { tf, type Tensor4D } from '../backend/index.js';
import { type AsyncDegradation, type Severity, at, checkArgs, defineSync } from './common.js';

/** JPEG quality (IJG 1..100). ImageNet-C uses 25..7, CIFAR-10-C 80..40; these sit between. */
const JPEG_QUALITY = [50, 30, 20, 12, 7] as const;

function checkChannels(name: string, c: number): void {
  if (c !== 1 && c !== 3) throw new RangeError(`${name}: JPEG needs 1 or 3 channels, got ${c}`);
}

async function jpegRoundTrip(pixels: Uint8Array, h: number, w: number, c: 1 | 3, quality: number): Promise<Uint8Array> {
  const raw = { raw: { width: w, height: h, channels: c } };
  const encoded =
    c === 1
      ? await sharp(pixels, raw).toColourspace('b-w').jpeg({ quality }).toBuffer()
      : await sharp(pixels, raw).jpeg({ quality, chromaSubsampling: '4:4:4' }).toBuffer();
  const decoded = await sharp(encoded).toColourspace(c === 1 ? 'b-w' : 'srgb').raw().toBuffer();
  return new Uint8Array(decoded.buffer, decoded.byteOffset, h * w * c);
}

export const jpeg: AsyncDegradation = {
  name: 'jpeg',
  description: 'real JPEG encode/decode through sharp (libjpeg), per image, 8-bit',
  table: { quality: JPEG_QUALITY },
  random: false,
  differentiable: false,
  channels: 'any',
  sync: false,
  async apply(x: Tensor4D, severity: Severity, seed: number) {
    checkArgs('jpeg', x, severity);
    const [n, h, w, c] = x.shape;
    checkChannels('jpeg', c);
    const quality = at(JPEG_QUALITY, severity);
    const values = await x.data();
    const size = h * w * c;
    const out = new Float32Array(n * size);
    await Promise.all(
      Array.from({ length: n }, async (_, i) => {
        const pixels = Uint8Array.from(values.subarray(i * size, (i + 1) * size), (v) => Math.round(Math.min(1, Math.max(0, v)) * 255));
        const decoded = await jpegRoundTrip(pixels, h, w, c as 1 | 3, quality);
        for (let k = 0; k < size; k++) out[i * size + k] = decoded[k] / 255;
      }),
    );
    return { y: tf.tensor4d(out, [n, h, w, c]), params: { severity, seed: seed >>> 0, quality } };
  },
};

// ITU-T T.81 Annex K tables, row-major 8x8.
const LUMA_TABLE = [
  16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
  18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
];
const CHROMA_TABLE = [
  17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99,
  ...new Array<number>(32).fill(99),
];

/** The table libjpeg uses at `quality` (jpeg_quality_scaling, baseline: entries clamped to 1..255). */
export function scaledTable(base: readonly number[], quality: number): Float32Array {
  const q = Math.min(100, Math.max(1, Math.round(quality)));
  const scale = q < 50 ? 5000 / q : 200 - 2 * q;
  return Float32Array.from(base, (t) => Math.min(255, Math.max(1, Math.floor((t * scale + 50) / 100))));
}

/** Orthonormal 8-point DCT-II matrix D (row u = frequency): coefficients = D X D^T. */
const DCT8 = Array.from({ length: 64 }, (_, i) => {
  const [u, k] = [Math.floor(i / 8), i % 8];
  return Math.sqrt((u === 0 ? 1 : 2) / 8) * Math.cos(((2 * k + 1) * u * Math.PI) / 16);
});

// JFIF full-range RGB <-> YCbCr, chroma centred on 0 (JFIF adds 128, which the level shift removes).
const RGB_TO_YCC = [0.299, 0.587, 0.114, -0.168736, -0.331264, 0.5, 0.5, -0.418688, -0.081312];
const YCC_TO_RGB = [1, 0, 1.402, 1, -0.344136, -0.714136, 1, 1.772, 0];

/** Rounding with a useful gradient (Shin & Song 2017): round(z) + (z - round(z))^3. */
export function roundApprox(z: tf.Tensor): tf.Tensor {
  const r = tf.round(z);
  return r.add(z.sub(r).pow(3));
}

/** Pad [N, H, W, C] to [N, hp, wp, C] by repeating the last row and column (as libjpeg does). */
function padEdge(x: Tensor4D, hp: number, wp: number): Tensor4D {
  const [n, h, w, c] = x.shape;
  let y: tf.Tensor = x;
  if (hp > h) y = tf.concat([y, y.slice([0, h - 1, 0, 0], [n, 1, w, c]).tile([1, hp - h, 1, 1])], 1);
  if (wp > w) y = tf.concat([y, y.slice([0, 0, w - 1, 0], [n, hp, 1, c]).tile([1, 1, wp - w, 1])], 2);
  return y as Tensor4D;
}

/** The JPEG quantisation round trip on centred 0..255 planes [N, H, W, C] (H, W multiples of 8). */
function quantiseBlocks(planes: Tensor4D, quality: number): Tensor4D {
  const [n, h, w, c] = planes.shape;
  const hb = h / 8;
  const wb = w / 8;
  const tables = Array.from({ length: c }, (_, ch) => Array.from(scaledTable(ch === 0 ? LUMA_TABLE : CHROMA_TABLE, quality)));
  const q = tf.tensor(tables.flat(), [1, 1, 1, c, 8, 8]);
  const d = tf.tensor2d(DCT8, [8, 8]);
  const blocks = planes.reshape([n, hb, 8, wb, 8, c]).transpose([0, 1, 3, 5, 2, 4]); // [N, hb, wb, C, 8, 8]
  const coef = tf.matMul(tf.matMul(d, blocks.reshape([-1, 8, 8])), d, false, true).reshape(blocks.shape);
  const quantised = roundApprox(coef.div(q)).mul(q);
  const back = tf.matMul(tf.matMul(d, quantised.reshape([-1, 8, 8]), true), d).reshape(blocks.shape);
  return back.transpose([0, 1, 4, 2, 5, 3]).reshape([n, h, w, c]) as Tensor4D;
}

export const jpegDct = defineSync(
  {
    name: 'jpeg-dct',
    description: 'differentiable JPEG approximation: 8x8 block DCT quantisation with a cubic soft rounding',
    table: { quality: JPEG_QUALITY },
    random: false,
    differentiable: true,
  },
  (x, severity) => {
    const [n, h, w, c] = x.shape;
    checkChannels('jpeg-dct', c);
    const quality = at(JPEG_QUALITY, severity);
    const hp = Math.ceil(h / 8) * 8;
    const wp = Math.ceil(w / 8) * 8;
    const padded = padEdge(x, hp, wp).mul(255);
    const toYcc = tf.tensor2d(RGB_TO_YCC, [3, 3]);
    const toRgb = tf.tensor2d(YCC_TO_RGB, [3, 3]);
    const planes = c === 3 ? tf.matMul(padded.reshape([-1, 3]), toYcc, false, true).reshape(padded.shape) : padded;
    const levelShift = c === 3 ? tf.tensor1d([128, 0, 0]) : 128; // the JPEG level shift, luma only here
    const coded = quantiseBlocks(planes.sub(levelShift) as Tensor4D, quality).add(levelShift);
    const rgb = c === 3 ? tf.matMul(coded.reshape([-1, 3]), toRgb, false, true).reshape(coded.shape) : coded;
    const y = rgb.slice([0, 0, 0, 0], [n, h, w, c]).div(255) as Tensor4D;
    return { y, params: { quality } };
  },
);
