/** Byte sizes as people write and read them: "500M", "1.5g", "10GB" ↔ "1.4 GiB". */

const UNITS = { "": 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 } as const;

/** Parses bytes or a number with K, M, G or T (binary units; "B" and "iB" suffixes allowed). */
export function parseSize(text: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?$/i.exec(text.trim());
  if (!match) throw new Error(`invalid size "${text}": use bytes or a number with K, M, G or T`);
  return Math.floor(Number(match[1]) * UNITS[match[2].toLowerCase() as keyof typeof UNITS]);
}

export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/** `bytes` in the unit `example` was written in ("500M" → "123.4 MiB"; bytes when it had none). */
export function formatInUnitOf(bytes: number, example: string): string {
  const unit = (/^\s*\d+(?:\.\d+)?\s*([kmgt]?)/i.exec(example)?.[1] ?? "").toLowerCase() as keyof typeof UNITS;
  if (unit === "") return `${bytes} B`;
  return `${(bytes / UNITS[unit]).toFixed(1)} ${unit.toUpperCase()}iB`;
}

const PERIODS = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 } as const;

/** A period such as "90d", "12h" or "2w", in milliseconds. */
export function parsePeriod(text: string): number {
  const match = /^(\d+)\s*([smhdw])$/i.exec(text.trim());
  if (!match) throw new Error(`invalid period "${text}": use a number with s, m, h, d or w (e.g. 30d)`);
  return Number(match[1]) * PERIODS[match[2].toLowerCase() as keyof typeof PERIODS];
}
