/** `--platform` lists as buildx reads them, and which platforms run without emulation. */
import { describe, expect, test } from "bun:test";
import { formatPlatform, hostPlatform, parsePlatformList, runsNatively } from "./platform.ts";

describe("parsePlatformList", () => {
  test("a comma-separated list, spelled as BuildKit normalizes it, each platform once", () => {
    const list = parsePlatformList("linux/amd64, linux/arm64/v8,linux/x86_64,linux/aarch64,linux/arm");
    expect(list.map(formatPlatform)).toEqual(["linux/amd64", "linux/arm64", "linux/arm/v7"]);
    expect(parsePlatformList("local")).toEqual([hostPlatform()]);
  });

  test("an empty list or a platform without its architecture is an error naming it", () => {
    expect(() => parsePlatformList(" , ")).toThrow('invalid platform list " , "');
    expect(() => parsePlatformList("linux/amd64,linux")).toThrow('invalid platform "linux"');
  });
});

test("this machine's architecture runs natively, another needs emulation", () => {
  expect(runsNatively(hostPlatform())).toBe(true);
  expect(runsNatively({ os: "linux", architecture: "s390x" })).toBe(hostPlatform().architecture === "s390x");
});
