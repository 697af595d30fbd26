/** Asks a cache server whether it answers and takes the token, before init saves them. */

export type RemoteCheck = { ok: true } | { ok: false; problem: string };

export async function checkRemote(url: string, token: string | undefined, timeoutMs = 5000): Promise<RemoteCheck> {
  if (!/^https?:\/\/[^/]+/.test(url)) return { ok: false, problem: "the URL must start with http:// or https://" };
  const base = url.replace(/\/+$/, "");
  try {
    const health = await fetch(`${base}/healthz`, { signal: AbortSignal.timeout(timeoutMs) });
    if (!health.ok) return { ok: false, problem: `${base}/healthz answered HTTP ${health.status}: is this a memobuild serve?` };
    // Reading a result needs the token when the server has any; an unknown key is a 404.
    const headers: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};
    const probe = await fetch(`${base}/v1/actions/${"0".repeat(64)}`, { method: "HEAD", headers, signal: AbortSignal.timeout(timeoutMs) });
    if (probe.status === 401 || probe.status === 403) return { ok: false, problem: token ? "the server refused the token" : "the server needs a token" };
    if (probe.status !== 404 && probe.status !== 200) return { ok: false, problem: `the server answered HTTP ${probe.status}` };
    return { ok: true };
  } catch (error) {
    return { ok: false, problem: `no answer from ${base}: ${(error as Error).message}` };
  }
}
