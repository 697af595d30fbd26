/**
 * The ssh agent protocol's framing (draft-miller-ssh-agent): every message is a 4-byte
 * big-endian length and that many bytes, and each request gets exactly one reply. A remote
 * build relays whole messages between a RUN on the worker and the submitter's agent, so both
 * ends cut the byte stream into messages here.
 */

/** OpenSSH's agent refuses messages over 256 KiB; so does the relay. */
export const MAX_AGENT_MESSAGE = 256 * 1024;

/** SSH_AGENT_FAILURE: what a relay answers when the agent cannot be reached. */
export const AGENT_FAILURE = Buffer.from([0, 0, 0, 1, 5]);

export class AgentFrameError extends Error {}

/** Collects bytes and hands out whole messages (length prefix included), in order. */
export class FrameReader {
  private buffer = Buffer.alloc(0);

  /** The whole messages the bytes so far complete; throws on a message over the limit. */
  push(bytes: Uint8Array): Buffer[] {
    this.buffer = this.buffer.length ? Buffer.concat([this.buffer, bytes]) : Buffer.from(bytes);
    const frames: Buffer[] = [];
    while (this.buffer.length >= 4) {
      const length = this.buffer.readUInt32BE(0);
      if (length > MAX_AGENT_MESSAGE) throw new AgentFrameError(`an ssh agent message of ${length} bytes (over ${MAX_AGENT_MESSAGE})`);
      if (this.buffer.length < 4 + length) break;
      frames.push(Buffer.from(this.buffer.subarray(0, 4 + length)));
      this.buffer = this.buffer.subarray(4 + length);
    }
    return frames;
  }
}

/** Whether `bytes` is exactly one whole message. */
export function isOneFrame(bytes: Buffer): boolean {
  return bytes.length >= 4 && bytes.readUInt32BE(0) === bytes.length - 4 && bytes.length - 4 <= MAX_AGENT_MESSAGE;
}
