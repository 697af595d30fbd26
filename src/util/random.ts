/** Random hex for unique names (Web Crypto: no node:crypto to load at start-up). */
export function randomHex(bytes: number): string {
  return Buffer.from(crypto.getRandomValues(new Uint8Array(bytes))).toString("hex");
}
