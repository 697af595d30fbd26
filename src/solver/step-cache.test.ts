import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LocalStore } from "../cache/store.ts";
import { MEDIA } from "../image/layout.ts";
import { StepCache, type Executed } from "./step-cache.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-step-cache-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const diffId = `sha256:${"7".repeat(64)}`;
const layer = { diffId, digest: diffId, size: 1536, uncompressedSize: 1536, mediaType: MEDIA.layerTar };

test("a layer step whose rows are still being written is a hit for the same step elsewhere in the build, with its date", async () => {
  const store = LocalStore.open(join(work, "store"));
  try {
    const cache = new StepCache(store, undefined, { dryRun: false, upload: "off" });
    let release!: () => void;
    const stored = new Promise<void>((resolve) => (release = resolve));
    const ran: string[] = [];
    const execute = (label: string, done: Promise<void>) => async (): Promise<Executed> => {
      ran.push(label);
      return { diffId, durationMs: 5, layer, stored: done };
    };
    const first = await cache.satisfy("k", "RUN x", false, execute("first", stored));
    expect(first).toMatchObject({ status: "executed", diffId, layer });
    // Another stage's same step while the first one's blob is being synced: a hit, as with its row written.
    const second = await cache.satisfy("k", "RUN x", false, execute("second", Promise.resolve()));
    expect(second).toEqual({ status: "cached-local", diffId, created: first.created, savedMs: 5, layer });
    // --no-cache runs it again, and keeps the date the store will have for the key.
    await Bun.sleep(2);
    const third = await cache.satisfy("k", "RUN x", true, execute("third", Promise.resolve()));
    expect(third.created).toBe(first.created);
    expect(ran).toEqual(["first", "third"]);
    release();
    await cache.written();
    const row = store["db"].query("SELECT diff_id, created FROM steps WHERE key = ?").get("k");
    expect(row).toEqual({ diff_id: diffId, created: first.created });
  } finally {
    store.close();
  }
});
