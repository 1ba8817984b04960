/**
 * GPT-2's byte-level BPE tokenizer, behaving exactly as OpenAI's `encoder.py`: text is split
 * into pieces by a regular expression, each piece is turned into UTF-8 bytes, each byte into
 * one printable character, and the characters are merged pair by pair in the order that
 * `vocab.bpe` ranks them.
 *
 * @module
 */
import { ModelFileError } from "../errors.ts";
import type { FileSource } from "../io/file_source.ts";
import { localFiles } from "../io/local_files.ts";

/**
 * The table `encoder.py` calls `bytes_to_unicode`: for each byte value, the character that
 * stands for it in `encoder.json` and `vocab.bpe`. Printable Latin-1 bytes stand for
 * themselves; the other 68 bytes (controls, space, U+00A0, U+00AD and so on) take the code
 * points from U+0100 on, in byte order, so that no token string holds whitespace or a control.
 *
 * @returns 256 one-character strings, indexed by byte value
 *
 * @example
 * ```ts
 * import { bytesToUnicode } from "./tokenizer.ts";
 * const table = bytesToUnicode();
 * if (table[0x41] !== "A" || table[0x20] !== "Ġ" || table[0x0a] !== "Ċ") throw new Error();
 * ```
 */
export function bytesToUnicode(): string[] {
  const table = new Array<string>(256);
  let next = 256;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) ||
      (b >= 0xae && b <= 0xff);
    table[b] = String.fromCharCode(printable ? b : next++);
  }
  return table;
}

/**
 * The pattern `encoder.py` splits text with. The original is compiled by Python's `regex`
 * module, whose `\s` is Unicode's White_Space property; JavaScript's `\s` differs from it in
 * two code points (it lacks U+0085 NEXT LINE and adds U+FEFF, the byte order mark), so the
 * property is spelled out here. Letters and numbers follow the JavaScript engine's Unicode
 * version, which may know characters that the original's did not.
 */
const PIECE_PATTERN =
  /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\p{White_Space}\p{L}\p{N}]+|\p{White_Space}+(?!\P{White_Space})|\p{White_Space}+/gu;

/**
 * Splits text into the pieces that `encoder.py` runs BPE on, one at a time: contractions,
 * runs of letters, of digits or of other symbols (each with at most one leading space), and
 * runs of whitespace. Joining the pieces gives back the text.
 *
 * @param text any string
 * @returns the pieces, in order
 *
 * @example
 * ```ts
 * import { pretokenize } from "./tokenizer.ts";
 * const pieces = pretokenize("Hello world's  end!!");
 * if (pieces.join("|") !== "Hello| world|'s| | end|!!") throw new Error(pieces.join("|"));
 * ```
 */
export function pretokenize(text: string): string[] {
  return text.match(PIECE_PATTERN) ?? [];
}

/**
 * Turns token ids into text one token at a time, for printing while generating. A character
 * whose UTF-8 bytes span several tokens (most emoji and many CJK characters do) is held back
 * until its last byte arrives, so no piece ever shows half a character.
 */
export interface StreamDecoder {
  /**
   * Adds one token and returns the text completed by it, possibly `""`.
   * @throws {RangeError} if `id` is not in the vocabulary
   */
  push(id: number): string;
  /**
   * Returns whatever is still held back, with U+FFFD for an incomplete character, and starts
   * over. The pushes and the flush, concatenated, equal `decode()` of all the ids.
   */
  flush(): string;
}

/** A line of whitespace only, or none. */
const BLANK = /^\s*$/;
/** A merge line of two tokens and one space, nothing else. */
const SIMPLE_MERGE = /^\S+ \S+$/;

/** How the constructor's errors begin; `load()` swaps it for the file names. */
const INVALID = "Invalid tokenizer data: ";
/** Word-cache entries beyond this many clear the cache, so memory stays bounded. */
const CACHE_LIMIT = 100_000;
/** Pieces longer than this (in UTF-16 units) are not cached. */
const CACHE_MAX_PIECE = 256;
/** Pieces of more bytes than this are merged with a heap, in O(n log n) instead of O(n²). */
const HEAP_MIN_BYTES = 48;
/** Multiplier that packs (rank, position) into one heap key; positions stay below it. */
const POSITION_SCALE = 2 ** 32;

/**
 * GPT-2's tokenizer: `encode()` gives the same ids as OpenAI's `encoder.py`, `decode()` the
 * same text (invalid UTF-8 becomes U+FFFD, as with Python's `errors="replace"`).
 *
 * `<|endoftext|>` written in the input is encoded as ordinary text, as the original does;
 * {@linkcode Tokenizer.endOfText} is the id to use for the real end-of-text token. A lone
 * surrogate in the input is encoded as U+FFFD (as `TextEncoder` does; Python would refuse it).
 *
 * @example
 * ```ts
 * import { bytesToUnicode, Tokenizer } from "./tokenizer.ts";
 *
 * // A toy vocabulary: the 256 byte tokens (id = byte value), two merges, end of text.
 * const encoder = new Map(bytesToUnicode().map((char, byte) => [char, byte]));
 * encoder.set("he", 256);
 * encoder.set("Ġhe", 257);
 * encoder.set("<|endoftext|>", 258);
 * const tokenizer = new Tokenizer(encoder, ["h e", "Ġ he"]);
 *
 * const ids = tokenizer.encode("he he!");
 * if (ids.join() !== "256,257,33") throw new Error(ids.join());
 * if (tokenizer.decode(ids) !== "he he!") throw new Error();
 * if (tokenizer.endOfText !== 258 || tokenizer.vocabSize !== 259) throw new Error();
 *
 * // With the real files: const gpt2 = await Tokenizer.load("models/124M");
 * ```
 */
export class Tokenizer {
  /** Number of token ids; every id is an integer in `[0, vocabSize)`. 50257 for GPT-2. */
  readonly vocabSize: number;
  /** The id of `<|endoftext|>`, 50256 for GPT-2. */
  readonly endOfText: number;

  /** Id of the single-byte token for each byte value. */
  readonly #byteIds = new Int32Array(256);
  /** Open-addressing table from a pair of ids to its merge rank: keys (left, right), -1 empty. */
  readonly #pairKeys: Int32Array;
  readonly #pairRanks: Int32Array;
  readonly #pairMask: number;
  /** For each merge rank: the ids it joins and the id it makes. */
  readonly #rankLeft: Int32Array;
  readonly #rankRight: Int32Array;
  readonly #rankMerged: Int32Array;
  /** All tokens' bytes back to back: token `id` spans `[#tokenStart[id], #tokenStart[id + 1])`. */
  readonly #tokenBytes: Uint8Array;
  readonly #tokenStart: Int32Array;
  /** `encoder.py`'s cache, as a Map so that pieces such as "constructor" are plain keys. */
  readonly #cache = new Map<string, number[]>();
  /** Scratch space for the symbols of the piece being merged. */
  #symbols = new Int32Array(64);
  readonly #textDecoder = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });

  /**
   * Builds a tokenizer from the contents of GPT-2's two tokenizer files.
   *
   * @param encoder token string to id, as in `encoder.json` (or Hugging Face's `vocab.json`);
   *   the ids must be exactly 0 to size - 1, and the 256 byte tokens and `<|endoftext|>` present
   * @param merges the merge lines, "left right", best first, as in `vocab.bpe` after its
   *   `#version` line; blank lines are skipped
   * @throws {ModelFileError} if the encoder or the merges are malformed or disagree
   */
  constructor(
    encoder: ReadonlyMap<string, number> | Readonly<Record<string, number>>,
    merges: readonly string[],
  ) {
    // A Map (or any ReadonlyMap) is used as it is; a plain object's own keys become a Map.
    const ids: ReadonlyMap<string, number> = Symbol.iterator in encoder
      ? encoder as ReadonlyMap<string, number>
      : new Map(Object.entries(encoder));
    const tokens = new Array<string>(ids.size);
    for (const [token, id] of ids) {
      if (typeof id !== "number" || !Number.isInteger(id) || id < 0 || id >= ids.size) {
        throw new ModelFileError(
          `${INVALID}token ${JSON.stringify(token)} has id ${
            JSON.stringify(id)
          }, expected an integer in [0, ${ids.size})`,
        );
      }
      if (tokens[id] !== undefined) {
        throw new ModelFileError(
          `${INVALID}id ${id} is given to both ${JSON.stringify(tokens[id])} and ${
            JSON.stringify(token)
          }`,
        );
      }
      tokens[id] = token;
    }
    // N distinct ids in [0, N): every id from 0 to N - 1 has its token.
    this.vocabSize = tokens.length;

    const endOfText = ids.get("<|endoftext|>");
    if (endOfText === undefined) {
      throw new ModelFileError(`${INVALID}the encoder has no <|endoftext|> token`);
    }
    this.endOfText = endOfText;

    // Byte tokens, and each token's bytes for decoding. Every byte character is one UTF-16
    // unit below U+0144, so a token of k units is k bytes.
    const table = bytesToUnicode();
    const byteOfUnit = new Int16Array(0x144).fill(-1);
    for (let b = 0; b < 256; b++) {
      const id = ids.get(table[b]);
      if (id === undefined) {
        throw new ModelFileError(
          `${INVALID}the encoder lacks the token ${JSON.stringify(table[b])} for byte ${b}`,
        );
      }
      this.#byteIds[b] = id;
      byteOfUnit[table[b].charCodeAt(0)] = b;
    }
    this.#tokenStart = new Int32Array(this.vocabSize + 1);
    for (let id = 0; id < this.vocabSize; id++) {
      this.#tokenStart[id + 1] = this.#tokenStart[id] + tokens[id].length;
    }
    this.#tokenBytes = new Uint8Array(this.#tokenStart[this.vocabSize]);
    for (let id = 0; id < this.vocabSize; id++) {
      const token = tokens[id];
      const start = this.#tokenStart[id];
      for (let i = 0; i < token.length; i++) {
        const unit = token.charCodeAt(i);
        const b = unit < byteOfUnit.length ? byteOfUnit[unit] : -1;
        if (b < 0) {
          throw new ModelFileError(
            `${INVALID}token ${JSON.stringify(token)} (id ${id}) has ${
              JSON.stringify(token[i])
            }, which stands for no byte`,
          );
        }
        this.#tokenBytes[start + i] = b;
      }
    }

    // Merge ranks. A repeated pair keeps its last rank, as encoder.py's dict does.
    const lines = merges.filter((line) => !BLANK.test(line));
    this.#rankLeft = new Int32Array(lines.length);
    this.#rankRight = new Int32Array(lines.length);
    this.#rankMerged = new Int32Array(lines.length);
    let capacity = 1024;
    while (capacity < lines.length * 2) capacity *= 2;
    this.#pairKeys = new Int32Array(capacity * 2).fill(-1);
    this.#pairRanks = new Int32Array(capacity);
    this.#pairMask = capacity - 1;
    for (let rank = 0; rank < lines.length; rank++) {
      const line = lines[rank];
      // Nearly every line is "left right"; others (tabs, runs of spaces) take the slow way.
      const space = line.indexOf(" ");
      const parts = space > 0 && SIMPLE_MERGE.test(line)
        ? [line.slice(0, space), line.slice(space + 1)]
        : line.trim().split(/\s+/);
      const [left, right] = parts;
      const leftId = ids.get(left);
      const rightId = ids.get(right);
      if (parts.length !== 2 || leftId === undefined || rightId === undefined) {
        throw new ModelFileError(
          `${INVALID}merge ${rank + 1} is ${
            JSON.stringify(lines[rank])
          }, expected two tokens of the encoder separated by a space`,
        );
      }
      const mergedId = ids.get(left + right);
      if (mergedId === undefined) {
        throw new ModelFileError(
          `${INVALID}merge ${rank + 1} (${JSON.stringify(lines[rank])}) makes ${
            JSON.stringify(left + right)
          }, which the encoder lacks`,
        );
      }
      this.#rankLeft[rank] = leftId;
      this.#rankRight[rank] = rightId;
      this.#rankMerged[rank] = mergedId;
      this.#setRank(leftId, rightId, rank);
    }
  }

  /**
   * Builds a tokenizer from the text of the two files.
   *
   * @param encoderJson the text of `encoder.json` (or `vocab.json`)
   * @param merges the text of `vocab.bpe` (or `merges.txt`), `#version` line included or not
   * @throws {ModelFileError} if the JSON does not parse or the data is malformed
   */
  static fromText(encoderJson: string, merges: string): Tokenizer {
    const encoder = parseEncoder(encoderJson);
    if (typeof encoder === "string") {
      throw new ModelFileError(`${INVALID}the encoder is ${encoder}`);
    }
    return new Tokenizer(encoder, mergeLines(merges));
  }

  /**
   * Reads the tokenizer of a model folder: `encoder.json` and `vocab.bpe` as OpenAI ships
   * them, or, when `encoder.json` is absent, Hugging Face's `vocab.json` and `merges.txt`.
   *
   * @param dir the model folder, e.g. `"models/124M"`, or where its files come from
   * @throws {ModelFileError} naming the file, if one is missing, unreadable or malformed
   */
  static async load(dir: string | FileSource): Promise<Tokenizer> {
    const files = typeof dir === "string" ? localFiles(dir) : dir;
    const fix = fixHint(files.path);
    let pair = { encoder: "encoder.json", merges: "vocab.bpe" };
    let encoderText = await files.readText(pair.encoder);
    if (encoderText === undefined) {
      const hf = { encoder: "vocab.json", merges: "merges.txt" };
      encoderText = await files.readText(hf.encoder);
      if (encoderText === undefined) {
        throw new ModelFileError(
          `Cannot read tokenizer file "${files.pathOf(pair.encoder)}": not found (${fix})`,
        );
      }
      pair = hf;
    }
    const names = { encoder: files.pathOf(pair.encoder), merges: files.pathOf(pair.merges) };
    const mergesText = await files.readText(pair.merges);
    if (mergesText === undefined) {
      throw new ModelFileError(`Cannot read tokenizer file "${names.merges}": not found (${fix})`);
    }
    const encoder = parseEncoder(encoderText);
    if (typeof encoder === "string") {
      throw new ModelFileError(
        `Cannot read tokenizer file "${names.encoder}": ${encoder} (${fix})`,
      );
    }
    try {
      return new Tokenizer(encoder, mergeLines(mergesText));
    } catch (e) {
      if (!(e instanceof ModelFileError)) throw e;
      const problem = e.message.slice(INVALID.length);
      throw new ModelFileError(
        `Cannot use tokenizer files "${names.encoder}" and "${names.merges}": ${problem} (${fix})`,
      );
    }
  }

  /**
   * Turns text into token ids, exactly as `encoder.py`'s `encode`.
   *
   * @param text any string; `<|endoftext|>` in it is ordinary text
   * @returns the token ids, each in `[0, vocabSize)`
   */
  encode(text: string): number[] {
    const out: number[] = [];
    const pieces = text.match(PIECE_PATTERN);
    if (pieces === null) return out;
    const cache = this.#cache;
    for (let p = 0; p < pieces.length; p++) {
      const piece = pieces[p];
      let ids = cache.get(piece);
      if (ids === undefined) {
        ids = this.#encodePiece(piece);
        if (piece.length <= CACHE_MAX_PIECE) {
          if (cache.size >= CACHE_LIMIT) cache.clear();
          cache.set(piece, ids);
        }
      }
      for (let i = 0; i < ids.length; i++) out.push(ids[i]);
    }
    return out;
  }

  /**
   * Turns token ids into text, exactly as `encoder.py`'s `decode` with `errors="replace"`:
   * bytes that are not valid UTF-8 become U+FFFD.
   *
   * @param ids token ids
   * @throws {RangeError} if an id is not an integer in `[0, vocabSize)`
   */
  decode(ids: ArrayLike<number>): string {
    const start = this.#tokenStart;
    let length = 0;
    for (let i = 0; i < ids.length; i++) {
      const id = this.#checkId(ids[i]);
      length += start[id + 1] - start[id];
    }
    const bytes = new Uint8Array(length);
    let offset = 0;
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      bytes.set(this.#tokenBytes.subarray(start[id], start[id + 1]), offset);
      offset += start[id + 1] - start[id];
    }
    return this.#textDecoder.decode(bytes);
  }

  /**
   * The UTF-8 bytes token `id` stands for (a view: do not modify it). A token may hold
   * part of a character, so its bytes need not be valid UTF-8 on their own.
   *
   * @throws {RangeError} if `id` is not an integer in `[0, vocabSize)`
   */
  tokenBytes(id: number): Uint8Array {
    const start = this.#tokenStart;
    this.#checkId(id);
    return this.#tokenBytes.subarray(start[id], start[id + 1]);
  }

  /**
   * Starts a decoder that takes one token at a time and never splits a character.
   *
   * @example
   * ```ts ignore
   * const stream = tokenizer.decoder();
   * for (const id of ids) await Deno.stdout.write(new TextEncoder().encode(stream.push(id)));
   * await Deno.stdout.write(new TextEncoder().encode(stream.flush()));
   * ```
   */
  decoder(): StreamDecoder {
    const utf8 = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });
    return {
      push: (id: number): string => {
        this.#checkId(id);
        const start = this.#tokenStart;
        return utf8.decode(this.#tokenBytes.subarray(start[id], start[id + 1]), { stream: true });
      },
      flush: (): string => utf8.decode(),
    };
  }

  /**
   * What builds this tokenizer again: the token strings by id, as `encoder.json` spells
   * them, and the merges by rank, as `vocab.bpe` lines. A page gets its engine worker's
   * tokenizer this way, whichever files it was read from.
   *
   * @example
   * ```ts ignore
   * const { tokens, merges } = tokenizer.vocabulary();
   * const again = new Tokenizer(new Map(tokens.map((t, id) => [t, id])), merges);
   * ```
   */
  vocabulary(): { tokens: string[]; merges: string[] } {
    const table = bytesToUnicode();
    const tokens = new Array<string>(this.vocabSize);
    for (let id = 0; id < this.vocabSize; id++) {
      let token = "";
      for (const b of this.tokenBytes(id)) token += table[b];
      tokens[id] = token;
    }
    const merges = Array.from(
      this.#rankLeft,
      (left, rank) => `${tokens[left]} ${tokens[this.#rankRight[rank]]}`,
    );
    return { tokens, merges };
  }

  #checkId(id: number): number {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
      throw new RangeError(
        `Cannot decode token id ${id}: ids are integers in [0, ${this.vocabSize})`,
      );
    }
    return id;
  }

  /** Stores the rank of the pair (left, right), replacing an earlier one. */
  #setRank(left: number, right: number, rank: number): void {
    const keys = this.#pairKeys;
    for (let slot = pairHash(left, right) & this.#pairMask;; slot = (slot + 1) & this.#pairMask) {
      const empty = keys[2 * slot] === -1;
      if (empty || (keys[2 * slot] === left && keys[2 * slot + 1] === right)) {
        keys[2 * slot] = left;
        keys[2 * slot + 1] = right;
        this.#pairRanks[slot] = rank;
        return;
      }
    }
  }

  /** The merge rank of the pair (left, right), or -1 if no merge joins them. */
  #rank(left: number, right: number): number {
    const keys = this.#pairKeys;
    for (let slot = pairHash(left, right) & this.#pairMask;; slot = (slot + 1) & this.#pairMask) {
      const k = keys[2 * slot];
      if (k === left && keys[2 * slot + 1] === right) return this.#pairRanks[slot];
      if (k === -1) return -1;
    }
  }

  /** BPE of one piece: its UTF-8 bytes as byte tokens, then merged as `encoder.py`'s `bpe`. */
  #encodePiece(piece: string): number[] {
    if (this.#symbols.length < piece.length * 3) {
      this.#symbols = new Int32Array(piece.length * 3);
    }
    const symbols = this.#symbols;
    const byteIds = this.#byteIds;
    let n = 0;
    for (let i = 0; i < piece.length; i++) {
      let c = piece.charCodeAt(i);
      if (c < 0x80) {
        symbols[n++] = byteIds[c];
        continue;
      }
      if (c < 0x800) {
        symbols[n++] = byteIds[0xc0 | (c >> 6)];
        symbols[n++] = byteIds[0x80 | (c & 0x3f)];
        continue;
      }
      if (c >= 0xd800 && c <= 0xdfff) {
        const low = i + 1 < piece.length ? piece.charCodeAt(i + 1) : 0;
        if (c <= 0xdbff && low >= 0xdc00 && low <= 0xdfff) {
          c = 0x10000 + ((c - 0xd800) << 10) + (low - 0xdc00);
          i++;
          symbols[n++] = byteIds[0xf0 | (c >> 18)];
          symbols[n++] = byteIds[0x80 | ((c >> 12) & 0x3f)];
          symbols[n++] = byteIds[0x80 | ((c >> 6) & 0x3f)];
          symbols[n++] = byteIds[0x80 | (c & 0x3f)];
          continue;
        }
        c = 0xfffd; // a lone surrogate, as TextEncoder writes it
      }
      symbols[n++] = byteIds[0xe0 | (c >> 12)];
      symbols[n++] = byteIds[0x80 | ((c >> 6) & 0x3f)];
      symbols[n++] = byteIds[0x80 | (c & 0x3f)];
    }
    n = n > HEAP_MIN_BYTES ? this.#mergeWithHeap(symbols, n) : this.#mergeByScan(symbols, n);
    return Array.from(symbols.subarray(0, n));
  }

  /**
   * `encoder.py`'s loop, on ids: find the best-ranked adjacent pair, join every occurrence of
   * it from left to right (an occurrence overlapping a joined one is skipped), repeat until no
   * pair has a rank. Returns the new number of symbols.
   */
  #mergeByScan(symbols: Int32Array, n: number): number {
    while (n > 1) {
      let best = -1;
      for (let i = 0; i < n - 1; i++) {
        const rank = this.#rank(symbols[i], symbols[i + 1]);
        if (rank >= 0 && (best < 0 || rank < best)) best = rank;
      }
      if (best < 0) break;
      const left = this.#rankLeft[best];
      const right = this.#rankRight[best];
      const merged = this.#rankMerged[best];
      let w = 0;
      for (let r = 0; r < n;) {
        if (r + 1 < n && symbols[r] === left && symbols[r + 1] === right) {
          symbols[w++] = merged;
          r += 2;
        } else {
          symbols[w++] = symbols[r++];
        }
      }
      n = w;
    }
    return n;
  }

  /**
   * The same rounds as {@linkcode Tokenizer.#mergeByScan}, for long pieces: the symbols form a
   * linked list and the pairs sit in a min-heap keyed by (rank, position). A round takes every
   * entry of the best rank, joins those still valid from left to right, and only then adds the
   * pairs the joins made, so a round sees the same pairs as a round of `encoder.py`.
   */
  #mergeWithHeap(symbols: Int32Array, n: number): number {
    const next = new Int32Array(n);
    const prev = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      next[i] = i + 1 < n ? i + 1 : -1;
      prev[i] = i - 1;
    }
    const heap = new MinHeap();
    for (let i = 0; i + 1 < n; i++) {
      const rank = this.#rank(symbols[i], symbols[i + 1]);
      if (rank >= 0) heap.push(rank * POSITION_SCALE + i);
    }
    const positions: number[] = [];
    const joinedAt: number[] = [];
    while (heap.size > 0) {
      const rank = Math.floor(heap.peek() / POSITION_SCALE);
      positions.length = 0;
      while (heap.size > 0 && Math.floor(heap.peek() / POSITION_SCALE) === rank) {
        positions.push(heap.pop() % POSITION_SCALE); // popped in increasing position
      }
      const left = this.#rankLeft[rank];
      const right = this.#rankRight[rank];
      const merged = this.#rankMerged[rank];
      joinedAt.length = 0;
      for (const i of positions) {
        const j = next[i];
        // Dead or changed entries fail here: a removed symbol has prev = -2.
        if (prev[i] === -2 || j < 0 || symbols[i] !== left || symbols[j] !== right) continue;
        symbols[i] = merged;
        next[i] = next[j];
        if (next[j] >= 0) prev[next[j]] = i;
        prev[j] = -2;
        joinedAt.push(i);
      }
      for (const i of joinedAt) {
        if (prev[i] === -2) continue;
        const before = prev[i];
        if (before >= 0) {
          const r = this.#rank(symbols[before], symbols[i]);
          if (r >= 0) heap.push(r * POSITION_SCALE + before);
        }
        const after = next[i];
        if (after >= 0) {
          const r = this.#rank(symbols[i], symbols[after]);
          if (r >= 0) heap.push(r * POSITION_SCALE + i);
        }
      }
    }
    let w = 0;
    for (let i = 0; i >= 0; i = next[i]) symbols[w++] = symbols[i];
    return w;
  }
}

/** A binary min-heap of non-negative numbers. */
class MinHeap {
  #items: number[] = [];

  get size(): number {
    return this.#items.length;
  }

  peek(): number {
    return this.#items[0];
  }

  push(value: number): void {
    const items = this.#items;
    let i = items.length;
    items.push(value);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (items[parent] <= value) break;
      items[i] = items[parent];
      i = parent;
    }
    items[i] = value;
  }

  pop(): number {
    const items = this.#items;
    const top = items[0];
    const last = items.pop()!;
    if (items.length > 0) {
      let i = 0;
      for (;;) {
        let child = 2 * i + 1;
        if (child >= items.length) break;
        if (child + 1 < items.length && items[child + 1] < items[child]) child++;
        if (items[child] >= last) break;
        items[i] = items[child];
        i = child;
      }
      items[i] = last;
    }
    return top;
  }
}

function pairHash(left: number, right: number): number {
  return (Math.imul(left, 0x9e3779b1) ^ Math.imul(right + 0x7f4a7c15, 0x85ebca6b)) >>> 7;
}

/** Parses `encoder.json` into a Map, or returns what is wrong with it. */
function parseEncoder(text: string): Map<string, number> | string {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    return `not valid JSON (${(e as Error).message})`;
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return "not a JSON object from token strings to ids";
  }
  // JSON.parse makes "__proto__" an own key; for-in lists it, and Object.prototype has no
  // enumerable keys to add.
  const encoder = new Map<string, number>();
  const object = value as Record<string, number>;
  for (const token in object) encoder.set(token, object[token]);
  return encoder;
}

/** The merge lines of `vocab.bpe` or `merges.txt`: without the `#version` line and blanks. */
function mergeLines(text: string): string[] {
  const lines = text.split("\n");
  if (lines.length > 0 && lines[0].startsWith("#version")) lines.shift();
  return lines.filter((line) => !BLANK.test(line));
}

/** What to run to get the files: the folder's own model size when its name is one. */
function fixHint(dir: string): string {
  const name = dir.replace(/[\\/]+$/, "").split(/[\\/]/).pop() ?? "";
  const size = /^(124M|355M|774M|1558M)$/.test(name) ? name : "124M";
  return `download the model with: deno task download ${size}`;
}
