/**
 * Positioned reads of one file, several at a time. Deno's files have no `pread`, so each
 * read in flight borrows a handle of its own (opening one, up to a limit), seeks it and
 * gives it back. Reads of different tensors then proceed side by side in Deno's I/O
 * threads, whatever the calling thread is busy with meanwhile. (One tensor is read front
 * to back on one handle: splitting it across handles measured slower from a cold cache.)
 *
 * @module
 */

/** Open handles on one file, lent to one read at a time. Dispose it to close them. */
export class FilePool implements Disposable {
  readonly #all: Deno.FsFile[] = [];
  readonly #idle: Deno.FsFile[] = [];
  readonly #waiting: PromiseWithResolvers<Deno.FsFile>[] = [];
  #opening = 0;
  #closed = false;
  /** The most handles open at once. */
  readonly limit: number;

  /**
   * @param path the file, for messages
   * @param open opens one more handle on the file
   * @param options.limit the most handles open at once (default 4); options.first a handle
   *   opened already, lent first
   */
  constructor(
    readonly path: string,
    readonly open: () => Promise<Deno.FsFile>,
    options: { limit?: number; first?: Deno.FsFile } = {},
  ) {
    this.limit = options.limit ?? 4;
    if (options.first) {
      this.#all.push(options.first);
      this.#idle.push(options.first);
    }
  }

  /** Runs `use` with a handle of its own, positioned at byte `offset` of the file. */
  async at<T>(offset: number, use: (file: Deno.FsFile) => Promise<T>): Promise<T> {
    const file = await this.#take();
    try {
      await file.seek(offset, Deno.SeekMode.Start);
      return await use(file);
    } finally {
      this.#give(file);
    }
  }

  /**
   * Reads `dest.byteLength` bytes from byte `offset` on one handle, in chunks of `chunk`
   * bytes; `each` is given every chunk as soon as it is in, while the next is read.
   * Returns the bytes read: fewer if the file ends first.
   */
  read(
    offset: number,
    dest: Uint8Array,
    chunk = Math.max(dest.byteLength, 1),
    each?: (part: Uint8Array) => void,
  ): Promise<number> {
    return this.at(offset, async (file) => {
      let done = 0;
      let last = dest.subarray(0, 0); // read, not yet given to `each`
      while (done < dest.byteLength) {
        const part = dest.subarray(done, done + chunk);
        const reading = readFully(file, part);
        if (each && last.length > 0) each(last);
        const n = await reading;
        last = part.subarray(0, n);
        done += n;
        if (n < part.length) break; // the file ended
      }
      if (each && last.length > 0) each(last);
      return done;
    });
  }

  async #take(): Promise<Deno.FsFile> {
    if (this.#closed) throw new TypeError(`Cannot read "${this.path}": it has been closed`);
    const idle = this.#idle.pop();
    if (idle) return idle;
    if (this.#all.length + this.#opening >= this.limit) {
      const turn = Promise.withResolvers<Deno.FsFile>();
      this.#waiting.push(turn);
      return turn.promise;
    }
    this.#opening++;
    try {
      const file = await this.open();
      if (this.#closed) {
        file.close();
        throw new TypeError(`Cannot read "${this.path}": it has been closed`);
      }
      this.#all.push(file);
      return file;
    } finally {
      this.#opening--;
    }
  }

  #give(file: Deno.FsFile): void {
    if (this.#closed) return;
    const next = this.#waiting.shift();
    if (next) next.resolve(file);
    else this.#idle.push(file);
  }

  /** Closes every handle; reads waiting for one reject, reads under way fail. */
  [Symbol.dispose](): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const file of this.#all) file.close();
    const error = new TypeError(`Cannot read "${this.path}": it has been closed`);
    for (const turn of this.#waiting.splice(0)) turn.reject(error);
  }
}

/** Reads from `file`'s position until `dest` is full or the file ends; returns the bytes read. */
export async function readFully(file: Deno.FsFile, dest: Uint8Array): Promise<number> {
  let done = 0;
  while (done < dest.byteLength) {
    const n = await file.read(dest.subarray(done));
    if (n === null) break;
    done += n;
  }
  return done;
}
