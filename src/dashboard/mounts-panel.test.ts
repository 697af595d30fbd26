/** The cache mounts panel: what it shows of each shared mount, and ids a publisher chose as text only. */
import { describe, expect, test } from "bun:test";
import { mountsPanel, SAVED_NOTE } from "./ui/mounts-panel.ts";
import { esc } from "./ui/format.ts";
import type { MountScopeInfo } from "../remote/mount-types.ts";

const scope = (id: string, signer: string | null, fetches = 0): MountScopeInfo => ({
  scope: "0".repeat(64),
  label: { id, scope: null },
  versions: 3,
  stored: 4096,
  current: { id: "a".repeat(64), parent: null, signer, author: "0123456789ab", created: 0, published: Date.now(), files: 12, size: 2048, changed: 5 },
  changes: [5, 2, 12],
  fetched: { fetches, filesFetched: 3, bytesFetched: 3072, filesKept: 9, bytesKept: 9216, ms: 400, savedMs: fetches ? 1200 : 0 },
});

describe("the cache mounts panel", () => {
  test("shows each mount's versions, the files each publish changed, who published, and what fetching it saved", () => {
    const html = mountsPanel([scope("npm", null, 2)]);
    expect(html).toContain(
      '<tr data-mount="npm"><td>npm</td><td>–</td><td class="num">3</td><td class="num">12 files, 2.0 KiB</td><td class="num">4.0 KiB</td><td class="num changes" title="newest first">5 · 2 · 12</td><td>token 0123456789ab · 0 s ago</td>',
    );
    expect(html).toContain('<td class="num">2</td><td class="num">3 files, 3.0 KiB</td><td class="num">9 files, 9.0 KiB</td><td class="num saved">1.2 s</td></tr>');
    expect(html).toContain("1 shared mount · 4.0 KiB stored · about 1.2 s saved on fetches");
    expect(html).toContain(esc(SAVED_NOTE));
  });

  test("a token the token file names is shown by that name", () => {
    const named = scope("npm", null);
    named.current.authorName = "ci-bot";
    expect(mountsPanel([named])).toContain("<td>ci-bot · ");
  });

  test("a mount nobody fetched yet shows no fetch figures", () => {
    expect(mountsPanel([scope("npm", null)])).toContain('<td class="num">0</td><td class="num">–</td><td class="num">–</td><td class="num saved">–</td></tr>');
  });

  test("a mount id a publisher chose is text, never markup", () => {
    const html = mountsPanel([scope(`<img src=x onerror="alert(1)">`, "ed25519:key")]);
    expect(html).not.toContain("<img");
    expect(html).toContain("&#60;img src=x onerror=&#34;alert(1)&#34;&#62;");
  });
});
