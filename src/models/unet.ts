/**
 * A small U-Net noise predictor (the *network*; the process lives in src/diffusion/): residual
 * blocks with group norm and SiLU, a sinusoidal time embedding, 28 -> 14 -> 7 -> 14 -> 28 with skip
 * connections. Parameters are plain named tensors (variables while training), so the same forward
 * serves training, EMA inference and autodiff by attacks.
 */
import { tf, nativeGroupNormSilu, nativeGroupNormSiluApplies, type Tensor, type Tensor1D, type Tensor4D } from '../backend/index.js';
import { convBias } from '../backend/conv.js';

export interface UNetConfig {
  imageChannels: number; // 1 for grayscale
  ch: number; // base width
  mult: [number, number]; // widths at 14x14 and 7x7 relative to ch
  groups: number; // group-norm groups
  tembDim: number;
}

export const DEFAULT_UNET: UNetConfig = { imageChannels: 1, ch: 32, mult: [2, 2], groups: 8, tembDim: 128 };

/** `base` at base width `ch` (a distilled student's shape): group-norm groups the largest of 8, 4, 2, 1 that divides
 *  every width and leaves at least two channels a group. */
export function studentConfig(base: UNetConfig, ch: number): UNetConfig {
  const widths = [ch, ...base.mult.map((m) => m * ch)];
  const groups = [8, 4, 2, 1].find((g) => g <= ch / 2 && widths.every((w) => w % g === 0)) ?? 1;
  return { ...base, ch, groups };
}

export type Params = Record<string, Tensor>;

/** Deterministic He-style initialisation; the output conv starts at zero (common DDPM practice). */
export function initUNet(cfg: UNetConfig, seed: number): Params {
  const p: Params = {};
  let s = seed;
  const conv = (name: string, k: number, cin: number, cout: number, zero = false) => {
    p[`${name}/w`] = zero ? tf.zeros([k, k, cin, cout]) : tf.randomNormal([k, k, cin, cout], 0, Math.sqrt(2 / (k * k * cin)), 'float32', s++);
    p[`${name}/b`] = tf.zeros([cout]);
  };
  const dense = (name: string, cin: number, cout: number) => {
    p[`${name}/w`] = tf.randomNormal([cin, cout], 0, Math.sqrt(1 / cin), 'float32', s++);
    p[`${name}/b`] = tf.zeros([cout]);
  };
  const norm = (name: string, c: number) => {
    p[`${name}/g`] = tf.ones([c]);
    p[`${name}/b`] = tf.zeros([c]);
  };
  const res = (name: string, cin: number, cout: number) => {
    norm(`${name}/n1`, cin);
    conv(`${name}/c1`, 3, cin, cout);
    dense(`${name}/t`, cfg.tembDim, cout);
    norm(`${name}/n2`, cout);
    conv(`${name}/c2`, 3, cout, cout, true);
    if (cin !== cout) conv(`${name}/skip`, 1, cin, cout);
  };
  const [c0, c1, c2] = [cfg.ch, cfg.ch * cfg.mult[0], cfg.ch * cfg.mult[1]];
  dense('temb/d1', cfg.tembDim / 2, cfg.tembDim);
  dense('temb/d2', cfg.tembDim, cfg.tembDim);
  conv('in', 3, cfg.imageChannels, c0);
  res('d0', c0, c0);
  conv('down0', 3, c0, c0);
  res('d1', c0, c1);
  conv('down1', 3, c1, c1);
  res('m0', c1, c2);
  res('m1', c2, c2);
  res('u1', c2 + c1, c1);
  res('u0', c1 + c0, c0);
  norm('out/n', c0);
  conv('out', 3, c0, cfg.imageChannels, true);
  return p;
}

/** x sigmoid(x) by autodiff: the inference path, and the reference for the written-out derivative. */
export const siluAutodiff = (x: Tensor): Tensor => x.mul(x.sigmoid());

/** x sigmoid(x); under a gradient tape with its derivative written out: dy (s + y (1 - s)), 4 ops instead of 6. */
export function silu(x: Tensor): Tensor {
  return tf.engine().isTapeOn() ? (siluWithGrad(x) as Tensor) : siluAutodiff(x);
}

const siluWithGrad = tf.customGrad((...args: unknown[]) => {
  const [x, save] = args as [Tensor, tf.GradSaveFunc];
  const s = x.sigmoid();
  const y = x.mul(s);
  save([s, y]);
  return { value: y, gradFunc: (dy: Tensor, [sv, yv]: Tensor[]) => dy.mul(sv.add(yv.mul(tf.scalar(1).sub(sv)))) };
});

/**
 * silu(groupNorm(x)): the U-Net's every normalisation. On the wasm backend in our fused SIMD kernels (forward and
 * gradient, src/backend/native-norm.ts), elsewhere composed from tfjs ops.
 */
export function groupNormSilu(x: Tensor4D, g: Tensor, b: Tensor, groups: number, eps = 1e-5): Tensor4D {
  if (nativeGroupNormSiluApplies(x, g, b, groups)) return nativeGroupNormSilu(x, g, b, groups, eps);
  return silu(groupNorm(x, g, b, groups, eps)) as Tensor4D;
}

/** Group norm over [N,H,W,C] with per-channel affine (as a per-image, per-channel scale and shift). */
export function groupNorm(x: Tensor4D, g: Tensor, b: Tensor, groups: number, eps = 1e-5): Tensor4D {
  // under a gradient tape, the hand-written backward (7 full-size ops instead of autodiff's ~12)
  if (tf.engine().isTapeOn()) return groupNormWithGrad(groups, eps)(x, g, b) as Tensor4D;
  return groupNormForward(x, g, b, groups, eps).y;
}

function groupNormForward(x: Tensor4D, g: Tensor, b: Tensor, groups: number, eps: number) {
  const [n, , , c] = x.shape;
  const cg = c / groups;
  const chMean = x.mean([1, 2]); // [N, C]
  const chSq = x.square().mean([1, 2]);
  const mean = chMean.reshape([n, groups, cg]).mean(2, true); // [N, G, 1]
  const rawVar = chSq.reshape([n, groups, cg]).mean(2, true).sub(mean.square());
  const rstd = rawVar.relu().add(eps).rsqrt();
  const scale = rstd.tile([1, 1, cg]).reshape([n, 1, 1, c]).mul(g); // [N,1,1,C]
  const shift = b.sub(mean.tile([1, 1, cg]).reshape([n, 1, 1, c]).mul(scale));
  return { y: x.mul(scale).add(shift) as Tensor4D, mean, rstd, rawVar, scale };
}

/**
 * Group norm with its gradient written out. With y = x s_c + t_c, s_c = g_c rstd_G, t_c = b_c - mu_G s_c
 * (per image; G the group of channel c, N_G = H W C/groups), A_c = sum_hw dy, B_c = sum_hw dy x:
 *   dg_c = sum_n rstd_G (B_c - mu_G A_c),  db_c = sum_n A_c,
 *   dx = dy s_c + x alpha_G + beta_G, where with D_c = B_c - mu_G A_c
 *   dL/drstd = sum_{c in G} g_c D_c,  dL/dvar = -rstd^3 / 2 dL/drstd (0 where the variance was clipped),
 *   dL/dmu = -sum_{c in G} s_c A_c,  alpha = 2 dL/dvar / N_G,  beta = (dL/dmu - 2 mu dL/dvar) / N_G.
 * Checked against autodiff of the forward in test/models.test.ts.
 */
const groupNormOps = new Map<string, ReturnType<typeof makeGroupNormWithGrad>>();

/** The custom-gradient op for (groups, eps), built once (not per layer per step). */
function groupNormWithGrad(groups: number, eps: number) {
  const key = `${groups}/${eps}`;
  let op = groupNormOps.get(key);
  if (!op) groupNormOps.set(key, (op = makeGroupNormWithGrad(groups, eps)));
  return op;
}

function makeGroupNormWithGrad(groups: number, eps: number) {
  return tf.customGrad((...args: unknown[]) => {
    const [x, g, b, save] = args as [Tensor4D, Tensor, Tensor, tf.GradSaveFunc];
    const f = groupNormForward(x, g, b, groups, eps);
    save([x, g, f.mean, f.rstd, f.rawVar, f.scale]);
    return {
      value: f.y,
      gradFunc: (dy: Tensor, saved: Tensor[]) => {
        const [xs, gs, mean, rstd, rawVar, scale] = saved as [Tensor4D, Tensor, Tensor, Tensor, Tensor, Tensor];
        const [n, h, w, c] = xs.shape;
        const cg = c / groups;
        const A = dy.sum([1, 2]).reshape([n, groups, cg]);
        const B = dy.mul(xs).sum([1, 2]).reshape([n, groups, cg]);
        const D = B.sub(mean.mul(A)); // [N,G,cg]
        const g3 = gs.reshape([1, groups, cg]);
        const dg = rstd.mul(D).sum(0).reshape(gs.shape);
        const db = A.sum(0).reshape(gs.shape);
        const dRstd = g3.mul(D).sum(2, true); // [N,G,1]
        const dVar = dRstd.mul(rstd.pow(3)).mul(-0.5).mul(rawVar.greater(0).cast('float32'));
        const dMu = scale.reshape([n, groups, cg]).mul(A).sum(2, true).neg();
        const ng = h * w * cg;
        const alpha = dVar.mul(2 / ng);
        const beta = dMu.sub(mean.mul(dVar).mul(2)).div(ng);
        const perChannel = (t: Tensor) => t.tile([1, 1, cg]).reshape([n, 1, 1, c]);
        const dx = dy.mul(scale).add(xs.mul(perChannel(alpha))).add(perChannel(beta));
        return [dx, dg, db];
      },
    };
  });
}

/** Group norm by autodiff of the forward alone: the reference the hand-written gradient is tested and timed against. */
export function groupNormAutodiff(x: Tensor4D, g: Tensor, b: Tensor, groups: number, eps = 1e-5): Tensor4D {
  return groupNormForward(x, g, b, groups, eps).y;
}

function conv(p: Params, name: string, x: Tensor4D, stride = 1): Tensor4D {
  return convBias(x, p[`${name}/w`] as Tensor4D, p[`${name}/b`], stride);
}

function dense(p: Params, name: string, x: Tensor): tf.Tensor2D {
  return tf.matMul(x as tf.Tensor2D, p[`${name}/w`] as tf.Tensor2D).add(p[`${name}/b`]) as tf.Tensor2D;
}

function resBlock(p: Params, name: string, x: Tensor4D, temb: Tensor, groups: number): Tensor4D {
  let h = groupNormSilu(x, p[`${name}/n1/g`], p[`${name}/n1/b`], groups);
  h = conv(p, `${name}/c1`, h);
  const t = dense(p, `${name}/t`, temb);
  h = h.add(t.reshape([t.shape[0], 1, 1, t.shape[1]])) as Tensor4D;
  h = groupNormSilu(h, p[`${name}/n2/g`], p[`${name}/n2/b`], groups);
  h = conv(p, `${name}/c2`, h);
  const skip = p[`${name}/skip/w`] ? conv(p, `${name}/skip`, x) : x;
  return skip.add(h) as Tensor4D;
}

/** Sinusoidal embedding of (float) timesteps, [N] -> [N, dim]. */
export function timestepEmbedding(t: Tensor1D, dim: number, maxPeriod = 10000): tf.Tensor2D {
  const half = dim / 2;
  const freqs = tf.tensor1d(Array.from({ length: half }, (_, i) => Math.exp((-Math.log(maxPeriod) * i) / half)));
  const args = t.reshape([-1, 1]).mul(freqs.reshape([1, half]));
  return tf.concat([args.cos(), args.sin()], 1) as tf.Tensor2D;
}

const up2 = (x: Tensor4D): Tensor4D => tf.image.resizeNearestNeighbor(x, [x.shape[1] * 2, x.shape[2] * 2]);

/** epsilon_theta(x_t, t): x_t [N,28,28,C] on the model scale, t [N] (float steps). */
export function unetForward(p: Params, cfg: UNetConfig, xt: Tensor4D, t: Tensor1D): Tensor4D {
  const G = cfg.groups;
  let temb: Tensor = timestepEmbedding(t, cfg.tembDim / 2);
  temb = silu(dense(p, 'temb/d1', temb));
  temb = silu(dense(p, 'temb/d2', temb));
  const h0 = conv(p, 'in', xt);
  const s0 = resBlock(p, 'd0', h0, temb, G); // 28
  const s1 = resBlock(p, 'd1', conv(p, 'down0', s0, 2), temb, G); // 14
  let h = conv(p, 'down1', s1, 2); // 7
  h = resBlock(p, 'm0', h, temb, G);
  h = resBlock(p, 'm1', h, temb, G);
  h = resBlock(p, 'u1', tf.concat([up2(h), s1], 3), temb, G); // 14
  h = resBlock(p, 'u0', tf.concat([up2(h), s0], 3), temb, G); // 28
  h = groupNormSilu(h, p['out/n/g'], p['out/n/b'], G);
  return conv(p, 'out', h);
}

/** Multiply-accumulate count of one forward pass per image (convs and dense layers), for FLOP-rate reporting. */
export function unetMacsPerImage(cfg: UNetConfig, h = 28, w = 28): number {
  const [c0, c1, c2] = [cfg.ch, cfg.ch * cfg.mult[0], cfg.ch * cfg.mult[1]];
  const convM = (hh: number, ww: number, k: number, cin: number, cout: number) => hh * ww * k * k * cin * cout;
  const res = (hh: number, ww: number, cin: number, cout: number) =>
    convM(hh, ww, 3, cin, cout) + convM(hh, ww, 3, cout, cout) + (cin !== cout ? convM(hh, ww, 1, cin, cout) : 0);
  const h2 = h / 2, w2 = w / 2, h4 = Math.ceil(h2 / 2), w4 = Math.ceil(w2 / 2);
  return (
    convM(h, w, 3, cfg.imageChannels, c0) + res(h, w, c0, c0) + convM(h2, w2, 3, c0, c0) + res(h2, w2, c0, c1) +
    convM(h4, w4, 3, c1, c1) + res(h4, w4, c1, c2) + res(h4, w4, c2, c2) + res(h2, w2, c2 + c1, c1) +
    res(h, w, c1 + c0, c0) + convM(h, w, 3, c0, cfg.imageChannels)
  );
}
