/**
 * Seeded, reproducible input mutation for the fuzz harness: the same (seed, target, index)
 * always gives the same input, so a failure found once is found again with its numbers.
 */

/** xorshift128+ on 32-bit halves: fast, seedable, good enough for choosing mutations. */
export class Random {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  constructor(seed: number) {
    // splitmix32 spreads a small seed over the whole state.
    let x = seed >>> 0;
    const next = () => {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.s0 = next() | 1;
    this.s1 = next();
    this.s2 = next();
    this.s3 = next();
  }

  /** An unsigned 32-bit integer (xoshiro128**). */
  u32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5) >>> 0, 7), 9) >>> 0;
    const t = (this.s1 << 9) >>> 0;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** 0 ≤ n < below. */
  below(below: number): number {
    return below <= 1 ? 0 : this.u32() % below;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.below(items.length)];
  }
}

const rotl = (x: number, k: number) => ((x << k) | (x >>> (32 - k))) >>> 0;

/** Bytes that reach parser edge cases: NUL, 0xff, sign bits, digits, separators, quoting. */
const INTERESTING_BYTES = [0, 0xff, 0x7f, 0x80, 0x20, 0x0a, 0x0d, 0x09, 0x22, 0x27, 0x5c, 0x24, 0x7b, 0x7d, 0x2f, 0x2e, 0x2d, 0x30, 0x37, 0x39, 0x3d, 0x2a, 0x21, 0x5b];
/** Text that reaches number and structure edge cases when spliced in. */
const INTERESTING_TEXT = ["-1", "0", "18446744073709551616", "99999999999999999999", "1e309", "NaN", "-0", "0x10", "  ", "\n", "\\\n", "${", "$", "\"", "'", "[", "]", "{", "}", "null", "[]", "{}", "true", "..", "../", "/", "**", "!", "\u0000", "\u00ff", "ünï", "\uffff"];

/** One mutation of `input` (which is not changed). */
function mutateOnce(input: Buffer, random: Random, corpus: readonly Buffer[]): Buffer {
  const at = (n = input.length) => random.below(n + 1);
  switch (random.below(9)) {
    case 0: {
      if (input.length === 0) return Buffer.from([random.below(256)]);
      const copy = Buffer.from(input);
      const i = random.below(copy.length);
      copy[i] ^= 1 << random.below(8);
      return copy;
    }
    case 1: {
      if (input.length === 0) return Buffer.from([random.pick(INTERESTING_BYTES)]);
      const copy = Buffer.from(input);
      copy[random.below(copy.length)] = random.pick(INTERESTING_BYTES);
      return copy;
    }
    case 2: {
      const i = at();
      const inserted = Buffer.from(Array.from({ length: 1 + random.below(16) }, () => random.below(256)));
      return Buffer.concat([input.subarray(0, i), inserted, input.subarray(i)]);
    }
    case 3: {
      const i = at();
      const length = random.below(Math.min(64, input.length - i) + 1);
      return Buffer.concat([input.subarray(0, i), input.subarray(i + length)]);
    }
    case 4: {
      // Repeat a block: deep nesting, long names, many records.
      const i = at();
      const block = input.subarray(i, i + 1 + random.below(32));
      const times = 1 + random.below(random.below(4) === 0 ? 512 : 8);
      return Buffer.concat([input.subarray(0, i), ...Array(times).fill(block), input.subarray(i)]);
    }
    case 5: {
      const other = random.pick(corpus);
      const i = at();
      const j = random.below(other.length + 1);
      return Buffer.concat([input.subarray(0, i), other.subarray(j, j + random.below(256))]);
    }
    case 6: {
      const i = at();
      const text = Buffer.from(random.pick(INTERESTING_TEXT));
      const replace = random.below(4) === 0 ? 0 : random.below(8);
      return Buffer.concat([input.subarray(0, i), text, input.subarray(i + replace)]);
    }
    case 7: {
      // Replace a run of digits (sizes, modes, counts) with an edge number.
      const text = input.toString("latin1");
      const numbers = [...text.matchAll(/[0-9]+/g)];
      if (numbers.length === 0) return input;
      const m = random.pick(numbers);
      const replacement = random.pick(["-1", "0", "77777777777", "99999999999999999999", "1e400", "8", String(random.u32())]);
      return Buffer.from(text.slice(0, m.index) + replacement + text.slice(m.index! + m[0].length), "latin1");
    }
    default:
      return input.subarray(0, at());
  }
}

/** One to four stacked mutations of a corpus entry. */
export function mutate(corpus: readonly Buffer[], random: Random): Buffer {
  let input = random.pick(corpus);
  const rounds = 1 + random.below(4);
  for (let i = 0; i < rounds; i++) input = mutateOnce(input, random, corpus);
  return input;
}
