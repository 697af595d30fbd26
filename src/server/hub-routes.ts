/**
 * The build hub's routes:
 *   POST /v1/builds/{id}/events   a build reports a batch of its events
 *   GET  /v1/builds[?label=K=V&result=&branch=&project=&user=&q=&page=&per_page=]   newest first
 *   GET  /v1/builds/{id}          a build and its steps
 *   GET  /v1/builds/{id}/steps/{n}/log   what step n (as numbered in the build) printed, as text
 *   GET  /v1/events[?since=ID]    WebSocket: every event after ID, then live ones
 *   GET  /v1/stats                the dashboard's cache panels
 *   GET  /v1/projects             each project's finished builds of the last 30 days (its trends)
 *   GET  /   POST /login   POST /logout   GET /assets/…   the dashboard
 * A read-only token may report builds (a pull request's CI should be seen too) and watch; it
 * still never writes the cache.
 */
import { Hono, type Context } from "hono";
import { upgradeWebSocket } from "hono/bun";
import { deleteCookie, getCookie, setCookie } from "hono/cookie";
import type { ServerWebSocket } from "bun";
import { dashboardAssets } from "../dashboard/assets.ts";
import type { AppParts } from "./app-parts.ts";
import { boundedText, error, sameOrigin, type AppEnv } from "./http.ts";
import { BUILD_ID, HubError } from "./hub.ts";
import type { HubEvent, TrendPoint } from "./history.ts";
import { SESSION_COOKIE } from "./sessions.ts";
import { redactCredentials, urlOrigin } from "../util/redact.ts";
import { terminalText } from "../util/terminal-text.ts";

const MAX_REPORT_BYTES = 4 * 1024 * 1024;
/** A watcher this far behind on the socket is cut off; it reconnects with its last id. */
const MAX_SOCKET_BUFFER = 4 * 1024 * 1024;
const STATS_WINDOW_MS = 7 * 24 * 3600_000;
const TRENDS_WINDOW_MS = 30 * 24 * 3600_000;

export function hubRoutes(parts: AppParts): Hono<AppEnv> {
  const { hub, storage, tokens, sessions } = parts;
  const app = new Hono<AppEnv>();
  const assets = dashboardAssets();

  app.post("/v1/builds/:id/events", async (c) => {
    const text = await boundedText(c.req.raw, MAX_REPORT_BYTES);
    if (text === undefined) return error(c, 413, `a report may be at most ${MAX_REPORT_BYTES} bytes`);
    try {
      c.set("bytesIn", text.length);
      hub.admit(c.get("token"), c.get("role"), Buffer.byteLength(text));
      let body: unknown;
      try {
        body = JSON.parse(text);
      } catch {
        return error(c, 400, "the report is not JSON");
      }
      return c.json({ accepted: await hub.report(c.req.param("id"), c.get("token"), body, c.get("role"), tokens.nameOf(c.get("token"))) });
    } catch (cause) {
      if (cause instanceof HubError) return error(c, cause.status, cause.message);
      throw cause;
    }
  });

  app.get("/v1/builds", async (c) => {
    const page = Math.max(1, wholeNumber(c.req.query("page"), 1));
    const perPage = Math.min(200, Math.max(1, wholeNumber(c.req.query("per_page"), 50)));
    const label = c.req.query("label");
    const eq = label?.indexOf("=") ?? -1;
    if (label !== undefined && eq < 1) return error(c, 400, "label=NAME=VALUE");
    const result = c.req.query("result");
    if (result !== undefined && !["running", "success", "failed"].includes(result)) return error(c, 400, "result is running, success or failed");
    // The last event id first: a watcher that starts from it misses nothing listed after.
    const lastEvent = await hub.store.lastEventId();
    const { builds, total } = await hub.store.list({
      page,
      perPage,
      result: result as "running" | "success" | "failed" | undefined,
      branch: c.req.query("branch") || undefined,
      project: c.req.query("project") || undefined,
      user: c.req.query("user") || undefined,
      text: c.req.query("q")?.slice(0, 200) || undefined,
      label: label ? { name: label.slice(0, eq), value: label.slice(eq + 1) } : undefined,
    });
    return c.json({ builds, total, page, perPage, lastEvent });
  });

  app.get("/v1/builds/:id", async (c) => {
    const id = c.req.param("id");
    const build = BUILD_ID.test(id) ? await hub.store.get(id) : undefined;
    return build ? c.json(build) : error(c, 404, "no such build");
  });

  app.get("/v1/builds/:id/steps/:n/log", async (c) => {
    const id = c.req.param("id");
    const build = BUILD_ID.test(id) ? await hub.store.get(id) : undefined;
    if (!build) return error(c, 404, "no such build");
    const step = build.steps.find((s) => String(s.number) === c.req.param("n"));
    if (!step) return error(c, 404, `build ${id} has no step ${c.req.param("n")} (its steps are numbered 1 to ${build.steps.length})`);
    const log = await hub.store.stepLog(id, step.id);
    const note = log?.cut ? `[… ${log.cut} characters of earlier output not kept …]\n` : "";
    // Read in a terminal as often as in the dashboard: no escape sequence of the build's gets through.
    return c.text(note + terminalText(log?.text ?? "", { multiline: true }), 200, {
      "content-type": "text/plain; charset=utf-8",
      "x-content-type-options": "nosniff",
      "memobuild-step": encodeURIComponent(step.name),
      "memobuild-last-event": String(log?.lastEvent ?? 0),
    });
  });

  app.get(
    "/v1/events",
    upgradeWebSocket((c) => {
      const since = wholeNumber(c.req.query("since"), 0);
      let stop: (() => void) | undefined;
      let closed = false;
      return {
        async onOpen(_event, ws) {
          const socket = ws.raw as ServerWebSocket<unknown>;
          const send = (event: HubEvent | { type: "resync"; id: number }) => {
            if (socket.getBufferedAmount() > MAX_SOCKET_BUFFER) {
              stop?.();
              socket.close(1013, "too far behind: reconnect with since= the last id seen");
              return;
            }
            socket.send(JSON.stringify(event));
          };
          const disconnect = () => socket.close(1001, "the server is stopping");
          let watching = await hub.watch(since, send, disconnect);
          if (watching === "too-far-behind") {
            // More was missed than is worth replaying: reload the lists, then watch from here.
            send({ type: "resync", id: await hub.store.lastEventId() });
            watching = (await hub.watch(0, send, disconnect)) as () => void;
          }
          stop = watching;
          if (closed) stop(); // closed while the replay was read
        },
        onClose() {
          closed = true;
          stop?.();
        },
      };
    }),
  );
  app.get("/v1/events", (c) => error(c, 426, "GET /v1/events is a WebSocket: send Upgrade: websocket"));

  app.get("/v1/projects", async (c) => {
    const points = await hub.store.trends(Date.now() - TRENDS_WINDOW_MS, 5000);
    const projects = new Map<string, Omit<TrendPoint, "project">[]>();
    for (const { project, ...point } of points.reverse()) {
      if (!projects.has(project)) projects.set(project, []);
      projects.get(project)!.push(point);
    }
    return c.json({ projects: [...projects].map(([project, builds]) => ({ project, builds })).sort((a, b) => a.project.localeCompare(b.project)) });
  });

  app.get("/v1/stats", async (c) => {
    const { blobs, actions, bytes } = await storage.counts();
    return c.json({
      cache: { bytes, maxBytes: storage.options.maxSize ?? null, blobs, actions },
      ...(await hub.store.stats(Date.now() - STATS_WINDOW_MS)),
      // A named token is shown by its name, not by its hash.
      tokens: (await storage.tokenStats()).map((t) => ({ ...t, ...(tokens.nameOf(t.token) ? { name: tokens.nameOf(t.token) } : {}) })),
      conflicts: (await storage.conflicts({ limit: 20 })).map((conflict) => tokens.namedSides(conflict)),
      unreproducible: await storage.unreproducible({ limit: 20 }),
      nondeterministic: await storage.nondeterministic(Date.now() - STATS_WINDOW_MS, 10),
      // A webhook URL is a credential (Slack's and Teams' carry their secret in the path): the
      // API shows where deliveries go (scheme and host) and never the URL, to any role.
      webhooks: (await hub.store.recentDeliveries(50)).map(({ body: _body, url, lastError, ...delivery }) => ({
        ...delivery,
        url: urlOrigin(url),
        ...(lastError !== undefined ? { lastError: redactCredentials(lastError.replaceAll(url, urlOrigin(url))) } : {}),
      })),
    });
  });

  // ---- the dashboard

  const secure = (c: Context) => new URL(c.req.url).protocol === "https:";
  const loggedIn = async (c: Context) => !tokens.enabled || (await sessions.get(getCookie(c, SESSION_COOKIE))) !== undefined;
  const page = (c: Context, html: string, status: 200 | 401 = 200) =>
    c.html(html, status, {
      // Nothing from elsewhere: scripts, styles and connections are this server's own.
      "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
      "x-content-type-options": "nosniff",
      // same-origin, not no-referrer: with no-referrer a form POST says "Origin: null", which the login refuses.
      "referrer-policy": "same-origin",
    });

  app.get("/", async (c) => ((await loggedIn(c)) ? page(c, assets.html) : page(c, assets.login(false))));
  app.get("/assets/dashboard.js", (c) => c.body(assets.script, 200, { "content-type": "text/javascript; charset=utf-8", "cache-control": "no-cache" }));
  app.get("/assets/dashboard.css", (c) => c.body(assets.style, 200, { "content-type": "text/css; charset=utf-8", "cache-control": "no-cache" }));

  app.post("/login", async (c) => {
    if (!sameOrigin(c)) return error(c, 403, "log in from the dashboard's own page");
    // A login form is a few hundred bytes; nothing longer is read.
    const body = await boundedText(c.req.raw, 16 * 1024);
    if (body === undefined) return error(c, 413, "a login form is at most 16 KiB");
    const token = new URLSearchParams(body).get("token") ?? "";
    const auth = tokens.check(`Bearer ${token}`);
    if (!tokens.enabled) return c.redirect("/", 303);
    if (!auth.ok || !token) return page(c, assets.login(true), 401);
    setCookie(c, SESSION_COOKIE, await sessions.create(auth.role, auth.id), { httpOnly: true, sameSite: "Strict", secure: secure(c), path: "/", maxAge: 12 * 3600 });
    return c.redirect("/", 303);
  });

  app.post("/logout", async (c) => {
    await sessions.delete(getCookie(c, SESSION_COOKIE));
    deleteCookie(c, SESSION_COOKIE, { path: "/" });
    return c.redirect("/", 303);
  });

  return app;
}

function wholeNumber(text: string | undefined, fallback: number): number {
  const value = Number(text);
  return text !== undefined && Number.isSafeInteger(value) && value >= 0 ? value : fallback;
}
