import { describe, it, expect } from 'vitest';
import { gzipSync } from 'node:zlib';
import { parseIdx, encodeIdx, IdxFormatError, loadFixture, loadDataset, batch, DataNotFoundError } from '../src/data/index.js';
import { tf } from '../src/backend/index.js';

describe('IDX parsing', () => {
  it('round-trips raw and gzipped IDX', () => {
    const data = Uint8Array.from({ length: 2 * 3 * 4 }, (_, i) => i);
    const raw = encodeIdx([2, 3, 4], data);
    for (const buf of [raw, gzipSync(raw)]) {
      const r = parseIdx(buf);
      expect(r.dims).toEqual([2, 3, 4]);
      expect(Array.from(r.data)).toEqual(Array.from(data));
    }
  });

  it('rejects bad magic, unsupported types and truncated bodies with a typed error', () => {
    const good = encodeIdx([4], Uint8Array.from([1, 2, 3, 4]));
    const badMagic = Buffer.from(good);
    badMagic[0] = 1;
    const badType = Buffer.from(good);
    badType[2] = 0x0d;
    for (const b of [badMagic, badType, good.subarray(0, good.length - 1), Buffer.alloc(2)]) {
      expect(() => parseIdx(b)).toThrow(IdxFormatError);
    }
  });
});

describe('datasets', () => {
  it('the committed fixture holds 1,000 labelled 28x28 images in [0,1]', () => {
    const ds = loadFixture();
    expect(ds.count).toBe(1000);
    expect(ds.shape).toEqual([28, 28, 1]);
    expect(ds.images.length).toBe(1000 * 784);
    let lo = Infinity, hi = -Infinity;
    for (const v of ds.images) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    expect(lo).toBe(0);
    expect(hi).toBe(1);
    const counts = new Array(10).fill(0);
    for (const l of ds.labels) counts[l]++;
    expect(Math.min(...counts)).toBeGreaterThan(70); // every class present
  });

  it('batches become tensors with the right shapes and no leaks', () => {
    const ds = loadFixture();
    const before = tf.memory().numTensors;
    const { x, y } = batch(ds, [0, 5, 7]);
    expect(x.shape).toEqual([3, 28, 28, 1]);
    expect(Array.from(y.dataSync())).toEqual([ds.labels[0], ds.labels[5], ds.labels[7]]);
    tf.dispose([x, y]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('MNIST has a fixed 8,000 / 2,000 split with disjoint train and validation', () => {
    const tv = loadDataset('mnist', 'trainval');
    const test = loadDataset('mnist', 'test');
    const train = loadDataset('mnist', 'train');
    const val = loadDataset('mnist', 'val');
    expect([tv.count, test.count, train.count, val.count]).toEqual([8000, 2000, 7000, 1000]);
    // same split on every call
    expect(Array.from(loadDataset('mnist', 'test').labels.slice(0, 50))).toEqual(Array.from(test.labels.slice(0, 50)));
  });

  it('Fashion-MNIST (when installed) splits 55k train / 5k validation / 10k test, else fails with a how-to', () => {
    try {
      const val = loadDataset('fashion-mnist', 'val');
      const test = loadDataset('fashion-mnist', 'test');
      expect(val.count).toBe(5000);
      expect(test.count).toBe(10000);
      // the fixture is the first 1,000 test images
      const fx = loadFixture();
      expect(Array.from(test.labels.slice(0, 1000))).toEqual(Array.from(fx.labels));
    } catch (e) {
      expect(e).toBeInstanceOf(DataNotFoundError);
      expect((e as Error).message).toMatch(/apt-get install dataset-fashion-mnist/);
    }
  });
});
