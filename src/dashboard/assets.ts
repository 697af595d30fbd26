/** The dashboard's files, all inside the binary: no asset comes from anywhere else. */
import { bundleDashboard } from "./bundle.ts" with { type: "macro" };
import style from "./style.css" with { type: "text" };

const script = bundleDashboard();

const shell = (body: string) => `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>MemoBuild</title>
<!-- No icon to fetch: a browser asks for /favicon.ico otherwise, and logs its 404 on every page. -->
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/assets/dashboard.css">
</head>
<body>${body}</body>
</html>
`;

export interface DashboardAssets {
  html: string;
  login(failed: boolean): string;
  script: string;
  style: string;
}

export function dashboardAssets(): DashboardAssets {
  return {
    html: shell(`<div id="app"><p class="muted">Loading…</p></div><script type="module" src="/assets/dashboard.js"></script>`),
    login: (failed) =>
      shell(`<main class="login">
<h1>MemoBuild</h1>
<form method="post" action="/login">
<label for="token">Token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
<button type="submit">Log in</button>
${failed ? '<p class="error" role="alert">That token is not valid.</p>' : ""}
</form>
</main>`),
    script,
    style,
  };
}
