/**
 * Gradient overrides (backend-independent, mathematically identical to tfjs-core's).
 *
 * tfjs-core's FusedBatchNorm gradient tiles 1/sqrt(var) to the full input shape before multiplying;
 * on wasm that Tile costs more than the convolutions around it. Broadcasting gives the same result.
 */
import { tf } from './tf.js';

let done = false;

export function registerGradientOverrides(): void {
  if (done) return;
  done = true;
  const warn = console.warn;
  console.warn = () => {}; // tfjs warns when a gradient is overridden; this one is intentional
  try {
    tf.registerGradient({
      kernelName: 'FusedBatchNorm',
      inputsToSave: ['x', 'mean', 'variance', 'scale'],
      gradFunc: (dy, saved, attrs) => {
        const { varianceEpsilon } = attrs as unknown as { varianceEpsilon: number };
        const [x, mean, variance, scale] = saved;
        const dyT = dy as tf.Tensor;
        const scaleValue = scale == null ? tf.scalar(1) : scale;
        const axes = tf.backend_util.getReductionAxes(mean.shape, x.shape);
        const reduce = (t: tf.Tensor) => (mean.rank === 1 ? t.sum(axes) : t).reshape(mean.shape);
        const rstd = tf.rsqrt(variance.add(tf.scalar(varianceEpsilon)));
        const xMinusMean = x.sub(mean);
        const dyScaled = dyT.mul(scaleValue);
        return {
          x: () => dyT.mul(rstd).mul(scaleValue).reshape(x.shape),
          mean: () => reduce(rstd.mul(-1).mul(dyScaled)),
          variance: () => reduce(rstd.mul(rstd).mul(rstd).mul(-0.5).mul(xMinusMean).mul(dyScaled)),
          scale: () => reduce(dyT.mul(xMinusMean.mul(rstd))),
          offset: () => reduce(dyT),
        };
      },
    });
  } finally {
    console.warn = warn;
  }
}
