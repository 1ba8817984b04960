/**
 * Several async generators read as one, each value as soon as it is ready: the choices of
 * a streamed completion interleave in the order their tokens come.
 *
 * @module
 */

/**
 * Yields the values of all `sources` as they come. If one throws, the others are
 * returned (their `finally` blocks run) and the error propagates; returning early
 * returns them all.
 */
export async function* merge<T>(sources: AsyncGenerator<T>[]): AsyncGenerator<T> {
  const next = (i: number) => sources[i].next().then((result) => ({ i, result }));
  const pending = new Map(sources.map((_, i) => [i, next(i)]));
  try {
    while (pending.size > 0) {
      const { i, result } = await Promise.race(pending.values());
      if (result.done) {
        pending.delete(i);
        continue;
      }
      pending.set(i, next(i));
      yield result.value;
    }
  } finally {
    // A source with a `next()` in flight returns once that step ends; that step's own
    // outcome is no longer wanted.
    for (const p of pending.values()) p.catch(() => {});
    await Promise.allSettled([...pending.keys()].map((i) => sources[i].return(undefined)));
  }
}
