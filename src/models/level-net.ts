/**
 * The degradation-level estimator of the restoration model (the *network*; what a level means lives
 * in src/diffusion/restoration.ts): a small strided CNN that reads a degraded image and predicts how far
 * it is from its clean original, as the log of the residual's RMS on the model scale [-1, 1]
 * (`log sigma`, the noise-equivalent level). It is the "predicted severity" of cold diffusion
 * (Bansal et al. 2022) for a blind model: 3.7 MMAC per 28x28 image, 4% of the U-Net.
 *
 * Parameters are named tensors under `level/`, stored in the same weights file as the U-Net.
 */
import { tf, type Tensor, type Tensor1D, type Tensor4D } from '../backend/index.js';
import type { Params } from './unet.js';

export interface LevelNetConfig {
  imageChannels: number;
  ch: number; // width at 28x28; 2ch at 14x14, 4ch at 7x7
}

export const DEFAULT_LEVEL_NET: LevelNetConfig = { imageChannels: 1, ch: 16 };

/** Parameter names start with this prefix, so a U-Net and its level net share one file. */
export const LEVEL_PREFIX = 'level/';

/** He-initialised convolutions; the head starts at log sigma = `initLogSigma`. */
export function initLevelNet(cfg: LevelNetConfig, seed: number, initLogSigma = Math.log(0.1)): Params {
  const p: Params = {};
  let s = seed;
  const conv = (name: string, cin: number, cout: number) => {
    p[`${LEVEL_PREFIX}${name}/w`] = tf.randomNormal([3, 3, cin, cout], 0, Math.sqrt(2 / (9 * cin)), 'float32', s++);
    p[`${LEVEL_PREFIX}${name}/b`] = tf.zeros([cout]);
  };
  const [c0, c1, c2] = [cfg.ch, 2 * cfg.ch, 4 * cfg.ch];
  conv('c0', cfg.imageChannels, c0);
  conv('c1', c0, c1);
  conv('c2', c1, c2);
  conv('c3', c2, c2);
  // head on [mean, std] of the last features over space: 2 * c2 -> 1
  p[`${LEVEL_PREFIX}head/w`] = tf.zeros([2 * c2, 1]);
  p[`${LEVEL_PREFIX}head/b`] = tf.fill([1], initLogSigma);
  return p;
}

const silu = (x: Tensor): Tensor => x.mul(x.sigmoid());

function conv(p: Params, name: string, x: Tensor4D, stride: number): Tensor4D {
  return tf.fused.conv2d({ x, filter: p[`${LEVEL_PREFIX}${name}/w`] as Tensor4D, strides: stride, pad: 'same', bias: p[`${LEVEL_PREFIX}${name}/b`] });
}

/** log sigma (model scale) per image: y [N,H,W,C] on the model scale [-1, 1] -> [N]. */
export function levelNetForward(p: Params, y: Tensor4D): Tensor1D {
  return tf.tidy(() => {
    let h = silu(conv(p, 'c0', y, 1)) as Tensor4D; // 28
    h = silu(conv(p, 'c1', h, 2)) as Tensor4D; // 14
    h = silu(conv(p, 'c2', h, 2)) as Tensor4D; // 7
    h = silu(conv(p, 'c3', h, 1)) as Tensor4D;
    const { mean, variance } = tf.moments(h, [1, 2]);
    const feats = tf.concat([mean, variance.add(1e-6).sqrt()], 1) as tf.Tensor2D;
    return tf.matMul(feats, p[`${LEVEL_PREFIX}head/w`] as tf.Tensor2D).add(p[`${LEVEL_PREFIX}head/b`]).reshape([-1]) as Tensor1D;
  });
}

/** The level-net parameters of a parameter set (those under `level/`), or undefined when it has none. */
export function levelParams(p: Params): Params | undefined {
  const out: Params = {};
  for (const [k, v] of Object.entries(p)) if (k.startsWith(LEVEL_PREFIX)) out[k] = v;
  return Object.keys(out).length ? out : undefined;
}
