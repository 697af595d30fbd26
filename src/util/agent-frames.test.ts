import { describe, expect, test } from "bun:test";
import { FrameReader, isOneFrame, MAX_AGENT_MESSAGE } from "./agent-frames.ts";

const frame = (body: number[]) => Buffer.from([0, 0, 0, body.length, ...body]);

describe("ssh agent message framing", () => {
  test("messages cut anywhere in the stream come out whole and in order", () => {
    const stream = Buffer.concat([frame([11]), frame([12, 1, 2]), frame([])]);
    const reader = new FrameReader();
    const out = [...reader.push(stream.subarray(0, 3)), ...reader.push(stream.subarray(3, 7)), ...reader.push(stream.subarray(7))];
    expect(out).toEqual([frame([11]), frame([12, 1, 2]), frame([])]);
  });

  test("a message over the agent's limit is refused before its bytes arrive", () => {
    const header = Buffer.alloc(4);
    header.writeUInt32BE(MAX_AGENT_MESSAGE + 1);
    expect(() => new FrameReader().push(header)).toThrow("over");
  });

  test("isOneFrame: exactly one whole message", () => {
    expect(isOneFrame(frame([5]))).toBe(true);
    expect(isOneFrame(Buffer.concat([frame([5]), frame([6])]))).toBe(false);
    expect(isOneFrame(Buffer.from([0, 0]))).toBe(false);
  });
});
