import { expect, test } from "bun:test";
import { formatInUnitOf, parseSize } from "./sizes.ts";

test("sizes are reported in the unit they were given in", () => {
  expect(formatInUnitOf(3 * 1024 * 1024, "500M")).toBe("3.0 MiB");
  expect(formatInUnitOf(1536, "2k")).toBe("1.5 KiB");
  expect(formatInUnitOf(5 * 1024 ** 3, "10GB")).toBe("5.0 GiB");
  expect(formatInUnitOf(1234, "0")).toBe("1234 B");
  expect(formatInUnitOf(parseSize("1.5t"), "1.5t")).toBe("1.5 TiB");
});
