/**
 * The dashboard's pages against hostile build reports: every reported value is text in the
 * page, never markup, and a link is made only of a URL that is web (the escaping and the
 * CI-link check each guard something a test here must notice losing).
 */
import { describe, expect, test } from "bun:test";
import { esc } from "./ui/format.ts";

import { buildPage, matches, projectsPage, type Build } from "./ui/views.ts";

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
  const link = (url: string) => /<a href="([^"]*)"[^>]*>run<\/a>/.exec(buildPage(build({ ci: { provider: "jenkins", url } }), 0))?.[1];

  test("a web URL is a link", () => {
    expect(link("https://ci.example/job/1/")).toBe("https://ci.example/job/1/");
  });

  test("a URL that only contains a web URL is not: javascript:, data:, and the like", () => {
    for (const url of ["javascript:alert(1)//https://x", "javascript://https://x%0aalert(1)", "data:text/html,https://x", " https://x", "JAVASCRIPT:x//http://y"]) expect(link(url)).toBeUndefined();
  });
});

describe("a failed build's page", () => {
  const failed = build({
    started: 1000,
    finished: 5000,
    project: "widget",
    git: { repository: "https://github.com/acme/widget.git", branch: "feature/x", commit: "0123456789abcdef0123456789abcdef01234567", dirty: true },
    user: "ana",
    tags: ["widget:dev"],
    command: ["memobuild", "build", ".", "--build-arg", "NPM_TOKEN=***", "--label", "note=two words"],
    steps: [
      { id: "0/0", stage: "0", number: 1, name: "[1/3] FROM base", state: "cached-local", started: 1000, durationMs: 3 },
      { id: "0/1", stage: "0", number: 2, name: "[2/3] RUN make", state: "failed", started: 1100, tail: ["cc: error: x.c", "make: *** Error 1"] },
      { id: "0/2", stage: "0", number: 3, name: "[3/3] RUN never", state: "skipped" },
    ],
  });

  test("says first which step failed, with its output; then who built what and the command that reruns it", () => {
    const html = buildPage(failed, 6000);
    const failure = html.indexOf('data-failed-step="0/1"');
    expect(failure).toBeGreaterThan(0);
    expect(failure).toBeLessThan(html.indexOf('class="facts"'));
    expect(html).toContain("Failed at step 2: <code>[2/3] RUN make</code>");
    expect(html).toContain("cc: error: x.c\nmake: *** Error 1");
    expect(html).toContain("widget");
    expect(html).toContain("feature/x");
    expect(html).toContain("0123456789abcdef0123456789abcdef01234567</code> <span class=\"tag dirty\">");
    expect(html).toContain("widget:dev");
    expect(html).toContain("memobuild build . --build-arg &#39;NPM_TOKEN=***&#39; --label &#39;note=two words&#39;");
  });

  test("the timeline names each step, has a time axis, and draws the failed step to when the build ended", () => {
    const html = buildPage(failed, 6000);
    const svg = /<svg class="chart waterfall"[^]*?<\/svg>/.exec(html)![0];
    expect(svg).toContain(">[1/3] FROM base</text>");
    expect(svg).toContain(">[2/3] RUN make</text>");
    expect(svg).toMatch(/<text class="axis"[^>]*>0 ms<\/text>/);
    const bar = /<g class="row" data-state="failed">[^]*?<rect class="state-failed" x="[\d.]+" y="[\d.]+" width="([\d.]+)"/.exec(svg)!;
    expect(Number(bar[1])).toBeGreaterThan(500); // 3.9 s of a 4 s build, not a sliver
  });
});

describe("the list's filters", () => {
  const b = build({ result: "failed", project: "widget", git: { branch: "main" }, user: "ana", tokenName: "ci", labels: { team: "web" }, tags: ["widget:pr-7"] });
  test("keep a build by project, branch, result, label, user or token name, and text in any case", () => {
    expect(matches(b, {})).toBe(true);
    expect(matches(b, { project: "widget", branch: "main", result: "failed", label: "team=web", user: "ana", q: "PR-7" })).toBe(true);
    expect(matches(b, { user: "ci" })).toBe(true);
    for (const f of [{ project: "gadget" }, { branch: "dev" }, { result: "success" }, { label: "team=ops" }, { label: "team" }, { user: "bo" }, { q: "nothing-like-it" }]) expect(matches(b, f)).toBe(false);
  });
});

describe("the projects page", () => {
  test("draws each project's duration and hit rate over time", () => {
    const html = projectsPage([{ project: "widget", builds: [{ finished: 0, durationMs: 1000, result: "success", executed: 1, cached: 1, failed: 0 }, { finished: 3_600_000, durationMs: 4000, result: "failed", executed: 0, cached: 1, failed: 1 }] }]);
    expect(html).toContain('data-project="widget"');
    expect(html).toContain('aria-label="duration over time"');
    expect(html).toContain('aria-label="hit rate over time"');
    expect(html).toContain("2 build(s), 1 failed");
    expect((html.match(/<circle/g) ?? []).length).toBe(4);
  });
});

describe("use by token", () => {
  test("a named token is shown by its name, an unnamed one by its hash's prefix", async () => {
    const { cachePage } = await import("./ui/views.ts");
    const stats = { cache: { bytes: 0, maxBytes: null, blobs: 0, actions: 0 }, hourly: [], topMissed: [], topSavers: [], conflicts: [], webhooks: [], tokens: [{ token: "0123456789ab", name: "ci", requests: 3, bytesIn: 1, bytesOut: 2 }, { token: "ba9876543210", requests: 1, bytesIn: 0, bytesOut: 0 }] };
    const html = cachePage(stats);
    expect(html).toContain(">ci</text>");
    expect(html).not.toContain("0123456789ab");
    expect(html).toContain(">token ba9876543210</text>");
  });
});

describe("conflicts", () => {
  test("each writer is shown by its token's name when it has one, with its key when it signed", async () => {
    const { conflictsPanel } = await import("./ui/reproducibility.ts");
    const html = conflictsPanel([
      { key: "a".repeat(64), time: 0, step: "[app 2/2] RUN make", first: { author: "0123456789ab", authorName: "ci", signer: "ed25519:" + "f".repeat(64), build: "b1" }, second: { author: "ba9876543210", signer: null, build: null } },
    ]);
    expect(html).toContain("ci <span");
    expect(html).not.toContain("0123456789ab");
    expect(html).toContain("key ffff");
    expect(html).toContain("token <code>ba9876543210</code>");
  });
});

describe("what a team lead reads on a build's page", () => {
  test("a failed step's output is shown once: the build's error keeps its first line, not the same tail again", () => {
    const html = buildPage(
      build({ error: "Dockerfile:3: RUN make: exit code 2\n  last output:\n    cc: error: x.c", steps: [{ id: "0/0", stage: "0", number: 1, name: "[1/1] RUN make", state: "failed", started: 0, tail: ["cc: error: x.c"] }] }),
      10,
    );
    expect(html.split("cc: error: x.c")).toHaveLength(2);
    expect(html).toContain(">Dockerfile:3: RUN make: exit code 2</pre>");
  });

  test("a config-only step (FROM, ENV…) reads \"config\", greyed, with no time saved, and its status stays on one line", () => {
    const html = buildPage(build({ result: "success", steps: [{ id: "0/0", stage: "0", number: 1, name: "[1/2] FROM base", state: "cached-local", configOnly: true, started: 0, durationMs: 2, savedMs: 0 }] }), 10);
    const row = /<tr class="state-cached-local"[^]*?<\/tr>/.exec(html)![0];
    expect(row).toContain('<td class="status"><span class="dot state-cached-local config-only"></span>config</td>');
    expect(row).not.toContain("0 ms</td>");
    expect(html).toContain('class="step state-cached-local config-only"');
  });

  test("a timeline bar across the whole plot carries its text inside, never over the step's name", async () => {
    const { waterfall } = await import("./ui/charts.ts");
    const svg = waterfall([{ label: "[1/2] RUN sleep 30", text: "running 43 s", start: 0, length: 43_000, state: "running" }]);
    expect(svg).toContain('<text class="bar-value inside"');
  });
});

describe("bar charts", () => {
  test("a long label is cut to the chart's width and the longest bar leaves room for its value", async () => {
    const { barChart } = await import("./ui/charts.ts");
    const svg = barChart([
      { label: `[build 5/7] RUN ${"x".repeat(120)}`, value: 225, text: "225 req · ↑1.2 MiB ↓14.2 KiB" },
      { label: "lead", value: 13, text: "13 req" },
    ]);
    const label = />([^<]*)<\/text><rect/.exec(svg)![1];
    expect(label.length).toBeLessThanOrEqual(Math.floor(360 / 6.2));
    expect(label.endsWith("…")).toBe(true);
    const [, width, x] = /<rect class="bar" x="0" y="16" width="([\d.]+)"[^>]*\/><text class="bar-value" x="([\d.]+)"/.exec(svg)!;
    // ~6.2px a character of 11px text: the value ends within the 360 the SVG shows.
    expect(Number(x) + 6.2 * "225 req · ↑1.2 MiB ↓14.2 KiB".length).toBeLessThanOrEqual(360);
    expect(Number(width)).toBeGreaterThan(100);
  });
});

describe("line charts", () => {
  test("the two ends of the time axis never read the same: builds minutes apart are told to the second", async () => {
    const { lineChart } = await import("./ui/charts.ts");
    const t = Date.UTC(2026, 11, 7, 21, 19, 5);
    const svg = lineChart([{ x: t, y: 0.5, label: "a" }, { x: t + 40_000, y: 1, label: "b" }]);
    expect(svg).toContain(">21:19:05</text>");
    expect(svg).toContain(">21:19:45</text>");
  });
});

describe("the list", () => {
  test("a failed build without a failed step (interrupted, cut off) says why: its error's first line", async () => {
    const { buildsPage } = await import("./ui/views.ts");
    const html = buildsPage([], [build({ id: "build-int-1", result: "failed", error: "interrupted (SIGINT) before the build finished\nmore" })], 0);
    expect(html).toContain('<span class="failed-at" title="interrupted (SIGINT) before the build finished">interrupted (SIGINT) before the build finished</span>');
  });

  test("one hit is \"1 hit\"; a single hour's point keeps its hour on the axis", async () => {
    const { cachePage } = await import("./ui/views.ts");
    const hour = Date.UTC(2026, 11, 7, 21);
    const html = cachePage({ cache: { bytes: 0, maxBytes: null, blobs: 0, actions: 0 }, hourly: [{ hour, builds: 1, executed: 1, cached: 1, savedMs: 5 }], topMissed: [], topSavers: [{ name: "RUN a", hits: 1, savedMs: 12 }], conflicts: [], webhooks: [], tokens: [] });
    expect(html).toContain("(1 hit)</text>");
    expect(html).toContain(">21:00</text>");
  });
});

describe("a step's output page", () => {
  test("a config-only step reads \"config\" and says nothing ran (not \"ran\", nor \"printed nothing\")", async () => {
    const { stepLogPage } = await import("./ui/logs.ts");
    const html = stepLogPage(build({ steps: [{ id: "0/0", stage: "0", number: 1, name: "[1/2] FROM base", state: "executed", configOnly: true }] }), 1, { text: "", lastEvent: 0 });
    expect(html).toContain('<span data-log-state="executed">config</span>');
    expect(html).toContain("Nothing ran: this step changes only the image's config.");
  });
});

describe("a build's own conflicts and steps not reproducible", () => {
  const key = "a".repeat(64);
  const records = {
    conflicts: [{ key, time: 0, step: "[app 2/2] RUN make", first: { author: "0123456789ab", authorName: "ci", signer: null, build: "build-first-1" }, second: { author: "ba9876543210", authorName: "bo-laptop", signer: null, build: "build-0001" } }],
    unreproducible: [
      { key, time: 0, step: "[app 3/3] RUN date > /d", first: { build: "build-0001" }, second: { build: "build-later-2" }, differences: { files: [{ path: "/d", how: ["content"] }], more: 0 } },
      { key, time: 0, step: "[other 1/1] RUN x", first: { build: "build-x" }, second: { build: "build-y" }, differences: { files: [], more: 0 } },
    ],
  };

  test("are listed on its page with the other build linked and this one named so; none, no panel", () => {
    const html = buildPage(build({ result: "success" }), 0, records);
    const panel = /<section class="card" data-panel="build-records">[^]*?<\/section>/.exec(html)![0];
    expect(panel).toContain("[app 2/2] RUN make");
    expect(panel).toContain("kept ci, refused bo-laptop");
    expect(panel).toContain('<a class="build-link" href="#/builds/build-first-1">');
    expect(panel).toContain("this build → ");
    expect(panel).toContain('<a class="build-link" href="#/builds/build-later-2">');
    expect(panel).not.toContain("[other 1/1] RUN x");
    expect(buildPage(build({ id: "build-none-3", result: "success" }), 0, records)).not.toContain("build-records");
  });
});

describe("a step whose results differ only in file times", () => {
  test("is named with the cure (SOURCE_DATE_EPOCH); one that differs in content is not", async () => {
    const { nondeterministicPanel } = await import("./ui/reproducibility.ts");
    const record = (how: string[]) => ({ key: "k", time: 0, step: "[build 3/7] WORKDIR /src", first: { build: "b1" }, second: { build: "b2" }, differences: { files: [{ path: "/src", how }], more: 0 } });
    const steps = [{ step: "[build 3/7] WORKDIR /src", count: 1, last: 0, lastBuild: "b2" }];
    expect(nondeterministicPanel(steps, [record(["mtime only"])])).toContain('data-hint="times-only"');
    expect(nondeterministicPanel(steps, [record(["content"])])).not.toContain('data-hint="times-only"');
  });
});

describe("the Workers page, empty", () => {
  test("says how to send a build and how to start a worker", async () => {
    const { workersPage } = await import("./ui/views.ts");
    const html = workersPage([], 0, [], 0);
    expect(html).toContain("<code>memobuild build --builder URL</code>");
    expect(html).toContain("<code>memobuild worker --server URL --token TOKEN</code>");
  });
});

describe("a step that failed before it ran (a COPY of a missing file)", () => {
  const copy = build({
    started: 0,
    finished: 30,
    error: 'Dockerfile:2:1: COPY missing.txt /: source "missing.txt" not found in the build context',
    steps: [
      { id: "0/0", stage: "0", number: 1, name: "[1/3] FROM base", state: "executed", configOnly: true, started: 1, durationMs: 2 },
      { id: "0/1", stage: "0", number: 2, name: "[2/3] COPY missing.txt /", state: "failed", reasons: ['Dockerfile:2:1: COPY missing.txt /: source "missing.txt" not found in the build context'] },
      { id: "0/2", stage: "0", number: 3, name: "[3/3] RUN echo x", state: "skipped" },
    ],
  });

  test("is on the timeline, and its error is said once", () => {
    const html = buildPage(copy, 40);
    expect(html).toMatch(/<g class="row" data-state="failed">[^]*?\[2\/3\] COPY missing.txt \/<\/text>/);
    const failure = /<section class="card failure"[^]*?<\/section>/.exec(html)![0];
    expect(failure.split("not found in the build context")).toHaveLength(2);
  });
});
