/**
 * Colour transforms for RGB batches (C = 3), each a 3x3 matrix per image applied to every pixel:
 * hue rotation about the grey axis, saturation change around the luma, and a channel permutation
 * blended with the original. On any other channel count (Fashion-MNIST is C = 1) they return the
 * input unchanged and record `skipped`: a grey image has no hue to rotate.
 */
import { tf, type Tensor4D } from '../backend/index.js';
import { mulberry32, type Rng } from '../util/rng.js';
import { type Degraded, type Severity, type SeverityTable, type SyncDegradation, at, defineSync } from './common.js';

type Mat3 = number[]; // row-major 3x3: out = M * rgb

const IDENTITY: Mat3 = [1, 0, 0, 0, 1, 0, 0, 0, 1];
const LUMA = [0.299, 0.587, 0.114];

/** Apply one 3x3 colour matrix per image to x [N, H, W, 3]. */
function colourMatrices(x: Tensor4D, mats: Mat3[]): Tensor4D {
  const [n, h, w] = x.shape;
  const m = tf.tensor3d(mats.flat(), [n, 3, 3]);
  return tf.matMul(x.reshape([n, h * w, 3]), m, false, true).reshape(x.shape) as Tensor4D;
}

/** Rotation by `angle` radians about the grey axis (1,1,1)/sqrt(3) (Rodrigues' formula). */
export function hueRotation(angle: number): Mat3 {
  const c = Math.cos(angle);
  const s = Math.sin(angle) / Math.sqrt(3);
  const t = (1 - c) / 3;
  return [c + t, t - s, t + s, t + s, c + t, t - s, t - s, t + s, c + t];
}

/** grey + s * (rgb - grey), grey = luma(rgb). */
export function saturationMatrix(s: number): Mat3 {
  return IDENTITY.map((v, i) => s * v + (1 - s) * LUMA[i % 3]);
}

/** The five non-identity permutations of (R, G, B). */
const SHUFFLES = [
  [0, 2, 1],
  [1, 0, 2],
  [1, 2, 0],
  [2, 0, 1],
  [2, 1, 0],
];

function shuffleMatrix(perm: number[], alpha: number): Mat3 {
  return IDENTITY.map((v, i) => (1 - alpha) * v + alpha * (perm[Math.floor(i / 3)] === i % 3 ? 1 : 0));
}

/** A colour degradation: per-image matrices from (severity, rng); identity unless C = 3. */
function defineColour(
  name: string,
  description: string,
  table: SeverityTable,
  matrices: (n: number, severity: Severity, rng: Rng) => { mats: Mat3[]; params: Record<string, unknown> },
): SyncDegradation {
  return defineSync(
    { name, description: `${description}; identity unless C = 3`, table, random: true, differentiable: true, channels: 'rgb' },
    (x, severity, seed): Degraded => {
      if (x.shape[3] !== 3) return { y: x.clone(), params: { skipped: `needs 3 channels, got ${x.shape[3]}` } };
      const { mats, params } = matrices(x.shape[0], severity, mulberry32(seed));
      return { y: colourMatrices(x, mats), params };
    },
  );
}

/** Hue rotation in degrees; the direction is random per image. */
const HUE_DEGREES = [30, 60, 90, 120, 180] as const;

export const hueShift = defineColour('hue-shift', 'rotate hue by +-degrees about the grey axis', { degrees: HUE_DEGREES }, (n, severity, rng) => {
  const degrees = at(HUE_DEGREES, severity);
  const angles = Array.from({ length: n }, () => (rng() < 0.5 ? -degrees : degrees));
  return { mats: angles.map((a) => hueRotation((a * Math.PI) / 180)), params: { degrees, anglesDeg: angles } };
});

/** Saturation change d: factor 1 - d (washed out) or 1 + d (vivid), random per image. */
const SATURATION_CHANGE = [0.2, 0.4, 0.6, 0.8, 1.0] as const;

export const saturation = defineColour(
  'saturation',
  'grey + s * (x - grey), s = 1 +- d, direction random per image',
  { change: SATURATION_CHANGE },
  (n, severity, rng) => {
    const change = at(SATURATION_CHANGE, severity);
    const factors = Array.from({ length: n }, () => 1 + (rng() < 0.5 ? -change : change));
    return { mats: factors.map(saturationMatrix), params: { change, factors } };
  },
);

/** Weight of the permuted channels in the blend (1 = a full channel swap). */
const SHUFFLE_ALPHA = [0.2, 0.4, 0.6, 0.8, 1.0] as const;

export const channelShuffle = defineColour(
  'channel-shuffle',
  '(1 - alpha) x + alpha * (a random non-identity permutation of the channels), per image',
  { alpha: SHUFFLE_ALPHA },
  (n, severity, rng) => {
    const alpha = at(SHUFFLE_ALPHA, severity);
    const perms = Array.from({ length: n }, () => SHUFFLES[Math.floor(rng() * SHUFFLES.length)]);
    return { mats: perms.map((p) => shuffleMatrix(p, alpha)), params: { alpha, permutations: perms } };
  },
);
