/**
 * The one place that imports TensorFlow.js. Everything else imports `tf` from here
 * (through `src/backend/index.ts`), so that exactly one tfjs-core engine exists per thread.
 */
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';

export { tf };
export type Tensor = tf.Tensor;
export type Tensor1D = tf.Tensor1D;
export type Tensor2D = tf.Tensor2D;
export type Tensor4D = tf.Tensor4D;
export type Scalar = tf.Scalar;
