/** The server's shared request checks: same-origin browser requests and bounded bodies. */
import { describe, expect, test } from "bun:test";
import { Hono } from "hono";
import { boundedText, sameOrigin } from "./http.ts";

describe("sameOrigin", () => {
  const app = new Hono().get("/", (c) => c.json({ same: sameOrigin(c) }));
  const same = async (headers: Record<string, string>) => ((await (await app.fetch(new Request("http://hub/", { headers }))).json()) as { same: unknown }).same;

  test("no Origin (not a browser, or a plain navigation) is fine", async () => {
    expect(await same({ host: "hub:7070" })).toBe(true);
  });

  test("the page's own scheme, host and port are the same origin", async () => {
    expect(await same({ host: "hub:7070", origin: "http://hub:7070" })).toBe(true);
  });

  test("another host, another port, or an Origin that is no URL is another site", async () => {
    expect(await same({ host: "hub:7070", origin: "http://evil.example:7070" })).toBe(false);
    expect(await same({ host: "hub:7070", origin: "http://hub:7071" })).toBe(false);
    expect(await same({ host: "hub:7070", origin: "null" })).toBe(false);
  });
});

describe("boundedText", () => {
  const post = (body: string | null, headers: Record<string, string> = {}) => new Request("http://hub/", { method: "POST", body, headers });
  /** A body streamed in two chunks, with no declared length. */
  const streamed = (text: string) =>
    new Request("http://hub/", {
      method: "POST",
      body: new ReadableStream({ start(controller) {
        controller.enqueue(Buffer.from(text.slice(0, 2)));
        controller.enqueue(Buffer.from(text.slice(2)));
        controller.close();
      } }),
      duplex: "half",
    });

  test("a body up to the limit is read whole, declared or streamed", async () => {
    expect(await boundedText(post("12345"), 5)).toBe("12345");
    expect(await boundedText(post("12345", { "content-length": "5" }), 5)).toBe("12345");
    expect(await boundedText(streamed("12345"), 5)).toBe("12345");
  });

  test("a declared length over the limit is refused unread; a streamed body past it is cut off", async () => {
    expect(await boundedText(post("123456"), 5)).toBeUndefined();
    expect(await boundedText(post("1", { "content-length": "6" }), 5)).toBeUndefined();
    expect(await boundedText(streamed("123456"), 5)).toBeUndefined();
  });

  test("no body is empty text", async () => {
    expect(await boundedText(post(null), 5)).toBe("");
  });
});
