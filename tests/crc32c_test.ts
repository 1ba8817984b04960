import fc from "fast-check";
import { assertEquals, assertRejects } from "./asserts.ts";
import { crc32c, maskCrc32c, unmaskCrc32c } from "../runtime/io/crc32c.ts";
import { Crc32cThread } from "../runtime/io/crc32c_thread.ts";

/** Bit-at-a-time CRC-32C straight from the definition: the oracle for the table version. */
function crc32cBitwise(data: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of data) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
  }
  return ~c >>> 0;
}

Deno.test("crc32c() matches the published check values", () => {
  // The CRC catalogue's check value, and the iSCSI vectors of RFC 3720 section B.4.
  assertEquals(crc32c(new TextEncoder().encode("123456789")), 0xe3069283);
  assertEquals(crc32c(new Uint8Array(32)), 0x8a9136aa);
  assertEquals(crc32c(new Uint8Array(32).fill(0xff)), 0x62a8ab43);
  assertEquals(crc32c(Uint8Array.from({ length: 32 }, (_, i) => i)), 0x46dd794e);
  assertEquals(crc32c(Uint8Array.from({ length: 32 }, (_, i) => 31 - i)), 0x113fdb5c);
  assertEquals(crc32c(new Uint8Array(0)), 0);
});

Deno.test("crc32c() equals the bit-at-a-time definition for any bytes and any alignment", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), fc.nat(7), (bytes, skip) => {
      const view = bytes.subarray(Math.min(skip, bytes.length));
      assertEquals(crc32c(view), crc32cBitwise(view));
    }),
    { numRuns: 500 },
  );
});

Deno.test("crc32c() continued from the CRC of a prefix equals the CRC of the whole", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), fc.uint8Array({ maxLength: 200 }), (a, b) => {
      const whole = new Uint8Array(a.length + b.length);
      whole.set(a);
      whole.set(b, a.length);
      assertEquals(crc32c(b, crc32c(a)), crc32c(whole));
    }),
  );
});

Deno.test("crc32c() reads views on shared memory", () => {
  const memory = new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true });
  const view = new Uint8Array(memory.buffer, 5, 9);
  view.set(new TextEncoder().encode("123456789"));
  assertEquals(crc32c(view), 0xe3069283);
});

Deno.test("unmaskCrc32c() inverts maskCrc32c(), which rotates by 15 and adds 0xa282ead8", () => {
  // LevelDB's mask of 0 is the delta itself; of 1, 1 rotated right by 15 plus the delta.
  assertEquals(maskCrc32c(0), 0xa282ead8);
  assertEquals(maskCrc32c(1), (0x00020000 + 0xa282ead8) >>> 0);
  fc.assert(
    fc.property(fc.nat(0xffffffff), (crc) => {
      assertEquals(unmaskCrc32c(maskCrc32c(crc)), crc);
      assertEquals(maskCrc32c(unmaskCrc32c(crc)), crc);
    }),
  );
});

Deno.test("a Crc32cThread job equals crc32c() over shared memory in pieces, and over plain memory", async () => {
  using thread = new Crc32cThread();
  const shared = new Uint8Array(new SharedArrayBuffer(100_003));
  const plain = new Uint8Array(100_003);
  for (let i = 0; i < shared.length; i++) shared[i] = plain[i] = (i * 2654435761) >>> 24;
  const expected = crc32c(plain);
  for (const bytes of [shared, plain]) {
    // Two jobs interleaved: each keeps its own running CRC.
    const [whole, pieces] = [thread.job(bytes.buffer), thread.job(bytes.buffer)];
    whole.update(bytes);
    for (let at = 0; at < bytes.length; at += 7919) pieces.update(bytes.subarray(at, at + 7919));
    assertEquals(await Promise.all([whole.digest(), pieces.digest()]), [expected, expected]);
  }
});

Deno.test("disposing a Crc32cThread rejects a digest still awaited", async () => {
  const thread = new Crc32cThread();
  const job = thread.job(new SharedArrayBuffer(16));
  job.update(new Uint8Array(new SharedArrayBuffer(1 << 20)));
  const digest = job.digest();
  const later = thread.job(new SharedArrayBuffer(16));
  thread[Symbol.dispose]();
  await assertRejects(() => digest, Error, "closed");
  await assertRejects(() => later.digest(), Error, "closed");
});
