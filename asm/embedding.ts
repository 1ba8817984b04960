// Token and position embeddings.

/**
 * out[r] = wte[tokens[r]] + wpe[positions[r]] for rows [r0, r1). Tokens and positions are
 * validated by the runtime.
 * @param out       (rows, C) f32
 * @param tokens    (rows) i32
 * @param positions (rows) i32
 * @param wte       (V, C) f32
 * @param wpe       (n_ctx, C) f32
 */
export function embed(
  out: usize,
  tokens: usize,
  positions: usize,
  wte: usize,
  wpe: usize,
  C: i32,
  r0: i32,
  r1: i32,
): void {
  const row = <usize>C << 2;
  for (let r = r0; r < r1; r++) {
    const tok = load<i32>(tokens + (<usize>r << 2));
    const w = wte + <usize>tok * row;
    const p = wpe + <usize>load<i32>(positions + (<usize>r << 2)) * row;
    const o = out + <usize>r * row;
    let k = 0;
    for (; k + 4 <= C; k += 4) {
      const b = <usize>k << 2;
      v128.store(o + b, f32x4.add(v128.load(w + b), v128.load(p + b)));
    }
    for (; k < C; k++) {
      const b = <usize>k << 2;
      store<f32>(o + b, load<f32>(w + b) + load<f32>(p + b));
    }
  }
}
