/**
 * The dashboard's pages against hostile build reports: every reported value is text in the
 * page, never markup, and a link is made only of a URL that is web (the escaping and the
 * CI-link check each guard something a test here must notice losing).
 */
import { describe, expect, test } from "bun:test";
import { esc } from "./ui/format.ts";
import { buildPage, mountsPanel, type Build } from "./ui/views.ts";

const build = (extra: Partial<Build>): Build => ({
  id: "build-0001",
  token: "t",
  result: "failed",
  started: 0,
  dockerfile: "Dockerfile",
  platform: "linux/amd64",
  host: "h",
  labels: {},
  executed: 1,
  cached: 0,
  savedMs: 0,
  steps: [],
  ...extra,
}) as Build;

describe("escaping", () => {
  test("esc turns every character that can end an attribute or start markup into a reference", () => {
    expect(esc(`<a href="x" title='y'>&`)).toBe("&#60;a href=&#34;x&#34; title=&#39;y&#39;&#62;&#38;");
  });

  test("a step name cannot break out of its title attribute", () => {
    const name = `x" onmouseover="alert(1)`;
    const page = buildPage(build({ steps: [{ id: "s/0", stage: "s", number: 1, name, state: "executed" }] }), 0);
    expect(page).not.toContain('" onmouseover="');
    expect(page).toContain("x&#34; onmouseover=&#34;alert(1)");
  });
});

describe("the CI link", () => {
  const link = (url: string) => /<a href="([^"]*)"[^>]*>job<\/a>/.exec(buildPage(build({ ci: { provider: "jenkins", url } }), 0))?.[1];

  test("a web URL is a link", () => {
    expect(link("https://ci.example/job/1/")).toBe("https://ci.example/job/1/");
  });

  test("a URL that only contains a web URL is not: javascript:, data:, and the like", () => {
    for (const url of ["javascript:alert(1)//https://x", "javascript://https://x%0aalert(1)", "data:text/html,https://x", " https://x", "JAVASCRIPT:x//http://y"]) expect(link(url)).toBeUndefined();
  });
});

describe("the cache mounts panel", () => {
  const scope = (id: string, signer: string | null) => ({
    scope: "0".repeat(64),
    label: { id, scope: null },
    versions: 3,
    stored: 4096,
    current: { id: "a".repeat(64), parent: null, signer, author: "0123456789ab", created: 0, published: Date.now(), files: 12, size: 2048, changed: 5 },
    changes: [5],
    fetched: { fetches: 0, filesFetched: 0, bytesFetched: 0, filesKept: 0, bytesKept: 0, ms: 0, savedMs: 0 },
  });

  test("shows each mount's versions, files changed in its last publish and who published it", () => {
    const html = mountsPanel([scope("npm", null)]);
    expect(html).toContain('<tr data-mount="npm"><td>npm</td><td>–</td><td class="num">3</td><td class="num">12</td><td class="num">2.0 KiB</td><td class="num">4.0 KiB</td><td class="num">5</td><td>token 0123456789ab</td>');
  });

  test("a mount id a publisher chose is text, never markup", () => {
    const html = mountsPanel([scope(`<img src=x onerror="alert(1)">`, "ed25519:key")]);
    expect(html).not.toContain("<img");
    expect(html).toContain("&#60;img src=x onerror=&#34;alert(1)&#34;&#62;");
  });
});
