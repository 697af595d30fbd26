/**
 * A GET that never reaches this machine's loopback, for what a worker fetches on behalf of a
 * job it does not trust (ADD from a URL): services that listen only on 127.0.0.1 are not the
 * job's to read. Each host name is resolved first, every address it has is checked, and the
 * connection goes to an address that was checked (the resolver is asked once per hop, so a name
 * that answers otherwise the second time — DNS rebinding — changes nothing); every redirect is
 * checked the same way before it is followed.
 */
import { lookup as dnsLookup, type LookupAddress } from "node:dns";
import http, { type IncomingMessage } from "node:http";
import https from "node:https";
import { isIP, isIPv4 } from "node:net";
import { Readable } from "node:stream";
import { UserError } from "../errors.ts";
import { limit } from "./limits.ts";
import { NetworkError } from "./network.ts";

/** A hop this fetch will not follow: final, never worth another try. */
export class FetchRefusedError extends UserError {}

/** A destination on the loopback. */
export class LoopbackRefusedError extends FetchRefusedError {}

/** All the addresses a host name has (the system's resolver: /etc/hosts, then DNS). */
export type Resolver = (host: string) => Promise<LookupAddress[]>;

export const systemResolver: Resolver = (host) =>
  new Promise((resolve, reject) => dnsLookup(host, { all: true, verbatim: true }, (error, addresses) => (error ? reject(error) : resolve(addresses))));

/**
 * Whether a connection to `address` stays on this machine: 127.0.0.0/8, 0.0.0.0/8 (Linux
 * answers 0.0.0.0 from the loopback), ::1, :: and IPv4 ones written inside IPv6 (::ffff:127.0.0.1).
 */
export function isLoopbackAddress(address: string): boolean {
  const bare = address.replace(/^\[(.*)\]$/, "$1").replace(/%.*$/, "");
  if (isIPv4(bare)) return [0, 127].includes(Number(bare.split(".")[0]));
  if (isIP(bare) !== 6) return false;
  const bytes = ipv6Bytes(bare);
  const zero = (from: number, to: number) => bytes.slice(from, to).every((b) => b === 0);
  if (zero(0, 15) && bytes[15]! <= 1) return true;
  // IPv4 inside IPv6: mapped (::ffff:a.b.c.d) as its IPv4 address; the old compatible form
  // (::127.0.0.1) refused too, though nothing routes it any more.
  const mapped = zero(0, 10) && bytes[10] === 0xff && bytes[11] === 0xff;
  return (mapped && (bytes[12] === 127 || bytes[12] === 0)) || (zero(0, 12) && bytes[12] === 127);
}

/** The 16 bytes of a valid IPv6 address (a trailing dotted IPv4 part included). */
function ipv6Bytes(text: string): number[] {
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  const hex = dotted ? `${text.slice(0, dotted.index)}${((+dotted[1]! << 8) | +dotted[2]!).toString(16)}:${((+dotted[3]! << 8) | +dotted[4]!).toString(16)}` : text;
  const [left, right] = hex.split("::") as [string, string | undefined];
  const groups = (part: string | undefined) => (part ? part.split(":").map((g) => parseInt(g, 16)) : []);
  const head = groups(left);
  const tail = groups(right);
  const all = right === undefined ? head : [...head, ...new Array(8 - head.length - tail.length).fill(0), ...tail];
  return all.flatMap((g) => [g >> 8, g & 0xff]);
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);
/** As many as fetch follows. */
const MAX_REDIRECTS = 20;

/**
 * GET `url`, following redirects, refusing any hop whose host is or resolves to a loopback
 * address. The answer's headers must start within the idle timeout (as fetchWithTimeout's);
 * its body is read as any fetch's (readBody).
 */
export async function fetchAvoidingLoopback(url: string, what: string, resolver: Resolver = systemResolver): Promise<Response> {
  let current = new URL(url);
  for (let hop = 0; ; hop++) {
    const response = await getOnce(current, what, resolver);
    const location = response.headers.location;
    if (!REDIRECTS.has(response.statusCode ?? 0) || location === undefined) return asResponse(response);
    response.destroy();
    if (hop >= MAX_REDIRECTS) throw new FetchRefusedError(`${what}: more than ${MAX_REDIRECTS} redirects`);
    current = new URL(location, current);
    if (current.protocol !== "http:" && current.protocol !== "https:") throw new FetchRefusedError(`${what}: redirected to ${current.protocol} URL, not http or https`);
  }
}

/** One request: an IP host is checked as it is, a name through the lookup the connection itself uses. */
async function getOnce(url: URL, what: string, resolver: Resolver): Promise<IncomingMessage> {
  const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
  const refused = (address: string) => new LoopbackRefusedError(`${what}: ${url.host}${address === host ? "" : ` (${address})`} is on this worker's loopback, which a job reaches only with network.host granted (build --allow network.host, on a worker started with it)`);
  if (isIP(host) && isLoopbackAddress(host)) throw refused(host);
  let refusal: Error | undefined;
  const checked = new Set<string>();
  // The connection's own resolution: what it connects to is exactly what was checked here (a
  // fresh connection each time, agent: false, so none is reused past a check).
  const lookup = (name: string, options: { all?: boolean }, callback: (...args: unknown[]) => void) => {
    resolver(name).then(
      (addresses) => {
        const loopback = addresses.find((a) => isLoopbackAddress(a.address));
        if (loopback) return callback((refusal = refused(loopback.address)));
        if (addresses.length === 0) return callback(new Error(`${name} has no address`));
        for (const a of addresses) checked.add(a.address);
        return options.all ? callback(null, addresses) : callback(null, addresses[0]!.address, addresses[0]!.family);
      },
      (error: Error) => callback(error),
    );
  };
  const seconds = limit("idleSeconds");
  const response = await new Promise<IncomingMessage>((resolve, reject) => {
    const request = (url.protocol === "https:" ? https : http).get(url, { lookup, agent: false, headers: { accept: "*/*" } } as http.RequestOptions, resolve);
    const timer = setTimeout(() => request.destroy(new NetworkError(`${what}: no answer within ${seconds} s (MEMOBUILD_NETWORK_TIMEOUT)`)), seconds * 1000);
    request.on("error", (error) => reject(refusal ?? error));
    request.on("close", () => clearTimeout(timer));
    request.on("response", () => clearTimeout(timer));
  });
  // Belt and braces: a connection made anywhere but where the check allowed is not read.
  const peer = response.socket?.remoteAddress;
  if (peer !== undefined && (isLoopbackAddress(peer) || (!isIP(host) && checked.size > 0 && !checked.has(peer) && !checked.has(peer.replace(/^::ffff:/, ""))))) {
    response.destroy();
    throw refused(peer);
  }
  return response;
}

/** The node answer as a fetch Response (its body a web stream), so it is read as any fetch's. */
function asResponse(message: IncomingMessage): Response {
  const headers = new Headers();
  for (let i = 0; i + 1 < message.rawHeaders.length; i += 2) headers.append(message.rawHeaders[i]!, message.rawHeaders[i + 1]!);
  const status = message.statusCode ?? 502;
  const body = status === 204 || status === 304 ? null : (Readable.toWeb(message) as unknown as ReadableStream<Uint8Array>);
  return new Response(body, { status, statusText: message.statusMessage ?? "", headers });
}
