/**
 * Commander collector for repeatable options. They have no declared default (Commander would
 * print "(default: [])" in the help); createProgram fills in [] for those not given.
 *
 * A module of its own: program.ts and every command need it, and importing it from inputs.ts
 * loaded the Dockerfile parser, the archive code and node:zlib into every command's start-up.
 */
export const collect = (value: string, previous?: string[]) => [...(previous ?? []), value];
