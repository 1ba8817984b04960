/**
 * A file on disk as an HTTP answer, as static servers send one: `HEAD`, a single
 * `Range: bytes=a-b` (206, or 416 past the end), `ETag` and `Last-Modified` so that a
 * client can tell versions apart, and the body streamed from the file.
 *
 * @module
 */

/**
 * Answers a `GET` or `HEAD` of the file at `path`, with `headers` added; `undefined` if
 * there is no such file.
 */
export async function fileResponse(
  request: Request,
  path: string,
  headers: Record<string, string> = {},
): Promise<Response | undefined> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory) {
      return undefined;
    }
    throw e;
  }
  let closed = false;
  const close = () => {
    if (!closed) file.close();
    closed = true;
  };
  try {
    const info = await file.stat();
    if (!info.isFile) {
      close();
      return undefined;
    }
    const size = info.size;
    const mtime = info.mtime?.getTime() ?? 0;
    const common: Record<string, string> = {
      ...headers,
      "accept-ranges": "bytes",
      etag: `"${size.toString(36)}-${mtime.toString(36)}"`,
      "last-modified": new Date(mtime).toUTCString(),
    };
    let start = 0;
    let end = size; // exclusive
    let status = 200;
    const range = request.headers.get("range");
    if (range !== null) {
      const m = /^bytes=(\d*)-(\d*)$/.exec(range.trim());
      if (m && (m[1] !== "" || m[2] !== "")) {
        if (m[1] === "") {
          start = Math.max(0, size - Number(m[2]));
        } else {
          start = Number(m[1]);
          if (m[2] !== "") end = Math.min(size, Number(m[2]) + 1);
        }
        if (start >= size || start >= end) {
          close();
          return new Response(null, {
            status: 416,
            headers: { ...common, "content-range": `bytes */${size}` },
          });
        }
        status = 206;
        common["content-range"] = `bytes ${start}-${end - 1}/${size}`;
      }
    }
    common["content-length"] = String(end - start);
    if (request.method === "HEAD") {
      close();
      return new Response(null, { status, headers: common });
    }
    await file.seek(start, Deno.SeekMode.Start);
    let left = end - start;
    const body = new ReadableStream<Uint8Array>({
      type: "bytes",
      async pull(controller) {
        const chunk = new Uint8Array(Math.min(left, 1 << 20));
        const n = chunk.length === 0 ? null : await file.read(chunk);
        if (n === null || n === 0) {
          close();
          controller.close();
          return;
        }
        left -= n;
        controller.enqueue(chunk.subarray(0, n));
        if (left === 0) {
          close();
          controller.close();
        }
      },
      cancel: close,
    });
    return new Response(body, { status, headers: common });
  } catch (e) {
    close();
    throw e;
  }
}
