/**
 * The dashboard's pages against hostile build reports: every reported value is text in the
 * page, never markup, and a link is made only of a URL that is web (the escaping and the
 * CI-link check each guard something a test here must notice losing).
 */
import { describe, expect, test } from "bun:test";
import { esc } from "./ui/format.ts";
import { buildPage, type Build } from "./ui/views.ts";

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

