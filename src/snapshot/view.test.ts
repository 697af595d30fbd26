import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { mknod, OVERLAY_OPAQUE, S_IFCHR, setXattr } from "../sys/libc.ts";
import { LayerView, resolveUser, UserResolutionError } from "./view.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-view-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function layer(name: string, files: Record<string, string>): string {
  const dir = join(work, name);
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(join(dir, path, ".."), { recursive: true });
    writeFileSync(join(dir, path), content);
  }
  mkdirSync(dir, { recursive: true });
  return dir;
}

describe("LayerView", () => {
  test("upper layers win; whiteouts and opaque directories hide what is below", () => {
    const base = layer("base", { "etc/passwd": "base", "etc/gone": "x", "opt/old/file": "old", "keep": "k" });
    const top = layer("top", { "etc/passwd": "top", "opt/new": "new" });
    mknod(join(top, "etc/gone"), S_IFCHR, 0, 0);
    setXattr(join(top, "opt"), OVERLAY_OPAQUE, Buffer.from("y"));
    const view = new LayerView([base, top]);
    expect(view.readFile("/etc/passwd")).toBe("top");
    expect(view.locate("/etc/gone")).toBeUndefined();
    expect(view.locate("/opt/old/file")).toBeUndefined();
    expect(view.readFile("/opt/new")).toBe("new");
    expect(view.readFile("/keep")).toBe("k");
    expect(view.isDirectory("/etc")).toBe(true);
  });
});

describe("resolveUser", () => {
  const files: Record<string, string> = {
    "/etc/passwd": "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
    "/etc/group": "root:x:0:\napp:x:1000:\ndocker:x:999:app\n",
  };
  const read = (path: string) => files[path];

  test("names, ids, groups and supplementary groups", () => {
    expect(resolveUser("app", read)).toEqual({ uid: 1000, gid: 1000, additionalGids: [999] });
    expect(resolveUser("app:root", read)).toEqual({ uid: 1000, gid: 0, additionalGids: [] });
    expect(resolveUser("4242", read)).toEqual({ uid: 4242, gid: 0, additionalGids: [] });
    expect(resolveUser("1000:5", read)).toEqual({ uid: 1000, gid: 5, additionalGids: [] });
    expect(resolveUser(undefined, read)).toEqual({ uid: 0, gid: 0, additionalGids: [] });
  });

  test("an unknown name is an error", () => {
    expect(() => resolveUser("nobody-here", read)).toThrow(UserResolutionError);
    expect(() => resolveUser("app:nogroup", read)).toThrow("unable to find group nogroup");
  });
});
