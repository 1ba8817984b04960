/**
 * Plain scalar TypeScript versions of every kernel, written for clarity, not speed, with
 * sums in float64: the oracle the tests hold the other backends' kernels to (composed into
 * the whole model in testing/reference_model.ts).
 * Shapes follow the kernels' comments; arrays are row-major.
 */

/** out (T, OC) = inp (T, C) · weight (C, OC) + bias (OC). */
export function refConv1d(
  inp: Float32Array,
  weight: Float32Array,
  bias: Float32Array,
  T: number,
  C: number,
  OC: number,
): Float32Array {
  const out = new Float32Array(T * OC);
  for (let t = 0; t < T; t++) {
    for (let o = 0; o < OC; o++) {
      let s = 0;
      for (let k = 0; k < C; k++) s += inp[t * C + k] * weight[k * OC + o];
      out[t * OC + o] = s + bias[o];
    }
  }
  return out;
}

/** out (T, V) = h (T, C) · wteᵀ, wte (V, C). */
export function refLogits(
  h: Float32Array,
  wte: Float32Array,
  T: number,
  C: number,
  V: number,
): Float32Array {
  const out = new Float32Array(T * V);
  for (let t = 0; t < T; t++) {
    for (let v = 0; v < V; v++) {
      let s = 0;
      for (let k = 0; k < C; k++) s += h[t * C + k] * wte[v * C + k];
      out[t * V + v] = s;
    }
  }
  return out;
}

/** Layer norm of each row of x (rows, C), epsilon 1e-5, biased variance. */
export function refLayerNorm(
  x: Float32Array,
  g: Float32Array,
  b: Float32Array,
  rows: number,
  C: number,
): Float32Array {
  const out = new Float32Array(rows * C);
  for (let r = 0; r < rows; r++) {
    let mean = 0;
    for (let k = 0; k < C; k++) mean += x[r * C + k];
    mean /= C;
    let v = 0;
    for (let k = 0; k < C; k++) v += (x[r * C + k] - mean) ** 2;
    v /= C;
    const rstd = 1 / Math.sqrt(v + 1e-5);
    for (let k = 0; k < C; k++) out[r * C + k] = (x[r * C + k] - mean) * rstd * g[k] + b[k];
  }
  return out;
}

/** GPT-2's tanh GELU, element-wise. */
export function refGelu(x: Float32Array): Float32Array {
  return x.map((v) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3))));
}

/** Softmax of each row of x (rows, cols), with the row maximum subtracted first. */
export function refSoftmax(x: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const row = x.subarray(r * cols, (r + 1) * cols);
    const m = Math.max(...row);
    let s = 0;
    for (const v of row) s += Math.exp(v - m);
    for (let j = 0; j < cols; j++) out[r * cols + j] = Math.exp(row[j] - m) / s;
  }
  return out;
}

/** out = a + b, element-wise. */
export function refAdd(a: Float32Array, b: Float32Array): Float32Array {
  return a.map((v, i) => v + b[i]);
}

/** out (B·T, C) = wte[tokens] + wpe[past + t]. */
export function refEmbed(
  tokens: ArrayLike<number>,
  wte: Float32Array,
  wpe: Float32Array,
  T: number,
  C: number,
  past: number,
): Float32Array {
  const out = new Float32Array(tokens.length * C);
  for (let r = 0; r < tokens.length; r++) {
    for (let k = 0; k < C; k++) {
      out[r * C + k] = wte[tokens[r] * C + k] + wpe[(past + r % T) * C + k];
    }
  }
  return out;
}

/**
 * The original `attention_mask(nd, ns)`: 1 where new position i (of nd) may attend to
 * key j (of ns), that is i >= j - ns + nd.
 */
export function attentionMask(nd: number, ns: number): Uint8Array {
  const m = new Uint8Array(nd * ns);
  for (let i = 0; i < nd; i++) {
    for (let j = 0; j < ns; j++) {
      m[i * ns + j] = i >= j - ns + nd ? 1 : 0;
    }
  }
  return m;
}

/**
 * Multi-head attention of B sequences' T new positions over `past` cached ones, exactly
 * as the original: keys and values are the cache followed by the new ones; w = q·kᵀ /
 * √d_head; masked weights become -1e10; softmax over all ns; out = w·v.
 * @param qkv   (B·T, 3C)
 * @param pastK (B, n_head, past, d_head), likewise pastV
 * @returns out (B·T, C) and the updated keys and values (B, n_head, past + T, d_head)
 */
export function refAttention(
  qkv: Float32Array,
  pastK: Float32Array,
  pastV: Float32Array,
  B: number,
  T: number,
  past: number,
  nHead: number,
  dHead: number,
): { out: Float32Array; k: Float32Array; v: Float32Array } {
  const C = nHead * dHead;
  const ns = past + T;
  const k = new Float32Array(B * nHead * ns * dHead);
  const v = new Float32Array(B * nHead * ns * dHead);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < nHead; h++) {
      const unit = (b * nHead + h) * ns * dHead;
      k.set(
        pastK.subarray((b * nHead + h) * past * dHead, (b * nHead + h + 1) * past * dHead),
        unit,
      );
      v.set(
        pastV.subarray((b * nHead + h) * past * dHead, (b * nHead + h + 1) * past * dHead),
        unit,
      );
      for (let t = 0; t < T; t++) {
        const row = (b * T + t) * 3 * C + h * dHead;
        for (let d = 0; d < dHead; d++) {
          k[unit + (past + t) * dHead + d] = qkv[row + C + d];
          v[unit + (past + t) * dHead + d] = qkv[row + 2 * C + d];
        }
      }
    }
  }
  const mask = attentionMask(T, ns);
  const out = new Float32Array(B * T * C);
  const w = new Float32Array(ns);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < nHead; h++) {
      const unit = (b * nHead + h) * ns * dHead;
      for (let t = 0; t < T; t++) {
        const q = (b * T + t) * 3 * C + h * dHead;
        for (let j = 0; j < ns; j++) {
          let s = 0;
          for (let d = 0; d < dHead; d++) s += qkv[q + d] * k[unit + j * dHead + d];
          s /= Math.sqrt(dHead);
          w[j] = mask[t * ns + j] ? s : -1e10;
        }
        const p = refSoftmax(w, 1, ns);
        for (let d = 0; d < dHead; d++) {
          let s = 0;
          for (let j = 0; j < ns; j++) s += p[j] * v[unit + j * dHead + d];
          out[(b * T + t) * C + h * dHead + d] = s;
        }
      }
    }
  }
  return { out, k, v };
}
